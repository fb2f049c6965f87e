"""Differential test: the middleware is at least as strict as Starlette's and FastAPI's routers.

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
slashes and other encodings, in those deployments and in one whose server keeps
the prefix in ``path`` as the client sent it (where the prefix gets insertions).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from hypothesis import event, example, given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.testing import capture_logs

import asgi_apikey.auth
from asgi_apikey import APIKey, APIKeyMiddleware
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
]
#: The deployments of the exhaustive test. The third builds the same scopes as
#: uvicorn's --root-path for the same route path (and follows redirects to the
#: same targets); what it adds are insertions into the prefix, after which
#: neither router strips root_path and nothing runs: left to Hypothesis.
EXHAUSTIVE_DEPLOYMENTS = DEPLOYMENTS[:2]

# Each middleware built makes its keys the process default (verify_api_key_string()):
# build the apps, then give other test modules back the one they had.
_DEFAULT_AUTHENTICATOR = asgi_apikey.auth._default
ROUTERS: dict[str, ASGIApp] = {"starlette": starlette_app(), "fastapi": fastapi_app()}
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

    def _check(self, key: object) -> None:
        if key == "raw_path":
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


def run(app: ASGIApp, scope: Scope) -> Hop:
    """Run one request to completion without an event loop (nothing here awaits I/O)."""
    target = bytes(scope["raw_path"])
    if scope["query_string"]:
        target += b"?" + scope["query_string"]
    path = scope["path"]
    scope = Guarded(scope)
    RAN.clear()
    PASSED[0] = False
    messages: list[Message] = []
    incoming, gone = client_messages(scope)

    async def receive() -> Message:
        return incoming.pop(0) if incoming else gone

    async def send(message: Message) -> None:
        messages.append(message)

    coroutine = cast(Coroutine[Any, Any, None], app(scope, receive, send))
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
) -> Journey | None:
    """The request for ``target`` and its redirect; None if the server refuses the target."""
    try:
        scope = deployment.scope(target, kind, headers)
    except ValueError:
        return None
    hops = [run(app, scope)]
    first = hops[0]
    if first.status in REDIRECTS and first.location is not None:
        try:
            scope = deployment.scope(deployment.followed(first.location), kind, headers)
        except ValueError:
            pass  # a Location the client cannot send as a target: nothing more runs
        else:
            hops.append(run(app, scope))
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


def _excused(hop: Hop) -> bool:
    """A refusal the design allows for a handler the credential may run."""
    if hop.passed:
        return False
    if hop.status == 400 and hop.invalid_request and not hop.path.isprintable():
        return True  # a control character (or other non-printable) refused outright
    return _not_canonical(hop.path) and hop.status in (400, 401, 403)


#: How a request the credential may not make ends: refused by the middleware
#: (400 invalid_request, 401, 403, 414), or not found by the router after all.
REFUSALS = frozenset({400, 401, 403, 404, 414})


def compare(
    router: str, config: Config, deployment: Deployment, kind: str, target: bytes, bare: Journey
) -> Iterator[Failure]:
    """Send ``target`` through the wrapped app with each credential; yield what breaks."""
    wrapped_app = WRAPPED[router, config.name]
    for credential, headers in CREDENTIALS.items():
        wrapped = journey(wrapped_app, deployment, kind, target, headers)
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
        if lost and not _excused(last):
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
        bare = journey(ROUTERS[router], deployment, kind, target)
        if bare is None or not bare.ran:
            continue  # the router runs nothing: nothing for the middleware to guard
        reached |= {(router, handler) for handler in bare.ran}
        for config in configs:
            failures += compare(router, config, deployment, kind, target, bare)
    return failures, reached


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
    # ran, bare, and so did /v1/admin/{rest:path} (for /v1/admin/, not redirected).
    for router in ROUTERS:
        for handler in HANDLERS.keys() - {"admin_item", "v1_items", "files"}:
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
]


def _ends(text: bytes) -> list[int]:
    """Where segments end: before each slash but the first, and at the end."""
    return [i for i, byte in enumerate(text) if byte == ord("/") and i] + [len(text)]


@st.composite
def mutated_targets(draw: st.DrawFn) -> tuple[Deployment, str, bytes]:
    """A route path, some characters percent-encoded, 0-2 segment edits, 1-3 insertions.

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
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
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
    bare = journey(ROUTERS[router], deployment, kind, target)
    assert bare is not None
    assert bare.ran == {handler}, bare
    for config in CONFIGS:
        for credential, headers in CREDENTIALS.items():
            wrapped = journey(WRAPPED[router, config.name], deployment, kind, target, headers)
            assert wrapped is not None
            allowed = may_run(credential, config.requirement(handler))
            assert wrapped.ran == ({handler} if allowed else set()), (config.name, credential)
            if not allowed:
                assert wrapped.last.status in (401, 403), wrapped


@pytest.mark.parametrize("router", ROUTERS)
def test_a_trailing_slash_redirect_is_followed_to_the_handler(router: str) -> None:
    for deployment in DEPLOYMENTS:
        target = (deployment.front + "/mounted/public/").encode("ascii")
        bare = journey(ROUTERS[router], deployment, "http", target)
        assert bare is not None
        assert [hop.status for hop in bare.hops] == [307, 200], bare
        assert bare.ran == {"mounted_public"}, bare


def test_a_read_of_raw_path_fails_the_harness() -> None:
    # exhaustive_targets keeps one of the targets whose scopes differ in raw_path
    # alone; an app (or a future middleware) that reads it must not go unnoticed.
    async def reads_raw_path(scope: Scope, receive: Receive, send: Send) -> None:
        scope.get("raw_path")

    scope = DEPLOYMENTS[0].scope(b"/admin", "http", ())
    with pytest.raises(AssertionError, match="raw_path was read"):
        run(reads_raw_path, scope)
