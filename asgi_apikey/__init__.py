"""asgi_apikey: one pure-ASGI middleware for API-key authentication (RFC 6750 bearer tokens)."""

from __future__ import annotations

from .context import APIKeyUser, AuthContext
from .dependencies import (
    optional_verify_api_key,
    require_scopes,
    verify_api_key,
    verify_api_key_with_metadata,
)
from .errors import AuthenticationError, AuthorizationError, ConfigurationError
from .keys import APIKey, APIKeyAuth
from .middleware import APIKeyMiddleware

__version__ = "0.1.0"

__all__ = [
    "APIKey",
    "APIKeyAuth",
    "APIKeyMiddleware",
    "APIKeyUser",
    "AuthContext",
    "AuthenticationError",
    "AuthorizationError",
    "ConfigurationError",
    "__version__",
    "optional_verify_api_key",
    "require_scopes",
    "verify_api_key",
    "verify_api_key_with_metadata",
]
