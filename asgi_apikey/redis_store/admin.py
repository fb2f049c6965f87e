"""The admin side: add, revoke and list the keys of a Redis key store.

Every change runs one script of ``scripts.py``, so the record, the version
and the published message go together. Plain keys never leave this process.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..errors import ConfigurationError, KeySourceError
from ..keys import APIKey
from .connection import client
from .records import DEFAULT_PREFIX, Names, StoredKey, decode, record, stored
from .scripts import ADD, REVOKE
from .timings import positive
from .urls import check_url, redacted, why


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
        self._url = check_url(url)
        self._names = Names.of(prefix)
        self._prefix = prefix
        self._timeout = positive(timeout, "timeout", "how long to wait for Redis")
        self._redis: Redis | None = None

    def _connection(self) -> Redis:
        if self._redis is None:
            self._redis = client(self._url, self._timeout)
        return self._redis

    async def add(self, key: str | APIKey) -> StoredKey:
        """Store a key (a plain key is hashed here) and publish it; returns what was stored.

        The key's name, scopes, metadata, validity and limit go into its
        record, so every :class:`RedisKeySource` hands the same key to its
        authenticator. Raises :class:`ConfigurationError` when the store holds
        the same key, or another key with the same ``key_id`` (or the key's
        metadata is not JSON, or its limit has a period its text cannot name),
        and :class:`KeySourceError` when Redis cannot be reached.
        """
        key = key if isinstance(key, APIKey) else APIKey(key)
        now = datetime.now(UTC).replace(microsecond=0)
        encoded = record(key, now)
        answer = await self._run(ADD, [key.digest.removeprefix("sha256:"), key.key_id, encoded])
        status = answer[0].decode() if isinstance(answer, list) and answer else "?"
        if status == "same_key":
            other = decode(key.digest.removeprefix("sha256:").encode(), answer[1])
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
        return stored(key, json.loads(encoded))

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
        return bool(await self._run(REVOKE, [digest, key_id]))

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
            decoded = decode(field, value)
            if decoded is not None:
                found.append(stored(*decoded))
        return sorted(found, key=lambda one: one.key_id)

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
            f"({why(error, self._url)}): check that Redis runs there, and the URL, "
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


# -- for code without an event loop ------------------------------------------------------


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
    """:meth:`RedisKeyStore.keys` for code without an event loop."""
    return _sync(_with_store(url, prefix, "keys", None))  # type: ignore[no-any-return]
