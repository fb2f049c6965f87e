"""The middleware behind real servers, driven with exact bytes over 127.0.0.1.

Each case runs under uvicorn (h11), uvicorn (httptools) and hypercorn (h11): what
the server's parser does before the app (rejects, unfolds, lowercases, decodes)
is part of what the middleware is judged on. Where servers differ, the table says
which does what; a server refusing a request before the app is fine, the
protected endpoint running, a 500, or a hang never is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_apikey import APIKey, APIKeyMiddleware
from tests.servers import SERVERS, RawResponse, RunningServer, WebSocketClient, exchange, serve

USER_KEY = "sk-live-user-0123456789abcdef"
ADMIN_KEY = "sk-live-admin-0123456789abcdef"
UNKNOWN_KEY = "sk-live-nope-0123456789abcdef"
USER = USER_KEY.encode()
UNKNOWN = UNKNOWN_KEY.encode()

#: What the middleware adds to every HTTP response it sends or lets through.
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
PROTECTED_ENDPOINTS = {"api-data", "api-rest", "admin-users", "ws"}
#: A test-only header: the wrapper below hides the websocket denial-response extension,
#: as a server without it would.
NO_DENIAL_EXTENSION = "x-test-no-denial-extension"

# Every endpoint that runs appends its name here; tests start with it empty.
RAN: list[str] = []


def endpoint(name: str) -> Callable[[Request], Awaitable[PlainTextResponse]]:
    async def run(request: Request) -> PlainTextResponse:
        RAN.append(name)
        return PlainTextResponse(
            f"endpoint={name} key={request.scope['auth'].key_id} path={request.url.path}"
        )

    return run


def echo(name: str) -> Callable[[WebSocket], Awaitable[None]]:
    async def run(websocket: WebSocket) -> None:
        RAN.append(name)
        await websocket.accept()
        try:
            text = await websocket.receive_text()
        except WebSocketDisconnect:
            return  # the client left (a failed test): nothing to log
        await websocket.send_text(f"endpoint={name} key={websocket.scope['auth'].key_id} {text}")
        await websocket.close()

    return run


def build_app() -> ASGIApp:
    app = Starlette(
        routes=[
            Route("/health", endpoint("health")),
            Route("/public/{rest:path}", endpoint("public")),
            Route("/api/data", endpoint("api-data")),
            Route("/api/{rest:path}", endpoint("api-rest")),
            Route("/admin/users", endpoint("admin-users")),
            WebSocketRoute("/ws", echo("ws")),
            WebSocketRoute("/public-ws", echo("public-ws")),
        ]
    )
    protected = APIKeyMiddleware(
        app,
        keys=[APIKey(USER_KEY, name="user"), APIKey(ADMIN_KEY, name="admin", scopes={"admin"})],
        public=["/health", "/public", "/public-ws"],
        protected={"/admin": {"admin"}},
    )

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and any(
            name == NO_DENIAL_EXTENSION.encode() for name, _ in scope["headers"]
        ):
            scope = {**scope, "extensions": {}}
        await protected(scope, receive, send)

    return outer


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with serve(build_app(), request.param) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_record(server: RunningServer) -> Iterator[None]:
    RAN.clear()
    logged = len(server.log)
    yield
    assert server.errors(since=logged) == [], f"{server.kind} logged errors"


# --- requests and outcomes ----------------------------------------------------------------


def raw(request_line: bytes, *fields: bytes) -> bytes:
    """A request head: the request line, Host, then ``fields`` exactly as given."""
    return b"\r\n".join([request_line, b"Host: 127.0.0.1", *fields]) + b"\r\n\r\n"


def get(target: bytes, *fields: bytes) -> bytes:
    return raw(b"GET " + target + b" HTTP/1.1", *fields)


def bearer(token: bytes, name: bytes = b"Authorization") -> bytes:
    return name + b": Bearer " + token


def assert_security_headers(response: RawResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.header(name) == value, f"{name} missing or wrong"


def outcome(response: RawResponse | None, *, head: bool = False) -> str:
    """Name what happened, after checking what must hold whatever happened.

    ``"401 missing"``, ``"401 invalid_token"``, ``"400 invalid_request"``,
    ``"403 insufficient_scope"``: a denial from the middleware (checked in full);
    ``"endpoint <name>"``: the app's endpoint answered 200; ``"app <status>"``: the
    app answered otherwise (a 404 from the router); ``"server <status>"``: the
    server answered before the app; ``"closed"``: no response at all. ``head``: the
    request was a HEAD, so no response has a body.
    """
    if response is None:
        assert RAN == [], "the server closed, yet an endpoint ran"
        return "closed"
    assert response.status < 500, f"server error {response.status}: {response.body!r}"
    challenge = response.header("www-authenticate")
    if challenge is not None:
        assert RAN == [], f"{RAN} ran, yet the middleware refused"
        assert response.status in (400, 401, 403)
        assert challenge.startswith('Bearer realm="api"'), challenge
        assert response.header("content-type") == "application/json"
        assert response.header("cache-control") == "no-store"
        if head:
            assert response.body == b""
        else:
            assert set(json.loads(response.body)) == {"detail"}
        assert_security_headers(response)
        error = re.search(r'error="([a-z_]+)"', challenge)
        return f"{response.status} {error.group(1) if error else 'missing'}"
    if response.status == 200:
        assert len(RAN) == 1, RAN
        assert response.body.startswith(f"endpoint={RAN[0]} ".encode()), response.body
        assert_security_headers(response)
        return f"endpoint {RAN[0]}"
    assert RAN == [], f"{RAN} ran, yet the answer is {response.status}"
    assert response.status != 401, "a 401 without a challenge"
    if response.header("x-content-type-options") is not None:
        assert_security_headers(response)  # through the middleware: all of them
        return f"app {response.status}"
    return f"server {response.status}"


@dataclass(frozen=True)
class Case:
    id: str
    request: bytes = field(repr=False)  # up to 1 MiB: the id says what it is
    expect: Mapping[str, frozenset[str]] = field(repr=False)  # server kind -> outcomes allowed


def everywhere(*outcomes: str) -> Mapping[str, frozenset[str]]:
    return dict.fromkeys(SERVERS, frozenset(outcomes))


Outcomes = str | tuple[str, ...]


def per_server(
    *, h11: Outcomes, httptools: Outcomes, hypercorn: Outcomes
) -> Mapping[str, frozenset[str]]:
    """What each server does: uvicorn with h11, uvicorn with httptools, hypercorn."""

    def allowed(outcomes: Outcomes) -> frozenset[str]:
        return frozenset({outcomes} if isinstance(outcomes, str) else outcomes)

    return {
        "uvicorn-h11": allowed(h11),
        "uvicorn-httptools": allowed(httptools),
        "hypercorn": allowed(hypercorn),
    }


def run(server: RunningServer, case: Case) -> str:
    allowed = case.expect[server.kind]
    got = outcome(exchange(server.port, case.request))
    if not any(want.removeprefix("endpoint ") in PROTECTED_ENDPOINTS for want in allowed):
        assert not PROTECTED_ENDPOINTS & set(RAN), f"a protected endpoint ran: {RAN}"
    assert got in allowed, f"{server.kind}: {got}"
    return got


def params(cases: list[Case]) -> list[object]:
    return [pytest.param(case, id=case.id) for case in cases]


# --- a valid key --------------------------------------------------------------------------


def test_a_valid_key_reaches_the_endpoint_with_the_security_headers(
    server: RunningServer,
) -> None:
    response = exchange(server.port, get(b"/api/data", bearer(USER)))
    assert outcome(response) == "endpoint api-data"
    assert response is not None
    assert response.body == b"endpoint=api-data key=user path=/api/data"


def test_the_admin_key_reaches_the_admin_endpoint(server: RunningServer) -> None:
    response = exchange(server.port, get(b"/admin/users", bearer(ADMIN_KEY.encode())))
    assert outcome(response) == "endpoint admin-users"


def test_a_public_path_needs_no_key(server: RunningServer) -> None:
    response = exchange(server.port, get(b"/health"))
    assert outcome(response) == "endpoint health"
    assert response is not None
    assert response.body == b"endpoint=health key=None path=/health"


def test_a_protected_path_without_a_key_is_401_with_a_bare_challenge(
    server: RunningServer,
) -> None:
    response = exchange(server.port, get(b"/api/data"))
    assert outcome(response) == "401 missing"
    assert response is not None
    assert response.header("www-authenticate") == 'Bearer realm="api"'


# --- duplicate Authorization headers -----------------------------------------------------

# All three servers pass both headers to the app; the middleware refuses the pair.
DUPLICATES = [
    Case(
        "valid+invalid",
        get(b"/api/data", bearer(USER), bearer(UNKNOWN)),
        everywhere("400 invalid_request"),
    ),
    Case(
        "valid+valid",
        get(b"/api/data", bearer(USER), bearer(USER)),
        everywhere("400 invalid_request"),
    ),
    Case(
        "invalid+valid",
        get(b"/api/data", bearer(UNKNOWN), bearer(USER)),
        everywhere("400 invalid_request"),
    ),
    Case(
        "valid+invalid, names in two cases",
        get(b"/api/data", bearer(USER), bearer(UNKNOWN, b"authorization")),
        everywhere("400 invalid_request"),
    ),
    Case(
        "user+admin on the admin path",
        get(b"/admin/users", bearer(USER), bearer(ADMIN_KEY.encode())),
        everywhere("400 invalid_request"),
    ),
    Case(
        "valid+empty",
        get(b"/api/data", bearer(USER), b"Authorization:"),
        everywhere("400 invalid_request"),
    ),
]


@pytest.mark.parametrize("case", params(DUPLICATES))
def test_two_authorization_headers_never_reach_the_endpoint(
    server: RunningServer, case: Case
) -> None:
    run(server, case)


# --- header-name case ---------------------------------------------------------------------

NAMES = (b"AUTHORIZATION", b"authorization", b"AuThOrIzAtIoN")
# Every server lowercases field names before the app sees them.
HEADER_CASES = [
    *(
        Case(
            f"{n.decode()} valid",
            get(b"/api/data", bearer(USER, n)),
            everywhere("endpoint api-data"),
        )
        for n in NAMES
    ),
    *(
        Case(
            f"{n.decode()} unknown",
            get(b"/api/data", bearer(UNKNOWN, n)),
            everywhere("401 invalid_token"),
        )
        for n in NAMES
    ),
]


@pytest.mark.parametrize("case", params(HEADER_CASES))
def test_the_header_name_is_case_insensitive(server: RunningServer, case: Case) -> None:
    run(server, case)


# --- obs-fold (RFC 9112 §5.2) -------------------------------------------------------------

# h11 (uvicorn-h11, hypercorn) unfolds the continuation into the value with a space;
# llhttp (httptools) refuses the request with its own 400.
FOLDS = [
    Case(
        "valid key folded",
        get(b"/api/data", b"Authorization: Bearer", b" " + USER),
        per_server(h11="endpoint api-data", httptools="server 400", hypercorn="endpoint api-data"),
    ),
    Case(
        "unknown key folded",
        get(b"/api/data", b"Authorization: Bearer", b" " + UNKNOWN),
        per_server(h11="401 invalid_token", httptools="server 400", hypercorn="401 invalid_token"),
    ),
    Case(
        "junk folded after a valid key",
        get(b"/api/data", bearer(USER), b"\tjunk"),
        per_server(
            h11="400 invalid_request", httptools="server 400", hypercorn="400 invalid_request"
        ),
    ),
    Case(
        "a header folded into another",
        get(b"/api/data", b"X-Note: a", b" " + bearer(USER)),
        per_server(h11="401 missing", httptools="server 400", hypercorn="401 missing"),
    ),
]


@pytest.mark.parametrize("case", params(FOLDS))
def test_folded_header_lines_are_unfolded_or_refused(server: RunningServer, case: Case) -> None:
    run(server, case)


# --- very long headers --------------------------------------------------------------------

# How far a large head gets depends on the parser and on how the bytes arrive.
# h11 refuses a head that grows past its limit before it is complete: uvicorn-h11
# answers 400 (16 KiB), hypercorn 431 (16 KiB); h11 still parses a larger head that
# arrives in a single read (uvicorn-h11 passes a 64 KiB token to the app on loopback).
# llhttp has no limit: uvicorn-httptools hands even 1 MiB to the app, where the
# middleware refuses it. A server that answers and closes while the client is still
# sending may reset the connection before the answer is read: "closed".
H11_BIG = ("server 400", "closed")
HYPERCORN_BIG = ("server 431", "closed")
FILLERS = [b"X-Filler-%05d: %s" % (i, b"v" * 20) for i in range(10000)]  # ~350 KiB
LONG = [
    Case("8 KiB token", get(b"/api/data", bearer(b"a" * 8192)), everywhere("400 invalid_request")),
    Case(
        "64 KiB token",
        get(b"/api/data", bearer(b"a" * 65536)),
        per_server(
            h11=("400 invalid_request", *H11_BIG),
            httptools="400 invalid_request",
            hypercorn=("400 invalid_request", *HYPERCORN_BIG),
        ),
    ),
    Case(
        "1 MiB token",
        get(b"/api/data", bearer(b"a" * 2**20)),
        per_server(h11=H11_BIG, httptools="400 invalid_request", hypercorn=HYPERCORN_BIG),
    ),
    Case(
        "1 MiB token after a valid one",
        get(b"/api/data", bearer(USER), bearer(b"a" * 2**20)),
        per_server(h11=H11_BIG, httptools="400 invalid_request", hypercorn=HYPERCORN_BIG),
    ),
    Case(
        "10000 headers, no key",
        get(b"/api/data", *FILLERS),
        per_server(h11=H11_BIG, httptools="401 missing", hypercorn=HYPERCORN_BIG),
    ),
    Case(
        "10000 headers, then an unknown key",
        get(b"/api/data", *FILLERS, bearer(UNKNOWN)),
        per_server(h11=H11_BIG, httptools="401 invalid_token", hypercorn=HYPERCORN_BIG),
    ),
    Case(
        "10000 headers, then a valid key",
        get(b"/api/data", *FILLERS, bearer(USER)),
        per_server(h11=H11_BIG, httptools="endpoint api-data", hypercorn=HYPERCORN_BIG),
    ),
]


@pytest.mark.parametrize("case", params(LONG))
def test_very_long_headers_are_refused_or_judged_without_error_or_hang(
    server: RunningServer, case: Case
) -> None:
    run(server, case)


def test_a_valid_key_after_many_headers_is_found(server: RunningServer) -> None:
    # 200 small headers fit every server's limits: the key is read wherever it is.
    fillers = [b"X-Filler-%d: v" % i for i in range(200)]
    assert outcome(exchange(server.port, get(b"/api/data", *fillers, bearer(USER)))) == (
        "endpoint api-data"
    )


# --- control bytes and non-ASCII in the value ---------------------------------------------

# h11 refuses NUL, CR and LF inside a value; it passes other controls, DEL and
# bytes >= 0x80 (obs-text) to the app, where the middleware refuses them.
# llhttp (httptools) also refuses other controls and DEL itself, but passes HTAB
# and obs-text.
BAD_BYTES = [
    (b"\x00", "NUL", "server 400", "server 400"),
    (b"\r", "CR alone", "server 400", "server 400"),
    (b"\n", "LF alone", "server 400", "server 400"),
    (b"\x01", "SOH", "400 invalid_request", "server 400"),
    (b"\x1b", "ESC", "400 invalid_request", "server 400"),
    (b"\x7f", "DEL", "400 invalid_request", "server 400"),
    (b"\t", "HTAB", "400 invalid_request", "400 invalid_request"),
    (b"\x80", "0x80", "400 invalid_request", "400 invalid_request"),
    (b"\xff", "0xFF", "400 invalid_request", "400 invalid_request"),
    ("é".encode(), "UTF-8 e-acute", "400 invalid_request", "400 invalid_request"),
    ("\u2028".encode(), "UTF-8 line separator", "400 invalid_request", "400 invalid_request"),
]
CONTROL = [
    Case(
        f"{label} inside a valid key",
        get(b"/api/data", bearer(USER[:8] + byte + USER[8:])),
        per_server(h11=by_h11, httptools=by_llhttp, hypercorn=by_h11),
    )
    for byte, label, by_h11, by_llhttp in BAD_BYTES
]


@pytest.mark.parametrize("case", params(CONTROL))
def test_control_and_non_ascii_bytes_in_the_key_are_refused(
    server: RunningServer, case: Case
) -> None:
    run(server, case)


# --- path tricks without a key ------------------------------------------------------------


def _short(target: str) -> str:
    return target if len(target) <= 80 else f"{target[:40]}...({len(target)} characters)"


REFUSED = "401 missing"
CONTROL_REFUSED = "400 invalid_request"
TOO_LONG = "app 414"  # the middleware's, with the security headers and no challenge
# Targets that decode to a path under /public without a dot segment: Starlette routes
# them to the public endpoint, which is right (no reading of them is /api/...).
STAYS_PUBLIC = "endpoint public"
PATHS: list[tuple[bytes, str]] = [
    (b"/public/%2e%2e/api/data", REFUSED),
    (b"/public/../api/data", REFUSED),
    (b"/public/..%2fapi/data", REFUSED),
    (b"/public%2f..%2fapi/data", REFUSED),
    (b"/public/%2e%2e%2fapi/data", REFUSED),
    (b"/public/%2e%2e/admin/users", REFUSED),
    (b"/public/..", REFUSED),
    (b"/health/../api/data", REFUSED),
    (b"/health%2f..%2fapi%2fdata", REFUSED),
    # Decoded once by the server, to "/public/%2e%2e/api/data": public, and no router
    # decodes it again.
    (b"/public/%252e%252e/api/data", STAYS_PUBLIC),
    # A backslash is no separator in a URL path.
    (b"/public/..%5capi/data", STAYS_PUBLIC),
    (b"/public\\..\\api\\data", REFUSED),  # "/public\..\api\data": no rule names it
    (b"/api/data.", REFUSED),
    (b"/api/data/", REFUSED),
    (b"/api/data//", REFUSED),
    (b"//api/data", REFUSED),
    (b"/./api/data", REFUSED),
    (b"/API/data", REFUSED),
    (b"/api/data;x", REFUSED),
    # A control character: Starlette routes "/api/data\n" to /api/data (its patterns
    # end in `$`), so every control character is refused wherever a key matters.
    *((b"/api/data%" + b"%02X" % byte, CONTROL_REFUSED) for byte in (0, 9, 10, 13, 0x1F, 0x7F)),
    (b"/api/data%0A/", CONTROL_REFUSED),
    (b"/api%0A/data", CONTROL_REFUSED),
    (b"/public/x%0A", STAYS_PUBLIC),  # every reading is public: the app decides
    (b"/api/" + b"a" * 9000, TOO_LONG),  # over max_path_length (8 KiB)
    (b"/public/" + b"a" * 9000, STAYS_PUBLIC),
    (b"/api/data%20", REFUSED),
    (b"/api/data?x=/public", REFUSED),
    (b"/api/data#/public", REFUSED),  # httptools drops the fragment, h11 keeps it
    # Unicode look-alikes are not dots or slashes: no server or router folds them.
    (b"/public/%EF%BC%8E%EF%BC%8E/api/data", STAYS_PUBLIC),  # fullwidth full stops
    (b"/public/%E2%80%A5/api/data", STAYS_PUBLIC),  # two-dot leader
    (b"/public/..%EF%BC%8Fapi/data", STAYS_PUBLIC),  # fullwidth solidus
    (b"/public%EF%BC%8F..%EF%BC%8Fapi/data", REFUSED),  # not under /public at all
    (b"/public%E2%88%95..%E2%88%95api/data", REFUSED),  # division slash
    # Absolute form: uvicorn-h11 and hypercorn pass "http://127.0.0.1/..." as the
    # path, httptools passes only the path; the middleware judges the URL's path.
    (b"http://127.0.0.1/api/data", REFUSED),
    (b"http://127.0.0.1/public/../api/data", REFUSED),
    (b"http://127.0.0.1/public/%2e%2e/api/data", REFUSED),
    (b"http://127.0.0.1//api/data", REFUSED),
    (b"*", REFUSED),
]
PATH_CASES = [
    Case(_short(target.decode()), get(target), everywhere(want)) for target, want in PATHS
]


@pytest.mark.parametrize("case", params(PATH_CASES))
def test_path_tricks_without_a_key_never_reach_a_protected_endpoint(
    server: RunningServer, case: Case
) -> None:
    got = run(server, case)
    if got == STAYS_PUBLIC:
        assert RAN == ["public"]


# llhttp (httptools) refuses CONNECT to an authority and unknown methods itself;
# h11 passes them to the app.
METHODS = [
    Case("OPTIONS *", raw(b"OPTIONS * HTTP/1.1"), everywhere(REFUSED)),
    Case(
        "CONNECT authority",
        raw(b"CONNECT 127.0.0.1:80 HTTP/1.1"),
        per_server(h11=REFUSED, httptools="server 400", hypercorn=REFUSED),
    ),
    Case("CONNECT path", raw(b"CONNECT /api/data HTTP/1.1"), everywhere(REFUSED)),
    Case(
        "unknown method",
        raw(b"FOO /api/data HTTP/1.1"),
        per_server(h11=REFUSED, httptools="server 400", hypercorn=REFUSED),
    ),
    Case("TRACE", raw(b"TRACE /api/data HTTP/1.1"), everywhere(REFUSED)),
    Case("DELETE", raw(b"DELETE /api/data HTTP/1.1"), everywhere(REFUSED)),
    Case(
        "lowercase method",
        raw(b"get /api/data HTTP/1.1"),
        per_server(h11=REFUSED, httptools="server 400", hypercorn=REFUSED),
    ),
    Case("HTTP/1.0 without Host", b"GET /api/data HTTP/1.0\r\n\r\n", everywhere(REFUSED)),
]


@pytest.mark.parametrize("case", params(METHODS))
def test_odd_methods_and_targets_without_a_key_are_refused(
    server: RunningServer, case: Case
) -> None:
    run(server, case)


# --- the user key on the admin path and its spellings -------------------------------------

ADMIN_SPELLINGS = [
    Case("/admin/users", get(b"/admin/users", bearer(USER)), everywhere("403 insufficient_scope")),
    # No rule names /ADMIN: the user key passes the middleware, and the router,
    # which is case-sensitive too, has no such route.
    Case("/ADMIN/users", get(b"/ADMIN/users", bearer(USER)), everywhere("app 404")),
    *(
        Case(target.decode(), get(target, bearer(USER)), everywhere("403 insufficient_scope"))
        for target in (
            b"/public/../admin/users",
            b"/public/%2e%2e/admin/users",
            b"/admin/./users",
            b"//admin/users",
            b"/admin//users",
            b"/admin/users/",
            b"/admin%2fusers",
            b"http://127.0.0.1/admin/users",
        )
    ),
]


@pytest.mark.parametrize("case", params(ADMIN_SPELLINGS))
def test_the_user_key_never_reaches_the_admin_endpoint(server: RunningServer, case: Case) -> None:
    run(server, case)


# --- HEAD, OPTIONS and CORS preflight -----------------------------------------------------


def test_head_without_a_key_is_401_without_a_body(server: RunningServer) -> None:
    request = raw(b"HEAD /api/data HTTP/1.1", b"Connection: close")
    response = exchange(server.port, request, read_to_close=True)
    assert outcome(response, head=True) == "401 missing"
    assert response is not None
    assert response.after == b"", "a body (or more) after the head of a HEAD response"
    assert response.header("www-authenticate") == 'Bearer realm="api"'


def test_options_without_a_key_is_401(server: RunningServer) -> None:
    response = exchange(server.port, raw(b"OPTIONS /api/data HTTP/1.1"))
    assert outcome(response) == "401 missing"


def test_a_cors_preflight_without_a_key_is_401(server: RunningServer) -> None:
    request = raw(
        b"OPTIONS /api/data HTTP/1.1",
        b"Origin: https://example.com",
        b"Access-Control-Request-Method: GET",
        b"Access-Control-Request-Headers: authorization",
    )
    assert outcome(exchange(server.port, request)) == "401 missing"


# --- websockets ---------------------------------------------------------------------------


def assert_websocket_denied(client: WebSocketClient, status: int, challenge: str) -> None:
    response = client.response
    assert response is not None, "the server closed without answering the handshake"
    assert response.status == status, (response.status, response.body)
    assert response.header("www-authenticate") == challenge
    assert response.header("content-type") == "application/json"
    assert set(json.loads(response.body)) == {"detail"}
    assert_security_headers(response)
    assert RAN == []


def test_websocket_without_a_key_gets_the_401_denial(server: RunningServer) -> None:
    with WebSocketClient(server.port, "/ws") as client:
        assert_websocket_denied(client, 401, 'Bearer realm="api"')
        assert client.response is not None
        assert json.loads(client.response.body) == {
            "detail": "Missing API key: send it as 'Authorization: Bearer <key>'"
        }


def test_websocket_with_an_unknown_key_gets_401(server: RunningServer) -> None:
    with WebSocketClient(server.port, "/ws", [("Authorization", f"Bearer {UNKNOWN_KEY}")]) as c:
        assert_websocket_denied(
            c,
            401,
            'Bearer realm="api", error="invalid_token", '
            'error_description="The API key is not valid"',
        )


def test_websocket_with_two_authorization_headers_gets_400(server: RunningServer) -> None:
    headers = [("Authorization", f"Bearer {USER_KEY}"), ("Authorization", f"Bearer {USER_KEY}")]
    with WebSocketClient(server.port, "/ws", headers) as client:
        assert client.response is not None
        assert client.response.status == 400
        assert RAN == []


def test_websocket_with_a_valid_key_is_accepted_and_echoes(server: RunningServer) -> None:
    with WebSocketClient(server.port, "/ws", [("Authorization", f"Bearer {USER_KEY}")]) as c:
        assert c.response is not None
        assert c.response.status == 101
        c.send_text("hello")
        assert c.receive() == (1, b"endpoint=ws key=user hello")
        assert c.receive()[0] == 8  # the endpoint closes
    assert RAN == ["ws"]


def test_a_public_websocket_needs_no_key(server: RunningServer) -> None:
    with WebSocketClient(server.port, "/public-ws") as client:
        assert client.response is not None
        assert client.response.status == 101
        client.send_text("hi")
        assert client.receive() == (1, b"endpoint=public-ws key=None hi")
    assert RAN == ["public-ws"]


def test_websocket_without_the_denial_extension_gets_the_servers_403(
    server: RunningServer,
) -> None:
    # The middleware closes with 1008 before accepting; both servers turn that into
    # their own 403 response (without our headers: the server wrote it).
    with WebSocketClient(server.port, "/ws", [(NO_DENIAL_EXTENSION, "1")]) as client:
        assert client.response is not None
        assert client.response.status == 403
        assert client.response.header("www-authenticate") is None
    assert RAN == []


@pytest.mark.parametrize(
    "target", ["/public/../ws", "/public/%2e%2e/ws", "//ws", "/public-ws/../ws"]
)
def test_websocket_path_tricks_without_a_key_are_refused(
    server: RunningServer, target: str
) -> None:
    with WebSocketClient(server.port, target) as client:
        assert_websocket_denied(client, 401, 'Bearer realm="api"')
