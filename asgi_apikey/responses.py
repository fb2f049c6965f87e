"""Everything the middleware writes: denials (401/400/403/414/503) and security headers.

Every response byte is computed at construction: header pairs, JSON bodies,
``WWW-Authenticate`` challenges. A denial is a value; sending it copies a
prepared header list into a fresh message (outer middleware may mutate what
it is sent) and writes two messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from types import MappingProxyType

from starlette.types import Message, Receive, Scope, Send

from .credentials import is_http_token
from .errors import ConfigurationError

__all__ = [
    "DEFAULT_HSTS",
    "DEFAULT_SECURITY_HEADERS",
    "AddedHeaders",
    "Denial",
    "Denials",
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
_QUOTABLE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")  # quoted-string without " and \


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
                    f"security_headers: {name!r} is not a valid header name",
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


class Denial:
    """A prepared refusal: status, headers, JSON body; sent as HTTP or to a websocket.

    ``reason`` (one of ``audit.REASONS``), ``description`` (the
    ``error_description``, when specific) and ``required_scopes`` (of a 403)
    are what the audit event records.
    """

    __slots__ = (
        "_body",
        "_close_code",
        "_plain",
        "_secure",
        "description",
        "detail",
        "reason",
        "required_scopes",
        "status",
    )

    def __init__(
        self,
        status: int,
        detail: str,
        challenge: str | None,
        security: SecurityHeaders,
        *,
        reason: str,
        description: str | None = None,
        required_scopes: frozenset[str] | None = None,
        extra: Headers = (),
        close_code: int = 1008,
    ) -> None:
        self.status = status
        self.detail = detail
        self.reason = reason
        self.description = description
        self.required_scopes = required_scopes
        self._body = json.dumps({"detail": detail}).encode("utf-8")
        self._close_code = close_code
        base = (
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._body)).encode("ascii")),
            (b"cache-control", b"no-store"),
            *(() if challenge is None else ((b"www-authenticate", challenge.encode("ascii")),)),
            *extra,
        )
        own = {name for name, _ in base}
        self._plain = base + tuple(p for p in security.for_scheme("http") if p[0] not in own)
        self._secure = base + tuple(p for p in security.for_scheme("https") if p[0] not in own)

    def headers(self, scheme: str) -> Headers:
        return self._secure if scheme in ("https", "wss") else self._plain

    def http_messages(self, scheme: str) -> tuple[Message, Message]:
        """The two messages of the HTTP response, fresh (whoever is sent them may edit them)."""
        headers = self._plain if scheme == "http" else self.headers(scheme)
        return (
            {"type": "http.response.start", "status": self.status, "headers": [*headers]},
            {"type": "http.response.body", "body": self._body},
        )

    async def send_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a handshake: never accepted, whatever the server supports."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client went away first
        if "websocket.http.response" in (scope.get("extensions") or ()):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": self.status,
                    "headers": list(self.headers(scope.get("scheme", "ws"))),
                }
            )
            await send({"type": "websocket.http.response.body", "body": self._body})
        else:
            # 1008: policy violation (1013, try again later, for a 503). Sent before
            # accept, servers answer the handshake with 403.
            code, reason = self._close_code, self.detail[:120]
            await send({"type": "websocket.close", "code": code, "reason": reason})

    def __repr__(self) -> str:
        return f"Denial({self.status}, {self.detail!r})"


class Denials:
    """The denials of one middleware, built from its realm and credential methods.

    >>> Denials("api", SecurityHeaders(False)).missing.status
    401
    """

    __slots__ = (
        "_realm",
        "_security",
        "development_local_only",
        "forbidden",
        "invalid",
        "malformed",
        "missing",
        "rejected",
        "too_long",
        "unavailable",
    )

    def __init__(
        self, realm: str, security: SecurityHeaders, *, how: str = "'Authorization: Bearer <key>'"
    ) -> None:
        if not isinstance(realm, str) or not realm or _QUOTABLE.fullmatch(realm) is None:
            raise ConfigurationError(
                f"realm must be non-empty printable ASCII without quotes or backslashes, "
                f"not {realm!r}",
                setting="realm",
            )
        self._realm = realm
        self._security = security
        # RFC 6750 §3.1: a request with no credentials gets a challenge with no error code.
        self.missing = Denial(
            401,
            f"Missing API key: send it as {how}",
            self._challenge(),
            security,
            reason="missing",
        )
        self.invalid = Denial(
            401,
            "Invalid API key",
            self._challenge(error="invalid_token", error_description="The API key is not valid"),
            security,
            reason="invalid",
        )
        # Development mode nobody asked for (no keys, no ENVIRONMENT) serves only the
        # machine it runs on; another client is told why, and what the operator sets.
        self.development_local_only = Denial(
            401,
            "Development mode serves only this machine: set API_KEY (or pass keys=) to "
            "serve other clients, or ENVIRONMENT=development to open development mode to "
            "every client",
            self._challenge(),
            security,
            reason="missing",
            description="development mode serves only this machine",
        )
        # Not about credentials (no challenge): a path no router should be given.
        self.too_long = Denial(
            414,
            "The request path is too long",
            None,
            security,
            reason="malformed",
            description="The request path is too long",
        )
        # Bounded caches: descriptions come from a fixed set in credentials.py and
        # keys.py (or a verifier's few), and scope sets from the configured rules.
        self.malformed = lru_cache(maxsize=64)(self._malformed)
        self.rejected = lru_cache(maxsize=64)(self._rejected)
        self.forbidden = lru_cache(maxsize=256)(self._forbidden)
        self.unavailable = lru_cache(maxsize=8)(self._unavailable)

    def _challenge(self, **params: str) -> str:
        fields = [f'realm="{self._realm}"', *(f'{key}="{value}"' for key, value in params.items())]
        return "Bearer " + ", ".join(fields)

    def _malformed(self, description: str) -> Denial:
        return Denial(
            400,
            f"Malformed credentials: {description}",
            self._challenge(error="invalid_request", error_description=description),
            self._security,
            reason="malformed",
            description=description,
        )

    def _rejected(self, description: str, reason: str = "invalid") -> Denial:
        # A known token refused for a reason (an expired key, a verifier's Rejected).
        return Denial(
            401,
            f"Invalid API key: {description}",
            self._challenge(error="invalid_token", error_description=description),
            self._security,
            reason=reason,
            description=description,
        )

    def _unavailable(self, detail: str) -> Denial:
        # A live key source that cannot be trusted: the key may be valid, so this is
        # not the client's fault (no challenge), and it may work again soon.
        return Denial(
            503,
            detail,
            None,
            self._security,
            reason="unavailable",
            description=detail,
            extra=((b"retry-after", b"5"),),
            close_code=1013,
        )

    def _forbidden(self, scopes: frozenset[str]) -> Denial:
        needed = " ".join(sorted(scopes))
        return Denial(
            403,
            f"This API key lacks a required scope: {needed}",
            self._challenge(
                error="insufficient_scope",
                error_description="The API key lacks a scope this path requires",
                scope=needed,
            ),
            self._security,
            reason="insufficient_scope",
            required_scopes=scopes,
        )
