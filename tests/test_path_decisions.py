"""Issue 15's path findings, each pinned through the middleware and a real router.

- a final newline (any control character) no longer skips a rule that names a
  route exactly: Starlette's patterns end in ``$``, which matches before a final
  ``\\n``, so ``/admin\\n`` runs the ``/admin`` handler;
- deciding a path is linear in its length and bounded by ``max_path_length``;
- replacing ``middleware.rules`` replaces the decision cache with it;
- query-token responses are never cached publicly; an app's websocket denial
  response gets the security headers.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from asgi_apikey import APIKey, APIKeyMiddleware, ConfigurationError, paths
from asgi_apikey.paths import Access, RuleTable
from tests.asgi import CANARY, Recorder, bearer, call, http_scope

USER_KEY = "sk-live-user-0123456789abcdef"
ADMIN_KEY = "sk-live-admin-0123456789abcdef"
KEYS = [APIKey(USER_KEY, name="user"), APIKey(ADMIN_KEY, name="admin", scopes={"admin"})]
SECURITY = {b"x-content-type-options", b"x-frame-options", b"referrer-policy"}


def _starlette(ran: list[str]) -> Starlette:
    def endpoint(name: str) -> Any:
        async def handle(request: Request) -> Response:
            ran.append(name)
            return PlainTextResponse(name)

        return handle

    async def ws_admin(websocket: WebSocket) -> None:
        ran.append("ws-admin")
        await websocket.accept()
        await websocket.close()

    return Starlette(
        routes=[
            Route("/admin", endpoint("admin")),
            Route("/v1", endpoint("v1")),
            Route("/v1/admin", endpoint("v1-admin")),
            Route("/health", endpoint("health")),
            WebSocketRoute("/ws/admin", ws_admin),
        ]
    )


# (rules, path, credentials, the handler that must not run)
NEWLINE_CASES: list[tuple[dict[str, Any], str, list[tuple[bytes, bytes]], str, str]] = [
    ({"protected": {"/admin": {"admin"}}}, "/admin\n", [bearer(USER_KEY)], "admin", "user-key"),
    ({"default": "public", "protected": ["/admin"]}, "/admin\n", [], "admin", "default-public"),
    (
        {"public": ["/v1"], "protected": ["/v1/admin"]},
        "/v1/admin\n",
        [],
        "v1-admin",
        "public-parent",
    ),
    ({"default": "public", "protected": ["/admin"]}, "/admin\r", [], "admin", "carriage-return"),
    ({"default": "public", "protected": ["/admin"]}, "/ad\x00min", [], "admin", "nul-inside"),
]


@pytest.mark.parametrize(
    ("rules", "path", "headers", "handler"),
    [case[:4] for case in NEWLINE_CASES],
    ids=[case[4] for case in NEWLINE_CASES],
)
def test_a_control_character_does_not_skip_an_exact_rule(
    rules: dict[str, Any], path: str, headers: list[tuple[bytes, bytes]], handler: str
) -> None:
    ran: list[str] = []
    bare = _starlette(ran)
    if path.endswith("\n"):  # the router's own reading, which made this a bypass
        assert call(bare, http_scope(path)).status == 200
        assert ran == [handler]
        ran.clear()
    app = APIKeyMiddleware(bare, keys=KEYS, **rules)
    result = call(app, http_scope(path, headers=headers))
    assert ran == []
    assert result.status == 400
    assert result.json() == {"detail": "Malformed credentials: The path has a control character"}
    assert 'error="invalid_request"' in (result.header("www-authenticate") or "")


def test_a_websocket_path_with_a_final_newline_is_refused() -> None:
    ran: list[str] = []
    app = APIKeyMiddleware(_starlette(ran), keys=KEYS, default="public", protected=["/ws/admin"])
    scope = http_scope("/ws/admin\n", kind="websocket")
    result = call(app, scope)
    assert ran == []
    assert result.messages[0]["type"] == "websocket.close"
    assert result.messages[0]["code"] == 1008


def test_a_public_path_with_a_control_character_still_reaches_the_app() -> None:
    inner = Recorder()
    app = APIKeyMiddleware(inner, keys=KEYS, public=["/health"])
    # Every reading ("/health/x\n" and "/health/x") is public: the app decides.
    assert call(app, http_scope("/health/x\n"), inner).status == 200
    # "/health\n" as spelled is not under /health: no longer public in every reading.
    assert call(app, http_scope("/health\n"), inner).status == 400


# --- linear, bounded decisions ------------------------------------------------------------


class _CountingDict(dict[str, Any]):
    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:
        type(self).lookups += 1
        return super().get(key, default)


HOSTILE = {
    "segments": "/a" * 32_000,
    "slashes": "/" * 64_000,
    "dot segments": "/." * 32_000,
    "parent segments": "/a/.." * 12_000,
    "absolute form": "http://x" + "/a" * 32_000,
    "network paths": "//a" * 21_000,
    "one long segment": "/" + "a" * 64_000,
    "under a public rule": "/health" + "/a" * 32_000,
}


@pytest.mark.parametrize("path", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("max_path_length", [8192, 65536])
def test_deciding_costs_lookups_bounded_by_the_deepest_rule(
    path: str, max_path_length: int
) -> None:
    table = RuleTable(
        public=["/health"],
        protected={"/v1/admin/keys": {"admin"}},
        max_path_length=max_path_length,
    )
    counting = _CountingDict(table._rules)
    table._rules = counting
    _CountingDict.lookups = 0
    table.decide_under("/root" + path, "/root")
    table.decide(path)
    # Each reading of the path looks up at most depth + 1 prefixes (3 + 1 here), and
    # a path has a bounded number of readings (spelled, resolved, URL, mount point).
    assert _CountingDict.lookups <= 4 * 32


@pytest.mark.parametrize("path", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_64_kib_path_is_decided_quickly(path: str) -> None:
    """The whole decision runs (the limit is raised past 64 KiB) in linear time.

    A generous bound: without the depth cut these take 0.3 to 5 s; with it about 8 ms.
    """
    table = RuleTable(
        public=["/health", "/v1"], protected={"/v1/admin": {"admin"}}, max_path_length=65536
    )
    started = time.perf_counter()
    rule = table.decide(path)
    table.decide_under("/root" + path, "/root")
    assert time.perf_counter() - started < 0.25
    assert rule is not paths.TOO_LONG  # the full decision ran, not the length check


def test_a_long_path_is_refused_with_414_unless_a_public_rule_covers_it() -> None:
    inner = Recorder()
    app = APIKeyMiddleware(inner, keys=[CANARY], public=["/static"], max_path_length=300)
    long_tail = "/x" * 200
    refused = call(app, http_scope("/api" + long_tail, headers=[bearer(CANARY)]), inner)
    assert refused.status == 414
    assert refused.seen is None
    assert refused.header("www-authenticate") is None
    assert {name for name, _ in refused.headers} >= SECURITY
    assert call(app, http_scope("/static" + long_tail), inner).status == 200
    # Over the limit, only the plain spelling of a public path is served.
    assert call(app, http_scope("/static/.." + long_tail), inner).status == 414
    assert call(app, http_scope("/api/x"), inner).status == 401


@pytest.mark.parametrize("bad", [0, 255, 65537, True, "8192", 8192.0])
def test_max_path_length_is_checked_at_construction(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_path_length must be an int from 256"):
        APIKeyMiddleware(Recorder(), keys=[CANARY], max_path_length=bad)  # type: ignore[arg-type]


SEGMENTS = ["health", "a", "admin", ".", "..", "", "\n", "\x00", "x\ny", "http:", "%0a"]


@given(
    st.lists(st.sampled_from(SEGMENTS), max_size=6).map("/".join),
    st.sampled_from(["/", ""]),
)
def test_every_decision_is_at_least_as_strict_as_the_path_without_control_characters(
    joined: str, lead: str
) -> None:
    # Segments that spell rules, URLs, dot segments and control characters, with and
    # without a leading slash.
    path = lead + joined
    table = RuleTable(public=["/health"], protected={"/a": {"admin"}}, default="public")
    rule = table.decide(path)
    stripped = table.decide(path.replace("\n", "").replace("\x00", ""))
    assert rule.access >= stripped.access
    if rule.access is not Access.REFUSED:
        assert rule.scopes >= stripped.scopes


# --- rules mean what they say -------------------------------------------------------------


def test_replacing_the_rules_replaces_the_decision_cache() -> None:
    inner = Recorder()
    app = APIKeyMiddleware(inner, keys=[CANARY], public=["/open"])
    assert call(app, http_scope("/open"), inner).status == 200  # now in the cache
    app.rules = RuleTable(protected=["/open"])
    assert call(app, http_scope("/open"), inner).status == 401
    with pytest.raises(ConfigurationError, match="rules must be a RuleTable"):
        app.rules = {"public": ["/open"]}  # type: ignore[assignment]


@pytest.mark.parametrize("setting", ["public", "optional"])
def test_a_root_rule_is_refused_by_the_middleware(setting: str) -> None:
    with pytest.raises(ConfigurationError, match=f"write default='{setting}'"):
        APIKeyMiddleware(Recorder(), keys=[CANARY], **{setting: ["/"]})  # type: ignore[arg-type]


def test_describe_reports_the_effective_default() -> None:
    app = APIKeyMiddleware(Recorder(), keys=[CANARY], default="public", protected=["/admin"])
    described = app.describe()
    assert (described["default"], described["default_scopes"]) == ("public", [])
    assert described["rules"][-1] == {"path": "/", "access": "public", "scopes": []}
    scoped = APIKeyMiddleware(Recorder(), keys=[CANARY], protected={"/": {"root"}})
    assert (scoped.describe()["default"], scoped.describe()["default_scopes"]) == (
        "protected",
        ["root"],
    )


# --- query tokens and caches --------------------------------------------------------------


def _query_app(app_headers: list[tuple[bytes, bytes]]) -> tuple[APIKeyMiddleware, Recorder]:
    inner = Recorder(response_headers=app_headers)
    return (
        APIKeyMiddleware(inner, keys=[CANARY], public=["/public"], allow_query_token=True),
        inner,
    )


@pytest.mark.parametrize(
    "query",
    [
        b"access_token=not%20a%20token",
        b"access_token=a&access_token=b",
        b"%61ccess_token=sk-x",
        b"access_token=" + CANARY.encode(),
        b"x=1&access+token=1&access_token=",
    ],
    ids=["malformed", "twice", "encoded-name", "valid", "empty"],
)
def test_a_url_that_names_access_token_is_never_cached_publicly(query: bytes) -> None:
    app, inner = _query_app([(b"content-type", b"text/plain")])
    result = call(app, http_scope("/public/x", query_string=query), inner)
    assert result.status == 200
    assert result.header("cache-control") == "private"


def test_no_access_token_leaves_caching_to_the_app() -> None:
    app, inner = _query_app([(b"cache-control", b"public, max-age=60")])
    result = call(app, http_scope("/public/x", query_string=b"page=2"), inner)
    assert result.header("cache-control") == "public, max-age=60"


@pytest.mark.parametrize(
    ("app_value", "sent"),
    [
        (b"public, max-age=60", "private, max-age=60"),
        (b"max-age=60, s-maxage=600", "private, max-age=60"),
        (b"PUBLIC", "private"),
        (b"no-store", "no-store"),
        (b"private, max-age=5", "private, max-age=5"),
        # A qualified private keeps only the named fields out of shared caches.
        (b'private="set-cookie", max-age=600', "private, max-age=600"),
        (b'max-age=600, private="a, b"', "private, max-age=600"),
    ],
)
def test_an_apps_cache_control_is_made_private_on_a_query_token_response(
    app_value: bytes, sent: str
) -> None:
    app, inner = _query_app([(b"cache-control", app_value)])
    query = b"access_token=" + CANARY.encode()
    result = call(app, http_scope("/v1/x", query_string=query), inner)
    assert result.status == 200
    assert result.header("cache-control") == sent


@pytest.mark.parametrize(
    "field", [b"cdn-cache-control", b"Surrogate-Control", b"cloudflare-cdn-cache-control"]
)
def test_a_cdns_own_cache_field_becomes_no_store_on_a_query_token_response(field: bytes) -> None:
    """RFC 9213: a CDN obeys its own field over Cache-Control (second review)."""
    app, inner = _query_app([(field, b"max-age=600")])
    query = b"access_token=" + CANARY.encode()
    result = call(app, http_scope("/public/x", query_string=query), inner)
    assert result.header(field.decode().lower()) == "no-store"
    assert result.header("cache-control") == "private"
    plain = call(app, http_scope("/public/x"), inner)
    assert plain.header(field.decode().lower()) == "max-age=600"  # no key in the URL


# --- websocket denial responses of the app ------------------------------------------------


async def _refusing_websocket_app(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"no"})


def test_an_apps_websocket_denial_response_gets_the_security_headers() -> None:
    app = APIKeyMiddleware(_refusing_websocket_app, keys=[CANARY], public=["/ws"])
    scope = http_scope("/ws", kind="websocket", extensions={"websocket.http.response": {}})
    result = call(app, scope)
    assert result.status == 403
    assert {name for name, _ in result.headers} >= SECURITY


def test_an_overlong_path_under_a_mount_point_is_not_parsed_as_a_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second review: urlsplit ran (and cached) before the length check."""
    table = RuleTable(public=["/health"], max_path_length=256)
    parsed: list[str] = []

    def readings(path: str) -> list[str]:
        parsed.append(path)
        return []

    monkeypatch.setattr(paths, "_url_readings", readings)
    assert table.decide_under("/root//x" + "/a" * 200, "/root").access is Access.REFUSED
    assert table.decide_under("/root/health" + "/a" * 200, "/root").access is Access.PUBLIC
    assert parsed == []
    table.decide_under("/root//x", "/root")
    assert parsed  # a path within the limit is read as a URL too
