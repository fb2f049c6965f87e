"""What a server spends on the security headers: its own response-head code, in process.

End to end, the headers cost twice: the middleware appends them, then the server
validates and encodes each one while it writes the response head. This module
times the second part alone, with the servers' own code and no network:

- ``h11`` and ``httptools``: uvicorn's ``RequestResponseCycle.send`` of each
  implementation (the exact code a request goes through), on a transport that
  drops what it is given;
- ``hypercorn``: the steps its HTTP/1.1 protocol takes for a response head
  (``build_and_validate_headers``, its own date and server headers, then
  ``h11.Response`` and ``h11.Connection.send``), called in the same order.

Each repetition answers one request: a fresh cycle (and, for the h11-based ones,
the request fed to a reused ``h11.Connection``), the response head, the body.
It is timed with the app's two headers (``content-length``, ``content-type``)
and with the security headers appended; both run interleaved in every round, so
the difference is the headers' cost and the shared work cancels out.

    python -m benchmarks.encoding
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import h11

from benchmarks.apps import BODY, ROUTE, SECURITY_HEADERS

SERVERS = ("h11", "httptools", "hypercorn")
APP_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-length", str(len(BODY)).encode()),
    (b"content-type", b"application/json"),
]
WITH_SECURITY = [*APP_HEADERS, *SECURITY_HEADERS]
REQUEST = f"GET {ROUTE} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode()
#: uvicorn's own headers on every response (its default config).
UVICORN_DEFAULTS = [(b"date", b"Mon, 23 Nov 2026 18:12:29 GMT"), (b"server", b"uvicorn")]

Answer = Callable[[list[tuple[bytes, bytes]]], Coroutine[Any, Any, bytes]]


class _Sink:
    """An ``asyncio.Transport`` stand-in that keeps the last write (to check it) and drops it."""

    last = b""

    def write(self, data: bytes) -> None:
        self.last = data

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        return None


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": ROUTE,
        "http_version": "1.1",
        "headers": [(b"host", b"127.0.0.1")],
    }


async def _respond(cycle: Any, sink: _Sink, headers: list[tuple[bytes, bytes]]) -> bytes:
    """Send a response through a uvicorn cycle; the head the server encoded for it."""
    await cycle.send({"type": "http.response.start", "status": 200, "headers": headers})
    head = sink.last
    await cycle.send({"type": "http.response.body", "body": BODY, "more_body": False})
    return head


def _uvicorn_h11() -> Answer:
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.h11_impl import RequestResponseCycle

    sink, conn, logger = _Sink(), h11.Connection(h11.SERVER), logging.getLogger("bench")
    flow = FlowControl(sink)  # type: ignore[arg-type]

    async def answer(headers: list[tuple[bytes, bytes]]) -> bytes:
        if conn.our_state is h11.DONE:
            conn.start_next_cycle()
        conn.receive_data(REQUEST)
        conn.next_event(), conn.next_event()  # the request and its end
        cycle = RequestResponseCycle(
            _scope(),  # type: ignore[arg-type]
            conn,
            sink,  # type: ignore[arg-type]
            flow,
            logger,
            logger,
            False,
            UVICORN_DEFAULTS,
            asyncio.Event(),
            _no_op,
        )
        return await _respond(cycle, sink, headers)

    return answer


def _uvicorn_httptools() -> Answer:
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    sink, logger = _Sink(), logging.getLogger("bench")
    flow = FlowControl(sink)  # type: ignore[arg-type]

    async def answer(headers: list[tuple[bytes, bytes]]) -> bytes:
        cycle = RequestResponseCycle(
            _scope(),  # type: ignore[arg-type]
            sink,  # type: ignore[arg-type]
            flow,
            logger,
            logger,
            False,
            UVICORN_DEFAULTS,
            asyncio.Event(),
            False,
            True,
            _no_op,
        )
        return await _respond(cycle, sink, headers)

    return answer


def _hypercorn() -> Answer:
    from hypercorn.config import Config
    from hypercorn.utils import build_and_validate_headers

    config, conn = Config(), h11.Connection(h11.SERVER)

    async def answer(headers: list[tuple[bytes, bytes]]) -> bytes:
        if conn.our_state is h11.DONE:
            conn.start_next_cycle()
        conn.receive_data(REQUEST)
        conn.next_event(), conn.next_event()
        # hypercorn's HTTPStream validates the app's headers, H11Protocol adds its own.
        validated = build_and_validate_headers(headers)
        response = [*validated, *config.response_headers("h11")]
        head = conn.send(h11.Response(status_code=200, headers=response, reason=b"OK"))
        conn.send(h11.Data(data=BODY))
        conn.send(h11.EndOfMessage())
        return head or b""

    return answer


def _no_op() -> None:
    return None


ANSWERS: dict[str, Callable[[], Answer]] = {
    "h11": _uvicorn_h11,
    "httptools": _uvicorn_httptools,
    "hypercorn": _hypercorn,
}


async def _time(answer: Answer, headers: list[tuple[bytes, bytes]], repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        await answer(headers)
    return (time.perf_counter() - started) / repeats


def check(answer: Answer) -> None:
    """Both header sets must come out on the wire, in order: else the times mean nothing."""
    head = asyncio.run(answer(WITH_SECURITY)).lower()
    at = 0
    for name, value in WITH_SECURITY:
        found = head.find(name + b": " + value.lower(), at)
        if found < 0:
            raise RuntimeError(f"{name!r} is missing from the response head {head!r}")
        at = found
    if b"x-frame-options" in asyncio.run(answer(APP_HEADERS)).lower():
        raise RuntimeError("the response head without security headers has them")


def measure(
    servers: Sequence[str] = SERVERS,
    *,
    rounds: int = 15,
    seconds: float = 0.03,
    seed: int | None = None,
) -> dict[str, Any]:
    """Per server: µs per response without and with the security headers, and the difference.

    Medians and quartiles over ``rounds`` interleaved rounds; in each, both header
    sets answer as many times as fit in about ``seconds`` (at least 20), so the
    fast servers are timed over as long a stretch as the slow ones.
    """
    from benchmarks.driver import Summary

    shuffle = random.Random(seed)
    count = len(SECURITY_HEADERS)
    found: dict[str, Any] = {
        "benchmark": "server header encoding",
        "settings": {"rounds": rounds, "seconds": seconds, "headers": count},
        "headers": [name.decode() for name, _ in SECURITY_HEADERS],
        "results": {},
    }
    for server in servers:
        answer = ANSWERS[server]()
        check(answer)
        once = asyncio.run(_time(answer, WITH_SECURITY, 20))
        repeats = max(20, round(seconds / once))
        plain: list[float] = []
        secured: list[float] = []
        for _ in range(rounds):
            order = [(plain, APP_HEADERS), (secured, WITH_SECURITY)]
            shuffle.shuffle(order)
            for into, headers in order:
                into.append(asyncio.run(_time(answer, headers, repeats)) * 1e6)
        added = [s - p for s, p in zip(secured, plain, strict=True)]
        found["results"][server] = {
            "repeats": repeats,
            "us_without": Summary.of(plain).as_dict(),
            "us_with": Summary.of(secured).as_dict(),
            "added_us": Summary.of(added).as_dict(),
            "added_us_per_header": statistics.median(added) / count,
        }
    return found


def main() -> int:
    result = measure()
    for server, entry in result["results"].items():
        print(
            f"{server:<10} without {entry['us_without']['median']:6.2f} µs  "
            f"with {entry['us_with']['median']:6.2f} µs  "
            f"added {entry['added_us']['median']:5.2f} µs "
            f"({entry['added_us_per_header']:.2f} µs a header)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
