"""Behaviour through real frameworks: Starlette and FastAPI, HTTP and websockets."""

from __future__ import annotations

import json
import warnings
from typing import Annotated, Any

import httpx2
import pytest
from fastapi import Depends, FastAPI
from fastapi.exceptions import FastAPIDeprecationWarning
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_apikey import (
    APIKey,
    APIKeyMiddleware,
    AuthContext,
    optional_verify_api_key,
    require_scopes,
    verify_api_key,
)
from tests.asgi import CANARY, OTHER_KEY

KEYS = [APIKey(CANARY, name="admin", scopes={"admin"}), APIKey(OTHER_KEY, name="reader")]
ADMIN = {"Authorization": f"Bearer {CANARY}"}
READER = {"Authorization": f"Bearer {OTHER_KEY}"}


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "user": request.user.display_name,
            "authenticated": request.user.is_authenticated,
            "scopes": sorted(request.auth.scopes),
        }
    )


@requires("authenticated")
async def guarded(request: Request) -> JSONResponse:
    return JSONResponse({"identity": request.user.identity})


async def echo_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"key_id": websocket.scope["auth"].key_id})
    await websocket.close()


def starlette_app() -> Starlette:
    app = Starlette(
        routes=[
            Route("/health", whoami),
            Route("/v1/whoami", whoami),
            Route("/v1/guarded", guarded),
            Route("/optional/guarded", guarded),
            WebSocketRoute("/ws", echo_socket),
            WebSocketRoute("/optional/ws", echo_socket),
            Mount("/files", routes=[Route("/{name:path}", whoami)]),
        ]
    )
    app.add_middleware(APIKeyMiddleware, keys=KEYS, public=["/health"], optional=["/optional"])
    return app


@pytest.fixture
def starlette_client() -> TestClient:
    return TestClient(starlette_app())


def test_starlette_request_user_and_auth(starlette_client: TestClient) -> None:
    response = starlette_client.get("/v1/whoami", headers=READER)
    assert response.status_code == 200
    assert response.json() == {
        "user": "reader",
        "authenticated": True,
        "scopes": ["authenticated"],
    }
    assert response.headers["x-content-type-options"] == "nosniff"


def test_starlette_requires_authenticated_works_unchanged(starlette_client: TestClient) -> None:
    assert starlette_client.get("/v1/guarded", headers=ADMIN).json() == {"identity": "admin"}
    # On an optional path the app runs anonymous, and Starlette's own decorator refuses.
    assert starlette_client.get("/optional/guarded").status_code == 403


def test_starlette_public_and_protected(starlette_client: TestClient) -> None:
    assert starlette_client.get("/health").json()["authenticated"] is False
    denied = starlette_client.get("/v1/whoami")
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"] == 'Bearer realm="api"'


def test_starlette_dot_segments_and_double_slashes_stay_protected(
    starlette_client: TestClient,
) -> None:
    # The client resolves literal dot segments itself; "%2f" reaches the server
    # encoded and the ASGI path arrives decoded as "/health/../v1/whoami".
    for target in ("//v1/whoami", "/health/..%2fv1/whoami", "/health%2f..%2fv1%2fwhoami"):
        response = starlette_client.get("http://testserver" + target)
        assert response.status_code == 401, target


def test_starlette_mount_paths_are_judged_on_the_full_route_path(
    starlette_client: TestClient,
) -> None:
    assert starlette_client.get("/files/a.txt").status_code == 401
    assert starlette_client.get("/files/a.txt", headers=READER).status_code == 200


def test_websocket_with_a_key_is_accepted(starlette_client: TestClient) -> None:
    with starlette_client.websocket_connect("/ws", headers=READER) as ws:
        assert ws.receive_json() == {"key_id": "reader"}


def test_websocket_without_a_key_gets_an_http_401_denial(starlette_client: TestClient) -> None:
    # The test client supports the websocket denial-response extension.
    with (
        pytest.raises(WebSocketDenialResponse) as caught,
        starlette_client.websocket_connect("/ws"),
    ):
        pass  # pragma: no cover - never accepted
    denial = caught.value
    assert denial.status_code == 401
    assert denial.headers["www-authenticate"] == 'Bearer realm="api"'
    assert denial.json() == {"detail": "Missing API key: send it as 'Authorization: Bearer <key>'"}


def test_websocket_with_a_bad_key_is_refused(starlette_client: TestClient) -> None:
    with (
        pytest.raises(WebSocketDenialResponse) as caught,
        starlette_client.websocket_connect("/ws", headers={"Authorization": "Bearer nope"}),
    ):
        pass  # pragma: no cover - never accepted
    assert caught.value.status_code == 401


def test_websocket_on_an_optional_path_runs_anonymous(starlette_client: TestClient) -> None:
    with starlette_client.websocket_connect("/optional/ws") as ws:
        assert ws.receive_json() == {"key_id": None}


def test_websocket_without_the_extension_is_closed_with_1008() -> None:
    app = starlette_app()

    async def strip_extensions(scope: Any, receive: Any, send: Any) -> None:
        scope = {**scope, "extensions": {}}
        await app(scope, receive, send)

    client = TestClient(strip_extensions)
    with pytest.raises(WebSocketDisconnect) as caught, client.websocket_connect("/ws"):
        pass  # pragma: no cover - never accepted
    assert caught.value.code == 1008


# --- FastAPI ------------------------------------------------------------------------------


def fastapi_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(
        APIKeyMiddleware,
        keys=KEYS,
        public=["/docs", "/openapi.json", "/public"],
        optional=["/maybe"],
    )

    @app.get("/items")
    async def items(auth: Annotated[AuthContext, Depends(verify_api_key)]) -> dict[str, Any]:
        return {"key_id": auth.key_id}

    @app.get("/maybe")
    async def maybe(
        auth: Annotated[AuthContext | None, Depends(optional_verify_api_key)],
    ) -> dict[str, Any]:
        return {"key_id": auth.key_id if auth else None}

    @app.get("/public/items")
    async def public_items(
        auth: Annotated[AuthContext, Depends(verify_api_key)],
    ) -> dict[str, Any]:
        return {"key_id": auth.key_id}

    @app.get("/admin")
    async def admin(
        auth: Annotated[AuthContext, Depends(require_scopes("admin"))],
    ) -> dict[str, Any]:
        return {"key_id": auth.key_id}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"key_id": websocket.scope["auth"].key_id})
        await websocket.close()

    return app


@pytest.fixture
def fastapi_client() -> TestClient:
    return TestClient(fastapi_app())


def test_fastapi_dependency_returns_the_context(fastapi_client: TestClient) -> None:
    assert fastapi_client.get("/items", headers=READER).json() == {"key_id": "reader"}
    assert fastapi_client.get("/items").status_code == 401


def test_fastapi_optional_dependency(fastapi_client: TestClient) -> None:
    assert fastapi_client.get("/maybe").json() == {"key_id": None}
    assert fastapi_client.get("/maybe", headers=ADMIN).json() == {"key_id": "admin"}
    assert fastapi_client.get("/maybe", headers={"Authorization": "Bearer x"}).status_code == 401


def test_fastapi_dependency_refuses_anonymous_on_a_public_path(
    fastapi_client: TestClient,
) -> None:
    response = fastapi_client.get("/public/items")
    assert response.status_code == 401
    assert response.json() == {"detail": "Missing API key"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert fastapi_client.get("/public/items", headers=ADMIN).json() == {"key_id": "admin"}


def test_fastapi_require_scopes(fastapi_client: TestClient) -> None:
    assert fastapi_client.get("/admin", headers=ADMIN).json() == {"key_id": "admin"}
    response = fastapi_client.get("/admin", headers=READER)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="admin"' in response.headers["www-authenticate"]


def test_fastapi_docs_stay_public(fastapi_client: TestClient) -> None:
    assert fastapi_client.get("/openapi.json").status_code == 200
    assert fastapi_client.get("/docs").status_code == 200


def test_fastapi_websocket(fastapi_client: TestClient) -> None:
    with fastapi_client.websocket_connect("/ws", headers=ADMIN) as ws:
        assert ws.receive_json() == {"key_id": "admin"}
    with pytest.raises(WebSocketDenialResponse), fastapi_client.websocket_connect("/ws"):
        pass  # pragma: no cover - never accepted


@pytest.mark.anyio
async def test_through_httpx_asgi_transport() -> None:
    transport = httpx2.ASGITransport(app=fastapi_app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/items", headers=READER)).status_code == 200
        assert (await client.get("/items")).status_code == 401


# -- FastAPI(root_path=...) wrapped from outside ------------------------------------------------


def _rooted_fastapi(root_path: str = "/prefix") -> FastAPI:
    with warnings.catch_warnings():
        # Deprecated in favour of the server's --root-path, still honoured by FastAPI.
        warnings.simplefilter("ignore", FastAPIDeprecationWarning)
        app = FastAPI(root_path=root_path)

    @app.get("/admin/users")
    async def admin_users() -> dict[str, str]:
        return {"ran": "admin"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"ran": "health"}

    return app


ADMIN_KEY = "sk-admin-9f8e7d6c5b4a39281706"


def _wrapped(app: ASGIApp, root_path: str = "", **rules: Any) -> TestClient:
    keys = [APIKey(CANARY, name="user"), APIKey(ADMIN_KEY, name="admin", scopes={"admin"})]
    wrapped = APIKeyMiddleware(app, keys=keys, **rules)
    # The server's root_path (uvicorn --root-path): in the scope, and in front of path.
    return TestClient(wrapped, raise_server_exceptions=False, root_path=root_path)


@pytest.mark.parametrize("target", ["/prefix/admin/users", "/admin/users"])
def test_a_fastapi_root_path_is_honoured_when_the_middleware_wraps_the_app(target: str) -> None:
    # FastAPI sets scope["root_path"] itself, after an outer middleware has run: the
    # rules must still be judged against it, or /prefix/admin escapes the /admin rule.
    with _wrapped(_rooted_fastapi(), protected={"/admin": {"admin"}}) as client:
        user = client.get(target, headers={"Authorization": f"Bearer {CANARY}"})
        admin = client.get(target, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert user.status_code == 403
    assert "insufficient_scope" in user.headers["www-authenticate"]
    assert (admin.status_code, admin.json()) == (200, {"ran": "admin"})


def test_a_fastapi_root_path_keeps_default_public_apps_closed_where_a_rule_says_so() -> None:
    app = _rooted_fastapi()
    with _wrapped(app, default="public", protected=["/admin"]) as client:
        anonymous = client.get("/prefix/admin/users")
        health = client.get("/prefix/health")
    assert anonymous.status_code == 401
    assert (health.status_code, health.json()) == (200, {"ran": "health"})


def test_a_fastapi_root_path_is_found_through_middleware_in_between() -> None:
    inner = CORSMiddleware(_rooted_fastapi("/v2"), allow_origins=["https://example.test"])
    with _wrapped(inner, default="public", protected=["/admin"]) as client:
        assert client.get("/v2/admin/users").status_code == 401
        assert client.get("/v2/health").status_code == 200


def test_an_app_without_a_root_path_of_its_own_keeps_the_servers() -> None:
    app = Starlette(routes=[Route("/admin/users", lambda request: JSONResponse({"ran": "admin"}))])
    wrapped = APIKeyMiddleware(app, keys=[CANARY], default="public", protected=["/admin"])
    with TestClient(wrapped, root_path="/mount") as client:
        assert client.get("/mount/admin/users").status_code == 401
        headers = {"Authorization": f"Bearer {CANARY}"}
        assert client.get("/mount/admin/users", headers=headers).status_code == 200


def test_a_fastapi_root_path_set_after_wrapping_is_honoured() -> None:
    api = FastAPI()

    @api.get("/admin/users")
    async def admin_users() -> dict[str, str]:
        return {"ran": "admin"}

    client = _wrapped(api, protected={"/admin": {"admin"}})
    api.root_path = "/prefix"  # from settings loaded at startup, say
    with client:
        user = client.get("/prefix/admin/users", headers={"Authorization": f"Bearer {CANARY}"})
    assert user.status_code == 403


class _DirectoryRooted:
    """An ASGI app whose ``root_path`` is a directory, as on Quart and Flask apps."""

    root_path = "/srv/app"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = json.dumps({"ran": scope["path"]}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


class _PassThrough:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


@pytest.mark.parametrize("inner", [_DirectoryRooted(), _PassThrough(_DirectoryRooted())])
def test_a_root_path_attribute_of_an_app_that_is_not_starlette_is_not_a_mount_point(
    inner: ASGIApp,
) -> None:
    # Quart(__name__).root_path is the module's directory: the server's mount point
    # (uvicorn --root-path /api) must still be what rules are judged against.
    client = _wrapped(inner, "/api", public=["/health"], protected={"/admin": {"admin"}})
    with client:
        user = client.get("/api/admin/users", headers={"Authorization": f"Bearer {CANARY}"})
        health = client.get("/api/health")
        stripped = client.get("/srv/app/admin/users", headers={"Authorization": f"Bearer {CANARY}"})
    assert user.status_code == 403
    assert health.status_code == 200
    assert stripped.status_code == 200  # a path under the directory is just a path
