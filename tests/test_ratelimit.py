"""The GCRA core of the per-key limits (asgi_apikey/ratelimit.py, issue 18 step 1).

The limiter is checked against a plain reference: a token bucket of ``burst``
tokens refilled continuously at ``count / period``, in exact fractions, over
generated request times on a simulated clock. They must agree on every
request; and in any interval of length t the limiter never admits more than
burst + rate * t.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_apikey.errors import ConfigurationError
from asgi_apikey.ratelimit.gcra import GCRA, Rate

NS = 1_000_000_000


class TokenBucket:
    """The reference: ``burst`` tokens, refilled at ``count`` per ``period_ns``, exactly."""

    def __init__(self, limit: Rate) -> None:
        self.capacity = Fraction(limit.capacity)
        self.rate = Fraction(limit.count, limit.period_ns)  # tokens per nanosecond
        self.tokens = self.capacity
        self.last: int | None = None

    def admit(self, now: int) -> bool:
        if self.last is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


limits = st.builds(
    Rate,
    count=st.integers(1, 50),
    period=st.sampled_from([0.001, 0.5, 1, 3, 60, 3600]),
    burst=st.one_of(st.none(), st.integers(1, 60)),
)


def times(limit_period: float) -> st.SearchStrategy[list[int]]:
    """Non-decreasing request times, in steps around the period's scale."""
    scale = round(limit_period * NS)
    steps = st.lists(st.integers(0, 2 * scale), min_size=1, max_size=120)
    return steps.map(lambda gaps: [sum(gaps[: i + 1]) for i in range(len(gaps))])


@given(data=st.data(), limit=limits)
def test_the_limiter_decides_as_the_token_bucket_reference(
    data: st.DataObject, limit: Rate
) -> None:
    moments = data.draw(times(limit.period))
    limiter, reference = GCRA(), TokenBucket(limit)
    for now in moments:
        decision = limiter.decide("key", limit, now=now)
        assert decision.allowed == reference.admit(now), (now, moments)
        if decision.allowed:
            assert decision.remaining == int(reference.tokens)
        else:
            assert decision.remaining == 0
            # Retrying after retry_after is admitted; a nanosecond earlier is not.
            later = GCRA()
            later._state = dict(limiter._state)
            assert later.decide("key", limit, now=now + decision.retry_after_ns).allowed
            if decision.retry_after_ns > 0:
                early = GCRA()
                early._state = dict(limiter._state)
                assert not early.decide("key", limit, now=now + decision.retry_after_ns - 1).allowed


@given(data=st.data(), limit=limits)
def test_no_interval_admits_more_than_burst_plus_rate_times_its_length(
    data: st.DataObject, limit: Rate
) -> None:
    moments = data.draw(times(limit.period))
    limiter = GCRA()
    admitted = [now for now in moments if limiter.decide("key", limit, now=now).allowed]
    rate = Fraction(limit.count, limit.period_ns)
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            length = admitted[j] - start
            assert j - i + 1 <= limit.capacity + rate * length


def test_keys_are_limited_apart_and_a_full_burst_comes_back() -> None:
    limiter, limit = GCRA(), Rate(3, 1, burst=3)
    assert [limiter.decide("a", limit, now=0).allowed for _ in range(4)] == [True] * 3 + [False]
    assert limiter.decide("b", limit, now=0).allowed  # another key: its own bucket
    refused = limiter.decide("a", limit, now=0)
    assert (refused.remaining, refused.retry_after_ns, refused.reset_ns) == (0, -(-NS // 3), NS)
    back = [limiter.decide("a", limit, now=NS).allowed for _ in range(4)]
    assert back == [True] * 3 + [False]


def test_idle_keys_are_forgotten_and_were_no_different_from_new_ones() -> None:
    clock = [0]
    limiter, limit = GCRA(clock=lambda: clock[0]), Rate(2, 1)
    for key in range(3000):
        limiter.decide(key, limit)
    assert len(limiter) == 3000  # swept every 1,024 decisions, but nothing was idle
    clock[0] = NS  # every bucket is full again
    assert limiter.forget_idle() == 3000
    assert len(limiter) == 0
    for _ in range(2048):  # the periodic sweep keeps only the keys still spending
        limiter.decide("busy", limit)
    assert len(limiter) == 1


def test_a_changed_limit_starts_the_key_afresh() -> None:
    limiter = GCRA()
    assert not [limiter.decide("k", Rate(1, 60), now=0).allowed for _ in range(2)][-1]
    assert limiter.decide("k", Rate(5, 60), now=0).allowed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"count": 0, "period": 1}, "count must be a whole number of requests from 1"),
        ({"count": True, "period": 1}, "count must be a whole number"),
        ({"count": 10, "period": 0}, "period must be a number of seconds from 0.001"),
        ({"count": 10, "period": "1"}, "period must be a number of seconds"),
        ({"count": 10, "period": 1, "burst": 2_000_000_000}, "burst must be a whole number"),
    ],
    ids=["zero", "bool", "zero-period", "text-period", "huge-burst"],
)
def test_a_bad_limit_is_a_configuration_error_naming_the_fix(
    arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Rate(**arguments)  # type: ignore[arg-type]
