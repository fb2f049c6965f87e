"""The benchmark's variants: one route, served bare and behind each alternative.

Every variant is built the way its users build it (``add_middleware``,
``Middleware(...)``, a FastAPI dependency) around the same Starlette or
FastAPI endpoint, and comes with the request it is timed on and the answer
that request must get. The driver checks that answer before it times anything,
so a variant that refuses (or waves through) the wrong request is an error,
not a fast result.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware
from asgi_apikey.responses import SecurityHeaders

ROUTE = "/v1/chat/completions"
KEY = "sk-bench-4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a"
UNKNOWN_KEY = "sk-bench-0000000000000000000000000000000"
BODY = b'{"ok":true}'
PEER_ENV = "API_KEY_BENCH"  # fastapi-key-auth reads its keys from API_KEY_* variables

Headers = list[tuple[bytes, bytes]]

#: What every request carries besides its credentials, as a browser or SDK sends them.
USUAL_HEADERS: Headers = [
    (b"host", b"api.example.test"),
    (b"user-agent", b"openai-python/1.99.0"),
    (b"accept", b"application/json"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"),
    (b"x-request-id", b"7f3c9a1e-7b2d-4c6f-8a0e-5f3c9a1e7b2d"),
]
BEARER: Headers = [(b"authorization", b"Bearer " + KEY.encode())]
X_API_KEY: Headers = [(b"x-api-key", KEY.encode())]
SECURITY_HEADERS = SecurityHeaders(True).for_scheme("http")


def keys(count: int) -> list[str]:
    """``count`` distinct keys; :data:`KEY` is the last, so no lookup finds it early."""
    return [f"sk-bench-{n:032x}" for n in range(1, count)] + [KEY]


# -- the endpoint, bare ---------------------------------------------------------------------


async def endpoint(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


def starlette(middleware: Iterable[Middleware] = ()) -> Starlette:
    """The endpoint as a Starlette app, behind ``middleware`` (outermost first)."""
    return Starlette(routes=[Route(ROUTE, endpoint)], middleware=list(middleware))


def bare() -> Starlette:
    """The floor: the app with no middleware. Also a uvicorn ``--factory``."""
    return starlette()


# -- asgi_apikey, as its users install it ---------------------------------------------------


def apikey(key_count: int = 1, *, request_logging: bool = False) -> Starlette:
    """``app.add_middleware(APIKeyMiddleware, ...)`` with ``key_count`` keys."""
    app = starlette()
    if request_logging:
        auth = APIKeyAuth(keys=keys(key_count), request_logging=True)
        app.add_middleware(APIKeyMiddleware, auth=auth)
    else:
        app.add_middleware(APIKeyMiddleware, keys=keys(key_count))
    return app


def apikey_named() -> Starlette:
    """asgi_apikey with named, scoped keys: a uvicorn ``--factory`` for the end-to-end run."""
    app = starlette()
    app.add_middleware(
        APIKeyMiddleware, keys=[APIKey(KEY, name="bench", scopes={"chat"})], public=["/health"]
    )
    return app


class NullSink:
    """A text stream that drops what it is given: the lines are rendered, then discarded."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


def configure_json_logging() -> None:
    """A production-style structlog pipeline: JSON lines, rendered, written nowhere."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=NullSink()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


# -- the floors: no-op middleware -------------------------------------------------------------


class NoopMiddleware:
    """The floor of any pure-ASGI middleware: one extra await."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class HeadersMiddleware:
    """A no-op that adds the same security headers asgi_apikey adds (and nothing else)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def headers_only() -> Starlette:
    """The headers-only variant: :class:`HeadersMiddleware` as an end-to-end ``--factory``.

    Its accepted response is asgi_apikey's byte for byte (but for the date), so
    asgi_apikey's requests per second over this one's is what the check costs.
    """
    return starlette([Middleware(HeadersMiddleware)])


class Canned401Middleware:
    """The floor of refusal: sends a prepared 401 to every request."""

    BODY = b'{"detail":"Missing API key"}'
    HEADERS = (
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"www-authenticate", b'Bearer realm="api"'),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 401, "headers": self.HEADERS})
        await send({"type": "http.response.body", "body": self.BODY})


# -- the alternatives -------------------------------------------------------------------------


class BearerBackend(AuthenticationBackend):
    """Starlette's documented pattern: parse ``Authorization: Bearer``, look the key up."""

    def __init__(self, valid: Iterable[str]) -> None:
        self.valid = frozenset(valid)

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.valid:
            raise AuthenticationError("Invalid API key")  # missing ones too: deny by default
        return AuthCredentials(["authenticated"]), SimpleUser("bench")


def _unauthorized(conn: HTTPConnection, error: AuthenticationError) -> Response:
    return JSONResponse(
        {"detail": str(error)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


def starlette_authentication() -> Starlette:
    """Starlette's ``AuthenticationMiddleware`` with a bearer backend (no hashing, no headers).

    Every request without a valid key gets a 401, as with asgi_apikey's default.
    """
    backend = BearerBackend([KEY])
    return starlette(
        [Middleware(AuthenticationMiddleware, backend=backend, on_error=_unauthorized)]
    )


class BaseHTTPKeyMiddleware(BaseHTTPMiddleware):
    """The same check written as a ``BaseHTTPMiddleware``, as many tutorials do."""

    def __init__(self, app: ASGIApp, valid: Iterable[str]) -> None:
        super().__init__(app)
        self.valid = frozenset(valid)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.valid:
            return JSONResponse({"detail": "Invalid API key"}, status_code=401)
        return await call_next(request)


def base_http_middleware() -> Starlette:
    return starlette([Middleware(BaseHTTPKeyMiddleware, valid=[KEY])])


def fastapi_bare() -> FastAPI:
    """The endpoint as a FastAPI route: the floor the ``HTTPBearer`` variant adds to."""
    app = FastAPI(openapi_url=None)

    @app.get(ROUTE)
    async def chat() -> Response:
        return Response(BODY, media_type="application/json")

    return app


def fastapi_http_bearer(*, thread: bool = False) -> FastAPI:
    """A FastAPI ``HTTPBearer`` dependency that compares the key, as FastAPI's docs show.

    The dependency is ``async def``, as FastAPI's security tutorial writes it;
    with ``thread=True`` it is a plain ``def``, which FastAPI runs in a worker
    thread (what many services and tutorials write).
    """
    app = FastAPI(openapi_url=None)
    valid = KEY.encode()
    bearer = HTTPBearer()

    def compare(credentials: HTTPAuthorizationCredentials) -> str:
        if not hmac.compare_digest(credentials.credentials.encode(), valid):
            raise HTTPException(status_code=401, detail="Invalid API key")
        return credentials.credentials

    async def check(credentials: HTTPAuthorizationCredentials = Depends(bearer)) -> str:  # noqa: B008
        return compare(credentials)

    def check_in_thread(credentials: HTTPAuthorizationCredentials = Depends(bearer)) -> str:  # noqa: B008
        return compare(credentials)

    @app.get(ROUTE, dependencies=[Depends(check_in_thread if thread else check)])
    async def chat() -> Response:
        return Response(BODY, media_type="application/json")

    return app


def peer() -> Starlette:
    """fastapi-key-auth's ``AuthorizerMiddleware``, a published API-key middleware."""
    from fastapi_key_auth import AuthorizerMiddleware  # type: ignore[import-untyped]

    os.environ[PEER_ENV] = KEY
    return starlette([Middleware(AuthorizerMiddleware)])


class NaiveMiddleware:
    """What a hand-written check often is: ``compare_digest`` against every key in turn."""

    def __init__(self, app: ASGIApp, valid: Iterable[str]) -> None:
        self.app = app
        self.valid = [key.encode() for key in valid]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = b""
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:]
        if not any(hmac.compare_digest(token, key) for key in self.valid):
            await Canned401Middleware(self.app)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def naive(key_count: int = 1) -> Starlette:
    return starlette([Middleware(NaiveMiddleware, valid=keys(key_count))])


# -- what the driver runs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One app, the request it is timed on, and the answer that request must get."""

    name: str
    group: str  # "accepted", "refused" or "keys": which table it belongs to
    build: Callable[[], ASGIApp]
    headers: Headers = field(default_factory=list)
    status: int = 200
    body: bytes | None = BODY
    # Header names the response must carry (lowercase): the security headers, a challenge.
    must_have: tuple[bytes, ...] = ()
    baseline: str = "bare"  # the variant whose per-round time this one is compared with
    note: str = ""
    # Requests that must be refused, with the statuses that count as refusing them:
    # a rival that waves bad keys through must not be timed as a fast one.
    probes: tuple[tuple[tuple[tuple[bytes, bytes], ...], tuple[int, ...]], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


_SECURITY = tuple(name for name, _ in SECURITY_HEADERS)
_UNKNOWN: tuple[tuple[bytes, bytes], ...] = ((b"authorization", b"Bearer " + UNKNOWN_KEY.encode()),)
_UNKNOWN_X: tuple[tuple[bytes, bytes], ...] = ((b"x-api-key", UNKNOWN_KEY.encode()),)
#: Every authenticating variant must refuse a request without a key and one with an unknown key.
REFUSES = (((), (401, 403)), (_UNKNOWN, (401, 403)))
REFUSES_X = (((), (401, 403)), (_UNKNOWN_X, (401, 403)))


def _keys(count: int) -> str:
    return "1 key" if count == 1 else f"{count:,} keys"


_CHALLENGE = (b"www-authenticate",)


def variants(key_counts: Iterable[int] = (1, 1_000, 100_000)) -> list[Variant]:
    """Every variant of the suite, in the order the report lists them."""
    found = [
        Variant("bare", "accepted", bare, note="Starlette, no middleware"),
        Variant("noop", "accepted", lambda: starlette([Middleware(NoopMiddleware)])),
        Variant(
            "noop + headers",
            "accepted",
            lambda: starlette([Middleware(HeadersMiddleware)]),
            must_have=_SECURITY,
        ),
        Variant("asgi_apikey", "accepted", apikey, BEARER, must_have=_SECURITY, probes=REFUSES),
        Variant(
            "asgi_apikey + request logging",
            "accepted",
            lambda: apikey(request_logging=True),
            BEARER,
            must_have=_SECURITY,
            note="structlog JSON lines, rendered and dropped",
            probes=REFUSES,
        ),
        Variant(
            "starlette AuthenticationMiddleware",
            "accepted",
            starlette_authentication,
            BEARER,
            probes=REFUSES,
        ),
        Variant("BaseHTTPMiddleware", "accepted", base_http_middleware, BEARER, probes=REFUSES),
        Variant("fastapi", "accepted", fastapi_bare, note="FastAPI, no dependency"),
        Variant(
            "fastapi HTTPBearer",
            "accepted",
            fastapi_http_bearer,
            BEARER,
            baseline="fastapi",
            note="async def dependency, as FastAPI's tutorial writes it",
            probes=REFUSES,
        ),
        Variant(
            "fastapi HTTPBearer, def dependency",
            "accepted",
            partial(fastapi_http_bearer, thread=True),
            BEARER,
            baseline="fastapi",
            note="a plain def: FastAPI runs it in a thread",
            probes=REFUSES,
        ),
        Variant(
            "fastapi-key-auth",
            "accepted",
            peer,
            X_API_KEY,
            note="a published peer",
            probes=REFUSES_X,
        ),
        Variant("naive compare_digest", "accepted", naive, BEARER, note="1 key", probes=REFUSES),
        # Refusals: each against the floor of refusal.
        Variant(
            "canned 401",
            "refused",
            lambda: starlette([Middleware(Canned401Middleware)]),
            status=401,
            body=None,
            must_have=_CHALLENGE,
            baseline="canned 401",
        ),
    ]
    refusals = [
        ("asgi_apikey: no credentials", [], 401),
        ("asgi_apikey: unknown key", [(b"authorization", b"Bearer " + UNKNOWN_KEY.encode())], 401),
        ("asgi_apikey: malformed header", [(b"authorization", b"Bearer a b")], 400),
    ]
    for name, headers, status in refusals:
        found.append(
            Variant(
                name,
                "refused",
                apikey,
                headers,
                status=status,
                body=None,
                must_have=(*_CHALLENGE, *_SECURITY),
                baseline="canned 401",
            )
        )
    found.extend(
        Variant(
            f"asgi_apikey, {_keys(count)}",
            "keys",
            partial(apikey, count),
            BEARER,
            must_have=_SECURITY,
            options={"keys": count},
            probes=REFUSES,
        )
        for count in key_counts
    )
    # 100,000 compare_digest calls a request would take most of a second a round.
    found.extend(
        Variant(
            f"naive compare_digest, {_keys(count)}",
            "keys",
            partial(naive, count),
            BEARER,
            options={"keys": count},
            probes=REFUSES,
        )
        for count in key_counts
        if count <= 1_000
    )
    return found
