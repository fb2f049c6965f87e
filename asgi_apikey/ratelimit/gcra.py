"""The generic cell rate algorithm (GCRA) over integer time: one integer per active key.

A :class:`Rate` allows ``count`` requests per ``period`` seconds, with up to
``burst`` at once. :class:`GCRA` keeps one integer per active key, its
theoretical arrival time (TAT), and decides in O(1) with no per-request list:
a request at ``now`` is admitted when ``now >= TAT - (burst - 1) * interval``,
and then ``TAT = max(TAT, now) + interval``. That is a token bucket of
``burst`` tokens refilled at ``count / period``, without the refill step.

Times are integer nanoseconds of a monotonic clock (injectable for tests),
and a key's TAT is kept scaled by ``count`` so that every step is exact
integer arithmetic: no drift, however long a key lives. A key whose TAT has
passed holds a full bucket, the same as a key never seen, so it is forgotten.

A decision over several buckets is all or nothing (:meth:`GCRA.peek` each,
then :meth:`GCRA.commit` each when all admit), so a request refused by one
limit spends nothing of another.

>>> limiter = GCRA(clock=lambda: 0)
>>> rate = Rate(2, 1.0)
>>> [limiter.decide("k", rate).allowed for _ in range(3)]
[True, True, False]
>>> limiter.decide("k", rate).retry_after_ns
500000000
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from ..errors import ConfigurationError, not_shown_unless_word

__all__ = [
    "GCRA",
    "MAX_COUNT",
    "MAX_PERIOD",
    "OTHER_RATE",
    "Decision",
    "Rate",
    "check_count",
    "place",
]

_NS = 1_000_000_000
#: Idle keys are looked for when a new key would grow the table past twice its size
#: after the last look (and at least this many keys): amortised O(1), and the table
#: never holds more than twice the keys that were spending at that look, plus this.
SWEEP_MIN = 1024
#: Marks the place of a key's bucket under a second rate (see GCRA): no caller is a tuple
#: that starts with it.
OTHER_RATE = object()
#: The largest count or burst of a limit.
MAX_COUNT = 1_000_000_000
#: The longest period of a rate, in seconds (a year).
MAX_PERIOD = 366 * 86400


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` requests per ``period`` seconds, with up to ``burst`` at once.

    ``burst`` defaults to ``count``: a key idle for a whole period may spend
    it at once. Bad values raise :class:`ConfigurationError` naming the fix.

    >>> Rate(1000, 3600).interval_ns
    3600000000
    >>> try:
    ...     Rate(10, 1, burst=0)
    ... except ConfigurationError as error:
    ...     print(error)
    burst must be a whole number of requests from 1 to 1000000000, not 0
    """

    count: int
    period: float
    burst: int | None = None
    #: Precomputed for the hot path: the period in nanoseconds, the burst, the slack.
    period_ns: int = field(init=False, repr=False, compare=False)
    capacity: int = field(init=False, repr=False, compare=False)
    _slack: int = field(init=False, repr=False, compare=False)
    #: The seconds in which the rate refills the whole burst (at least 1): with ``q`` the
    #: burst, the ``w`` of the ``RateLimit-Policy`` field, so that ``q / w`` is the rate.
    window_s: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_count(self.count, "count")
        if (
            isinstance(self.period, bool)
            or not isinstance(self.period, (int, float))
            or not 0.001 <= self.period <= MAX_PERIOD
        ):
            raise ConfigurationError(
                f"period must be a number of seconds from 0.001 to {MAX_PERIOD} (a year)"
                f"{not_shown_unless_word(self.period)}",
                setting="period",
            )
        if self.burst is not None:
            check_count(self.burst, "burst")
        set_ = object.__setattr__  # frozen: set once, here
        set_(self, "period_ns", round(self.period * _NS))
        set_(self, "capacity", self.count if self.burst is None else self.burst)
        set_(self, "_slack", (self.capacity - 1) * self.period_ns)
        set_(self, "window_s", max(1, -(-self.capacity * self.period_ns // (self.count * _NS))))

    @property
    def interval_ns(self) -> int:
        """The time one request's share takes to come back, rounded down (for display)."""
        return self.period_ns // self.count


def check_count(value: object, setting: str) -> None:
    """Raise :class:`ConfigurationError` unless ``value`` is a count from 1 to MAX_COUNT."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise ConfigurationError(
            f"{setting} must be a whole number of requests from 1 to {MAX_COUNT}"
            f"{not_shown_unless_word(value)}",
            setting=setting,
        )


class Decision(NamedTuple):
    """One decision: whether the request is admitted, and what the headers say.

    ``remaining`` is how many more requests would be admitted right now;
    ``retry_after_ns`` (when refused) how long until one would be;
    ``reset_ns`` how long until the whole burst is back.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after_ns: int
    reset_ns: int


Held = TypeVar("Held", bound=tuple[Any, ...])


def place(
    state: dict[Hashable, Held], key: Hashable, limit: object
) -> tuple[Hashable, Held | None]:
    """Where ``key``'s state under ``limit`` is kept in ``state``, and what it holds.

    One place per (key, limit) while it holds state: the key itself when it
    holds this limit (its first item) or nothing and no other place holds it;
    else ``(OTHER_RATE, key, limit)``. So a key met under two limits in turn
    keeps a count for each, and neither starts afresh.
    """
    held = state.get(key)
    if held is not None and (held[0] is limit or held[0] == limit):
        return key, held
    other = (OTHER_RATE, key, limit)
    found = state.get(other)
    if found is not None or held is not None:
        return other, found
    return key, None


class GCRA:
    """Per-key GCRA state: one integer per active key and rate, O(1) per decision.

    ``clock`` returns integer nanoseconds of a monotonic clock
    (:func:`time.monotonic_ns` by default; a fake one in tests). Keys are any
    hashable value (a ``key_id``). A key decided under two rates in turn (two
    middlewares, a token's scopes, a changed limit) has a bucket for each, so
    neither starts afresh: a key's state sits under the key itself for the rate
    it met first, and under ``(OTHER_RATE, key, rate)`` for any other.
    """

    __slots__ = ("_clock", "_state", "_sweep_at")

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock
        # slot -> (rate, TAT * count): the TAT scaled so that every step is exact.
        self._state: dict[Hashable, tuple[Rate, int]] = {}
        self._sweep_at = SWEEP_MIN

    def __len__(self) -> int:
        """How many buckets have state (the others are full)."""
        return len(self._state)

    def _slot(self, key: Hashable, rate: Rate) -> tuple[Hashable, tuple[Rate, int] | None]:
        return place(self._state, key, rate)

    def decide(self, key: Hashable, rate: Rate, now: int | None = None) -> Decision:
        """Admit or refuse one request of ``key`` under ``rate`` at ``now`` (the clock's)."""
        if now is None:
            now = self._clock()
        decision, tat = self.peek(key, rate, now)
        if decision.allowed:
            self.commit(key, rate, tat, now)
        return decision

    def admit(self, key: Hashable, rate: Rate, now: int) -> int:
        """The request path's decision: ``0`` when admitted (and spent), else the wait in ns.

        The same arithmetic as :meth:`decide`, without building a :class:`Decision`.
        """
        count = rate.count
        scaled_now = now * count
        state = self._state
        held = state.get(key)
        if held is None or held[0] is not rate:  # rare: a new key, or another rate object
            key, held = self._slot(key, rate)
            if held is None and len(state) >= self._sweep_at:
                self._sweep(now)
        tat = held[1] if held is not None and held[1] > scaled_now else scaled_now
        waited = tat - scaled_now
        if waited > rate._slack:
            return -(-(waited - rate._slack) // count)
        state[key] = (rate, tat + rate.period_ns)
        return 0

    def reserve(self, key: Hashable, rate: Rate, now: int) -> int | None:
        """The TAT to :meth:`commit` if a request at ``now`` would be admitted, else ``None``.

        Part of an all-or-nothing decision over several buckets, spending nothing.
        """
        scaled_now = now * rate.count
        held = self._slot(key, rate)[1]
        tat = held[1] if held is not None and held[1] > scaled_now else scaled_now
        if tat - scaled_now > rate._slack:
            return None
        return tat + rate.period_ns

    def peek(self, key: Hashable, rate: Rate, now: int) -> tuple[Decision, int]:
        """What :meth:`decide` would answer at ``now``, and the TAT to :meth:`commit` then."""
        count, period = rate.count, rate.period_ns
        scaled_now = now * count
        held = self._slot(key, rate)[1]
        tat = held[1] if held is not None and held[1] > scaled_now else scaled_now
        # Admitted when the bucket holds a token: TAT - now <= (burst - 1) * interval,
        # all multiplied by count: (TAT - now) * count <= (burst - 1) * period.
        waited = tat - scaled_now
        if waited > rate._slack:
            retry = -(-(waited - rate._slack) // count)  # ceil: never early
            return Decision(False, rate.capacity, 0, retry, -(-waited // count)), tat
        waited += period
        remaining = (rate.capacity * period - waited) // period
        return Decision(True, rate.capacity, remaining, 0, -(-waited // count)), tat + period

    def commit(self, key: Hashable, rate: Rate, tat: int, now: int) -> None:
        """Record an admitted request: ``tat`` is what :meth:`peek` returned."""
        slot, held = self._slot(key, rate)
        if held is None and len(self._state) >= self._sweep_at:
            self._sweep(now)
            slot = self._slot(key, rate)[0]  # the sweep may have emptied the key's own place
        self._state[slot] = (rate, tat)

    def state(self, key: Hashable, rate: Rate, now: int | None = None) -> Decision:
        """Where ``key`` stands under ``rate`` at ``now``, deciding nothing (for usage reports)."""
        if now is None:
            now = self._clock()
        return self.peek(key, rate, now)[0]

    def _sweep(self, now: int) -> None:
        self.forget_idle(now)
        self._sweep_at = max(SWEEP_MIN, 2 * len(self._state))

    def forget_idle(self, now: int | None = None) -> int:
        """Drop the keys whose bucket is full again; return how many were dropped."""
        if now is None:
            now = self._clock()
        idle = [key for key, (rate, tat) in self._state.items() if tat <= now * rate.count]
        for key in idle:
            del self._state[key]
        return len(idle)
