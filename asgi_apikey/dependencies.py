"""Helpers that read the middleware's result: FastAPI dependencies and plain calls.

They never verify a key themselves; they read ``scope["auth"]``, which only
:class:`~asgi_apikey.APIKeyMiddleware` writes. Each takes Starlette's
``HTTPConnection`` (a ``Request`` or a ``WebSocket``), so the same function is
a FastAPI ``Depends(...)`` and a call inside a Starlette endpoint::

    @app.get("/v1/models")
    async def models(auth: AuthContext = Depends(verify_api_key)): ...

    async def endpoint(request: Request) -> Response:
        auth = verify_api_key(request)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import HTTPConnection

from .context import DEVELOPMENT_MODES, AuthContext, check_scopes
from .errors import AuthenticationError, AuthorizationError, ConfigurationError

__all__ = [
    "optional_verify_api_key",
    "require_scopes",
    "verify_api_key",
    "verify_api_key_with_metadata",
]

# The helpers do not know the middleware's realm; RFC 6750 §3 makes it optional.
_MISSING_CHALLENGE = "Bearer"


def _context(connection: HTTPConnection, helper: str) -> AuthContext:
    context = connection.scope.get("auth")
    if not isinstance(context, AuthContext):
        raise ConfigurationError(
            f"{helper} reads what APIKeyMiddleware stores in the request scope, but "
            "APIKeyMiddleware is not installed in front of this route: add "
            "app.add_middleware(APIKeyMiddleware, keys=[...]) (or wrap the ASGI app with it)",
            helper=helper,
        )
    return context


def _authenticated(connection: HTTPConnection, helper: str) -> AuthContext:
    """The context of an authenticated request, or in development mode the anonymous one."""
    context = _context(connection, helper)
    # Only development mode's own anonymous context passes unauthenticated;
    # verifiers may not return authenticated contexts with those modes.
    if not context.authenticated and context.mode not in DEVELOPMENT_MODES:
        raise AuthenticationError(
            "Missing API key", www_authenticate=_MISSING_CHALLENGE, context={"helper": helper}
        )
    return context


def verify_api_key(connection: HTTPConnection) -> AuthContext:
    """The request's :class:`AuthContext`; 401 when it is not authenticated.

    In development mode (no keys configured) every request passes, so this
    returns the anonymous context (``mode`` ``"development"`` or ``"test"``).

    As a FastAPI dependency::

        @app.get("/v1/models")
        async def models(auth: AuthContext = Depends(verify_api_key)) -> list[str]: ...
    """
    return _authenticated(connection, "verify_api_key")


def optional_verify_api_key(connection: HTTPConnection) -> AuthContext | None:
    """The request's :class:`AuthContext` when authenticated, else ``None``."""
    context = _context(connection, "optional_verify_api_key")
    return context if context.authenticated else None


def verify_api_key_with_metadata(connection: HTTPConnection) -> dict[str, Any]:
    """``{"key_id", "scopes", "metadata"}`` of the authenticated key; 401 otherwise."""
    context = _authenticated(connection, "verify_api_key_with_metadata")
    return {
        "key_id": context.key_id,
        "scopes": sorted(context.scopes),
        "metadata": dict(context.metadata),
    }


def require_scopes(*scopes: str) -> Callable[[HTTPConnection], AuthContext]:
    """A dependency that demands every one of ``scopes``: 401 if anonymous, 403 if one lacks.

    >>> admin_only = require_scopes("admin")
    >>> admin_only.__name__
    'require_scopes_admin'
    """
    if not scopes:
        raise ConfigurationError(
            "require_scopes needs at least one scope, such as require_scopes('admin')"
        )
    needed = check_scopes(scopes, "require_scopes")
    listed = " ".join(sorted(needed))
    challenge = (
        'Bearer error="insufficient_scope", '
        'error_description="The API key lacks a required scope", '
        f'scope="{listed}"'
    )

    def dependency(connection: HTTPConnection) -> AuthContext:
        context = _authenticated(connection, "require_scopes")
        # Unauthenticated here means development mode, where every request passes.
        if context.authenticated and not needed <= context.scopes:
            raise AuthorizationError(
                f"This API key lacks a required scope: {listed}",
                www_authenticate=challenge,
                context={"key_id": context.key_id, "required": sorted(needed)},
            )
        return context

    dependency.__name__ = "require_scopes_" + "_".join(sorted(needed))
    dependency.__qualname__ = dependency.__name__
    return dependency
