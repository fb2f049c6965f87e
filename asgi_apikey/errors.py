"""The errors the package raises.

Each carries a structured ``context`` dict for logs and tests. Neither the
message nor the context ever holds a key: they name the setting, the index of
the bad key or its ``key_id``, and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException

__all__ = ["AuthenticationError", "AuthorizationError", "ConfigurationError", "KeySourceError"]


class ConfigurationError(ValueError):
    """Bad configuration, raised at construction and never at the first request.

    >>> ConfigurationError("default must be one of ...", setting="default").context
    {'setting': 'default'}
    """

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.context: dict[str, Any] = context


class KeySourceError(RuntimeError):
    """A live key source could not start: its store is unreachable, or refused it.

    Raised by :meth:`~asgi_apikey.APIKeyAuth.start`, which the middleware
    calls when the app's lifespan starts; the server then reports the message
    and does not start. The message names the store (without its password)
    and what to check.

    >>> KeySourceError("Redis at redis://127.0.0.1:6379/0 is unreachable", source="redis").context
    {'source': 'redis'}
    """

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.context: dict[str, Any] = context


class _HTTPAuthError(HTTPException):
    status: int = 500

    def __init__(
        self,
        detail: str,
        *,
        www_authenticate: str,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(self.status, detail, headers={"WWW-Authenticate": www_authenticate})
        self.context: dict[str, Any] = dict(context or {})


class AuthenticationError(_HTTPAuthError):
    """401: no valid credentials. A Starlette ``HTTPException``, so FastAPI and
    Starlette turn it into a response with its ``WWW-Authenticate`` header.

    >>> AuthenticationError("Missing API key", www_authenticate='Bearer realm="api"').status_code
    401
    """

    status = 401


class AuthorizationError(_HTTPAuthError):
    """403: a valid key that lacks a required scope (``insufficient_scope``).

    >>> err = AuthorizationError("Needs scope admin", www_authenticate='Bearer realm="api"')
    >>> err.status_code
    403
    """

    status = 403
