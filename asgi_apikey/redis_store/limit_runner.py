"""How the shared limits talk to Redis: one script call within a timeout, behind a breaker.

:class:`ScriptRunner` runs the limits script (``EVALSHA``, loading it on
``NOSCRIPT``) on a pool of connections of its own, every call bounded by the
limiter's ``timeout``. :class:`Breaker` is its circuit breaker: after a
failure (a timeout, a refused connection, an error answer) nobody calls Redis
for ``backoff`` seconds; then one call probes it. It logs
``rate_limit_store_unavailable`` once per outage and
``rate_limit_store_recovered`` when Redis answers again, with the URL
redacted.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from ..audit import emit
from .connection import bounded
from .limit_scripts import LIMITS
from .urls import redacted, why

__all__ = ["Breaker", "ScriptRunner"]

_SHA = hashlib.sha1(LIMITS.encode("utf-8"), usedforsecurity=False).hexdigest()
_NORMAL, _PROBE = 1, 2


class Breaker:
    """Whether to call Redis now: closed (call), open (do not, for ``backoff`` s), probing.

    Only a probe, a call made once the backoff has passed, closes it again: a
    slow answer to a call made before the outage proves nothing.
    """

    __slots__ = ("_backoff", "_clock", "_down_since", "_open_until", "_policy", "_probing", "_url")

    def __init__(
        self, url: str, backoff: float, policy: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._url = url  # redacted
        self._backoff = backoff
        self._policy = policy
        self._clock = clock
        self._down_since: float | None = None
        self._open_until = 0.0
        self._probing = False

    @property
    def available(self) -> bool:
        """Whether Redis answered the last call (no outage under way)."""
        return self._down_since is None

    def attempt(self) -> int | None:
        """A ticket to call Redis now, or None: decide without it."""
        if self._down_since is None:
            return _NORMAL
        if self._probing or self._clock() < self._open_until:
            return None
        self._probing = True
        return _PROBE

    def succeeded(self, ticket: int) -> None:
        if ticket == _PROBE and self._down_since is not None:
            self._probing = False
            down = self._clock() - self._down_since
            self._down_since = None
            emit(
                "info",
                "rate_limit_store_recovered",
                {"url": self._url, "down_seconds": round(down, 3)},
            )

    def failed(self, ticket: int, problem: str) -> None:
        now = self._clock()
        if ticket == _PROBE:
            self._probing = False
        elif self._down_since is not None:
            return  # a call from before the outage: it is known already
        self._open_until = now + self._backoff
        if self._down_since is None:
            self._down_since = now
            if self._policy == "local":
                then = (
                    "each instance now decides alone, with its own counts: it admits up to "
                    "the whole limit by itself until Redis answers"
                )
            else:
                then = "limited requests are refused with 503 until Redis answers"
            emit(
                "error",
                "rate_limit_store_unavailable",
                {
                    "url": self._url,
                    "error": problem,
                    "on_unavailable": self._policy,
                    "detail": f"{then}; Redis is tried again every {self._backoff:g} s",
                },
            )

    def abandoned(self, ticket: int) -> None:
        """The call was cancelled (its caller went away): it proved nothing either way."""
        if ticket == _PROBE:
            self._probing = False

    def retry_after(self) -> int:
        """Whole seconds until Redis is tried again (at least 1): for ``Retry-After``."""
        return max(1, math.ceil(self._open_until - self._clock()))


class ScriptRunner:
    """Runs the limits script on Redis: one call, within ``timeout`` seconds, or None."""

    def __init__(self, url: str, *, timeout: float, max_connections: int, breaker: Breaker) -> None:
        self._url = url
        self.shown = redacted(url)
        self._timeout = timeout
        self._max_connections = max_connections
        self.breaker = breaker
        self._redis: Redis | None = None
        self._pool: BlockingConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Tests only: integer nanoseconds since the epoch that the script takes as "now"
        #: instead of the Redis server's TIME.
        self.test_clock: Callable[[], int] | None = None

    def _client(self) -> Redis:
        loop = asyncio.get_running_loop()
        if self._redis is None or self._loop is not loop:
            # Connections belong to the loop that opened them: a new loop gets new ones
            # (the old loop's went with it).
            no_backoff = NoBackoff()  # type: ignore[no-untyped-call, unused-ignore]
            self._pool = BlockingConnectionPool.from_url(
                self._url,
                max_connections=self._max_connections,
                timeout=self._timeout,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(no_backoff, 0),
                client_name="asgi_apikey-limits",
            )
            self._redis = Redis(connection_pool=self._pool)
            self._loop = loop
        return self._redis

    def _now(self) -> list[str]:
        if self.test_clock is None:
            return ["", ""]
        seconds, nanoseconds = divmod(self.test_clock(), 1_000_000_000)
        return [str(seconds), str(nanoseconds)]

    async def run(self, job: str, keys: Sequence[str], args: Sequence[str]) -> list[Any] | None:
        """The script's answer to ``job`` over ``keys``, or None when Redis cannot answer now."""
        ticket = self.breaker.attempt()
        if ticket is None:
            return None
        problem = None
        try:
            async with asyncio.timeout(self._timeout):
                answer = await self._call(keys, [job, *self._now(), *args])
        except Exception as error:  # slow, down, or an error answer: all mean "not now"
            problem = why(error, self._url)
        except BaseException:  # cancelled by the caller
            self.breaker.abandoned(ticket)
            raise
        if problem is not None:
            self.breaker.failed(ticket, problem)
            return None
        self.breaker.succeeded(ticket)
        return answer  # type: ignore[no-any-return]

    async def _call(self, keys: Sequence[str], args: Sequence[str]) -> Any:
        client = self._client()
        try:
            return await client.evalsha(_SHA, len(keys), *keys, *args)  # type: ignore[arg-type, unused-ignore]
        except NoScriptError:  # a new or restarted Redis: EVAL loads it
            return await client.eval(LIMITS, len(keys), *keys, *args)  # type: ignore[arg-type, unused-ignore]

    async def load(self) -> bool:
        """Load the script and check the connection (``start``); False when Redis did not answer."""
        ticket = self.breaker.attempt()
        if ticket is None:
            return False
        problem = None
        try:
            async with asyncio.timeout(self._timeout):
                await self._client().script_load(LIMITS)
        except Exception as error:
            problem = why(error, self._url)
        except BaseException:
            self.breaker.abandoned(ticket)
            raise
        if problem is not None:
            self.breaker.failed(ticket, problem)
            return False
        self.breaker.succeeded(ticket)
        return True

    async def close(self) -> None:
        """Close the connections (within ``timeout``); the runner opens new ones if used again."""
        redis, pool, self._redis, self._pool, self._loop = self._redis, self._pool, None, None, None
        if redis is None or pool is None:
            return
        await bounded(redis.aclose(), self._timeout)
        await bounded(pool.disconnect(), self._timeout)
