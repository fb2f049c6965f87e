"""``openapi=True``: the middleware adds its security to FastAPI's documents itself.

:func:`hook_openapi` wraps each guarded FastAPI app's ``openapi`` (FastAPI's
documented customisation point) once, in an :class:`_OpenAPIHook` that
follows the latest middleware, and every middleware nested with it.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from starlette.types import Scope

from ..audit import emit
from .apps import _fastapi_apps, _reaches, in_stack
from .document import OpenAPISecurity
from .limits import OpenAPILimits

if TYPE_CHECKING:
    from ..middleware import APIKeyMiddleware


def hook_openapi(middleware: APIKeyMiddleware, app: object, scope: Scope | None = None) -> int:
    """Wrap the ``openapi`` of every FastAPI app that ``middleware`` guards; return how many.

    ``app`` is what the middleware wraps: FastAPI apps are found through
    middleware in between (``.app``) and below mounts (with the mount path
    as prefix). ``scope["app"]`` is searched as well when ``middleware`` is in
    that app's middleware stack (``app.add_middleware``, where the middleware
    only sees the next middleware). An app already wrapped is not wrapped
    again: its wrapper follows the latest middleware.
    """
    found = list(_fastapi_apps(app, "", set()))
    if scope is not None:
        outer = scope.get("app")
        if outer is not None and in_stack(middleware, getattr(outer, "middleware_stack", None)):
            found += _fastapi_apps(outer, "", set())
    for fastapi_app, mount_path in found:
        current = getattr(fastapi_app, "openapi", None)
        if isinstance(current, _OpenAPIHook):
            current.follow(middleware, mount_path)
        elif callable(current):
            fastapi_app.openapi = _OpenAPIHook(current, middleware, mount_path)
    return len(found)


class _OpenAPIHook:
    """A FastAPI app's ``openapi``: the original (cached or not), with the security added.

    The first call after the document or the rules changed edits the
    document in place; later calls return it as it is, so that a document
    being served is not edited under another reader.
    """

    __slots__ = ("_done", "guards", "original")

    def __init__(self, original: Any, middleware: APIKeyMiddleware, mount_path: str) -> None:
        self.original = original
        #: The middleware that guard the app, each with the app's mount path below it.
        self.guards: list[tuple[APIKeyMiddleware, str]] = [(middleware, mount_path)]
        self._done: tuple[object, object] | None = None

    @property
    def middleware(self) -> APIKeyMiddleware:
        """The middleware followed last."""
        return self.guards[-1][0]

    def follow(self, middleware: APIKeyMiddleware, mount_path: str) -> None:
        """Follow ``middleware`` too if it and the ones followed are nested, else instead."""
        kept = [
            (other, below)
            for other, below in self.guards
            if other is not middleware
            and (_reaches(middleware, other) or _reaches(other, middleware))
        ]
        self.guards = [*kept, (middleware, mount_path)]
        self._done = None

    def _security(self) -> tuple[OpenAPISecurity, str]:
        (last, mount_path), others = self.guards[-1], self.guards[:-1]
        security = OpenAPISecurity.of(last)
        if others:
            security = replace(
                security,
                also=tuple((m.rules, p) for m, p in others),
                also_limits=tuple(
                    (limits, p) for m, p in others if (limits := OpenAPILimits.of(m)) is not None
                ),
            )
        return security, mount_path

    def __call__(self) -> dict[str, Any]:
        schema: dict[str, Any] = self.original()
        try:
            state: tuple[OpenAPISecurity, str] | Exception = self._security()
        except Exception as error:  # said below, once per document
            state = error
        # The rules, and where the limits apply (a key given a limit changes that).
        key = (
            tuple(middleware.rules for middleware, _ in self.guards),
            None if isinstance(state, Exception) else state,
        )
        done = self._done
        if done is None or done[0] is not schema or done[1] != key:
            self._done = (schema, key)  # holds the document: its id is never reused
            try:  # on a copy: a document is served whole, never half edited
                if isinstance(state, Exception):
                    raise state
                security, mount_path = state
                edited = security.apply(copy.deepcopy(schema), mount_path=mount_path)
                schema.clear()
                schema.update(edited)  # in place: FastAPI serves the dict it cached
            except Exception as error:  # a document this module cannot read: serve it as is
                # A docs page that worked must not become a 500; say why, once per document.
                emit(
                    "error",
                    "openapi_security_not_added",
                    {
                        "error": f"{type(error).__name__}: {error}"[:300],
                        "fix": "pass openapi=False and call add_openapi_security() where the "
                        "document is built, or fix the document",
                    },
                )
        return schema
