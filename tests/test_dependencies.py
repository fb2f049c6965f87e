"""The helpers read the scope; used without the middleware they say so."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_apikey import (
    APIKey,
    APIKeyAuth,
    APIKeyMiddleware,
    AuthContext,
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    optional_verify_api_key,
    require_scopes,
    verify_api_key,
    verify_api_key_with_metadata,
)
from asgi_apikey.context import ANONYMOUS
from tests.asgi import CANARY, http_scope

KEY = APIKey(CANARY, name="svc", scopes={"read", "write"}, metadata={"tier": "pro"})
CONTEXT = APIKeyAuth(keys=[KEY], mode="advanced").verify(CANARY)


def connection(auth: object = None, *, with_auth: bool = True) -> HTTPConnection:
    scope = http_scope("/x")
    if with_auth:
        scope["auth"] = auth
    return HTTPConnection(scope)


HELPERS: list[Callable[[HTTPConnection], Any]] = [
    verify_api_key,
    optional_verify_api_key,
    verify_api_key_with_metadata,
    require_scopes("read"),
]


@pytest.mark.parametrize("helper", HELPERS, ids=lambda helper: helper.__name__)
@pytest.mark.parametrize(
    "auth",
    [None, AuthCredentials(["authenticated"])],
    ids=["no auth in scope", "another middleware's auth"],
)
def test_without_the_middleware_the_error_says_to_install_it(
    helper: Callable[[HTTPConnection], Any], auth: object
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        helper(connection(auth, with_auth=auth is not None))
    assert "APIKeyMiddleware is not installed" in str(caught.value)
    assert "add_middleware(APIKeyMiddleware" in str(caught.value)


def test_verify_api_key() -> None:
    assert verify_api_key(connection(CONTEXT)) is CONTEXT
    with pytest.raises(AuthenticationError) as caught:
        verify_api_key(connection(ANONYMOUS))
    assert caught.value.status_code == 401
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}
    assert caught.value.context == {"helper": "verify_api_key"}


def test_optional_verify_api_key() -> None:
    assert optional_verify_api_key(connection(CONTEXT)) is CONTEXT
    assert optional_verify_api_key(connection(ANONYMOUS)) is None


def test_verify_api_key_with_metadata() -> None:
    assert verify_api_key_with_metadata(connection(CONTEXT)) == {
        "key_id": "svc",
        "scopes": ["authenticated", "read", "write"],
        "metadata": {"tier": "pro"},
    }
    with pytest.raises(AuthenticationError):
        verify_api_key_with_metadata(connection(ANONYMOUS))


def test_require_scopes() -> None:
    assert require_scopes("read", "write")(connection(CONTEXT)) is CONTEXT
    with pytest.raises(AuthorizationError) as caught:
        require_scopes("admin", "read")(connection(CONTEXT))
    error = caught.value
    assert error.status_code == 403
    assert error.headers is not None
    assert 'scope="admin read"' in error.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in error.headers["WWW-Authenticate"]
    assert error.context == {"key_id": "svc", "required": ["admin", "read"]}
    with pytest.raises(AuthenticationError):
        require_scopes("read")(connection(ANONYMOUS))


@pytest.mark.parametrize("scopes", [(), ("a b",), ('a"',), (1,)], ids=repr)
def test_require_scopes_checks_its_arguments(scopes: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigurationError):
        require_scopes(*scopes)


def test_from_a_plain_starlette_endpoint() -> None:
    async def endpoint(request: Request) -> JSONResponse:
        context = require_scopes("write")(request)
        return JSONResponse({"key_id": context.key_id})

    app = Starlette(routes=[Route("/e", endpoint)])
    auth = APIKeyAuth([KEY, "sk-other-0123456789abcdef"], mode="advanced")
    app.add_middleware(APIKeyMiddleware, auth=auth, optional=["/e"])
    client = TestClient(app)
    assert client.get("/e", headers={"Authorization": f"Bearer {CANARY}"}).json() == {
        "key_id": "svc"
    }
    refused = client.get("/e", headers={"Authorization": "Bearer sk-other-0123456789abcdef"})
    assert refused.status_code == 403
    assert client.get("/e").status_code == 401


def test_fastapi_app_without_the_middleware_fails_loudly() -> None:
    app = FastAPI()

    @app.get("/x")
    async def route(auth: AuthContext = Depends(verify_api_key)) -> dict[str, str]:  # noqa: B008
        return {}  # pragma: no cover - never reached

    client = TestClient(app, raise_server_exceptions=True)
    with pytest.raises(ConfigurationError, match="APIKeyMiddleware is not installed"):
        client.get("/x")
