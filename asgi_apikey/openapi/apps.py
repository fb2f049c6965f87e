"""Walking an app: its wrappers (``.app``), middleware stack and mounts.

How :func:`~asgi_apikey.openapi.add_openapi_security` finds the middleware in
an app, and how the hook finds the FastAPI apps a middleware guards.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from starlette.routing import Host, Mount

from ..paths import RuleTable
from .templates import _CONVERTER

if TYPE_CHECKING:
    from ..middleware import APIKeyMiddleware

_MAX_WRAPPERS = 16  # as middleware._rooted_app follows them


def _reaches(start: object, target: object) -> bool:
    """Whether ``target`` is ``start`` or below it (wrappers, middleware stacks, mounts)."""
    pending: list[object] = [start]
    seen: set[int] = set()
    while pending and len(seen) < 256:
        app = pending.pop()
        if app is None or id(app) in seen:
            continue
        if app is target:
            return True
        seen.add(id(app))
        routes = getattr(app, "routes", None)
        if isinstance(routes, list):
            pending += [route.app for route in routes if isinstance(route, (Mount, Host))]
        pending += [getattr(app, "app", None), getattr(app, "middleware_stack", None)]
    return False


def _fastapi_apps(app: object, prefix: str, seen: set[int]) -> Iterator[tuple[Any, str]]:
    fastapi = sys.modules.get("fastapi")  # no FastAPI imported, no FastAPI app to find
    for _ in range(_MAX_WRAPPERS):
        if app is None or id(app) in seen:
            return
        seen.add(id(app))
        if fastapi is not None and isinstance(app, fastapi.FastAPI):
            yield app, prefix
        routes = getattr(app, "routes", None)
        if isinstance(routes, list):  # a Starlette app or router: its mounts hold sub-apps
            for route in routes:
                if isinstance(route, Mount):
                    path = prefix + _CONVERTER.sub("}", route.path)
                    yield from _fastapi_apps(route.app, path, seen)
                elif isinstance(route, Host):
                    yield from _fastapi_apps(route.app, prefix, seen)
            return
        app = getattr(app, "app", None)


def in_stack(middleware: object, stack: object) -> bool:
    """Whether ``middleware`` is in the middleware stack ``stack`` (``app.middleware_stack``)."""
    for _ in range(_MAX_WRAPPERS):
        if stack is middleware:
            return True
        stack = getattr(stack, "app", None)
        if stack is None:
            return False
    return False


def _find_middleware(given: object) -> APIKeyMiddleware:
    """``given`` if it is the middleware, else the one in its middleware stack or wrappers."""
    candidate = given
    for _ in range(_MAX_WRAPPERS):
        if isinstance(getattr(candidate, "rules", None), RuleTable) and callable(
            getattr(candidate, "describe", None)
        ):
            return candidate  # type: ignore[return-value]  # what APIKeyMiddleware is
        stack = getattr(candidate, "middleware_stack", None)
        candidate = stack if stack is not None else getattr(candidate, "app", None)
        if candidate is None:
            break
    raise ValueError(
        f"no APIKeyMiddleware in this {type(given).__name__}: pass the middleware, or the "
        "app it is installed in after the app has started"
    )
