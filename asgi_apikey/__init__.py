"""asgi_apikey: one pure-ASGI middleware for API-key authentication (RFC 6750 bearer tokens)."""

from __future__ import annotations

from .audit import Counters
from .auth import APIKeyAuth, KeyChanges
from .compat import get_auth_status, verify_api_key_string
from .context import APIKeyUser, AuthContext
from .dependencies import (
    optional_verify_api_key,
    require_scopes,
    verify_api_key,
    verify_api_key_with_metadata,
)
from .errors import AuthenticationError, AuthorizationError, ConfigurationError, KeySourceError
from .headers import DOCS_CONTENT_SECURITY_POLICY, STRICT_CONTENT_SECURITY_POLICY
from .keys import APIKey, Rejected, Verifier
from .middleware import APIKeyMiddleware
from .openapi import add_openapi_security
from .ratelimit import UNLIMITED, RateLimit
from .ratelimit.policy import RateLimits
from .settings import AuthSettings
from .sources import EnvironmentSource, KeyFileSource, KeySink, KeySource, LiveKeySource, SourceKeys

__version__ = "0.1.0"

__all__ = [
    "DOCS_CONTENT_SECURITY_POLICY",
    "STRICT_CONTENT_SECURITY_POLICY",
    "UNLIMITED",
    "APIKey",
    "APIKeyAuth",
    "APIKeyMiddleware",
    "APIKeyUser",
    "AuthContext",
    "AuthSettings",
    "AuthenticationError",
    "AuthorizationError",
    "ConfigurationError",
    "Counters",
    "EnvironmentSource",
    "KeyChanges",
    "KeyFileSource",
    "KeySink",
    "KeySource",
    "KeySourceError",
    "LiveKeySource",
    "RateLimit",
    "RateLimits",
    "Rejected",
    "SourceKeys",
    "Verifier",
    "__version__",
    "add_openapi_security",
    "get_auth_status",
    "optional_verify_api_key",
    "require_scopes",
    "verify_api_key",
    "verify_api_key_string",
    "verify_api_key_with_metadata",
]
