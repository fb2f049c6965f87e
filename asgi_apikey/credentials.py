"""RFC 6750 credential parsing over raw ASGI header bytes.

Pure functions and one small precomputed reader: no I/O, no logging, no
exception on any input, so Hypothesis can drive them directly. A result is
either a token (``bytes``, ASCII, grammar-checked), ``None`` (no bearer
credentials: no header, or another scheme such as ``Basic``), or a
:class:`Malformed` value whose ``description`` becomes the
``error_description`` of a 400 ``invalid_request``. Descriptions never contain
any byte of the input.

Grammar (RFC 6750 §2.1, RFC 9110 §11.4)::

    credentials = "Bearer" 1*SP b64token
    b64token    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="

The scheme is case-insensitive. Spaces (SP only) around the whole field value
are tolerated because servers strip them as optional whitespace anyway; any
other whitespace, control byte, DEL or non-ASCII byte is malformed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote_to_bytes

__all__ = [
    "DEFAULT_MAX_TOKEN_LENGTH",
    "CredentialReader",
    "Malformed",
    "is_b64token",
    "is_http_token",
    "parse_authorization",
    "parse_token",
]

#: Tokens longer than this many bytes are ``invalid_request``.
DEFAULT_MAX_TOKEN_LENGTH = 4096

_B64TOKEN = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
# The whole well-formed header in one match: the path nearly every request takes,
# first as nearly every client spells it ("Bearer <token>"), then in any case and spacing.
_EXACT_BEARER = re.compile(rb"Bearer ([A-Za-z0-9\-._~+/]+=*)")
_BEARER = re.compile(rb" *[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*) *")
# RFC 9110 token (tchar), the shape of an auth-scheme.
_SCHEME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN = re.compile(rb"[^\x21-\x7e]")  # control bytes, SP handled apart, DEL, non-ASCII


def _classes() -> bytes:
    # A translate() table naming each byte's class in a token: "a" a b64token
    # character, "=" padding, " " a space, "?" another visible character, NUL what
    # _FORBIDDEN matches. A token is well-formed when its classes, "=" stripped from
    # the end, are all "a" (the only alphanumeric class): one C pass, no regex, no
    # delete table built per call.
    table = bytearray(256)
    table[0x21:0x7F] = b"?" * (0x7F - 0x21)
    for byte in _B64_CHARS:
        table[byte] = ord("a")
    table[ord("=")], table[ord(" ")] = ord("="), ord(" ")
    return bytes(table)


_CLASSES = _classes()


@dataclass(frozen=True, slots=True)
class Malformed:
    """Credentials that are present but broken: a 400 ``invalid_request``."""

    description: str


def is_http_token(value: object) -> bool:
    """Whether ``value`` is an RFC 9110 token: the shape of a scheme or a header name.

    >>> is_http_token("X-API-Key"), is_http_token("X API Key")
    (True, False)
    """
    return (
        isinstance(value, str)
        and value.isascii()
        and _SCHEME.fullmatch(value.encode("ascii")) is not None
    )


def is_b64token(value: bytes) -> bool:
    """Whether ``value`` is exactly an RFC 6750 ``b64token``.

    >>> is_b64token(b"sk-abc_123=="), is_b64token(b"ab=cd"), is_b64token(b"")
    (True, False, False)
    """
    return _B64TOKEN.fullmatch(value) is not None


def parse_token(value: bytes, what: str, max_length: int) -> bytes | Malformed:
    """Check a bare token (already split from any scheme) against the grammar.

    ``what`` names the credential in the description ("bearer token",
    "X-API-Key header", ...).

    >>> parse_token(b"sk-123", "bearer token", 4096)
    b'sk-123'
    >>> parse_token(b"a b", "bearer token", 4096)
    Malformed(description='The bearer token contains a space')
    """
    if len(value) > max_length:
        return _malformed(f"The {what} is longer than {max_length} bytes")
    if _B64TOKEN.fullmatch(value) is not None:
        return value
    if not value:
        return _malformed(f"The {what} is empty")
    if _FORBIDDEN.search(value.replace(b" ", b"")) is not None:
        return _malformed(f"The {what} contains control, whitespace or non-ASCII bytes")
    if b" " in value:
        return _malformed(f"The {what} contains a space")
    return _malformed(
        f"The {what} has characters outside the RFC 6750 b64token set "
        "(letters, digits, - . _ ~ + / and trailing =)"
    )


@lru_cache(maxsize=64)
def _malformed(description: str) -> Malformed:
    # Descriptions come from a fixed set (times the few credential names and
    # lengths configured): one shared value each instead of one per request.
    return Malformed(description)


def parse_authorization(
    value: bytes, max_length: int = DEFAULT_MAX_TOKEN_LENGTH
) -> bytes | Malformed | None:
    """Parse one ``Authorization`` field value.

    >>> parse_authorization(b"bEaReR   sk-123")
    b'sk-123'
    >>> parse_authorization(b"Basic dXNlcjpwYXNz") is None
    True
    >>> parse_authorization(b"Bearer ")
    Malformed(description='The bearer token is empty')
    """
    match = _EXACT_BEARER.fullmatch(value) or _BEARER.fullmatch(value)
    if match is not None:
        token = match.group(1)
        if len(token) > max_length:
            return _malformed(f"The bearer token is longer than {max_length} bytes")
        return token
    return _classify_authorization(value.strip(b" "), max_length)


def _classify_authorization(value: bytes, max_length: int) -> bytes | Malformed | None:
    # The slow path: the value is not a well-formed bearer header; say why.
    if not value:
        return Malformed("The Authorization header is empty")
    scheme = _SCHEME.match(value)
    if scheme is None:
        return Malformed("The Authorization header does not start with an authentication scheme")
    if scheme.group().lower() != b"bearer":
        return None  # another scheme (Basic, Digest, ...): no bearer credentials
    rest = value[scheme.end() :]
    if not rest:
        return Malformed("The bearer token is empty")
    if rest[:1] != b" ":
        return Malformed("Separate 'Bearer' and the token with spaces only")
    return parse_token(rest.lstrip(b" "), "bearer token", max_length)


# What parse_token says of a bearer token, prepared (the fast path of CredentialReader).
_BEARER_EMPTY = _malformed("The bearer token is empty")
_BEARER_FORBIDDEN = _malformed("The bearer token contains control, whitespace or non-ASCII bytes")
_BEARER_SPACE = _malformed("The bearer token contains a space")
_BEARER_OUTSIDE = _malformed(
    "The bearer token has characters outside the RFC 6750 b64token set "
    "(letters, digits, - . _ ~ + / and trailing =)"
)
_TWO_AUTHORIZATION = Malformed("Send exactly one Authorization header")
_TWO_METHODS = Malformed("Send the API key by one method only")
_TWO_QUERY = Malformed("Send exactly one access_token query parameter")


class CredentialReader:
    """Finds the presented token in a request, by the methods configured once.

    ``read`` returns ``(token, via_query)``, ``None`` or :class:`Malformed`.

    >>> reader = CredentialReader()
    >>> reader.read([(b"authorization", b"Bearer sk-1")], b"")
    (b'sk-1', False)
    """

    __slots__ = (
        "_bearer_too_long",
        "_header",
        "_header_label",
        "_max",
        "_query",
        "_two_headers",
    )

    def __init__(
        self,
        *,
        header_name: str | None = None,
        allow_query_token: bool = False,
        max_token_length: int = DEFAULT_MAX_TOKEN_LENGTH,
    ) -> None:
        self._header = header_name.lower().encode("ascii") if header_name else None
        self._header_label = f"{header_name or 'API key'} header"
        self._two_headers = Malformed(f"Send exactly one {header_name or 'API key'} header")
        self._query = allow_query_token
        self._max = max_token_length
        self._bearer_too_long = _malformed(
            f"The bearer token is longer than {max_token_length} bytes"
        )

    def read(
        self, headers: Iterable[tuple[bytes, bytes]], query_string: bytes
    ) -> tuple[bytes, bool] | Malformed | None:
        if self._header is None and not self._query:
            # The common configuration, Authorization only: its common case inline.
            authorization: bytes | None = None
            for name, value in headers:
                if name == b"authorization":
                    if authorization is not None:
                        return _TWO_AUTHORIZATION
                    authorization = value
            if authorization is None:
                return None
            if authorization[:7] == b"Bearer ":
                token = authorization[7:]
                # The b64token check without a regex: nothing but its characters,
                # then "=" padding only at the end (isalnum() is false when empty).
                if token.translate(_CLASSES).rstrip(b"=").isalnum() and len(token) <= self._max:
                    return token, False
                # The scheme is right: only the token (with any optional spaces) is left.
                return self._bearer_token(token.strip(b" "))
            parsed = parse_authorization(authorization, self._max)
            return parsed if parsed is None or isinstance(parsed, Malformed) else (parsed, False)
        return self._read_all(headers, query_string)

    def _bearer_token(self, value: bytes) -> tuple[bytes, bool] | Malformed:
        """``parse_token(value, "bearer token", max)``, decided from each byte's class.

        A malformed header is what a flood of junk is made of: one ``translate``
        names the class of every byte (see ``_classes``), and the answer is a
        prepared value (tests/test_refusal_cost.py holds it to :func:`parse_token`).
        """
        if len(value) > self._max:
            return self._bearer_too_long
        classes = value.translate(_CLASSES)
        if classes.rstrip(b"=").isalnum():
            return value, False
        if not value:
            return _BEARER_EMPTY
        if b"\x00" in classes:
            return _BEARER_FORBIDDEN
        return _BEARER_SPACE if b" " in classes else _BEARER_OUTSIDE

    def _read_all(
        self, headers: Iterable[tuple[bytes, bytes]], query_string: bytes
    ) -> tuple[bytes, bool] | Malformed | None:
        authorization: bytes | None = None
        custom: bytes | None = None
        extra = self._header
        if extra is None:  # the common configuration: one comparison per header
            for name, value in headers:
                if name == b"authorization":
                    if authorization is not None:
                        return _TWO_AUTHORIZATION
                    authorization = value
        else:
            for name, value in headers:
                if name == b"authorization":
                    if authorization is not None:
                        return _TWO_AUTHORIZATION
                    authorization = value
                elif name == extra:
                    if custom is not None:
                        return self._two_headers
                    custom = value

        token: bytes | None = None
        if authorization is not None:
            parsed = parse_authorization(authorization, self._max)
            if isinstance(parsed, Malformed):
                return parsed
            token = parsed
        if custom is not None:
            from_header = parse_token(custom.strip(b" "), self._header_label, self._max)
            if isinstance(from_header, Malformed):
                return from_header
            if token is not None:
                return _TWO_METHODS
            token = from_header
        if self._query and query_string:
            from_query = self._read_query(query_string)
            if isinstance(from_query, Malformed):
                return from_query
            if from_query is not None:
                return _TWO_METHODS if token is not None else (from_query, True)
        return None if token is None else (token, False)

    @staticmethod
    def names_query_token(query_string: bytes) -> bool:
        """Whether the query string has an ``access_token`` parameter, well-formed or not.

        >>> CredentialReader.names_query_token(b"a=1&%61ccess_token=x")
        True
        """
        return any(_is_access_token(part.partition(b"=")[0]) for part in query_string.split(b"&"))

    def _read_query(self, query_string: bytes) -> bytes | Malformed | None:
        found: bytes | None = None
        for part in query_string.split(b"&"):
            name, _, value = part.partition(b"=")
            if not _is_access_token(name):
                continue
            if found is not None:
                return _TWO_QUERY
            found = unquote_to_bytes(value.replace(b"+", b" "))
        if found is None:
            return None
        return parse_token(found, "access_token query parameter", self._max)


def _is_access_token(name: bytes) -> bool:
    # RFC 6750 §2.3: application/x-www-form-urlencoded, so "+" is a space.
    return unquote_to_bytes(name.replace(b"+", b" ")) == b"access_token"
