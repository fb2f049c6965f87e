"""A Starlette app protected by APIKeyMiddleware, using Starlette's own auth tools.

``request.user`` and ``@requires(...)`` work unchanged: the middleware fills
``scope["user"]`` and ``scope["auth"]`` the way Starlette's
``AuthenticationMiddleware`` does.

    API_KEY=sk-... python -m examples.starlette_app
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_apikey import APIKey, APIKeyMiddleware, require_scopes
from examples._serve import serve


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@requires("authenticated")
async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.user.display_name, "scopes": sorted(request.auth.scopes)})


async def admin(request: Request) -> JSONResponse:
    auth = require_scopes("admin")(request)
    return JSONResponse({"admin": auth.key_id})


def create_app(keys: Sequence[str | APIKey]) -> Starlette:
    return Starlette(
        routes=[
            Route("/health", health),
            Route("/whoami", whoami),
            Route("/admin", admin),
        ],
        middleware=[Middleware(APIKeyMiddleware, keys=keys, public=["/health"])],
    )


if __name__ == "__main__":
    serve(create_app)
