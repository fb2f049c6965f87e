"""Keeping a local copy of the store's keys equal to the store, and knowing when it may be trusted.

:class:`StoreSync` is the half of the follower that works on a connection
it is given: it loads every key, applies each change message (reading the
changed records from the store), checks the version and epoch on every
heartbeat and reloads on any doubt; and it keeps the trust in the copy
(``trust.py``), the losses and the recoveries. Opening connections, the
follower task, reconnecting and the lifespan are :class:`RedisKeySource`'s
(``follower.py``), which builds on this class.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from ..collector import bulk_load, release
from ..sources import KeySink
from . import reads
from .events import FollowerLog
from .mirror import Mirror
from .records import Names, change
from .timings import Timings
from .trust import Trust
from .urls import redacted, why

_MESSAGE_WAIT = 0.05  # how long a check waits for messages of versions it saw, before a reload
#: What a 503 says while the store's keys cannot be trusted (sent to clients: no URL).
UNAVAILABLE = "The API key store is unavailable; try again later"


class StoreSync:
    """The keys of one store, kept equal to it over the connection in ``_redis`` and
    the subscription in ``_pubsub``, and trusted for ``max_staleness`` after each answer.
    """

    def __init__(self, url: str, names: Names, timings: Timings) -> None:
        self._url = url
        self._shown = redacted(url)
        self._names = names
        self._timings = timings
        self._log = FollowerLog(self._shown, timings.max_staleness)
        self.version = 0
        self.epoch: bytes | None = None
        #: Full reloads; those of them that repaired something (a missed change, a
        #: reset store); change messages read; connections lost.
        self.full_loads = 0
        self.repairs = 0
        self.messages = 0
        self.losses = 0
        self._loaded = Mirror()
        self._trust = Trust(timings.max_staleness, self._expired)
        self._phase: Literal["not_started", "running", "stopped"] = "not_started"
        self._connected = False
        self._recovering = False  # lost or expired, and not loaded since
        self._sink: KeySink | None = None
        self._redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._lost_at: float | None = None  # time.monotonic()
        self._next_check = 0.0  # loop time
        self._next_full = 0.0

    @property
    def key_count(self) -> int:
        """How many keys of the store this source holds now."""
        return len(self._loaded)

    # -- keeping the copy equal to the store ---------------------------------------------

    def _connection(self) -> Redis:
        """The client; :class:`_Stopped` once stop() closed it."""
        if self._redis is None:
            raise _Stopped
        return self._redis

    def _subscription(self) -> PubSub:
        if self._pubsub is None:
            raise _Stopped
        return self._pubsub

    async def _follow(self) -> bool:
        """Apply the changes that come until the next heartbeat; then check. True if checked."""
        loop = asyncio.get_running_loop()
        wait = max(0.0, self._next_check - loop.time())
        message = await self._subscription().get_message(
            ignore_subscribe_messages=True, timeout=wait
        )
        if message is not None:
            await self._apply(await reads.burst(self._subscription(), message))
        # On the clock, however many messages come: they must not hold off the check.
        if loop.time() < self._next_check:
            return False
        await self._check()
        self._next_check = loop.time() + self._timings.heartbeat
        return True

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
        if not self._trust.trusted:  # the keys are refused until a full load: no half measures
            await self._full_load(repair=True)
            return
        changes = [change(data) for data in batch]
        if any(one is None for one in changes):
            self._log.message_invalid()
            await self._full_load(repair=True)
            return
        sink = self._sink
        if sink is None:
            raise _Stopped
        digests = sorted({one[2] for one in changes if one is not None})
        asked = time.monotonic()
        store_version, epoch, records = await reads.changed(
            self._connection(), self._names, digests
        )
        known = [
            one
            for one in changes
            if one is not None and one[1] == epoch and one[0] <= store_version
        ]
        if epoch != self.epoch or len(known) < len(changes):
            # Another epoch (the store was reset) or a version the store has not
            # reached (not a real change): trust nothing but a full load.
            await self._full_load(repair=True)
            return
        versions = {one[0] for one in known}
        newest = max(versions)
        if newest > self.version and not set(range(self.version + 1, newest + 1)) <= versions:
            await self._full_load(repair=True)  # a gap: some change was missed
            return
        added, removed = self._loaded.change(digests, records)

        def tell() -> None:
            if added or removed:
                sink.change(added, removed)

        if not self._trust.if_trusted(tell):
            return  # the watchdog fired during the read: the next check reloads
        self.version = max(self.version, newest)
        self._trust.contact(asked)

    async def _check(self) -> None:
        """The heartbeat: a full reload when the store's version or epoch moved, or when due."""
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_full or not self._trust.trusted:
            await self._full_load(repair=not self._trust.trusted)
            return
        asked = time.monotonic()
        store_version, epoch = await reads.head(self._connection(), self._names)
        if epoch == self.epoch and store_version > self.version:
            # Changes whose messages are on their way (the store answered first).
            await self._apply(await reads.burst(self._subscription(), None, _MESSAGE_WAIT))
        if self.version < store_version or epoch != self.epoch:
            await self._full_load(repair=True)
            return
        self._trust.contact(asked)

    async def _full_load(self, *, repair: bool = False) -> None:
        """Read every key, and the version and epoch they are at, into a new snapshot.

        The keys are trusted for max_staleness from the moment the version was
        asked: again after the scan when it did not move meanwhile (a million
        keys take seconds to scan), else before it.
        """
        redis = self._connection()
        generation = self._trust.current()
        asked = time.monotonic()
        store_version, epoch, records, confirmed = await reads.everything(redis, self._names)
        if confirmed is not None:
            asked = confirmed  # nothing changed during the scan: fresh from its end
        # Decoding and indexing 100,000 keys takes a while: off the event loop, so
        # requests keep being served from the current snapshot meanwhile.
        loaded = await asyncio.to_thread(self._replace, records, generation, asked)
        if not loaded:  # stopped meanwhile, or too slow to be trusted: check again
            if generation == self._trust.generation:
                self._log.load_too_slow(time.monotonic() - asked)
            return
        self.version, self.epoch = store_version, epoch
        self.full_loads += 1
        self.repairs += repair
        self._next_full = asyncio.get_running_loop().time() + self._timings.resync_interval
        self._trust.contact(asked)
        if self._recovering:
            self._now_current()

    def _replace(self, records: list[reads.Records], generation: int, asked: float) -> bool:
        """Decode and swap in a full load (in a thread); False if it came too late."""
        sink = self._sink
        if sink is None:
            return False

        def swap() -> None:  # under the trust's lock: served exactly while trusted
            sink.replace(keys)
            self._loaded = reloaded

        with bulk_load():  # the collector paused; a large key set frozen (collector.py)
            before = self._loaded
            reloaded = before.reloaded(records)
            # Freed here a slice at a time, not all at once on the event loop
            # when _full_load returns (a million records: tens of ms).
            release(records, step=1)  # a chunk at a time
            keys = reloaded.all_keys()
            swapped = self._trust.swap(generation, asked, swap)
            release(keys)
            if swapped:
                before.release()  # the records it held that the new copy did not keep
            return swapped

    # -- losses, expiry and recovery ----------------------------------------------------

    def _lost(self, error: BaseException) -> None:
        """The connection failed with ``error``: count and log the loss, once per loss."""
        if not self._connected:
            return  # logged when it was lost
        self._mark_lost()
        self.losses += 1
        self._log.lost(why(error, self._url))

    def _mark_lost(self) -> None:
        """Nobody follows the store from now: the keys age until a full load (recovery)."""
        self._connected = False
        self._recovering = True
        self._lost_at = time.monotonic()

    def _expired(self) -> None:
        """No answer from Redis for max_staleness: refuse the store's keys until one comes."""
        sink = self._sink
        if sink is None or self._phase != "running":
            return
        was_trusted = self._trust.expire(lambda: sink.unavailable(UNAVAILABLE))
        if was_trusted is None:
            return  # trust was renewed meanwhile (a load in its thread)
        self._recovering = True
        self._next_check = 0.0  # a connected follower reloads at once
        if was_trusted:
            self._log.unavailable()

    @property
    def _trusted_until(self) -> float:
        """Until when the keys are trusted (``time.monotonic()``); tests set it to expire them."""
        return self._trust.until

    @_trusted_until.setter
    def _trusted_until(self, until: float) -> None:
        self._trust.until = until

    def _now_current(self) -> None:
        """Loaded again after a loss or an expiry."""
        self._recovering = False
        down = time.monotonic() - self._lost_at if self._lost_at is not None else 0.0
        self._log.recovered(down, self.version, self.key_count)


class _Stopped(Exception):
    """The source was stopped under its follower (its client closed): the follower ends."""
