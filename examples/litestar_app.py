"""A Litestar app protected by APIKeyMiddleware, reading the caller Litestar's way.

The middleware wraps the whole Litestar app, so it judges each request on the
path the client sent, before Litestar routes it. Handlers read the caller from
``request.user`` and ``request.auth`` (``scope["user"]`` and ``scope["auth"]``),
websocket handlers from ``socket.user`` and ``socket.auth``.

    API_KEY=sk-... python -m examples.litestar_app
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Litestar, Request, Router, WebSocket, get, websocket

from asgi_apikey import APIKey, APIKeyMiddleware, AuthContext
from examples._serve import serve

#: A request whose ``user`` and ``auth`` the middleware filled in.
Caller = Request[Any, AuthContext, Any]


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/whoami")
async def whoami(request: Caller) -> dict[str, Any]:
    return {"user": request.user.display_name, "scopes": sorted(request.auth.scopes)}


@get("/operations")
async def operations(request: Caller) -> dict[str, Any]:
    # Optional: anonymous callers run too, and request.user says who called.
    caller = request.user.identity if request.user.is_authenticated else None
    return {"operations": ["chat"], "caller": caller}


@get("/stats")
async def admin_stats(request: Caller) -> dict[str, Any]:
    # The middleware refused every key without the "admin" scope before this ran.
    return {"admin": request.auth.key_id}


@websocket("/ws")
async def socket(socket: WebSocket[Any, AuthContext, Any]) -> None:
    await socket.accept()
    await socket.send_json({"key_id": socket.auth.key_id, "user": socket.user.display_name})
    await socket.close()


def create_app(keys: Sequence[str | APIKey]) -> APIKeyMiddleware:
    # Router(path=...) puts handlers under a prefix: the rules name the full paths.
    admin = Router(path="/admin", route_handlers=[admin_stats])
    v1 = Router(path="/v1", route_handlers=[whoami, operations, admin, socket])
    app = Litestar(route_handlers=[health, v1])
    # The middleware wraps the app (see the module's docstring). Litestar types the
    # ASGI interface with TypedDicts, the middleware with Starlette's mappings.
    return APIKeyMiddleware(
        app,
        keys=keys,
        public=["/health"],
        optional=["/v1/operations"],
        protected={"/v1/admin": {"admin"}},
    )


if __name__ == "__main__":
    serve(create_app)
