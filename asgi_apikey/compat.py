"""The starter template's module-level names, for code migrating from it.

:func:`verify_api_key_string` and :func:`get_auth_status` ask an
authenticator given to them or, without one, the process default: the
authenticator of the ``APIKeyMiddleware`` built last or the last one
:meth:`APIKeyAuth.from_env` returned, whichever came last
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

__all__ = ["get_auth_status", "set_default", "verify_api_key_string"]


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
    is a key, so this is ``False``.

    >>> verify_api_key_string("sk-x", APIKeyAuth(keys=["sk-test-0123456789abcdef"]))
    False
    """
    return (auth or _get_default()).verify(token) is not None


def get_auth_status(auth: APIKeyAuth | None = None) -> dict[str, Any]:
    """The starter template's status shape, from :meth:`APIKeyAuth.status`.

    ``{"auth_config": {"mode", "features"}, "api_keys_configured", "development_mode"}``;
    ``auth`` defaults as in :func:`verify_api_key_string`.
    """
    current = auth or _get_default()
    features = current.features()
    return {
        "auth_config": {
            "mode": current.configuration.mode,
            "features": {
                name: features[name]
                for name in (
                    "user_context",
                    "permissions",
                    "rate_limiting",
                    "user_tracking",
                    "request_logging",
                )
            },
        },
        "api_keys_configured": len(current.key_ids),
        "development_mode": current.is_development_mode,
    }
