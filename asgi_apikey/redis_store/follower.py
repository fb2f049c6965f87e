"""The follower: :class:`RedisKeySource`, which keeps every instance's keys current from the store.

Its lifecycle and its state machine: start (connect, subscribe, load
everything), a follower task that follows the store until stop(), and on
any failure a reconnect with a back-off and a full reload; a follower that
dies of a bug is logged and restarted. What it does on a live connection
(load, apply changes, check on each heartbeat, trust) is :class:`StoreSync`'s
(``sync.py``), which this class builds on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Literal

from redis.exceptions import RedisError

from ..errors import KeySourceError
from ..sources import KeySink, LiveKeySource
from .connection import bounded, client
from .records import DEFAULT_PREFIX, Names
from .sync import StoreSync
from .timings import Timings
from .urls import check_url, why

State = Literal["not_started", "live", "reconnecting", "unavailable", "stopped"]


class RedisKeySource(StoreSync, LiveKeySource):
    """The keys of a Redis key store, followed live: pass it as ``APIKeyAuth(source=...)``.

    Parameters:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` for TLS,
            or ``unix:///path/redis.sock``.
        prefix: the names in Redis (see the package's text); several key sets
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
        url, names = check_url(url), Names.of(prefix)  # checked in this order: the URL first
        timings = Timings.of(
            max_staleness=max_staleness,
            heartbeat=heartbeat,
            resync_interval=resync_interval,
            timeout=timeout,
            reconnect_delay=reconnect_delay,
            max_reconnect_delay=max_reconnect_delay,
        )
        super().__init__(url, names, timings)
        self._prefix = prefix
        #: Times the follower ended unexpectedly (a bug, never a lost connection) and
        #: was started again.
        self.restarts = 0
        self._deaths = 0  # in a row, without a heartbeat in between: the restart backs off
        self._restart: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def state(self) -> State:
        """``not_started``, ``live``, ``reconnecting`` (trusted, Redis lost),
        ``unavailable`` (the store's keys refused) or ``stopped``."""
        if self._phase != "running":
            return self._phase
        if not self._trust.trusted:
            return "unavailable"
        return "live" if self._connected else "reconnecting"

    # -- lifespan -----------------------------------------------------------------------

    async def start(self, sink: KeySink) -> None:
        if self._phase == "running":
            return
        self._sink = sink
        generation = self._trust.new_generation()
        self._recovering = False
        problem = None
        try:
            self._redis = client(self._url, self._timings.timeout)
            await self._connect()
        except Exception as error:  # Redis down, refused, or answering nonsense
            problem = why(error, self._url)
        except BaseException:  # cancelled: leave nothing open
            await self._close()
            raise
        if generation != self._trust.generation:  # stop() came meanwhile: stay stopped
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
        self._log.started(self.version, self.key_count)

    async def stop(self) -> None:
        self._trust.new_generation()
        if self._sink is not None:  # started, or starting
            self._phase = "stopped"
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Bounded: a shutdown must not hang on a connection that does not close.
            done, _ = await asyncio.wait({task}, timeout=self._timings.timeout)
            if not done:
                self._log.stop_timeout(self._timings.timeout)
        await self._close()

    async def _close(self) -> None:
        self._trust.disarm()
        self._connected = False
        await self._drop_pubsub()
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await bounded(redis.aclose(), self._timings.timeout)

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await bounded(pubsub.aclose(), self._timings.timeout)  # type: ignore[no-untyped-call, unused-ignore]

    # -- the follower task: started with the source, restarted if it dies --------------

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
        generation = self._trust.generation
        self._task = None
        self.restarts += 1
        self._deaths += 1
        self._mark_lost()  # nobody follows: the keys age until a new follower loads
        delay = self._timings.backoff(self._deaths)
        self._log.follower_died(error, delay)
        self._restart = asyncio.get_running_loop().call_later(
            delay, self._restart_follower, generation
        )

    def _restart_follower(self, generation: int) -> None:
        self._restart = None
        current = generation == self._trust.generation and self._phase == "running"
        if current and self._task is None:
            self._follow_store(generation, fresh=True)

    def _stopping(self, generation: int) -> bool:
        """Whether the follower of ``generation`` must end: stopped, or its task cancelled.

        redis-py can absorb a cancellation and raise a ConnectionError instead
        (the connection it was reading is closed under it): the task's pending
        cancel request still says what happened.
        """
        task = asyncio.current_task()
        return (
            generation != self._trust.generation
            or self._phase != "running"
            or self._redis is None
            or (task is not None and task.cancelling() > 0)
        )

    # -- following the store ------------------------------------------------------------

    async def _run(self, generation: int, *, fresh: bool) -> None:
        """Follow the store until stopped: reconnect and reload everything after any failure."""
        failures = 0  # in a row, without a heartbeat in between: the reconnect backs off
        if fresh:  # restarted after a crash: nothing of the last follower is trusted
            await self._drop_pubsub()
        while not self._stopping(generation):
            try:
                if self._pubsub is None:
                    await self._reconnect()
                if await self._follow():
                    failures = 0  # the connection held a heartbeat
                    self._deaths = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: reconnect and reload everything
                if self._stopping(generation):
                    return  # a cancellation redis-py turned into a ConnectionError, or stop()
                self._lost(error)
                await self._drop_pubsub()
                failures += 1
                await asyncio.sleep(self._timings.backoff(failures))

    async def _reconnect(self) -> None:
        """Subscribe and load again, on new connections.

        A pooled connection may still lead to a server that has restarted since
        (its close not yet seen, as redis-py 5 does not check): reused, it would
        fail the first attempt and cost a whole back-off, so the pool is emptied first.
        """
        await bounded(self._connection().connection_pool.disconnect(), self._timings.timeout)
        await self._connect()

    async def _connect(self) -> None:
        """Subscribe first, then load everything: no change can fall between the two."""
        timeout = self._timings.timeout
        pubsub = self._connection().pubsub()
        try:
            await pubsub.subscribe(self._names.channel)
            deadline = time.monotonic() + timeout
            while True:  # wait until Redis confirms the subscription
                message = await pubsub.get_message(timeout=timeout)
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
        self._next_check = asyncio.get_running_loop().time() + self._timings.heartbeat
        self._connected = True

    # -- status -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        age = None
        last_contact = self._trust.last_contact
        if last_contact is not None and self._phase == "running":
            age = round(time.monotonic() - last_contact, 3)
        return {
            "kind": self.kind,
            "url": self._shown,
            "prefix": self._prefix,
            "state": self.state,
            "version": self.version,
            "key_count": self.key_count,
            "seconds_since_contact": age,
            "max_staleness": self._timings.max_staleness,
            "full_loads": self.full_loads,
            "repairs": self.repairs,
            "messages": self.messages,
            "losses": self.losses,
            "restarts": self.restarts,
        }

    def __repr__(self) -> str:
        return f"RedisKeySource({self._shown!r}, prefix={self._prefix!r}, state={self.state!r})"
