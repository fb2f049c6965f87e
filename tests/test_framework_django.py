"""Django's ASGI handler behind APIKeyMiddleware: examples/django_app.py.

Django's settings belong to the process: the example configures them once (with
its own URLs), here and for any later test. Django's handler serves HTTP only and
refuses the lifespan protocol, so the in-process client runs without a lifespan
and the real server is hypercorn, which goes on without one.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import ASGIApp, Message, Scope
from structlog.testing import capture_logs

from asgi_apikey import APIKey, APIKeyMiddleware
from examples import django_app
from tests.asgi import CANARY, OTHER_KEY, Result, bearer, http_scope
from tests.servers import WebSocketClient, exchange, serve

KEYS = [APIKey(CANARY, name="admin", scopes={"admin"}), APIKey(OTHER_KEY, name="user")]
ADMIN = {"Authorization": f"Bearer {CANARY}"}
USER = {"Authorization": f"Bearer {OTHER_KEY}"}
MISSING = {"detail": "Missing API key: send it as 'Authorization: Bearer <key>'"}


def call(app: ASGIApp, scope: Scope) -> Result:
    """One request, from a client that stays until answered.

    Django stops answering when it reads ``http.disconnect``, which
    ``tests.asgi.call`` sends as soon as the body is read.
    """
    messages: list[Message] = []

    async def main() -> None:
        answered = asyncio.Event()
        incoming = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> Message:
            if incoming:
                return incoming.pop(0)
            await answered.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            messages.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered.set()

        await asyncio.wait_for(app(scope, receive, send), timeout=10)

    asyncio.run(main())
    return Result(messages)


@pytest.fixture
def app() -> APIKeyMiddleware:
    return django_app.create_app(KEYS)


@pytest.fixture
def client(app: APIKeyMiddleware) -> TestClient:
    return TestClient(app)  # not entered: no lifespan, which Django refuses


def test_a_public_view_runs_without_a_key(client: TestClient) -> None:
    response = client.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_protected_view_reads_request_scope(client: TestClient) -> None:
    refused = client.get("/v1/whoami")
    assert (refused.status_code, refused.json()) == (401, MISSING)
    assert refused.headers["www-authenticate"] == 'Bearer realm="api"'
    response = client.get("/v1/whoami", headers=USER)
    assert response.json() == {"user": "user", "scopes": ["authenticated"]}


def test_an_optional_view_runs_anonymous_and_refuses_a_bad_key(client: TestClient) -> None:
    assert client.get("/v1/operations").json() == {"operations": ["chat"], "caller": None}
    assert client.get("/v1/operations", headers=ADMIN).json()["caller"] == "admin"
    bad = client.get("/v1/operations", headers={"Authorization": f"Bearer {CANARY}x"})
    assert bad.status_code == 401
    assert CANARY not in bad.text


def test_a_scoped_view_under_an_include_needs_the_scope(client: TestClient) -> None:
    refused = client.get("/v1/admin/stats", headers=USER)
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert client.get("/v1/admin/stats", headers=ADMIN).json() == {"admin": "admin"}


def test_a_path_django_does_not_route_is_its_404_once_a_key_passes(client: TestClient) -> None:
    assert client.get("/v1/nothing").status_code == 401  # the middleware first
    assert client.get("/v1/nothing", headers=USER).status_code == 404


@pytest.mark.parametrize(
    ("path", "status"), [("/api/v1/admin/stats", 200), ("/apiv1/admin/stats", 404)]
)
def test_under_a_root_path_django_routes_the_path_less_its_script_prefix(
    app: APIKeyMiddleware, path: str, status: int
) -> None:
    # Django takes root_path off as a plain prefix; "v1/..." (no "/") routes nowhere.
    with capture_logs():
        assert call(app, http_scope(path, root_path="/api")).status == 401
        user = call(app, http_scope(path, root_path="/api", headers=[bearer(OTHER_KEY)]))
        assert user.status == 403
    admin = call(app, http_scope(path, root_path="/api", headers=[bearer(CANARY)]))
    assert admin.status == status


def test_a_websocket_without_a_key_is_refused_before_django(client: TestClient) -> None:
    with (
        capture_logs(),
        pytest.raises(WebSocketDenialResponse) as caught,
        client.websocket_connect("/v1/whoami"),
    ):
        pass  # pragma: no cover - never accepted
    assert (caught.value.status_code, caught.value.json()) == (401, MISSING)


def test_a_websocket_with_a_key_reaches_django_which_serves_http_only(client: TestClient) -> None:
    # What the example's docstring says: websockets need Channels.
    with (
        pytest.raises(ValueError, match="Django can only handle ASGI/HTTP connections"),
        client.websocket_connect("/v1/whoami", headers=USER),
    ):
        pass  # pragma: no cover - never accepted


def test_the_example_under_hypercorn(app: APIKeyMiddleware) -> None:
    with serve(app, "hypercorn") as server:
        head = b"GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        refused = exchange(server.port, head + b"\r\n")
        assert refused is not None
        assert (refused.status, json.loads(refused.body)) == (401, MISSING)
        served = exchange(server.port, head + f"Authorization: Bearer {OTHER_KEY}\r\n\r\n".encode())
        assert served is not None
        assert json.loads(served.body) == {"user": "user", "scopes": ["authenticated"]}
        assert served.header("x-frame-options") == "DENY"
        with WebSocketClient(server.port, "/v1/whoami") as denied:
            assert denied.response is not None
            assert (denied.response.status, json.loads(denied.response.body)) == (401, MISSING)
        errors = server.errors()
    # Django refuses the lifespan protocol; hypercorn says so and serves without it.
    assert all("Lifespan" in error for error in errors), errors
