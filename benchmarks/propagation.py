"""Many instances on one Redis key store: how fast a revocation reaches another instance,
and what the Redis source costs a request.

Two measurements, against a redis-server this script starts on 127.0.0.1:

1. **Propagation.** Two instances, A and B, each an ``APIKeyAuth`` following
   the store with its own ``RedisKeySource``, its own connections and its own
   event loop in its own thread (two workers, as far as Redis can tell). For
   each round a fresh key is added and, once B accepts it, A revokes it through
   ``RedisKeyStore.revoke``; the time from that call until ``B.verify`` refuses
   the key is one sample. B is polled every ``POLL`` seconds from the main
   thread, so a sample is at most that much late. The heartbeat is set far
   above any sample, so only the published change can deliver it. Adding a
   key is timed the same way.
2. **Accepted-path cost.** In one event loop, as the benchmark suite measures
   it (``benchmarks/driver.py``): bare Starlette, asgi_apikey with the key in
   code, and asgi_apikey with the same key from a started ``RedisKeySource``,
   in shuffled paired rounds. The figure is the ratio of the two added costs
   over bare Starlette, per round. Both read one immutable local snapshot,
   so it should be 1.

    python3 -m benchmarks.propagation            # about a minute; results/propagation.md
    python3 -m benchmarks.propagation --smoke    # seconds: proves it runs, measures nothing

Reported, never asserted (see ``timing.py`` for why).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.types import ASGIApp

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware
from asgi_apikey.redis_store import RedisKeySource, RedisKeyStore, add_key, revoke_key
from benchmarks import apps
from benchmarks.driver import Summary, _time, verify
from benchmarks.report import environment, write_results

RESULTS = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
POLL = 0.0001  # seconds between two looks at instance B
TARGET_P99_MS = 50.0
T = TypeVar("T")


class BenchmarkSetupError(RuntimeError):
    """Something the benchmark needs is missing (redis-server)."""


# -- a redis-server of our own ------------------------------------------------------------


@contextmanager
def redis_server() -> Iterator[str]:
    """A fresh redis-server on 127.0.0.1 (no persistence); yields its URL, always stops it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchmarkSetupError("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        command = [binary, "--bind", HOST, "--port", str(port), "--save", "", "--dir", directory]
        process = subprocess.Popen(  # noqa: S603 - redis-server from PATH, our argv
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection((HOST, port), timeout=0.5) as connection:
                        connection.sendall(b"PING\r\n")
                        if connection.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise BenchmarkSetupError("redis-server did not start")
                time.sleep(0.02)
            yield f"redis://{HOST}:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


# -- instances, each with its own event loop ------------------------------------------------


class Instance:
    """An authenticator following the store, on an event loop of its own thread."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.auth = APIKeyAuth(source=RedisKeySource(url, heartbeat=60.0, max_staleness=120.0))
        self.store = RedisKeyStore(url)
        self.run(self.auth.start())

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self.loop)
        return future.result(timeout=30)

    def close(self) -> None:
        self.run(self.auth.stop())
        self.run(self.store.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> float:
    """Seconds until ``condition()`` holds, looking every POLL seconds."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise RuntimeError("a change did not reach instance B in 10 s")
        time.sleep(POLL)
    return time.perf_counter() - start


def propagation(url: str, rounds: int) -> dict[str, list[float]]:
    """Seconds from A's add / revoke call until B accepts / refuses, per round."""
    # A first change gives the store its epoch, so no instance reloads for it later.
    add_key(url, APIKey("sk-prop-warm-up-0123456789abcdef"))
    revoke_key(url, APIKey("sk-prop-warm-up-0123456789abcdef"))
    a, b = Instance(url), Instance(url)
    added, revoked = [], []
    try:
        for number in range(rounds):
            token = f"sk-prop-{number:06d}-{random.getrandbits(64):016x}"
            key = APIKey(token)

            def accepted(token: str = token) -> bool:
                return b.auth.verify(token) is not None

            start = time.perf_counter()
            a.run(a.store.add(key))
            added.append(time.perf_counter() - start + _until(accepted))
            start = time.perf_counter()
            a.run(a.store.revoke(key))
            revoked.append(time.perf_counter() - start + _until(lambda: not accepted()))
            time.sleep(0.002)  # not a flood: one change at a time
        if b.auth.status()["source"]["repairs"] or b.auth.status()["source"]["full_loads"] != 1:
            raise RuntimeError("instance B reloaded the store: the samples are not pub/sub's")
    finally:
        a.close()
        b.close()
    return {"add": added, "revoke": revoked}


# -- the accepted path: keys in code, keys from Redis ---------------------------------------


def _app(auth: APIKeyAuth) -> Starlette:
    app = apps.starlette()
    app.add_middleware(APIKeyMiddleware, auth=auth)
    return app


async def _accepted(url: str, rounds: int, requests: int) -> dict[str, list[float]]:
    async with RedisKeyStore(url) as store:
        await store.add(APIKey(apps.KEY))
    redis_auth = APIKeyAuth(source=RedisKeySource(url))
    await redis_auth.start()
    try:
        built: dict[str, ASGIApp] = {
            "bare": apps.bare(),
            "asgi_apikey": _app(APIKeyAuth(keys=[apps.KEY])),
            "asgi_apikey, Redis source": _app(redis_auth),
        }
        variant = next(v for v in apps.variants((1,)) if v.name == "asgi_apikey")
        bare = next(v for v in apps.variants((1,)) if v.name == "bare")
        for name, app in built.items():
            await verify(bare if name == "bare" else variant, app)
            await _time(app, variant, max(1, requests // 10))  # warm-up
        times: dict[str, list[float]] = {name: [] for name in built}
        order = list(built)
        for _ in range(rounds):
            random.shuffle(order)
            for name in order:
                times[name].append(await _time(built[name], variant, requests))
        for name, app in built.items():
            await verify(bare if name == "bare" else variant, app)
    finally:
        await redis_auth.stop()
    return times


# -- the report -----------------------------------------------------------------------------


def _ms(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "median": statistics.median(ordered) * 1e3,
        "p99": p99 * 1e3,
        "max": ordered[-1] * 1e3,
        "samples": len(ordered),
    }


def run(*, rounds: int, cost_rounds: int, requests: int) -> dict[str, Any]:
    with redis_server() as url:
        samples = propagation(url, rounds)
        times = asyncio.run(_accepted(url, cost_rounds, requests))
    bare = times["bare"]
    added = {
        name: [(t - b) * 1e6 for t, b in zip(times[name], bare, strict=True)]
        for name in ("asgi_apikey", "asgi_apikey, Redis source")
    }
    ratios = [
        r / k
        for r, k in zip(added["asgi_apikey, Redis source"], added["asgi_apikey"], strict=True)
        if k > 0
    ]
    return {
        "environment": environment(),
        "settings": {"rounds": rounds, "cost_rounds": cost_rounds, "requests": requests},
        "poll_ms": POLL * 1e3,
        "propagation_ms": {op: _ms(values) for op, values in samples.items()},
        "target_p99_ms": TARGET_P99_MS,
        "accepted_us": {
            name: Summary.of([t * 1e6 for t in v]).as_dict() for name, v in times.items()
        },
        "added_us": {name: Summary.of(v).as_dict() for name, v in added.items()},
        "redis_over_code": Summary.of(ratios).as_dict() if ratios else None,
        "rounds_left_out": len(bare) - len(ratios),
        "samples": samples,
    }


def markdown(data: dict[str, Any]) -> str:
    env, settings = data["environment"], data["settings"]
    revoke = data["propagation_ms"]["revoke"]
    verdict = "met" if revoke["p99"] < data["target_p99_ms"] else "missed"
    lines = [
        "# Many instances: propagation and cost of the Redis key store",
        "",
        f"{env.get('python', '')} on {env.get('cpu_count', '?')} CPUs; redis-server on 127.0.0.1. "
        f"{settings['rounds']} changes; {settings['cost_rounds']} rounds of "
        f"{settings['requests']} requests for the cost. Reproduce: "
        "`python3 -m benchmarks.propagation`.",
        "",
        "## From A's call to B's answer (ms)",
        "",
        "| change | median | p99 | max | samples |",
        "|---|---|---|---|---|",
    ]
    for op, row in data["propagation_ms"].items():
        lines.append(
            f"| {op} | {row['median']:.2f} | {row['p99']:.2f} | {row['max']:.2f} | "
            f"{row['samples']} |"
        )
    lines += [
        "",
        f"Target: revocation p99 under {data['target_p99_ms']:g} ms: **{verdict}** "
        f"({revoke['p99']:.2f} ms). B is looked at every {data['poll_ms']:g} ms, so a "
        "sample may be that much late; each includes A's own round trip to Redis.",
        "",
        "## The accepted path (µs per request, in one event loop)",
        "",
        "| variant | µs per request (median, quartiles) | added over bare |",
        "|---|---|---|",
    ]
    for name, row in data["accepted_us"].items():
        added = data["added_us"].get(name)
        shown = f"{added['median']:.2f} ({added['q1']:.2f} to {added['q3']:.2f})" if added else "-"
        lines.append(
            f"| {name} | {row['median']:.2f} ({row['q1']:.2f} to {row['q3']:.2f}) | {shown} |"
        )
    ratio = data["redis_over_code"]
    if ratio is not None:
        lines += [
            "",
            f"Added cost with the Redis source / with the key in code: **{ratio['median']:.2f}** "
            f"(quartiles {ratio['q1']:.2f} to {ratio['q3']:.2f}; rounds left out where the key "
            f"in code cost nothing over bare: {data['rounds_left_out']}).",
        ]
    lines += [
        "",
        "What this does not show: instances on other hosts (add the network's round trip), "
        "a Redis under load, or a large key set (a change among 100,000 keys copies the "
        "two lookup dicts, some 16 ms on this machine).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.propagation", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few rounds; check, do not measure")
    parser.add_argument("--rounds", type=int, default=500, help="changes timed (default 500)")
    parser.add_argument("--cost-rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args(argv)
    if options.smoke:
        options.rounds, options.cost_rounds, options.requests = 5, 2, 20
    apps.configure_json_logging()
    try:
        data = run(
            rounds=options.rounds, cost_rounds=options.cost_rounds, requests=options.requests
        )
    except BenchmarkSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_results(options.out, "propagation", data, markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
