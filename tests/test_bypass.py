"""Bypass hunt: no spelling of a protected route's path reaches it without a valid key.

Real Starlette and FastAPI apps (``Mount``, ``APIRouter`` prefixes, ``root_path``,
redirect slashes) run in-process behind the middleware, driven by ASGI scopes built
from raw request targets exactly as uvicorn builds them (:func:`scope_from_target`).
Hypothesis spells the protected paths every way a client can (percent-encoding,
double encoding, dot segments, foreign separators, look-alikes, control bytes,
``;params``, absolute form, public prefixes that climb out again, queries and
fragments that name public paths) and each spelling is sent to every deployment
without a key, with an unknown key and with a key that lacks the admin scope.
Every endpoint records that it ran, so the property is about what actually ran,
not about what the middleware answered.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.exceptions import FastAPIDeprecationWarning
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

import asgi_apikey.auth
from asgi_apikey import APIKey, APIKeyMiddleware
from tests.asgi import bearer, call

USER_KEY = "sk-live-user-0123456789abcdef"
ADMIN_KEY = "sk-live-admin-0123456789abcdef"
UNKNOWN_KEY = "sk-live-unknown-0123456789abcdef"

#: The prefix of every root_path and mount point below.
PREFIX = "/prefix"

# ---------------------------------------------------------------------------
# The server side: the scope uvicorn builds from a request target
# ---------------------------------------------------------------------------


def scope_from_target(raw_target: bytes, root_path: str = "") -> Scope:
    """The HTTP scope uvicorn builds for ``GET <raw_target> HTTP/1.1`` (its h11 protocol).

    uvicorn (``protocols/http/h11_impl.py``) splits the target at the first ``?``:
    ``raw_path`` is what comes before, ``query_string`` what comes after (a
    ``#fragment`` stays where it is: in the path if it precedes the ``?``); ``path``
    is ``unquote(raw_path.decode("ascii"))`` (UTF-8, invalid sequences become
    U+FFFD); and both ``path`` and ``raw_path`` get the server's ``root_path``
    (``--root-path``) prepended, which is also the scope's ``root_path``. h11
    refuses (400) a target with any byte outside VCHAR (0x21-0x7E), so a client
    can send a NUL, a space or a non-ASCII character only percent-encoded.

    The other parsers differ only where the middleware has less to worry about:

    - uvicorn's httptools protocol takes ``path`` and ``query`` from
      ``httptools.parse_url``: an absolute-form target (``http://host/admin``)
      yields the plain ``/admin``, the fragment is dropped, and a target that
      starts with ``?`` is refused.
    - hypercorn (``protocol/http_stream.py``) builds ``path`` and ``raw_path`` the
      same way but does NOT prepend ``root_path`` (which it strips of a trailing
      ``/``): ``path`` is the target as received, ``root_path`` the setting alone.
      ``Deployment(prefix_in_path=False)`` below builds that variant.
    """
    if not raw_target or any(not 0x21 <= byte <= 0x7E for byte in raw_target):
        raise ValueError(f"h11 refuses the request target {raw_target!r}")
    raw_path, _, query_string = raw_target.partition(b"?")
    path = unquote(raw_path.decode("ascii"))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": root_path,
        "path": root_path + path,
        "raw_path": root_path.encode("ascii") + raw_path,
        "query_string": query_string,
        "headers": [(b"host", b"testserver")],
        "state": {},
    }


def test_scope_from_target_decodes_like_uvicorn() -> None:
    scope = scope_from_target(b"/a%2Fb/%E2%82%AC%ff#x?q=%2e&r", root_path="/api")
    assert scope["path"] == "/api/a/b/\u20ac\ufffd#x"
    assert scope["raw_path"] == b"/api/a%2Fb/%E2%82%AC%ff#x"
    assert scope["query_string"] == b"q=%2e&r"
    assert scope["root_path"] == "/api"
    for refused in (b"", b"/a b", b"/a\x00", "/\u00e9".encode()):
        with pytest.raises(ValueError, match="refuses"):
            scope_from_target(refused)


class _Transport(asyncio.Transport):
    """Enough of a socket for uvicorn's protocol: it records what the server wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def uvicorn_scope(raw_target: bytes, root_path: str = "") -> Scope | None:
    """The scope uvicorn's own h11 protocol builds for the target; None if it refuses it."""
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        config = uvicorn.Config(
            app, root_path=root_path, lifespan="off", log_config=None, proxy_headers=False
        )
        protocol = H11Protocol(config, ServerState(), {})
        transport = _Transport()
        protocol.connection_made(transport)
        protocol.data_received(b"GET " + raw_target + b" HTTP/1.1\r\nHost: testserver\r\n\r\n")
        for _ in range(100):
            if seen or transport.closed:
                break
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        assert seen or transport.written.startswith(b"HTTP/1.1 400 "), transport.written

    asyncio.run(main())
    return seen[0] if seen else None


# ---------------------------------------------------------------------------
# The apps: every endpoint records that it ran
# ---------------------------------------------------------------------------


@dataclass
class Trace:
    """What the last request did inside the app."""

    ran: list[str] = field(default_factory=list)  # endpoints that ran
    entered: bool = False  # the request reached the middleware
    reached: bool = False  # the middleware let it through

    def reset(self) -> None:
        self.ran.clear()
        self.entered = self.reached = False


TRACE = Trace()

#: Endpoints that need a valid key; ADMIN needs one with the admin scope.
PROTECTED = frozenset({"items", "admin", "v1"})
ADMIN = frozenset({"admin"})


def records(name: str) -> PlainTextResponse:
    TRACE.ran.append(name)
    return PlainTextResponse(name)


class Entered:
    """Sits right outside the middleware: the request reached it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        TRACE.entered = True
        await self.app(scope, receive, send)


class Reached(Entered):
    """Sits right inside the middleware: the request got past it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        TRACE.reached = True
        await self.app(scope, receive, send)


KEYS = [APIKey(USER_KEY, name="user"), APIKey(ADMIN_KEY, name="admin", scopes={"admin"})]
PUBLIC_RULES = ["/health", "/public", "/static"]
SCOPED_RULES = {"/admin": {"admin"}}  # every other path: protected (the default)


def protect(app: ASGIApp) -> ASGIApp:
    """``APIKeyMiddleware(app, ...)``, between the two probes."""
    return Entered(
        APIKeyMiddleware(Reached(app), keys=KEYS, public=PUBLIC_RULES, protected=SCOPED_RULES)
    )


def starlette_routes() -> list[Route | Mount]:
    async def items(request: Request) -> PlainTextResponse:
        return records("items")

    async def admin(request: Request) -> PlainTextResponse:
        return records("admin")

    async def v1(request: Request) -> PlainTextResponse:
        return records("v1")

    async def static(request: Request) -> PlainTextResponse:
        return records("static")

    async def health(request: Request) -> PlainTextResponse:
        return records("health")

    async def public(request: Request) -> PlainTextResponse:
        return records("public")

    return [
        Route("/api/items/{id}", items),
        Route("/admin/users", admin),
        # A catch-all route too: "/v1/files/../../health" routes here, as spelled.
        Mount("/v1", routes=[Route("/secret", v1), Route("/files/{rest:path}", v1)]),
        # Like StaticFiles, but a Router: its own redirect_slashes runs too.
        Mount("/static", routes=[Route("/{name}", static)]),
        Route("/health", health),
        Route("/public/{rest:path}", public),
    ]


def starlette_app() -> ASGIApp:
    """The Starlette app wrapped by the middleware (redirect_slashes is on by default)."""
    return protect(Starlette(routes=starlette_routes()))


class ResolvingRouter:
    """Routes on the resolved path, as lenient routers do (and proxies that normalise).

    Reads an absolute-form target as its path, merges repeated slashes and resolves
    dot segments (RFC 3986 section 5.2.4), then hands the scope on. Written here
    independently of the package's own normalisation.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if "://" in path or path.startswith("//"):
            path = urlsplit(path).path
        resolved: list[str] = []
        for segment in path.split("/")[1:]:
            if segment == "..":
                if resolved:
                    resolved.pop()
            elif segment not in ("", "."):
                resolved.append(segment)
        trailing = "/" if path.endswith(("/", "/.", "/..")) and resolved else ""
        await self.app(dict(scope, path="/" + "/".join(resolved) + trailing), receive, send)


def starlette_resolving() -> ASGIApp:
    """The Starlette app behind a resolving router, inside the middleware."""
    return protect(ResolvingRouter(Starlette(routes=starlette_routes())))


def starlette_mounted() -> ASGIApp:
    """The protected Starlette app mounted at PREFIX inside an unprotected outer app."""
    return Starlette(routes=[Mount(PREFIX, app=starlette_app())])


def fastapi_app(root_path: str = "") -> ASGIApp:
    """The same shape in FastAPI, the middleware added with add_middleware (README way)."""
    if root_path:
        with warnings.catch_warnings():
            # Deprecated in favour of the server's --root-path, still honoured.
            warnings.simplefilter("ignore", FastAPIDeprecationWarning)
            app = FastAPI(root_path=root_path)
    else:
        app = FastAPI()
    _fastapi_routes(app)
    app.add_middleware(Reached)
    app.add_middleware(APIKeyMiddleware, keys=KEYS, public=PUBLIC_RULES, protected=SCOPED_RULES)
    app.add_middleware(Entered)
    return app


def fastapi_wrapped(root_path: str) -> ASGIApp:
    """``APIKeyMiddleware(FastAPI(root_path=...))``: the README's other way, from outside."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FastAPIDeprecationWarning)
        app = FastAPI(root_path=root_path)
    _fastapi_routes(app)
    return protect(app)


def _fastapi_routes(app: FastAPI) -> None:
    api = APIRouter(prefix="/api")
    admin = APIRouter(prefix="/admin")

    @api.get("/items/{id}")
    async def items(id: str) -> PlainTextResponse:
        return records("items")

    @admin.get("/users")
    async def users() -> PlainTextResponse:
        return records("admin")

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return records("health")

    @app.get("/public/{rest:path}")
    async def public(rest: str) -> PlainTextResponse:
        return records("public")

    v1 = FastAPI()

    @v1.get("/secret")
    async def secret() -> PlainTextResponse:
        return records("v1")

    @v1.get("/files/{rest:path}")
    async def files(rest: str) -> PlainTextResponse:
        return records("v1")

    async def static(request: Request) -> PlainTextResponse:
        return records("static")

    app.include_router(api)
    app.include_router(admin)
    app.mount("/v1", v1)
    app.mount("/static", Router(routes=[Route("/{name}", static)]))


# ---------------------------------------------------------------------------
# Deployments: how a request target becomes the scope the app sees
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    name: str
    app: ASGIApp
    #: The server's root_path setting ("" for none).
    root_path: str = ""
    #: uvicorn prepends root_path to path; hypercorn does not.
    prefix_in_path: bool = True
    #: Requests reach the server with the mount prefix in front of the route path.
    fronted: bool = False
    #: The proxy in front strips this prefix (what --root-path deployments expect).
    proxy_strips: str = ""
    #: The app sits in an outer app's Mount, whose ".*" stops at a newline.
    outer_mount: bool = False
    #: The app routes on the resolved path (no dot segment reaches a route as spelled).
    resolves: bool = False

    @property
    def mounts_route(self) -> bool:
        """Starlette's Mounts route only when path holds root_path (ASGI 2.3 and later)."""
        return self.prefix_in_path or self.fronted

    def scope(self, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> Scope:
        if self.prefix_in_path:
            scope = scope_from_target(target, self.root_path)
        else:  # hypercorn
            scope = scope_from_target(target)
            scope["root_path"] = self.root_path
        scope["headers"] = [*scope["headers"], *headers]
        return scope

    def redirected(self, location: str) -> bytes:
        """The target the server receives when a client follows ``location``."""
        parts = urlsplit(location)
        path = parts.path or "/"
        strip = self.proxy_strips
        if strip and (path == strip or path.startswith(strip + "/")):
            path = path[len(strip) :] or "/"
        return (path + ("?" + parts.query if parts.query else "")).encode("ascii")


# Each middleware built makes its keys the process default (verify_api_key_string());
# the apps below are built at import, so give other test modules back the one they had.
_DEFAULT_AUTHENTICATOR = asgi_apikey.auth._default

_STARLETTE = starlette_app()
STARLETTE_DEPLOYMENTS = [
    Deployment("starlette", _STARLETTE),
    # uvicorn --root-path /prefix behind a proxy that strips /prefix.
    Deployment("starlette, uvicorn root_path", _STARLETTE, PREFIX, proxy_strips=PREFIX),
    # hypercorn --root-path /prefix behind the same proxy: path without the prefix.
    Deployment(
        "starlette, hypercorn root_path",
        _STARLETTE,
        PREFIX,
        prefix_in_path=False,
        proxy_strips=PREFIX,
    ),
    # hypercorn --root-path /prefix behind a proxy that keeps it: prefix in path.
    Deployment(
        "starlette, hypercorn root_path, prefix kept",
        _STARLETTE,
        PREFIX,
        prefix_in_path=False,
        fronted=True,
    ),
    # A router that resolves what Starlette takes as spelled.
    Deployment("starlette, resolving router", starlette_resolving(), resolves=True),
    # Mounted at /prefix inside another Starlette app.
    Deployment("starlette mounted", starlette_mounted(), fronted=True, outer_mount=True),
]

_FASTAPI = fastapi_app()
_FASTAPI_ROOTED = fastapi_app(root_path=PREFIX)
_FASTAPI_WRAPPED = fastapi_wrapped(PREFIX)
FASTAPI_DEPLOYMENTS = [
    Deployment("fastapi", _FASTAPI),
    Deployment("fastapi, uvicorn root_path", _FASTAPI, PREFIX, proxy_strips=PREFIX),
    Deployment(
        "fastapi, hypercorn root_path",
        _FASTAPI,
        PREFIX,
        prefix_in_path=False,
        proxy_strips=PREFIX,
    ),
    # FastAPI(root_path=...): the app sets scope["root_path"] itself, the server does not;
    # the proxy in front keeps the prefix, or strips it (then path lacks root_path).
    Deployment("fastapi(root_path), prefix kept", _FASTAPI_ROOTED, fronted=True),
    Deployment("fastapi(root_path), prefix stripped", _FASTAPI_ROOTED, prefix_in_path=False),
    # The same app wrapped from outside: the middleware runs before FastAPI sets root_path.
    Deployment("APIKeyMiddleware(fastapi(root_path)), prefix kept", _FASTAPI_WRAPPED, fronted=True),
    Deployment(
        "APIKeyMiddleware(fastapi(root_path)), prefix stripped",
        _FASTAPI_WRAPPED,
        prefix_in_path=False,
    ),
]
asgi_apikey.auth._default = _DEFAULT_AUTHENTICATOR


@pytest.fixture(autouse=True)
def _keep_default_authenticator(monkeypatch: pytest.MonkeyPatch) -> None:
    # FastAPI builds its add_middleware stack at its first request, in a test.
    monkeypatch.setattr(asgi_apikey.auth, "_default", asgi_apikey.auth._default)


# ---------------------------------------------------------------------------
# Sending a request and checking what ran
# ---------------------------------------------------------------------------

CREDENTIALS: dict[str, list[tuple[bytes, bytes]]] = {
    "no key": [],
    "unknown key": [bearer(UNKNOWN_KEY)],
    "user key": [bearer(USER_KEY)],
}
#: The endpoints each credential must never run, and how the middleware refuses it.
FORBIDDEN = {"no key": PROTECTED, "unknown key": PROTECTED, "user key": ADMIN}
REFUSAL = {"no key": 401, "unknown key": 401, "user key": 403}
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Outcome:
    status: int
    location: str | None
    ran: tuple[str, ...]
    entered: bool
    reached: bool


def send(deployment: Deployment, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> Outcome:
    TRACE.reset()
    result = call(deployment.app, deployment.scope(target, headers))
    return Outcome(
        result.status, result.header("location"), tuple(TRACE.ran), TRACE.entered, TRACE.reached
    )


def check_no_access(deployment: Deployment, target: bytes, credential: str) -> None:
    """The request, and the one its redirect leads to, run nothing ``credential`` may not."""
    outcome = send(deployment, target, CREDENTIALS[credential])
    _check(deployment, target, credential, outcome)
    if outcome.status in REDIRECTS:
        assert outcome.location is not None
        followed = deployment.redirected(outcome.location)
        _check(
            deployment, followed, credential, send(deployment, followed, CREDENTIALS[credential])
        )


def _check(deployment: Deployment, target: bytes, credential: str, outcome: Outcome) -> None:
    where = f"{deployment.name}: GET {target!r} with {credential} -> {outcome}"
    assert not FORBIDDEN[credential] & set(outcome.ran), "BYPASS " + where
    assert outcome.status < 500, where
    if outcome.entered and not outcome.reached:  # the middleware refused it
        # A control character in the path is refused as such (400), whatever the key.
        expected = 400 if has_control_character(target) else REFUSAL[credential]
        assert outcome.status == expected, where


def has_control_character(target: bytes) -> bool:
    """Whether the path a server decodes from ``target`` holds a C0 control or DEL."""
    path = unquote(target.decode("latin-1").partition("?")[0])
    return any(ord(char) < 0x20 or char == "\x7f" for char in path)


# ---------------------------------------------------------------------------
# Spellings of the protected paths
# ---------------------------------------------------------------------------

#: Canonical paths of the protected endpoints (relative to the app's mount point).
PROTECTED_PATHS = ["/admin/users", "/api/items/42", "/v1/secret", "/v1/files/a"]


def _lookalikes(char: str) -> list[str]:
    found = [char + "\u0301", char + "\u200b"]  # combining acute, zero-width space
    if char.isascii() and char.isalnum():
        found.append(chr(ord(char) + 0xFEE0))  # fullwidth
    found += {
        "i": ["\u0131", "\u0130", "\u00ed"],  # dotless i, dotted capital I (lowers to i + dot)
        "s": ["\u017f"],  # long s (uppercases to S)
        "k": ["\u212a"],  # Kelvin sign (lowercases to k)
        "a": ["\u0430"],  # Cyrillic a
        "e": ["\u0435"],  # Cyrillic e
        "m": ["\u217f"],  # Roman numeral one thousand
        "/": ["\uff0f", "\u2215", "\u2044"],  # fullwidth solidus, division slash, fraction slash
        ".": ["\uff0e", "\u3002", "\u2024"],  # fullwidth full stop, ideographic, one dot leader
    }.get(char.lower(), [])
    return found


def _percent(text: str, upper: bool) -> str:
    return "".join(f"%{b:02X}" if upper else f"%{b:02x}" for b in text.encode("utf-8"))


_CHAR_HOWS = ["percent", "percent", "double", "case", "lookalike", "control"]
_CONTROLS = ["\x00", "\t", "\n", "\r", "\x0b", "\x1b", "\x7f", " ", "\x85", "\u2028"]
_SEPARATORS = (
    ["/"] * 12
    + ["//", "///", "/./", "/%2e/", "/%2E/", "%2f", "%2F", "%252f", "%252F", "\\", "%5c", "%5C"]
    + ["/x/../", "/x/%2e%2e/", "/x/..%2f", "/x/%2E%2e%2F", "/;/", "/.;/", "/%2e%2e/x/"]
)
_SEGMENT_ENDS = [""] * 10 + [".", "..", "%2e", "%20", "%00", "%09", "%0a", ";", ";x=1", "~", "%3b"]
_LEADS = [""] * 6 + [
    "/.",
    "/public/..",
    "/public/%2e%2e",
    "/public/%2E%2e",
    "/public/x/../..",
    "/public/..%2f..%2f",
    "/public/..%5c",
    "/public/..;",
    "/health/..",
    "/health/..%2f",
    "/health%2f..",
    "/health/%252e%252e",
    "/static/..",
    "/static/%2e%2e%2f",
    "/static/x/..%2f..",
    "/..",
    "/%2e%2e",
]
_SUFFIXES = [""] * 8 + [
    "/",
    "//",
    "/.",
    "/./",
    "/..",
    "/%2e",
    ".",
    "..",
    "%2e",
    "%2f",
    "%2F",
    "%20",
    "%00",
    "%0a",
    "%0d%0a",
    "%09",
    "%ff",
    "%c0%ae",
    ";",
    ";jsessionid=0",
    "/..;/",
    "~",
    "%23",
    # Climbing out of a catch-all route into a public path.
    "/../../../health",
    "/../../../../public/x",
    "/..%2f..%2f..%2fhealth",
    "/%2e%2e/%2E%2e/%2e%2e/static/a",
]
_TAILS = [""] * 6 + [
    "?",
    "#",
    "?/health",
    "?next=/public/x",
    "?path=%2Fhealth&x=/static/a",
    "?/public/../../health",
    "#/health",
    "#/../health",
    "#?/static/a",
    "?x#/public/x",
]
_AUTHORITIES = [""] * 10 + [
    "http://testserver",
    "HTTP://testserver:80",
    "https://127.0.0.1",
    "//testserver",
    "http:",
    "/http://testserver",
]
_FRONTS = [PREFIX] * 8 + [
    PREFIX.upper(),
    "/pre%66ix",
    "/%70refix",
    "//prefix",
    "/./prefix",
    "/prefix/.",
    "/prefix/",
    "/prefix%2f",
    "/prefix;x",
    "/public/../prefix",
    "/public/%2e%2e/prefix",
    "/health/..%2fprefix",
]


def to_target(text: str) -> bytes:
    """Percent-encode what h11 would refuse raw: controls, spaces, non-ASCII."""
    return "".join(
        char if 0x21 <= ord(char) <= 0x7E else _percent(char, upper=True) for char in text
    ).encode("ascii")


@dataclass(frozen=True)
class Attempt:
    """One spelling of a protected path: ``authority + [front] + target``."""

    path: str  # the canonical protected path it spells
    target: bytes  # relative to the app's mount point
    authority: bytes = b""  # absolute form or network-path reference
    front: bytes = PREFIX.encode()  # the mount prefix, for deployments that receive it

    def for_deployment(self, deployment: Deployment) -> bytes:
        return self.authority + (self.front if deployment.fronted else b"") + self.target


def classic(target: str, front: str = PREFIX) -> Attempt:
    """An explicit example: the path it spells is whatever it reaches."""
    return Attempt("(example)", target.encode("ascii"), front=front.encode("ascii"))


_LIVE_FRONTS = [PREFIX, PREFIX, "/pre%66ix", "/%70%72%65%66%69%78", "%2fprefix", "%2Fprefix"]


@st.composite
def live_attempts(draw: st.DrawFn) -> Attempt:
    """Spellings that still route to the protected endpoint once the server decodes them.

    Starlette resolves no dot segment, no repeated slash, no case, no look-alike: what
    routes is the canonical path with any character percent-encoded (``/`` as ``%2f``
    included), plus a final newline (``$`` matches before it) or a trailing slash (a
    redirect), and any query. The middleware must refuse every one of these.
    """
    path = draw(st.sampled_from(PROTECTED_PATHS))
    text = ""
    for segment in path.strip("/").split("/"):
        text += draw(st.sampled_from(["/", "/", "/", "%2f", "%2F"]))
        for char in segment:
            how = draw(st.sampled_from(["keep", "keep", "lower", "upper"]))
            text += char if how == "keep" else _percent(char, upper=how == "upper")
    text += draw(st.sampled_from(["", "", "", "/", "%2f", "%0a", "%0A"]))
    text += draw(st.sampled_from(_TAILS))
    return Attempt(
        path, text.encode("ascii"), front=draw(st.sampled_from(_LIVE_FRONTS)).encode("ascii")
    )


@st.composite
def wild_attempts(draw: st.DrawFn) -> Attempt:
    """Spellings that a lenient router, proxy or file system might resolve to the path."""
    path = draw(st.sampled_from(PROTECTED_PATHS))
    upper = draw(st.booleans())
    # Characters of the path, each spelled as is unless a mutation picks it.
    segments = [list(segment) for segment in path.strip("/").split("/")]
    flat = [(s, c) for s, segment in enumerate(segments) for c in range(len(segment))]
    mutations = draw(
        st.lists(st.tuples(st.sampled_from(flat), st.sampled_from(_CHAR_HOWS)), max_size=4)
    )
    for (s, c), how in mutations:
        char = path.strip("/").split("/")[s][c]
        if how == "percent":
            segments[s][c] = _percent(char, upper)
        elif how == "double":
            segments[s][c] = _percent(char, upper).replace("%", "%25")
        elif how == "case":
            segments[s][c] = char.swapcase()
        elif how == "lookalike":
            segments[s][c] = draw(st.sampled_from(_lookalikes(char)))
        else:
            segments[s][c] = char + draw(st.sampled_from(_CONTROLS))
    text = draw(st.sampled_from(_LEADS))
    for segment in segments:
        text += draw(st.sampled_from(_SEPARATORS)) + "".join(segment)
        text += draw(st.sampled_from(_SEGMENT_ENDS))
    text += draw(st.sampled_from(_SUFFIXES)) + draw(st.sampled_from(_TAILS))
    return Attempt(
        path,
        to_target(text),
        authority=draw(st.sampled_from(_AUTHORITIES)).encode("ascii"),
        front=draw(st.sampled_from(_FRONTS)).encode("ascii"),
    )


attempts = st.one_of(live_attempts(), wild_attempts())


_TARGET_BYTES = [bytes([b]) for b in range(0x20, 0x7F)] + [b"\x00", b"\x7f", b"\xc3\xa9", b"%"]


@given(
    target=st.one_of(
        st.lists(st.sampled_from(_TARGET_BYTES), max_size=20).map(b"".join),
        attempts.map(lambda a: a.authority + a.front + a.target),
    ),
    root_path=st.sampled_from(["", PREFIX]),
)
def test_scope_from_target_builds_the_scope_uvicorn_builds(target: bytes, root_path: str) -> None:
    served = uvicorn_scope(target, root_path)
    if served is None:
        with pytest.raises(ValueError, match="refuses"):
            scope_from_target(target, root_path)
        return
    ours = scope_from_target(target, root_path)
    for name in ("path", "raw_path", "query_string", "root_path", "method", "http_version"):
        assert ours[name] == served[name], name


# ---------------------------------------------------------------------------
# The properties
# ---------------------------------------------------------------------------

#: Tricks that must always run, whatever Hypothesis draws.
CLASSIC_TRICKS = [
    "/admin/users",
    "/admin/users/",
    "/admin/users/.",
    "/admin/users%0a",  # Starlette's "$" matches before a final newline: this routes
    "/admin/users%0d%0a",
    "/admin/users%00",
    "/admin/users%20",
    "/admin/users;jsessionid=0",
    "/admin;x/users",
    "/admin%2fusers",
    "/admin%2Fusers",
    "/admin%5cusers",
    "/admin\\users",
    "/%61dmin/users",  # routes: the server decodes it to /admin/users
    "/%2561dmin/users",
    "/ADMIN/users",
    "/Admin/Users",
    "/%EF%BD%81dmin/users",  # fullwidth a
    "/adm%C4%B1n/users",  # dotless i
    "/a%CC%81dmin/users",  # combining acute
    "//admin/users",
    "///admin//users",
    "/./admin/users",
    "/%2e/admin/users",
    "/admin/./users",
    "/admin/x/../users",
    "/health/../admin/users",
    "/health/..%2fadmin/users",
    "/health/..%2Fadmin%2Fusers",
    "/health%2f..%2fadmin%2fusers",
    "/health/%2e%2e/admin/users",
    "/health/%2E%2e/admin/users",
    "/health/%252e%252e/admin/users",
    "/health/..;/admin/users",
    "/health/..%5cadmin/users",
    "/health\\..\\admin\\users",
    "/public/../admin/users",
    "/public/..%2f..%2fadmin/users",
    "/public/%2e%2e/%2e%2e/admin/users",
    "/static/../admin/users",
    "/static/..%2fadmin%2fusers",
    "/health?/admin/users",
    "/admin/users?next=/health",
    "/admin/users#/health",
    "/health#/../admin/users",
    "http://testserver/admin/users",
    "//testserver/admin/users",
    "http://testserver/health/../admin/users",
    "/api/items/42",
    "/api/items/%2e%2e",  # routes: the id is ".."
    "/api/items/..%2f..%2fhealth",
    "/public/../api/items/42",
    "/api/items/42%0a",
    "/api//items/42",
    "/v1/secret",
    "/v1/secret/",
    "/v1//secret",
    "/v1/./secret",
    "/v1%2fsecret",
    "/v1/%73ecret",
    "/v1/secret%0a",
    "/public/../v1/secret",
    "/static/../v1/secret",
    "/health/..%2fv1%2fsecret",
    "/v1/files/../../health",  # routes to the catch-all, resolves to /health
    "/v1/files/..%2f..%2fhealth",
    "/v1/files/%2e%2e/%2e%2e/public/x",
    "/v1/files/x/../../../static/a",
]
CLASSIC_FRONTS = ["/public/../prefix", "//prefix", "/PREFIX", "/prefix/.", "/health/..%2fprefix"]


def with_classic_tricks(test: Callable[[Attempt], None]) -> Callable[[Attempt], None]:
    for target in CLASSIC_TRICKS:
        test = example(classic(target))(test)
    for front in CLASSIC_FRONTS:
        test = example(classic("/admin/users", front=front))(test)
    return test


@with_classic_tricks
@given(attempts)
def test_no_spelling_reaches_a_protected_starlette_endpoint_without_a_valid_key(
    attempt: Attempt,
) -> None:
    for deployment in STARLETTE_DEPLOYMENTS:
        for credential in CREDENTIALS:
            check_no_access(deployment, attempt.for_deployment(deployment), credential)


@with_classic_tricks
@given(attempts)
def test_no_spelling_reaches_a_protected_fastapi_endpoint_without_a_valid_key(
    attempt: Attempt,
) -> None:
    for deployment in FASTAPI_DEPLOYMENTS:
        for credential in CREDENTIALS:
            check_no_access(deployment, attempt.for_deployment(deployment), credential)


# ---------------------------------------------------------------------------
# The keys still open what they should (so the properties above can fail)
# ---------------------------------------------------------------------------

GRANTED = [
    # (target relative to the mount point, key or None, the endpoint that must run)
    ("/admin/users", ADMIN_KEY, "admin"),
    ("/api/items/42", USER_KEY, "items"),
    ("/api/items/42", ADMIN_KEY, "items"),
    ("/v1/secret", USER_KEY, "v1"),
    ("/health", None, "health"),
    ("/public/a/b", None, "public"),
    ("/static/a.txt", None, "static"),
    # Redirect slashes, followed once: the app's router, and the mounted app's own.
    ("/admin/users/", ADMIN_KEY, "admin"),
    ("/v1/secret/", USER_KEY, "v1"),
    ("/static/a.txt/", None, "static"),
    ("/health/", None, "health"),
    # Spellings the server decodes to the canonical path route like it.
    ("/%61dmin/users", ADMIN_KEY, "admin"),
    ("/admin%2fusers", ADMIN_KEY, "admin"),
    ("/admin/users%0a", ADMIN_KEY, "admin"),
    ("/api/items/%2e%2e", USER_KEY, "items"),
    ("/v1/%73ecret", USER_KEY, "v1"),
    ("/v1/files/../../health", USER_KEY, "v1"),
]
_MOUNTED = ("v1", "static")


def granted_cases() -> list[tuple[Deployment, str, str | None, str]]:
    cases = []
    for deployment in STARLETTE_DEPLOYMENTS + FASTAPI_DEPLOYMENTS:
        for target, key, expected in GRANTED:
            if expected in _MOUNTED and not deployment.mounts_route:
                continue  # Starlette's own limit: no key opens these, so nothing to show
            if "%0a" in target and deployment.outer_mount:
                continue  # the outer Mount does not route it either
            if ".." in unquote(target) and deployment.resolves:
                continue  # routes elsewhere once resolved
            cases.append((deployment, target, key, expected))
    return cases


@pytest.mark.parametrize(
    ("deployment", "target", "key", "expected"),
    granted_cases(),
    ids=[f"{d.name}: {target} {expected}" for d, target, _, expected in granted_cases()],
)
def test_the_right_key_reaches_the_endpoint_in_every_deployment(
    deployment: Deployment, target: str, key: str | None, expected: str
) -> None:
    raw = (PREFIX + target if deployment.fronted else target).encode("ascii")
    headers = [bearer(key)] if key else []
    outcome = send(deployment, raw, headers)
    if has_control_character(raw):  # refused whatever the key: routers disagree on them
        assert (outcome.status, outcome.ran) == (400, ()), outcome
        return
    if target.endswith("/"):  # redirect_slashes: nothing runs, the client follows
        assert (outcome.status, outcome.ran) == (307, ()), outcome
        assert outcome.location is not None
        outcome = send(deployment, deployment.redirected(outcome.location), headers)
    assert (outcome.status, outcome.ran) == (200, (expected,)), outcome


def test_fastapi_root_path_on_the_app_keeps_the_admin_scope_when_the_middleware_wraps_it() -> None:
    # The README offers `app = APIKeyMiddleware(app, ...)` as well as add_middleware;
    # with FastAPI(root_path=...) the app sets scope["root_path"] only once it runs,
    # inside the middleware, which must judge /prefix/admin/users as /admin/users.
    deployment = Deployment("APIKeyMiddleware(FastAPI(root_path))", _FASTAPI_WRAPPED, fronted=True)
    target = (PREFIX + "/admin/users").encode("ascii")
    assert send(deployment, target, [bearer(ADMIN_KEY)]).ran == ("admin",)
    for credential in CREDENTIALS:
        check_no_access(deployment, target, credential)
