"""The local limiter against a plain reference model, on a simulated clock (issue 18).

:class:`~asgi_apikey.ratelimit.local.LocalLimiter` decides a request's checks
(a caller's rate and quota, a path rule's rate for that caller) all or
nothing. The reference here shares none of its code: an exact token bucket in
:class:`~fractions.Fraction` per (caller, rate), and a counter per calendar
window computed with :mod:`datetime` in UTC. Over generated request times
they must agree on every request (verdict, each part, the wait), a refusal
must spend nothing, no interval of length t may see more than
burst + rate * t admitted, quotas must reset exactly at the window's edge
(hours, days, months of 28 to 31 days, leap years, the year's end) and say
the exact wait to it, and idle state must be forgotten within its bound.

Example counts come from the Hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_apikey.ratelimit.gcra import GCRA, Rate
from asgi_apikey.ratelimit.limits import RateLimit
from asgi_apikey.ratelimit.local import Check, LocalLimiter, Verdict
from asgi_apikey.ratelimit.quota import Quota

NS = 1_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def ns_of(moment: datetime) -> int:
    """Nanoseconds since the epoch of a whole-second UTC datetime, exactly."""
    return (moment - EPOCH) // SECOND * NS


# ====================================================================== the reference


class Bucket:
    """``capacity`` tokens refilled at ``count`` per ``period_ns``, in exact fractions."""

    def __init__(self, rate: Rate) -> None:
        self.capacity = Fraction(rate.capacity)
        self.per_ns = Fraction(rate.count, rate.period_ns)
        self.tokens = self.capacity
        self.last: int | None = None

    def at(self, now: int) -> Fraction:
        """The tokens held at ``now`` (refilled since the last look, capped)."""
        if self.last is None:
            return self.capacity
        return min(self.capacity, self.tokens + (now - self.last) * self.per_ns)

    def wait_ns(self, now: int) -> int:
        """Nanoseconds until one token is held, rounded up (0 when one is)."""
        held = self.at(now)
        if held >= 1:
            return 0
        wait = (1 - held) / self.per_ns
        return -(-wait.numerator // wait.denominator)

    def spend(self, now: int) -> None:
        self.tokens = self.at(now) - 1
        self.last = now


def window_start(window: str, moment: datetime) -> datetime:
    """The first instant of the calendar ``window`` holding ``moment`` (UTC)."""
    if window == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if window == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_window(window: str, start: datetime) -> datetime:
    """The first instant of the window after the one starting at ``start``."""
    if window == "hour":
        return start + timedelta(hours=1)
    if window == "day":
        return start + timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def edges_of(window: str, now_ns: int) -> tuple[int, int]:
    """(start, end) in ns of the calendar window holding ``now_ns``, by datetime alone."""
    moment = EPOCH + timedelta(seconds=now_ns // NS)
    start = window_start(window, moment)
    return ns_of(start), ns_of(next_window(window, start))


@dataclass
class Counter:
    """Requests counted per calendar window: the reference of a quota."""

    quota: Quota
    counts: dict[int, int] = field(default_factory=dict)  # window start (ns) -> admitted

    def remaining(self, now: int) -> int:
        start, _ = edges_of(self.quota.window, now)
        return self.quota.count - self.counts.get(start, 0)

    def wait_ns(self, now: int) -> int:
        return 0 if self.remaining(now) > 0 else edges_of(self.quota.window, now)[1] - now

    def spend(self, now: int) -> None:
        start, _ = edges_of(self.quota.window, now)
        self.counts[start] = self.counts.get(start, 0) + 1


@dataclass
class Expected:
    """What the reference says of one request: per part (name -> admits, remaining), the wait."""

    allowed: bool
    parts: dict[str, tuple[bool, int]]
    wait_ns: int


class Reference:
    """Every (caller, limit part) apart; a request spends from all its parts or from none."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[Hashable, Rate], Bucket] = {}
        self.counters: dict[tuple[Hashable, Quota], Counter] = {}

    def parts(self, checks: Sequence[Check]) -> list[tuple[str, Bucket | Counter]]:
        found: list[tuple[str, Bucket | Counter]] = []
        for who, limit, prefix in checks:
            if limit.rate is not None:
                bucket = self.buckets.setdefault((who, limit.rate), Bucket(limit.rate))
                found.append((prefix + "rate", bucket))
            if limit.quota is not None:
                counter = self.counters.setdefault((who, limit.quota), Counter(limit.quota))
                found.append((prefix + "quota", counter))
        return found

    def decide(self, checks: Sequence[Check], now: int) -> Expected:
        parts = self.parts(checks)
        states: dict[str, tuple[bool, int]] = {}
        waits = []
        for name, part in parts:
            wait = part.wait_ns(now)
            if isinstance(part, Bucket):
                left = int(part.at(now)) - 1 if wait == 0 else 0
            else:
                left = part.remaining(now) - 1 if wait == 0 else 0
            states[name] = (wait == 0, left)
            waits.append(wait)
        allowed = all(wait == 0 for wait in waits)
        if allowed:
            for _, part in parts:
                part.spend(now)
        return Expected(allowed, states, max(waits, default=0))


# ====================================================================== strategies

rates = st.builds(
    Rate,
    count=st.integers(1, 12),
    period=st.sampled_from([0.25, 1, 3, 60]),
    burst=st.one_of(st.none(), st.integers(1, 15)),
)
quotas = st.builds(Quota, count=st.integers(1, 20), window=st.sampled_from(["hour", "day"]))


@st.composite
def limits(draw: st.DrawFn) -> RateLimit:
    """A limit with a rate, a quota, or both."""
    rate = draw(st.one_of(st.none(), rates))
    quota = draw(quotas if rate is None else st.one_of(st.none(), quotas))
    return RateLimit(rate, quota=quota)


# Instants where calendar windows end: hours, days, months of every length, leap days.
EDGES = [
    datetime(2023, 2, 28, tzinfo=UTC),  # the day before March 1 of a common year
    datetime(2023, 3, 1, tzinfo=UTC),  # after a 28-day February
    datetime(2024, 2, 29, tzinfo=UTC),  # a leap day
    datetime(2024, 3, 1, tzinfo=UTC),  # after a 29-day February
    datetime(2000, 3, 1, tzinfo=UTC),  # 2000 is a leap year (divisible by 400)
    datetime(2100, 3, 1, tzinfo=UTC),  # 2100 is not (divisible by 100)
    datetime(2025, 5, 1, tzinfo=UTC),  # after a 30-day April
    datetime(2025, 7, 1, tzinfo=UTC),  # after a 30-day June
    datetime(2025, 8, 1, tzinfo=UTC),  # after a 31-day July
    datetime(2025, 12, 1, tzinfo=UTC),  # after a 30-day November
    datetime(2026, 1, 1, tzinfo=UTC),  # the year's end
    datetime(2030, 6, 15, 13, tzinfo=UTC),  # an hour in the middle of a month
]


def near_an_edge(spread_s: int) -> st.SearchStrategy[int]:
    """A start time (ns) within ``spread_s`` seconds of one of :data:`EDGES`."""
    return st.builds(
        lambda edge, offset: ns_of(edge) + offset,
        st.sampled_from(EDGES),
        st.integers(-spread_s * NS, spread_s * NS),
    )


@dataclass
class Clock:
    """The simulated clock: integer nanoseconds, moved by the test."""

    now: int = 0

    def __call__(self) -> int:
        return self.now


def snapshot(limiter: LocalLimiter) -> tuple[object, object]:
    """Everything the limiter holds per caller, copied: to check that a refusal spent nothing."""
    return copy.deepcopy(limiter.rates._state), copy.deepcopy(limiter.quotas._state)


def check_verdict(verdict: Verdict, expected: Expected, when: object) -> None:
    assert verdict.allowed == expected.allowed, when
    got = {part.name: (part.decision.allowed, part.decision.remaining) for part in verdict.parts}
    assert got == expected.parts, when
    assert verdict.retry_after_ns == (0 if expected.allowed else expected.wait_ns), when
    if not expected.allowed:
        refusing = [name for name, (admits, _) in expected.parts.items() if not admits]
        assert verdict.refused_by == refusing[0], when


# ====================================================================== (a) the model


#: Callers' own limits, a path limit, a start time (ns), requests (gap ns, caller, on path).
Scenario = tuple[list[RateLimit], RateLimit, int, list[tuple[int, int, bool]]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Callers' own limits, a path limit, a start time, and requests (gap ns, caller, on path)."""
    own = draw(st.lists(limits(), min_size=1, max_size=3))
    on_path = draw(limits())
    start = draw(near_an_edge(3600))
    scale = draw(st.sampled_from([NS // 20, NS, 30 * NS, 600 * NS]))
    requests = draw(
        st.lists(
            st.tuples(st.integers(0, scale), st.integers(0, len(own) - 1), st.booleans()),
            min_size=1,
            max_size=80,
        )
    )
    return own, on_path, start, requests


def checks_for(caller: int, own: RateLimit, path_limit: RateLimit, on_path: bool) -> list[Check]:
    """As a LimitPlan builds them: the caller's own limit, and the path's for that caller."""
    who = f"key-{caller}"
    checks = [Check(who, own)]
    if on_path:
        checks.append(Check(("path", "/v1/chat", who), path_limit, "path-"))
    return checks


@given(scenarios())
def test_the_limiter_decides_every_request_as_the_reference_all_or_nothing(
    scenario: Scenario,
) -> None:
    own, path_limit, start, requests = scenario
    clock = Clock(start)
    limiter, reference = LocalLimiter(clock=clock), Reference()
    for number, (gap, caller, on_path) in enumerate(requests):
        clock.now += gap
        checks = checks_for(caller, own[caller], path_limit, on_path)
        before = snapshot(limiter)
        verdict = limiter.decide(checks)
        expected = reference.decide(checks, clock.now)
        check_verdict(verdict, expected, (number, clock.now))
        if not verdict.allowed:
            # All or nothing: a refused request spent nothing of any part.
            assert snapshot(limiter) == before, number
            # And the wait is exact: refused a nanosecond before it, admitted at it.
            assert_exact_wait(limiter, clock, checks, verdict.retry_after_ns)


@given(
    limits=st.lists(limits(), min_size=2, max_size=3),
    start=near_an_edge(3600),
    requests=st.lists(
        st.tuples(st.integers(0, 30 * NS), st.integers(0, 2), st.booleans()),
        min_size=1,
        max_size=80,
    ),
)
def test_one_caller_under_several_limits_in_turn_keeps_a_bucket_for_each(
    limits: list[RateLimit], start: int, requests: list[tuple[int, int, bool]]
) -> None:
    """A caller decided under two limits in turn (two middlewares, a token's scopes) never
    starts afresh: each limit holds on its own, as the reference keeps them, through sweeps."""
    clock = Clock(start)
    limiter, reference = LocalLimiter(clock=clock), Reference()
    for number, (gap, which, sweep) in enumerate(requests):
        clock.now += gap
        if sweep:  # idle buckets may go at any time: a caller's other bucket must not
            limiter.rates.forget_idle(clock.now)
            limiter.quotas.forget_ended(clock.now)
        checks = [Check("key-0", limits[which % len(limits)])]
        verdict = limiter.decide(checks)
        check_verdict(verdict, reference.decide(checks, clock.now), (number, clock.now))


@given(scenarios())
def test_admit_answers_as_decide_and_spends_the_same(scenario: Scenario) -> None:
    """The request path's ``admit`` is ``decide(...).allowed``, state for state."""
    own, path_limit, start, requests = scenario
    clock = Clock(start)
    deciding, admitting = LocalLimiter(clock=clock), LocalLimiter(clock=clock)
    for number, (gap, caller, on_path) in enumerate(requests):
        clock.now += gap
        checks = checks_for(caller, own[caller], path_limit, on_path)
        assert admitting.admit(checks) == deciding.decide(checks).allowed, number
        assert snapshot(admitting) == snapshot(deciding), number


def assert_exact_wait(
    limiter: LocalLimiter, clock: Clock, checks: Sequence[Check], wait: int
) -> None:
    """On copies of the limiter: refused at ``now + wait - 1``, admitted at ``now + wait``."""
    for delay, admitted in ((wait - 1, False), (wait, True)):
        twin, twin_clock = copy.deepcopy((limiter, clock))
        twin_clock.now += delay
        assert twin.decide(checks).allowed == admitted, (clock.now, delay)


@given(scenarios())
def test_the_limiter_never_refuses_what_the_reference_admits(
    scenario: Scenario,
) -> None:
    own, path_limit, start, requests = scenario
    clock = Clock(start)
    limiter, reference = LocalLimiter(clock=clock), Reference()
    for gap, caller, on_path in requests:
        clock.now += gap
        checks = checks_for(caller, own[caller], path_limit, on_path)
        admitted = reference.decide(checks, clock.now).allowed
        assert limiter.decide(checks).allowed or not admitted, clock.now


@given(scenarios())
def test_no_interval_admits_more_than_burst_plus_rate_times_its_length(
    scenario: Scenario,
) -> None:
    own, path_limit, start, requests = scenario
    clock = Clock(start)
    limiter = LocalLimiter(clock=clock)
    admitted: dict[tuple[Hashable, Rate], list[int]] = {}
    quota_counts: dict[tuple[Hashable, Quota, int], int] = {}
    for gap, caller, on_path in requests:
        clock.now += gap
        checks = checks_for(caller, own[caller], path_limit, on_path)
        if not limiter.decide(checks).allowed:
            continue
        for who, limit, _ in checks:
            if limit.rate is not None:
                admitted.setdefault((who, limit.rate), []).append(clock.now)
            if limit.quota is not None:
                window = edges_of(limit.quota.window, clock.now)[0]
                key = (who, limit.quota, window)
                quota_counts[key] = quota_counts.get(key, 0) + 1
                assert quota_counts[key] <= limit.quota.count, key
    for (_, rate), moments in admitted.items():
        for first in range(len(moments)):
            for last in range(first, len(moments)):
                length = moments[last] - moments[first]
                # burst + count * t / period, exactly: (n - burst) * period <= count * t.
                assert (last - first + 1 - rate.capacity) * rate.period_ns <= rate.count * length


@given(
    rate=rates,
    start=st.integers(0, 10**18),
    gaps=st.lists(st.integers(0, 3 * NS), min_size=1, max_size=80),
)
def test_the_request_paths_one_call_decides_as_the_reference(
    rate: Rate, start: int, gaps: list[int]
) -> None:
    # GCRA.admit is what the middleware calls for a key with one rate and nothing else
    # to report: 0 when admitted (and spent), else the exact wait.
    limiter, bucket, now = GCRA(), Bucket(rate), start
    for gap in gaps:
        now += gap
        wait = bucket.wait_ns(now)
        assert limiter.admit("k", rate, now) == wait, now
        if wait == 0:
            bucket.spend(now)


def test_a_path_refusal_spends_nothing_of_the_key_and_the_other_way_round() -> None:
    clock = Clock(1_000 * NS)
    limiter = LocalLimiter(clock=clock)
    key = Check("k", RateLimit("3/minute"))
    path = Check(("path", "/v1/chat", "k"), RateLimit("1/minute"), "path-")
    assert limiter.decide([key, path]).allowed
    for _ in range(5):  # refused by the path: the key's bucket keeps its two requests
        verdict = limiter.decide([key, path])
        assert (verdict.allowed, verdict.refused_by) == (False, "path-rate")
    assert limiter.decide([key]).allowed
    assert limiter.decide([key]).allowed
    refused = limiter.decide([key, path])
    assert refused.refused_by == "rate"  # both refuse; the key's part comes first
    assert [part.decision.allowed for part in refused.parts] == [False, False]


# ====================================================================== (b) quota edges


_EDGE_WINDOWS = {
    "hour": [edge for edge in EDGES if edge.minute == 0],
    "day": [edge for edge in EDGES if edge.hour == 0],
    "month": [edge for edge in EDGES if edge.day == 1 and edge.hour == 0],
}
#: (window, an instant where such a window ends).
WINDOW_EDGES = [(window, edge) for window, edges in _EDGE_WINDOWS.items() for edge in edges]


def test_the_edges_cover_months_of_every_length_leap_years_and_the_year_end() -> None:
    months = _EDGE_WINDOWS["month"]
    # How long the month that ends at each edge was, by the calendar.
    assert {(edge - window_start("month", edge - SECOND)).days for edge in months} == {
        28,
        29,
        30,
        31,
    }
    assert datetime(2026, 1, 1, tzinfo=UTC) in months
    assert all(edges_of(window, ns_of(edge))[0] == ns_of(edge) for window, edge in WINDOW_EDGES)


@pytest.mark.parametrize(
    ("window", "edge"),
    WINDOW_EDGES,
    ids=[f"{window}-{edge:%Y-%m-%dT%H}" for window, edge in WINDOW_EDGES],
)
def test_a_spent_quota_comes_back_exactly_at_the_windows_edge(window: str, edge: datetime) -> None:
    end = ns_of(edge)
    clock = Clock(end - 2)
    limiter = LocalLimiter(clock=clock)
    checks = [Check("k", RateLimit(quota=f"2/{window}"))]
    assert limiter.decide(checks).allowed
    assert limiter.decide(checks).allowed
    refused = limiter.decide(checks)
    assert not refused.allowed
    assert refused.retry_after_ns == 2  # the exact time to the edge
    clock.now = end - 1  # the window's last nanosecond: still spent
    assert limiter.decide(checks).retry_after_ns == 1
    clock.now = end  # the next window's first: a whole quota again
    again = limiter.decide(checks)
    assert again.allowed
    assert again.parts[0].decision.remaining == 1
    assert again.parts[0].decision.reset_ns == edges_of(window, end)[1] - end


@given(
    window=st.sampled_from(["hour", "day", "month"]),
    count=st.integers(1, 6),
    start=near_an_edge(120),
    gaps=st.lists(st.integers(0, 40 * NS), min_size=1, max_size=60),
)
def test_quotas_near_window_edges_count_per_window_and_say_the_exact_wait(
    window: str, count: int, start: int, gaps: list[int]
) -> None:
    clock = Clock(start)
    limiter = LocalLimiter(clock=clock)
    checks = [Check(("client", "203.0.113.9"), RateLimit(quota=f"{count}/{window}"))]
    counted: dict[int, int] = {}
    for gap in gaps:
        clock.now += gap
        begin, end = edges_of(window, clock.now)
        used = counted.get(begin, 0)
        verdict = limiter.decide(checks)
        # Admitted exactly while the window's count is under the quota.
        assert verdict.allowed == (used < count), (clock.now, used)
        decision = verdict.parts[0].decision
        assert decision.reset_ns == end - clock.now
        if verdict.allowed:
            counted[begin] = used + 1
            assert decision.remaining == count - used - 1
        else:
            assert verdict.retry_after_ns == end - clock.now  # to the edge, exactly
            assert decision.remaining == 0
    assert all(admitted <= count for admitted in counted.values())


def test_a_month_quota_is_counted_by_the_calendar_month_not_by_thirty_days() -> None:
    # February of a common year has 28 days: a spent quota of Feb 1 is back on Mar 1,
    # two days before thirty days have passed.
    clock = Clock(ns_of(datetime(2023, 2, 1, tzinfo=UTC)))
    limiter = LocalLimiter(clock=clock)
    checks = [Check("k", RateLimit(quota="1/month"))]
    assert limiter.decide(checks).allowed
    refused = limiter.decide(checks)
    assert refused.retry_after_ns == 28 * 86400 * NS
    clock.now = ns_of(datetime(2023, 3, 1, tzinfo=UTC))
    assert limiter.decide(checks).allowed
    # And a 31-day month waits 31 days.
    assert limiter.decide(checks).retry_after_ns == 31 * 86400 * NS


# ====================================================================== (c) idle state


def forgotten_at(limit: RateLimit, last_ns: int) -> int:
    """The instant by which a caller last admitted at ``last_ns`` holds nothing any more.

    A rate's bucket is full again ``burst`` intervals after its last admission
    (at most); a quota's count ends with its window.
    """
    moments = [last_ns]
    if limit.rate is not None:
        rate = limit.rate
        moments.append(last_ns + -(-rate.capacity * rate.period_ns // rate.count))
    if limit.quota is not None:
        moments.append(edges_of(limit.quota.window, last_ns)[1])
    return max(moments)


@given(scenarios())
def test_idle_callers_are_forgotten_within_the_bound(
    scenario: Scenario,
) -> None:
    own, path_limit, start, requests = scenario
    clock = Clock(start)
    limiter = LocalLimiter(clock=clock)
    bound = start
    for gap, caller, on_path in requests:
        clock.now += gap
        checks = checks_for(caller, own[caller], path_limit, on_path)
        if limiter.decide(checks).allowed:
            for _, limit, _ in checks:
                bound = max(bound, forgotten_at(limit, clock.now))
        # O(1) per active caller: at most a bucket and a counter per (caller, limit).
        assert len(limiter) <= 2 * 2 * len(own)
    clock.now = bound
    limiter.rates.forget_idle(clock.now)
    limiter.quotas.forget_ended(clock.now)
    assert len(limiter) == 0


def test_the_amortised_sweep_forgets_idle_callers_without_being_asked() -> None:
    clock = Clock(ns_of(datetime(2030, 6, 1, 12, 30, tzinfo=UTC)))
    limiter = LocalLimiter(clock=clock)
    limit = RateLimit("5/second", quota="100/hour")
    for number in range(500):
        assert limiter.decide([Check(f"idle-{number}", limit)]).allowed
    assert len(limiter) == 1000
    # Past the buckets' refill and the hour's end, new callers arrive: the sweeps
    # their arrivals run (amortised, never asked for) drop the 500 idle callers.
    clock.now = ns_of(datetime(2030, 6, 1, 13, 0, 1, tzinfo=UTC))
    for number in range(1100):
        assert limiter.decide([Check(f"new-{number}", limit)]).allowed
        clock.now += 1_000
    assert len(limiter) == 2 * 1100  # the new callers' buckets and counters alone


def test_a_forgotten_caller_gets_the_same_answers_as_one_never_seen() -> None:
    clock = Clock(ns_of(datetime(2030, 6, 1, 12, 59, 59, tzinfo=UTC)))
    limiter = LocalLimiter(clock=clock)
    limit = RateLimit("2/second", burst=3, quota="4/hour")
    answers = [limiter.decide([Check("a", limit)]).allowed for _ in range(4)]
    clock.now = forgotten_at(limit, clock.now)
    limiter.rates.forget_idle(clock.now)
    limiter.quotas.forget_ended(clock.now)
    assert len(limiter) == 0
    fresh = LocalLimiter(clock=clock)
    for _ in range(5):
        assert limiter.decide([Check("a", limit)]) == fresh.decide([Check("a", limit)])
    assert answers == [True, True, True, False]
