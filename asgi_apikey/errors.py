"""The errors the package raises.

Each carries a structured ``context`` dict for logs and tests. Neither the
message nor the context ever holds a key: they name the setting, the index of
the bad key or its ``key_id``, and the fix.

:class:`AuthenticationError` and :class:`AuthorizationError` are FastAPI's
``HTTPException`` when FastAPI is installed, so ``except HTTPException`` in a
FastAPI app catches them, as it caught the starter template's errors; without
FastAPI they are Starlette's, which FastAPI's class extends, so ``except
starlette.exceptions.HTTPException`` catches them either way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import HTTPException
else:
    try:  # FastAPI's extends Starlette's: the one base that both excepts catch
        from fastapi import HTTPException
    except ImportError:  # a Starlette-only install
        from starlette.exceptions import HTTPException

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "ConfigurationError",
    "KeySourceError",
    "not_shown_unless_word",
]

# The only text a configuration error quotes: a short word (a typo such as 'prod' or
# 'maybe'). Anything else, digits included, may be a key pasted into the wrong
# setting, and 12 characters is below the 16 that staging and production accept.
_WORD = re.compile(r"[A-Za-z][A-Za-z_-]{0,11}")


def not_shown_unless_word(value: object) -> str:
    """``", not 'prod'"`` for a bad value a configuration error may quote, else less.

    Text is quoted only when it cannot be a key: a word of at most 12 letters
    (``-`` and ``_`` allowed), no digits. Numbers, booleans and ``None`` are
    quoted; any other value is named by its type alone (a list may hold a key).

    >>> not_shown_unless_word("prod"), not_shown_unless_word("sk-live-0123456789abcdef")
    (", not 'prod'", '')
    >>> not_shown_unless_word(5), not_shown_unless_word(["sk-live-0123456789abcdef"])
    (', not 5', ', not a list')
    """
    if isinstance(value, str):
        return f", not {value!r}" if _WORD.fullmatch(value) else ""
    if value is None or isinstance(value, (bool, int, float)):
        return f", not {value!r}"
    return f", not a {type(value).__name__}"


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
    """401: no valid credentials. An ``HTTPException`` (FastAPI's when FastAPI is
    installed, else Starlette's), so FastAPI and Starlette turn it into a
    response with its ``WWW-Authenticate`` header.

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
