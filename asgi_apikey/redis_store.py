"""A key store on Redis shared by every instance: RedisKeySource follows it, RedisKeyStore writes.

Needs the ``redis`` extra (``pip install 'asgi_apikey[redis]'``)::

    from asgi_apikey import APIKeyAuth, APIKeyMiddleware
    from asgi_apikey.redis_store import RedisKeySource

    auth = APIKeyAuth(source=RedisKeySource("redis://127.0.0.1:6379/0"))
    app.add_middleware(APIKeyMiddleware, auth=auth)

Every process holds an immutable local snapshot of the keys, so a request
is the same O(1) dict lookup as with keys in the environment and never waits
for Redis. The source loads the whole key set when the app's lifespan starts,
then follows a pub/sub channel on which every change is published with a
version number, and applies each change as a whole new snapshot; a version
check every ``heartbeat`` seconds and a full reload every
``resync_interval`` repair any message it missed. With Redis lost it keeps
the last good snapshot for ``max_staleness`` seconds, then refuses the
store's keys with ``503`` until Redis is back, and recovers by itself.

In Redis, under ``prefix`` (in a hash tag, so a cluster keeps them in one slot)::

    {asgi_apikey}:keys      hash: SHA-256 digest (hex) -> JSON record: key_id,
                            name, scopes, metadata, not_before, expires_at, created_at
    {asgi_apikey}:ids       hash: key_id -> digest (so names are unique)
    {asgi_apikey}:version   integer: one more for every change
    {asgi_apikey}:changes   the channel: {"v": version, "op": "add" | "revoke", ...}

Plain keys never reach Redis. Writes go through :class:`RedisKeyStore` (or
``python -m asgi_apikey keys add|revoke|list --redis URL``), whose Lua scripts
change the hashes, the version and publish in one atomic step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import structlog

try:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as error:  # pragma: no cover - only without the extra
    raise ImportError(
        "asgi_apikey.redis_store needs the redis package: pip install 'asgi_apikey[redis]'"
    ) from error

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

_log = structlog.get_logger("asgi_apikey")

DEFAULT_PREFIX = "asgi_apikey"
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_HEX = re.compile(rb"[0-9a-f]{64}")
_SCHEMES = ("redis", "rediss", "unix")
_SCAN_COUNT = 1000  # keys a full load asks for at a time
#: What a 503 says while the store's keys cannot be trusted (sent to clients: no URL).
UNAVAILABLE = "The API key store is unavailable; try again later"

State = Literal["not_started", "live", "reconnecting", "unavailable", "stopped"]


# -- the layout in Redis, and the scripts that change it ---------------------------------


@dataclass(frozen=True, slots=True)
class _Names:
    keys: str
    ids: str
    version: str
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
        return cls(f"{tag}:keys", f"{tag}:ids", f"{tag}:version", f"{tag}:changes")

    @property
    def script_keys(self) -> list[str]:
        return [self.keys, self.ids, self.version]


# KEYS: keys, ids, version. ARGV: digest, key_id, record, channel.
_ADD = """
local present = redis.call('HGET', KEYS[1], ARGV[1])
if present then return {'same_key', present} end
local taken = redis.call('HGET', KEYS[2], ARGV[2])
if taken then return {'id_taken', taken} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
local v = redis.call('INCR', KEYS[3])
local change = {v = v, op = 'add', digest = ARGV[1], record = ARGV[3]}
redis.call('PUBLISH', ARGV[4], cjson.encode(change))
return {'ok', tostring(v)}
"""

# KEYS: keys, ids, version. ARGV: digest (or ''), key_id (or ''), channel.
_REVOKE = """
local digest = ARGV[1]
if digest == '' then
  digest = redis.call('HGET', KEYS[2], ARGV[2])
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
local v = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[3], cjson.encode({v = v, op = 'revoke', digest = digest}))
return v
"""


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
    _log.error(
        "key_record_invalid",
        field=field[:64].decode("ascii", "replace"),
        problem=problem,
        detail="a record in the Redis key store is not a key; it is skipped (refused)",
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


def _check_url(url: object) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
        raise ConfigurationError(
            "the Redis URL must start with redis://, rediss:// (TLS) or unix://, such as "
            "redis://127.0.0.1:6379/0",
            setting="url",
        )
    return url


def redacted(url: str) -> str:
    """``url`` without its password (for logs, errors and status).

    >>> redacted("redis://app:s3cret@cache:6379/0")
    'redis://app:***@cache:6379/0'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        user = credentials.split(":", 1)[0] if ":" in credentials else ""
        netloc = f"{user}:***@{host}" if user or ":" in credentials else f"***@{host}"
    query = "***" if "password" in parts.query.lower() else parts.query
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    return f"{shown}?{query}" if query else shown


def _password(url: str) -> str | None:
    parts = urlsplit(url)
    return parts.password or (parts.username if parts.password is None else None)


def _why(error: BaseException, url: str) -> str:
    """What went wrong, without the URL's password even if an error quoted it."""
    text = f"{type(error).__name__}: {str(error)[:300]}"
    secret = _password(url)
    return text.replace(secret, "***") if secret else text


def _client(url: str, timeout: float) -> Redis:
    # No retries inside redis-py: a lost connection must reach the source, which
    # then reloads everything once it is back (messages sent meanwhile are lost).
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        client_name="asgi_apikey",
    )


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
        args = [key.digest.removeprefix("sha256:"), key.key_id, record, self._names.channel]
        answer = await self._run(_ADD, args)
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
        return bool(await self._run(_REVOKE, [digest, key_id, self._names.channel]))

    async def keys(self) -> list[StoredKey]:
        """Every key the store holds, by key_id: ids, names, scopes, validity; never a secret."""
        failure = None
        try:
            # bytes: the client does not decode responses.
            records = cast(dict[bytes, bytes], await self._connection().hgetall(self._names.keys))
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
        try:
            return await self._connection().eval(script, 3, *self._names.script_keys, *args)
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
        max_staleness: how long, in seconds, the last good keys are still
            used with Redis lost; after that the store's keys are refused with
            ``503`` until Redis is back (keys given in code and verifiers still work).
        heartbeat: how often, in seconds, the source checks the store's
            version (repairing any change message it missed) when no message came.
        resync_interval: how often, in seconds, it reloads every key anyway.
        timeout: how long, in seconds, one Redis call may take.

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
        self._reconnect_delay = _positive(reconnect_delay, "reconnect_delay", "the first wait")
        self._max_reconnect_delay = max(
            self._reconnect_delay,
            _positive(max_reconnect_delay, "max_reconnect_delay", "the longest wait"),
        )
        self.state: State = "not_started"
        self.version = 0
        # The records loaded, by field (digest hex): the record's bytes and its key.
        self._loaded: dict[bytes, tuple[bytes, APIKey]] = {}
        #: Full reloads, and those of them a version mismatch caused (missed messages).
        self.full_loads = 0
        self.repairs = 0
        self.messages = 0
        self.losses = 0
        self._sink: KeySink | None = None
        self._redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._last_contact: float | None = None  # time.monotonic()
        self._next_full = 0.0
        self._lost_at: float | None = None

    # -- lifespan -----------------------------------------------------------------------

    async def start(self, sink: KeySink) -> None:
        if self._task is not None:
            return
        self._sink = sink
        self._redis = _client(self._url, self._timeout)
        problem = None
        try:
            await self._connect()
        except (RedisError, OSError) as error:
            problem = _why(error, self._url)
        if problem is not None:
            # Raised outside the except block: nothing chained holds the connection.
            await self._close()
            self.state = "not_started"
            raise KeySourceError(
                f"the Redis key store at {self._shown} cannot be read ({problem}): start "
                "Redis there, or fix the URL, password or ACL",
                source="redis",
                url=self._shown,
            )
        self.state = "live"
        self._task = asyncio.get_running_loop().create_task(self._run())
        _log.info(
            "key_store_started", url=self._shown, version=self.version, key_count=self.key_count
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()
        self.state = "stopped"

    async def _close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        await self._drop_pubsub()
        if self._redis is not None:
            redis, self._redis = self._redis, None
            with contextlib.suppress(RedisError, OSError):
                await redis.aclose()

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    # -- following the store ------------------------------------------------------------

    async def _connect(self) -> None:
        """Subscribe first, then load everything: no change can fall between the two."""
        assert self._redis is not None
        pubsub = self._redis.pubsub()
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
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        self._pubsub = pubsub
        self._contact()

    async def _run(self) -> None:
        delay = self._reconnect_delay
        while True:
            try:
                if self._pubsub is None:
                    await self._connect()
                    self._recovered()
                    delay = self._reconnect_delay
                message = await self._pubsub.get_message(  # type: ignore[union-attr]
                    ignore_subscribe_messages=True, timeout=self._heartbeat
                )
                if message is not None and message["type"] == "message":
                    await self._on_message(message["data"])
                else:
                    await self._check()
                self._contact()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: reconnect and reload everything
                self._lost(error)
                await self._drop_pubsub()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_reconnect_delay)

    async def _on_message(self, data: bytes) -> None:
        self.messages += 1
        change = _change(data)
        if change is None:
            _log.error("key_store_message_invalid", url=self._shown, detail="reloading every key")
            await self._full_load(repair=True)
            return
        version, op, digest, record = change
        if version <= self.version:
            return  # a full load already had it
        if version != self.version + 1:
            await self._full_load(repair=True)  # a gap: messages were missed
            return
        assert self._sink is not None
        if op == "add" and record is not None:
            decoded = _decode(digest, record)
            if decoded is not None:
                self._sink.change([decoded[0]], [])
                self._loaded[digest] = (record, decoded[0])
        else:
            self._sink.change([], ["sha256:" + digest.decode("ascii")])
            self._loaded.pop(digest, None)
        self.version = version

    async def _check(self) -> None:
        """The heartbeat: the store's version, and a full reload when it differs (or is due)."""
        assert self._redis is not None
        if asyncio.get_running_loop().time() >= self._next_full:
            await self._full_load()
            return
        remote = int(await self._redis.get(self._names.version) or 0)
        if remote != self.version:
            await self._full_load(repair=True)

    async def _full_load(self, *, repair: bool = False) -> None:
        """Read every key, and the version they are at, into a new snapshot.

        The version is read first and the keys in chunks (HSCAN), so that no
        reply is large enough to hold up the event loop: a change made during
        the scan may or may not be in it, but its message (a later version) is
        applied next, and applying a change twice leaves the same keys.
        """
        assert self._redis is not None
        assert self._sink is not None
        version = int(await self._redis.get(self._names.version) or 0)
        records: dict[bytes, bytes] = {}
        cursor = 0
        while True:
            cursor, chunk = await self._redis.hscan(self._names.keys, cursor, count=_SCAN_COUNT)
            records.update(cast(dict[bytes, bytes], chunk))
            if cursor == 0:
                break
        # Decoding and indexing 100,000 keys takes a while: off the event loop, so
        # requests keep being served from the current snapshot meanwhile.
        await asyncio.to_thread(self._replace, records)
        self.version = version
        self.full_loads += 1
        self.repairs += repair
        self._next_full = asyncio.get_running_loop().time() + self._resync_interval

    def _replace(self, records: dict[bytes, bytes]) -> None:
        assert self._sink is not None
        before, loaded = self._loaded, {}
        for field, value in records.items():
            had = before.get(field)
            if had is not None and had[0] == value:
                loaded[field] = had  # unchanged: the same APIKey, so the same entry
                continue
            decoded = _decode(field, value)
            if decoded is not None:
                loaded[field] = (value, decoded[0])
        self._sink.replace([key for _, key in loaded.values()])
        self._loaded = loaded

    @property
    def key_count(self) -> int:
        """How many keys of the store this source holds now."""
        return len(self._loaded)

    # -- staleness ----------------------------------------------------------------------

    def _contact(self) -> None:
        """Redis answered: the current keys stay trusted for max_staleness from now."""
        self._last_contact = time.monotonic()
        if self._watchdog is not None:
            self._watchdog.cancel()
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self._max_staleness, self._expired)

    def _lost(self, error: BaseException) -> None:
        if self.state != "live":
            return  # logged when it was lost
        self.state = "reconnecting"
        self.losses += 1
        self._lost_at = time.monotonic()
        _log.warning(
            "key_store_lost",
            url=self._shown,
            error=_why(error, self._url),
            detail=f"reconnecting; the last keys are used for up to {self._max_staleness:g} s",
        )

    def _expired(self) -> None:
        self._watchdog = None
        if self._sink is None or self.state in ("unavailable", "stopped"):
            return
        self.state = "unavailable"
        self._sink.unavailable(UNAVAILABLE)
        _log.error(
            "key_store_unavailable",
            url=self._shown,
            detail=f"no answer from Redis for {self._max_staleness:g} s: the store's keys are "
            "refused (503) until it is back",
        )

    def _recovered(self) -> None:
        down = time.monotonic() - self._lost_at if self._lost_at is not None else 0.0
        self.state = "live"
        _log.info(
            "key_store_recovered",
            url=self._shown,
            down_seconds=round(down, 3),
            version=self.version,
            key_count=self.key_count,
        )

    # -- status -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        age = None
        if self._last_contact is not None and self._task is not None:
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
            "losses": self.losses,
        }

    def __repr__(self) -> str:
        return f"RedisKeySource({self._shown!r}, prefix={self._prefix!r}, state={self.state!r})"


def _change(data: object) -> tuple[int, str, bytes, bytes | None] | None:
    """A published change as (version, op, digest hex, record), or None if it is not one."""
    try:
        message = json.loads(data)  # type: ignore[arg-type]
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(message, dict):
        return None
    version, op, digest = message.get("v"), message.get("op"), message.get("digest")
    record = message.get("record")
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or op not in ("add", "revoke")
        or not isinstance(digest, str)
        or not _HEX.fullmatch(digest.encode("ascii", "replace"))
        or (op == "add" and not isinstance(record, str))
    ):
        return None
    return version, op, digest.encode("ascii"), record.encode() if isinstance(record, str) else None
