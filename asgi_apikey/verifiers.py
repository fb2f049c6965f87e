"""What a verifier may return, and how a key set consults one.

A :data:`Verifier` is given a bearer token that matched no configured key and
answers with an :class:`~asgi_apikey.context.AuthContext` to accept it, a
:class:`Rejected` to refuse it with a reason, or ``None`` when the token is not
its own. Nothing it returns is believed unchecked (:func:`ask_verifiers`): a
context must be authenticated, carry a printable ``key_id`` that is no
configured key's, RFC 6749 scopes and freezable metadata, and none of these,
nor a rejection's text, may quote the token (:func:`_quotes`), because they are
logged, counted and handed to the app. A verifier that fails makes the token
unknown (401) and is reported by name and problem, never with the token.
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .audit import emit
from .context import (
    AUTHENTICATED,
    DEVELOPMENT_MODES,
    MAX_METADATA_DEPTH,
    MIN_PRODUCTION_KEY_LENGTH,
    APIKeyUser,
    AuthContext,
    MetadataTooDeep,
    freeze,
    is_scope_token,
)
from .context import MAX_KEY_NAME_LENGTH as _MAX_NAME_LENGTH

__all__ = [
    "MIN_PRODUCTION_KEY_LENGTH",
    "Accepted",
    "InvalidRejection",
    "Rejected",
    "Verifier",
    "ask_verifiers",
    "log_verifier_failure",
]


@dataclass(frozen=True, slots=True)
class Accepted:
    """An accepted token: what the middleware stores as ``scope["auth"]`` and ``scope["user"]``."""

    context: AuthContext
    user: APIKeyUser


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


#: A pluggable credential check: given a bearer token that matched no key,
#: return an authenticated :class:`AuthContext` (with a ``key_id``) to accept
#: it, a :class:`Rejected` to refuse it with a reason, or ``None`` when the
#: token is not one it recognises. It runs on the event loop: keep it fast and
#: free of I/O (a signature check, not a network call).
Verifier = Callable[[str], "AuthContext | Rejected | None"]


def log_verifier_failure(verifier: str, problem: str) -> None:
    """Log ``verifier_failed`` (unthrottled: an authenticator passes its audit's instead)."""
    emit("error", "verifier_failed", {"verifier": verifier, "problem": problem})


def ask_verifiers(
    verifiers: tuple[Verifier, ...],
    token: bytes,
    configured: Mapping[str, bytes],
    report: Callable[[str, str], None],
) -> Accepted | Rejected | None:
    """What the first verifier that knows ``token`` makes of it; None when none does.

    ``configured`` maps the configured keys' ids to digests (a verifier may not
    claim one). A verifier that fails is reported to ``report`` with its name
    and the problem, and the token counts as unknown.
    """
    for verifier in verifiers:
        # Whatever a verifier does or returns is judged inside _consult, and any
        # error there (a verifier's bug, metadata that cannot be frozen) is caught
        # here: it becomes a 401 and verifier_failed, never a 500 whose traceback
        # would carry the token in its frames.
        try:
            outcome = _consult(verifier, token, configured)
        except InvalidRejection as error:  # our own message, which quotes nothing
            outcome = f"built a Rejected that is not valid: {error}"
        except Exception as error:
            outcome = f"raised {type(error).__name__}"
        if outcome is None:
            continue
        if isinstance(outcome, str):
            _verifier_failed(report, verifier, outcome)
            return None
        return outcome
    return None


def _verifier_failed(report: Callable[[str, str], None], verifier: Verifier, problem: str) -> None:
    # The token then counts as invalid (401). The event names the verifier and
    # the problem only: an exception's message could quote the token.
    try:
        name = str(getattr(verifier, "__qualname__", None) or type(verifier).__qualname__)
    except Exception:
        name = type(verifier).__qualname__
    report(name, problem)


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
