"""Real servers for tests: an ASGI app under uvicorn or hypercorn on 127.0.0.1, and a raw client.

``serve(app, kind)`` runs the server in a thread with its own event loop, on a socket
bound here first (port 0: no race for a free port), waits (at most ``START_TIMEOUT``
seconds) until the server answers, and always stops it. The client sends exact bytes
and reads one response under a deadline: nothing here can block a test for long.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp

__all__ = [
    "HOST",
    "SERVERS",
    "RawResponse",
    "RunningServer",
    "WebSocketClient",
    "exchange",
    "serve",
]

HOST = "127.0.0.1"
#: uvicorn with each of its HTTP parsers, and hypercorn (HTTP/1.1 through h11).
SERVERS = ("uvicorn-h11", "uvicorn-httptools", "hypercorn")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
#: How long a client waits for a server's answer, in all.
READ_TIMEOUT = 5.0

_MAX_RESPONSE = 4 * 1024 * 1024  # a response larger than this is a test failure, not a wait


@dataclass(frozen=True)
class RunningServer:
    kind: str
    host: str
    port: int
    #: What the server (and its event loop) logged at WARNING or above, unformatted.
    log: list[logging.LogRecord] = field(default_factory=list)

    def errors(self, since: int = 0) -> list[str]:
        """The errors logged from record ``since`` on: a message and exception each."""
        return [
            f"{record.name}: {record.getMessage()} {record.exc_info[1] if record.exc_info else ''}"
            for record in self.log[since:]
            if record.levelno >= logging.ERROR
        ]


# The loggers the servers write to (hypercorn's is set below). The records are kept,
# not formatted, and not passed on while a server runs: formatting a traceback in the
# server thread while pytest formats one in the main thread can crash Python 3.11's
# ast.parse ("AST constructor recursion depth mismatch"), which both use for carets.
_SERVER_LOGGERS = ("uvicorn", "tests.servers.hypercorn", "asyncio")


class _Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _kept(records: list[logging.LogRecord]) -> Iterator[None]:
    handler = _Keep(records)
    loggers = [logging.getLogger(name) for name in _SERVER_LOGGERS]
    saved = [(logger.propagate, logger.level) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
        if logger.getEffectiveLevel() > logging.WARNING:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, (propagate, level) in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(level)


def serve(app: ASGIApp, kind: str) -> contextlib.AbstractContextManager[RunningServer]:
    """Run ``app`` under the server ``kind`` (one of ``SERVERS``) for the ``with`` block."""
    if kind not in SERVERS:
        raise ValueError(f"unknown server {kind!r}: pick one of {SERVERS}")
    return _serve(app, kind)


@contextlib.contextmanager
def _serve(app: ASGIApp, kind: str) -> Iterator[RunningServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        if kind == "hypercorn":
            main = _hypercorn(app, sock)
        else:
            main = _uvicorn(app, sock, kind.removeprefix("uvicorn-"))
        running = RunningServer(kind, HOST, port)
        with _kept(running.log):
            thread = _ServerThread(kind, main)
            thread.start()
            try:
                _wait_until_answering(thread, port)
                yield running
            finally:
                thread.stop()
    finally:
        sock.close()


Main = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def _uvicorn(app: ASGIApp, sock: socket.socket, http: str) -> Main:
    import uvicorn

    config = uvicorn.Config(
        app,
        http=http,
        ws="wsproto",
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)

    async def main(stop: asyncio.Event) -> None:
        async def stop_when_told() -> None:
            await stop.wait()
            server.should_exit = True  # the main loop checks it every 0.1 s

        watcher = asyncio.create_task(stop_when_told())
        try:
            await server.serve(sockets=[sock])
        finally:
            watcher.cancel()

    return main


def _hypercorn(app: ASGIApp, sock: socket.socket) -> Main:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    # Hypercorn takes over a bound socket by descriptor ("fd://"): give it its own copy,
    # which it closes when it stops; ours is closed by serve().
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    config.graceful_timeout = 1.0
    config.errorlog = logging.getLogger("tests.servers.hypercorn")  # no handler of its own
    config.accesslog = None

    async def main(stop: asyncio.Event) -> None:
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    return main


class _ServerThread(threading.Thread):
    """One server's event loop; ``stop()`` ends it and re-raises what it failed with."""

    def __init__(self, kind: str, main: Main) -> None:
        super().__init__(name=f"test-server-{kind}", daemon=True)
        self.kind = kind
        self._main = main
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            self._ready.set()
            await self._main(self._stop_event)

        try:
            asyncio.run(body())
        except BaseException as error:  # SystemExit from a failed uvicorn start, too
            self.error = error
        finally:
            self._ready.set()

    def stop(self) -> None:
        self._ready.wait(START_TIMEOUT)
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and self.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)
        self.join(STOP_TIMEOUT)
        if self.is_alive():
            raise AssertionError(f"{self.kind} did not stop within {STOP_TIMEOUT} s")
        if self.error is not None:
            raise AssertionError(f"{self.kind} failed: {self.error!r}") from self.error


def _wait_until_answering(thread: _ServerThread, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last: object = None
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise AssertionError(f"{thread.kind} stopped while starting: {thread.error!r}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return  # listening: the server accepts connections
        except OSError as error:
            last = error
        time.sleep(0.02)
    raise AssertionError(f"{thread.kind} did not start within {START_TIMEOUT} s: {last!r}")


# --- the raw client ---------------------------------------------------------------------


@dataclass
class RawResponse:
    """One HTTP/1.1 response as the server wrote it."""

    status: int
    reason: str
    headers: list[tuple[str, str]]  # in order, names lowercased, duplicates kept
    body: bytes
    raw_head: bytes
    #: With ``read_to_close``: every byte the server sent after this response.
    after: bytes = b""

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]

    def header(self, name: str) -> str | None:
        """The one value of ``name``, or None; sending it twice is an error."""
        found = self.values(name)
        assert len(found) <= 1, f"{name} sent {len(found)} times: {found}"
        return found[0] if found else None


class _Reader:
    """Reads from a socket under one deadline for the whole response."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""
        self.closed = False

    def _fill(self) -> bool:
        if self.closed:
            return False
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete response before the deadline")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError):
            chunk = b""
        except TimeoutError:
            raise TimeoutError("no complete response before the deadline") from None
        if not chunk:
            self.closed = True
            return False
        self.buffer += chunk
        if len(self.buffer) > _MAX_RESPONSE:
            raise AssertionError(f"response larger than {_MAX_RESPONSE} bytes")
        return True

    def until(self, marker: bytes) -> bytes | None:
        while marker not in self.buffer:
            if not self._fill():
                return None
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise AssertionError(f"connection closed {size - len(self.buffer)} bytes short")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def rest(self) -> bytes:
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data


def _parse_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    status_line, *lines = head.split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    assert version in (b"HTTP/1.1", b"HTTP/1.0"), f"not an HTTP response: {status_line!r}"
    code, _, reason = rest.partition(b" ")
    headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        assert colon, f"a response header line without a colon: {line!r}"
        headers.append((name.decode("latin-1").lower(), value.strip(b" \t").decode("latin-1")))
    return int(code), reason.decode("latin-1"), headers


def _read_response(reader: _Reader, head_request: bool) -> RawResponse | None:
    head = reader.until(b"\r\n\r\n")
    if head is None:
        if reader.buffer:
            raise AssertionError(f"connection closed inside a response head: {reader.buffer!r}")
        return None  # closed without a response
    status, reason, headers = _parse_head(head)
    response = RawResponse(status, reason, headers, b"", head)
    if head_request or status in (101, 204, 304) or 100 <= status < 200:
        return response
    encoding = response.header("transfer-encoding")
    length = response.header("content-length")
    if encoding is not None:
        assert encoding.lower() == "chunked", f"unexpected transfer-encoding {encoding!r}"
        body = b""
        while True:
            size_line = reader.until(b"\r\n")
            assert size_line is not None, "connection closed inside a chunked body"
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while reader.until(b"\r\n") not in (b"", None):  # trailers
                    pass
                break
            body += reader.exactly(size)
            assert reader.exactly(2) == b"\r\n", "a chunk not followed by CRLF"
        response.body = body
    elif length is not None:
        response.body = reader.exactly(int(length))
    else:
        response.body = reader.rest()
    return response


def exchange(
    port: int, request: bytes, *, timeout: float = READ_TIMEOUT, read_to_close: bool = False
) -> RawResponse | None:
    """Send ``request`` as is and read one response; None if the server closed without one.

    A server may refuse a request (a huge header, say) and close while it is still
    being sent: what it answered before closing is still read. With ``read_to_close``,
    also read until the server closes and keep those bytes in ``after``. Raises
    TimeoutError if no complete response (nor a close) comes within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        # A server that stopped reading may still have answered: read what it said.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        reader = _Reader(sock, deadline)
        response = _read_response(reader, head_request=request.startswith(b"HEAD "))
        if response is not None and read_to_close:
            response.after = reader.rest()
        return response


# --- a minimal websocket client (RFC 6455) ----------------------------------------------


class WebSocketClient:
    """A handshake over raw bytes, then masked text frames out and unmasked frames in."""

    def __init__(self, port: int, path: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {HOST}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers),
        ]
        self.sock = socket.create_connection((HOST, port), timeout=READ_TIMEOUT)
        self._reader = _Reader(self.sock, time.monotonic() + READ_TIMEOUT)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.response = _read_response(self._reader, head_request=False)

    def __enter__(self) -> WebSocketClient:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            if self.response is not None and self.response.status == 101:
                self._send_frame(0x88, struct.pack("!H", 1000))  # close, normal
        self.sock.close()

    def send_text(self, text: str) -> None:
        self._send_frame(0x81, text.encode())

    def _send_frame(self, first: int, payload: bytes) -> None:
        assert len(payload) < 126, "this client sends short frames only"
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(bytes([first, 0x80 | len(payload)]) + mask + masked)

    def receive(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload (1: text, 8: close)."""
        self._reader.deadline = time.monotonic() + READ_TIMEOUT
        first, second = self._reader.exactly(2)
        assert not second & 0x80, "a server must not mask its frames"
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._reader.exactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._reader.exactly(8))
        return first & 0x0F, self._reader.exactly(size)
