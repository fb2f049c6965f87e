"""Shared rate limits on Redis (asgi_apikey.redis_store.limits) against a real redis-server.

The server is the suite's (tests/redis_server.py), on 127.0.0.1. Redis keeps
its own clock, so the exact arithmetic is compared with the local limiter
through the test hook that hands the script its "now"; everything else runs
on Redis's clock: instances sharing a limit, concurrent load, outages, a
stopped (SIGSTOP) server, expiry, and the names in Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import re
import signal
import time
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis as SyncRedis
from redis.crc import key_slot
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from asgi_apikey import APIKey, APIKeyMiddleware, ConfigurationError, RateLimits
from asgi_apikey.cli_usage import _duration, run_usage
from asgi_apikey.ratelimit.gcra import MAX_COUNT, MAX_PERIOD, Rate
from asgi_apikey.ratelimit.limits import UNLIMITED, RateLimit
from asgi_apikey.ratelimit.local import Check, LocalLimiter, Verdict
from asgi_apikey.ratelimit.quota import Quota, window_of
from asgi_apikey.ratelimit.shared import LimiterUnavailable, SharedLimiter
from asgi_apikey.redis_store import RedisKeyStore, RedisRateLimiter
from asgi_apikey.redis_store.limit_runner import Breaker
from asgi_apikey.redis_store.limit_scripts import BIGNUM, KeyNames
from benchmarks import ratelimit_shared
from tests.asgi import CANARY
from tests.redis_server import RedisServer, redis_server_binary, running_redis

T = TypeVar("T")
NS = 1_000_000_000
PASSWORD = "redis-canary-pw-4e7a19c2"
_prefixes = itertools.count()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[RedisServer]:
    """A server with a password: outages are logged, and the password never is."""
    with running_redis(tmp_path, password=PASSWORD) as server:
        yield server


def run(work: Awaitable[T]) -> T:
    async def main() -> T:
        return await work

    return asyncio.run(main())


def fresh_prefix() -> str:
    return f"t{next(_prefixes)}"


def raw(server: RedisServer) -> SyncRedis:
    return SyncRedis(host="127.0.0.1", port=server.port, password=server.password)


def process_id(server: RedisServer) -> int:
    process = server._process
    assert process is not None
    return process.pid


def comparable(verdict: Verdict) -> Verdict:
    """``verdict``, without its parts' interval when admitted: only a refusal's fields use it
    (the local limiter's one-rate path leaves it out of an admission; Redis's always sets it).
    """
    if not verdict.allowed:
        return verdict
    return verdict._replace(parts=tuple(part._replace(interval_ns=0) for part in verdict.parts))


def documented_cap(capacity: int, batch: int = 16) -> int:
    """What one instance may hold of a limit, as the limits module's text states it."""
    return min(batch, max(1, capacity // 10))


def no_secret_in(logs: Sequence[Mapping[str, Any]], *secrets: str) -> None:
    text = repr(logs)
    for secret in secrets:
        assert secret not in text


# -- construction -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"url": "http://127.0.0.1:6379"}, "url"),
        ({"prefix": "has space"}, "prefix"),
        ({"mode": "fast"}, "mode"),
        ({"mode": CANARY}, "mode"),
        ({"on_unavailable": "ignore"}, "on_unavailable"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"timeout": "0.05"}, "timeout"),
        ({"batch": 0}, "batch"),
        ({"batch": 2.5}, "batch"),
        ({"batch": True}, "batch"),
        ({"batch": 10**6}, "batch"),
        ({"lease_seconds": -1}, "lease_seconds"),
        ({"backoff": 0}, "backoff"),
        ({"max_connections": 0}, "max_connections"),
    ],
    ids=lambda value: value if isinstance(value, str) else "-".join(map(str, value)),
)
def test_bad_arguments_fail_at_construction_naming_the_setting(
    options: dict[str, Any], setting: str
) -> None:
    options = dict(options)
    url = options.pop("url", "redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError) as caught:
        RedisRateLimiter(url, **options)
    assert caught.value.context["setting"] == setting
    assert CANARY not in str(caught.value)


def test_repr_and_describe_hide_the_password_and_nothing_connects_yet() -> None:
    limiter = RedisRateLimiter(f"redis://:{PASSWORD}@127.0.0.1:1/0", mode="batched")
    assert isinstance(limiter, SharedLimiter)
    assert repr(limiter) == (
        "RedisRateLimiter('redis://:***@127.0.0.1:1/0', prefix='asgi_apikey', mode='batched')"
    )
    described = limiter.describe()
    assert PASSWORD not in repr(described)
    assert described["url"] == "redis://:***@127.0.0.1:1/0"
    assert described["mode"] == "batched"
    assert described["available"] is True
    assert described["leases"] == 0


# -- the exact arithmetic, against the local limiter -----------------------------------------

rates = st.builds(
    Rate,
    count=st.one_of(st.integers(1, 20), st.sampled_from([1000, 10**6, MAX_COUNT])),
    period=st.sampled_from([0.001, 0.5, 1, 3, 60, 3600, 86400, MAX_PERIOD]),
    burst=st.one_of(st.none(), st.integers(1, 25), st.just(MAX_COUNT)),
)
quotas = st.builds(Quota, count=st.integers(1, 6), window=st.sampled_from(["hour", "day", "month"]))
limits = st.one_of(
    st.builds(RateLimit, rates),
    st.builds(lambda quota: RateLimit(quota=quota), quotas),
    st.builds(lambda rate, quota: RateLimit(rate, quota=quota), rates, quotas),
)
gaps = st.one_of(
    st.just(0),
    st.integers(1, 10**6),
    st.integers(1, 5 * NS),
    st.integers(1, 40 * 86400 * NS),
)
steps = st.lists(
    st.tuples(gaps, st.integers(0, 2), st.integers(0, 2), st.booleans()), min_size=1, max_size=30
)
# From 1970 to 2200: months of every length, leap years and 2100, which is not one.
instants = st.integers(0, 7_258_118_400 * NS)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(start=instants, chosen=st.lists(limits, min_size=3, max_size=3), plan=steps)
def test_exact_mode_decides_as_the_local_limiter_on_the_same_clock(
    redis: RedisServer, start: int, chosen: list[RateLimit], plan: list[tuple[int, int, int, bool]]
) -> None:
    now = [start]
    limiter = RedisRateLimiter(
        redis.url, prefix=fresh_prefix(), timeout=5.0, on_unavailable="refuse"
    )
    limiter._use_test_clock(lambda: now[0])
    local = LocalLimiter(clock=lambda: now[0])

    async def scenario() -> None:
        try:
            for gap, caller, which, on_path in plan:
                now[0] += gap
                checks = [Check(f"key-{caller}", chosen[which])]
                if on_path:
                    path_limit = chosen[(which + 1) % 3]
                    checks.append(Check(("path", "/v1/chat", f"key-{caller}"), path_limit, "path-"))
                assert comparable(await limiter.decide(checks)) == comparable(local.decide(checks))
            for caller in range(3):
                for limit in chosen:
                    assert await limiter.usage(f"key-{caller}", limit) == local.usage(
                        f"key-{caller}", limit
                    )
        finally:
            await limiter.stop()

    run(scenario())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(moment=instants, window=st.sampled_from(["hour", "day", "month"]))
def test_the_scripts_calendar_windows_are_pythons(
    redis: RedisServer, moment: int, window: str
) -> None:
    limiter = RedisRateLimiter(
        redis.url, prefix=fresh_prefix(), timeout=5.0, on_unavailable="refuse"
    )
    limiter._use_test_clock(lambda: moment)
    verdict = run(_decide_once(limiter, [Check("k", RateLimit(quota=f"5/{window}"))]))
    assert verdict.parts[0].decision.reset_ns == window_of(window, moment)[1] - moment


# Around the limbs' edges (10^7 each), where carries and borrows happen, and beyond.
_EDGES = [10**k + d for k in range(0, 43, 7) for d in (-2, -1, 0, 1)]
big_ints = st.one_of(st.integers(0, 10**40), st.sampled_from([e for e in _EDGES if e >= 0]))
_ARITHMETIC = (
    BIGNUM
    + """
local a, b = num(ARGV[1]), num(ARGV[2])
local big, small = a, b
if cmp(a, b) < 0 then big, small = b, a end
return {text(add(a, b)), text(sub(big, small)), text(mul(a, b)), cmp(a, b), text(a)}
"""
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=big_ints, b=big_ints)
def test_the_scripts_integers_are_exact(redis: RedisServer, a: int, b: int) -> None:
    answer = raw(redis).eval(_ARITHMETIC, 0, str(a), str(b))
    assert [int(value) for value in answer] == [
        a + b,
        abs(a - b),
        a * b,
        (a > b) - (a < b),
        a,
    ]


async def _decide_once(limiter: RedisRateLimiter, checks: Sequence[Check]) -> Verdict:
    try:
        return await limiter.decide(checks)
    finally:
        await limiter.stop()


def _at(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp()) * NS


@pytest.mark.parametrize(
    ("window", "edge"),
    [
        ("hour", _at(2027, 3, 14, 16)),
        ("day", _at(2027, 3, 15)),
        ("day", _at(2028, 2, 29)),
        ("month", _at(2027, 2, 1)),  # after January's 31 days
        ("month", _at(2027, 3, 1)),  # after 28 days of February 2027
        ("month", _at(2028, 3, 1)),  # after 29 days of February 2028, a leap year
        ("month", _at(2100, 3, 1)),  # 2100 is not a leap year
        ("month", _at(2000, 3, 1)),  # 2000 is
        ("month", _at(2028, 1, 1)),  # the year rolls over
        ("month", _at(2027, 5, 1)),  # after April's 30 days
    ],
    ids=lambda value: value if isinstance(value, str) else str(value // NS),
)
def test_a_quota_rolls_at_its_calendar_edge(redis: RedisServer, window: str, edge: int) -> None:
    now = [edge - NS]
    limiter = RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse")
    limiter._use_test_clock(lambda: now[0])
    checks = [Check("billing", RateLimit(quota=f"2/{window}"))]

    async def scenario() -> list[Verdict]:
        try:
            seen = [await limiter.decide(checks) for _ in range(3)]
            now[0] = edge - 1
            seen.append(await limiter.decide(checks))
            now[0] = edge
            seen += [await limiter.decide(checks) for _ in range(3)]
            return seen
        finally:
            await limiter.stop()

    seen = run(scenario())
    assert [verdict.allowed for verdict in seen] == [True, True, False, False, True, True, False]
    assert seen[3].retry_after_ns == 1  # one nanosecond before the edge: wait one
    start, end = window_of(window, edge)
    assert start == edge
    assert seen[4].parts[0].decision.reset_ns == end - edge  # the next window's whole length
    assert seen[6].retry_after_ns == end - edge


# -- many instances, one limit --------------------------------------------------------------


def test_two_instances_share_one_limit(redis: RedisServer) -> None:
    checks = [Check("billing", RateLimit("5/hour"))]

    async def scenario() -> list[bool]:
        a = RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse")
        b = RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse")
        try:
            return [(await (a if n % 2 else b).decide(checks)).allowed for n in range(8)]
        finally:
            await a.stop()
            await b.stop()

    assert run(scenario()) == [True] * 5 + [False] * 3


async def _load(
    limiters: Sequence[RedisRateLimiter], checks: Sequence[Check], tasks: int, seconds: float
) -> tuple[int, int]:
    """(admitted, refused) by ``tasks`` tasks spread over ``limiters`` for ``seconds``."""
    counts = [0, 0]
    deadline = time.monotonic() + seconds

    async def worker(number: int) -> None:
        limiter = limiters[number % len(limiters)]
        while time.monotonic() < deadline:
            verdict = await limiter.decide(checks)
            counts[0 if verdict.allowed else 1] += 1
            await asyncio.sleep(0)

    await asyncio.gather(*(worker(n) for n in range(tasks)))
    return counts[0], counts[1]


LOADS = [
    pytest.param(RateLimit("100/hour"), 100, id="rate"),
    pytest.param(RateLimit(quota="120/day"), 120, id="quota"),
    pytest.param(RateLimit("100/hour", quota="60/day"), 60, id="rate-and-quota"),
]


@pytest.mark.parametrize(("limit", "allowed"), LOADS)
def test_under_concurrent_load_exact_mode_admits_the_limit_exactly(
    redis: RedisServer, limit: RateLimit, allowed: int
) -> None:
    # 100/hour: a token comes back every 36 s, none during this test.
    checks = [Check("billing", limit)]

    async def scenario() -> tuple[int, int]:
        limiters = [
            RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse") for _ in range(2)
        ]
        try:
            return await _load(limiters, checks, tasks=200, seconds=0.6)
        finally:
            for limiter in limiters:
                await limiter.stop()

    admitted, refused = run(scenario())
    assert admitted == allowed
    assert refused > 0


@pytest.mark.parametrize(("limit", "allowed"), LOADS)
def test_under_concurrent_load_batched_mode_stays_within_its_stated_bound(
    redis: RedisServer, limit: RateLimit, allowed: int
) -> None:
    checks = [Check("billing", limit)]
    instances = 2
    # What one instance may hold of each part; a quota is never exceeded, a rate by at
    # most instances x b (module text of asgi_apikey.redis_store.limits).
    rate_cap = documented_cap(limit.rate.capacity) if limit.rate else 0
    quota_cap = documented_cap(limit.quota.count) if limit.quota else 0
    over = 0 if limit.quota is not None else instances * rate_cap
    under = instances * max(rate_cap, quota_cap)

    async def scenario() -> tuple[int, int, dict[str, Any]]:
        limiters = [
            RedisRateLimiter(redis.url, mode="batched", timeout=5.0, on_unavailable="refuse")
            for _ in range(instances)
        ]
        try:
            admitted, refused = await _load(limiters, checks, tasks=200, seconds=0.6)
        finally:
            for limiter in limiters:
                await limiter.stop()  # gives every leased token back
        reader = RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse")
        try:
            return admitted, refused, await reader.usage("billing", limit)
        finally:
            await reader.stop()

    admitted, refused, usage = run(scenario())
    assert allowed - under <= admitted <= allowed + over
    assert refused > 0
    if limit.quota is not None:  # every token not spent went back: Redis counts what was
        assert usage["quota"]["used"] == admitted


def test_batched_mode_overshoots_by_at_most_what_the_instances_hold(redis: RedisServer) -> None:
    # The I x b of the bound comes from tokens leased before an interval and spent in it:
    # the instances fill their leases, the shared bucket fills up again behind them, then
    # everything is spent at once.
    limit = RateLimit("100/s")
    checks = [Check("billing", limit)]
    instances, cap = 2, documented_cap(100)

    async def scenario() -> tuple[int, float]:
        limiters = [
            RedisRateLimiter(redis.url, mode="batched", timeout=5.0, lease_seconds=30)
            for _ in range(instances)
        ]
        try:
            for limiter in limiters:  # a busy caller: the lease grows to its cap
                for _ in range(40):
                    await limiter.decide(checks)
                    await asyncio.sleep(0.002)
            await asyncio.sleep(1.2)  # the shared bucket is full again; leases are held
            started = time.monotonic()
            admitted, _ = await _load(limiters, checks, tasks=100, seconds=0.2)
            return admitted, time.monotonic() - started
        finally:
            for limiter in limiters:
                await limiter.stop()

    admitted, elapsed = run(scenario())
    assert 100 <= admitted <= 100 + 100 * elapsed + instances * cap


def count_calls(limiter: RedisRateLimiter, calls: list[str]) -> None:
    """Record the name of each script call ``limiter`` makes, in ``calls``."""
    run_script = limiter._runner.run

    async def counted(job: str, keys: Sequence[str], args: Sequence[str]) -> list[Any] | None:
        calls.append(job)
        return await run_script(job, keys, args)

    limiter._runner.run = counted  # type: ignore[method-assign]


def test_batched_mode_serves_a_busy_caller_without_a_call_per_request(redis: RedisServer) -> None:
    checks = [Check("billing", RateLimit("1000000/hour", quota="1000000/day"))]
    calls: list[str] = []

    async def scenario() -> list[bool]:
        limiter = RedisRateLimiter(redis.url, mode="batched", timeout=5.0, batch=64)
        count_calls(limiter, calls)
        try:
            seen = []
            for _ in range(2000):
                seen.append((await limiter.decide(checks)).allowed)
                await asyncio.sleep(0)  # the background refills run
            return seen
        finally:
            await limiter.stop()

    assert all(run(scenario()))
    # Leases double up to 64 tokens: some 2000 / 64 calls, not 2000.
    assert calls.count("lease") < 100
    assert calls.count("decide") == 0


def test_batched_mode_remembers_a_refusal_instead_of_asking_again(redis: RedisServer) -> None:
    calls: list[str] = []

    async def scenario() -> tuple[list[bool], int, list[bool]]:
        limiter = RedisRateLimiter(redis.url, mode="batched", timeout=5.0, lease_seconds=5)
        count_calls(limiter, calls)
        try:
            one_by_one = []
            for _ in range(500):
                verdict = await limiter.decide([Check("billing", RateLimit("5/hour"))])
                one_by_one.append(verdict.allowed)
                await asyncio.sleep(0)
            before = len(calls)
            # 100 requests at once for a caller with one token: one call answers them all.
            at_once = await asyncio.gather(
                *(limiter.decide([Check("other", RateLimit("1/hour"))]) for _ in range(100))
            )
            return one_by_one, len(calls) - before, [verdict.allowed for verdict in at_once]
        finally:
            await limiter.stop()

    one_by_one, burst_calls, at_once = run(scenario())
    assert one_by_one.count(True) == 5
    # Empty until the next token, 12 minutes away: 495 refusals, but a call or two.
    assert calls.count("lease") - burst_calls <= 5
    assert at_once.count(True) == 1
    assert burst_calls <= 3


def test_batched_quota_tokens_die_with_their_window(redis: RedisServer) -> None:
    # The test clock runs with the real one from 0.3 s before midnight.
    edge = _at(2027, 6, 2)
    began = time.monotonic_ns()

    def clock() -> int:
        return edge - 300_000_000 + time.monotonic_ns() - began

    limit = RateLimit(quota="1000/day")
    checks = [Check("billing", limit)]

    async def scenario() -> tuple[int, dict[str, Any]]:
        limiter = RedisRateLimiter(redis.url, mode="batched", timeout=5.0, lease_seconds=30)
        limiter._use_test_clock(clock)
        reader = RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse")
        reader._use_test_clock(clock)
        try:
            while clock() < edge - 100_000_000:  # leases fill up in the old window
                await limiter.decide(checks)
                await asyncio.sleep(0.001)
            await asyncio.sleep((edge - clock()) / NS + 0.05)
            after = 0
            for _ in range(5):  # a new day: the old window's tokens must not be spent
                after += (await limiter.decide(checks)).allowed
                await asyncio.sleep(0)
            await limiter.stop()  # gives back what the new window lent
            return after, await reader.usage("billing", limit)
        finally:
            await limiter.stop()
            await reader.stop()

    after, usage = run(scenario())
    assert after == 5
    assert usage["quota"]["used"] == 5  # every one of them counted in the new day


def test_batched_mode_gives_idle_tokens_back(redis: RedisServer) -> None:
    limit = RateLimit("1000/hour", quota="1000/day")  # a rate's token comes back in 3.6 s
    checks = [Check("billing", limit)]

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        limiter = RedisRateLimiter(redis.url, mode="batched", timeout=5.0, lease_seconds=0.2)
        reader = RedisRateLimiter(redis.url, timeout=5.0)
        try:
            for _ in range(40):
                assert (await limiter.decide(checks)).allowed
                await asyncio.sleep(0)
            held = await reader.usage("billing", limit)
            await asyncio.sleep(0.6)  # idle past lease_seconds: the sweeper gives back
            return held, await reader.usage("billing", limit)
        finally:
            await limiter.stop()
            await reader.stop()

    held, after = run(scenario())
    # Tokens were leased ahead of use ...
    assert held["quota"]["used"] > 40
    assert held["rate"]["remaining"] < 1000 - 40
    # ... and the unused ones went back.
    assert after["quota"]["used"] == 40
    assert after["rate"]["remaining"] in (1000 - 40, 1000 - 40 + 1)


# -- Redis slow or gone ---------------------------------------------------------------------


def test_redis_stopped_and_restarted_with_local_policy(guarded: RedisServer) -> None:
    checks = [Check("billing", RateLimit("3/hour"))]

    async def scenario() -> tuple[list[bool], list[bool], list[bool], dict[str, Any]]:
        limiter = RedisRateLimiter(guarded.url, timeout=0.5, backoff=0.2)
        try:
            before = [(await limiter.decide(checks)).allowed]  # from Redis: 2 left there
            guarded.stop()
            during = [(await limiter.decide(checks)).allowed for _ in range(5)]
            described = limiter.describe()
            guarded.start()  # the same port, the same data (append-only file)
            await asyncio.sleep(0.3)  # past the backoff: the next request probes Redis
            after = [(await limiter.decide(checks)).allowed for _ in range(3)]
            return before, during, after, described
        finally:
            await limiter.stop()

    with capture_logs() as logs:
        before, during, after, described = run(scenario())
    assert before == [True]
    # Each instance alone: its own fresh bucket of 3.
    assert during == [True, True, True, False, False]
    assert described["available"] is False
    # Redis again: the shared bucket had 2 left; what was spent locally never reached it.
    assert after == [True, True, False]
    events = [log["event"] for log in logs]
    assert events.count("rate_limit_store_unavailable") == 1
    assert events.count("rate_limit_store_recovered") == 1
    unavailable = next(log for log in logs if log["event"] == "rate_limit_store_unavailable")
    assert unavailable["url"] == f"redis://:***@127.0.0.1:{guarded.port}/0"
    assert unavailable["on_unavailable"] == "local"
    no_secret_in(logs, PASSWORD)


def test_redis_stopped_and_restarted_with_refuse_policy(guarded: RedisServer) -> None:
    checks = [Check("billing", RateLimit("3/hour"))]

    async def scenario() -> tuple[list[LimiterUnavailable], float, bool]:
        limiter = RedisRateLimiter(
            guarded.url, timeout=0.5, backoff=0.3, on_unavailable="refuse", mode="exact"
        )
        refusals = []
        try:
            assert (await limiter.decide(checks)).allowed
            guarded.stop()
            started = time.monotonic()
            for _ in range(3):
                with pytest.raises(LimiterUnavailable) as caught:
                    await limiter.decide(checks)
                refusals.append(caught.value)
            quick = time.monotonic() - started
            guarded.start()
            await asyncio.sleep(0.4)
            return refusals, quick, (await limiter.decide(checks)).allowed
        finally:
            await limiter.stop()

    with capture_logs() as logs:
        refusals, quick, recovered = run(scenario())
    assert all(refusal.retry_after >= 1 for refusal in refusals)
    assert all(PASSWORD not in refusal.detail for refusal in refusals)
    assert quick < 0.5  # the breaker: no call (and no timeout) while Redis is left alone
    assert recovered
    events = [log["event"] for log in logs]
    assert events.count("rate_limit_store_unavailable") == 1
    assert events.count("rate_limit_store_recovered") == 1
    no_secret_in(logs, PASSWORD)


@pytest.mark.parametrize("mode", ["exact", "batched"])
def test_a_paused_redis_costs_one_timeout_then_the_breaker_answers(
    guarded: RedisServer, mode: str
) -> None:
    checks = [Check("billing", RateLimit("3/hour"))]
    timeout = 0.3
    pid = process_id(guarded)

    async def scenario() -> tuple[float, float, Verdict, bool]:
        limiter = RedisRateLimiter(guarded.url, mode=mode, timeout=timeout, backoff=0.5)
        try:
            await limiter.start()
            os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                first = await limiter.decide(checks)
                slow = time.monotonic() - started
                started = time.monotonic()
                await limiter.decide(checks)
                fast = time.monotonic() - started
            finally:
                os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(0.6)
            await limiter.decide(checks)
            return slow, fast, first, limiter.describe()["available"]
        finally:
            await limiter.stop()

    with capture_logs() as logs:
        slow, fast, first, available = run(scenario())
    assert timeout * 0.9 <= slow < timeout + 1.0  # it waited for the timeout, no longer
    assert fast < timeout / 2  # then the breaker decides without a call
    assert first.allowed  # decided locally
    assert available
    events = [log["event"] for log in logs]
    assert events.count("rate_limit_store_unavailable") == 1
    assert "TimeoutError" in next(
        log["error"] for log in logs if log["event"] == "rate_limit_store_unavailable"
    )
    no_secret_in(logs, PASSWORD)


def test_batched_mode_spends_held_tokens_while_redis_is_gone(redis: RedisServer) -> None:
    checks = [Check("billing", RateLimit("100/hour"))]

    async def scenario() -> tuple[list[bool], int]:
        limiter = RedisRateLimiter(
            redis.url, mode="batched", timeout=0.3, backoff=5, on_unavailable="refuse"
        )
        try:
            for _ in range(30):  # leases grow to their cap
                await limiter.decide(checks)
                await asyncio.sleep(0.001)
            redis.stop()
            served = []
            for _ in range(30):
                try:
                    served.append((await limiter.decide(checks)).allowed)
                except LimiterUnavailable:
                    served.append(False)
            return served, documented_cap(100)
        finally:
            await limiter.stop()

    served, cap = run(scenario())
    assert served[0]  # a token held here needs no Redis ...
    assert 1 <= sum(served) <= cap  # ... but no more than the lease holds
    assert not served[-1]


def test_start_without_redis_does_not_raise_and_stop_is_idempotent(redis: RedisServer) -> None:
    checks = [Check("billing", RateLimit("3/hour"))]

    async def scenario() -> tuple[bool, bool]:
        dead = RedisRateLimiter("redis://127.0.0.1:1/0", timeout=0.2)
        await dead.start()
        dead_available = dead.describe()["available"]
        await dead.stop()
        await dead.stop()
        live = RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse")
        assert (await live.decide(checks)).allowed  # connects lazily
        await live.start()
        await live.start()
        await live.stop()
        await live.stop()
        assert (await live.decide(checks)).allowed  # and again after a stop
        await live.stop()
        [part] = live._names.parts(checks)
        return dead_available, bool(raw(redis).exists(part.key))

    with capture_logs() as logs:
        dead_available, stored = run(scenario())
    assert not dead_available
    assert stored
    assert [log["event"] for log in logs] == ["rate_limit_store_unavailable"]


# -- through the middleware -------------------------------------------------------------------


def _app(limiter: RedisRateLimiter) -> Starlette:
    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/v1/models", hello)])
    app.add_middleware(
        APIKeyMiddleware,
        keys=[APIKey(CANARY, name="billing", limit=RateLimit("3/hour"))],
        rate_limits=RateLimits(shared=limiter),
    )
    return app


@pytest.mark.parametrize("mode", ["exact", "batched"])
def test_two_app_instances_share_a_keys_limit_through_the_middleware(
    guarded: RedisServer, mode: str
) -> None:
    headers = {"Authorization": f"Bearer {CANARY}"}
    first = RedisRateLimiter(guarded.url, mode=mode, timeout=5.0, on_unavailable="refuse")
    second = RedisRateLimiter(
        guarded.url, mode=mode, timeout=0.3, on_unavailable="refuse", lease_seconds=0.2
    )
    with (
        capture_logs() as logs,
        TestClient(_app(first)) as a,
        TestClient(_app(second)) as b,
    ):
        answers = [(a if n % 2 else b).get("/v1/models", headers=headers) for n in range(5)]
        guarded.stop()
        time.sleep(0.3)  # past lease_seconds: a refusal remembered in batched mode lapses
        gone = b.get("/v1/models", headers=headers)
    statuses = [answer.status_code for answer in answers]
    if mode == "exact":
        assert statuses == [200, 200, 200, 429, 429]
    else:  # what the other instance holds may be refused here: never more than 3 in all
        assert statuses[:2] == [200, 200]
        assert statuses.count(200) <= 3
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert '"rate";q=3;w=3600' in refused.headers["ratelimit-policy"]
    assert gone.status_code == 503
    assert int(gone.headers["retry-after"]) >= 1
    for answer in [*answers, gone]:
        assert CANARY not in answer.text
        assert PASSWORD not in answer.text + repr(answer.headers)
    no_secret_in(logs, PASSWORD, CANARY)


def test_a_redis_that_forgot_the_script_gets_it_again(redis: RedisServer) -> None:
    checks = [Check("billing", RateLimit("3/hour"))]

    async def scenario() -> list[bool]:
        limiter = RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse")
        try:
            await limiter.start()  # loads the script
            seen = [(await limiter.decide(checks)).allowed]
            raw(redis).script_flush()  # as a restarted or failed-over Redis would
            seen += [(await limiter.decide(checks)).allowed for _ in range(3)]
            return seen
        finally:
            await limiter.stop()

    with capture_logs() as logs:
        assert run(scenario()) == [True, True, True, False]  # Redis's counts, not local ones
    assert logs == []


# -- what Redis holds -----------------------------------------------------------------------

_NAME = re.compile(
    r"\{t?[a-z0-9_]*:rl:([0-9a-f]{32})\}:(?:path:[0-9a-f]{16}:)?(?:rate|quota):[0-9a-f]{12}"
)


def test_names_in_redis_hide_callers_and_share_a_slot_per_caller(redis: RedisServer) -> None:
    key_id, host, rule = "billing-team-7", "203.0.113.77", "/v1/secret-route"
    limit = RateLimit("10/hour", quota="100/day")

    async def scenario() -> None:
        limiter = RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse")
        try:
            for who in (key_id, ("client", host), CANARY):
                await limiter.decide(
                    [Check(who, limit), Check(("path", rule, who), limit, "path-")]
                )
        finally:
            await limiter.stop()

    run(scenario())
    names = sorted(n.decode() if isinstance(n, bytes) else n for n in raw(redis).keys("*"))
    assert len(names) == 12  # 3 callers x (own + path) x (rate + quota)
    for name in names:
        assert _NAME.fullmatch(name), name
        for secret in (key_id, host, rule, CANARY, "client", "billing", "203.0"):
            assert secret not in name
    tags: dict[str, set[int]] = {}
    for name in names:
        tags.setdefault(name[: name.index("}") + 1], set()).add(key_slot(name.encode()))
    assert len(tags) == 3  # one tag per caller, path rules included ...
    assert all(len(slots) == 1 for slots in tags.values())  # ... each in one slot


def test_every_key_expires_once_it_holds_nothing(redis: RedisServer) -> None:
    limiter = RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse")
    fast = RateLimit("10/s")  # one request's share comes back in 100 ms
    hourly = RateLimit(quota="5/hour")

    async def scenario() -> None:
        try:
            await limiter.decide([Check("a", fast)])
            await limiter.decide([Check("b", hourly)])
        finally:
            await limiter.stop()

    run(scenario())
    client = raw(redis)
    [rate_part] = limiter._names.parts([Check("a", fast)])
    [quota_part] = limiter._names.parts([Check("b", hourly)])
    rate_key, quota_key = rate_part.key, quota_part.key
    assert 0 < client.pttl(rate_key) <= 110
    end = window_of("hour", time.time_ns())[1]
    expected_ms = (end - time.time_ns()) / 1e6
    assert abs(client.pttl(quota_key) - expected_ms) < 1000
    time.sleep(0.3)
    assert not client.exists(rate_key)  # full again: gone by itself


# -- keys usage -----------------------------------------------------------------------------


def _store_key(server: RedisServer, limit: object) -> None:
    """A key named billing in the store whose record carries ``limit`` (as records will)."""
    client = raw(server)
    if client.hget("{asgi_apikey}:ids", "billing") is None:
        run(_add(server.url))
    digest = client.hget("{asgi_apikey}:ids", "billing")
    assert digest is not None
    record = json.loads(client.hget("{asgi_apikey}:keys", digest) or b"{}")
    if limit is not None:
        record["limit"] = limit
    client.hset("{asgi_apikey}:keys", digest, json.dumps(record))


async def _add(url: str) -> None:
    async with RedisKeyStore(url) as store:
        await store.add(APIKey(CANARY, name="billing"))


def _usage(
    server: RedisServer | str, key: str, *, limit: str | None = None, as_json: bool = False
) -> tuple[int, str, str]:
    url = server if isinstance(server, str) else server.url
    args = argparse.Namespace(
        redis=url, redis_prefix="asgi_apikey", key=key, limit=limit, json=as_json
    )
    out, err = io.StringIO(), io.StringIO()
    code = run_usage(args, out, err)
    return code, out.getvalue(), err.getvalue()


def test_keys_usage_reads_the_limit_from_the_record_and_spends_nothing(redis: RedisServer) -> None:
    _store_key(redis, {"rate": "100/minute", "burst": 20, "quota": "10000/day"})
    limit = RateLimit("100/minute", burst=20, quota="10000/day")

    async def spend() -> None:
        limiter = RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse")
        try:
            for _ in range(3):
                await limiter.decide([Check("billing", limit)])
        finally:
            await limiter.stop()

    run(spend())
    code, out, err = _usage(redis, "billing")
    assert code == 0, err
    assert "key_id: billing" in out
    assert "rate:   17 of 20 left now" in out
    assert "quota:  9997 of 10000 left this day (UTC; 3 used)" in out
    code, out, err = _usage(redis, "billing", as_json=True)
    shown = json.loads(out)
    assert shown["quota"]["used"] == 3  # the first look spent nothing
    assert shown["limit_from"] == "record"
    assert shown["rate"]["remaining"] == 17
    assert CANARY not in out + err


def test_keys_usage_takes_limit_for_a_key_under_the_default(redis: RedisServer) -> None:
    _store_key(redis, None)
    code, out, err = _usage(redis, "billing")
    assert code == 1
    assert "--limit" in err
    code, out, err = _usage(redis, "billing", limit="5/minute")
    assert code == 0, err
    assert "rate:   5 of 5 left now" in out
    assert "(from --limit)" in out


def test_keys_usage_never_echoes_an_unknown_argument(redis: RedisServer) -> None:
    _store_key(redis, "5/minute")
    code, out, err = _usage(redis, CANARY)  # a key typed where its key_id belongs
    assert code == 1
    assert "holds no key with that key_id" in err
    code, out, err = _usage(redis, CANARY, limit="5/minute", as_json=True)
    assert code == 0
    assert json.loads(out)["key_id"] is None
    assert CANARY not in out + err
    code, out, err = _usage(redis, "billing", limit="1/s")
    assert "--limit is ignored" in err
    assert "rate:   5 of 5 left now" in out


def test_keys_usage_without_redis_says_so_without_the_password() -> None:
    code, out, err = _usage(f"redis://:{PASSWORD}@127.0.0.1:1/0", "billing")
    assert code == 1
    assert "redis://:***@127.0.0.1:1/0" in err
    assert PASSWORD not in out + err


def test_keys_usage_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    args = argparse.Namespace(
        redis=None, redis_prefix="asgi_apikey", key="b", limit=None, json=False
    )
    err = io.StringIO()
    assert run_usage(args, io.StringIO(), err) == 2
    assert "REDIS_URL" in err.getvalue()


# -- the benchmark --------------------------------------------------------------------------


def test_the_benchmark_smoke_run_measures_every_variant(tmp_path: Path) -> None:
    redis_server_binary()  # skips (or fails under ASGI_APIKEY_REQUIRE_REDIS=1) without it
    assert ratelimit_shared.main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "ratelimit_shared.json").read_text())
    assert set(data["latency_us"]) == set(ratelimit_shared.VARIANTS)
    for row in data["latency_us"].values():
        assert row["samples"] == data["settings"]["decisions"]
        assert 0 < row["median"] <= row["p99"] <= row["max"]
    for row in data["accuracy"]:
        assert row["admitted"] <= row["bound"]
    assert "| exact |" in (tmp_path / "ratelimit_shared.md").read_text()


# -- smaller pieces ---------------------------------------------------------------------------


def test_the_breaker_closes_only_on_a_probe() -> None:
    now = [100.0]
    breaker = Breaker(
        "redis://:***@cache:6379/0", backoff=1.0, policy="refuse", clock=lambda: now[0]
    )
    before = breaker.attempt()  # a call made before the outage ...
    failing = breaker.attempt()
    assert before is not None
    assert failing is not None
    with capture_logs() as logs:
        breaker.failed(failing, "ConnectionError: refused")
        assert breaker.attempt() is None  # open: nobody calls Redis
        now[0] += 0.5
        breaker.failed(before, "TimeoutError")  # ... failing late changes nothing
        breaker.succeeded(before)  # ... nor does its late success close it
        assert not breaker.available
        assert breaker.retry_after() == 1
        now[0] += 0.6
        probe = breaker.attempt()
        assert probe is not None
        assert breaker.attempt() is None  # one probe at a time
        breaker.abandoned(probe)  # its caller went away: another may probe
        probe = breaker.attempt()
        assert probe is not None
        breaker.failed(probe, "ConnectionError: refused")  # open again, for backoff
        assert breaker.attempt() is None
        now[0] += 1.0
        probe = breaker.attempt()
        assert probe is not None
        breaker.succeeded(probe)
    assert breaker.available
    assert breaker.attempt() is not None
    assert [log["event"] for log in logs] == [
        "rate_limit_store_unavailable",
        "rate_limit_store_recovered",
    ]
    assert logs[0]["on_unavailable"] == "refuse"
    assert logs[1]["down_seconds"] == pytest.approx(2.1)


def test_key_names_are_stable_cached_and_refuse_what_cannot_be_named() -> None:
    names = KeyNames("p")
    first = names.base(("client", "203.0.113.7"))
    assert (
        names.base(("client", "203.0.113.7"))
        == first
        == KeyNames("p").base(("client", "203.0.113.7"))
    )
    assert names.base(("client", "203.0.113.8")) != first
    assert names.base("client") != first  # a key_id is never a client's address
    KeyNames.CACHED, cached = 2, KeyNames.CACHED
    try:
        for number in range(5):
            names.base(f"key-{number}")
        assert len(names._cache) <= 2
    finally:
        KeyNames.CACHED = cached
    with pytest.raises(TypeError, match="must be a str or a tuple"):
        names.base(object())


def test_unlimited_checks_cost_no_call_and_usage_without_redis_follows_the_policy() -> None:
    limit = RateLimit("3/hour", quota="5/day")

    async def scenario() -> tuple[Verdict, dict[str, Any], dict[str, Any]]:
        local = RedisRateLimiter("redis://127.0.0.1:1/0", timeout=0.2)
        refuse = RedisRateLimiter("redis://127.0.0.1:1/0", timeout=0.2, on_unavailable="refuse")
        try:
            free = await refuse.decide([Check("billing", UNLIMITED)])
            assert refuse.describe()["available"]  # nothing to count: Redis not asked
            unlimited = await refuse.usage("billing", UNLIMITED)
            with pytest.raises(LimiterUnavailable):
                await refuse.usage("billing", limit)
            return free, unlimited, await local.usage("billing", limit)
        finally:
            await local.stop()
            await refuse.stop()

    with capture_logs():
        free, unlimited, usage = run(scenario())
    assert free == Verdict(True, 0, ())
    assert unlimited == {"limit": "unlimited"}
    assert usage == LocalLimiter().usage("billing", limit) | {"quota": usage["quota"]}
    assert usage["rate"]["remaining"] == 3
    assert usage["quota"]["used"] == 0


def test_batched_refusal_by_one_part_spends_nothing_of_the_others(redis: RedisServer) -> None:
    rate, quota = RateLimit("5/hour"), RateLimit(quota="1000/day")

    async def scenario() -> tuple[Verdict, dict[str, Any]]:
        batched = RedisRateLimiter(redis.url, mode="batched", timeout=5.0, on_unavailable="refuse")
        other = RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse")
        try:
            # This instance holds a spare quota token; another one spends the whole rate.
            assert (await batched.decide([Check("billing", quota)])).allowed
            for _ in range(5):
                assert (await other.decide([Check("billing", rate)])).allowed
            # Here the quota token is set aside while Redis refuses the rate: it must
            # come back, not be lost with the refused request.
            both = [Check("billing", RateLimit("5/hour", quota="1000/day"))]
            refused = await batched.decide(both)
            await batched.stop()  # every held token goes back
            return refused, await other.usage("billing", quota)
        finally:
            await batched.stop()
            await other.stop()

    refused, usage = run(scenario())
    assert not refused.allowed
    assert refused.refused_by == "rate"
    assert usage["quota"]["used"] == 1  # the one admitted request, and nothing else


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.25, "0.25 s"), (42, "42 s"), (125, "2m 5s"), (3725, "1h 2m 5s"), (190_000, "2d 4h")],
)
def test_keys_usage_durations(seconds: float, shown: str) -> None:
    assert _duration(seconds) == shown


def test_keys_usage_of_a_spent_rate_a_bad_record_and_an_unlimited_key(redis: RedisServer) -> None:
    _store_key(redis, "2/hour")

    async def spend() -> None:
        limiter = RedisRateLimiter(redis.url, timeout=5.0, on_unavailable="refuse")
        try:
            for _ in range(2):
                await limiter.decide([Check("billing", RateLimit("2/hour"))])
        finally:
            await limiter.stop()

    run(spend())
    code, out, _ = _usage(redis, "billing")
    assert code == 0
    assert "rate:   0 of 2 left now; the next in 30m 0s" in out
    _store_key(redis, "unlimited")
    code, out, _ = _usage(redis, "billing")
    assert "the key is not limited" in out
    digest = raw(redis).hget("{asgi_apikey}:ids", "billing")
    assert digest is not None
    raw(redis).hset("{asgi_apikey}:keys", digest, "[1, 2]")
    code, out, err = _usage(redis, "billing")
    assert code == 1
    assert "not a JSON object" in err


def test_keys_usage_runs_from_the_command_line(
    redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The parser reaches ``keys usage``: its options, and the store's prefix option."""
    from asgi_apikey.cli import main

    _store_key(redis, {"rate": "100/minute"})
    code = main(["keys", "usage", "billing", "--redis", redis.url, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["rate"]["remaining"] == 100
    code = main(["keys", "usage", "billing", "--redis", redis.url, "--redis-prefix", "other"])
    captured = capsys.readouterr()
    assert code == 1  # no such key under that prefix
    assert CANARY not in captured.out + captured.err
