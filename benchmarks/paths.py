"""What deciding a hostile path costs: 64 KiB paths of every shape against a short one.

    python3 -m benchmarks.paths            # writes benchmarks/results/paths.md and .json
    python3 -m benchmarks.paths --smoke    # a few repeats: proves it runs

Before issue 15 the walk looked up every prefix of the path, each a new string:
a 64 KiB path of ``/a`` segments took 0.85 s, ``"/" * 65000`` 2.4 s and 5.4 s
under a ``root_path``. Now only as many segments as the deepest rule has are
looked up, and a path over ``max_path_length`` is judged in its plain spelling
only. Each row is the median time of one whole request through the
middleware (the decision and the 414 or 401 it leads to), in the same process
and rounds as its baseline: the same middleware refusing ``/v1/models``
without a key, the cheapest refusal it makes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from starlette.types import Message, Scope

from asgi_apikey import APIKeyMiddleware
from benchmarks.report import write_results

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = 64 * 1024
#: The shapes of a 64 KiB path; the first is the baseline's short path.
SHAPES: dict[str, str] = {
    "baseline: /v1/models": "/v1/models",
    "/a segments": "/a" * (SIZE // 2),
    "slashes": "/" * SIZE,
    "dot segments": "/." * (SIZE // 2),
    "parent segments": "/a/.." * (SIZE // 5),
    "absolute form": "http://x" + "/a" * (SIZE // 2),
    "one segment": "/" + "a" * SIZE,
    "under a public rule": "/health" + "/a" * (SIZE // 2),
    "control characters": "/v1/admin" + "\n" * SIZE,
    # Just under max_path_length (8 KiB): every reading is judged in full.
    "8 KiB parent segments": "/a/.." * (8100 // 5),
    "8 KiB absolute form": "http://x" + "/./a" * (8100 // 4),
    "8 KiB slashes and dots": "//." * (8100 // 3),
}


async def _inner(scope: Scope, receive: Any, send: Any) -> None:
    # Only the public shape may get here: every other one is refused before the app.
    assert scope["path"].removeprefix(scope["root_path"]).startswith("/health/")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _app() -> APIKeyMiddleware:
    return APIKeyMiddleware(
        _inner,
        keys=["sk-bench-0123456789abcdef0123"],
        public=["/health", "/docs", "/openapi.json"],
        protected={"/v1/admin": {"admin"}, "/v1/admin/keys": {"admin", "keys"}},
    )


def _scope(path: str, root_path: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 51234),
        "root_path": root_path,
        "path": root_path + path,
        "raw_path": (root_path + path).encode("utf-8", "surrogateescape"),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
    }


async def _once(app: APIKeyMiddleware, path: str, root_path: str) -> tuple[float, int]:
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    await app(_scope(path, root_path), receive, send)
    return time.perf_counter() - started, statuses[0]


async def _measure(repeats: int, seed: int) -> list[dict[str, Any]]:
    app = _app()
    order = [(name, root) for name in SHAPES for root in ("", "/root")]
    times: dict[tuple[str, str], list[float]] = {key: [] for key in order}
    statuses: dict[tuple[str, str], int] = {}
    shuffle = random.Random(seed).shuffle
    for _ in range(repeats):
        shuffle(order)
        for name, root in order:
            elapsed, status = await _once(app, SHAPES[name], root)
            times[name, root].append(elapsed)
            statuses[name, root] = status
    rows = []
    for name in SHAPES:
        for root in ("", "/root"):
            median = statistics.median(times[name, root])
            base = statistics.median(times["baseline: /v1/models", root])
            rows.append(
                {
                    "path": name,
                    "root_path": root,
                    "length": len(SHAPES[name]),
                    "status": statuses[name, root],
                    "median_ms": round(median * 1e3, 4),
                    "max_ms": round(max(times[name, root]) * 1e3, 4),
                    "ratio_to_baseline": round(median / base, 1),
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Hostile paths: the cost of one request's path decision",
        "",
        "One request through `APIKeyMiddleware` (no key); the target is under 10 ms at 64 KiB.",
        "Over `max_path_length` (8 KiB) only the plain spelling is judged; the 8 KiB rows",
        "are the longest paths judged in every reading.",
        "",
        "| path | root_path | characters | answer | median ms | max ms | x baseline | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        verdict = "met" if row["median_ms"] < 10 else "missed"
        lines.append(
            f"| {row['path']} | {row['root_path'] or '-'} | {row['length']:,} | {row['status']} "
            f"| {row['median_ms']:.3f} | {row['max_ms']:.3f} | {row['ratio_to_baseline']} "
            f"| {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paths", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few repeats; check, do not measure")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args(argv)
    rows = asyncio.run(_measure(3 if options.smoke else options.repeats, options.seed))
    write_results(options.out, "paths", rows, markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
