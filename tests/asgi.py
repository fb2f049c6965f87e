"""A raw ASGI harness: drive any ASGI app with a hand-built scope, no framework in between."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: A key that must never appear in any output: responses, headers, logs, reprs, errors.
CANARY = "sk-canary-5f3c9a1e7b2d4c6f8a0e"
#: A second valid key for tests that need two.
OTHER_KEY = "sk-other-0a1b2c3d4e5f6a7b8c9d"

_RAW = CANARY.encode()

# Every shape in which a client might send the canary wrongly (or rightly), in headers
# and in the query string: no response, event, error or repr may ever show it.
CANARY_SHAPES: dict[str, list[tuple[bytes, bytes]]] = {
    "valid": [(b"authorization", b"Bearer " + _RAW)],
    "lower scheme": [(b"authorization", b"bearer " + _RAW)],
    "as unknown key": [(b"authorization", b"Bearer " + _RAW + b"x")],
    "space inside": [(b"authorization", b"Bearer " + _RAW[:8] + b" " + _RAW[8:])],
    "tab": [(b"authorization", b"Bearer\t" + _RAW)],
    "NUL inside": [(b"authorization", b"Bearer " + _RAW + b"\x00")],
    "CRLF": [(b"authorization", b"Bearer " + _RAW + b"\r\n")],
    "non-ASCII": [(b"authorization", b"Bearer " + _RAW + "\u00e9".encode())],
    "equals inside": [(b"authorization", b"Bearer " + _RAW[:5] + b"=" + _RAW[5:])],
    "quoted": [(b"authorization", b'Bearer "' + _RAW + b'"')],
    "no scheme": [(b"authorization", _RAW)],
    "basic": [(b"authorization", b"Basic " + _RAW)],
    "twice": [(b"authorization", b"Bearer " + _RAW)] * 2,
    "too long": [(b"authorization", b"Bearer " + _RAW * 300)],
    "custom header": [(b"x-api-key", _RAW)],
    "custom header bad": [(b"x-api-key", _RAW + b" !")],
    "two methods": [(b"authorization", b"Bearer " + _RAW), (b"x-api-key", _RAW)],
    "extra spaces": [(b"authorization", b"  Bearer    " + _RAW + b"   ")],
    "trailing junk": [(b"authorization", b"Bearer " + _RAW + b" junk")],
    "appended char": [(b"authorization", b"Bearer " + _RAW + b"x")],
    "control bytes": [(b"authorization", b"Bearer " + _RAW[:5] + b"\x01\x1b\x7f" + _RAW[5:])],
    "unicode": [(b"authorization", b"Bearer " + _RAW + "\u00e9\u2028".encode())],
    "no separator": [(b"authorization", b"Bearer" + _RAW)],
    "just over the limit": [(b"authorization", b"Bearer " + _RAW + b"a" * (4097 - len(_RAW)))],
    "custom header twice": [(b"x-api-key", _RAW), (b"x-api-key", _RAW)],
}
CANARY_QUERIES: dict[str, bytes] = {
    "query": b"access_token=" + _RAW,
    "query bad": b"access_token=" + quote(CANARY + " !").encode(),
    "query twice": b"access_token=" + _RAW + b"&access_token=" + _RAW,
    "query with control": b"access_token=" + quote(CANARY + "\x00\n").encode(),
    "query plus header": b"access_token=" + _RAW,
}

#: Every variable asgi_apikey reads; tests/conftest.py clears them before each test.
AUTH_VARIABLES = (
    "API_KEY",
    "ADDITIONAL_API_KEYS",
    "API_KEYS_FILE",
    "AUTH_MODE",
    "ENABLE_USER_TRACKING",
    "ENABLE_REQUEST_LOGGING",
    "ENVIRONMENT",
)


def plain_digest(secret: str) -> str:
    """The ``sha256:`` digest of a key, computed independently of the package."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every exception chained to it (cause or context, suppressed or not)."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def error_texts(error: BaseException) -> Iterator[tuple[str, str]]:
    """(type name, text) for all an error and its chain show: message, repr, args, context."""
    for current in chain(error):
        name = type(current).__name__
        yield name, str(current)
        yield name, repr(current)
        yield name, repr(current.args)
        yield name, repr(getattr(current, "context", None))
        yield name, repr(vars(current)) if hasattr(current, "__dict__") else ""
        yield name, repr(getattr(current, "object", None))  # UnicodeError carries its input


@dataclass
class Result:
    """What the app under test sent, and the scope the inner app saw (if it ran)."""

    messages: list[Message]
    seen: Scope | None = None

    @property
    def status(self) -> int:
        start = next(m for m in self.messages if m["type"].endswith("response.start"))
        return int(start["status"])

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        start = next(m for m in self.messages if m["type"].endswith("response.start"))
        return [(bytes(k), bytes(v)) for k, v in start.get("headers", [])]

    def header(self, name: str) -> str | None:
        values = [v.decode("latin-1") for k, v in self.headers if k.lower() == name.encode()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"].endswith(".body"))

    def json(self) -> Any:
        return json.loads(self.body)

    def everything(self) -> bytes:
        """Every byte of every message, for leak checks."""
        return repr(self.messages).encode() + self.body


@dataclass
class Recorder:
    """An inner ASGI app that records its scope and answers 200 (or accepts a websocket)."""

    response_headers: Sequence[tuple[bytes, bytes]] = ((b"content-type", b"text/plain"),)
    seen: list[Scope] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(scope)
        if scope["type"] == "http":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": list(self.response_headers),
                }
            )
            await send({"type": "http.response.body", "body": b"ok"})
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
        elif scope["type"] == "lifespan":
            message = await receive()
            await send({"type": message["type"] + ".complete"})


def http_scope(
    path: str = "/",
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    method: str = "GET",
    scheme: str = "http",
    query_string: bytes = b"",
    root_path: str = "",
    kind: str = "http",
    extensions: dict[str, Any] | None = None,
) -> Scope:
    scope: Scope = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "root_path": root_path,
        "query_string": query_string,
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    if kind == "websocket":
        del scope["method"]
        scope["scheme"] = "wss" if scheme == "https" else "ws"
        scope["subprotocols"] = []
    if extensions is not None:
        scope["extensions"] = extensions
    return scope


def bearer(token: str | bytes) -> tuple[bytes, bytes]:
    raw = token.encode() if isinstance(token, str) else token
    return (b"authorization", b"Bearer " + raw)


def client_messages(scope: Scope) -> tuple[list[Message], Message]:
    """What a client sends for ``scope`` (its request, or its websocket handshake), and
    the message ``receive`` gives once those are read."""
    if scope["type"] == "websocket":
        return [{"type": "websocket.connect"}], {"type": "websocket.disconnect", "code": 1000}
    return [{"type": "http.request", "body": b"", "more_body": False}], {"type": "http.disconnect"}


def call(app: ASGIApp, scope: Scope, recorder: Recorder | None = None) -> Result:
    """Run one request through ``app`` and collect what it sends."""
    messages: list[Message] = []
    incoming, gone = client_messages(scope)

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(0)
        return gone

    async def send(message: Message) -> None:
        messages.append(message)

    before = len(recorder.seen) if recorder is not None else 0

    async def main() -> None:
        await app(scope, receive, send)

    asyncio.run(main())
    seen = recorder.seen[before] if recorder is not None and len(recorder.seen) > before else None
    return Result(messages, seen)
