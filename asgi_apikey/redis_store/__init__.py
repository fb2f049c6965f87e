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
                            name, scopes, metadata, not_before, expires_at, limit,
                            created_at
    {asgi_apikey}:ids       hash: key_id -> digest (so names are unique)
    {asgi_apikey}:version   integer: one more for every change
    {asgi_apikey}:epoch     a random token, new when the store is created or flushed
    {asgi_apikey}:changes   the channel: {"v": version, "e": epoch, "op": ..., "digest": ...}

Rate limits shared by every instance live in the same Redis, under the same
prefix: :class:`RedisRateLimiter` (``RateLimits(shared=RedisRateLimiter(url))``)
decides a request's limits in one atomic script call on the Redis server's
clock (``mode="exact"``), or spends tokens each instance leases in batches
(``mode="batched"``, with its accuracy stated in ``limits``). Each caller's
counters sit in a hash tag of their own, named by a hash (no key id or
address in clear), and expire once idle::

    {asgi_apikey:rl:<sha256 of the caller>}:rate:<limit>, :quota:<limit>, :path:<rule>:rate:...

When Redis is slow or gone it decides locally or refuses with ``503``, as
configured (``on_unavailable``), and tries Redis again after ``backoff``.

Plain keys never reach Redis. Writes go through :class:`RedisKeyStore` (or
``python -m asgi_apikey keys add|revoke|list --redis URL``), whose Lua scripts
change the hashes, the version and publish in one atomic step.

The modules, from the bottom up: ``records`` (names in Redis, records,
change messages), ``scripts`` (the Lua scripts), ``urls`` (checking and
redacting URLs), ``connection`` (clients), ``timings`` (the follower's
settings), ``admin`` (:class:`RedisKeyStore` and the functions for code
without an event loop), and the follower: ``mirror`` (the records held),
``reads`` (what it reads from Redis), ``trust`` (the staleness bound),
``events`` (its log events), ``sync`` (keeping the copy equal to the store)
and ``follower`` (:class:`RedisKeySource`: lifespan, reconnects, restarts). The
shared limits: ``limit_scripts`` (the Lua script, names and numbers),
``limit_runner`` (calls within a timeout, the circuit breaker),
``limit_leases`` (the batched mode) and ``limits`` (:class:`RedisRateLimiter`).
"""

from __future__ import annotations

from importlib import import_module

try:  # before any module of the package needs it: say what is missing, and how to get it
    import_module("redis.asyncio")
except ImportError as error:  # pragma: no cover - only without the extra
    raise ImportError(
        "asgi_apikey.redis_store needs the redis package: pip install 'asgi_apikey[redis]'"
    ) from error

from .admin import RedisKeyStore as RedisKeyStore
from .admin import add_key as add_key
from .admin import list_keys as list_keys
from .admin import revoke_key as revoke_key
from .follower import RedisKeySource as RedisKeySource
from .follower import State as State
from .limits import RedisRateLimiter as RedisRateLimiter
from .records import DEFAULT_PREFIX as DEFAULT_PREFIX
from .records import StoredKey as StoredKey
from .records import change
from .sync import UNAVAILABLE as UNAVAILABLE
from .urls import redacted as redacted
from .urls import why

# Private helpers the tests call by these names.
_change = change
_why = why

__all__ = [
    "RedisKeySource",
    "RedisKeyStore",
    "RedisRateLimiter",
    "StoredKey",
    "add_key",
    "list_keys",
    "revoke_key",
]
