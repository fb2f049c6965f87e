"""Differential test: the middleware is at least as strict as the routers of Starlette,
FastAPI, Litestar and Quart.

Issue 15: ``GET /admin%0A`` reached the ``/admin`` handler of Starlette and FastAPI
(a route regex ends in ``$``, which also matches before a final newline) while the
rule table looked up ``/admin\\n`` literally and fell back to a parent rule or the
default. Rather than list such spellings, this test asks the routers themselves.

Each request target is turned into the scope uvicorn builds for it
(:func:`tests.test_bypass.scope_from_target`) and sent to the bare app (no
middleware) to learn which handler its router runs, then to the same app wrapped
by :class:`APIKeyMiddleware` with no key, an unknown key, a key without the
``admin`` scope and the admin key. What a credential may run is decided from the
identity of the handler that ran (its route, see ``HANDLERS``), by a rule lookup
written here independently of ``asgi_apikey.paths``, never from the request path:

- a handler the credential may not run never runs behind the middleware;
- a handler it may run still runs (so a middleware that refuses everything fails),
  unless the middleware refused the request as ``invalid_request`` (400) for a
  control character in the path, or refused a path that is not canonical (dot
  segments, repeated slashes), which the rule table judges as resolved too.

A redirect (``redirect_slashes``) is followed once, from its ``Location``, the way
a client would, and the final request is judged.

The targets: every byte 0x00-0x7F and a few non-ASCII characters, inserted once
and twice at every position of each path a rule names, raw (where uvicorn takes
the byte raw) and percent-encoded, without a ``root_path`` and under uvicorn's
``--root-path`` (behind a proxy that strips the prefix). That set is enumerated
exhaustively. A Hypothesis test adds random combinations in the paths of every
route (path parameters too) with dot segments, doubled slashes, trailing
slashes, a slash left out, the prefix inside the path and other encodings, in
those deployments and in two whose server does not put ``root_path`` in front
of ``path`` (hypercorn): one where the client's path keeps the prefix (which
gets insertions), one where a proxy strips it.

Each router reads a path its own way (``asgi_apikey/readings.py``): Starlette
and FastAPI match the spelling (``$`` also before a final newline) and take
``root_path`` off at a segment boundary; Litestar strips and merges slashes,
takes off everything up to the first occurrence of ``root_path`` anywhere in the
path, and matches an ASGI mount's path as a raw prefix (``/mountedadmin`` runs
``/admin`` of an app mounted at ``/mounted``); Quart routes the path of a target
not in origin form, takes ``root_path`` off as a plain prefix, merges slashes
(redirecting) and matches with ``\\Z``. Quart answers through tasks of its own,
so its requests run on an event loop; the others' run without one.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from hypothesis import event, example, given
from hypothesis import strategies as st
from litestar import Litestar, Router, asgi, get, websocket
from litestar import WebSocket as LitestarWebSocket
from litestar.handlers import HTTPRouteHandler, WebsocketRouteHandler
from litestar.types import Receive as LitestarReceive
from litestar.types import Scope as LitestarScope
from litestar.types import Send as LitestarSend
from litestar.utils import normalize_path as litestar_normalize_path
from quart import Blueprint, Quart
from quart import websocket as quart_websocket
from quart.asgi import _normalise_path as quart_normalise_path
from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.testing import capture_logs

import asgi_apikey.auth
from asgi_apikey import APIKey, APIKeyMiddleware
from asgi_apikey.paths import Access, RuleTable
from tests.asgi import bearer, client_messages
from tests.test_bypass import scope_from_target

USER_KEY = "sk-live-diff-user-0123456789abcdef"
ADMIN_KEY = "sk-live-diff-admin-0123456789abcdef"
UNKNOWN_KEY = "sk-live-diff-unknown-0123456789abcdef"
KEYS = [APIKey(USER_KEY, name="user"), APIKey(ADMIN_KEY, name="admin", scopes={"admin"})]

#: The server's root_path in the deployments that have one.
PREFIX = "/prefix"

# ---------------------------------------------------------------------------
# The apps: one Starlette and one FastAPI app with the same routes, each
# endpoint recording its name when it runs
# ---------------------------------------------------------------------------

#: Each handler and a canonical path it serves: what the rules say about that
#: path is what they say about the handler, whatever spelling reached it.
HANDLERS: dict[str, str] = {
    "health": "/health",
    "admin": "/admin",
    "admin_item": "/admin/1",  # /admin/{id}
    "v1": "/v1",
    "v1_admin": "/v1/admin",
    "v1_admin_rest": "/v1/admin/x",  # /v1/admin/{rest:path}
    "v1_items": "/v1/items/1",  # /v1/items/{id}
    "files": "/files/x",  # /files/{rest:path}
    "mounted_admin": "/mounted/admin",  # Mount("/mounted")
    "mounted_public": "/mounted/public",
    "ws_admin": "/ws/admin",  # WebSocket routes
    "ws_public": "/ws/public",
}

#: The handlers that ran during the current request, in order.
RAN: list[str] = []
#: Whether the current request got past the middleware.
PASSED: list[bool] = [False]


def _ran(name: str) -> PlainTextResponse:
    RAN.append(name)
    return PlainTextResponse(name)


def starlette_app() -> Starlette:
    def endpoint(name: str) -> Callable[[Request], Any]:
        async def run(request: Request) -> PlainTextResponse:
            return _ran(name)

        return run

    def websocket_endpoint(name: str) -> Callable[[Any], Any]:
        async def run(websocket: Any) -> None:
            RAN.append(name)
            await websocket.accept()
            await websocket.close()

        return run

    return Starlette(
        routes=[
            Route("/health", endpoint("health")),
            Route("/admin", endpoint("admin")),
            Route("/admin/{id}", endpoint("admin_item")),
            Route("/v1", endpoint("v1")),
            Route("/v1/admin", endpoint("v1_admin")),
            Route("/v1/admin/{rest:path}", endpoint("v1_admin_rest")),
            Route("/v1/items/{id}", endpoint("v1_items")),
            Route("/files/{rest:path}", endpoint("files")),
            Mount(
                "/mounted",
                routes=[
                    Route("/admin", endpoint("mounted_admin")),
                    Route("/public", endpoint("mounted_public")),
                ],
            ),
            WebSocketRoute("/ws/admin", websocket_endpoint("ws_admin")),
            WebSocketRoute("/ws/public", websocket_endpoint("ws_public")),
        ]
    )


def fastapi_app() -> FastAPI:
    app = FastAPI(openapi_url=None)
    admin = APIRouter(prefix="/admin")
    v1 = APIRouter(prefix="/v1")

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return _ran("health")

    @admin.get("")
    async def admin_root() -> PlainTextResponse:
        return _ran("admin")

    @admin.get("/{id}")
    async def admin_item(id: str) -> PlainTextResponse:
        return _ran("admin_item")

    @v1.get("")
    async def v1_root() -> PlainTextResponse:
        return _ran("v1")

    @v1.get("/admin")
    async def v1_admin() -> PlainTextResponse:
        return _ran("v1_admin")

    @v1.get("/admin/{rest:path}")
    async def v1_admin_rest(rest: str) -> PlainTextResponse:
        return _ran("v1_admin_rest")

    @v1.get("/items/{id}")
    async def v1_items(id: str) -> PlainTextResponse:
        return _ran("v1_items")

    @app.get("/files/{rest:path}")
    async def files(rest: str) -> PlainTextResponse:
        return _ran("files")

    @app.websocket("/ws/admin")
    async def ws_admin(websocket: WebSocket) -> None:
        RAN.append("ws_admin")
        await websocket.accept()
        await websocket.close()

    @app.websocket("/ws/public")
    async def ws_public(websocket: WebSocket) -> None:
        RAN.append("ws_public")
        await websocket.accept()
        await websocket.close()

    mounted = FastAPI(openapi_url=None)

    @mounted.get("/admin")
    async def mounted_admin() -> PlainTextResponse:
        return _ran("mounted_admin")

    @mounted.get("/public")
    async def mounted_public() -> PlainTextResponse:
        return _ran("mounted_public")

    app.include_router(admin)
    app.include_router(v1)
    app.mount("/mounted", mounted)
    return app


def litestar_app() -> Litestar:
    """The routes with Litestar's own means: ``Router(path=...)`` and an ASGI mount."""

    def endpoint(name: str, path: str) -> HTTPRouteHandler:
        async def handler() -> str:
            RAN.append(name)
            return name

        return get(path, name=name)(handler)

    def socket(name: str, path: str) -> WebsocketRouteHandler:
        async def handler(socket: LitestarWebSocket[Any, Any, Any]) -> None:
            RAN.append(name)
            await socket.accept()
            await socket.close()

        return websocket(path, name=name)(handler)

    sub = Litestar([endpoint("mounted_admin", "/admin"), endpoint("mounted_public", "/public")])

    @asgi("/mounted", is_mount=True, copy_scope=True)
    async def mounted(scope: LitestarScope, receive: LitestarReceive, send: LitestarSend) -> None:
        await sub(scope, receive, send)

    admin = Router(
        "/admin", route_handlers=[endpoint("admin", "/"), endpoint("admin_item", "/{id:str}")]
    )
    v1 = Router(
        "/v1",
        route_handlers=[
            endpoint("v1", "/"),
            endpoint("v1_admin", "/admin"),
            endpoint("v1_admin_rest", "/admin/{rest:path}"),
            endpoint("v1_items", "/items/{id:str}"),
        ],
    )
    return Litestar(
        [
            endpoint("health", "/health"),
            admin,
            v1,
            endpoint("files", "/files/{rest:path}"),
            mounted,
            socket("ws_admin", "/ws/admin"),
            socket("ws_public", "/ws/public"),
        ]
    )


def quart_app() -> Quart:
    """The routes with Quart's own means: blueprints with a ``url_prefix``."""

    def view(name: str) -> Callable[..., Coroutine[Any, Any, str]]:
        async def handler(**parameters: str) -> str:
            RAN.append(name)
            return name

        return handler

    def socket(name: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def handler() -> None:
            RAN.append(name)
            await quart_websocket.accept()
            await quart_websocket.close(1000)

        return handler

    app = Quart(__name__)
    admin = Blueprint("admin", __name__, url_prefix="/admin")
    v1 = Blueprint("v1", __name__, url_prefix="/v1")
    mounted = Blueprint("mounted", __name__, url_prefix="/mounted")
    app.add_url_rule("/health", "health", view("health"))
    admin.add_url_rule("", "admin", view("admin"))
    admin.add_url_rule("/<id>", "admin_item", view("admin_item"))
    v1.add_url_rule("", "v1", view("v1"))
    v1.add_url_rule("/admin", "v1_admin", view("v1_admin"))
    v1.add_url_rule("/admin/<path:rest>", "v1_admin_rest", view("v1_admin_rest"))
    v1.add_url_rule("/items/<id>", "v1_items", view("v1_items"))
    app.add_url_rule("/files/<path:rest>", "files", view("files"))
    mounted.add_url_rule("/admin", "mounted_admin", view("mounted_admin"))
    mounted.add_url_rule("/public", "mounted_public", view("mounted_public"))
    app.add_websocket("/ws/admin", "ws_admin", socket("ws_admin"))
    app.add_websocket("/ws/public", "ws_public", socket("ws_public"))
    for blueprint in (admin, v1, mounted):
        app.register_blueprint(blueprint)
    return app


class Passed:
    """Sits right inside the middleware: records that the request got past it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        PASSED[0] = True
        await self.app(scope, receive, send)


# ---------------------------------------------------------------------------
# The rule configurations, and an oracle for them written independently
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    name: str
    default: str = "protected"
    public: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    protected: Mapping[str, frozenset[str]] | None = None

    def middleware(self, app: ASGIApp) -> ASGIApp:
        return APIKeyMiddleware(
            Passed(app),
            keys=KEYS,
            public=self.public,
            optional=self.optional,
            protected={path: set(scopes) for path, scopes in (self.protected or {}).items()},
            default=self.default,
        )

    def requirement(self, handler: str) -> tuple[str, frozenset[str]]:
        """(access, scopes) of the handler's canonical path: the longest rule on segments.

        No configuration below nests a protected rule in another, so scopes are
        never inherited here.
        """
        rules: dict[str, tuple[str, frozenset[str]]] = {}
        rules.update((path, ("public", frozenset())) for path in self.public)
        rules.update((path, ("optional", frozenset())) for path in self.optional)
        rules.update(
            (path, ("protected", scopes)) for path, scopes in (self.protected or {}).items()
        )
        segments = HANDLERS[handler].split("/")
        for end in range(len(segments), 1, -1):
            rule = rules.get("/".join(segments[:end]))
            if rule is not None:
                return rule
        return (self.default, frozenset())


_ADMIN = frozenset({"admin"})
_NONE: frozenset[str] = frozenset()
CONFIGS = [
    Config(
        "deny by default, scoped /admin",
        public=("/health", "/mounted/public", "/ws/public"),
        protected={"/admin": _ADMIN, "/mounted/admin": _ADMIN, "/ws/admin": _ADMIN},
    ),
    Config(
        "public by default",
        default="public",
        protected={
            "/admin": _NONE,
            "/v1/admin": _NONE,
            "/mounted/admin": _NONE,
            "/ws/admin": _NONE,
        },
    ),
    Config(
        "public parent, protected child",
        public=("/health", "/v1", "/mounted", "/ws"),
        protected={"/v1/admin": _NONE, "/mounted/admin": _NONE, "/ws/admin": _NONE},
    ),
    Config(
        "optional parent, scoped protected child",
        public=("/health",),
        optional=("/v1", "/mounted", "/ws"),
        protected={"/v1/admin": _ADMIN, "/mounted/admin": _ADMIN, "/ws/admin": _ADMIN},
    ),
]

CREDENTIALS: dict[str, list[tuple[bytes, bytes]]] = {
    "no key": [],
    "unknown key": [bearer(UNKNOWN_KEY)],
    "user key": [bearer(USER_KEY)],
    "admin key": [bearer(ADMIN_KEY)],
}
_SCOPES_OF = {"user key": _NONE, "admin key": _ADMIN}


def may_run(credential: str, requirement: tuple[str, frozenset[str]]) -> bool:
    """Whether DESIGN.md lets ``credential`` run a handler with this requirement."""
    access, scopes = requirement
    if access == "public":
        return True
    if credential == "unknown key":
        return False  # refused on optional paths too: a bad key is never ignored
    if credential == "no key":
        return access == "optional"
    return access == "optional" or scopes <= _SCOPES_OF[credential]


# ---------------------------------------------------------------------------
# Deployments: how a request target becomes a scope, and a redirect a target
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    name: str
    #: The server's root_path ("" for none).
    root_path: str = ""
    #: The client sends this before the route path (the proxy in front keeps it).
    front: str = ""
    #: The server puts root_path in front of path (uvicorn) or not (hypercorn).
    prepends: bool = True

    def scope(self, target: bytes, kind: str, headers: Sequence[tuple[bytes, bytes]]) -> Scope:
        """The scope for ``target``; ValueError where the server refuses the target."""
        if self.prepends:
            scope = scope_from_target(target, self.root_path)
        else:
            scope = scope_from_target(target)
            scope["root_path"] = self.root_path
        scope["headers"] = [*scope["headers"], *headers]
        if kind == "websocket":
            del scope["method"]
            scope.update(
                type="websocket",
                scheme="ws",
                subprotocols=[],
                # Denials come as an HTTP response, so every outcome has a status.
                extensions={"websocket.http.response": {}},
            )
        return scope

    def followed(self, location: str) -> bytes:
        """The target the server receives when a client follows ``location``."""
        parts = urlsplit(location)
        path = parts.path or "/"
        # Where the proxy strips the prefix, it strips what the app put back in front.
        stripped = self.root_path and not self.front
        if stripped and (path == self.root_path or path.startswith(self.root_path + "/")):
            path = path[len(self.root_path) :] or "/"
        return (path + ("?" + parts.query if parts.query else "")).encode("ascii")


DEPLOYMENTS = [
    Deployment("no root_path"),
    Deployment("uvicorn --root-path, proxy strips it", root_path=PREFIX),
    Deployment("root_path, prefix kept in path", root_path=PREFIX, front=PREFIX, prepends=False),
    Deployment("hypercorn --root-path, proxy strips it", root_path=PREFIX, prepends=False),
]
#: The deployments of the exhaustive test. The third builds the same scopes as
#: uvicorn's --root-path for the same route path (and follows redirects to the
#: same targets); what it adds are insertions into the prefix, after which no
#: router strips root_path and nothing runs: left to Hypothesis, with the fourth,
#: where Quart routes nothing (the path lacks root_path) and the others route
#: as without one, unless the path holds the prefix (Litestar's reading).
EXHAUSTIVE_DEPLOYMENTS = DEPLOYMENTS[:2]

# Each middleware built makes its keys the process default (verify_api_key_string()):
# build the apps, then give other test modules back the one they had.
_DEFAULT_AUTHENTICATOR = asgi_apikey.auth._default
ROUTERS: dict[str, ASGIApp] = {
    "starlette": starlette_app(),
    "fastapi": fastapi_app(),
    "litestar": cast(ASGIApp, litestar_app()),
    "quart": cast(ASGIApp, quart_app()),
}
#: The routers whose requests need an event loop (Quart answers through tasks).
ON_A_LOOP = frozenset({"quart"})
WRAPPED: dict[tuple[str, str], ASGIApp] = {
    (router, config.name): config.middleware(app)
    for router, app in ROUTERS.items()
    for config in CONFIGS
}
asgi_apikey.auth._default = _DEFAULT_AUTHENTICATOR


@pytest.fixture(autouse=True)
def _keep_default_authenticator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi_apikey.auth, "_default", asgi_apikey.auth._default)


# ---------------------------------------------------------------------------
# Running a request in-process
# ---------------------------------------------------------------------------

REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Hop:
    """One request: what answered, what ran."""

    target: bytes
    path: str  # scope["path"]
    status: int
    location: str | None
    ran: tuple[str, ...]
    passed: bool  # got past the middleware (always, for the bare app)
    invalid_request: bool  # the answer names invalid_request


class Guarded(dict[str, Any]):
    """A scope that fails the test when anything reads its ``raw_path``.

    The exhaustive test leaves out targets whose scopes differ in ``raw_path``
    alone; that is exact only while neither router nor middleware reads it.
    """

    read_raw_path = False

    def _check(self, key: object) -> None:
        if key == "raw_path":
            self.read_raw_path = True  # an app on a loop may turn the error into a 500
            raise AssertionError(
                "raw_path was read: exhaustive_targets must keep targets that differ in it"
            )

    def __getitem__(self, key: str) -> Any:
        self._check(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._check(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._check(key)
        return super().__contains__(key)


#: The event loop of the routers ON_A_LOOP, while this module's tests run.
LOOP: list[asyncio.Runner] = []


@pytest.fixture(scope="module", autouse=True)
def _event_loop() -> Iterator[None]:
    with asyncio.Runner() as runner:
        LOOP.append(runner)
        try:
            yield
        finally:
            LOOP.clear()


def run(app: ASGIApp, scope: Scope, on_a_loop: bool = False) -> Hop:
    """Run one request to completion: without an event loop (nothing here awaits I/O),
    or ``on_a_loop`` for an app that starts tasks (an error there is the server's 500)."""
    target = bytes(scope["raw_path"])
    if scope["query_string"]:
        target += b"?" + scope["query_string"]
    path = scope["path"]
    guarded = Guarded(scope)
    RAN.clear()
    PASSED[0] = False
    messages: list[Message] = []
    incoming, gone = client_messages(guarded)

    async def receive() -> Message:
        return incoming.pop(0) if incoming else gone

    async def send(message: Message) -> None:
        messages.append(message)

    if on_a_loop:
        _run_on_the_loop(app, guarded, incoming, gone, messages)
        if guarded.read_raw_path:
            raise AssertionError("raw_path was read (and the app answered 500)")
    else:
        coroutine = cast(Coroutine[Any, Any, None], app(guarded, receive, send))
        try:
            coroutine.send(None)
        except StopIteration:
            pass
        else:
            coroutine.close()
            raise AssertionError(f"the app awaited something outside the request: {path!r}")

    status, location, invalid = 0, None, False
    for message in messages:
        kind = message["type"]
        if kind.endswith("response.start"):
            status = message["status"]
            for name, value in message.get("headers", []):
                if name.lower() == b"location":
                    location = value.decode("latin-1")
                invalid |= name.lower() == b"www-authenticate" and b"invalid_request" in value
        elif kind == "websocket.accept":
            status = 101
        elif kind == "websocket.close" and not status:
            status = 403  # closed before accept: the server answers the handshake with 403
    return Hop(target, path, status, location, tuple(RAN), PASSED[0], invalid)


_ANSWERED = frozenset({"http.response.body", "websocket.close", "websocket.http.response.body"})


def _run_on_the_loop(
    app: ASGIApp, scope: Scope, incoming: list[Message], gone: Message, messages: list[Message]
) -> None:
    """One request on the event loop. The client goes away only once answered: Quart
    stops answering as soon as it reads that."""

    async def main() -> None:
        answered = asyncio.Event()

        async def receive() -> Message:
            if incoming:
                return incoming.pop(0)
            await answered.wait()
            return gone

        async def send(message: Message) -> None:
            messages.append(message)
            if message["type"] in _ANSWERED and not message.get("more_body", False):
                answered.set()

        await asyncio.wait_for(app(scope, receive, send), timeout=5)

    try:
        LOOP[0].run(main())
    except TimeoutError:
        raise AssertionError(f"no answer within 5 s: {scope['path']!r}") from None
    except Exception:
        messages[:] = [{"type": "http.response.start", "status": 500, "headers": []}]


@dataclass(frozen=True)
class Journey:
    """A request, and the one its redirect leads to (followed once)."""

    hops: tuple[Hop, ...]

    @property
    def ran(self) -> frozenset[str]:
        return frozenset(name for hop in self.hops for name in hop.ran)

    @property
    def last(self) -> Hop:
        return self.hops[-1]


def journey(
    app: ASGIApp,
    deployment: Deployment,
    kind: str,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
    on_a_loop: bool = False,
) -> Journey | None:
    """The request for ``target`` and its redirect; None if the server refuses the target."""
    try:
        scope = deployment.scope(target, kind, headers)
    except ValueError:
        return None
    hops = [run(app, scope, on_a_loop)]
    first = hops[0]
    if first.status in REDIRECTS and first.location is not None:
        try:
            scope = deployment.scope(deployment.followed(first.location), kind, headers)
        except ValueError:
            pass  # a Location the client cannot send as a target: nothing more runs
        else:
            hops.append(run(app, scope, on_a_loop))
    return Journey(tuple(hops))


# ---------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    # "bypass": ran what it may not; "status": refused it, but not as a refusal;
    # "lost": refused what it may run; "extra": ran what the bare router did not.
    what: str
    router: str
    config: str
    deployment: str
    target: bytes
    credential: str
    handlers: tuple[str, ...]
    detail: str

    def __str__(self) -> str:
        return (
            f"{self.what.upper()} {self.router} / {self.config} / {self.deployment}: "
            f"{self.target!r} with {self.credential}: {', '.join(self.handlers)} ({self.detail})"
        )


def _not_canonical(path: str) -> bool:
    """Dot segments, repeated slashes or no leading slash: the rule table resolves these."""
    segments = path.split("/")
    return not path.startswith("/") or "" in segments[1:-1] or bool({".", ".."} & set(segments))


def _root_inside(path: str, root_path: str) -> bool:
    """root_path in the path, but not as its first segments: routers take it off
    differently (readings.root_readings), and the rule table judges every way."""
    at = path.find(root_path) if root_path else -1
    return at > 0 or (at == 0 and path != root_path and path[len(root_path)] != "/")


def _excused(hop: Hop, root_path: str) -> bool:
    """A refusal the design allows for a handler the credential may run."""
    if hop.passed:
        return False
    if hop.status == 400 and hop.invalid_request and not hop.path.isprintable():
        return True  # a control character (or other non-printable) refused outright
    odd = _not_canonical(hop.path) or _root_inside(hop.path, root_path)
    return odd and hop.status in (400, 401, 403)


#: How a request the credential may not make ends: refused by the middleware
#: (400 invalid_request, 401, 403, 414), or not found by the router after all.
REFUSALS = frozenset({400, 401, 403, 404, 414})


def compare(
    router: str, config: Config, deployment: Deployment, kind: str, target: bytes, bare: Journey
) -> Iterator[Failure]:
    """Send ``target`` through the wrapped app with each credential; yield what breaks."""
    wrapped_app = WRAPPED[router, config.name]
    for credential, headers in CREDENTIALS.items():
        wrapped = journey(wrapped_app, deployment, kind, target, headers, router in ON_A_LOOP)
        assert wrapped is not None  # the same target built the bare scope
        where = (router, config.name, deployment.name, target, credential)
        forbidden = {h for h in bare.ran if not may_run(credential, config.requirement(h))}
        last = wrapped.last
        if forbidden & wrapped.ran:
            yield Failure(
                "bypass", *where, tuple(sorted(forbidden & wrapped.ran)), f"answered {last.status}"
            )
        elif forbidden and last.status not in REFUSALS:
            yield Failure("status", *where, tuple(sorted(forbidden)), f"answered {last.status}")
        lost = bare.ran - forbidden - wrapped.ran
        if lost and not _excused(last, deployment.root_path):
            yield Failure(
                "lost", *where, tuple(sorted(lost)), f"{last.path!r} answered {last.status}"
            )
        if wrapped.ran - bare.ran:
            yield Failure("extra", *where, tuple(sorted(wrapped.ran - bare.ran)), "not run bare")


def check_target(
    deployment: Deployment,
    kind: str,
    target: bytes,
    routers: Sequence[str] = tuple(ROUTERS),
    configs: Sequence[Config] = tuple(CONFIGS),
) -> tuple[list[Failure], set[tuple[str, str]]]:
    """Every failure for ``target``, and the (router, handler) pairs the bare routers ran."""
    failures: list[Failure] = []
    reached: set[tuple[str, str]] = set()
    for router in routers:
        bare = journey(ROUTERS[router], deployment, kind, target, on_a_loop=router in ON_A_LOOP)
        if bare is None or not bare.ran:
            continue  # the router runs nothing: nothing for the middleware to guard
        reached |= {(router, handler) for handler in bare.ran}
        # Stricter than the router there is by design (see litestar_plain_prefix_mount).
        plain_prefix = litestar_plain_prefix_mount(router, deployment, bare)
        for config in configs:
            found = compare(router, config, deployment, kind, target, bare)
            failures += [f for f in found if not (plain_prefix and f.what == "lost")]
    return failures, reached


def litestar_plain_prefix_mount(router: str, deployment: Deployment, bare: Journey) -> bool:
    """Whether Litestar ran a mounted app's handler for a path not under the mount.

    Litestar matches an ASGI mount's path as a raw prefix (``re.match``), so
    ``/mountedadmin`` reaches the app mounted at ``/mounted`` as ``admin/``, which a
    mounted Litestar app routes as ``/admin``. The middleware judges such a path
    under the mount too (``readings.mount_readings``), and the strictest reading
    wins: it may refuse what the router runs there (a "lost" handler, excused),
    and the mount's rule always holds ("status" and "extra" failures are not).
    """
    if router != "litestar":
        return False
    for hop in bare.hops:
        if any(name.startswith("mounted_") for name in hop.ran):
            path = hop.path
            if deployment.root_path:
                path = path.split(deployment.root_path, 1)[-1]  # as Litestar's router does
            routed = litestar_normalize_path(path)
            if routed != "/mounted" and not routed.startswith("/mounted/"):
                return True
    return False


# ---------------------------------------------------------------------------
# The targets
# ---------------------------------------------------------------------------

#: Every path a rule of some configuration names: the exhaustive targets' stems.
RULE_PATHS = sorted(
    {path for config in CONFIGS for path in (*config.public, *config.optional)}
    | {path for config in CONFIGS for path in config.protected or {}}
)
#: Those and every handler's path (path parameters too): the random targets' stems.
ROUTE_PATHS = sorted(set(RULE_PATHS) | set(HANDLERS.values()))

#: What is inserted: every ASCII byte, and a few non-ASCII characters (UTF-8).
INSERTED: list[bytes] = [bytes([byte]) for byte in range(0x80)] + [
    b"\x80",  # a lone continuation byte: uvicorn decodes it to U+FFFD
    "\u00a0".encode(),  # no-break space
    "\u2028".encode(),  # line separator
    "\u0085".encode(),  # next line (C1)
]


def _encoded(unit: bytes) -> bytes:
    return b"".join(b"%%%02X" % byte for byte in unit)


def kind_of(path: str) -> str:
    return "websocket" if path == "/ws" or path.startswith("/ws/") else "http"


def insertions(text: bytes) -> Iterator[bytes]:
    """``text`` with each inserted unit, once and twice, raw and encoded, at every position."""
    for unit in INSERTED:
        for spelled in (unit, _encoded(unit)):
            for times in (1, 2):
                for position in range(len(text) + 1):
                    yield text[:position] + spelled * times + text[position:]


def exhaustive_targets(deployment: Deployment) -> Iterator[tuple[str, bytes]]:
    """(kind, target) for every insertion into every rule path, as the client sends it.

    Targets the server refuses are left out, and so is a target whose scope
    differs from an earlier one's in ``raw_path`` alone (``/a`` and ``/%61``):
    neither the routers nor the middleware read ``raw_path`` (:class:`Guarded`
    makes sure of the middleware), so it would only repeat that case.
    """
    for path in RULE_PATHS:
        kind = kind_of(path)
        text = (deployment.front + path).encode("ascii")
        seen: set[tuple[str, bytes]] = set()
        for target in (text, *insertions(text)):
            try:
                scope = deployment.scope(target, kind, ())
            except ValueError:
                continue
            key = (scope["path"], scope["query_string"])
            if key not in seen:
                seen.add(key)
                yield kind, target


def summarize(failures: Sequence[Failure], limit: int = 40) -> str:
    categories = Counter((f.what, f.router, f.config, f.credential) for f in failures)
    lines = [f"{len(failures)} failures"]
    lines += [
        f"  {count:5d}  {what}: {' / '.join(key)}"
        for (what, *key), count in categories.most_common()
    ]
    lines += ["examples:"] + [f"  {failure}" for failure in failures[:limit]]
    return "\n".join(lines)


@pytest.mark.parametrize(
    "deployment", EXHAUSTIVE_DEPLOYMENTS, ids=[d.name for d in EXHAUSTIVE_DEPLOYMENTS]
)
def test_every_insertion_into_a_rule_path_is_judged_at_least_as_strictly_as_the_routers(
    deployment: Deployment,
) -> None:
    failures: list[Failure] = []
    reached: Counter[tuple[str, str]] = Counter()
    with capture_logs():  # thousands of refusals: kept out of a failure's report
        for kind, target in exhaustive_targets(deployment):
            found, ran = check_target(deployment, kind, target)
            failures += found
            reached.update(ran)
    # The property holds vacuously where nothing runs: every handler of a rule path
    # ran, bare, and in Starlette and FastAPI so did /v1/admin/{rest:path} (for
    # /v1/admin/, not redirected; Litestar runs /v1/admin for it, and Quart's
    # <path:rest> is one character or more).
    for router in ROUTERS:
        unreached = {"admin_item", "v1_items", "files"}
        if router in ("litestar", "quart"):
            unreached.add("v1_admin_rest")
        for handler in HANDLERS.keys() - unreached:
            assert reached[router, handler] >= 2, (router, handler, reached)
    assert not failures, summarize(failures)


# ---------------------------------------------------------------------------
# Hypothesis: random combinations of insertions and segment edits
# ---------------------------------------------------------------------------

# Bytes that routers or servers treat specially, drawn as often as all the others.
_SPECIAL = [b"\n", b"\r", b"\r\n", b"\t", b"\x00", b" ", b"/", b".", b"%", b"?", b"#", b";", b"\\"]
_UNITS = st.one_of(st.sampled_from(_SPECIAL), st.sampled_from(INSERTED))


@st.composite
def spelled_units(draw: st.DrawFn) -> bytes:
    """A unit raw, percent-encoded (either case) or encoded twice (``%250A``)."""
    unit = draw(_UNITS)
    how = draw(st.sampled_from(["raw", "upper", "upper", "lower", "double"]))
    if how == "raw":
        return unit
    encoded = _encoded(unit)
    if how == "lower":
        return encoded.lower()
    if how == "double":
        return encoded.replace(b"%", b"%25")
    return encoded


_SEGMENT_EDITS = [
    b"/.",  # a dot segment
    b"/..",
    b"/x/..",  # a segment and its undoing
    b"/%2e",
    b"/%2E%2e",
    b"/",  # a doubled slash, or a trailing one at the end
    b"//",
    b"%2f",
    PREFIX.encode(),  # Litestar takes off everything up to root_path, wherever it is
]


def _ends(text: bytes) -> list[int]:
    """Where segments end: before each slash but the first, and at the end."""
    return [i for i, byte in enumerate(text) if byte == ord("/") and i] + [len(text)]


@st.composite
def mutated_targets(draw: st.DrawFn) -> tuple[Deployment, str, bytes]:
    """A route path, some characters percent-encoded, 0-2 segment edits, maybe a slash
    left out (Litestar matches a mount's path as a raw prefix), 0-3 insertions.

    An insertion goes anywhere, or (twice as often) at the end of the path: the middle
    of a name routes nowhere, while the end is where routers forgive (``$``
    before a newline, ``{rest:path}``, a redirected slash).
    """
    deployment = draw(st.sampled_from(DEPLOYMENTS))
    path = draw(st.sampled_from(ROUTE_PATHS))
    text = b""
    for char in (deployment.front + path).encode("ascii"):
        how = draw(st.sampled_from(["keep"] * 8 + ["upper", "lower"]))
        spelled = bytes([char]) if how == "keep" else _encoded(bytes([char]))
        text += spelled.lower() if how == "lower" else spelled
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 1, 2]))):
        at = draw(st.sampled_from(_ends(text)))
        text = text[:at] + draw(st.sampled_from(_SEGMENT_EDITS)) + text[at:]
    slashes = [i for i, byte in enumerate(text) if byte == ord("/") and i]
    if slashes and draw(st.sampled_from([False] * 5 + [True])):
        at = draw(st.sampled_from(slashes))
        text = text[:at] + text[at + 1 :]
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        at = draw(st.one_of(st.just(len(text)), st.just(len(text)), st.integers(0, len(text))))
        text = text[:at] + draw(spelled_units()) + text[at:]
    text += draw(st.sampled_from([b""] * 6 + [b"/", b"?x=1", b"?/health", b"#x"]))
    return deployment, kind_of(path), text


@example((DEPLOYMENTS[0], "http", b"/admin%0A"))
@example((DEPLOYMENTS[0], "websocket", b"/ws/admin%0A"))
@example((DEPLOYMENTS[1], "http", b"/v1/admin%0A"))
@example((DEPLOYMENTS[2], "http", b"/prefix/mounted/admin%0a"))
@example((DEPLOYMENTS[0], "http", b"/admin%0A/"))  # redirected to /admin%0A
@example((DEPLOYMENTS[1], "http", b"/v1/admin%0A?x=1"))
@example((DEPLOYMENTS[0], "http", b"/files/x/../../admin"))  # runs files, resolves to /admin
@example((DEPLOYMENTS[3], "http", b"/v1/prefix/admin"))  # Litestar runs /admin
@example((DEPLOYMENTS[2], "http", b"/health/prefix/admin"))  # so it does here
@example((DEPLOYMENTS[2], "websocket", b"/ws/public/prefix/ws/admin"))
@example((DEPLOYMENTS[0], "http", b"/mountedadmin"))  # Litestar's mount: the known gap
@example((DEPLOYMENTS[0], "http", b"//admin/.."))  # Litestar and Quart run /admin/{id}
@example((DEPLOYMENTS[1], "http", b"/v1//admin/.."))  # Litestar runs /v1/admin/{rest:path}
@given(mutated_targets())
def test_random_spellings_of_route_paths_are_judged_at_least_as_strictly_as_the_routers(
    drawn: tuple[Deployment, str, bytes],
) -> None:
    deployment, kind, target = drawn
    with capture_logs():
        failures, reached = check_target(deployment, kind, target)
    event("a router ran a handler" if reached else "no router ran a handler")
    assert not failures, summarize(failures)


# ---------------------------------------------------------------------------
# Each router's own reading of a path, against the rule table directly
# ---------------------------------------------------------------------------


def router_readings(path: str, root_path: str) -> dict[str, str]:
    """The path each router matches its routes against, by the router's own code."""
    found: dict[str, str] = {}
    starlette = get_route_path({"path": path, "root_path": root_path}) or "/"
    if starlette.startswith("/"):  # its route patterns start with "/"
        found["starlette"] = starlette
    # litestar/_asgi/asgi_router.py, ASGIRouter.__call__, then its routing trie:
    litestar = path.split(root_path, maxsplit=1)[-1] if root_path else path
    found["litestar"] = litestar_normalize_path(litestar)
    # quart/asgi.py (" " when nothing may be routed), then werkzeug's MapAdapter.match:
    quart = quart_normalise_path(path, root_path) if root_path else path
    if quart != " ":
        found["quart"] = "/" + quart.lstrip("/")
    # django/core/handlers/asgi.py: path_info; its root URL resolver needs a "/".
    django = path.removeprefix(root_path) if root_path else path
    if django.startswith("/"):
        found["django"] = django
    return found


_SEGMENTS = ["", "health", "admin", "prefix", "prefixadmin", "v1", "x", ".", ".."]
_TABLE = RuleTable(public=["/health", "/v1"], protected={"/admin": {"admin"}, "/v1/admin": ()})


@given(
    st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=6).map("/".join),
    st.sampled_from(["", "/", "//"]),
    st.sampled_from(["", "/prefix", "/v1", "/pre", "/prefix/v1"]),
)
@example("admin", "/", "/prefix")  # /prefixadmin: Quart and Django read /admin
@example("health/prefix/admin", "/", "/prefix")  # Litestar reads /admin
@example("admin/..", "//", "")  # Litestar and Quart read /admin/.. (/admin/{id})
@example("v1//admin/..", "/", "")  # Litestar reads /v1/admin/..
def test_every_routers_reading_of_a_path_is_judged(rest: str, lead: str, root_path: str) -> None:
    # A router runs the handler of the route it matches: the rule covering that
    # route is the longest rule on the reading as the router matches it.
    path = lead + rest
    decided = _TABLE.decide_under(path, root_path) if root_path else _TABLE.decide(path)
    if decided.access is Access.REFUSED:
        return  # refused outright, whatever the reading
    for router, reading in router_readings(path, root_path).items():
        routed = _TABLE.match(reading)
        assert decided.access >= routed.access, (router, path, reading, decided, routed)
        assert decided.scopes >= routed.scopes, (router, path, reading, decided, routed)


@pytest.mark.parametrize("target", [b"/mountedadmin", b"/mounted%61dmin", b"/prefix/mountedpublic"])
def test_a_litestar_mount_matched_as_a_plain_prefix_is_judged_under_the_mount(
    target: bytes,
) -> None:
    # Litestar matches an ASGI mount's path as a plain prefix (re.match): /mountedadmin
    # runs the app mounted at /mounted as /admin. The middleware reads the Litestar
    # app's mounts and judges /mounted/admin too.
    deployment = DEPLOYMENTS[2] if target.startswith(b"/prefix") else DEPLOYMENTS[0]
    with capture_logs():
        failures, reached = check_target(deployment, "http", target, routers=["litestar"])
    assert reached & {("litestar", "mounted_admin"), ("litestar", "mounted_public")}
    assert not failures, summarize(failures)


# ---------------------------------------------------------------------------
# The harness itself
# ---------------------------------------------------------------------------

_CANONICAL = list(HANDLERS.items())


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d.name for d in DEPLOYMENTS])
@pytest.mark.parametrize(("handler", "path"), _CANONICAL, ids=[name for name, _ in _CANONICAL])
def test_each_route_path_runs_its_handler_and_only_the_right_keys_reach_it(
    handler: str, path: str, deployment: Deployment, router: str
) -> None:
    # The oracle knows every route: the canonical path runs its handler, bare, and
    # behind each configuration exactly the credentials that may run it do.
    kind = kind_of(path)
    target = (deployment.front + path).encode("ascii")
    loop = router in ON_A_LOOP
    bare = journey(ROUTERS[router], deployment, kind, target, on_a_loop=loop)
    assert bare is not None
    runs = {handler} if served(router, deployment, handler) else set()
    assert bare.ran == runs, bare
    for config in CONFIGS:
        for credential, headers in CREDENTIALS.items():
            wrapped = journey(
                WRAPPED[router, config.name], deployment, kind, target, headers, on_a_loop=loop
            )
            assert wrapped is not None
            allowed = may_run(credential, config.requirement(handler))
            assert wrapped.ran == (runs if allowed else set()), (config.name, credential)
            if not allowed:
                assert wrapped.last.status in (401, 403), wrapped


def served(router: str, deployment: Deployment, handler: str = "") -> bool:
    """Whether ``router`` runs ``handler`` for its path where the server does not put
    root_path in front of path and the proxy strips the prefix: Quart answers 404 to
    a path that does not start with root_path, and a Starlette ``Mount`` looks for
    root_path in front of the path it hands on."""
    if deployment.prepends or not deployment.root_path or deployment.front:
        return True
    if router == "quart":
        return False
    return not (router in ("starlette", "fastapi") and handler.startswith("mounted_"))


#: A near miss of a route's path, and the statuses on the way to its handler:
#: Starlette and FastAPI redirect a trailing slash, Quart (werkzeug) redirects
#: doubled slashes to merged ones, Litestar strips and merges slashes in place.
NEAR_MISSES: dict[str, tuple[str, list[int]]] = {
    "starlette": ("/mounted/public/", [307, 200]),
    "fastapi": ("/mounted/public/", [307, 200]),
    "litestar": ("/mounted//public/", [200]),
    "quart": ("/mounted//public", [308, 200]),
}


@pytest.mark.parametrize("router", ROUTERS)
def test_a_near_miss_reaches_the_handler_through_a_followed_redirect(router: str) -> None:
    path, statuses = NEAR_MISSES[router]
    for deployment in DEPLOYMENTS:
        if not served(router, deployment, "mounted_public"):
            continue
        target = (deployment.front + path).encode("ascii")
        bare = journey(ROUTERS[router], deployment, "http", target, on_a_loop=router in ON_A_LOOP)
        assert bare is not None
        assert [hop.status for hop in bare.hops] == statuses, bare
        assert bare.ran == {"mounted_public"}, bare


def test_a_read_of_raw_path_fails_the_harness() -> None:
    # exhaustive_targets keeps one of the targets whose scopes differ in raw_path
    # alone; an app (or a future middleware) that reads it must not go unnoticed.
    async def reads_raw_path(scope: Scope, receive: Receive, send: Send) -> None:
        scope.get("raw_path")

    scope = DEPLOYMENTS[0].scope(b"/admin", "http", ())
    with pytest.raises(AssertionError, match="raw_path was read"):
        run(reads_raw_path, scope)


def test_a_read_of_raw_path_fails_the_harness_on_the_loop_too() -> None:
    # Quart turns an error in a view into a 500: the read is still noticed.
    async def swallows_the_error(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            scope["raw_path"]
        except AssertionError:
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    scope = DEPLOYMENTS[0].scope(b"/admin", "http", ())
    with pytest.raises(AssertionError, match="raw_path was read"):
        run(swallows_the_error, scope, on_a_loop=True)
