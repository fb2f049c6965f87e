"""What a local rate limit adds to an accepted request, and what 100,000 active keys hold.

    python -m benchmarks.ratelimit_local          # a few minutes: results/ratelimit_local.*
    python -m benchmarks.ratelimit_local --smoke  # seconds: checks every answer, times nothing

Three measurements, in one process:

1. **The accepted path** (the house driver, ``benchmarks.driver``): the same
   ``APIKeyMiddleware`` with one key in front of a raw ASGI endpoint, without
   a limit and with a key limit (the request path's one-call GCRA), with
   ``headers=True`` (the ``RateLimit`` fields on every response), with a rate
   and a quota, and with a key limit plus a path limit. Every round runs each
   variant in a shuffled order and pairs it with the no-limit variant of the
   same round: the added nanoseconds are the median of those per-round
   differences. Target: a key limit adds under 1 µs.
2. **The limiter alone**: ``GCRA.admit`` and ``LocalLimiter.decide`` over
   one to three parts, in interleaved rounds, nanoseconds per call.
3. **Memory per active key**: 100,000 keys under a default limit, one request
   each through the middleware, measured with :mod:`tracemalloc`: what the
   limiter's modules allocated (its buckets and counters), and what the whole
   process grew by (the per-key request counters too).

Limits are set so that nothing is refused while timing (a rate of 100 a second
with a burst of ten million): the arithmetic is the same whatever the numbers,
and every variant's counters are checked for refusals afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware, RateLimit, RateLimits
from asgi_apikey.ratelimit.gcra import GCRA
from asgi_apikey.ratelimit.local import Check, LocalLimiter
from benchmarks.apps import (
    BEARER,
    BODY,
    KEY,
    REFUSES,
    ROUTE,
    Variant,
    configure_json_logging,
    keys,
)
from benchmarks.driver import BenchmarkError, Summary, answer, measure, scope_for, summarise
from benchmarks.report import environment, measured_on, verdict, write_results

RESULTS = Path(__file__).resolve().parent / "results"
#: Never refused while timing: 100 a second, ten million at once.
ROOMY = RateLimit("100/second", burst=10_000_000)
ROOMY_WITH_QUOTA = RateLimit("100/second", burst=10_000_000, quota="1000000000/day")
#: The target for a key limit's added cost on the accepted path, in ns.
TARGET_NS = 1000.0
NO_LIMIT = "no limit"
KEY_LIMIT = "key limit"
FIELD_NAMES = (b"ratelimit", b"ratelimit-policy")


async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The cheapest endpoint there is: whatever the variants add is all there is to see."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


class Built:
    """The middleware each variant builds, kept to read its counters afterwards."""

    def __init__(self) -> None:
        self.middleware: dict[str, APIKeyMiddleware] = {}

    def maker(
        self, name: str, key: APIKey, rate_limits: RateLimits | None
    ) -> Callable[[], ASGIApp]:
        def build() -> ASGIApp:
            app = APIKeyMiddleware(endpoint, keys=[key], rate_limits=rate_limits)
            self.middleware[name] = app
            return app

        return build

    def refused(self) -> dict[str, int]:
        """Requests each variant refused as over a limit (must be 0)."""
        return {
            name: app.auth.counters().refused["rate_limited"]
            for name, app in self.middleware.items()
        }


def variants(built: Built) -> list[Variant]:
    """The accepted-path variants; every one but the bare endpoint is paired with 'no limit'."""
    plain = APIKey(KEY, name="bench")
    limited = APIKey(KEY, name="bench", limit=ROOMY)
    with_quota = APIKey(KEY, name="bench", limit=ROOMY_WITH_QUOTA)
    chat = ROUTE.rsplit("/", 1)[0]  # /v1/chat: the timed route is below it

    def variant(name: str, key: APIKey, limits: RateLimits | None, **options: Any) -> Variant:
        return Variant(
            name,
            "accepted",
            built.maker(name, key, limits),
            headers=list(BEARER),
            baseline=NO_LIMIT,
            probes=REFUSES,
            **options,
        )

    return [
        Variant("bare", "accepted", lambda: endpoint, note="the raw endpoint, no middleware"),
        variant(NO_LIMIT, plain, None, note="one key, no limit (the baseline)"),
        variant(KEY_LIMIT, limited, None, note="the key's own rate: one GCRA call"),
        variant(
            "key limit, headers=True",
            limited,
            RateLimits(headers=True),
            must_have=FIELD_NAMES,
            note="and the RateLimit fields on the response",
        ),
        variant("key rate and quota", with_quota, None, note="a rate and a calendar-day quota"),
        variant(
            "key and path limit",
            limited,
            RateLimits(paths={chat: ROOMY}),
            note=f"and a limit on {chat} for this key",
        ),
    ]


# -- the limiter alone --------------------------------------------------------------------


def limiter_cases(key_count: int) -> dict[str, Callable[[], object]]:
    """One call each: GCRA.admit and LocalLimiter.decide over one to three parts."""
    gcra = GCRA()
    rate = ROOMY.rate
    assert rate is not None
    clock = time.monotonic_ns
    local = LocalLimiter()
    one = (Check("bench", ROOMY),)
    both = (Check("bench", ROOMY_WITH_QUOTA),)
    with_path = (Check("bench", ROOMY), Check(("path", "/v1/chat", "bench"), ROOMY, "path-"))
    many = [(Check(f"key-{n}", ROOMY),) for n in range(key_count)]
    turn = iter(range(0))

    def admit() -> object:
        return gcra.admit("bench", rate, clock())

    def next_of_many() -> object:
        nonlocal turn
        try:
            return local.decide(many[next(turn)])
        except StopIteration:
            turn = iter(range(len(many)))
            return local.decide(many[next(turn)])

    return {
        "GCRA.admit (one rate)": admit,
        "LocalLimiter.decide: one rate": lambda: local.decide(one),
        "LocalLimiter.decide: a rate and a quota": lambda: local.decide(both),
        "LocalLimiter.decide: key and path rates": lambda: local.decide(with_path),
        f"LocalLimiter.decide: one rate, {key_count:,} keys in turn": next_of_many,
    }


def time_limiter(
    cases: dict[str, Callable[[], object]], rounds: int, calls: int, shuffle: random.Random
) -> dict[str, list[float]]:
    """Per round, ns per call of each case; cases in a shuffled order each round."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    clock = time.perf_counter_ns
    for name in order:  # warm-up, and proof that nothing is refused
        for _ in range(max(1, calls // 10)):
            if not _admitted(cases[name]()):
                raise BenchmarkError(f"{name}: refused while warming up")
    for _ in range(rounds):
        shuffle.shuffle(order)
        for name in order:
            call = cases[name]
            started = clock()
            for _ in range(calls):
                call()
            samples[name].append((clock() - started) / calls)
    for name, call in cases.items():
        if not _admitted(call()):
            raise BenchmarkError(f"{name}: refused after the rounds: the timings include refusals")
    return samples


def _admitted(result: object) -> bool:
    return result == 0 if isinstance(result, int) else bool(getattr(result, "allowed", False))


# -- memory ---------------------------------------------------------------------------------


async def _one_request(app: ASGIApp, key: str) -> int:
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = scope_for(Variant("memory", "keys", lambda: app))
    scope["headers"] = [(b"host", b"bench"), (b"authorization", b"Bearer " + key.encode())]
    await app(scope, receive, send)
    return statuses[0]


def memory(key_count: int, limit: RateLimit) -> dict[str, Any]:
    """Bytes per active key after one request each: the limiter's, and the whole process's."""
    secrets = keys(key_count)
    auth = APIKeyAuth(keys=secrets)
    app = APIKeyMiddleware(endpoint, auth=auth, rate_limits=RateLimits(limit))
    limiter = app._limits.local

    async def run() -> list[int]:
        return [await _one_request(app, secret) for secret in secrets]

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        statuses = asyncio.run(run())
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    if set(statuses) != {200}:
        raise BenchmarkError(f"memory run: statuses {sorted(set(statuses))}, expected only 200")
    if len(limiter) != key_count * (1 + (limit.quota is not None)):
        raise BenchmarkError(f"memory run: the limiter holds {len(limiter)} entries")
    grown = after.compare_to(before, "filename")
    in_limiter = sum(
        stat.size_diff
        for stat in grown
        if "asgi_apikey/ratelimit/" in stat.traceback[0].filename.replace("\\", "/")
    )
    total = sum(stat.size_diff for stat in grown)
    return {
        "limit": limit.as_data(),
        "keys": key_count,
        "limiter_entries": len(limiter),
        "limiter_bytes_per_key": round(in_limiter / key_count, 1),
        "process_bytes_per_key": round(total / key_count, 1),
    }


# -- checks, the run, the report --------------------------------------------------------------


def _fixed(app: ASGIApp) -> Callable[[], ASGIApp]:
    return lambda: app


async def check_answers() -> list[str]:
    """Each configuration answers as it must: admitted, then 429 over a small limit."""
    checked = []
    for name, limits in (
        ("a key's own limit", None),
        ("headers=True", RateLimits(headers=True)),
        ("a path limit", RateLimits(paths={"/v1/chat": "10/hour"})),
    ):
        app = APIKeyMiddleware(
            endpoint, keys=[APIKey(KEY, name="check", limit="2/hour")], rate_limits=limits
        )
        variant = Variant(name, "accepted", _fixed(app), headers=list(BEARER))
        statuses = [(await answer(app, scope_for(variant))) for _ in range(3)]
        got = [response.status for response in statuses]
        if got != [200, 200, 429]:
            raise BenchmarkError(f"{name}: statuses {got}, expected [200, 200, 429]")
        refused = dict(statuses[2].headers)
        if refused.get(b"retry-after") != b"1800" or b"ratelimit" not in refused:
            raise BenchmarkError(f"{name}: the 429 lacks Retry-After: 1800 or the fields")
        checked.append(f"{name}: 200, 200, 429 (Retry-After: 1800)")
    return checked


def run(
    *, rounds: int, requests: int, calls: int, memory_keys: int, seed: int | None, smoke: bool
) -> dict[str, Any]:
    shuffle = random.Random(seed)
    env = environment()
    checked = asyncio.run(check_answers())
    built = Built()
    chosen = variants(built)
    print(f"accepted path: {len(chosen)} variants, {rounds} rounds", flush=True)
    times = measure(chosen, rounds=rounds, requests=requests, seed=seed, log=lambda _: None)
    refused = built.refused()
    if any(refused.values()):
        raise BenchmarkError(f"requests refused while timing: {refused}")
    rows = summarise(chosen, times)
    print("the limiter alone", flush=True)
    cases = limiter_cases(min(memory_keys, 100_000))
    samples = time_limiter(cases, rounds, calls, shuffle)
    limiter = [
        {"name": name, "ns_per_call": Summary.of(values).as_dict()}
        for name, values in samples.items()
    ]
    print(f"memory: {memory_keys:,} keys", flush=True)
    # A bucket whose interval has passed is full again (idle) and may be swept: the
    # interval here (a minute) outlasts the run, so every key stays active.
    memory_rows = [memory(memory_keys, RateLimit("60/hour"))]
    memory_rows.append(memory(memory_keys, RateLimit("60/hour", quota="1000/day")))
    key_limit = next(row for row in rows if row["name"] == KEY_LIMIT)
    added_ns = Summary(
        key_limit["added_us"]["median"] * 1000,
        key_limit["added_us"]["q1"] * 1000,
        key_limit["added_us"]["q3"] * 1000,
    )
    return {
        "smoke": smoke,
        "environment": env,
        "settings": {
            "rounds": rounds,
            "requests": requests,
            "calls": calls,
            "memory_keys": memory_keys,
            "seed": seed,
        },
        "checks": checked,
        "rows": rows,
        "limiter": limiter,
        "memory": memory_rows,
        "target": {
            "target": "a key limit's added cost on the accepted path, ns",
            "measured": added_ns.as_dict(),
            "limit": TARGET_NS,
            "verdict": "not measured (smoke)"
            if smoke
            else verdict(added_ns, TARGET_NS, at_most=True),
        },
        "times": times,
    }


def _ns(summary: dict[str, float], scale: float = 1000.0) -> str:
    return (
        f"{summary['median'] * scale:,.0f} ({summary['q1'] * scale:,.0f} to "
        f"{summary['q3'] * scale:,.0f})"
    )


def markdown(data: dict[str, Any]) -> str:
    settings, target = data["settings"], data["target"]
    lines = [
        "# Local rate limits: cost on the accepted path, and memory",
        "",
        measured_on(data),
        f"In process, no network: {settings['rounds']} rounds of {settings['requests']:,} "
        "requests per variant, shuffled each round; medians of per-round values, quartiles "
        "in parentheses; added = over the 'no limit' variant of the same round.",
        "",
        "## Target",
        "",
        "| target | measured ns | limit | verdict |",
        "|---|---|---|---|",
        f"| {target['target']} | {_ns(target['measured'], 1.0)} | < {target['limit']:,.0f} "
        f"| {target['verdict']} |",
        "",
        "## Accepted request through the middleware (ns per request)",
        "",
        "| variant | ns per request | added ns | note |",
        "|---|---|---|---|",
    ]
    for row in data["rows"]:
        added = "—" if row["name"] in ("bare", NO_LIMIT) else _ns(row["added_us"])
        lines.append(f"| {row['name']} | {_ns(row['us_per_request'])} | {added} | {row['note']} |")
    lines += [
        "",
        f"## The limiter alone ({settings['calls']:,} calls per case a round)",
        "",
        "| call | ns per call |",
        "|---|---|",
    ]
    lines += [f"| {row['name']} | {_ns(row['ns_per_call'], 1.0)} |" for row in data["limiter"]]
    lines += [
        "",
        "## Memory per active key (tracemalloc, after one request each)",
        "",
        "| limit | keys | limiter entries | limiter bytes per key | process bytes per key |",
        "|---|---|---|---|---|",
    ]
    for row in data["memory"]:
        lines.append(
            f"| `{json.dumps(row['limit'])}` | {row['keys']:,} | {row['limiter_entries']:,} "
            f"| {row['limiter_bytes_per_key']:,.0f} | {row['process_bytes_per_key']:,.0f} |"
        )
    lines += [
        "",
        "Limiter bytes are what the rate-limit modules allocated (each bucket's tuple and "
        "integer, each quota counter's, the tables' growth); the process figure adds the "
        "rest a new key's first request costs (the request counters, which count the first "
        "10,000 key ids one by one). A key is active while its bucket is not full again "
        "(here a minute after its request): idle entries are swept when a new key would "
        "double the table, so it holds at most about twice the keys active at the last sweep.",
        "",
        "## Checked before timing",
        "",
        *(f"- {line}" for line in data["checks"]),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ratelimit_local", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check, do not measure")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=20_000, help="per variant a round")
    parser.add_argument("--calls", type=int, default=50_000, help="limiter calls per case a round")
    parser.add_argument("--memory-keys", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args(argv)
    if options.smoke:
        options.rounds, options.requests, options.calls, options.memory_keys = 2, 50, 100, 1_000
    configure_json_logging()  # as the suite: refusals' events rendered, written nowhere
    data = run(
        rounds=options.rounds,
        requests=options.requests,
        calls=options.calls,
        memory_keys=options.memory_keys,
        seed=options.seed,
        smoke=options.smoke,
    )
    write_results(options.out, "ratelimit_local", data, markdown(data))
    print(f"written to {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
