"""Staleness: whether the store's keys may be served now, and the watchdog that ends it.

Redis answering a request sent at ``asked`` makes the keys trusted until
``asked + max_staleness``. A watchdog on the event loop fires then: unless
trust was renewed meanwhile, the keys are refused until a full load.

Loads decode in a thread, so the trust, the swap of the snapshot and the
watchdog's verdict go under one lock: the keys are served exactly while
trusted, whichever comes first. A generation number, new at every start and
stop, tells a load that ends too late (after stop(), or after a later start())
from a current one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable


class Trust:
    """The trust in the keys of one source: until when, in which generation, and its watchdog.

    ``on_expiry`` is called on the event loop when ``until`` has passed
    without a renewal; it decides with :meth:`expire`.
    """

    def __init__(self, max_staleness: float, on_expiry: Callable[[], None]) -> None:
        self.max_staleness = max_staleness
        self.trusted = False
        self.until = 0.0  # time.monotonic()
        self.generation = 0
        self.last_contact: float | None = None  # time.monotonic()
        self._on_expiry = on_expiry
        self._watchdog: asyncio.TimerHandle | None = None
        self._lock = threading.Lock()

    def new_generation(self) -> int:
        """Start a new generation (at start and stop): nothing is trusted until it loads."""
        with self._lock:
            self.generation += 1
            self.trusted = False
            return self.generation

    def current(self) -> int:
        """The generation now, as a load starting now belongs to it."""
        with self._lock:
            return self.generation

    def swap(self, generation: int, asked: float, swap: Callable[[], None]) -> bool:
        """Run ``swap`` and trust its keys, if the load asked at ``asked`` is still current
        and not already too old to be trusted; False (and nothing swapped) if it is not.
        """
        with self._lock:
            if generation != self.generation or time.monotonic() >= asked + self.max_staleness:
                return False
            swap()
            self.trusted = True
            self.until = asked + self.max_staleness
            return True

    def if_trusted(self, action: Callable[[], None]) -> bool:
        """Run ``action`` unless the keys stopped being trusted (the watchdog fired)."""
        with self._lock:
            if not self.trusted:
                return False
            action()
            return True

    def contact(self, asked: float) -> None:
        """Redis answered a request sent at ``asked``: trust the keys max_staleness from then."""
        self.last_contact = asked
        with self._lock:
            self.until = max(self.until, asked + self.max_staleness)
        self.arm()

    def arm(self) -> None:
        """Set the watchdog for ``until`` (on the running event loop)."""
        self.disarm()
        delay = max(0.0, self.until - time.monotonic())
        self._watchdog = asyncio.get_running_loop().call_later(delay, self._fired)

    def disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _fired(self) -> None:
        self._watchdog = None
        self._on_expiry()

    def expire(self, refuse: Callable[[], None]) -> bool | None:
        """The watchdog's verdict: if ``until`` has passed, distrust the keys and run
        ``refuse`` (under the lock), returning whether they were trusted until now;
        None if trust was renewed meanwhile (a load in its thread), and the watchdog re-armed.
        """
        with self._lock:
            renewed = time.monotonic() < self.until
            if not renewed:
                was_trusted, self.trusted = self.trusted, False
                refuse()
        if renewed:
            self.arm()
            return None
        return was_trusted
