"""Keys and key sets: digests, validity windows, O(1) lookup, pluggable verifiers.

A key is kept only as the SHA-256 digest of its UTF-8 bytes. A request hashes
the presented token once, looks the digest up in a dict (O(1) whatever the
number of keys) and confirms the match with :func:`hmac.compare_digest`.
Because the lookup is on a digest of the token, its timing says nothing about
how much of a real key an attacker has guessed.

A :class:`KeySnapshot` is immutable: the authenticator (``auth.py``) builds a
new one for every change and swaps it in with one attribute assignment, and a
request reads it once, so it sees the old set or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from hashlib import sha256 as _sha256  # module globals: the request path skips two lookups
from hmac import compare_digest as _compare_digest
from typing import Any

from .audit import emit
from .context import (
    AUTHENTICATED,
    DEVELOPMENT_MODES,
    MAX_METADATA_DEPTH,
    APIKeyUser,
    AuthContext,
    FrozenMapping,
    MetadataTooDeep,
    check_scopes,
    freeze,
    is_scope_token,
)
from .credentials import DEFAULT_MAX_TOKEN_LENGTH, is_b64token
from .errors import ConfigurationError

__all__ = [
    "MIN_PRODUCTION_KEY_LENGTH",
    "APIKey",
    "Accepted",
    "KeyEntry",
    "KeySnapshot",
    "Rejected",
    "Verifier",
]


_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")
_MAX_NAME_LENGTH = 128

#: ``ENVIRONMENT=staging`` and ``production`` refuse plain keys shorter than this.
MIN_PRODUCTION_KEY_LENGTH = 16


def _fingerprint(digest: bytes) -> str:
    # A hash of the digest rather than a slice of it, so that it is not the digest
    # itself. It is still a public function of the key: anyone who sees it can
    # test guesses offline, which only matters for a low-entropy key. Name keys
    # whose id is shown where attackers may read it.
    return "key-" + hashlib.sha256(b"asgi_apikey key_id\x00" + digest).hexdigest()[:16]


class APIKey:
    """One API key: its digest, a name, scopes, metadata and an optional validity window.

    Give exactly one of ``secret`` (the plain key; only its digest is kept) or
    ``digest`` (``"sha256:<64 hex>"`` of the UTF-8 key, so plain keys need not
    live in configuration). ``not_before`` (inclusive) and ``expires_at``
    (exclusive) are timezone-aware datetimes; outside that window the key is
    refused with ``401 invalid_token`` and a description that says why.

    >>> key = APIKey("sk-live-0123456789abcdef", name="billing", scopes={"read"})
    >>> key
    APIKey(key_id='billing', scopes=['read'])
    >>> APIKey(digest=key.digest).key_id == APIKey("sk-live-0123456789abcdef").key_id
    True
    """

    __slots__ = (
        "_digest",
        "_short",
        "expires_at",
        "key_id",
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
        return f"APIKey(key_id={getattr(self, 'key_id', None)!r}, scopes={scopes!r}{window})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, APIKey):
            return NotImplemented
        return hmac.compare_digest(self._digest, other._digest) and (
            (self.name, self.scopes, dict(self.metadata), self.not_before, self.expires_at)
            == (other.name, other.scopes, dict(other.metadata), other.not_before, other.expires_at)
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


# -- What a lookup answers -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """An accepted token: what the middleware stores as ``scope["auth"]`` and ``scope["user"]``."""

    context: AuthContext
    user: APIKeyUser


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


# RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,200}")


class InvalidRejection(ValueError):
    """A :class:`Rejected` built with a value it refuses (the message names the fix)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A refused token with the reason a client may read (401 ``invalid_token``).

    Return one from a :data:`Verifier` to refuse a token it recognises (an
    expired JWT, say) with a description. The description goes into the
    ``WWW-Authenticate`` header and the body, so it must never quote the token.

    ``reason`` is what the ``authentication_failed`` event and the counters
    record: ``"invalid"``, ``"expired"`` or ``"not_yet_valid"``. ``key_id``,
    when the token is known to belong to someone, goes into that event in
    place of the token's fingerprint; it is never sent to the client.

    >>> Rejected("The token has expired", reason="expired").description
    'The token has expired'
    """

    description: str
    reason: str = "invalid"
    key_id: str | None = None

    def __post_init__(self) -> None:
        # The messages quote nothing a verifier passed: any of it could be the token.
        if not isinstance(self.description, str) or not _DESCRIPTION.fullmatch(self.description):
            raise InvalidRejection(
                "Rejected(description=...) must be 1 to 200 printable ASCII characters "
                'without " or \\ (RFC 6750 error_description)'
            )
        if self.reason not in _REJECTION_REASONS:
            raise InvalidRejection(
                f"Rejected(reason=...) must be one of {', '.join(_REJECTION_REASONS)}"
            )
        if self.key_id is not None and not _is_key_id(self.key_id):
            raise InvalidRejection(
                f"Rejected(key_id=...) must be None or printable text of 1 to "
                f"{_MAX_NAME_LENGTH} characters"
            )


_REJECTION_REASONS = ("invalid", "expired", "not_yet_valid")
_EXPIRED = Rejected("The API key has expired", reason="expired")
_NOT_YET_VALID = Rejected("The API key is not valid yet", reason="not_yet_valid")

#: A pluggable credential check: given a bearer token that matched no key,
#: return an authenticated :class:`AuthContext` (with a ``key_id``) to accept
#: it, a :class:`Rejected` to refuse it with a reason, or ``None`` when the
#: token is not one it recognises. It runs on the event loop: keep it fast and
#: free of I/O (a signature check, not a network call).
Verifier = Callable[[str], "AuthContext | Rejected | None"]


def log_verifier_failure(verifier: str, problem: str) -> None:
    """Log ``verifier_failed`` (unthrottled: an authenticator passes its audit's instead)."""
    emit("error", "verifier_failed", {"verifier": verifier, "problem": problem})


def entry_for(key: APIKey, mode: str) -> KeyEntry:
    """The prepared entry of ``key``: its context carries metadata in advanced mode only."""
    context = AuthContext(
        authenticated=True,
        key_id=key.key_id,
        scopes=key.scopes | {AUTHENTICATED},
        metadata=key.metadata if mode == "advanced" else FrozenMapping(),
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

    # Plain dicts for lookup speed; never mutated after index() returns them.
    by_digest: dict[bytes, KeyEntry]
    by_id: dict[str, bytes]
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
        entry = self.by_digest.get(digest)
        if entry is not None and _compare_digest(entry.digest, digest):
            if entry.not_before is None and entry.expires_at is None:
                return entry
            return entry.check(self.clock())
        if self.verifiers:
            return self._ask_verifiers(token)
        return None

    def _ask_verifiers(self, token: bytes) -> Accepted | Rejected | None:
        for verifier in self.verifiers:
            # Whatever a verifier does or returns is judged inside _consult, and any
            # error there (a verifier's bug, metadata that cannot be frozen) is caught
            # here: it becomes a 401 and verifier_failed, never a 500 whose traceback
            # would carry the token in its frames.
            try:
                outcome = _consult(verifier, token, self.by_id)
            except InvalidRejection as error:  # our own message, which quotes nothing
                outcome = f"built a Rejected that is not valid: {error}"
            except Exception as error:
                outcome = f"raised {type(error).__name__}"
            if outcome is None:
                continue
            if isinstance(outcome, str):
                self._verifier_failed(verifier, outcome)
                return None
            return outcome
        return None

    def _verifier_failed(self, verifier: Verifier, problem: str) -> None:
        # The token then counts as invalid (401). The event names the verifier and
        # the problem only: an exception's message could quote the token.
        try:
            name = str(getattr(verifier, "__qualname__", None) or type(verifier).__qualname__)
        except Exception:
            name = type(verifier).__qualname__
        self.report_verifier_failure(name, problem)


def _consult(
    verifier: Verifier, token: bytes, configured: Mapping[str, bytes]
) -> Accepted | Rejected | str | None:
    """What ``verifier`` makes of ``token``: accepted, refused, not its token (None), or a problem.

    The token goes to the verifier and to the checks as an expression, never as
    a local of this frame (error reporters record the locals of a traceback).
    """
    result = verifier(token.decode("ascii"))  # the middleware only passes b64tokens
    if result is None:
        return None
    if isinstance(result, Rejected):
        if _quotes(token.decode("ascii"), result.description) or _quotes(
            token.decode("ascii"), result.key_id
        ):
            return "returned a Rejected that quotes the token"
        return result
    if not isinstance(result, AuthContext):
        if inspect.iscoroutine(result):
            result.close()  # an async verifier slipped through: never awaited
        return f"returned {type(result).__name__}"
    problem = _misfit(result, configured)
    if problem is not None:
        return problem
    key_id: str = result.key_id  # type: ignore[assignment]  # _misfit checked it
    scopes = frozenset(result.scopes)
    if AUTHENTICATED not in scopes:
        scopes |= {AUTHENTICATED}
    try:
        metadata = freeze(result.metadata)
    except MetadataTooDeep:
        return f"returned metadata nested more than {MAX_METADATA_DEPTH} levels deep (or a cycle)"
    problem = _quoted_in(token.decode("ascii"), key_id, scopes, metadata)
    if problem is not None:
        return problem
    return Accepted(replace(result, scopes=scopes, metadata=metadata), APIKeyUser(key_id))


def _misfit(context: AuthContext, configured: Mapping[str, bytes]) -> str | None:
    """Why a verifier's context cannot be accepted, or None when it can."""
    if not context.authenticated:
        return "returned a context with authenticated=False (return None instead)"
    scopes = context.scopes
    if not isinstance(scopes, (set, frozenset)) or not all(isinstance(s, str) for s in scopes):
        return "returned scopes that are not a set of str"
    if not all(is_scope_token(scope) for scope in scopes):
        return (
            "returned a scope that is not an RFC 6749 scope token (printable ASCII without "
            "spaces, quotes or backslashes)"
        )
    if not isinstance(context.metadata, Mapping):
        return "returned metadata that is not a mapping"
    key_id = context.key_id
    if not key_id:
        return "returned a context without a key_id"
    if not isinstance(key_id, str):
        return f"returned a key_id that is not a str but {type(key_id).__name__}"
    if not _is_key_id(key_id):
        return f"returned a key_id that is not printable text of 1 to {_MAX_NAME_LENGTH} characters"
    if context.mode in DEVELOPMENT_MODES:
        return f"returned a context with mode {context.mode!r}, kept for development mode"
    if key_id in configured:
        return "returned the key_id of a configured key"
    return None


def _quoted_in(token: str, key_id: str, scopes: frozenset[str], metadata: Any) -> str | None:
    """Which part of an accepted context quotes the token, if any."""
    if _quotes(token, key_id):
        return "returned a key_id that quotes the token (it is logged and counted)"
    if any(_quotes(token, scope) for scope in scopes):
        return "returned a scope that quotes the token"
    if any(_quotes(token, text) for text in _texts(metadata)):
        return "returned metadata that quotes the token"
    return None


def _texts(value: Any) -> Iterator[str]:
    """Every string in frozen metadata (keys too); freezing bounded its depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (bytes, bytearray)):
        yield bytes(value).decode("latin-1")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _texts(key)
            yield from _texts(item)
    elif isinstance(value, (tuple, frozenset)):
        for item in value:
            yield from _texts(item)


def _is_key_id(key_id: object) -> bool:
    return isinstance(key_id, str) and 0 < len(key_id) <= _MAX_NAME_LENGTH and key_id.isprintable()


def _quotes(token: str, text: str | None) -> bool:
    """Whether ``text`` (logged, counted, sent) holds the token or 16 characters of it.

    Compared with every character that is not a letter or digit removed, and
    letters case-folded (after NFKC, so full-width and other look-alike forms
    count as the letters they show): a token split up with ``:``, spaces,
    dashes, dots or invisible characters, or upper-cased, is still the token.
    Pieces count together: runs of 8 or more shared characters that cover
    16 characters of the token between them (``tok[:15] + "..." + tok[-15:]``,
    or the token cut in chunks) quote it as much as one run of 16. Shorter
    pieces are allowed, and so is a ``text`` that is the token's public
    selector: its start up to a separator (``.``, ``_``, ``-``) with 16 or
    more characters after it, as in ``"<id>.<secret>"`` tokens. Either way at
    least 16 characters of the token stay out of every log (all of them, for
    a token with 12 to 15 letters and digits). 16 is the shortest key
    production accepts.

    >>> token = "sk-0123456789abcdefghijklmnopqrstuvwxyz"
    >>> _quotes(token, token[:15] + "..." + token[-15:]), _quotes(token, "key sk-0123")
    (True, False)
    """
    if not text:
        return False
    if token in text:
        return True
    size = MIN_PRODUCTION_KEY_LENGTH
    if len(token) - len(text) > size and token.startswith(text) and token[len(text)] in "._-":
        return False  # the selector of a "<selector>.<secret>" token
    if _shares(text, token, size):
        return True
    secret = _squeezed(token)
    size = min(size, len(secret))
    if size < _MIN_QUOTED:
        return False
    squeezed, run = _squeezed(text), min(_QUOTED_RUN, size)
    # The cheap test first: most texts share no run of 8 with the token at all.
    return _shares(squeezed, secret, run) and _covered(squeezed, secret, run) >= size


def _covered(text: str, token: str, run: int) -> int:
    """How many of ``token``'s characters lie in runs of ``run`` or more it shares with ``text``."""
    covered = bytearray(len(token))
    for start in range(len(text) - run + 1):
        window = text[start : start + run]
        at = token.find(window)
        while at >= 0:
            covered[at : at + run] = b"\x01" * run
            at = token.find(window, at + 1)
    return sum(covered)


def _shares(text: str, token: str, size: int) -> bool:
    """Whether ``text`` and ``token`` have ``size`` consecutive characters in common."""
    # Any shared piece of `size` holds one of text's blocks of size // 2 at a
    # multiple of it: look for those (a substring search each), and check the
    # windows only around a block found. Sentences and short ids cost little.
    half = size // 2  # size is at least _MIN_QUOTED
    for block in range(0, len(text) - half + 1, half):
        if text[block : block + half] in token:
            for start in range(max(0, block - half), min(block, len(text) - size) + 1):
                if text[start : start + size] in token:
                    return True
    return False


_MIN_QUOTED = 12  # below this, a toy token such as "jwt-alice": only itself counts
_QUOTED_RUN = 8  # shared runs this long or longer add up towards a quote
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def _squeezed(text: str) -> str:
    """``text`` as its letters and digits only, lower case (after NFKC normalisation)."""
    return _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", text).lower())


def index(
    entries: Sequence[KeyEntry], labels: Sequence[str]
) -> tuple[dict[bytes, KeyEntry], dict[str, bytes]]:
    """The two lookup dicts of a key set; ``labels`` name each entry's source in errors.

    Entries are immutable and reused across rotations: adding one key to
    100,000 copies two dicts and builds one entry.
    """
    by_digest: dict[bytes, KeyEntry] = {}
    by_id: dict[str, bytes] = {}
    where: dict[bytes, str] = {}
    for entry, label in zip(entries, labels, strict=True):
        if entry.digest in by_digest:
            first = by_digest[entry.digest].key.key_id
            raise ConfigurationError(
                f"{label} is the same key as {where[entry.digest]} (key_id {first!r}): "
                "give each key once",
                where=label,
                key_id=first,
            )
        key_id = entry.key.key_id
        if key_id in by_id:
            raise ConfigurationError(
                f"{label} reuses the key_id {key_id!r} of {where[by_id[key_id]]}: "
                "give each key its own name",
                where=label,
                key_id=key_id,
            )
        by_digest[entry.digest] = entry
        by_id[key_id] = entry.digest
        where[entry.digest] = label
    return by_digest, by_id
