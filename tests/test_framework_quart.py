"""Quart behind APIKeyMiddleware: examples/quart_app.py, and Quart's readings of a path.

The example wraps ``app.asgi_app``, so Quart's own test client goes through the
middleware; it runs there, through Starlette's test client (which offers the
websocket denial-response extension) and under hypercorn, Quart's own server.
Quart routes some spellings that Starlette does not (it takes ``root_path`` off
as a plain prefix, and routes the path of a target that is not in origin form):
each is judged at least as strictly here.
"""

from __future__ import annotations

import asyncio
import json
from typing import cast

import pytest
from quart import Quart
from quart.testing import WebsocketResponseError
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import ASGIApp
from structlog.testing import capture_logs

from asgi_apikey import APIKey
from examples import quart_app
from tests.asgi import CANARY, OTHER_KEY, bearer, call, http_scope
from tests.servers import WebSocketClient, exchange, serve

KEYS = [APIKey(CANARY, name="admin", scopes={"admin"}), APIKey(OTHER_KEY, name="user")]
ADMIN = {"Authorization": f"Bearer {CANARY}"}
USER = {"Authorization": f"Bearer {OTHER_KEY}"}
MISSING = {"detail": "Missing API key: send it as 'Authorization: Bearer <key>'"}


@pytest.fixture
def app() -> Quart:
    return quart_app.create_app(KEYS)


@pytest.fixture
def asgi(app: Quart) -> ASGIApp:
    """The same app for ASGI callers (Quart types its interface with TypedDicts)."""
    return cast(ASGIApp, app)


@pytest.mark.anyio
async def test_a_public_route_runs_without_a_key(app: Quart) -> None:
    response = await app.test_client().get("/health")
    assert (response.status_code, await response.get_json()) == (200, {"status": "ok"})
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.anyio
async def test_a_protected_route_reads_the_scope(app: Quart) -> None:
    client = app.test_client()
    refused = await client.get("/v1/whoami")
    assert refused.status_code == 401
    assert await refused.get_json() == MISSING
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    response = await client.get("/v1/whoami", headers=USER)
    assert await response.get_json() == {"user": "user", "scopes": ["authenticated"]}


@pytest.mark.anyio
async def test_an_optional_route_runs_anonymous_and_refuses_a_bad_key(app: Quart) -> None:
    client = app.test_client()
    anonymous = await client.get("/v1/operations")
    assert await anonymous.get_json() == {"operations": ["chat"], "caller": None}
    admin = await client.get("/v1/operations", headers=ADMIN)
    assert (await admin.get_json())["caller"] == "admin"
    bad = await client.get("/v1/operations", headers={"Authorization": f"Bearer {CANARY}x"})
    assert bad.status_code == 401
    assert CANARY not in await bad.get_data(as_text=True)


@pytest.mark.anyio
async def test_a_scoped_route_in_a_nested_blueprint_needs_the_scope(app: Quart) -> None:
    client = app.test_client()
    refused = await client.get("/v1/admin/stats", headers=USER)
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    served = await client.get("/v1/admin/stats", headers=ADMIN)
    assert await served.get_json() == {"admin": "admin"}


@pytest.mark.anyio
async def test_a_websocket_with_a_key_reads_the_scope(app: Quart) -> None:
    async with app.test_client().websocket("/v1/ws", headers=USER) as socket:
        assert await socket.receive_json() == {"key_id": "user"}


def test_a_websocket_without_a_key_gets_the_401_denial_response(asgi: ASGIApp) -> None:
    client = TestClient(asgi)
    with (
        capture_logs(),
        pytest.raises(WebSocketDenialResponse) as caught,
        client.websocket_connect("/v1/ws"),
    ):
        pass  # pragma: no cover - never accepted
    assert (caught.value.status_code, caught.value.json()) == (401, MISSING)


@pytest.mark.xfail(
    strict=True,
    raises=TimeoutError,
    reason="Quart's test client never sends websocket.connect, and the middleware waits "
    "for it before it refuses: a refused websocket in Quart's test client gets no answer",
)
@pytest.mark.anyio
async def test_a_refused_websocket_answers_in_quarts_test_client(app: Quart) -> None:
    with capture_logs():
        async with app.test_client().websocket("/v1/ws") as socket:
            with pytest.raises(WebsocketResponseError) as caught:
                await asyncio.wait_for(socket.receive(), timeout=1)
    assert caught.value.response.status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/whoami", "/apiv1/whoami"])
def test_under_a_root_path_the_spellings_quart_routes_are_protected(
    asgi: ASGIApp, path: str
) -> None:
    # Quart takes root_path off as a plain prefix: /apiv1/whoami runs /v1/whoami.
    with capture_logs():
        assert call(asgi, http_scope(path, root_path="/api")).status == 401
    served = call(asgi, http_scope(path, root_path="/api", headers=[bearer(OTHER_KEY)]))
    assert served.json() == {"user": "user", "scopes": ["authenticated"]}


@pytest.mark.parametrize(
    "path", ["http://example.test/v1/admin/stats", "x:/v1/admin/stats", "//v1/admin/stats"]
)
def test_a_target_quart_routes_as_a_url_needs_the_scope(asgi: ASGIApp, path: str) -> None:
    # Quart routes urlparse(path).path for a path not starting with "/", and
    # werkzeug drops leading slashes (servers pass such targets through).
    with capture_logs():
        assert call(asgi, http_scope(path, headers=[bearer(CANARY)])).json() == {"admin": "admin"}
        assert call(asgi, http_scope(path, headers=[bearer(OTHER_KEY)])).status == 403
        assert call(asgi, http_scope(path)).status == 401


def test_the_example_under_hypercorn(asgi: ASGIApp) -> None:
    with serve(asgi, "hypercorn") as server:
        head = b"GET /v1/admin/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        refused = exchange(server.port, head + b"\r\n")
        assert refused is not None
        assert (refused.status, json.loads(refused.body)) == (401, MISSING)
        user = exchange(server.port, head + f"Authorization: Bearer {OTHER_KEY}\r\n\r\n".encode())
        assert user is not None
        assert user.status == 403
        assert user.header("www-authenticate") is not None
        assert 'scope="admin"' in (user.header("www-authenticate") or "")
        admin = exchange(server.port, head + f"Authorization: Bearer {CANARY}\r\n\r\n".encode())
        assert admin is not None
        assert json.loads(admin.body) == {"admin": "admin"}
        assert admin.header("x-frame-options") == "DENY"

        with WebSocketClient(server.port, "/v1/ws") as denied:
            assert denied.response is not None
            assert (denied.response.status, json.loads(denied.response.body)) == (401, MISSING)
        with WebSocketClient(server.port, "/v1/ws", [("Authorization", f"Bearer {CANARY}")]) as ws:
            assert ws.response is not None
            assert ws.response.status == 101
            opcode, payload = ws.receive()
            assert (opcode, json.loads(payload)) == (1, {"key_id": "admin"})
        assert server.errors() == []
