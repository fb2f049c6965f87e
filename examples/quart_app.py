"""A Quart app protected by APIKeyMiddleware, with blueprints and a websocket.

Quart's way to add ASGI middleware is to wrap ``app.asgi_app``: ``app`` stays the
Quart app (``hypercorn examples.quart_app:app`` and ``quart run`` still find it),
and every request passes the middleware before Quart routes it. Views read the
caller from ``request.scope["auth"]`` (``websocket.scope["auth"]`` in a
websocket), here through the small ``caller()`` helper.

    API_KEY=sk-... python -m examples.quart_app
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from quart import Blueprint, Quart, has_websocket_context, request, websocket

from asgi_apikey import APIKey, APIKeyMiddleware, AuthContext
from examples._serve import serve


def caller() -> AuthContext:
    """The :class:`AuthContext` of the current request or websocket."""
    connection = websocket if has_websocket_context() else request
    scope: Mapping[str, Any] = connection.scope  # Quart's type names the ASGI keys only
    context: AuthContext = scope["auth"]
    return context


def api() -> Blueprint:
    """The ``/v1`` blueprint, with ``/v1/admin`` nested in it."""
    v1 = Blueprint("v1", __name__, url_prefix="/v1")
    admin = Blueprint("admin", __name__, url_prefix="/admin")

    @v1.get("/whoami")
    async def whoami() -> dict[str, Any]:
        auth = caller()
        return {"user": auth.key_id, "scopes": sorted(auth.scopes)}

    @v1.get("/operations")
    async def operations() -> dict[str, Any]:
        # Optional: anonymous callers run too, with an unauthenticated context.
        return {"operations": ["chat"], "caller": caller().key_id}

    @admin.get("/stats")
    async def admin_stats() -> dict[str, Any]:
        # The middleware refused every key without the "admin" scope before this ran.
        return {"admin": caller().key_id}

    @v1.websocket("/ws")
    async def socket() -> None:
        await websocket.accept()
        await websocket.send_json({"key_id": caller().key_id})
        await websocket.close(1000)

    v1.register_blueprint(admin)
    return v1


def create_app(keys: Sequence[str | APIKey]) -> Quart:
    app = Quart(__name__)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.register_blueprint(api())
    # Quart's way to add ASGI middleware. (Quart types the ASGI interface with
    # TypedDicts, the middleware with Starlette's mappings: mypy needs telling.)
    app.asgi_app = APIKeyMiddleware(  # type: ignore[assignment,method-assign]
        app.asgi_app,
        keys=keys,
        public=["/health"],
        optional=["/v1/operations"],
        protected={"/v1/admin": {"admin"}},
    )
    return app


if __name__ == "__main__":
    serve(create_app)  # type: ignore[arg-type]
