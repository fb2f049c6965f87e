"""The starter template's module, name for name, for code migrating from it.

``from app.infrastructure.security.auth import X`` becomes
``from asgi_apikey.compat import X`` for every name that has a counterpart
here: :class:`AuthConfig`, :class:`~asgi_apikey.APIKeyAuth`, the dependencies
(``verify_api_key``, ``verify_api_key_http``, ``optional_verify_api_key``,
``verify_api_key_with_metadata``), :func:`verify_api_key_string`,
:func:`get_auth_status`, :func:`is_development_mode`, :func:`supports_feature`
and the two errors. The guide (docs/guides/migration.md) gives the
replacement of every other name, and what behaves differently.

None of this is on the request path: the middleware decides, these read.
The functions ask an authenticator given to them or, without one, the process
default: the authenticator of the ``APIKeyMiddleware`` built last or the last
one :meth:`APIKeyAuth.from_env` returned, whichever came last
(:func:`set_default`). New code holds its ``APIKeyAuth`` and asks it.

>>> auth = APIKeyAuth(keys=["sk-test-0123456789abcdef"])
>>> verify_api_key_string("sk-test-0123456789abcdef", auth)
True
>>> get_auth_status(auth)["api_keys_configured"]
1
"""

from __future__ import annotations

from typing import Any

from . import auth as _auth
from .auth import APIKeyAuth, set_default
from .dependencies import optional_verify_api_key, verify_api_key, verify_api_key_with_metadata
from .errors import AuthenticationError, ConfigurationError
from .settings import AuthSettings, auth_info, read_settings

__all__ = [
    "APIKeyAuth",
    "AuthConfig",
    "AuthenticationError",
    "ConfigurationError",
    "get_auth_status",
    "is_development_mode",
    "optional_verify_api_key",
    "set_default",
    "supports_feature",
    "verify_api_key",
    "verify_api_key_http",
    "verify_api_key_string",
    "verify_api_key_with_metadata",
]

#: The template's wrapper that turned its errors into ``HTTPException``: the
#: helpers' errors are FastAPI's ``HTTPException`` already, so it is
#: :func:`~asgi_apikey.verify_api_key` itself.
verify_api_key_http = verify_api_key


class AuthConfig:
    """The starter template's ``AuthConfig``: the mode and the two flags, read once.

    Without an argument it reads the environment (``AUTH_MODE``,
    ``ENABLE_USER_TRACKING``, ``ENABLE_REQUEST_LOGGING``) as
    :class:`~asgi_apikey.AuthSettings` does, bad values raising
    :class:`~asgi_apikey.ConfigurationError`; give it an ``AuthSettings``
    instance or subclass, or use :meth:`of` for what an authenticator was built
    with. As in the template, ``enable_user_tracking`` is a plain ``bool``
    (here its default follows the mode) and the attributes may be reassigned.

    >>> config = AuthConfig(AuthSettings(auth_mode="advanced", enable_user_tracking=False))
    >>> config.simple_mode, config.supports_user_context, config.enable_user_tracking
    (False, True, False)
    >>> config.get_auth_info()["mode"]
    'advanced'
    """

    def __init__(self, settings: AuthSettings | type[AuthSettings] = AuthSettings) -> None:
        read = settings if isinstance(settings, AuthSettings) else read_settings(settings)
        self.simple_mode: bool = read.simple_mode
        self.enable_user_tracking: bool = read.user_tracking
        self.enable_request_logging: bool = read.enable_request_logging
        self._rate_limiting = False  # settings alone enforce no limit

    @classmethod
    def of(cls, auth: APIKeyAuth) -> AuthConfig:
        """The configuration ``auth`` was built with (its ``mode=`` and flag arguments included).

        >>> AuthConfig.of(APIKeyAuth(["sk-test-0123456789abcdef"], mode="advanced")).simple_mode
        False
        """
        options = auth.configuration
        config = cls.__new__(cls)
        config.simple_mode = options.mode == "simple"
        config.enable_user_tracking = options.user_tracking
        config.enable_request_logging = options.request_logging
        config._rate_limiting = auth.supports("rate_limiting")
        return config

    @property
    def supports_user_context(self) -> bool:
        """Advanced mode, as in the template."""
        return not self.simple_mode

    @property
    def supports_permissions(self) -> bool:
        """Always: every key has scopes (the template said advanced mode only)."""
        return True

    @property
    def supports_rate_limiting(self) -> bool:
        """Whether rate limits are in force: for :meth:`of` an authenticator whose
        middleware has ``rate_limits`` (or a key with a ``limit``); never from settings alone."""
        return self._rate_limiting

    def get_auth_info(self) -> dict[str, Any]:
        """``{"mode", "features"}``, the shape of ``get_auth_status()["auth_config"]``."""
        return auth_info(
            "simple" if self.simple_mode else "advanced",
            user_tracking=self.enable_user_tracking,
            request_logging=self.enable_request_logging,
            rate_limiting=self._rate_limiting,
        )

    def __repr__(self) -> str:
        return (
            f"AuthConfig(simple_mode={self.simple_mode}, "
            f"enable_user_tracking={self.enable_user_tracking}, "
            f"enable_request_logging={self.enable_request_logging})"
        )


def _get_default() -> APIKeyAuth:
    with _auth._default_lock:
        current = _auth._default
    return current if current is not None else APIKeyAuth.from_env()


def verify_api_key_string(token: str, auth: APIKeyAuth | None = None) -> bool:
    """Whether ``token`` is an accepted key right now.

    Without ``auth`` it asks the authenticator of the ``APIKeyMiddleware``
    built last (however it was configured) or the last one
    :meth:`APIKeyAuth.from_env` returned, whichever came last; with neither,
    it builds one with :meth:`APIKeyAuth.from_env`. In development mode no token
    is a key, so this is ``False``; so it is for anything but a string.

    >>> verify_api_key_string("sk-x", APIKeyAuth(keys=["sk-test-0123456789abcdef"]))
    False
    """
    return (auth or _get_default()).verify(token) is not None


def get_auth_status(auth: APIKeyAuth | None = None) -> dict[str, Any]:
    """The starter template's status shape, from :meth:`APIKeyAuth.status`.

    ``{"auth_config": {"mode", "features"}, "api_keys_configured", "development_mode"}``;
    ``auth_config`` is :meth:`AuthConfig.get_auth_info` of the authenticator's
    configuration. ``auth`` defaults as in :func:`verify_api_key_string`.
    """
    current = auth or _get_default()
    return {
        "auth_config": AuthConfig.of(current).get_auth_info(),
        "api_keys_configured": len(current.key_ids),
        "development_mode": current.is_development_mode,
    }


def is_development_mode(auth: APIKeyAuth | None = None) -> bool:
    """Whether the authenticator runs in development mode (no key source configured).

    ``auth`` defaults as in :func:`verify_api_key_string`.

    >>> is_development_mode(APIKeyAuth(keys=["sk-test-0123456789abcdef"]))
    False
    """
    return (auth or _get_default()).is_development_mode


def supports_feature(feature: str, auth: APIKeyAuth | None = None) -> bool:
    """Whether ``feature`` is on; ``False`` for a name it does not know, as in the template.

    :meth:`APIKeyAuth.supports` raises ``ValueError`` for an unknown name
    instead: prefer it in new code, where a typo should not read as "off".
    ``auth`` defaults as in :func:`verify_api_key_string`.

    >>> auth = APIKeyAuth(keys=["sk-test-0123456789abcdef"])
    >>> supports_feature("permissions", auth), supports_feature("teleport", auth)
    (True, False)
    """
    return (auth or _get_default()).features().get(feature, False)
