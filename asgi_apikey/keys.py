"""Keys and key sets: digests, validity windows, O(1) lookup.

A key is kept only as the SHA-256 digest of its UTF-8 bytes. A request hashes
the presented token once, looks the digest up in a dict (O(1) whatever the
number of keys) and confirms the match with :func:`hmac.compare_digest`.
Because the lookup is on a digest of the token, its timing says nothing about
how much of a real key an attacker has guessed.

A :class:`KeySnapshot` is immutable: the key ring (``keyring.py``) builds a
new one for every change and swaps it in with one attribute assignment, and a
request reads it once, so it sees the old set or the new one, never a mix.
Its two lookup tables (:class:`~asgi_apikey.keytable.KeyTable`) are
immutable too: a change copies a few small parts of them, not every key.
A token that matches no key goes to the verifiers, if any
(:mod:`asgi_apikey.verifiers` says what they may answer).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from hashlib import sha256 as _sha256  # module globals: the request path skips two lookups
from hmac import compare_digest as _compare_digest
from typing import Any, NoReturn

from .context import (
    AUTHENTICATED,
    MAX_METADATA_DEPTH,
    MIN_PRODUCTION_KEY_LENGTH,
    APIKeyUser,
    AuthContext,
    MetadataTooDeep,
    check_scopes,
    freeze,
)
from .context import MAX_KEY_NAME_LENGTH as _MAX_NAME_LENGTH
from .credentials import DEFAULT_MAX_TOKEN_LENGTH, is_b64token
from .errors import ConfigurationError
from .keytable import DigestTable, KeyTable, NameTable, TableBuilder
from .ratelimit.limits import RateLimit, as_rate_limit
from .verifiers import (
    Accepted,
    Rejected,
    Verifier,
    ask_verifiers,
    log_verifier_failure,
)

__all__ = [
    "MIN_PRODUCTION_KEY_LENGTH",
    "APIKey",
    "Accepted",
    "KeyEntry",
    "KeySnapshot",
    "Rejected",
    "Verifier",
    "log_verifier_failure",
]


_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")


def _fingerprint(digest: bytes) -> str:
    # A hash of the digest rather than a slice of it, so that it is not the digest
    # itself. It is still a public function of the key: anyone who sees it can
    # test guesses offline, which only matters for a low-entropy key. Name keys
    # whose id is shown where attackers may read it.
    return "key-" + hashlib.sha256(b"asgi_apikey key_id\x00" + digest).hexdigest()[:16]


class APIKey:
    """One API key: its digest, a name, scopes, metadata, a validity window and a limit.

    Give exactly one of ``secret`` (the plain key; only its digest is kept) or
    ``digest`` (``"sha256:<64 hex>"`` of the UTF-8 key, so plain keys need not
    live in configuration). ``not_before`` (inclusive) and ``expires_at``
    (exclusive) are timezone-aware datetimes; outside that window the key is
    refused with ``401 invalid_token`` and a description that says why.
    ``limit`` is the key's own rate limit: a :class:`~asgi_apikey.RateLimit`,
    its text (``"100/minute"``, ``"unlimited"``) or its data form (a dict of
    ``rate``, ``burst`` and ``quota``, as in a key file); ``None`` (the
    default) means the configured default limit applies.

    >>> key = APIKey("sk-live-0123456789abcdef", name="billing", scopes={"read"})
    >>> key
    APIKey(key_id='billing', scopes=['read'])
    >>> APIKey(digest=key.digest).key_id == APIKey("sk-live-0123456789abcdef").key_id
    True
    >>> APIKey(digest=key.digest, name="search", limit={"rate": "100/minute", "burst": 20})
    APIKey(key_id='search', scopes=[], limit=RateLimit('100/minute', burst=20))
    """

    __slots__ = (
        "_digest",
        "_short",
        "expires_at",
        "key_id",
        "limit",
        "metadata",
        "name",
        "not_before",
        "scopes",
    )

    _digest: bytes
    _short: bool
    name: str | None
    key_id: str
    scopes: frozenset[str]
    metadata: Mapping[str, Any]
    not_before: datetime | None
    expires_at: datetime | None
    limit: RateLimit | None

    def __init__(
        self,
        secret: str | None = None,
        *,
        digest: str | None = None,
        name: str | None = None,
        scopes: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        not_before: datetime | None = None,
        expires_at: datetime | None = None,
        limit: RateLimit | str | Mapping[str, Any] | None = None,
    ) -> None:
        if (secret is None) == (digest is None):
            raise ConfigurationError(
                "APIKey takes exactly one of secret= (the plain key) or digest= ('sha256:<hex>')"
            )
        raw = _digest_of_secret(secret) if secret is not None else _parse_digest(digest)
        set_ = object.__setattr__
        set_(self, "_digest", raw)
        # Whether the plain key is too short for production; the only fact about
        # the secret that outlives this call. A digest's length is unknown.
        set_(self, "_short", secret is not None and len(secret) < MIN_PRODUCTION_KEY_LENGTH)
        set_(self, "name", _check_name(name))
        key_id = name if name is not None else _fingerprint(raw)
        set_(self, "key_id", key_id)
        set_(self, "scopes", check_scopes(scopes, f"scopes of key {key_id!r}", key_id=key_id))
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ConfigurationError(
                f"metadata of key {key_id!r} must be a mapping (a dict), "
                f"not {type(metadata).__name__}",
                key_id=key_id,
            )
        problem = None
        try:
            frozen = freeze(metadata or {})
        except (MetadataTooDeep, RecursionError):
            problem = f"is nested too deeply (more than {MAX_METADATA_DEPTH} levels, or a cycle)"
        except Exception as error:  # a mapping whose items() raises, say
            problem = f"cannot be read ({type(error).__name__})"
        # Raised outside the except block: no chained error that may quote a value.
        if problem is not None:
            raise ConfigurationError(f"metadata of key {key_id!r} {problem}", key_id=key_id)
        set_(self, "metadata", frozen)
        set_(self, "not_before", _check_instant(not_before, "not_before", key_id))
        set_(self, "expires_at", _check_instant(expires_at, "expires_at", key_id))
        if not_before is not None and expires_at is not None and expires_at <= not_before:
            raise ConfigurationError(
                f"key {key_id!r} expires_at ({expires_at.isoformat()}) is not after its "
                f"not_before ({not_before.isoformat()}): the key would never be valid",
                key_id=key_id,
            )
        set_(self, "limit", _check_limit(limit, key_id))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("APIKey is immutable; build a new one")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("APIKey is immutable; build a new one")

    @property
    def digest(self) -> str:
        """The key as ``"sha256:<hex>"``, the form to put in configuration."""
        return "sha256:" + self._digest.hex()

    def __repr__(self) -> str:
        # getattr: error reporters may repr a half-built key whose __init__ raised.
        window = ""
        not_before, expires_at = (getattr(self, n, None) for n in ("not_before", "expires_at"))
        if not_before is not None:
            window += f", not_before={not_before.isoformat()!r}"
        if expires_at is not None:
            window += f", expires_at={expires_at.isoformat()!r}"
        scopes = sorted(getattr(self, "scopes", ()))
        limit = getattr(self, "limit", None)
        shown = f", limit={limit!r}" if limit is not None else ""
        key_id = getattr(self, "key_id", None)
        return f"APIKey(key_id={key_id!r}, scopes={scopes!r}{window}{shown})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, APIKey):
            return NotImplemented
        return hmac.compare_digest(self._digest, other._digest) and (
            (self.name, self.scopes, dict(self.metadata), self.not_before, self.expires_at)
            == (other.name, other.scopes, dict(other.metadata), other.not_before, other.expires_at)
            and self.limit == other.limit
        )

    def __hash__(self) -> int:
        return hash(self._digest)


def _digest_of_secret(secret: object) -> bytes:
    if not isinstance(secret, str):
        raise ConfigurationError(f"an API key must be a str, not {type(secret).__name__}")
    if not secret:
        raise ConfigurationError("an API key is empty: remove it or set a value")
    if secret != secret.strip():
        raise ConfigurationError(
            "an API key has leading or trailing whitespace: strip it (a copy-paste slip?)"
        )
    if secret.startswith("sha256:"):
        raise ConfigurationError(
            "an API key looks like a digest ('sha256:...'): pass it as APIKey(digest=...)"
        )
    if len(secret) > DEFAULT_MAX_TOKEN_LENGTH:
        raise ConfigurationError(
            f"an API key is longer than {DEFAULT_MAX_TOKEN_LENGTH} bytes: clients could not send it"
        )
    if not secret.isascii() or not is_b64token(secret.encode("ascii")):
        raise ConfigurationError(
            "an API key has characters a Bearer token cannot carry: use only letters, "
            "digits and - . _ ~ + / (with '=' only at the end), as "
            "secrets.token_urlsafe() produces"
        )
    return hashlib.sha256(secret.encode("ascii")).digest()


def _parse_digest(digest: object) -> bytes:
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise ConfigurationError(
            "a key digest must be 'sha256:' followed by 64 hex digits, the SHA-256 of the "
            "UTF-8 key (APIKey('<key>').digest or 'python -m asgi_apikey hash' computes it)"
        )
    return bytes.fromhex(match.group(1))


def _check_name(name: object) -> str | None:
    if name is None:
        return None
    if (
        not isinstance(name, str)
        or not name.strip()
        or name != name.strip()
        or not name.isprintable()
        or len(name) > _MAX_NAME_LENGTH
    ):
        raise ConfigurationError(
            f"a key name must be printable text of 1 to {_MAX_NAME_LENGTH} characters "
            "without surrounding spaces",
            setting="name",
        )
    return name


def _check_limit(value: object, key_id: str) -> RateLimit | None:
    problem = None
    try:
        return as_rate_limit(value, f"limit of key {key_id!r}")
    except ConfigurationError as error:
        problem = str(error)  # never quotes a value that could be a key (see as_rate_limit)
    # Raised outside the except block, with the key_id in its context like the other fields.
    raise ConfigurationError(problem, key_id=key_id, setting="limit")


def _check_instant(value: object, setting: str, key_id: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ConfigurationError(
            f"{setting} of key {key_id!r} must be a timezone-aware datetime, such as "
            "datetime(2027, 1, 1, tzinfo=timezone.utc) or 2027-01-01T00:00:00Z in a key file",
            key_id=key_id,
            setting=setting,
        )
    return value


@dataclass(frozen=True, slots=True)
class KeyEntry(Accepted):
    """A configured key, prepared once: its context, user, digest and validity window."""

    key: APIKey
    digest: bytes = field(repr=False)
    # Seconds since the epoch; None when the key has no such bound.
    not_before: float | None = None
    expires_at: float | None = None

    def check(self, now: float) -> KeyEntry | Rejected:
        """This entry if the key is valid at ``now``, else why it is not."""
        if self.expires_at is not None and now >= self.expires_at:
            return replace(_EXPIRED, key_id=self.key.key_id)
        if self.not_before is not None and now < self.not_before:
            return replace(_NOT_YET_VALID, key_id=self.key.key_id)
        return self


_EXPIRED = Rejected("The API key has expired", reason="expired")
_NOT_YET_VALID = Rejected("The API key is not valid yet", reason="not_yet_valid")


def entry_for(key: APIKey, mode: str) -> KeyEntry:
    """The prepared entry of ``key``: its context carries ``mode`` and the key's metadata.

    The metadata is carried in every mode, from every source (keys in code,
    the key file, a live store): the mode only changes defaults.
    """
    context = AuthContext(
        authenticated=True,
        key_id=key.key_id,
        scopes=key.scopes | {AUTHENTICATED},
        metadata=key.metadata,
        mode=mode,
    )
    return KeyEntry(
        context=context,
        user=APIKeyUser(key.key_id),
        key=key,
        digest=key._digest,
        not_before=key.not_before.timestamp() if key.not_before is not None else None,
        expires_at=key.expires_at.timestamp() if key.expires_at is not None else None,
    )


# -- The immutable key set ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class KeySnapshot:
    """One immutable state of an authenticator: read once per request.

    ``development`` is true only for an authenticator built without keys or
    verifiers; then every request passes anonymous with ``anonymous`` as its
    context, and with ``local_only`` (development mode nobody asked for: no
    ``ENVIRONMENT``) only from this machine (``loopback.is_local_client``).
    ``unavailable`` says why the keys of a live source cannot be
    trusted (not started yet, its store lost for too long); a token that
    matches no key is then answered ``503`` with it, not ``401``.
    """

    # Immutable tables: a change builds new ones (KeyTable.changed) and a new snapshot.
    by_digest: KeyTable[bytes, KeyEntry]
    by_id: KeyTable[str, bytes]
    anonymous: AuthContext
    development: bool = False
    verifiers: tuple[Verifier, ...] = ()
    clock: Callable[[], float] = field(default=lambda: 0.0)
    # Called with the verifier's name and the problem when a verifier fails.
    report_verifier_failure: Callable[[str, str], None] = log_verifier_failure
    unavailable: str | None = None
    local_only: bool = False

    def resolve(self, token: bytes) -> Accepted | Rejected | None:
        """What ``token`` (raw bytes) is: accepted, refused with a reason, or unknown (None)."""
        digest = _sha256(token).digest()
        # The table's own get() inlined: a method call costs more than the lookup.
        entry = self.by_digest.rows[digest[0]][digest[1]].get(digest)
        if entry is not None and _compare_digest(entry.digest, digest):
            if entry.not_before is None and entry.expires_at is None:
                return entry
            return entry.check(self.clock())
        if self.verifiers:
            return ask_verifiers(self.verifiers, token, self.by_id, self.report_verifier_failure)
        return None


def index(
    entries: Sequence[KeyEntry],
    labels: Sequence[str],
    like: tuple[KeyTable[bytes, KeyEntry], KeyTable[str, bytes]] | None = None,
) -> tuple[KeyTable[bytes, KeyEntry], KeyTable[str, bytes]]:
    """The two lookup tables of a key set; ``labels`` name each entry's source in errors.

    Entries are immutable and reused across rotations, and ``like`` (the
    tables in use) lends the new tables every part of them that holds the same
    entries: a reload of 100,000 unchanged keys makes next to nothing new.
    """
    if len(entries) != len(labels):
        raise ValueError(f"{len(entries)} entries and {len(labels)} labels")
    by_digest: TableBuilder[bytes, KeyEntry] = DigestTable.builder()
    by_id: TableBuilder[str, bytes] = NameTable.builder()
    for entry in entries:
        if not (by_digest.add(entry.digest, entry) and by_id.add(entry.key.key_id, entry.digest)):
            _clash(entries, labels)
    if like is None:
        return by_digest.table(), by_id.table()
    return by_digest.table(like[0]), by_id.table(like[1])


def _clash(entries: Sequence[KeyEntry], labels: Sequence[str]) -> NoReturn:
    """Raise the error of the first entry that repeats a key or a key_id before it."""
    first_of: dict[bytes, tuple[str, str]] = {}  # digest: (key_id, label)
    id_of: dict[str, str] = {}  # key_id: label
    for entry, label in zip(entries, labels, strict=True):
        key_id = entry.key.key_id
        if entry.digest in first_of:
            first, where = first_of[entry.digest]
            raise ConfigurationError(
                f"{label} is the same key as {where} (key_id {first!r}): give each key once",
                where=label,
                key_id=first,
            )
        if key_id in id_of:
            raise ConfigurationError(
                f"{label} reuses the key_id {key_id!r} of {id_of[key_id]}: "
                "give each key its own name",
                where=label,
                key_id=key_id,
            )
        first_of[entry.digest] = key_id, label
        id_of[key_id] = label
    raise AssertionError("index() found a clash that _clash() did not")  # pragma: no cover
