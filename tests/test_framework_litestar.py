"""Litestar behind APIKeyMiddleware: examples/litestar_app.py, and Litestar's readings of a path.

The example runs through Litestar's own test client, through Starlette's (which
offers the websocket denial-response extension) and under uvicorn. Litestar
routes some spellings that Starlette does not (it strips and merges slashes,
takes ``root_path`` off wherever it first occurs in the path, and matches an
ASGI mount's path as a raw prefix): each is judged at least as strictly here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
from litestar import Litestar, Router, get
from litestar.exceptions import WebSocketDisconnect
from litestar.handlers import asgi
from litestar.params import FromPath
from litestar.testing import TestClient
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent
from litestar.types import Receive as LitestarReceive
from litestar.types import Scope as LitestarScope
from litestar.types import Send as LitestarSend
from starlette.testclient import TestClient as StarletteTestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.types import ASGIApp
from structlog.testing import capture_logs

from asgi_apikey import APIKey, APIKeyMiddleware
from examples import litestar_app
from tests.asgi import CANARY, OTHER_KEY, bearer, call, http_scope
from tests.servers import WebSocketClient, exchange, serve

KEYS = [APIKey(CANARY, name="admin", scopes={"admin"}), APIKey(OTHER_KEY, name="user")]
ADMIN = {"Authorization": f"Bearer {CANARY}"}
USER = {"Authorization": f"Bearer {OTHER_KEY}"}
MISSING = {"detail": "Missing API key: send it as 'Authorization: Bearer <key>'"}


def litestar_client(root_path: str = "") -> TestClient[Any]:
    """Litestar's test client for the example (typed for Litestar's own ASGI types)."""
    return TestClient(cast(Any, litestar_app.create_app(KEYS)), root_path=root_path)


@pytest.fixture
def client() -> Iterator[TestClient[Any]]:
    with litestar_client() as client:
        yield client


def test_a_public_route_runs_without_a_key(client: TestClient[Any]) -> None:
    response = client.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_protected_route_reads_request_user_and_request_auth(client: TestClient[Any]) -> None:
    refused = client.get("/v1/whoami")
    assert refused.status_code == 401
    assert refused.json() == MISSING
    assert refused.headers["www-authenticate"] == 'Bearer realm="api"'
    response = client.get("/v1/whoami", headers=USER)
    assert response.json() == {"user": "user", "scopes": ["authenticated"]}


def test_an_optional_route_runs_anonymous_and_refuses_a_bad_key(client: TestClient[Any]) -> None:
    assert client.get("/v1/operations").json() == {"operations": ["chat"], "caller": None}
    assert client.get("/v1/operations", headers=ADMIN).json()["caller"] == "admin"
    bad = client.get("/v1/operations", headers={"Authorization": f"Bearer {CANARY}x"})
    assert bad.status_code == 401
    assert "invalid_token" in bad.headers["www-authenticate"]
    assert CANARY not in bad.text


def test_a_scoped_route_under_a_router_path_needs_the_scope(client: TestClient[Any]) -> None:
    refused = client.get("/v1/admin/stats", headers=USER)
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert client.get("/v1/admin/stats", headers=ADMIN).json() == {"admin": "admin"}


@pytest.mark.parametrize(
    "target", ["/v1/admin/stats/", "//v1//admin/stats", "/v1/admin//stats//", "///v1/admin/stats"]
)
def test_spellings_litestar_routes_to_the_scoped_route_need_the_scope(
    client: TestClient[Any], target: str
) -> None:
    # Litestar strips and merges slashes: each of these runs admin_stats.
    url = "http://testserver.local" + target  # "//v1" alone would name a host
    assert client.get(url, headers=ADMIN).json() == {"admin": "admin"}
    assert client.get(url, headers=USER).status_code == 403
    assert client.get(url).status_code == 401


def test_a_websocket_with_a_key_sees_socket_user_and_auth(client: TestClient[Any]) -> None:
    with client.websocket_connect("/v1/ws", headers=USER) as socket:
        assert socket.receive_json() == {"key_id": "user", "user": "user"}


def test_a_websocket_without_a_key_is_closed_before_litestar_sees_it(
    client: TestClient[Any],
) -> None:
    # Litestar's test client offers no denial-response extension: closed with 1008.
    with (
        capture_logs() as logs,
        pytest.raises(WebSocketDisconnect) as caught,
        client.websocket_connect("/v1/ws"),
    ):
        pass  # pragma: no cover - never accepted
    assert caught.value.code == 1008
    assert [event["reason"] for event in logs if "reason" in event] == ["missing"]


def test_a_websocket_without_a_key_gets_the_401_denial_response() -> None:
    client = StarletteTestClient(cast(ASGIApp, litestar_app.create_app(KEYS)))
    with (
        pytest.raises(WebSocketDenialResponse) as caught,
        client.websocket_connect("/v1/ws", headers={"Authorization": "Bearer nope"}),
    ):
        pass  # pragma: no cover - never accepted
    assert caught.value.status_code == 401
    assert "invalid_token" in caught.value.headers["www-authenticate"]


@pytest.mark.parametrize("target", ["/api/v1/whoami", "/v1/whoami"])
def test_under_a_root_path_both_spellings_litestar_routes_are_protected(target: str) -> None:
    # Litestar's test client, like hypercorn, does not put root_path in front of
    # path; Litestar routes /api/v1/whoami and /v1/whoami alike.
    with litestar_client(root_path="/api") as client:
        assert client.get(target).status_code == 401
        assert client.get(target, headers=USER).json()["user"] == "user"


@pytest.mark.parametrize(
    "target",
    [
        "/health/api/v1/admin/stats",  # Litestar takes off everything up to /api
        "/health/x/api/v1/admin/stats",
        "/v1/operations/api/v1/admin/stats",
        "/health/api//v1/admin/stats/",
    ],
)
def test_the_root_path_inside_a_path_is_judged_as_litestar_reads_it(target: str) -> None:
    with litestar_client(root_path="/api") as client:
        ran = client.get(target, headers=ADMIN)
        assert ran.json() == {"admin": "admin"}  # Litestar runs admin_stats for it
        assert client.get(target).status_code == 401
        assert client.get(target, headers=USER).status_code == 403


# -- Litestar's other readings, on an app made for them ------------------------------------


def _reports_app() -> Litestar:
    @get("/{report:str}")
    async def report(report: FromPath[str]) -> dict[str, str]:
        return {"report": report}

    return Litestar([Router("/v1/admin", route_handlers=[report])])


@pytest.mark.parametrize("path", ["//v1/admin/..", "/v1//admin/..", "//v1//admin/../"])
def test_merged_slashes_with_a_dot_segment_are_judged_as_litestar_reads_them(path: str) -> None:
    # Litestar merges the slashes and keeps "..": /v1/admin/{report} runs with
    # report "..", while the resolved path, /v1, is under no rule. (The scope is
    # built by hand: HTTP clients resolve dot segments before sending.)
    app = APIKeyMiddleware(
        cast(ASGIApp, _reports_app()),
        keys=KEYS,
        default="public",
        protected={"/v1/admin": {"admin"}},
    )
    with capture_logs():
        assert call(app, http_scope(path, headers=[bearer(CANARY)])).json() == {"report": ".."}
        assert call(app, http_scope(path)).status == 401
        assert call(app, http_scope(path, headers=[bearer(OTHER_KEY)])).status == 403


def _mounted_metrics(app_class: type[Litestar] = Litestar) -> Litestar:
    @asgi("/metrics", is_mount=True, copy_scope=True)
    async def metrics(scope: LitestarScope, receive: LitestarReceive, send: LitestarSend) -> None:
        # Like many metrics apps, it serves whatever path it is handed.
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 200,
            "headers": [],
        }
        body: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": b"requests_total 1",
            "more_body": False,
        }
        await send(start)
        await send(body)

    return app_class([metrics])


def test_a_litestar_mount_matched_as_a_plain_prefix_is_judged_under_the_mount() -> None:
    # Litestar sends /metricsx to the app mounted at /metrics: the middleware reads the
    # Litestar app's mounts and judges /metricsx as /metrics/x too.
    app = APIKeyMiddleware(
        cast(ASGIApp, _mounted_metrics()), keys=KEYS, protected={"/metrics": {"admin"}}
    )
    with StarletteTestClient(app) as client:
        assert client.get("/metrics", headers=USER).status_code == 403
        assert client.get("/metricsx", headers=ADMIN).text == "requests_total 1"  # mounted
        assert client.get("/metricsx", headers=USER).status_code == 403


class _SubclassedLitestar(Litestar):
    """An app class of the user's own: its mounts are found all the same."""


def _metrics_in(kind: str) -> tuple[ASGIApp, str]:
    """The mounted metrics app as deployed in ``kind``, and the prefix of its paths."""
    if kind == "subclass":
        return cast(ASGIApp, _mounted_metrics(_SubclassedLitestar)), ""
    if kind == "starlette-mount":  # Litestar mounted inside a Starlette app
        from starlette.applications import Starlette
        from starlette.routing import Mount

        return Starlette(routes=[Mount("/ls", app=cast(ASGIApp, _mounted_metrics()))]), "/ls"
    return cast(ASGIApp, _mounted_metrics()), ""


_SPELLINGS = [
    ("{p}/metricsx", ""),
    ("/{p}/metricsx", ""),  # Litestar merges the slashes first
    ("//{p}/metrics-all", ""),
    ("{p}/metrics/../metricsx", ""),
    ("/api{p}/metricsx", "/api"),  # root_path at a segment boundary
    ("/api{p}metricsx", "/api"),  # root_path as a plain prefix: /metricsx, not /api
    ("/health/api{p}/metricsx", "/api"),  # root_path up to its first occurrence
]


@pytest.mark.parametrize(
    ("kind", "spelling", "root_path"),
    [
        (kind, spelling, root_path)
        for kind in ("plain", "subclass", "starlette-mount")
        for spelling, root_path in _SPELLINGS
        # Starlette's Mount("/ls") takes no /api/lsmetricsx: nothing runs to guard.
        if (kind, spelling) != ("starlette-mount", "/api{p}metricsx")
    ],
)
def test_no_reading_of_a_path_reaches_a_litestar_mount_past_its_rule(
    kind: str, spelling: str, root_path: str
) -> None:
    app, prefix = _metrics_in(kind)
    guarded = APIKeyMiddleware(
        app, keys=KEYS, default="public", protected={f"{prefix}/metrics": {"admin"}}
    )
    path = spelling.format(p=prefix)
    for headers in ([], [bearer(OTHER_KEY)]):  # no key, and a key without the scope
        result = call(guarded, http_scope(path, headers=headers, root_path=root_path))
        assert result.status in (401, 403), (path, root_path, result.messages)
    admitted = call(guarded, http_scope(path, headers=[bearer(CANARY)], root_path=root_path))
    assert admitted.status not in (401, 403), (path, root_path, admitted.messages)


def test_installed_as_litestar_route_middleware_nothing_reaches_the_app() -> None:
    # Litestar(middleware=[...]) runs after routing: a mounted app's path is rewritten
    # (/admin/stats reaches the mount as /stats), so the rules would judge the wrong
    # path. The middleware notices at its first scope and lets nothing through.
    from litestar.middleware import DefineMiddleware

    ran: list[str] = []

    @asgi("/admin", is_mount=True, copy_scope=True)
    async def admin(scope: LitestarScope, receive: LitestarReceive, send: LitestarSend) -> None:
        ran.append(scope["path"])

    @get("/stats")
    async def stats() -> str:
        ran.append("stats")
        return "public stats"

    app = Litestar(
        [admin, stats],
        middleware=[
            DefineMiddleware(
                APIKeyMiddleware,  # type: ignore[arg-type]  # the misuse this test shows
                keys=KEYS,
                public=["/stats"],
                protected={"/admin": {"admin"}},
            )
        ],
    )
    with capture_logs(), TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/admin/stats", "/stats", "/admin/stats"):
            for headers in ({}, USER, ADMIN):
                response = client.get(path, headers=headers)
                assert response.status_code in (401, 403, 500), (path, response.text)
    assert ran == []


# -- under uvicorn -----------------------------------------------------------------------


def test_the_example_under_uvicorn() -> None:
    with serve(cast(ASGIApp, litestar_app.create_app(KEYS)), "uvicorn-h11") as server:
        head = b"GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        refused = exchange(server.port, head + b"\r\n")
        assert refused is not None
        assert (refused.status, json.loads(refused.body)) == (401, MISSING)
        assert refused.header("www-authenticate") == 'Bearer realm="api"'
        served = exchange(server.port, head + f"Authorization: Bearer {OTHER_KEY}\r\n\r\n".encode())
        assert served is not None
        assert json.loads(served.body) == {"user": "user", "scopes": ["authenticated"]}
        assert served.header("x-frame-options") == "DENY"

        with WebSocketClient(server.port, "/v1/ws") as denied:
            assert denied.response is not None
            assert (denied.response.status, json.loads(denied.response.body)) == (401, MISSING)
        with WebSocketClient(server.port, "/v1/ws", [("Authorization", f"Bearer {CANARY}")]) as ws:
            assert ws.response is not None
            assert ws.response.status == 101
            opcode, payload = ws.receive()
            assert (opcode, json.loads(payload)) == (1, {"key_id": "admin", "user": "admin"})
        assert server.errors() == []
