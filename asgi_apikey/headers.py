"""Security headers: which are added to every HTTP response, and how they are merged.

:class:`SecurityHeaders` turns the ``security_headers`` setting into header
byte pairs once; :class:`AddedHeaders` picks them per scheme (HSTS on https
only) and per credential method (a key in the URL makes a response private);
:func:`merge_headers` adds them to an app's response without overriding what
the app set; :func:`private_cache_control` keeps a response to a URL that holds
a key out of shared caches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from .credentials import is_http_token
from .errors import ConfigurationError, not_shown_unless_word

__all__ = [
    "DEFAULT_HSTS",
    "DEFAULT_SECURITY_HEADERS",
    "AddedHeaders",
    "Headers",
    "SecurityHeaders",
    "merge_headers",
    "private_cache_control",
]

Headers = tuple[tuple[bytes, bytes], ...]

#: OWASP's current baseline for an API. ``X-XSS-Protection`` is deliberately
#: absent: OWASP advises against ``1; mode=block``.
DEFAULT_SECURITY_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
)
#: Sent on https responses only (RFC 6797 §7.2: ignored over plain http).
DEFAULT_HSTS = "max-age=63072000; includeSubDomains"
_HSTS = "strict-transport-security"
# Headers that describe the message or the challenge, not a security policy:
# adding them to every response would corrupt framing or contradict the app.
_NOT_SECURITY_HEADERS = frozenset(
    {
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "keep-alive",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "www-authenticate",
    }
)
_CACHE_PRIVATE = (b"cache-control", b"private")

_FIELD_VALUE = re.compile(r"[\x20-\x7e]*")  # printable ASCII, no CR/LF


def _pair(name: str, value: str) -> tuple[bytes, bytes]:
    return name.lower().encode("ascii"), value.encode("ascii")


class SecurityHeaders:
    """The security headers added to every HTTP response the app or the middleware sends.

    ``True`` takes the defaults, ``False`` none; a mapping overrides defaults by
    name (``None`` drops one), so ``{"X-Frame-Options": None,
    "Content-Security-Policy": "default-src 'none'"}`` is one edit away.
    ``Strict-Transport-Security`` goes out on https only.

    >>> SecurityHeaders(True).for_scheme("http")[0]
    (b'x-content-type-options', b'nosniff')
    """

    __slots__ = ("_plain", "_secure")

    def __init__(self, config: bool | Mapping[str, str | None] = True) -> None:
        if config is False:
            self._plain: Headers = ()
            self._secure: Headers = ()
            return
        if config is not True and not isinstance(config, Mapping):
            raise ConfigurationError(
                "security_headers must be True, False or a mapping of header name to value "
                f"(None drops a default), not {type(config).__name__}",
                setting="security_headers",
            )
        merged: dict[str, tuple[str, str | None]] = {
            name.lower(): (name, value) for name, value in DEFAULT_SECURITY_HEADERS.items()
        }
        merged[_HSTS] = ("Strict-Transport-Security", DEFAULT_HSTS)
        for name, value in config.items() if isinstance(config, Mapping) else ():
            if not is_http_token(name):
                raise ConfigurationError(
                    f"security_headers: a name{not_shown_unless_word(name).replace(', not', '')} "
                    "is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)",
                    setting="security_headers",
                )
            if name.lower() in _NOT_SECURITY_HEADERS:
                raise ConfigurationError(
                    f"security_headers: {name!r} is not a security header; set it in the app",
                    setting="security_headers",
                )
            if value is not None and (
                not isinstance(value, str) or _FIELD_VALUE.fullmatch(value) is None
            ):
                raise ConfigurationError(
                    f"security_headers: the value of {name!r} must be printable ASCII "
                    "text without line breaks, or None to drop the header",
                    setting="security_headers",
                )
            merged[name.lower()] = (name, value)
        plain = tuple(
            _pair(name, value)
            for key, (name, value) in merged.items()
            if value is not None and key != _HSTS
        )
        hsts = merged[_HSTS][1]
        self._plain = plain
        self._secure = plain + ((_pair(_HSTS, hsts),) if hsts is not None else ())

    def for_scheme(self, scheme: str) -> Headers:
        """The header pairs for a request made over ``scheme``."""
        return self._secure if scheme in ("https", "wss") else self._plain


class AddedHeaders:
    """The headers added to one app response, and their names, by scheme and method.

    A token sent in the query string (RFC 6750 §2.3) also makes the response
    ``Cache-Control: private``, unless the security headers set a Cache-Control
    (an app's own Cache-Control is made private by :func:`private_cache_control`).
    """

    __slots__ = ("_variants",)

    def __init__(self, security: SecurityHeaders) -> None:
        variants = {}
        for scheme in ("http", "https"):
            pairs = security.for_scheme(scheme)
            with_private = pairs
            if all(name != _CACHE_PRIVATE[0] for name, _ in pairs):
                with_private = (*pairs, _CACHE_PRIVATE)
            for via_query, chosen in ((False, pairs), (True, with_private)):
                variants[scheme, via_query] = (chosen, frozenset(name for name, _ in chosen))
        self._variants = variants

    def pick(self, scheme: str, via_query: bool) -> tuple[Headers, frozenset[bytes]]:
        https = "https" if scheme in ("https", "wss") else "http"
        return self._variants[https, via_query]


def merge_headers(
    headers: Iterable[tuple[bytes, bytes]], added: Headers, names: frozenset[bytes]
) -> list[tuple[bytes, bytes]]:
    """The app's headers plus ``added``, except those the app set itself (any case)."""
    if not isinstance(headers, (list, tuple)):
        headers = list(headers)  # ASGI allows any iterable; read it once
    for name, _ in headers:
        # Names are nearly always lowercase already: lower() only those that are not.
        if name in names or (not name.islower() and name.lower() in names):
            present = {name.lower() for name, _ in headers}
            return [*headers, *(pair for pair in added if pair[0] not in present)]
    merged = list(headers)
    merged += added
    return merged


def private_cache_control(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with every cache directive made private (RFC 6750 §2.3, query tokens).

    A response to a URL that holds a key must not be stored by shared caches:
    in ``Cache-Control`` ``public`` and ``s-maxage`` are dropped and a bare
    ``private`` added, unless the value already says ``private`` (unqualified:
    ``private="set-cookie"`` keeps only that field out, RFC 9111 §5.2.2.7) or
    ``no-store``; the CDN's own fields (``CDN-Cache-Control``, RFC 9213, and
    ``Surrogate-Control``), which win over it there, become ``no-store``.

    >>> private_cache_control([(b"cache-control", b"public, max-age=60")])
    [(b'cache-control', b'private, max-age=60')]
    >>> private_cache_control([(b"Cache-Control", b'private="set-cookie, x", max-age=9')])
    [(b'Cache-Control', b'private, max-age=9')]
    """
    fixed = []
    for name, value in headers:
        lowered_name = name.lower()
        if lowered_name == b"cache-control":
            value = _made_private(value)
        elif lowered_name in _CDN_CACHE_FIELDS or lowered_name.endswith(b"-cdn-cache-control"):
            value = b"no-store"
        fixed.append((name, value))
    return fixed


def _made_private(value: bytes) -> bytes:
    directives = [d.strip() for d in _DIRECTIVE.findall(value) if d.strip()]
    lowered = [d.lower() for d in directives]
    if b"no-store" in lowered or b"private" in lowered:
        return value
    kept = [
        directive
        for directive, low in zip(directives, lowered, strict=True)
        if low != b"public" and not low.startswith((b"s-maxage", b"private="))
    ]
    return b", ".join([b"private", *kept])


# A directive of a Cache-Control value: commas inside a quoted string do not split it.
_DIRECTIVE = re.compile(rb'(?:[^,"]|"(?:[^"\\]|\\.)*"?)+')
_CDN_CACHE_FIELDS = frozenset({b"cdn-cache-control", b"surrogate-control"})
