"""What the scope carries: AuthContext, APIKeyUser and the anonymous values."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import pickle
from typing import Any

import pytest
from starlette.authentication import (
    BaseUser,
    UnauthenticatedUser,
    has_required_scope,
    requires,
)
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response

from asgi_apikey import APIKey, APIKeyAuth, APIKeyUser, AuthContext
from asgi_apikey.context import ANONYMOUS, ANONYMOUS_USER, AUTHENTICATED, FrozenMapping
from tests.asgi import CANARY, http_scope


def authenticated_context(scopes: set[str] | None = None) -> AuthContext:
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="billing", scopes=scopes or set())])
    ctx = auth.verify(CANARY)
    assert ctx is not None
    return ctx


def connection(ctx: AuthContext, user: BaseUser | None = None) -> Request:
    scope = http_scope("/")
    scope["auth"] = ctx
    scope["user"] = user if user is not None else ANONYMOUS_USER
    return Request(scope)


# ------------------------------------------------------------------ AuthContext


def test_auth_context_is_frozen() -> None:
    ctx = AuthContext(authenticated=True, key_id="billing", scopes=frozenset({"read"}))
    for field, value in [
        ("authenticated", False),
        ("key_id", "other"),
        ("scopes", frozenset({"admin"})),
        ("metadata", {}),
        ("mode", "advanced"),
    ]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(ctx, field, value)
    assert ctx.authenticated is True
    assert ctx.scopes == frozenset({"read"})


def test_auth_context_is_slotted() -> None:
    ctx = AuthContext(authenticated=False)
    assert not hasattr(ctx, "__dict__")
    assert set(AuthContext.__slots__) >= {"authenticated", "key_id", "scopes", "metadata", "mode"}
    with pytest.raises((AttributeError, TypeError)):
        ctx.extra = 1  # type: ignore[attr-defined]


def test_auth_context_defaults() -> None:
    ctx = AuthContext(authenticated=True)
    assert ctx.key_id is None
    assert ctx.scopes == frozenset()
    assert isinstance(ctx.scopes, frozenset)
    assert dict(ctx.metadata) == {}
    assert ctx.mode == "simple"
    with pytest.raises(TypeError):
        ctx.metadata["x"] = 1  # type: ignore[index]
    assert dict(AuthContext(authenticated=True).metadata) == {}


def test_auth_context_equality() -> None:
    a = AuthContext(authenticated=True, key_id="k", scopes=frozenset({"r"}))
    assert a == AuthContext(authenticated=True, key_id="k", scopes=frozenset({"r"}))
    assert a != AuthContext(authenticated=True, key_id="j", scopes=frozenset({"r"}))
    assert a != AuthContext(authenticated=False, key_id="k", scopes=frozenset({"r"}))


def test_anonymous_context() -> None:
    assert ANONYMOUS.authenticated is False
    assert ANONYMOUS.key_id is None
    assert ANONYMOUS.scopes == frozenset()
    assert AUTHENTICATED not in ANONYMOUS.scopes
    assert dict(ANONYMOUS.metadata) == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        ANONYMOUS.authenticated = True  # type: ignore[misc]


def test_context_from_apikeyauth_holds_no_secret() -> None:
    ctx = authenticated_context({"read"})
    assert ctx.key_id == "billing"
    assert ctx.scopes == frozenset({AUTHENTICATED, "read"})
    text = repr(ctx) + str(ctx)
    assert CANARY not in text


# ------------------------------------------------------------------ APIKeyUser


def test_api_key_user_is_a_starlette_user() -> None:
    user = APIKeyUser("billing")
    assert isinstance(user, BaseUser)
    assert user.is_authenticated is True
    assert user.display_name == "billing"
    assert user.identity == "billing"
    assert repr(user) == "APIKeyUser('billing')"


def test_api_key_user_equality_and_hash() -> None:
    assert APIKeyUser("billing") == APIKeyUser("billing")
    assert hash(APIKeyUser("billing")) == hash(APIKeyUser("billing"))
    assert APIKeyUser("billing") != APIKeyUser("ci")
    assert APIKeyUser("billing") != "billing"
    assert len({APIKeyUser("a"), APIKeyUser("a"), APIKeyUser("b")}) == 2


def test_anonymous_user_is_starlette_unauthenticated_user() -> None:
    assert isinstance(ANONYMOUS_USER, UnauthenticatedUser)
    assert ANONYMOUS_USER.is_authenticated is False
    assert ANONYMOUS_USER.display_name == ""


# ------------------------------------------------------- Starlette integration


def test_authenticated_scope_satisfies_starlette_has_required_scope() -> None:
    ctx = authenticated_context({"read"})
    conn: HTTPConnection = connection(ctx, APIKeyUser("billing"))
    assert AUTHENTICATED in ctx.scopes
    assert conn.auth is ctx
    assert conn.user.is_authenticated
    assert has_required_scope(conn, ["authenticated"])
    assert has_required_scope(conn, ["authenticated", "read"])
    assert not has_required_scope(conn, ["admin"])
    assert not has_required_scope(conn, ["authenticated", "admin"])


def test_anonymous_scope_fails_starlette_has_required_scope() -> None:
    conn = connection(ANONYMOUS)
    assert not has_required_scope(conn, ["authenticated"])
    assert has_required_scope(conn, [])
    assert not conn.user.is_authenticated


def run_endpoint(scopes: str | list[str], request: Request) -> int:
    @requires(scopes)
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def main() -> Any:
        return await endpoint(request)

    try:
        response = asyncio.run(main())
    except HTTPException as error:
        return error.status_code
    assert isinstance(response, Response)
    return response.status_code


def test_starlette_requires_decorator_works_unchanged() -> None:
    ctx = authenticated_context({"read"})
    assert run_endpoint("authenticated", connection(ctx, APIKeyUser("billing"))) == 200
    assert run_endpoint(["authenticated", "read"], connection(ctx, APIKeyUser("billing"))) == 200
    assert run_endpoint("admin", connection(ctx, APIKeyUser("billing"))) == 403
    assert run_endpoint("authenticated", connection(ANONYMOUS)) == 403


def test_context_copies_pickles_and_converts_to_a_dict() -> None:
    # FastAPI runs dataclasses.asdict (a deepcopy) on an AuthContext an endpoint returns.
    context = AuthContext(
        authenticated=True,
        key_id="svc",
        scopes=frozenset({"read"}),
        metadata=FrozenMapping({"tier": "pro", "limits": {"rpm": 60}}),
    )
    assert copy.deepcopy(context) == context
    assert pickle.loads(pickle.dumps(context)) == context  # noqa: S301 - our own bytes
    assert dataclasses.asdict(context)["metadata"] == {"tier": "pro", "limits": {"rpm": 60}}
    assert copy.deepcopy(ANONYMOUS) == ANONYMOUS


def test_frozen_mapping_is_read_only() -> None:
    mapping = FrozenMapping({"a": 1})
    with pytest.raises(TypeError):
        mapping["a"] = 2
    assert dict(mapping) == {"a": 1}
    assert len(mapping) == 1
    assert repr(mapping) == "FrozenMapping({'a': 1})"


def test_fastapi_can_return_the_context() -> None:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware, verify_api_key

    app = FastAPI()
    key = "sk-context-0123456789abcdef"
    auth = APIKeyAuth([APIKey(key, name="svc", metadata={"tier": "pro"})], mode="advanced")
    app.add_middleware(APIKeyMiddleware, auth=auth)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(verify_api_key)) -> AuthContext:  # noqa: B008
        return auth

    body = TestClient(app).get("/me", headers={"Authorization": f"Bearer {key}"}).json()
    assert body["key_id"] == "svc"
    assert body["metadata"] == {"tier": "pro"}
    assert sorted(body["scopes"]) == ["authenticated"]


def test_context_is_hashable_despite_its_metadata() -> None:
    first = AuthContext(authenticated=True, key_id="a", metadata=FrozenMapping({"x": 1}))
    second = AuthContext(authenticated=True, key_id="a", metadata=FrozenMapping({"x": 1}))
    assert hash(first) == hash(second)
    assert {first, second} == {first}
