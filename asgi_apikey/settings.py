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

import contextlib
import os
import re
import stat
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from dotenv import dotenv_values
from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError
from .keys import APIKey

__all__ = [
    "ENVIRONMENTS",
    "STRICT_ENVIRONMENTS",
    "AuthSettings",
    "environment_keys",
    "load_key_file",
    "read_settings",
    "variable",
]

ENVIRONMENTS = ("development", "testing", "staging", "production")
#: The environments that refuse development mode and keys shorter than 16 characters.
STRICT_ENVIRONMENTS = ("staging", "production")
_MAX_KEY_FILE_BYTES = 64 * 1024 * 1024
_FILE_FIELDS = frozenset({"digest", "name", "scopes", "metadata", "not_before", "expires_at"})
_SECRET_FIELDS = frozenset({"api_key", "additional_api_keys"})
# The only bad values an error quotes: a short word (a typo such as 'prod' or
# 'maybe'). Anything else, digits included, may be a key pasted into the wrong
# variable, and 12 characters is below the 16 that staging and production accept.
_WORD = re.compile(r"[A-Za-z][A-Za-z_-]{0,11}")


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
    """Unset counts as ``development``, closed to other machines when no key is set.

    ``staging`` and ``production`` refuse development mode and short keys.
    """

    @field_validator("auth_mode", "environment", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


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
        elif field in ("enable_user_tracking", "enable_request_logging"):
            lines.append(f"{name} must be true or false (or 1/0, yes/no, on/off){shown}")
        else:  # a field a subclass added
            lines.append(f"{name}: {problem['msg']}")
    return "; ".join(lines), names or ["environment"]


def not_shown_unless_word(value: object) -> str:
    """``", not 'prod'"`` for a bad value that is a short word, else ``""``.

    A configuration error may quote what was given only when it cannot be a
    key: a word of at most 12 letters (``-`` and ``_`` allowed), no digits.

    >>> not_shown_unless_word("prod"), not_shown_unless_word("sk-live-0123456789abcdef")
    (", not 'prod'", '')
    """
    if isinstance(value, str) and _WORD.fullmatch(value):
        return f", not {value!r}"
    return ""


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


def load_key_file(path: str | Path, setting: str = "API_KEYS_FILE") -> list[tuple[str, APIKey]]:
    """The keys of a TOML key file, labelled ``"<file> keys[i]"``; errors name the fix."""
    keys, problem = _load(Path(path), setting)
    # Raised here, in a frame that holds none of the file and outside any except
    # block: error reporters record locals and __context__ (a UnicodeDecodeError
    # or TOMLDecodeError holds the text, which may hold a pasted plain key).
    if problem is not None:
        raise ConfigurationError(problem, setting=setting)
    return keys


def _load(path: Path, setting: str) -> tuple[list[tuple[str, APIKey]], str | None]:
    # The path is shown only when it looks like one: a key pasted into the
    # variable by mistake must not reach the logs.
    shown = str(path) if path.suffix.lower() == ".toml" or os.path.lexists(path) else None
    where = (
        f"{setting} ({shown})" if shown else f"{setting} (a path of {len(str(path))} characters)"
    )
    data, problem = _read_file(path, setting)
    if problem is None:
        text, problem = _decode(data)
    if problem is None:
        document, problem = _parse(text)
    if problem is not None:
        return [], f"{where} {problem}"
    unknown = set(document) - {"keys"}
    if unknown:
        entries = _names(unknown, "top-level entry", "top-level entries")
        return [], f"{where} has {entries}: list keys as [[keys]] tables"
    tables = document.get("keys", [])
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        return [], f"{where}: 'keys' must be an array of tables, written [[keys]]"
    keys = []
    for index, table in enumerate(tables):
        label = f"{where} keys[{index}]"
        key = _file_key(table, label)
        if isinstance(key, str):
            return [], key
        keys.append((label, key))
    return keys, None


def _read_file(path: Path, setting: str) -> tuple[bytes, str | None]:
    # A file rewritten in place while it is read would give half of the old text
    # and half of the new (or fewer keys, silently). Read again until a read
    # starts and ends on the same unchanged file, or give up keeping the old keys.
    for attempt in range(1, _READ_ATTEMPTS + 1):
        data, problem, steady = _read_once(path, setting)
        if problem is not None or steady:
            return data, problem
        time.sleep(0.01 * attempt)
    return b"", (
        f"changed while it was read, {_READ_ATTEMPTS} times in a row: it is being rewritten "
        "in place. Write the new file beside it and rename it over the old one (an atomic "
        "replace), then reload"
    )


_READ_ATTEMPTS = 5


def _identity(status: os.stat_result) -> tuple[int, int, int, int]:
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _read_once(path: Path, setting: str) -> tuple[bytes, str | None, bool]:
    """The bytes of the file, what is wrong with it, and whether it held still meanwhile."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return b"", f"does not exist: fix the path or unset {setting}", True
    except PermissionError:
        return b"", "is not readable by this process: fix its permissions", True
    except OSError as error:
        return (
            b"",
            f"cannot be opened ({error.strerror}): point {setting} at the TOML key file",
            True,
        )
    before = os.fstat(descriptor)
    mode = before.st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        if stat.S_ISDIR(mode):
            return b"", f"is a directory: point {setting} at the TOML key file", True
        return b"", f"is not a regular file: point {setting} at the TOML key file", True
    try:
        with os.fdopen(descriptor, "rb") as handle:
            data = _read_all(handle)
            after = os.fstat(handle.fileno())
    except OSError as error:
        return b"", f"cannot be read ({error.strerror})", True
    if len(data) > _MAX_KEY_FILE_BYTES:
        return b"", "is larger than 64 MiB: is it the right file?", True
    try:
        now = os.stat(path)  # still the same file at that path (not renamed over since)?
    except OSError:
        return data, None, False
    identity = _identity(before)
    steady = identity == _identity(after) == _identity(now) and len(data) == before.st_size
    return data, None, steady


def _read_all(handle: BinaryIO) -> bytes:
    return handle.read(_MAX_KEY_FILE_BYTES + 1)


def _decode(data: bytes) -> tuple[str, str | None]:
    try:
        return data.decode("utf-8-sig"), None  # a byte order mark is harmless
    except UnicodeDecodeError as error:
        position = error.start
    return "", f"is not UTF-8 text (byte {position}): save it as UTF-8"


_POSITION = re.compile(r"\(at (line \d+, column \d+|end of document)\)")


def _parse(text: str) -> tuple[dict[str, Any], str | None]:
    try:
        return tomllib.loads(text), None
    except RecursionError:
        return {}, "is nested too deeply to be a key file"
    except tomllib.TOMLDecodeError as error:
        # Only the position: tomllib's messages may quote names from the file,
        # and a plain key pasted as a name would then reach the logs.
        found = _POSITION.search(str(error))
    where = found.group(1) if found else "somewhere"
    return {}, f"is not valid TOML (at {where}): fix the syntax there"


_FIELD_NAME = re.compile(r"[a-z_]{1,24}")


def _names(names: set[str], one: str, many: str) -> str:
    # Typos such as 'expire_at' are shown; anything else (a pasted key?) is counted.
    shown = sorted(name for name in names if _FIELD_NAME.fullmatch(name))
    hidden = len(names) - len(shown)
    parts = [repr(name) for name in shown]
    if hidden:
        parts.append(f"{hidden} other{'s' if hidden > 1 else ''} not shown")
    return f"unknown {one if len(names) == 1 else many} {', '.join(parts)}"


def _file_key(table: dict[str, Any], label: str) -> APIKey | str:
    """The key of one [[keys]] table, or what is wrong with it."""
    if "secret" in table or "key" in table:
        return (
            f"{label} holds a plain key: a key file holds digests only. Replace it with "
            "digest = \"sha256:...\" ('python -m asgi_apikey hash' computes it) and take the "
            "plain key out of the file"
        )
    unknown = set(table) - _FILE_FIELDS
    if unknown:
        return f"{label} has {_names(unknown, 'field', 'fields')}: use {sorted(_FILE_FIELDS)}"
    if "digest" not in table:
        return f'{label} has no digest = "sha256:..."'
    for when in ("not_before", "expires_at"):
        if when in table and not isinstance(table[when], datetime):
            return (
                f"{label} {when} must be an unquoted TOML date-time with an offset, "
                "such as 2027-01-01T00:00:00Z"
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
        return f"{label}: {error}"
