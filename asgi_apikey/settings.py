"""Configuration from the environment, and the key file.

:class:`AuthSettings` is the pydantic-settings model of the variables in
README's configuration table. :func:`read_settings` turns its validation
errors into a :class:`ConfigurationError` that names the variable and the fix,
and never quotes a key. :func:`environment_keys` collects the keys of
``API_KEY``, ``ADDITIONAL_API_KEYS`` and the TOML file named by
``API_KEYS_FILE``, each labelled with where it came from, for error messages.

A key file holds digests only, never plain keys::

    [[keys]]
    digest = "sha256:<64 hex digits>"   # python -m asgi_apikey hash
    name = "billing"
    scopes = ["read"]
    metadata = { team = "payments" }
    not_before = 2026-01-01T00:00:00Z   # optional, inclusive
    expires_at = 2027-01-01T00:00:00Z   # optional, exclusive
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError
from .keys import APIKey

__all__ = [
    "ENVIRONMENTS",
    "AuthSettings",
    "environment_keys",
    "load_key_file",
    "read_settings",
    "variable",
]

ENVIRONMENTS = ("development", "testing", "staging", "production")
_MAX_KEY_FILE_BYTES = 64 * 1024 * 1024
_FILE_FIELDS = frozenset({"digest", "name", "scopes", "metadata", "not_before", "expires_at"})
_SECRET_FIELDS = frozenset({"api_key", "additional_api_keys"})


class AuthSettings(BaseSettings):
    """The environment variables asgi_apikey reads (constructor arguments win).

    Subclass it to read a ``.env`` file or to prefix the names, and pass the
    subclass as ``APIKeyAuth(settings=...)``::

        class Settings(AuthSettings):
            model_config = SettingsConfigDict(env_prefix="MYAPP_", env_file=".env")

    Empty variables count as unset.
    """

    model_config = SettingsConfigDict(case_sensitive=False, env_ignore_empty=True, extra="ignore")

    api_key: SecretStr | None = None
    """The primary key."""
    additional_api_keys: SecretStr | None = None
    """Further keys, comma-separated (for rotation)."""
    api_keys_file: Path | None = None
    """A TOML file of keys given as digests, with names, scopes, metadata and validity."""
    auth_mode: Literal["simple", "advanced"] = "simple"
    """``advanced`` carries per-key metadata into the AuthContext and turns user tracking on."""
    enable_user_tracking: bool | None = None
    """Default: on in advanced mode, off in simple mode."""
    enable_request_logging: bool = False
    environment: Literal["development", "testing", "staging", "production"] | None = None
    """Unset counts as ``development``. ``production`` refuses development mode and short keys."""

    @field_validator("auth_mode", "environment", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


def variable(settings: type[AuthSettings], field: str) -> str:
    """The environment variable behind ``field`` (``"api_key"`` -> ``"API_KEY"``)."""
    return (str(settings.model_config.get("env_prefix") or "") + field).upper()


def read_settings(settings: type[AuthSettings] = AuthSettings, **overrides: Any) -> AuthSettings:
    """Read the environment once (``overrides`` win); bad values raise ConfigurationError."""
    try:
        return settings(**overrides)
    except ValidationError as error:
        raise ConfigurationError(_explain(settings, error), setting="environment") from None


def _explain(settings: type[AuthSettings], error: ValidationError) -> str:
    lines = []
    for problem in error.errors(include_url=False):
        field = str(problem["loc"][0]) if problem["loc"] else ""
        name = variable(settings, field)
        # Only the values of non-secret variables are shown, and only briefly.
        shown = "" if field in _SECRET_FIELDS else f", not {str(problem.get('input'))[:60]!r}"
        if field == "auth_mode":
            lines.append(f"{name} must be 'simple' or 'advanced'{shown}")
        elif field == "environment":
            lines.append(f"{name} must be one of {', '.join(ENVIRONMENTS)}{shown}")
        elif field in ("enable_user_tracking", "enable_request_logging"):
            lines.append(f"{name} must be true or false (or 1/0, yes/no, on/off){shown}")
        elif field == "api_keys_file":
            lines.append(f"{name} must be the path of a TOML key file{shown}")
        else:
            lines.append(f"{name}: {problem['msg']}")
    return "; ".join(lines)


def environment_keys(settings: AuthSettings) -> list[tuple[str, APIKey]]:
    """The keys of ``API_KEY``, ``ADDITIONAL_API_KEYS`` and ``API_KEYS_FILE``, labelled."""
    cls = type(settings)
    found: list[tuple[str, APIKey]] = []
    if settings.api_key is not None:
        name = variable(cls, "api_key")
        found.append((name, _plain_key(settings.api_key.get_secret_value(), name)))
    if settings.additional_api_keys is not None:
        name = variable(cls, "additional_api_keys")
        items = [
            item.strip() for item in settings.additional_api_keys.get_secret_value().split(",")
        ]
        for number, item in enumerate(filter(None, items), start=1):
            label = f"{name} (key {number})"
            found.append((label, _plain_key(item, label)))
    if settings.api_keys_file is not None:
        found.extend(load_key_file(settings.api_keys_file, variable(cls, "api_keys_file")))
    return found


def _plain_key(secret: str, label: str) -> APIKey:
    try:
        return APIKey(secret)
    except ConfigurationError as error:
        hint = ""
        if "," in secret:
            hint = " (several keys? list the others, comma-separated, in ADDITIONAL_API_KEYS)"
        raise ConfigurationError(f"{label}: {error}{hint}", setting=label) from None


def load_key_file(path: str | Path, setting: str = "API_KEYS_FILE") -> list[tuple[str, APIKey]]:
    """The keys of a TOML key file, labelled ``"<file> keys[i]"``; errors name the fix."""
    path = Path(path)
    where = f"{setting} ({path})"
    try:
        if path.stat().st_size > _MAX_KEY_FILE_BYTES:
            raise ConfigurationError(
                f"{where} is larger than 64 MiB: is it the right file?", setting=setting
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"{where} does not exist: fix the path or unset {setting}", setting=setting
        ) from None
    except IsADirectoryError:
        raise ConfigurationError(
            f"{where} is a directory: point {setting} at the TOML key file", setting=setting
        ) from None
    except PermissionError:
        raise ConfigurationError(
            f"{where} is not readable by this process: fix its permissions", setting=setting
        ) from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{where} is not UTF-8 text", setting=setting) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # tomllib's messages give a line and column, never the text itself.
        raise ConfigurationError(f"{where} is not valid TOML: {error}", setting=setting) from None
    unknown = sorted(set(document) - {"keys"})
    if unknown:
        raise ConfigurationError(
            f"{where} has unknown top-level entries {unknown}: list keys as [[keys]] tables",
            setting=setting,
        )
    tables = document.get("keys", [])
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise ConfigurationError(
            f"{where}: 'keys' must be an array of tables, written [[keys]]", setting=setting
        )
    return [
        (f"{where} keys[{index}]", _file_key(table, f"{where} keys[{index}]", setting))
        for index, table in enumerate(tables)
    ]


def _file_key(table: dict[str, Any], label: str, setting: str) -> APIKey:
    if "secret" in table or "key" in table:
        raise ConfigurationError(
            f"{label} holds a plain key: a key file holds digests only. Replace it with "
            "digest = \"sha256:...\" ('python -m asgi_apikey hash' computes it) and take the "
            "plain key out of the file",
            setting=setting,
        )
    unknown = sorted(set(table) - _FILE_FIELDS)
    if unknown:
        raise ConfigurationError(
            f"{label} has unknown fields {unknown}: use {sorted(_FILE_FIELDS)}", setting=setting
        )
    if "digest" not in table:
        raise ConfigurationError(f'{label} has no digest = "sha256:..."', setting=setting)
    for when in ("not_before", "expires_at"):
        if when in table and not isinstance(table[when], datetime):
            raise ConfigurationError(
                f"{label} {when} must be an unquoted TOML date-time with an offset, "
                "such as 2027-01-01T00:00:00Z",
                setting=setting,
            )
    try:
        return APIKey(
            digest=table["digest"],
            name=table.get("name"),
            scopes=table.get("scopes", ()),
            metadata=table.get("metadata"),
            not_before=table.get("not_before"),
            expires_at=table.get("expires_at"),
        )
    except ConfigurationError as error:
        raise ConfigurationError(f"{label}: {error}", setting=setting) from None
