"""The failure throttle: how many refusals are logged one by one, per reason and client.

:class:`FailureThrottle` decides, for each refusal an :class:`~asgi_apikey.audit.Audit`
counts, whether it is logged as its own event or held back, and hands over what
it held back (:class:`HeldBack`) when its interval ends. It keeps a bounded
table of clients and knows nothing of events or of structlog: the audit logs
what the throttle lets through and reports what it held.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ConfigurationError, not_shown_unless_word

__all__ = [
    "MAX_RETIRED_CLIENTS",
    "MAX_THROTTLED_CLIENTS",
    "TOP_CLIENTS",
    "FailureThrottle",
    "HeldBack",
    "check_throttle",
]

#: Clients the failure throttle remembers in one interval; the oldest is forgotten first.
MAX_THROTTLED_CLIENTS = 4096
#: Busy clients whose counts the throttle keeps for its report after forgetting them.
MAX_RETIRED_CLIENTS = 256
#: Clients named in an ``authentication_failures_suppressed`` event, most refused first.
TOP_CLIENTS = 5


@dataclass(frozen=True, slots=True)
class HeldBack:
    """What the throttle held back of one reason in an ended interval."""

    #: Refusals not logged one by one.
    count: int
    #: The clients with the most refusals of this reason in the interval, most first:
    #: ``(host, refusals)``, logged and held back alike; at most :data:`TOP_CLIENTS`.
    top_clients: tuple[tuple[str, int], ...]


class FailureThrottle:
    """At most ``limit`` events per reason, and ``per_client`` per client and reason, per interval.

    Half of each reason's budget is kept for clients' first refusals: a
    client's second and later refusals share the other half, so a few noisy
    clients cannot spend the budget that tells of anyone else. A client's
    first refusal in an interval may use the whole budget.

    What it holds back it counts; :meth:`drain` hands over those counts, with
    the clients that were refused most, when the interval has ended. Memory is
    bounded: at most :data:`MAX_THROTTLED_CLIENTS` (reason, client) pairs are
    remembered per interval; when the table is full its oldest quarter is
    forgotten, keeping only the counts of the busiest of them (at most
    :data:`MAX_RETIRED_CLIENTS`) for the report. A forgotten client gets a
    fresh budget, never more than the per-reason limit allows in all.
    Requests without a client address (a unix socket) have only the per-reason
    limit and are named in no report.

    >>> throttle = FailureThrottle(limit=2, interval=60.0, per_client=1, clock=lambda: 0.0)
    >>> [throttle.admit("invalid", "10.0.0.1") for _ in range(2)]
    [True, False]
    >>> throttle.admit("invalid", "10.0.0.2"), throttle.admit("invalid", "10.0.0.3")
    (True, False)
    >>> throttle.drain(force=True)
    {'invalid': HeldBack(count=2, top_clients=(('10.0.0.1', 2), ('10.0.0.2', 1), ('10.0.0.3', 1)))}
    """

    __slots__ = (
        "_by_client",
        "_by_reason",
        "_clock",
        "_lock",
        "_max_clients",
        "_repeats",
        "_retired",
        "_run",
        "_run_pair",
        "_suppressed",
        "_window_end",
        "interval",
        "limit",
        "per_client",
        "realtime",
        "repeat_limit",
    )

    def __init__(
        self,
        limit: int,
        interval: float,
        *,
        per_client: int,
        max_clients: int = MAX_THROTTLED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.interval = interval
        self.per_client = per_client
        #: Events per reason and interval for clients' second and later refusals.
        self.repeat_limit = limit - limit // 2
        self._max_clients = max(1, max_clients)
        self._clock = clock
        self.realtime = clock is time.monotonic  # event loop timers keep this clock
        self._lock = threading.Lock()
        self._window_end = clock() + interval
        # Logged events per reason, and how many of them were clients' repeats.
        self._by_reason: dict[str, int] = {}
        self._repeats: dict[str, int] = {}
        # Refusals per (reason, client), logged or not; and those of forgotten busy pairs.
        self._by_client: dict[tuple[str, str], int] = {}
        self._retired: dict[tuple[str, str], int] = {}
        self._suppressed: dict[str, int] = {}
        # A flood's run: refusals of the pair held back last, over its own budget,
        # counted here and added to the tables (settled) before anything else is
        # decided or read. The pair stays over its budget until the interval ends.
        self._run_pair: tuple[str, str] | None = None
        self._run = 0

    def hold(self, reason: str) -> None:
        """Count one refusal of ``reason`` as held back."""
        suppressed = self._suppressed
        suppressed[reason] = suppressed.get(reason, 0) + 1

    def admit(self, reason: str, client: str | None) -> bool:
        """Whether to log this refusal; when not, it is counted as suppressed.

        Every refusal from a client is counted under it, for the report. Under a
        flood nearly every refusal comes from a client already seen and is over
        its budget: that is decided from lock-free looks (dict reads and writes
        are atomic), and the lock is taken only to remember a new client or to
        spend budget.
        """
        if self._run_pair is not None:
            self._settle()
        if client is None:
            if self._by_reason.get(reason, 0) >= self.limit:
                self.hold(reason)
                return False
            with self._lock:
                return self._spend(reason, repeat=False)
        pair = (reason, client)
        table = self._by_client
        seen = table.get(pair, 0)
        if seen:
            # Between threads an increment may be lost (the report counts a little
            # less), or re-add a pair another thread just forgot (one more for a moment).
            table[pair] = seen + 1
            if seen >= self.per_client:
                # A flood's common case, inline (what hold() does): this client has
                # spent its own budget, so neither reason budget needs a look; its
                # next refusals, while no other comes between, are a run.
                suppressed = self._suppressed
                suppressed[reason] = suppressed.get(reason, 0) + 1
                self._run_pair, self._run = pair, 0
                return False
        else:
            with self._lock:
                seen = self._remember(pair)
        if (
            seen >= self.per_client
            or self._by_reason.get(reason, 0) >= self.limit
            or (seen and self._repeats.get(reason, 0) >= self.repeat_limit)
        ):
            self.hold(reason)
            return False
        with self._lock:
            return self._spend(reason, repeat=seen > 0)

    def admit_in_interval(self, reason: str, client: str | None) -> bool | None:
        """:meth:`admit`, or ``None`` (nothing counted) when the interval has ended.

        One call for what a refusal asks (has the interval ended? may it be
        logged?): the caller drains the ended interval, then calls :meth:`admit`.
        A flood's common case, the same client as the refusal before, over its
        own budget, is one comparison and one increment.

        >>> throttle = FailureThrottle(limit=2, interval=60.0, per_client=1, clock=lambda: 0.0)
        >>> [throttle.admit_in_interval("invalid", "10.0.0.1") for _ in range(3)]
        [True, False, False]
        """
        if self._clock() >= self._window_end:
            return None
        run = self._run_pair
        if run is not None and run[1] == client and run[0] == reason:
            self._run += 1
            return False
        return self.admit(reason, client)

    def _settle(self) -> None:
        """Add the run's refusals to the tables, and end it."""
        pair, run = self._run_pair, self._run
        self._run_pair, self._run = None, 0
        if pair is not None and run:
            table, suppressed = self._by_client, self._suppressed
            table[pair] = table.get(pair, 0) + run
            suppressed[pair[0]] = suppressed.get(pair[0], 0) + run

    def _remember(self, pair: tuple[str, str]) -> int:
        """Count a refusal of a pair not in the table (under the lock); its earlier refusals."""
        table = self._by_client
        seen = table.get(pair, 0)  # another thread may have added it meanwhile
        if not seen:
            if self._retired:
                seen = self._retired.pop(pair, 0)  # a busy client forgotten earlier
            if len(table) >= self._max_clients:
                self._forget_oldest(table)
        table[pair] = seen + 1
        return seen

    def _forget_oldest(self, table: dict[tuple[str, str], int]) -> None:
        # A quarter at a time: one pass over the oldest entries for many new ones
        # (removing them one by one would rescan the removed slots each time).
        retired = self._retired
        for pair in list(itertools.islice(table, max(1, self._max_clients // 4))):
            count = table.pop(pair, 0)
            if count > 1:
                retired[pair] = retired.get(pair, 0) + count
        if len(retired) > MAX_RETIRED_CLIENTS:
            busiest = heapq.nlargest(MAX_RETIRED_CLIENTS // 2, retired.items(), key=_count)
            self._retired = dict(busiest)

    def _spend(self, reason: str, *, repeat: bool) -> bool:
        """Spend one event of ``reason``'s budget (under the lock), if any is left."""
        logged = self._by_reason.get(reason, 0)
        repeats = self._repeats.get(reason, 0)
        if logged >= self.limit or (repeat and repeats >= self.repeat_limit):  # spent meanwhile
            self.hold(reason)
            return False
        self._by_reason[reason] = logged + 1
        if repeat:
            self._repeats[reason] = repeats + 1
        return True

    def due(self) -> bool:
        """Whether the interval has ended (read without the lock: a hint)."""
        return self._clock() >= self._window_end

    def drain(self, *, force: bool = False) -> dict[str, HeldBack]:
        """Start a new interval if this one has ended (or ``force``); what it held back.

        One :class:`HeldBack` per reason with refusals held back: their count
        and the clients refused most often.
        """
        with self._lock:
            now = self._clock()
            if not force and now < self._window_end:
                return {}
            self._settle()
            suppressed, table, retired = self._suppressed, self._by_client, self._retired
            # New tables, not cleared ones: a lock-free write racing with this lands
            # in the old table, which is dropped.
            self._suppressed, self._by_client, self._retired = {}, {}, {}
            self._by_reason, self._repeats = {}, {}
            self._window_end = now + self.interval
        if not suppressed:
            return {}
        busiest: dict[str, dict[str, int]] = {reason: {} for reason in suppressed}
        for (reason, client), count in itertools.chain(table.items(), retired.items()):
            counts = busiest.get(reason)
            if counts is not None:
                counts[client] = counts.get(client, 0) + count
        return {
            reason: HeldBack(
                count, tuple(heapq.nlargest(TOP_CLIENTS, busiest[reason].items(), key=_count))
            )
            for reason, count in suppressed.items()
        }

    @property
    def clients(self) -> int:
        """How many (reason, client) pairs the current interval remembers."""
        return len(self._by_client)  # a run's pair is in the table already

    @property
    def holding(self) -> bool:
        """Whether the current interval has held back any refusal."""
        return bool(self._suppressed)  # a run's first refusal is in it already

    @property
    def remaining(self) -> float:
        """Seconds until the current interval ends (0 when it has)."""
        return max(0.0, self._window_end - self._clock())


def _count(item: tuple[object, int]) -> int:
    return item[1]


def check_throttle(limit: object, interval: object, per_client: object) -> tuple[int, float, int]:
    """The throttle's settings, checked: ``(limit, interval, per_client)``.

    ``per_client=None`` means a quarter of ``limit`` (at least 1). A bad value
    raises :class:`~asgi_apikey.errors.ConfigurationError` naming the setting.

    >>> check_throttle(100, 60, None)
    (100, 60.0, 25)
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 1_000_000:
        raise ConfigurationError(
            "failure_log_limit must be an int from 0 (log no failure one by one) to "
            f"1000000 events per reason and interval{not_shown_unless_word(limit)}",
            setting="failure_log_limit",
        )
    if (
        isinstance(interval, bool)
        or not isinstance(interval, (int, float))
        or not 0.1 <= interval <= 86400
    ):
        raise ConfigurationError(
            "failure_log_interval must be a number of seconds from 0.1 to 86400"
            f"{not_shown_unless_word(interval)}",
            setting="failure_log_interval",
        )
    if per_client is None:
        per_client = max(1, limit // 4)
    if isinstance(per_client, bool) or not isinstance(per_client, int) or per_client < 1:
        raise ConfigurationError(
            "failure_log_per_client must be an int of at least 1 event per client and "
            "interval, or None for a quarter of failure_log_limit"
            f"{not_shown_unless_word(per_client)}",
            setting="failure_log_per_client",
        )
    return limit, float(interval), per_client
