"""The in-process driver: every variant awaited directly on one event loop, no network.

Each request gets a fresh, realistic scope (the usual headers plus the
variant's credentials); the cost of building it is the same for every variant
and cancels out in the comparisons. Before a variant is timed, one request is
checked: status, body and the headers it must carry. Then rounds: in each,
the variants run in a shuffled order, ``requests`` requests each, and every
variant's time is paired with its baseline's time *from the same round*, so
a slow moment of the machine moves both. The summary is the median of the
per-round ratios (and of the added microseconds), with the quartiles as the
spread.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Scope

from benchmarks.apps import BODY, ROUTE, USUAL_HEADERS, Variant

__all__ = ["Answer", "BenchmarkError", "Summary", "measure", "summarise", "verify"]


class BenchmarkError(RuntimeError):
    """A variant answered its request wrongly: its timings would mean nothing."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def scope_for(variant: Variant) -> Scope:
    """A fresh HTTP scope as uvicorn builds it, with the variant's credentials."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 51234),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": ROUTE,
        "raw_path": ROUTE.encode(),
        "query_string": b"",
        "headers": [*USUAL_HEADERS, *variant.headers],
        "state": {},
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Message) -> None:
    return None


async def answer(app: ASGIApp, scope: Scope) -> Answer:
    """What ``app`` sends for one request."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, _receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    if start is None:
        raise BenchmarkError("the app sent no http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], list(start.get("headers", [])), body)


async def verify(variant: Variant, app: ASGIApp) -> Answer:
    """Check the variant's answer to its request; raise :class:`BenchmarkError` if wrong."""
    got = await answer(app, scope_for(variant))
    problems = []
    if got.status != variant.status:
        problems.append(f"status {got.status}, expected {variant.status}")
    if variant.body is not None and got.body != variant.body:
        problems.append(f"body {got.body[:60]!r}, expected {variant.body!r}")
    if variant.body is None and got.body == BODY:
        problems.append("the endpoint ran, but the request should have been refused")
    names = {name.lower() for name, _ in got.headers}
    missing = [name.decode() for name in variant.must_have if name not in names]
    if missing:
        problems.append(f"missing headers {', '.join(missing)}")
    for headers, refusing in variant.probes:
        probe = {**scope_for(variant), "headers": [*USUAL_HEADERS, *headers]}
        refused = await answer(app, probe)
        if refused.status not in refusing or refused.body == BODY:
            shown = ", ".join(name.decode() for name, _ in headers) or "no credentials"
            problems.append(f"answered {refused.status} to a request it must refuse ({shown})")
    if problems:
        raise BenchmarkError(f"{variant.name}: {'; '.join(problems)}")
    return got


async def _time(app: ASGIApp, variant: Variant, requests: int) -> float:
    """Seconds per request over ``requests`` fresh requests."""
    headers = [*USUAL_HEADERS, *variant.headers]
    base = scope_for(variant)
    started = time.perf_counter()
    for _ in range(requests):
        scope = {**base, "headers": list(headers), "state": {}}
        await app(scope, _receive, _discard)
    return (time.perf_counter() - started) / requests


def measure(
    chosen: Sequence[Variant],
    *,
    rounds: int,
    requests: int,
    seed: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, list[float]]:
    """Per-round seconds per request of every variant (all verified first)."""
    return asyncio.run(_measure(chosen, rounds, requests, random.Random(seed), log))


async def _measure(
    chosen: Sequence[Variant],
    rounds: int,
    requests: int,
    shuffle: random.Random,
    log: Callable[[str], None],
) -> dict[str, list[float]]:
    apps: dict[str, ASGIApp] = {}
    for variant in chosen:
        app = variant.build()
        await verify(variant, app)
        apps[variant.name] = app
    # What a preloaded production process does: the apps (100,000 keys among them)
    # move out of the collector's way instead of being traversed by every full pass.
    gc.collect()
    gc.freeze()
    try:
        for variant in chosen:  # warm-up: caches, lazily built middleware stacks
            await _time(apps[variant.name], variant, max(1, requests // 10))
        times: dict[str, list[float]] = {variant.name: [] for variant in chosen}
        for number in range(rounds):
            order = list(chosen)
            shuffle.shuffle(order)
            for variant in order:
                times[variant.name].append(await _time(apps[variant.name], variant, requests))
            log(f"  round {number + 1}/{rounds} done")
        for variant in chosen:  # still right after all that
            await verify(variant, apps[variant.name])
    finally:
        gc.unfreeze()
    return times


@dataclass(frozen=True)
class Summary:
    """A median with its quartiles."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if len(values) == 1:
            return cls(values[0], values[0], values[0])
        low, median, high = statistics.quantiles(values, n=4, method="inclusive")
        return cls(median, low, high)

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "q1": self.low, "q3": self.high}


def summarise(chosen: Sequence[Variant], times: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Each variant's time, its ratio to its baseline and its added cost, per round, summarised."""
    rows = []
    for variant in chosen:
        own = times[variant.name]
        base = times[variant.baseline]
        rows.append(
            {
                "name": variant.name,
                "group": variant.group,
                "baseline": variant.baseline,
                "note": variant.note,
                "options": variant.options,
                "us_per_request": Summary.of([t * 1e6 for t in own]).as_dict(),
                "ratio": Summary.of([t / b for t, b in zip(own, base, strict=True)]).as_dict(),
                "added_us": Summary.of(
                    [(t - b) * 1e6 for t, b in zip(own, base, strict=True)]
                ).as_dict(),
            }
        )
    return rows


def paired(
    times: dict[str, list[float]],
    numerator: tuple[str, str],
    denominator: tuple[str, str],
) -> tuple[Summary, int]:
    """Per-round ratio of two added costs: (a - a_base) / (b - b_base), summarised.

    A round in which ``b`` cost nothing over its baseline has no ratio; the
    second value says how many rounds were left out for that.
    """
    (a, a_base), (b, b_base) = numerator, denominator
    ratios = [
        (ta - tab) / (tb - tbb)
        for ta, tab, tb, tbb in zip(times[a], times[a_base], times[b], times[b_base], strict=True)
        if tb - tbb > 0
    ]
    if not ratios:
        raise BenchmarkError(f"{b} cost nothing over {b_base} in every round: no ratio")
    return Summary.of(ratios), len(times[a]) - len(ratios)
