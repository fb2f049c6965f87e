"""What the store holds and announces: its names in Redis, key records and change messages.

Pure encoding and decoding, with no I/O: a record is the JSON of one key
without its secret (the field is the key's SHA-256 digest), and a change
message names a version, an epoch and a digest. Whatever comes from Redis is
checked here before it can become a key.

>>> names = Names.of("billing")
>>> names.keys, names.channel
('{billing}:keys', '{billing}:changes')
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..audit import emit, loggable
from ..errors import ConfigurationError, not_shown_unless_word
from ..keys import APIKey
from ..ratelimit.limits import RateLimit

DEFAULT_PREFIX = "asgi_apikey"
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
HEX = re.compile(rb"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Names:
    """The store's names in Redis, under one hash tag (a cluster keeps them in one slot)."""

    keys: str
    ids: str
    version: str
    epoch: str
    channel: str

    @classmethod
    def of(cls, prefix: object) -> Names:
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
            raise ConfigurationError(
                "prefix must be 1 to 64 letters, digits or _ . : - (the default is "
                f"{DEFAULT_PREFIX!r}){not_shown_unless_word(prefix)}",
                setting="prefix",
            )
        tag = "{" + prefix + "}"  # a cluster hashes only what is inside the braces
        names = ("keys", "ids", "version", "epoch", "changes")
        return cls(*(f"{tag}:{name}" for name in names))

    @property
    def script_keys(self) -> list[str]:
        """The KEYS of every script (see ``scripts.py``), in their order."""
        return [self.keys, self.ids, self.version, self.epoch]


# -- key records -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What the store holds of one key: everything but the key itself (and its digest).

    ``limit`` is the key's own rate limit, ``None`` when the configured default applies.
    """

    key_id: str
    name: str | None
    scopes: tuple[str, ...]
    metadata: Mapping[str, Any]
    not_before: datetime | None
    expires_at: datetime | None
    created_at: datetime | None
    limit: RateLimit | None = None

    def state(self, now: datetime | None = None) -> str:
        """``"active"``, ``"expired"`` or ``"not_yet_valid"`` at ``now`` (default: now)."""
        now = now or datetime.now(UTC)
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.not_before is not None and now < self.not_before:
            return "not_yet_valid"
        return "active"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``keys list --json``."""
        instant = {n: getattr(self, n) for n in ("not_before", "expires_at", "created_at")}
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": list(self.scopes),
            "metadata": dict(self.metadata),
            **{n: v.isoformat() if v is not None else None for n, v in instant.items()},
            "state": self.state(),
            "limit": self.limit.as_data() if self.limit is not None else None,
        }


def record(key: APIKey, created_at: datetime) -> str:
    """The JSON record of ``key``, without its secret; its metadata must be JSON.

    Its limit is kept in its data form (:meth:`RateLimit.as_data`), or ``null``.
    """
    limit = _limit_data(key)
    try:
        metadata = json.dumps(dict(key.metadata))
    except (TypeError, ValueError):
        metadata = None
    if metadata is None:
        raise ConfigurationError(
            f"metadata of key {key.key_id!r} must be JSON (strings, numbers, booleans, "
            "lists and objects) to be kept in Redis",
            key_id=key.key_id,
        )
    return json.dumps(
        {
            "key_id": key.key_id,
            "name": key.name,
            "scopes": sorted(key.scopes),
            "metadata": json.loads(metadata),
            "not_before": _iso(key.not_before),
            "expires_at": _iso(key.expires_at),
            "created_at": _iso(created_at),
            "limit": limit,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def _limit_data(key: APIKey) -> str | dict[str, Any] | None:
    if key.limit is None:
        return None
    data = key.limit.as_data()
    # A rate built in code may have a period that its text cannot name (a fraction of a
    # second); every follower would refuse that record, so the store refuses the key.
    try:
        same = RateLimit.from_data(data) == key.limit
    except ConfigurationError:
        same = False
    if not same:
        raise ConfigurationError(
            f"limit of key {key.key_id!r} has a period that a record cannot hold: give the "
            "rate as text, such as '100/minute' or '5/15m' (whole seconds)",
            key_id=key.key_id,
            setting="limit",
        )
    return data


def _iso(instant: datetime | None) -> str | None:
    return instant.isoformat() if instant is not None else None


def _instant(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("not an ISO 8601 string")
    return datetime.fromisoformat(value)


def decode(field: bytes, value: bytes) -> tuple[APIKey, dict[str, Any]] | None:
    """The key of one record of the keys hash, or None (logged) when it is not one."""
    problem = "its field is not a lowercase SHA-256 hex digest"
    if HEX.fullmatch(field):
        try:
            data = json.loads(value)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            key = APIKey(
                digest="sha256:" + field.decode("ascii"),
                name=data.get("name"),
                scopes=data.get("scopes") or (),
                metadata=data.get("metadata"),
                not_before=_instant(data.get("not_before")),
                expires_at=_instant(data.get("expires_at")),
                limit=data.get("limit"),  # absent in records written before limits: None
            )
        except (ValueError, TypeError, RecursionError) as error:
            # The message is our own (ConfigurationError) or names a JSON position;
            # neither quotes a secret, and Redis holds none.
            problem = f"{type(error).__name__}: {str(error)[:200]}"
        else:
            return key, data
    emit(
        "error",
        "key_record_invalid",
        {
            # Both come from Redis: whoever can write there must not write the log too.
            "field": loggable(field[:64].decode("ascii", "backslashreplace"), 100),
            "problem": loggable(problem, 300),
            "detail": "a record in the Redis key store is not a key; it is skipped (refused)",
        },
    )
    return None


def stored(key: APIKey, data: Mapping[str, Any]) -> StoredKey:
    """What the store says of ``key``, given its decoded record ``data``."""
    try:
        created = _instant(data.get("created_at"))
    except ValueError:
        created = None
    return StoredKey(
        key_id=key.key_id,
        name=key.name,
        scopes=tuple(sorted(key.scopes)),
        metadata=key.metadata,
        not_before=key.not_before,
        expires_at=key.expires_at,
        created_at=created,
        limit=key.limit,
    )


# -- the version and the change messages -------------------------------------------------


def version_of(value: object) -> int:
    """The store's version: a missing one is 0; one that is not a count is refused.

    >>> version_of(None), version_of(b"42")
    (0, 42)
    """
    if value is None:
        return 0
    if isinstance(value, bytes) and value.isdigit() and len(value) < 20:
        return int(value)
    raise ValueError("the store's version is not a non-negative integer")


def change(data: object) -> tuple[int, bytes, bytes] | None:
    """A published change as (version, epoch, digest hex), or None if it is not one."""
    try:
        message = json.loads(data)  # type: ignore[arg-type]
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(message, dict):
        return None
    version, epoch, op, digest = (message.get(k) for k in ("v", "e", "op", "digest"))
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or version < 1
        or not isinstance(epoch, str)
        or not epoch.isascii()
        or op not in ("add", "revoke")
        or not isinstance(digest, str)
        or not HEX.fullmatch(digest.encode("ascii", "replace"))
    ):
        return None
    return version, epoch.encode("ascii"), digest.encode("ascii")
