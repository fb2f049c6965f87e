"""The key file: a TOML file of digests, read whole and checked, never half-written.

A key file holds digests only, never plain keys::

    [[keys]]
    digest = "sha256:<64 hex digits>"   # python -m asgi_apikey hash
    name = "billing"
    scopes = ["read"]
    metadata = { team = "payments" }
    not_before = 2026-01-01T00:00:00Z   # optional, inclusive
    expires_at = 2027-01-01T00:00:00Z   # optional, exclusive
    limit = "100/minute"                # optional: the key's own rate limit, or
    # limit = { rate = "100/minute", burst = 20, quota = "10000/day" }, or "unlimited"

:func:`load_key_file` reads it again when it changed while it was read (a
writer rewriting it in place), and its errors name the fix without quoting
the file's text, which may hold a plain key pasted by mistake.
"""

from __future__ import annotations

import os
import re
import stat
import time
import tomllib
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, BinaryIO

from .collector import release
from .errors import ConfigurationError
from .keys import APIKey
from .ratelimit.limits import as_rate_limit

__all__ = ["load_key_file"]

# A million keys with a digest and a name take about 111 MiB; a file far larger is
# more likely the wrong file (a log, a dump) than a key set.
_MAX_KEY_FILE_BYTES = 256 * 1024 * 1024
_FILE_FIELDS = frozenset(
    {"digest", "name", "scopes", "metadata", "not_before", "expires_at", "limit"}
)


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
    if problem is not None:
        return [], f"{where} {problem}"
    tables = _in_pieces(data)
    if tables is None:
        tables, problem = _whole(data)
    del data  # up to 256 MiB: not kept while the keys are made
    if problem is not None:
        return [], where + problem
    keys = []
    for index, table in enumerate(tables):
        label = f"{where} keys[{index}]"
        key = _file_key(table, label)
        if isinstance(key, str):
            return [], key
        keys.append((label, key))
    release(tables)  # a million parsed tables: freed a slice at a time (collector.py)
    return keys, None


def _whole(data: bytes) -> tuple[list[Any], str | None]:
    """The [[keys]] tables of the whole file, or what is wrong with it (after its name)."""
    text, problem = _decode(data)
    if problem is None:
        document, problem = _parse(text)
    if problem is not None:
        return [], f" {problem}"
    unknown = set(document) - {"keys"}
    if unknown:
        entries = _names(unknown, "top-level entry", "top-level entries")
        return [], f" has {entries}: list keys as [[keys]] tables"
    tables = document.get("keys", [])
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        return [], ": 'keys' must be an array of tables, written [[keys]]"
    return tables, None


#: About how many bytes of a large key file are decoded and parsed at a time.
_PIECE_BYTES = 1024 * 1024
_HEADER = b"\n[[keys]]"
# A [[keys]] line at the start (after a byte order mark, if any) or after a line break.
_FIRST_HEADER = re.compile(rb"(?:^(?:\xef\xbb\xbf)?|\n)\[\[keys\]\]\r?\n")


def _in_pieces(data: bytes) -> list[Any] | None:
    """The [[keys]] tables of a large file, parsed a piece at a time; None: parse it whole.

    Decoding and parsing 111 MiB (a million keys) whole are calls that each
    hold the GIL for a tenth of a second or more, while the event loop waits
    (:meth:`~asgi_apikey.APIKeyAuth.areload` reads in a thread). So the file
    is cut before a ``[[keys]]`` line about every MiB, and each piece is
    decoded and parsed alone, which gives what the whole file gives when the
    pieces hold nothing but ``[[keys]]`` tables: the first piece has a
    ``[[keys]]`` line, each other starts with one, and each parses to ``keys``
    alone. Anything else (another top-level entry, a cut inside a multi-line
    string, a syntax error, bytes that are not UTF-8) is left to the
    whole-file parse, whose error says where.
    """
    cuts = [0]
    at = _PIECE_BYTES
    while at < len(data):
        cut = data.find(_HEADER, at)
        if cut < 0:
            break
        after = data[cut + len(_HEADER) : cut + len(_HEADER) + 2]
        if after[:1] == b"\n" or after == b"\r\n":
            cuts.append(cut + 1)
            at = cut + 1 + _PIECE_BYTES
        else:
            at = cut + 1
    if len(cuts) == 1 or not _FIRST_HEADER.search(data, 0, cuts[1]):
        return None
    cuts.append(len(data))
    tables: list[Any] = []
    for start, end in pairwise(cuts):
        try:
            text = data[start:end].decode("utf-8-sig" if start == 0 else "utf-8")
            document = tomllib.loads(text)
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
            return None  # the whole-file parse says what is wrong, and where
        found = document.get("keys")
        if len(document) != 1 or not isinstance(found, list):
            return None
        tables.extend(found)
    return tables


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
        return b"", "is larger than 256 MiB: is it the right file?", True
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
        # Checked here first, so that its errors read '<file> keys[i] limit ...'.
        limit = as_rate_limit(table.get("limit"), f"{label} limit")
    except ConfigurationError as error:
        return str(error)
    try:
        return APIKey(
            digest=table["digest"],
            name=table.get("name"),
            scopes=table.get("scopes", ()),
            metadata=table.get("metadata"),
            not_before=table.get("not_before"),
            expires_at=table.get("expires_at"),
            limit=limit,
        )
    except ConfigurationError as error:
        return f"{label}: {error}"
