"""End to end: requests per second through real servers, asgi_apikey against the bare app.

Three apps: the bare app, the headers-only variant (a no-op middleware that adds
exactly the security headers asgi_apikey adds, so the two responses are the same
bytes but for the date) and asgi_apikey. Three servers: uvicorn with ``--http
h11`` and with ``--http httptools`` (``--loop asyncio``, one worker), and
hypercorn (HTTP/1.1 through h11, asyncio, no worker processes: ``-w 0``).

Each timed run starts a fresh server on a free port of 127.0.0.1 serving one of
the factories in :mod:`benchmarks.apps`, checks that it answers the way it must
(status, body, the security headers exactly where they belong, and asgi_apikey
refusing a request without credentials with 401), warms it up, puts a bounded
load on it and stops it. The load generator is ``wrk`` where it is installed,
else an async ``httpx2`` client in this process. All apps get the same bearer
request.

Rounds are interleaved: each round runs, for every server, the three apps in a
shuffled order, and the round's ratios (asgi_apikey/bare, asgi_apikey/headers,
headers/bare) compare runs made moments apart, so a machine that slows down or
speeds up during the suite moves both sides of a ratio together. Before the
rounds, :mod:`benchmarks.encoding` times each server's own response-head code
with and without the headers, to say how much of the headers' cost is the
server's.

    python -m benchmarks.e2e --duration 3 --rounds 10 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx2

from asgi_apikey.settings import AuthSettings
from benchmarks import encoding
from benchmarks.apps import BODY, KEY, ROUTE, SECURITY_HEADERS
from benchmarks.e2e_report import LABELS

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the only address this module ever connects to
APPS = ("bare", "headers", "asgi_apikey")
FACTORIES = {
    "bare": "benchmarks.apps:bare",
    "headers": "benchmarks.apps:headers_only",
    "asgi_apikey": "benchmarks.apps:apikey_named",
}
#: The servers: uvicorn with each HTTP implementation, and hypercorn (h11).
HTTP = ("h11", "httptools", "hypercorn")
#: Each round's ratios: name -> (numerator app, denominator app).
RATIOS = {
    "ratio": ("asgi_apikey", "bare"),
    "vs_headers": ("asgi_apikey", "headers"),
    "headers_ratio": ("headers", "bare"),
}
TOOLS = ("wrk", "httpx")
BEARER = {"Authorization": f"Bearer {KEY}"}

#: How long a server may take to answer on its port, and to stop when asked.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
#: A request of the check or of the httpx load may take this long before it counts as failed.
REQUEST_TIMEOUT = 10.0
#: What a wrk run may take beyond its duration before it is killed.
WRK_GRACE = 30.0

#: The variables asgi_apikey reads; the servers start without them, whatever the shell has set.
AUTH_VARIABLES = frozenset(name.upper() for name in AuthSettings.model_fields)

CAVEATS = {
    "wrk": (
        "wrk (one thread) and the server run side by side, each pinned to its own CPU "
        "with taskset where it is available; the ratio is the server's own throughput "
        "with and without the middleware, as far as one server process and this "
        "machine allow. Runs on a shared virtual machine vary by several per cent."
    ),
    "httpx": (
        "wrk was not used: the load comes from an async httpx2 client in the driver "
        "process, which costs far more CPU per request than wrk and shares the cores with "
        "the server. The client, not the server, sets most of both rates, so the "
        "middleware's cost is mostly hidden (the ratios tend towards 1) and the "
        "client's own jitter dominates the spread. "
        "Compare ratios only with runs made with the same tool."
    ),
}


class BenchError(Exception):
    """A run that cannot give a trustworthy number: the server, its answers or the load failed."""


# -- the server -------------------------------------------------------------------------------


@dataclass
class Server:
    """One server subprocess; :attr:`returncode` is set once it has been stopped."""

    app: str
    http: str
    factory: str
    port: int = 0
    pid: int | None = None
    returncode: int | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """What runs, for messages: the server and the factory it serves."""
        return f"{LABELS.get(self.http, self.http)} ({self.factory})"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{ROUTE}"

    def record(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "http": self.http,
            "factory": self.factory,
            "port": self.port,
            "pid": self.pid,
            "returncode": self.returncode,
        }

    def output(self, limit: int = 2_000) -> str:
        """The tail of what the server wrote (stdout and stderr), for error messages."""
        if self.log is None:
            return ""
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().decode("utf-8", "replace").strip()
        return text[-limit:]


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on now (the server binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def pinned(cpu: int) -> list[str]:
    """A ``taskset`` prefix that keeps a process on one CPU, where that is possible.

    With the server on one core and the load generator on another, neither
    steals the other's time slices: the runs vary far less on a 2-core machine.
    """
    taskset = shutil.which("taskset")
    if taskset is None or (os.cpu_count() or 1) < 2:
        return []
    return [taskset, "-c", str(cpu)]


def server_command(factory: str, http: str, port: int) -> list[str]:
    """A server's argv: ``http`` is ``h11`` or ``httptools`` (uvicorn), or ``hypercorn``."""
    if http == "hypercorn":
        return [
            *pinned(1),
            sys.executable,
            "-m",
            "hypercorn",
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            "0",  # serve in this process: one process, like uvicorn's single worker
            "--log-level",
            "warning",
            f"{factory}()",  # hypercorn evaluates the name: a call is its factory
        ]
    return [
        *pinned(1),
        sys.executable,
        "-m",
        "uvicorn",
        factory,
        "--factory",
        "--http",
        http,
        "--loop",
        "asyncio",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def server_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name.upper() not in AUTH_VARIABLES}


def _stop(child: subprocess.Popen[bytes]) -> None:
    """Terminate, wait a bounded time, kill: the child is reaped whatever happens here."""
    try:
        if child.poll() is None:
            child.terminate()
            with suppress(subprocess.TimeoutExpired):
                child.wait(timeout=STOP_TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _wait_for_port(server: Server, child: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if child.poll() is not None:
            raise BenchError(
                f"{server.label} exited with status "
                f"{child.returncode} before answering on {HOST}:{server.port}:\n{server.output()}"
            )
        try:
            with socket.create_connection((HOST, server.port), timeout=0.25):
                return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise BenchError(
                f"{server.label} did not answer on "
                f"{HOST}:{server.port} within {timeout:g} s:\n{server.output()}"
            )
        time.sleep(0.05)


@contextmanager
def serve(
    app: str, http: str, factory: str, servers: list[Server] | None = None
) -> Iterator[Server]:
    """Run ``factory`` under the server ``http`` names until the block ends, then stop it.

    Also on Ctrl-C.

    The server is appended to ``servers`` as soon as it has a process, so a caller
    can see every process it caused, and whether each has exited.
    """
    for attempt in range(3):
        server = Server(app, http, factory, port=free_port())
        if servers is not None:
            servers.append(server)
        with tempfile.TemporaryFile() as log:
            server.log = log
            try:
                child = subprocess.Popen(  # noqa: S603 - our argv: this interpreter, fixed arguments
                    server_command(factory, http, server.port),
                    cwd=ROOT,
                    env=server_environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                server.pid = child.pid
                try:
                    _wait_for_port(server, child, START_TIMEOUT)
                except BenchError:
                    # Another process took the port between our probe and the server's bind.
                    if attempt < 2 and "address already in use" in server.output().lower():
                        continue
                    raise
                yield server
                if child.poll() is not None:
                    raise BenchError(
                        f"{server.label} exited with status "
                        f"{child.returncode} during the run:\n{server.output()}"
                    )
                return
            finally:
                if server.pid is not None:
                    _stop(child)
                    server.returncode = child.returncode
                server.log = None
    raise AssertionError("unreachable")  # pragma: no cover


#: The apps whose responses must carry the security headers, in asgi_apikey's order.
SECURED = frozenset({"headers", "asgi_apikey"})
_SECURITY_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)


def security_headers(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The security headers among a response's raw headers, in the order they came."""
    return [(name.lower(), value) for name, value in headers if name.lower() in _SECURITY_NAMES]


def check(server: Server) -> None:
    """The answers that make a number mean something; anything else is a :class:`BenchError`.

    Every app serves the bearer request; asgi_apikey refuses one without
    credentials, the others serve it. The headers-only variant and asgi_apikey
    answer with exactly :data:`~benchmarks.apps.SECURITY_HEADERS` (same names,
    values and order), the bare app with none: so the two differ by the check alone.
    """
    must_refuse = server.app == "asgi_apikey"
    with httpx2.Client(trust_env=False, timeout=REQUEST_TIMEOUT) as client:
        try:
            accepted = client.get(server.url, headers=BEARER)
            anonymous = client.get(server.url)
        except httpx2.HTTPError as error:
            raise BenchError(f"{server.label}: {error!r}") from error
    if accepted.status_code != 200 or accepted.content != BODY:
        raise BenchError(
            f"{server.label} answered the bearer request with "
            f"{accepted.status_code} {accepted.content[:200]!r}, not 200 {BODY!r}"
        )
    if must_refuse and anonymous.status_code != 401:
        raise BenchError(
            f"{server.label} answered a request without credentials "
            f"with {anonymous.status_code}, not 401: it does not check keys"
        )
    if not must_refuse and (anonymous.status_code != 200 or anonymous.content != BODY):
        raise BenchError(
            f"{server.label} answered a request without credentials "
            f"with {anonymous.status_code} {anonymous.content[:200]!r}, not 200 {BODY!r}"
        )
    expected = list(SECURITY_HEADERS) if server.app in SECURED else []
    found = security_headers(accepted.headers.raw)
    if found != expected:
        raise BenchError(
            f"{server.label} answered with the security headers {found!r}, not {expected!r}"
        )


# -- the load ---------------------------------------------------------------------------------


def wrk_seconds(duration: float) -> int:
    """wrk takes whole seconds: ``duration`` rounded, at least 1."""
    return max(1, round(duration))


_WRK_RATE = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_WRK_TOTAL = re.compile(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", re.MULTILINE)
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_TO_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, the request count, latency percentiles (ms) and the errors of a wrk run."""
    rate = _WRK_RATE.search(output)
    if rate is None:
        raise BenchError(f"wrk printed no 'Requests/sec:' line:\n{output[-2_000:]}")
    found: dict[str, Any] = {"rps": float(rate.group(1))}
    total = _WRK_TOTAL.search(output)
    if total is not None:
        found["requests"] = int(total.group(1))
        found["elapsed"] = float(total.group(2)) * _TO_SECONDS[total.group(3)]
    found["latency_ms"] = {
        f"p{pct}": round(float(value) * _TO_SECONDS[unit] * 1e3, 3)
        for pct, value, unit in _WRK_PERCENTILE.findall(output)
    }
    non_2xx = _WRK_NON_2XX.search(output)
    found["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    socket_errors = _WRK_SOCKET.search(output)
    found["socket_errors"] = dict(
        zip(
            ("connect", "read", "write", "timeout"),
            (int(n) for n in socket_errors.groups()) if socket_errors else (0, 0, 0, 0),
            strict=True,
        )
    )
    return found


def wrk_load(url: str, connections: int, duration: float) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not on PATH")
    seconds = wrk_seconds(duration)
    command = [
        *pinned(0),
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {KEY}",
        url,
    ]
    try:
        done = subprocess.run(  # noqa: S603 - our argv: wrk found on PATH, fixed arguments
            command, capture_output=True, text=True, timeout=seconds + WRK_GRACE, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"wrk did not finish within {seconds + WRK_GRACE:g} s") from error
    if done.returncode != 0:
        raise BenchError(f"wrk exited with status {done.returncode}:\n{done.stderr[-2_000:]}")
    found = parse_wrk(done.stdout)
    if found["non_2xx"]:
        raise BenchError(f"wrk got {found['non_2xx']} answers that were not 2xx or 3xx")
    if any(found["socket_errors"].values()):
        raise BenchError(f"wrk had socket errors: {found['socket_errors']}")
    if found["rps"] <= 0:
        raise BenchError(f"wrk measured {found['rps']} requests/s")
    return found


async def _httpx_load(url: str, connections: int, duration: float) -> dict[str, Any]:
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    loop = asyncio.get_running_loop()
    async with httpx2.AsyncClient(
        limits=limits, trust_env=False, timeout=REQUEST_TIMEOUT, headers=BEARER
    ) as client:
        deadline = loop.time() + duration

        async def worker() -> tuple[int, int, int]:
            ok = wrong = failed = 0
            while loop.time() < deadline:
                try:
                    response = await client.get(url)
                except httpx2.HTTPError:
                    failed += 1
                    await asyncio.sleep(0.01)  # a dead server must not turn this into a spin
                    continue
                if response.status_code == 200 and response.content == BODY:
                    ok += 1
                else:
                    wrong += 1
            return ok, wrong, failed

        started = time.perf_counter()
        async with asyncio.timeout(duration + REQUEST_TIMEOUT + 5):
            counts = await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    ok, wrong, failed = (sum(column) for column in zip(*counts, strict=True))
    return {
        "rps": ok / elapsed,
        "requests": ok,
        "elapsed": elapsed,
        "wrong": wrong,
        "failed": failed,
    }


def httpx_load(url: str, connections: int, duration: float) -> dict[str, Any]:
    try:
        found = asyncio.run(_httpx_load(url, connections, duration))
    except TimeoutError as error:
        raise BenchError(
            f"the httpx load did not finish within {duration:g} s and its grace"
        ) from error
    if found["wrong"] or found["failed"]:
        raise BenchError(
            f"the httpx load got {found['wrong']} wrong answers "
            f"and {found['failed']} failed requests"
        )
    if found["requests"] == 0:
        raise BenchError("the httpx load got no answer at all")
    return found


def load(tool: str, url: str, connections: int, duration: float) -> dict[str, Any]:
    if tool == "wrk":
        return wrk_load(url, connections, duration)
    return httpx_load(url, connections, duration)


def choose_tool(tool: str | None) -> str:
    if tool is None:
        return "wrk" if shutil.which("wrk") else "httpx"
    if tool not in TOOLS:
        raise ValueError(f"tool must be one of {TOOLS}, not {tool!r}")
    if tool == "wrk" and shutil.which("wrk") is None:
        raise ValueError("tool='wrk' but wrk is not on PATH")
    return tool


def tool_version(tool: str) -> str:
    if tool == "httpx":
        return f"httpx2 {httpx2.__version__}"
    wrk = shutil.which("wrk")
    if wrk is None:  # pragma: no cover - choose_tool checked it
        return "wrk (missing)"
    try:
        done = subprocess.run(  # noqa: S603 - our argv: wrk found on PATH, fixed arguments
            [wrk, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "wrk"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "wrk"


# -- the suite --------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):  # not on every platform
        return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def measure(
    app: str,
    http: str,
    *,
    factory: str,
    tool: str,
    duration: float,
    connections: int,
    warmup: float,
    servers: list[Server],
) -> dict[str, Any]:
    """One timed run on a fresh server: start, check, warm up, load, stop."""
    with serve(app, http, factory, servers) as server:
        check(server)
        if warmup > 0:
            httpx_load(server.url, connections, warmup)
        found = load(tool, server.url, connections, duration)
    return found


def run(
    *,
    http: Sequence[str] = HTTP,
    duration: float = 5.0,
    connections: int = 32,
    rounds: int = 3,
    tool: str | None = None,
    warmup: float | None = None,
    bare_factory: str = FACTORIES["bare"],
    headers_factory: str = FACTORIES["headers"],
    apikey_factory: str = FACTORIES["asgi_apikey"],
    apps: Sequence[str] = APPS,
    encoding_rounds: int = 15,
    seed: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time the bare app, the headers-only variant and asgi_apikey on each server.

    ``http`` names the servers (:data:`HTTP`). ``tool`` is ``"wrk"``, ``"httpx"``
    or ``None`` (wrk where installed). ``warmup`` seconds of httpx load precede
    each timed run (default: a fifth of ``duration``, at most 1 s). The factories
    are import strings of app factories; the checks expect the bare and headers
    ones to serve everyone and the asgi_apikey one to refuse a request without
    credentials. ``apps`` may leave out ``"headers"`` (then only the ratio
    asgi_apikey/bare is measured). ``encoding_rounds`` rounds of
    :func:`benchmarks.encoding.measure` time the servers' own header encoding
    first (0: skip it).

    A failed run (the server did not start, answered wrongly, or the load saw
    errors) ends that server's rounds and is reported under its ``error`` and in
    the top-level ``error``; the others go on. Every server is stopped before
    this returns, also on Ctrl-C; ``servers`` lists each one's pid, port and
    exit status.
    """
    if duration <= 0 or connections < 1 or rounds < 1:
        raise ValueError("duration must be positive, connections and rounds at least 1")
    if not http:
        raise ValueError("http must name at least one server")
    unknown = [name for name in (*http, *apps) if name not in (*HTTP, *APPS)]
    if unknown or not {"bare", "asgi_apikey"} <= set(apps):
        raise ValueError(f"http must be among {HTTP}, apps among {APPS} with bare and asgi_apikey")
    chosen = choose_tool(tool)
    if warmup is None:
        warmup = min(1.0, duration / 5)
    every = {"bare": bare_factory, "headers": headers_factory, "asgi_apikey": apikey_factory}
    factories = {app: every[app] for app in APPS if app in apps}
    shuffle = random.Random(seed)
    servers: list[Server] = []
    effective = float(wrk_seconds(duration)) if chosen == "wrk" else duration

    per_http: dict[str, dict[str, Any]] = {
        name: {"server": LABELS[name], "rounds": [], "error": None} for name in dict.fromkeys(http)
    }
    result: dict[str, Any] = {
        "benchmark": "e2e",
        "tool": chosen,
        "tool_version": tool_version(chosen),
        "caveat": CAVEATS[chosen],
        "settings": {
            "http": list(per_http),
            "apps": list(factories),
            "loop": "asyncio",
            "duration": duration,
            "effective_duration": effective,
            "warmup": warmup,
            "connections": connections,
            "rounds": rounds,
            "seed": seed,
            "host": HOST,
            "route": ROUTE,
            "request": "GET with Authorization: Bearer <KEY> (the same for every app)",
            "factories": factories,
            "security_headers": [name.decode() for name, _ in SECURITY_HEADERS],
            "server": "a fresh server process per timed run, one worker (hypercorn: -w 0)",
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "loadavg_before": _loadavg(),
            "loadavg_after": None,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "uvicorn": _version("uvicorn"),
            "hypercorn": _version("hypercorn"),
            "h11": _version("h11"),
            "httptools": _version("httptools"),
        },
        "encoding": None,
        "results": per_http,
        "servers": [],
        "error": None,
    }
    if encoding_rounds > 0:
        result["encoding"] = encoding.measure(tuple(per_http), rounds=encoding_rounds, seed=seed)
        for name, entry in result["encoding"]["results"].items():
            log(
                f"  encoding  {name:<9}  the security headers add "
                f"{entry['added_us']['median']:.2f} µs to a response head"
            )
    log(
        f"e2e: {chosen}, {connections} connections, {effective:g} s per run, "
        f"{rounds} round(s), servers: {', '.join(per_http)}, apps: {', '.join(factories)}"
    )
    try:
        for number in range(1, rounds + 1):
            for name, entry in per_http.items():
                if entry["error"] is not None:
                    continue
                order = list(factories)
                shuffle.shuffle(order)
                this_round: dict[str, Any] = {"round": number, "order": order}
                try:
                    for app in order:
                        this_round[app] = measure(
                            app,
                            name,
                            factory=factories[app],
                            tool=chosen,
                            duration=duration,
                            connections=connections,
                            warmup=warmup,
                            servers=servers,
                        )
                        log(
                            f"  round {number}/{rounds}  {name:<9}  {app:<11}  "
                            f"{this_round[app]['rps']:10.1f} req/s"
                        )
                except BenchError as error:
                    entry["error"] = f"round {number}: {error}"
                    log(f"  {name}: ERROR {entry['error']}")
                    continue
                for ratio, (top, bottom) in RATIOS.items():
                    if top in this_round and bottom in this_round:
                        this_round[ratio] = this_round[top]["rps"] / this_round[bottom]["rps"]
                entry["rounds"].append(this_round)
    finally:
        result["servers"] = [server.record() for server in servers]
        result["machine"]["loadavg_after"] = _loadavg()

    for entry in per_http.values():
        entry["summary"] = {}
        for app in factories:
            entry[f"{app}_rps"] = [r[app]["rps"] for r in entry["rounds"]]
            entry["summary"][f"{app}_rps"] = spread(entry[f"{app}_rps"])
            # One server process on one CPU: 1/rps is its time per request.
            entry[f"{app}_us"] = [1e6 / r[app]["rps"] for r in entry["rounds"]]
        for ratio, (top, bottom) in RATIOS.items():
            if top in factories and bottom in factories:
                entry[ratio] = [r[ratio] for r in entry["rounds"]]
                entry["summary"][ratio] = spread(entry[ratio])
                entry[f"{top}_minus_{bottom}_us"] = [
                    a - b for a, b in zip(entry[f"{top}_us"], entry[f"{bottom}_us"], strict=True)
                ]
    errors = [f"{name}: {entry['error']}" for name, entry in per_http.items() if entry["error"]]
    result["error"] = "; ".join(errors) if errors else None
    return result


# -- the command line -------------------------------------------------------------------------


def _number(value: float | int | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


def table(result: dict[str, Any]) -> str:
    """Medians and [min, max] per server, as plain text."""
    columns = [(f"{app}_rps", 0) for app in result["settings"]["apps"]]
    columns += [(ratio, 3) for ratio in RATIOS if ratio in next(iter(result["results"].values()))]
    lines = [f"{'server':<10} " + " ".join(f"{column:>26}" for column, _ in columns)]
    for name, entry in result["results"].items():
        cells = []
        for column, digits in columns:
            s = entry["summary"][column]
            cells.append(
                f"{_number(s['median'], digits)} "
                f"[{_number(s['min'], digits)}, {_number(s['max'], digits)}]"
            )
        lines.append(f"{name:<10} " + " ".join(f"{cell:>26}" for cell in cells))
        if entry["error"]:
            lines.append(f"{'':<10} error: {entry['error']}")
    machine = result["machine"]
    lines.append(
        f"tool: {result['tool']} ({result['tool_version']}); cpus: {machine['cpu_count']}; "
        f"load average before/after: {machine['loadavg_before']} / {machine['loadavg_after']}"
    )
    lines.append(f"caveat: {result['caveat']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.e2e", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per timed run")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--tool", choices=TOOLS, default=None, help="default: wrk if installed")
    parser.add_argument(
        "--http",
        action="append",
        choices=HTTP,
        default=None,
        help="a server: uvicorn's h11 or httptools, or hypercorn (repeatable; default: all)",
    )
    parser.add_argument(
        "--encoding-rounds", type=int, default=15, help="rounds of the header-encoding measure"
    )
    parser.add_argument("--warmup", type=float, default=None, help="seconds before each run")
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffled orders")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--out", type=Path, default=None, help="write e2e.json and e2e.md into this directory"
    )
    args = parser.parse_args(argv)

    # A plain `kill` should stop the servers too: turn SIGTERM into an exception.
    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        result = run(
            http=tuple(args.http or HTTP),
            duration=args.duration,
            connections=args.connections,
            rounds=args.rounds,
            tool=args.tool,
            warmup=args.warmup,
            encoding_rounds=args.encoding_rounds,
            seed=args.seed,
        )
    except ValueError as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        print("interrupted; every server it started has been stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    text = json.dumps(result, indent=2)
    print()
    print(table(result))
    print()
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    if args.out is not None:
        from benchmarks.e2e_report import e2e_page
        from benchmarks.report import environment, write_results

        data = {"environment": environment(), "e2e": result}
        write_results(args.out, "e2e", data, e2e_page(data))
    return 1 if result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
