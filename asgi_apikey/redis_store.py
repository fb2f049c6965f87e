"""A key store on Redis shared by every instance: RedisKeySource follows it, RedisKeyStore writes.

Needs the ``redis`` extra (``pip install 'asgi_apikey[redis]'``)::

    from asgi_apikey import APIKeyAuth, APIKeyMiddleware
    from asgi_apikey.redis_store import RedisKeySource

    auth = APIKeyAuth(source=RedisKeySource("redis://127.0.0.1:6379/0"))
    app.add_middleware(APIKeyMiddleware, auth=auth)

Every process holds an immutable local snapshot of the keys, so a request
is the same O(1) dict lookup as with keys in the environment and never waits
for Redis. The source loads the whole key set when the app's lifespan starts,
then follows a pub/sub channel on which every change is announced with a
version number, reads the changed keys' records from the store and applies
them as a whole new snapshot; a version and epoch check every ``heartbeat``
seconds and a full reload every ``resync_interval`` repair any message it
missed. With no answer from Redis for ``max_staleness`` seconds it refuses
the store's keys with ``503`` until Redis answers again, and recovers by itself.

In Redis, under ``prefix`` (in a hash tag, so a cluster keeps them in one slot)::

    {asgi_apikey}:keys      hash: SHA-256 digest (hex) -> JSON record: key_id,
                            name, scopes, metadata, not_before, expires_at, created_at
    {asgi_apikey}:ids       hash: key_id -> digest (so names are unique)
    {asgi_apikey}:version   integer: one more for every change
    {asgi_apikey}:epoch     a random token, new when the store is created or flushed
    {asgi_apikey}:changes   the channel: {"v": version, "e": epoch, "op": ..., "digest": ...}

Plain keys never reach Redis. Writes go through :class:`RedisKeyStore` (or
``python -m asgi_apikey keys add|revoke|list --redis URL``), whose Lua scripts
change the hashes, the version and publish in one atomic step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import unquote, unquote_plus, urlsplit

try:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub
    from redis.asyncio.connection import parse_url
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as error:  # pragma: no cover - only without the extra
    raise ImportError(
        "asgi_apikey.redis_store needs the redis package: pip install 'asgi_apikey[redis]'"
    ) from error

from .audit import emit, loggable
from .errors import ConfigurationError, KeySourceError
from .keys import APIKey
from .sources import KeySink, LiveKeySource

__all__ = [
    "RedisKeySource",
    "RedisKeyStore",
    "StoredKey",
    "add_key",
    "list_keys",
    "revoke_key",
]

DEFAULT_PREFIX = "asgi_apikey"
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_HEX = re.compile(rb"[0-9a-f]{64}")
_SCHEMES = ("redis", "rediss", "unix")
_SCAN_COUNT = 1000  # keys a full load asks for at a time
_BATCH = 1000  # change messages applied together at most
_MESSAGE_WAIT = 0.05  # how long a check waits for messages of versions it saw, before a reload
#: What a 503 says while the store's keys cannot be trusted (sent to clients: no URL).
UNAVAILABLE = "The API key store is unavailable; try again later"

State = Literal["not_started", "live", "reconnecting", "unavailable", "stopped"]


# -- the layout in Redis, and the scripts that change it ---------------------------------


@dataclass(frozen=True, slots=True)
class _Names:
    keys: str
    ids: str
    version: str
    epoch: str
    channel: str

    @classmethod
    def of(cls, prefix: object) -> _Names:
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
            raise ConfigurationError(
                "prefix must be 1 to 64 letters, digits or _ . : - (the default is "
                f"{DEFAULT_PREFIX!r}), not {prefix!r}",
                setting="prefix",
            )
        tag = "{" + prefix + "}"  # a cluster hashes only what is inside the braces
        names = ("keys", "ids", "version", "epoch", "changes")
        return cls(*(f"{tag}:{name}" for name in names))

    @property
    def script_keys(self) -> list[str]:
        return [self.keys, self.ids, self.version, self.epoch]


# Every change: the hashes, the version and the message in one atomic step. The epoch
# is a random token set by the first write after the store was created (or flushed):
# a follower that sees another epoch reloads everything, whatever the version says.
# KEYS: keys, ids, version, epoch. ARGV: a new epoch (used if none is set), channel, ...
_CHANGED = """
local function changed(op, digest)
  redis.call('SET', KEYS[4], ARGV[1], 'NX')
  local v = redis.call('INCR', KEYS[3])
  local epoch = redis.call('GET', KEYS[4])
  redis.call('PUBLISH', ARGV[2], cjson.encode({v = v, e = epoch, op = op, digest = digest}))
  return v
end
"""

# ARGV: epoch, channel, digest, key_id, record.
_ADD = (
    _CHANGED
    + """
local present = redis.call('HGET', KEYS[1], ARGV[3])
if present then return {'same_key', present} end
local taken = redis.call('HGET', KEYS[2], ARGV[4])
if taken then return {'id_taken', taken} end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[5])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[3])
return {'ok', tostring(changed('add', ARGV[3]))}
"""
)

# ARGV: epoch, channel, digest (or ''), key_id (or '').
_REVOKE = (
    _CHANGED
    + """
local digest = ARGV[3]
if digest == '' then
  digest = redis.call('HGET', KEYS[2], ARGV[4])
  if not digest then return 0 end
end
local record = redis.call('HGET', KEYS[1], digest)
if not record then return 0 end
redis.call('HDEL', KEYS[1], digest)
local ok, decoded = pcall(cjson.decode, record)
if ok and type(decoded) == 'table' and type(decoded['key_id']) == 'string' then
  if redis.call('HGET', KEYS[2], decoded['key_id']) == digest then
    redis.call('HDEL', KEYS[2], decoded['key_id'])
  end
end
return changed('revoke', digest)
"""
)


# -- records -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What the store holds of one key: everything but the key itself (and its digest)."""

    key_id: str
    name: str | None
    scopes: tuple[str, ...]
    metadata: Mapping[str, Any]
    not_before: datetime | None
    expires_at: datetime | None
    created_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """``"active"``, ``"expired"`` or ``"not_yet_valid"`` at ``now`` (default: now)."""
        now = now or datetime.now(UTC)
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.not_before is not None and now < self.not_before:
            return "not_yet_valid"
        return "active"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``keys list --json``."""
        instant = {n: getattr(self, n) for n in ("not_before", "expires_at", "created_at")}
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": list(self.scopes),
            "metadata": dict(self.metadata),
            **{n: v.isoformat() if v is not None else None for n, v in instant.items()},
            "state": self.state(),
        }


def _record(key: APIKey, created_at: datetime) -> str:
    try:
        metadata = json.dumps(dict(key.metadata))
    except (TypeError, ValueError):
        metadata = None
    if metadata is None:
        raise ConfigurationError(
            f"metadata of key {key.key_id!r} must be JSON (strings, numbers, booleans, "
            "lists and objects) to be kept in Redis",
            key_id=key.key_id,
        )
    return json.dumps(
        {
            "key_id": key.key_id,
            "name": key.name,
            "scopes": sorted(key.scopes),
            "metadata": json.loads(metadata),
            "not_before": _iso(key.not_before),
            "expires_at": _iso(key.expires_at),
            "created_at": _iso(created_at),
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def _iso(instant: datetime | None) -> str | None:
    return instant.isoformat() if instant is not None else None


def _instant(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("not an ISO 8601 string")
    return datetime.fromisoformat(value)


def _decode(field: bytes, value: bytes) -> tuple[APIKey, dict[str, Any]] | None:
    """The key of one record of the keys hash, or None (logged) when it is not one."""
    problem = "its field is not a lowercase SHA-256 hex digest"
    if _HEX.fullmatch(field):
        try:
            data = json.loads(value)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            key = APIKey(
                digest="sha256:" + field.decode("ascii"),
                name=data.get("name"),
                scopes=data.get("scopes") or (),
                metadata=data.get("metadata"),
                not_before=_instant(data.get("not_before")),
                expires_at=_instant(data.get("expires_at")),
            )
        except (ValueError, TypeError, RecursionError) as error:
            # The message is our own (ConfigurationError) or names a JSON position;
            # neither quotes a secret, and Redis holds none.
            problem = f"{type(error).__name__}: {str(error)[:200]}"
        else:
            return key, data
    emit(
        "error",
        "key_record_invalid",
        {
            # Both come from Redis: whoever can write there must not write the log too.
            "field": loggable(field[:64].decode("ascii", "backslashreplace"), 100),
            "problem": loggable(problem, 300),
            "detail": "a record in the Redis key store is not a key; it is skipped (refused)",
        },
    )
    return None


def _stored(key: APIKey, data: Mapping[str, Any]) -> StoredKey:
    try:
        created = _instant(data.get("created_at"))
    except ValueError:
        created = None
    return StoredKey(
        key_id=key.key_id,
        name=key.name,
        scopes=tuple(sorted(key.scopes)),
        metadata=key.metadata,
        not_before=key.not_before,
        expires_at=key.expires_at,
        created_at=created,
    )


# -- connections -------------------------------------------------------------------------


_URL_HELP = (
    "the Redis URL cannot be read: it must look like redis://[user:password@]host:port/db "
    "(rediss:// for TLS, unix:///path/redis.sock), with any / ? # @ : % in the user name "
    "or password percent-encoded (%2F %3F %23 %40 %3A %25)"
)


def _check_url(url: object) -> str:
    """``url`` if redis-py reads it as it looks; else a ConfigurationError quoting none of it."""
    if not isinstance(url, str) or not url.startswith(tuple(f"{s}://" for s in _SCHEMES)):
        raise ConfigurationError(
            "the Redis URL must start with redis://, rediss:// (TLS) or unix://, such as "
            "redis://127.0.0.1:6379/0",
            setting="url",
        )
    netloc = None
    try:  # urlsplit's errors quote the URL: none of them may escape
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number (a password cut at a '/')
        parse_url(url)
        netloc = parts.netloc
    except (ValueError, TypeError, UnicodeError):
        pass
    # A '@' outside the host part: the password held a '/', '?' or '#' and was cut there.
    if netloc is None or (not url.startswith("unix:") and "@" in url and "@" not in netloc):
        raise ConfigurationError(_URL_HELP, setting="url")
    return url


# Query parameters redis-py reads that hold nothing secret. A query that names only
# these, with plain values, is shown; any other query is masked whole, whatever the
# spelling of its names (redis-py decodes ``pass%77ord`` to ``password``).
_PLAIN_QUERY_NAMES = frozenset(
    {
        "db",
        "protocol",
        "timeout",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "health_check_interval",
        "max_connections",
        "ssl_check_hostname",
        "ssl_cert_reqs",
    }
)
_PLAIN_QUERY = re.compile(r"([a-z_]+)=[A-Za-z0-9_.-]*")
# A host, port and path (or socket path) with nothing that could start a query or
# encode one: anything else after the credentials is masked.
_PLAIN_PLACE = re.compile(r"[^?#&=%;@\x00-\x20\x7f]*")


def _plain_query(query: str) -> bool:
    for piece in query.split("&"):
        match = _PLAIN_QUERY.fullmatch(piece)
        if match is None or match.group(1) not in _PLAIN_QUERY_NAMES:
            return False
    return True


def redacted(url: str) -> str:
    """``url`` without its password (for logs, errors and status).

    Everything between ``://`` and the last ``@`` is credentials, however the
    URL is spelled, so a password is masked even where it would not parse. A
    query is shown only when it names nothing but known settings with plain
    values (``?db=2``): any other (``password``, ``ssl_password``, or a name in
    percent-encoding or capitals) is masked whole.

    >>> redacted("redis://app:s3cret@cache:6379/0")
    'redis://app:***@cache:6379/0'
    >>> redacted("redis://cache:6379/0?pass%77ord=s3cret")
    'redis://cache:6379/0?***'
    """
    scheme, separator, rest = url.partition("://")
    shown_credentials = ""
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        user, colon, _ = credentials.partition(":")
        # A user name that holds what may be a query (the '@' came after one) is not shown.
        plain_user = colon and _PLAIN_PLACE.fullmatch(user)
        shown_credentials = f"{user}:***@" if plain_user else "***@"
    place, question, query = rest.partition("?")
    if not _PLAIN_PLACE.fullmatch(place):
        place, question, query = "***", "", ""
    elif question and not _plain_query(query):
        query = "***"
    return f"{scheme}{separator}{shown_credentials}{place}{question}{query}"


def _secrets(url: str) -> list[str]:
    """Every part of ``url`` that may be a credential, as written and decoded, longest first."""
    try:
        parts = urlsplit(url)
        found = [parts.password, parts.username if parts.password is None else None]
    except ValueError:
        return []
    for piece in parts.query.split("&"):
        name, _, value = piece.partition("=")
        if unquote_plus(name) not in _PLAIN_QUERY_NAMES:
            found += [name, value]
    decoded = [form(text) for text in found if text for form in (unquote, unquote_plus)]
    return sorted({text for text in found + decoded if text}, key=len, reverse=True)


def _why(error: BaseException, url: str) -> str:
    """What went wrong, for one log line: without the URL's credentials even if an
    error quoted them, and with any control character (from Redis) escaped."""
    text = f"{type(error).__name__}: {str(error)[:300]}"
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return loggable(text)


def _client(url: str, timeout: float) -> Redis:
    # No retries inside redis-py: a lost connection must reach the source, which
    # then reloads everything once it is back (messages sent meanwhile are lost).
    # (The ignores and casts here are for redis-py 5, whose types are looser.)
    no_backoff = NoBackoff()  # type: ignore[no-untyped-call, unused-ignore]
    client: Redis = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(no_backoff, 0),
        client_name="asgi_apikey",
    )
    return client


def _positive(value: object, setting: str, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"{setting} must be a number of seconds above 0 ({hint}), not {value!r}",
            setting=setting,
        )
    return float(value)


# -- the admin side ----------------------------------------------------------------------


class RedisKeyStore:
    """Add, revoke and list the keys of a Redis key store (async; see also :func:`add_key`).

    Every change is one atomic script: the record, the version and the
    published message go together, so every :class:`RedisKeySource` sees it.
    Plain keys never leave this process: the store holds digests.

    >>> store = RedisKeyStore("redis://:secret@127.0.0.1:6379/0")
    >>> store
    RedisKeyStore('redis://:***@127.0.0.1:6379/0', prefix='asgi_apikey')
    """

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = 5.0) -> None:
        self._url = _check_url(url)
        self._names = _Names.of(prefix)
        self._prefix = prefix
        self._timeout = _positive(timeout, "timeout", "how long to wait for Redis")
        self._redis: Redis | None = None

    def _connection(self) -> Redis:
        if self._redis is None:
            self._redis = _client(self._url, self._timeout)
        return self._redis

    async def add(self, key: str | APIKey) -> StoredKey:
        """Store a key (a plain key is hashed here) and publish it; returns what was stored.

        Raises :class:`ConfigurationError` when the store holds the same key,
        or another key with the same ``key_id``, and :class:`KeySourceError`
        when Redis cannot be reached.
        """
        key = key if isinstance(key, APIKey) else APIKey(key)
        now = datetime.now(UTC).replace(microsecond=0)
        record = _record(key, now)
        answer = await self._run(_ADD, [key.digest.removeprefix("sha256:"), key.key_id, record])
        status = answer[0].decode() if isinstance(answer, list) and answer else "?"
        if status == "same_key":
            other = _decode(key.digest.removeprefix("sha256:").encode(), answer[1])
            shown = other[0].key_id if other is not None else "?"
            raise ConfigurationError(
                f"the store already holds this key, as key_id {shown!r}", key_id=shown
            )
        if status == "id_taken":
            raise ConfigurationError(
                f"the store already holds another key with key_id {key.key_id!r}: give this "
                "one another name",
                key_id=key.key_id,
            )
        return _stored(key, json.loads(record))

    async def revoke(self, key_or_id: str | APIKey) -> bool:
        """Remove a key, given as its ``key_id`` (name or fingerprint), its
        ``sha256:`` digest or an :class:`APIKey`; ``False`` when the store does not hold it.
        """
        if isinstance(key_or_id, APIKey):
            digest, key_id = key_or_id.digest.removeprefix("sha256:"), ""
        elif isinstance(key_or_id, str) and key_or_id.startswith("sha256:"):
            digest, key_id = APIKey(digest=key_or_id).digest.removeprefix("sha256:"), ""
        elif isinstance(key_or_id, str) and key_or_id:
            digest, key_id = "", key_or_id
        else:
            raise ConfigurationError(
                "revoke takes a key_id, a 'sha256:' digest or an APIKey", setting="key"
            )
        return bool(await self._run(_REVOKE, [digest, key_id]))

    async def keys(self) -> list[StoredKey]:
        """Every key the store holds, by key_id: ids, names, scopes, validity; never a secret."""
        failure = None
        try:
            # bytes: the client does not decode responses.
            reading = cast(
                Awaitable[dict[bytes, bytes]], self._connection().hgetall(self._names.keys)
            )
            records = await reading
        except (RedisError, OSError) as error:
            failure = self._unreachable(error)
        if failure is not None:
            raise failure  # outside the except block: see _run
        found = []
        for field, value in records.items():
            decoded = _decode(field, value)
            if decoded is not None:
                found.append(_stored(*decoded))
        return sorted(found, key=lambda stored: stored.key_id)

    async def _run(self, script: str, args: list[str]) -> Any:
        names = self._names
        try:
            keys_and_args = [*names.script_keys, secrets.token_hex(16), names.channel, *args]
            running: Any = self._connection().eval(script, 4, *keys_and_args)  # type: ignore[arg-type, unused-ignore]
            return await running
        except (RedisError, OSError) as error:
            failure = self._unreachable(error)
        # Raised outside the except block, so the error chains no redis-py exception
        # (whose frames hold the connection, and so the URL's password).
        raise failure

    def _unreachable(self, error: BaseException) -> KeySourceError:
        return KeySourceError(
            f"the Redis key store at {redacted(self._url)} cannot be used "
            f"({_why(error, self._url)}): check that Redis runs there, and the URL, "
            "password and ACL",
            source="redis",
            url=redacted(self._url),
        )

    async def aclose(self) -> None:
        """Close the connection (the store can be used again afterwards)."""
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose()

    async def __aenter__(self) -> RedisKeyStore:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"RedisKeyStore({redacted(self._url)!r}, prefix={self._prefix!r})"


def _sync(work: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True
    if running:
        work.close()
        raise RuntimeError("called inside an event loop: use RedisKeyStore's async methods there")
    return asyncio.run(work)


async def _with_store(url: str, prefix: str, action: str, argument: Any) -> Any:
    async with RedisKeyStore(url, prefix=prefix) as store:
        return await getattr(store, action)(*(() if argument is None else (argument,)))


def add_key(url: str, key: str | APIKey, *, prefix: str = DEFAULT_PREFIX) -> StoredKey:
    """:meth:`RedisKeyStore.add` for code without an event loop (a script, a shell)."""
    return _sync(_with_store(url, prefix, "add", key))  # type: ignore[no-any-return]


def revoke_key(url: str, key_or_id: str | APIKey, *, prefix: str = DEFAULT_PREFIX) -> bool:
    """:meth:`RedisKeyStore.revoke` for code without an event loop."""
    return _sync(_with_store(url, prefix, "revoke", key_or_id))  # type: ignore[no-any-return]


def list_keys(url: str, *, prefix: str = DEFAULT_PREFIX) -> list[StoredKey]:
    """:meth:`RedisKeyStore.list` for code without an event loop."""
    return _sync(_with_store(url, prefix, "keys", None))  # type: ignore[no-any-return]


# -- the live source ---------------------------------------------------------------------


class RedisKeySource(LiveKeySource):
    """The keys of a Redis key store, followed live: pass it as ``APIKeyAuth(source=...)``.

    Parameters:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` for TLS,
            or ``unix:///path/redis.sock``.
        prefix: the names in Redis (see the module's text); several key sets
            can share one Redis under different prefixes.
        max_staleness: how long, in seconds, the keys stay trusted after Redis
            last answered; after that the store's keys are refused with ``503``
            until Redis answers again (keys given in code and verifiers still work).
        heartbeat: how often, in seconds, the source checks the store's
            version and epoch, repairing any change message it missed.
        resync_interval: how often, in seconds, it reloads every key anyway.
        timeout: how long, in seconds, one Redis call may take.
        reconnect_delay, max_reconnect_delay: the first and the longest wait
            between two attempts to reconnect (it doubles each time).

    ``heartbeat + timeout`` must be below ``max_staleness``: a healthy store
    must always answer within it.

    >>> RedisKeySource("redis://:secret@127.0.0.1:6379/0")
    RedisKeySource('redis://:***@127.0.0.1:6379/0', prefix='asgi_apikey', state='not_started')
    """

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_staleness: float = 30.0,
        heartbeat: float = 1.0,
        resync_interval: float = 300.0,
        timeout: float = 2.0,
        reconnect_delay: float = 0.05,
        max_reconnect_delay: float = 2.0,
    ) -> None:
        self._url = _check_url(url)
        self._shown = redacted(url)
        self._prefix = prefix
        self._names = _Names.of(prefix)
        self._max_staleness = _positive(
            max_staleness, "max_staleness", "how long the last keys stay trusted without Redis"
        )
        self._heartbeat = _positive(heartbeat, "heartbeat", "how often to check the version")
        self._resync_interval = _positive(
            resync_interval, "resync_interval", "how often to reload every key"
        )
        self._timeout = _positive(timeout, "timeout", "how long one Redis call may take")
        if self._heartbeat + self._timeout >= self._max_staleness:
            raise ConfigurationError(
                f"heartbeat ({self._heartbeat:g} s) + timeout ({self._timeout:g} s) must be "
                f"below max_staleness ({self._max_staleness:g} s), or a healthy store would "
                "be refused: lower them, or raise max_staleness",
                setting="max_staleness",
            )
        self._reconnect_delay = _positive(reconnect_delay, "reconnect_delay", "the first wait")
        self._max_reconnect_delay = max(
            self._reconnect_delay,
            _positive(max_reconnect_delay, "max_reconnect_delay", "the longest wait"),
        )
        self.version = 0
        self.epoch: bytes | None = None
        #: Full reloads; those of them that repaired something (a missed change, a
        #: reset store); change messages read; connections lost.
        self.full_loads = 0
        self.repairs = 0
        self.messages = 0
        self.losses = 0
        #: Times the follower ended unexpectedly (a bug, never a lost connection) and
        #: was started again.
        self.restarts = 0
        self._deaths = 0  # in a row, without a heartbeat in between: the restart backs off
        self._restart: asyncio.TimerHandle | None = None
        # The records loaded, by field (digest hex): the record's bytes and its key.
        self._loaded: dict[bytes, tuple[bytes, APIKey]] = {}
        self._phase: Literal["not_started", "running", "stopped"] = "not_started"
        self._connected = False
        self._trusted = False
        self._recovering = False  # lost or expired, and not loaded since
        self._sink: KeySink | None = None
        self._redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._last_contact: float | None = None  # time.monotonic()
        self._lost_at: float | None = None
        self._next_check = 0.0  # loop time
        self._next_full = 0.0
        # A full load decodes in a thread; one that ends after stop() (or after a
        # later start()) belongs to an older generation and is dropped. The lock
        # keeps the trust, the snapshot and the watchdog's verdict together.
        self._generation = 0
        self._trusted_until = 0.0  # time.monotonic()
        self._lock = threading.Lock()

    @property
    def state(self) -> State:
        """``not_started``, ``live``, ``reconnecting`` (trusted, Redis lost),
        ``unavailable`` (the store's keys refused) or ``stopped``."""
        if self._phase != "running":
            return self._phase
        if not self._trusted:
            return "unavailable"
        return "live" if self._connected else "reconnecting"

    @property
    def key_count(self) -> int:
        """How many keys of the store this source holds now."""
        return len(self._loaded)

    # -- lifespan -----------------------------------------------------------------------

    async def start(self, sink: KeySink) -> None:
        if self._phase == "running":
            return
        self._sink = sink
        generation = self._new_generation()
        self._recovering = False
        problem = None
        try:
            self._redis = _client(self._url, self._timeout)
            await self._connect()
        except Exception as error:  # Redis down, refused, or answering nonsense
            problem = _why(error, self._url)
        except BaseException:  # cancelled: leave nothing open
            await self._close()
            raise
        if generation != self._generation:  # stop() came meanwhile: stay stopped
            await self._close()
            return
        if problem is not None:
            # Raised outside the except block: nothing chained holds the connection.
            await self._close()
            raise KeySourceError(
                f"the Redis key store at {self._shown} cannot be read ({problem}): start "
                "Redis there, or fix the URL, password or ACL",
                source="redis",
                url=self._shown,
            )
        self._phase = "running"
        self._follow_store(generation, fresh=False)
        emit(
            "info",
            "key_store_started",
            {"url": self._shown, "version": self.version, "key_count": self.key_count},
        )

    async def stop(self) -> None:
        self._new_generation()
        if self._sink is not None:  # started, or starting
            self._phase = "stopped"
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Bounded: a shutdown must not hang on a connection that does not close.
            done, _ = await asyncio.wait({task}, timeout=self._timeout)
            if not done:
                emit(
                    "error",
                    "key_store_stop_timeout",
                    {
                        "url": self._shown,
                        "detail": f"the follower did not stop within {self._timeout:g} s; "
                        "left to end with the event loop",
                    },
                )
        await self._close()

    def _new_generation(self) -> int:
        with self._lock:
            self._generation += 1
            self._trusted = False
            return self._generation

    async def _close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._connected = False
        await self._drop_pubsub()
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await _bounded(redis.aclose(), self._timeout)

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await _bounded(pubsub.aclose(), self._timeout)  # type: ignore[no-untyped-call, unused-ignore]

    # -- following the store ------------------------------------------------------------

    async def _connect(self) -> None:
        """Subscribe first, then load everything: no change can fall between the two."""
        pubsub = self._connection().pubsub()
        try:
            await pubsub.subscribe(self._names.channel)
            deadline = time.monotonic() + self._timeout
            while True:  # wait until Redis confirms the subscription
                message = await pubsub.get_message(timeout=self._timeout)
                if message is not None and message["type"] == "subscribe":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("Redis did not confirm the subscription")
            await self._full_load()
        except BaseException:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            raise
        self._pubsub = pubsub
        self._next_check = asyncio.get_running_loop().time() + self._heartbeat
        self._connected = True

    def _connection(self) -> Redis:
        """The client; :class:`_Stopped` once stop() closed it."""
        if self._redis is None:
            raise _Stopped
        return self._redis

    def _subscription(self) -> PubSub:
        if self._pubsub is None:
            raise _Stopped
        return self._pubsub

    def _stopping(self, generation: int) -> bool:
        """Whether the follower of ``generation`` must end: stopped, or its task cancelled.

        redis-py can absorb a cancellation and raise a ConnectionError instead
        (the connection it was reading is closed under it): the task's pending
        cancel request still says what happened.
        """
        task = asyncio.current_task()
        return (
            generation != self._generation
            or self._phase != "running"
            or self._redis is None
            or (task is not None and task.cancelling() > 0)
        )

    def _follow_store(self, generation: int, *, fresh: bool) -> None:
        """Start the follower of ``generation``; a follower that dies is noticed and restarted."""
        task = asyncio.get_running_loop().create_task(self._run(generation, fresh=fresh))
        task.add_done_callback(self._follower_ended)
        self._task = task

    def _follower_ended(self, task: asyncio.Task[None]) -> None:
        """A follower ended: if not because it was stopped, log it and start another."""
        error = None if task.cancelled() else task.exception()  # retrieved either way
        if error is None or task is not self._task or self._phase != "running":
            return  # stopped, or cancelled from outside (the event loop is closing)
        generation = self._generation
        self._task = None
        self.restarts += 1
        self._deaths += 1
        self._connected = False  # nobody follows: the keys age until a new follower loads
        self._recovering = True
        self._lost_at = time.monotonic()
        delay = min(
            self._reconnect_delay * 2 ** min(self._deaths - 1, 30), self._max_reconnect_delay
        )
        emit(
            "error",
            "key_store_follower_died",
            {
                "url": self._shown,
                "error": type(error).__name__,
                "detail": f"the follower of the Redis key store ended unexpectedly; it is "
                f"started again in {delay:g} s and reloads every key",
            },
        )
        self._restart = asyncio.get_running_loop().call_later(
            delay, self._restart_follower, generation
        )

    def _restart_follower(self, generation: int) -> None:
        self._restart = None
        if generation == self._generation and self._phase == "running" and self._task is None:
            self._follow_store(generation, fresh=True)

    async def _run(self, generation: int, *, fresh: bool) -> None:
        """Follow the store until stopped: reconnect and reload everything after any failure."""
        delay = self._reconnect_delay
        if fresh:  # restarted after a crash: nothing of the last follower is trusted
            await self._drop_pubsub()
        while not self._stopping(generation):
            try:
                if self._pubsub is None:
                    await self._reconnect()
                if await self._follow():
                    delay = self._reconnect_delay  # the connection held a heartbeat
                    self._deaths = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: reconnect and reload everything
                if self._stopping(generation):
                    return  # a cancellation redis-py turned into a ConnectionError, or stop()
                self._lost(error)
                await self._drop_pubsub()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_reconnect_delay)

    async def _reconnect(self) -> None:
        """Subscribe and load again, on new connections.

        A pooled connection may still lead to a server that has restarted since
        (its close not yet seen, as redis-py 5 does not check): reused, it would
        fail the first attempt and cost a whole back-off, so the pool is emptied first.
        """
        await _bounded(self._connection().connection_pool.disconnect(), self._timeout)
        await self._connect()

    async def _follow(self) -> bool:
        """Apply the changes that come until the next heartbeat; then check. True if checked."""
        loop = asyncio.get_running_loop()
        wait = max(0.0, self._next_check - loop.time())
        message = await self._subscription().get_message(
            ignore_subscribe_messages=True, timeout=wait
        )
        if message is not None:
            await self._apply(await self._burst(message))
        # On the clock, however many messages come: they must not hold off the check.
        if loop.time() < self._next_check:
            return False
        await self._check()
        self._next_check = loop.time() + self._heartbeat
        return True

    async def _burst(self, first: dict[str, Any] | None, wait: float = 0.0) -> list[bytes]:
        """The change messages received (after ``first``, or within ``wait``): one change."""
        batch = [first] if first is not None else []
        while len(batch) < _BATCH:
            more = await self._subscription().get_message(
                ignore_subscribe_messages=True, timeout=0 if batch else wait
            )
            if more is None:
                break
            batch.append(more)
        return [message["data"] for message in batch if message["type"] == "message"]

    async def _apply(self, batch: list[bytes]) -> None:
        """Apply published changes, as the store has them now; reload on any doubt.

        A message only says which key changed and at which version: the key's
        record is read from the store, so a message published by someone who
        may not write the store changes nothing, and one that was read twice
        does no harm.
        """
        if not batch:
            return
        self.messages += len(batch)
        if not self._trusted:  # the keys are refused until a full load: no half measures
            await self._full_load(repair=True)
            return
        changes = [_change(data) for data in batch]
        if any(change is None for change in changes):
            emit(
                "error",
                "key_store_message_invalid",
                {"url": self._shown, "detail": "reloading every key"},
            )
            await self._full_load(repair=True)
            return
        sink = self._sink
        if sink is None:
            raise _Stopped
        digests = sorted({change[2] for change in changes if change is not None})
        asked = time.monotonic()
        async with self._connection().pipeline(transaction=True) as pipe:
            pipe.mget(self._names.version, self._names.epoch)
            pipe.hmget(self._names.keys, digests)
            (version, epoch), records = await pipe.execute()
        store_version = _version(version)
        known = [
            change
            for change in changes
            if change is not None and change[1] == epoch and change[0] <= store_version
        ]
        if epoch != self.epoch or len(known) < len(changes):
            # Another epoch (the store was reset) or a version the store has not
            # reached (not a real change): trust nothing but a full load.
            await self._full_load(repair=True)
            return
        versions = {change[0] for change in known}
        newest = max(versions)
        if newest > self.version and not set(range(self.version + 1, newest + 1)) <= versions:
            await self._full_load(repair=True)  # a gap: some change was missed
            return
        added, removed = [], []
        for field, record in zip(digests, records, strict=True):
            decoded = _decode(field, record) if record is not None else None
            if decoded is not None:
                added.append(decoded[0])
                self._loaded[field] = (record, decoded[0])
            elif self._loaded.pop(field, None) is not None:
                removed.append("sha256:" + field.decode("ascii"))
        with self._lock:
            if not self._trusted:
                return  # the watchdog fired during the read: the next check reloads
            if added or removed:
                sink.change(added, removed)
        self.version = max(self.version, newest)
        self._contact(asked)

    async def _check(self) -> None:
        """The heartbeat: a full reload when the store's version or epoch moved, or when due."""
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_full or not self._trusted:
            await self._full_load(repair=not self._trusted)
            return
        asked = time.monotonic()
        version, epoch = await self._connection().mget(self._names.version, self._names.epoch)
        store_version = _version(version)
        if epoch == self.epoch and store_version > self.version:
            # Changes whose messages are on their way (the store answered first).
            await self._apply(await self._burst(None, wait=_MESSAGE_WAIT))
        if self.version < store_version or epoch != self.epoch:
            await self._full_load(repair=True)
            return
        self._contact(asked)

    async def _full_load(self, *, repair: bool = False) -> None:
        """Read every key, and the version and epoch they are at, into a new snapshot.

        The version is read first and the keys in chunks (HSCAN), so that no
        reply is large enough to hold up the event loop: a change made during
        the scan may or may not be in it, but its message (a later version) is
        applied next, and applying a change again leaves the same keys. The
        keys are trusted for max_staleness from the moment the version was asked.
        """
        redis = self._connection()
        with self._lock:
            generation = self._generation
        asked = time.monotonic()
        version, epoch = await redis.mget(self._names.version, self._names.epoch)
        store_version = _version(version)
        records: dict[bytes, bytes] = {}
        cursor = 0
        while True:
            cursor, chunk = await redis.hscan(self._names.keys, cursor, count=_SCAN_COUNT)
            records.update(cast(dict[bytes, bytes], chunk))
            if cursor == 0:
                break
        # Decoding and indexing 100,000 keys takes a while: off the event loop, so
        # requests keep being served from the current snapshot meanwhile.
        loaded = await asyncio.to_thread(self._replace, records, generation, asked)
        if not loaded:  # stopped meanwhile, or too slow to be trusted: check again
            if generation == self._generation:
                emit(
                    "warning",
                    "key_store_load_too_slow",
                    {
                        "url": self._shown,
                        "seconds": round(time.monotonic() - asked, 3),
                        "detail": "reading every key took longer than max_staleness "
                        f"({self._max_staleness:g} s), so the keys cannot be trusted: raise "
                        "max_staleness",
                    },
                )
            return
        self.version, self.epoch = store_version, cast(bytes | None, epoch)
        self.full_loads += 1
        self.repairs += repair
        self._next_full = asyncio.get_running_loop().time() + self._resync_interval
        self._contact(asked)
        if self._recovering:
            self._now_current()

    def _replace(self, records: dict[bytes, bytes], generation: int, asked: float) -> bool:
        """Decode and swap in a full load (in a thread); False if it came too late."""
        sink = self._sink
        if sink is None:
            return False
        before, loaded = self._loaded, {}
        for field, value in records.items():
            had = before.get(field)
            if had is not None and had[0] == value:
                loaded[field] = had  # unchanged: the same APIKey, so the same entry
                continue
            decoded = _decode(field, value)
            if decoded is not None:
                loaded[field] = (value, decoded[0])
        keys = [key for _, key in loaded.values()]
        # The swap, the trust and the watchdog's verdict under one lock: the keys
        # are served exactly while trusted, whichever of the two comes first.
        with self._lock:
            if generation != self._generation or time.monotonic() >= asked + self._max_staleness:
                return False
            sink.replace(keys)
            self._loaded = loaded
            self._trusted = True
            self._trusted_until = asked + self._max_staleness
            return True

    # -- staleness ----------------------------------------------------------------------

    def _contact(self, asked: float) -> None:
        """Redis answered a request sent at ``asked``: trust the keys max_staleness from then."""
        self._last_contact = asked
        with self._lock:
            self._trusted_until = max(self._trusted_until, asked + self._max_staleness)
        self._arm()

    def _arm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        delay = max(0.0, self._trusted_until - time.monotonic())
        self._watchdog = asyncio.get_running_loop().call_later(delay, self._expired)

    def _lost(self, error: BaseException) -> None:
        if not self._connected:
            return  # logged when it was lost
        self._connected = False
        self._recovering = True
        self.losses += 1
        self._lost_at = time.monotonic()
        emit(
            "warning",
            "key_store_lost",
            {
                "url": self._shown,
                "error": _why(error, self._url),
                "detail": "reconnecting; the last keys are used for up to "
                f"{self._max_staleness:g} s",
            },
        )

    def _expired(self) -> None:
        """No answer from Redis for max_staleness: refuse the store's keys until one comes."""
        self._watchdog = None
        if self._sink is None or self._phase != "running":
            return
        with self._lock:
            if time.monotonic() < self._trusted_until:
                expired = False  # trust was renewed meanwhile (a load in its thread)
            else:
                expired, was_trusted = True, self._trusted
                self._trusted = False
                self._sink.unavailable(UNAVAILABLE)
        if not expired:
            self._arm()
            return
        self._recovering = True
        self._next_check = 0.0  # a connected follower reloads at once
        if was_trusted:
            emit(
                "error",
                "key_store_unavailable",
                {
                    "url": self._shown,
                    "detail": f"no answer from Redis for {self._max_staleness:g} s: the "
                    "store's keys are refused (503) until it answers",
                },
            )

    def _now_current(self) -> None:
        """Loaded again after a loss or an expiry."""
        self._recovering = False
        down = time.monotonic() - self._lost_at if self._lost_at is not None else 0.0
        emit(
            "info",
            "key_store_recovered",
            {
                "url": self._shown,
                "down_seconds": round(down, 3),
                "version": self.version,
                "key_count": self.key_count,
            },
        )

    # -- status -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        age = None
        if self._last_contact is not None and self._phase == "running":
            age = round(time.monotonic() - self._last_contact, 3)
        return {
            "kind": self.kind,
            "url": self._shown,
            "prefix": self._prefix,
            "state": self.state,
            "version": self.version,
            "key_count": self.key_count,
            "seconds_since_contact": age,
            "max_staleness": self._max_staleness,
            "full_loads": self.full_loads,
            "repairs": self.repairs,
            "messages": self.messages,
            "losses": self.losses,
            "restarts": self.restarts,
        }

    def __repr__(self) -> str:
        return f"RedisKeySource({self._shown!r}, prefix={self._prefix!r}, state={self.state!r})"


async def _bounded(closing: Coroutine[Any, Any, Any], timeout: float) -> None:
    """Await ``closing`` for at most ``timeout`` seconds, ignoring its errors.

    ``asyncio.wait`` rather than ``wait_for``: a close stuck where cancelling
    does not reach (a socket that never finishes closing) is left behind
    instead of being waited for again.
    """
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
    elif not task.cancelled():
        task.exception()  # retrieved: a failed close is not worth a warning


class _Stopped(Exception):
    """The source was stopped under its follower (its client closed): the follower ends."""


def _version(value: object) -> int:
    """The store's version: a missing one is 0; one that is not a count is refused."""
    if value is None:
        return 0
    if isinstance(value, bytes) and value.isdigit() and len(value) < 20:
        return int(value)
    raise ValueError("the store's version is not a non-negative integer")


def _change(data: object) -> tuple[int, bytes, bytes] | None:
    """A published change as (version, epoch, digest hex), or None if it is not one."""
    try:
        message = json.loads(data)  # type: ignore[arg-type]
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(message, dict):
        return None
    version, epoch, op, digest = (message.get(k) for k in ("v", "e", "op", "digest"))
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or version < 1
        or not isinstance(epoch, str)
        or not epoch.isascii()
        or op not in ("add", "revoke")
        or not isinstance(digest, str)
        or not _HEX.fullmatch(digest.encode("ascii", "replace"))
    ):
        return None
    return version, epoch.encode("ascii"), digest.encode("ascii")
