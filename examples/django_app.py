"""A one-file Django project, served by Django's ASGI handler behind APIKeyMiddleware.

The middleware wraps Django's ASGI application, so every request passes it
before Django resolves a URL. Django routes ``scope["path"]`` less
``scope["root_path"]`` (its script prefix), as the rules are judged. Views read
the caller from ``request.scope["auth"]`` (an :class:`AuthContext`).

Django's own ASGI handler serves HTTP only: websockets need Channels (wrap its
``ProtocolTypeRouter`` the same way). A websocket to a protected path without a
valid key is still refused by the middleware before Django sees it.

    API_KEY=sk-... python -m examples.django_app
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import django  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]
from django.core.asgi import get_asgi_application  # type: ignore[import-untyped]
from django.http import JsonResponse  # type: ignore[import-untyped]
from django.urls import include, path  # type: ignore[import-untyped]

from asgi_apikey import APIKey, APIKeyMiddleware, AuthContext
from examples._serve import serve


def caller(request: Any) -> AuthContext:
    """The :class:`AuthContext` of a Django request (``ASGIRequest.scope``)."""
    context: AuthContext = request.scope["auth"]
    return context


async def health(request: Any) -> JsonResponse:
    return JsonResponse({"status": "ok"})


async def whoami(request: Any) -> JsonResponse:
    auth = caller(request)
    return JsonResponse({"user": auth.key_id, "scopes": sorted(auth.scopes)})


async def operations(request: Any) -> JsonResponse:
    # Optional: anonymous callers run too, with an unauthenticated context.
    return JsonResponse({"operations": ["chat"], "caller": caller(request).key_id})


async def admin_stats(request: Any) -> JsonResponse:
    # The middleware refused every key without the "admin" scope before this ran.
    return JsonResponse({"admin": caller(request).key_id})


urlpatterns = [
    path("health", health),
    path(
        "v1/",
        include(
            [
                path("whoami", whoami),
                path("operations", operations),
                path("admin/", include([path("stats", admin_stats)])),
            ]
        ),
    ),
]


def create_app(keys: Sequence[str | APIKey]) -> APIKeyMiddleware:
    # Django's settings belong to the process: configured once, with this module's URLs.
    if not settings.configured:
        settings.configure(
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
            INSTALLED_APPS=[],
            MIDDLEWARE=[],
        )
        django.setup()
    return APIKeyMiddleware(
        get_asgi_application(),
        keys=keys,
        public=["/health"],
        optional=["/v1/operations"],
        protected={"/v1/admin": {"admin"}},
    )


if __name__ == "__main__":
    serve(create_app)
