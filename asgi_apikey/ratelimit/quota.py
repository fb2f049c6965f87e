"""Quotas: a count per calendar window (an hour, a day, a month, in UTC).

A quota counts the requests admitted in the current window and refuses once
the count is reached, until the window ends. Windows are calendar ones in UTC
(a month starts on its first day at 00:00 UTC), read from the wall clock in
integer nanoseconds since the epoch, so every instance agrees on where a
window starts and ends. :class:`QuotaCounter` keeps one pair per active key
(the window it counts and the count) and forgets a key once its window ends.

>>> day = Quota(2, "day")
>>> counter = QuotaCounter(clock=lambda: 0)
>>> [counter.decide("k", day).allowed for _ in range(3)]
[True, True, False]
>>> counter.decide("k", day).retry_after_ns == 86400 * 10**9
True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import ConfigurationError, not_shown_unless_word
from .gcra import SWEEP_MIN, Decision, check_count, place

__all__ = ["WINDOWS", "Quota", "QuotaCounter", "window_of"]

_NS = 1_000_000_000
#: The calendar windows a quota may count over, and their nominal length in seconds
#: (what ``RateLimit-Policy`` advertises as ``w``; a month is taken as 30 days there).
WINDOWS: dict[str, int] = {"hour": 3600, "day": 86400, "month": 30 * 86400}


@dataclass(frozen=True, slots=True)
class Quota:
    """``count`` requests per calendar ``window`` (``"hour"``, ``"day"`` or ``"month"``, UTC).

    >>> Quota(10_000, "month")
    Quota(count=10000, window='month')
    """

    count: int
    window: str

    def __post_init__(self) -> None:
        check_count(self.count, "quota count")
        if self.window not in WINDOWS:
            raise ConfigurationError(
                f"a quota window must be one of {', '.join(WINDOWS)} (calendar windows in "
                f"UTC){not_shown_unless_word(self.window)}",
                setting="quota",
            )

    @property
    def seconds(self) -> int:
        """The window's nominal length (a month counts as 30 days)."""
        return WINDOWS[self.window]


def window_of(window: str, now_ns: int) -> tuple[int, int]:
    """The (start, end) in ns since the epoch of the calendar ``window`` holding ``now_ns``.

    >>> window_of("day", 86400 * 10**9 + 5)
    (86400000000000, 172800000000000)
    >>> start, end = window_of("month", 0)
    >>> (end - start) // (86400 * 10**9)
    31
    """
    if window != "month":
        length = WINDOWS[window] * _NS
        start = now_ns - now_ns % length
        return start, start + length
    moment = datetime.fromtimestamp(now_ns // _NS, UTC)
    first = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    following = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)
    return int(first.timestamp()) * _NS, int(following.timestamp()) * _NS


class QuotaCounter:
    """Per-key quota counts: one (window end, count) pair per active key, O(1) per decision.

    ``clock`` returns integer nanoseconds since the epoch (:func:`time.time_ns`
    by default; a fake one in tests). A key whose window has ended is the same
    as a key never seen, so it is forgotten. A key counted under two quotas in
    turn has a count for each, kept as GCRA keeps a second rate.
    """

    __slots__ = ("_bounds", "_clock", "_state", "_sweep_at")

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._state: dict[Hashable, tuple[Quota, int, int]] = {}  # key -> (quota, end, used)
        self._bounds: dict[str, tuple[int, int]] = {}  # window -> the current (start, end)
        self._sweep_at = SWEEP_MIN  # as GCRA's: when a new key would double the table

    def __len__(self) -> int:
        return len(self._state)

    def _window(self, window: str, now: int) -> tuple[int, int]:
        bounds = self._bounds.get(window)
        if bounds is None or not bounds[0] <= now < bounds[1]:
            bounds = self._bounds[window] = window_of(window, now)
        return bounds

    def _slot(self, key: Hashable, quota: Quota) -> tuple[Hashable, tuple[Quota, int, int] | None]:
        return place(self._state, key, quota)  # a count per (key, quota), as GCRA's buckets

    def _used(self, key: Hashable, quota: Quota, end: int) -> int:
        held = self._slot(key, quota)[1]
        return held[2] if held is not None and held[1] == end else 0

    def peek(self, key: Hashable, quota: Quota, now: int) -> tuple[Decision, int, int]:
        """What :meth:`decide` would answer, and the (end, count) to :meth:`commit` if admitted."""
        end = self._window(quota.window, now)[1]
        used = self._used(key, quota, end)
        left = end - now
        if used >= quota.count:
            return Decision(False, quota.count, 0, left, left), end, used
        return Decision(True, quota.count, quota.count - used - 1, 0, left), end, used + 1

    def reserve(self, key: Hashable, quota: Quota, now: int) -> tuple[int, int] | None:
        """The (end, count) to :meth:`commit` if a request at ``now`` would be admitted.

        ``None`` when the quota is spent; part of an all-or-nothing decision.
        """
        end = self._window(quota.window, now)[1]
        used = self._used(key, quota, end)
        return None if used >= quota.count else (end, used + 1)

    def commit(self, key: Hashable, quota: Quota, end: int, used: int, now: int) -> None:
        """Record an admitted request: ``end`` and ``used`` are what :meth:`peek` returned."""
        state = self._state
        slot, held = self._slot(key, quota)
        if held is None and len(state) >= self._sweep_at:
            self.forget_ended(now)
            self._sweep_at = max(SWEEP_MIN, 2 * len(state))
        state[slot] = (quota, end, used)

    def decide(self, key: Hashable, quota: Quota, now: int | None = None) -> Decision:
        """Admit or refuse one request of ``key`` under ``quota`` at ``now`` (the clock's)."""
        if now is None:
            now = self._clock()
        decision, end, used = self.peek(key, quota, now)
        if decision.allowed:
            self.commit(key, quota, end, used, now)
        return decision

    def used(self, key: Hashable, quota: Quota, now: int | None = None) -> int:
        """How many requests ``key`` spent of ``quota`` in the window holding ``now``."""
        if now is None:
            now = self._clock()
        return self._used(key, quota, self._window(quota.window, now)[1])

    def forget_ended(self, now: int | None = None) -> int:
        """Drop the keys whose window has ended; return how many were dropped."""
        if now is None:
            now = self._clock()
        ended = [key for key, (_, end, _) in self._state.items() if end <= now]
        for key in ended:
            del self._state[key]
        return len(ended)
