"""Keys and the authenticator: digests, O(1) lookup, rotation, status.

A key is kept only as the SHA-256 digest of its UTF-8 bytes. A request hashes
the presented token once, looks the digest up in a dict (O(1) whatever the
number of keys) and confirms the match with :func:`hmac.compare_digest`.
Because the lookup is on a digest of the token, its timing says nothing about
how much of a real key an attacker has guessed.

The key set is an immutable snapshot; rotation builds a new one and swaps it in
with a single attribute assignment, so a request sees the old set or the new
one, never a mix.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .context import AUTHENTICATED, APIKeyUser, AuthContext, FrozenMapping, check_scopes
from .credentials import DEFAULT_MAX_TOKEN_LENGTH, is_b64token
from .errors import ConfigurationError

__all__ = ["APIKey", "APIKeyAuth", "KeyEntry"]

_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")
_MAX_NAME_LENGTH = 128


def _fingerprint(digest: bytes) -> str:
    # A hash of the digest rather than a slice of it, so that it is not the digest
    # itself. It is still a public function of the key: anyone who sees it can
    # test guesses offline, which only matters for a low-entropy key. Name keys
    # whose id is shown where attackers may read it.
    return "key-" + hashlib.sha256(b"asgi_apikey key_id\x00" + digest).hexdigest()[:16]


class APIKey:
    """One API key: its digest, a name, scopes and metadata.

    Give exactly one of ``secret`` (the plain key; only its digest is kept) or
    ``digest`` (``"sha256:<64 hex>"`` of the UTF-8 key, so plain keys need not
    live in configuration).

    >>> key = APIKey("sk-live-0123456789abcdef", name="billing", scopes={"read"})
    >>> key
    APIKey(key_id='billing', scopes=['read'])
    >>> APIKey(digest=key.digest).key_id == APIKey("sk-live-0123456789abcdef").key_id
    True
    """

    __slots__ = ("_digest", "key_id", "metadata", "name", "scopes")

    _digest: bytes
    name: str | None
    key_id: str
    scopes: frozenset[str]
    metadata: Mapping[str, Any]

    def __init__(
        self,
        secret: str | None = None,
        *,
        digest: str | None = None,
        name: str | None = None,
        scopes: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if (secret is None) == (digest is None):
            raise ConfigurationError(
                "APIKey takes exactly one of secret= (the plain key) or digest= ('sha256:<hex>')"
            )
        raw = _digest_of_secret(secret) if secret is not None else _parse_digest(digest)
        object.__setattr__(self, "_digest", raw)
        object.__setattr__(self, "name", _check_name(name))
        object.__setattr__(self, "key_id", name if name is not None else _fingerprint(raw))
        object.__setattr__(
            self,
            "scopes",
            check_scopes(scopes, f"scopes of key {self.key_id!r}", key_id=self.key_id),
        )
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ConfigurationError(
                f"metadata of key {self.key_id!r} must be a mapping (a dict), "
                f"not {type(metadata).__name__}",
                key_id=self.key_id,
            )
        object.__setattr__(self, "metadata", FrozenMapping(metadata or {}))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("APIKey is immutable; build a new one")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("APIKey is immutable; build a new one")

    @property
    def digest(self) -> str:
        """The key as ``"sha256:<hex>"``, the form to put in configuration."""
        return "sha256:" + self._digest.hex()

    def __repr__(self) -> str:
        return f"APIKey(key_id={self.key_id!r}, scopes={sorted(self.scopes)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, APIKey):
            return NotImplemented
        return hmac.compare_digest(self._digest, other._digest) and (
            (self.name, self.scopes, dict(self.metadata))
            == (other.name, other.scopes, dict(other.metadata))
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
            "UTF-8 key (APIKey('<key>').digest computes it)"
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


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """What a matched key hands the middleware: built once per key."""

    key: APIKey
    digest: bytes = field(repr=False)
    context: AuthContext
    user: APIKeyUser


@dataclass(frozen=True, slots=True, repr=False)
class _KeySet:
    # Plain dicts for lookup speed; never mutated after _build returns them.
    by_digest: dict[bytes, KeyEntry]
    by_id: dict[str, bytes]


def _entry(key: APIKey, mode: str) -> KeyEntry:
    context = AuthContext(
        authenticated=True,
        key_id=key.key_id,
        scopes=key.scopes | {AUTHENTICATED},
        metadata=key.metadata,
        mode=mode,
    )
    return KeyEntry(key=key, digest=key._digest, context=context, user=APIKeyUser(key.key_id))


def _build(entries: Iterable[KeyEntry]) -> _KeySet:
    # Entries are immutable and reused across rotations: adding one key to
    # 100,000 copies two dicts and builds one entry.
    by_digest: dict[bytes, KeyEntry] = {}
    by_id: dict[str, bytes] = {}
    for index, entry in enumerate(entries):
        if entry.digest in by_digest:
            first = by_digest[entry.digest].key.key_id
            raise ConfigurationError(
                f"keys[{index}] is the same key as the one with key_id {first!r}: "
                "give each key once",
                index=index,
                key_id=first,
            )
        key_id = entry.key.key_id
        if key_id in by_id:
            raise ConfigurationError(
                f"keys[{index}] reuses the key_id {key_id!r}: give each key its own name",
                index=index,
                key_id=key_id,
            )
        by_digest[entry.digest] = entry
        by_id[key_id] = entry.digest
    return _KeySet(by_digest, by_id)


def _as_key(item: object, where: str) -> APIKey:
    if isinstance(item, APIKey):
        return item
    if not isinstance(item, str):
        raise ConfigurationError(
            f"{where}: a key must be a str or an APIKey, not {type(item).__name__}", where=where
        )
    try:
        return APIKey(item)
    except ConfigurationError as error:
        raise ConfigurationError(f"{where}: {error}", where=where, **error.context) from None


class APIKeyAuth:
    """The authenticator: owns the key set, verifies tokens, rotates keys.

    Hold one in your application to rotate keys at run time and pass it to the
    middleware as ``auth=``.

    >>> auth = APIKeyAuth(keys=["sk-test-0123456789abcdef"])
    >>> auth.verify("sk-test-0123456789abcdef").authenticated
    True
    >>> auth.verify("sk-wrong") is None
    True
    """

    def __init__(self, keys: Iterable[str | APIKey] = ()) -> None:
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            raise ConfigurationError(
                "keys must be a list of keys such as ['sk-...'], not a single "
                f"{type(keys).__name__}",
                setting="keys",
            )
        self._mode = "simple"
        self._lock = threading.Lock()
        self._keys = _build(
            [_entry(_as_key(item, f"keys[{index}]"), self._mode) for index, item in enumerate(keys)]
        )

    def resolve(self, token: bytes) -> KeyEntry | None:
        """The entry for a presented token (raw bytes), or ``None``. The hot path."""
        digest = hashlib.sha256(token).digest()
        entry = self._keys.by_digest.get(digest)
        if entry is not None and hmac.compare_digest(entry.digest, digest):
            return entry
        return None

    def verify(self, token: str) -> AuthContext | None:
        """The :class:`AuthContext` for ``token``, or ``None`` when no key matches.

        >>> APIKeyAuth(keys=["sk-test-0123456789abcdef"]).verify("nope") is None
        True
        """
        if not isinstance(token, str) or not token.isascii():
            return None  # keys are ASCII b64tokens: nothing else can match
        entry = self.resolve(token.encode("ascii"))
        return entry.context if entry is not None else None

    def add_key(self, key: str | APIKey) -> str:
        """Add a key (atomically) and return its ``key_id``.

        Raises :class:`ConfigurationError` if the key or its key_id is already present.
        """
        new = _entry(_as_key(key, "add_key"), self._mode)
        with self._lock:
            keys = self._keys
            present = keys.by_digest.get(new.digest)
            if present is not None:
                raise ConfigurationError(
                    f"add_key: the same key is already present, as key_id {present.key.key_id!r}",
                    key_id=present.key.key_id,
                )
            if new.key.key_id in keys.by_id:
                raise ConfigurationError(
                    f"add_key: the new key reuses the key_id {new.key.key_id!r}: "
                    "give it another name",
                    key_id=new.key.key_id,
                )
            self._keys = _build([*keys.by_digest.values(), new])
        return new.key.key_id

    def remove_key(self, key_or_name: str | APIKey) -> bool:
        """Remove a key given as the plain key, an :class:`APIKey` or its name / key_id.

        Returns ``False`` when nothing matched.
        """
        with self._lock:
            keys = self._keys
            digest = self._find(keys, key_or_name)
            if digest is None:
                return False
            self._keys = _build(
                entry for entry in keys.by_digest.values() if entry.digest != digest
            )
            return True

    @staticmethod
    def _find(keys: _KeySet, key_or_name: str | APIKey) -> bytes | None:
        if isinstance(key_or_name, APIKey):
            return key_or_name._digest if key_or_name._digest in keys.by_digest else None
        if not isinstance(key_or_name, str):
            return None
        by_name = keys.by_id.get(key_or_name)
        if by_name is not None:
            return by_name
        if not key_or_name.isascii():
            return None
        digest = hashlib.sha256(key_or_name.encode("ascii")).digest()
        return digest if digest in keys.by_digest else None

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the current keys (names or fingerprints), never the keys."""
        return tuple(self._keys.by_id)

    def status(self) -> dict[str, Any]:
        """A snapshot for health endpoints and logs; it holds no secret.

        >>> APIKeyAuth(keys=[APIKey("sk-test-0123456789abcdef", name="ci")]).status()
        {'mode': 'simple', 'key_count': 1, 'key_ids': ['ci']}
        """
        keys = self._keys
        return {"mode": self._mode, "key_count": len(keys.by_id), "key_ids": sorted(keys.by_id)}

    def __repr__(self) -> str:
        return f"APIKeyAuth(mode={self._mode!r}, key_count={len(self._keys.by_id)})"
