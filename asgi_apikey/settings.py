"""Configuration from the environment.

:class:`AuthSettings` is the pydantic-settings model of the variables in
README's configuration table. :func:`read_settings` turns its validation
errors into a :class:`ConfigurationError` that names the variable and the fix,
and never quotes a key. :func:`environment_keys` collects the keys of
``API_KEY``, ``ADDITIONAL_API_KEYS`` and the TOML file named by
``API_KEYS_FILE`` (read by ``keyfile.py``), each labelled with where it came
from, for error messages. :func:`auth_info` is the starter template's
``AuthConfig.get_auth_info()``, which :class:`AuthSettings` answers too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError, not_shown_unless_word
from .keyfile import load_key_file
from .keys import APIKey

__all__ = [
    "ENVIRONMENTS",
    "STRICT_ENVIRONMENTS",
    "AuthSettings",
    "auth_info",
    "environment_keys",
    "load_key_file",
    "read_settings",
    "variable",
]

ENVIRONMENTS = ("development", "testing", "staging", "production")
#: The environments that refuse development mode and keys shorter than 16 characters.
STRICT_ENVIRONMENTS = ("staging", "production")
_SECRET_FIELDS = frozenset({"api_key", "additional_api_keys"})


class AuthSettings(BaseSettings):
    """The environment variables asgi_apikey reads (constructor arguments win).

    Subclass it to read a ``.env`` file or to prefix the names, and pass the
    subclass as ``APIKeyAuth(settings=...)``::

        class Settings(AuthSettings):
            model_config = SettingsConfigDict(env_prefix="MYAPP_", env_file=".env")

    Empty variables count as unset. Whitespace around ``API_KEY`` and
    ``ADDITIONAL_API_KEYS`` is stripped (a secret file's final newline, a
    copy-paste slip), as the starter template did; a key variable that holds only
    whitespace is set but empty, like ``API_KEY=``: a key source with no key.

    It also answers what the starter template's ``AuthConfig`` did
    (:attr:`simple_mode`, :attr:`user_tracking`, :attr:`supports_user_context`,
    :attr:`supports_permissions`, :attr:`supports_rate_limiting`,
    :meth:`get_auth_info`):

    >>> AuthSettings(auth_mode="advanced").supports_user_context
    True
    """

    model_config = SettingsConfigDict(case_sensitive=False, env_ignore_empty=True, extra="ignore")

    api_key: SecretStr | None = None
    """The primary key."""
    additional_api_keys: SecretStr | None = None
    """Further keys, comma-separated (for rotation)."""
    api_keys_file: Path | None = None
    """A TOML file of keys given as digests, with names, scopes, metadata and validity."""
    auth_mode: Literal["simple", "advanced"] = "simple"
    """``advanced`` turns user tracking on by default; a key's metadata is carried in either."""
    enable_user_tracking: bool | None = None
    """Default: on in advanced mode, off in simple mode (:attr:`user_tracking` resolves it)."""
    enable_request_logging: bool = False
    enforce_auth: bool = False
    """The starter template's ``ENFORCE_AUTH``: true applies the production rules (no
    development mode, no short keys) whatever ``ENVIRONMENT`` says."""
    environment: Literal["development", "testing", "staging", "production"] | None = None
    """Unset counts as ``development``, closed to other machines when no key is set.

    ``staging`` and ``production`` refuse development mode and short keys.
    """

    @field_validator(
        "auth_mode",
        "environment",
        "enable_user_tracking",
        "enable_request_logging",
        "enforce_auth",
        mode="before",
    )
    @classmethod
    def _normalised(cls, value: object) -> object:
        # Any case, and whitespace around: a secret file or a .env line keeps its newline.
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("api_key", "additional_api_keys", mode="before")
    @classmethod
    def _strip_keys(cls, value: object) -> object:
        # Never raises and never logs: the value is a secret. Only whitespace left
        # is a missing secret, so it reads as unset and the variable, being set,
        # counts as an empty key source (see sources.empty_key_variables).
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            return value.strip() or None
        return value

    # -- the starter template's AuthConfig, answered from the settings ----------------

    @property
    def simple_mode(self) -> bool:
        """``AUTH_MODE`` is ``simple`` (the default)."""
        return self.auth_mode == "simple"

    @property
    def user_tracking(self) -> bool:
        """``ENABLE_USER_TRACKING``, or its default: on in advanced mode only.

        The template's ``AuthConfig.enable_user_tracking``; the field of that
        name here is ``None`` when the variable is unset.
        """
        tracking = self.enable_user_tracking
        return tracking if tracking is not None else not self.simple_mode

    @property
    def supports_user_context(self) -> bool:
        """Advanced mode, as the template answered."""
        return not self.simple_mode

    @property
    def supports_permissions(self) -> bool:
        """Always: every key has scopes, enforced by path rules and ``require_scopes``."""
        return True

    @property
    def supports_rate_limiting(self) -> bool:
        """False: rate limits are configured on the middleware (``RateLimits``), not in
        settings; ``APIKeyAuth.supports("rate_limiting")`` says whether they are in force."""
        return False

    def get_auth_info(self) -> dict[str, Any]:
        """``{"mode", "features"}``, as ``get_auth_status()["auth_config"]`` reports it.

        >>> AuthSettings(auth_mode="simple").get_auth_info()["mode"]
        'simple'
        """
        return auth_info(
            self.auth_mode,
            user_tracking=self.user_tracking,
            request_logging=self.enable_request_logging,
        )


def auth_info(
    mode: str, *, user_tracking: bool, request_logging: bool, rate_limiting: bool = False
) -> dict[str, Any]:
    """The starter template's ``AuthConfig.get_auth_info()`` for these options.

    ``permissions`` is always on (every key has scopes) and ``rate_limiting``
    says whether limits are in force (they are the middleware's, not
    settings'), where the template tied both to advanced mode.

    >>> features = auth_info("simple", user_tracking=False, request_logging=True)["features"]
    >>> features["user_context"], features["permissions"], features["rate_limiting"]
    (False, True, False)
    """
    return {
        "mode": mode,
        "features": {
            "user_context": mode == "advanced",
            "permissions": True,
            "rate_limiting": rate_limiting,
            "user_tracking": user_tracking,
            "request_logging": request_logging,
        },
    }


def variable(settings: type[AuthSettings], field: str) -> str:
    """The environment variable behind ``field`` (``"api_key"`` -> ``"API_KEY"``)."""
    return (str(settings.model_config.get("env_prefix") or "") + field).upper()


def given_variables(settings: type[AuthSettings]) -> set[str]:
    """Every variable name ``settings`` would read that is set, empty or not, in upper case.

    The process environment, the ``env_file`` files and the ``secrets_dir``
    files: ``API_KEY=`` in any of them is a key variable that is set (to
    nothing), which reading the settings cannot tell from one that is unset.
    """
    given = {name.upper() for name in os.environ}
    config = settings.model_config
    for file in _paths_of(config.get("env_file")):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if file.is_file():
                values = dotenv_values(file, encoding=config.get("env_file_encoding") or "utf-8")
                given.update(name.upper() for name in values)
    for directory in _paths_of(config.get("secrets_dir")):
        with contextlib.suppress(OSError):
            if directory.is_dir():
                given.update(entry.name.upper() for entry in directory.iterdir())
    return given


def _paths_of(value: object) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, str | os.PathLike):
        return [Path(value).expanduser()]
    if isinstance(value, list | tuple):
        return [Path(item).expanduser() for item in value if isinstance(item, str | os.PathLike)]
    return []


def read_settings(settings: type[AuthSettings] = AuthSettings, **overrides: Any) -> AuthSettings:
    """Read the environment once (``overrides`` win); bad values raise ConfigurationError."""
    _refuse_double_spellings(settings)
    try:
        return settings(**overrides)
    except ValidationError as error:
        message, names = _explain(settings, error)
    # Raised outside the except block, so the error carries no ValidationError
    # (whose text quotes the values) as its __context__.
    raise ConfigurationError(message, setting=names[0], variables=names)


def _refuse_double_spellings(settings: type[AuthSettings]) -> None:
    # Names are case-insensitive, so ENVIRONMENT and environment are one variable;
    # with both set, the one that happened to come last would silently win.
    for field in AuthSettings.model_fields:
        name = variable(settings, field)
        spellings = sorted(key for key in os.environ if key.upper() == name)
        if len(spellings) > 1:
            raise ConfigurationError(
                f"{name} is set more than once, as {', '.join(spellings)}: keep one",
                setting=name,
            )


def _explain(settings: type[AuthSettings], error: ValidationError) -> tuple[str, list[str]]:
    lines, names = [], []
    for problem in error.errors(include_url=False):
        field = str(problem["loc"][0]) if problem["loc"] else ""
        name = variable(settings, field)
        names.append(name)
        # Only short words of non-secret variables are shown: anything else may be a
        # key pasted into the wrong variable.
        shown = "" if field in _SECRET_FIELDS else not_shown_unless_word(problem.get("input"))
        if field == "auth_mode":
            lines.append(f"{name} must be 'simple' or 'advanced'{shown}")
        elif field == "environment":
            lines.append(f"{name} must be one of {', '.join(ENVIRONMENTS)}{shown}")
        elif field in ("enable_user_tracking", "enable_request_logging", "enforce_auth"):
            lines.append(f"{name} must be true or false (or 1/0, yes/no, on/off){shown}")
        else:  # a field a subclass added
            lines.append(f"{name}: {problem['msg']}")
    return "; ".join(lines), names or ["environment"]


def environment_keys(settings: AuthSettings) -> list[tuple[str, APIKey]]:
    """The keys of ``API_KEY``, ``ADDITIONAL_API_KEYS`` and ``API_KEYS_FILE``, labelled."""
    cls = type(settings)
    found: list[tuple[str, APIKey]] = []
    additional = variable(cls, "additional_api_keys")
    # The helpers return a message instead of raising, so that no frame of the
    # traceback holds a plain key in its locals (error reporters record them).
    problem = None
    if settings.api_key is not None:
        problem = _add_keys(found, settings.api_key, variable(cls, "api_key"), additional)
    if problem is None and settings.additional_api_keys is not None:
        value = settings.additional_api_keys
        problem = _add_keys(found, value, additional, additional, several=True)
    if problem is not None:
        raise ConfigurationError(problem[0], setting=problem[1])
    if settings.api_keys_file is not None:
        found.extend(load_key_file(settings.api_keys_file, variable(cls, "api_keys_file")))
    return found


def _add_keys(
    found: list[tuple[str, APIKey]],
    value: SecretStr,
    name: str,
    additional: str,
    *,
    several: bool = False,
) -> tuple[str, str] | None:
    """Append the keys of one variable; on a bad one return (message, label)."""
    text = value.get_secret_value()
    items = [item.strip() for item in text.split(",")] if several else [text]
    for number, secret in enumerate(filter(None, items), start=1):
        label = f"{name} (key {number})" if several else name
        try:
            found.append((label, APIKey(secret)))
        except ConfigurationError as error:
            hint = ""
            if "," in secret:
                hint = f" (several keys? list the others, comma-separated, in {additional})"
            return f"{label}: {error}{hint}", label
    return None
