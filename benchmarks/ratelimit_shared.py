"""Limits shared through Redis: what one decision costs, and how accurate the batched mode is.

Against a redis-server this script starts on 127.0.0.1 (no persistence):

1. **Latency.** In one event loop, one decision at a time, each timed alone
   (``perf_counter_ns`` around the call), the variants interleaved in shuffled
   rounds so that drift touches them alike: ``LocalLimiter.decide`` (the
   baseline, no I/O), a plain ``PING`` through redis-py (the floor of any
   decision made in Redis), and ``RedisRateLimiter.decide`` in exact and
   batched mode, with one rate and with four parts (a key's rate and quota,
   a path rule's rate and quota). Limits are never reached: every decision
   admits. The loop yields between decisions, as a server does between
   requests, so the batched mode's background refills run.
2. **Accuracy.** Several instances (each its own limiter and connections)
   with many tasks against one limit: offered far above it, where the
   batched mode may admit up to ``instances x b`` more than the exact mode's
   bound over the run (``burst + rate x seconds``) and a quota never more
   than its count; and offered at half the limit, where every refusal is a
   false one. Redis calls per decision come from the server's own command
   statistics.

    python3 -m benchmarks.ratelimit_shared            # about a minute: results/ratelimit_shared.md
    python3 -m benchmarks.ratelimit_shared --smoke    # seconds: proves it runs, measures nothing

Reported, never asserted (see ``timing.py`` for why).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from asgi_apikey.ratelimit.limits import RateLimit
from asgi_apikey.ratelimit.local import Check, LocalLimiter
from asgi_apikey.redis_store import RedisRateLimiter
from asgi_apikey.redis_store.limit_leases import holding_cap
from benchmarks.propagation import BenchmarkSetupError, redis_server
from benchmarks.report import environment, write_results

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = (
    "LocalLimiter.decide",
    "PING",
    "exact",
    "exact, 4 parts",
    "batched",
    "batched, 4 parts",
)
#: Never reached during the latency runs: every decision admits.
_WIDE = RateLimit("1000000000/second", quota="1000000000/day")
_ONE = [Check("billing", RateLimit("1000000000/second"))]
_FOUR = [Check("billing", _WIDE), Check(("path", "/v1/chat", "billing"), _WIDE, "path-")]


# -- latency ----------------------------------------------------------------------------------


async def _latency(url: str, decisions: int, rounds: int) -> dict[str, list[int]]:
    """Nanoseconds per decision, per variant."""
    local = LocalLimiter()
    ping = Redis.from_url(url)
    exact = RedisRateLimiter(url, timeout=1.0, on_unavailable="refuse")
    batched = RedisRateLimiter(url, mode="batched", timeout=1.0, on_unavailable="refuse")

    async def local_decide(checks: Sequence[Check]) -> object:
        return local.decide(checks)

    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "LocalLimiter.decide": lambda: local_decide(_ONE),
        "PING": ping.ping,
        "exact": lambda: exact.decide(_ONE),
        "exact, 4 parts": lambda: exact.decide(_FOUR),
        "batched": lambda: batched.decide(_ONE),
        "batched, 4 parts": lambda: batched.decide(_FOUR),
    }
    times: dict[str, list[int]] = {name: [] for name in VARIANTS}
    try:
        for call in calls.values():  # warm-up: connections, the script, the leases
            for _ in range(50):
                await call()
                await asyncio.sleep(0)
        order = list(VARIANTS)
        per_round = max(1, decisions // rounds)
        for number in range(rounds):
            random.shuffle(order)
            count = per_round if number < rounds - 1 else decisions - per_round * (rounds - 1)
            for name in order:
                call, sink = calls[name], times[name]
                for _ in range(count):
                    started = time.perf_counter_ns()
                    await call()
                    sink.append(time.perf_counter_ns() - started)
                    await asyncio.sleep(0)
    finally:
        await exact.stop()
        await batched.stop()
        await ping.aclose()
    return times


def _summary(ns: Sequence[int]) -> dict[str, float]:
    ordered = sorted(ns)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "median": statistics.median(ordered) / 1e3,
        "p99": p99 / 1e3,
        "mean": statistics.fmean(ordered) / 1e3,
        "max": ordered[-1] / 1e3,
        "samples": len(ordered),
    }


# -- accuracy ---------------------------------------------------------------------------------


async def _script_calls(client: Redis) -> int:
    stats: dict[str, Any] = await client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


async def _accuracy_run(
    url: str,
    *,
    mode: str,
    limit: RateLimit,
    instances: int,
    tasks: int,
    seconds: float,
    pace: float | None,
    scenario: str,
) -> dict[str, Any]:
    """One run: ``tasks`` tasks over ``instances`` limiters for ``seconds``.

    ``pace``: each task's requests per second (None: as fast as it can).
    """
    prefix = f"bench{random.getrandbits(32):08x}"
    limiters = [
        RedisRateLimiter(url, prefix=prefix, mode=mode, timeout=1.0, on_unavailable="refuse")
        for _ in range(instances)
    ]
    stats = Redis.from_url(url)
    checks = [Check("billing", limit)]
    counts = [0, 0]
    before = await _script_calls(stats)
    started = time.monotonic()
    deadline = started + seconds
    last = [started]

    async def worker(number: int) -> None:
        limiter = limiters[number % instances]
        # Paced tasks start spread over one interval, so the offered load is even.
        next_at = started + (random.random() / pace if pace else 0.0)
        while True:
            if pace:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += 1 / pace
            now = time.monotonic()
            if now >= deadline:
                return
            verdict = await limiter.decide(checks)
            counts[0 if verdict.allowed else 1] += 1
            last[0] = max(last[0], time.monotonic())
            if not pace:
                await asyncio.sleep(0)

    try:
        await asyncio.gather(*(worker(n) for n in range(tasks)))
    finally:
        for limiter in limiters:
            await limiter.stop()
    calls = await _script_calls(stats) - before
    await stats.aclose()
    elapsed = last[0] - started
    rate, quota = limit.rate, limit.quota
    cap = max(
        holding_cap(rate.capacity, 16) if rate else 0,
        holding_cap(quota.count, 16) if quota else 0,
    )
    if quota is not None:
        bound = float(quota.count)  # a quota is never exceeded, in either mode
    else:
        assert rate is not None
        bound = rate.capacity + rate.count / rate.period * elapsed
        if mode == "batched":
            bound += instances * holding_cap(rate.capacity, 16)
    decided = counts[0] + counts[1]
    return {
        "scenario": scenario,
        "mode": mode,
        "limit": limit.as_data(),
        "instances": instances,
        "tasks": tasks,
        "seconds": round(elapsed, 3),
        "offered_per_second": round(decided / elapsed, 1) if elapsed else None,
        "admitted": counts[0],
        "refused": counts[1],
        "bound": round(bound, 1),
        "lease_cap": cap if mode == "batched" else 0,
        "script_calls_per_decision": round(calls / decided, 4) if decided else None,
    }


async def _accuracy(url: str, seconds: float, tasks: int) -> list[dict[str, Any]]:
    rate = RateLimit("200/second", burst=100)
    quota = RateLimit(quota="1000/day")
    runs = []
    for mode in ("exact", "batched"):
        for scenario, limit, pace in (
            ("rate, offered far above it", rate, None),
            # 200/s in all: half the rate over `tasks` tasks, evenly paced.
            ("rate, offered at half of it", rate, 100 / tasks),
            ("quota, offered far above it", quota, None),
        ):
            runs.append(
                await _accuracy_run(
                    url,
                    mode=mode,
                    limit=limit,
                    instances=4,
                    tasks=tasks,
                    seconds=seconds,
                    pace=pace,
                    scenario=scenario,
                )
            )
    return runs


# -- the report -------------------------------------------------------------------------------


async def _redis_version(url: str) -> str:
    client = Redis.from_url(url)
    try:
        info: dict[str, Any] = await client.info("server")
        return str(info.get("redis_version"))
    finally:
        await client.aclose()


def run(*, decisions: int, rounds: int, seconds: float, tasks: int) -> dict[str, Any]:
    measured_on = environment()  # before: the load average and commit of the run itself
    with redis_server() as url:
        version = asyncio.run(_redis_version(url))
        times = asyncio.run(_latency(url, decisions, rounds))
        accuracy = asyncio.run(_accuracy(url, seconds, tasks))
    latency = {name: _summary(times[name]) for name in VARIANTS}
    return {
        "environment": {**measured_on, "redis_server": version},
        "settings": {"decisions": decisions, "rounds": rounds, "seconds": seconds, "tasks": tasks},
        "latency_us": latency,
        "accuracy": accuracy,
    }


def markdown(data: dict[str, Any]) -> str:
    env, settings = data["environment"], data["settings"]
    lines = [
        "# Limits shared through Redis: cost and accuracy",
        "",
        f"Measured {env.get('date')} on {env.get('platform')}, {env.get('cpu_count')} CPUs, "
        f"{env.get('implementation')} {env.get('python')}, redis-server "
        f"{env.get('redis_server')} on 127.0.0.1 (the same machine), commit {env.get('commit')}; "
        f"load average before: {', '.join(f'{x:.2f}' for x in env.get('load_average') or [])}. "
        "Reproduce: `python3 -m benchmarks.ratelimit_shared`.",
        "",
        f"## One decision (µs; {settings['decisions']:,} each, in {settings['rounds']} "
        "shuffled rounds)",
        "",
        "| variant | median | p99 | mean | max |",
        "|---|---|---|---|---|",
    ]
    for name, row in data["latency_us"].items():
        lines.append(
            f"| {name} | {row['median']:.1f} | {row['p99']:.1f} | {row['mean']:.1f} | "
            f"{row['max']:.0f} |"
        )
    lines += [
        "",
        "`exact` and `batched` decide one rate; `4 parts` a key's rate and quota and a path "
        "rule's rate and quota together. `PING` is redis-py's round trip with nothing to "
        "decide: what any decision in Redis costs at least. Each value includes the event "
        "loop's turn and the timer. Round trips vary from run to run on a shared machine: "
        "compare the variants within one run (they are interleaved), not across runs.",
        "",
        f"## Accuracy ({settings['tasks']} tasks over 4 instances, "
        f"{settings['seconds']:g} s a run)",
        "",
        "| mode | scenario | limit | admitted | refused | bound | offered/s "
        "| script calls per decision |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in data["accuracy"]:
        limit = row["limit"] if isinstance(row["limit"], str) else json.dumps(row["limit"])
        lines.append(
            f"| {row['mode']} | {row['scenario']} | `{limit}` | {row['admitted']:,} "
            f"| {row['refused']:,} | {row['bound']:,} | {row['offered_per_second']} "
            f"| {row['script_calls_per_decision']} |"
        )
    lines += [
        "",
        "The bound over a run of `t` seconds is `burst + rate x t` for the exact mode, plus "
        "`instances x b` for the batched mode (`b = min(batch, max(1, burst // 10))`, what "
        "one instance may hold: 10 here), and a quota's count in both. At half the rate, "
        "every refusal is a false one.",
        "",
        "What this does not show: Redis on another host (add the network's round trip to "
        "every exact decision, and to the batched mode's refills), a Redis under other load, "
        "or instances in separate processes (here they share one event loop, which also "
        "runs the load).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ratelimit_shared", description=__doc__
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few decisions; check, do not measure"
    )
    parser.add_argument("--decisions", type=int, default=20_000, help="timed per variant (20,000)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0, help="per accuracy run (5)")
    parser.add_argument("--tasks", type=int, default=100, help="tasks in an accuracy run (100)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args(argv)
    if options.smoke:
        options.decisions, options.rounds, options.seconds, options.tasks = 40, 2, 0.3, 20
    try:
        data = run(
            decisions=options.decisions,
            rounds=options.rounds,
            seconds=options.seconds,
            tasks=options.tasks,
        )
    except BenchmarkSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_results(options.out, "ratelimit_shared", data, markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
