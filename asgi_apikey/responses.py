"""The responses the middleware makes itself: denials (401/400/403/414/503).

Every response byte is computed at construction: JSON bodies,
``WWW-Authenticate`` challenges, the header lists with the security headers
(``headers.py``). A denial is a value; sending it copies a prepared header list
into a fresh message (outer middleware may mutate what it is sent) and writes
two messages. The security header names are re-exported here, where they were
first documented.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from .errors import ConfigurationError, not_shown_unless_word
from .headers import (
    DEFAULT_HSTS,
    DEFAULT_SECURITY_HEADERS,
    AddedHeaders,
    Headers,
    SecurityHeaders,
    merge_headers,
    private_cache_control,
)

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

_QUOTABLE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")  # quoted-string without " and \


class Denial:
    """A prepared refusal: status, headers, JSON body; sent as HTTP or to a websocket.

    ``reason`` (one of ``audit.REASONS``), ``description`` (the
    ``error_description``, when specific) and ``required_scopes`` (of a 403)
    are what the audit event records.
    """

    __slots__ = (
        "_body",
        "_body_message",
        "_close_code",
        "_plain",
        "_secure",
        "_start",
        "_start_secure",
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
        # The messages as templates: a dict's copy() is cheaper than building it anew.
        self._start: dict[str, Any] = {
            "type": "http.response.start",
            "status": status,
            "headers": self._plain,
        }
        self._start_secure: dict[str, Any] = {**self._start, "headers": self._secure}
        self._body_message: dict[str, Any] = {"type": "http.response.body", "body": self._body}

    def headers(self, scheme: str) -> Headers:
        return self._secure if scheme in ("https", "wss") else self._plain

    def http_messages(self, scheme: str) -> tuple[Message, Message]:
        """The two messages of the HTTP response, fresh (whoever is sent them may edit them)."""
        start = (self._start if scheme == "http" else self._secure_start(scheme)).copy()
        start["headers"] = [*start["headers"]]  # a list of its own, for whoever edits it
        return start, self._body_message.copy()

    def _secure_start(self, scheme: str) -> dict[str, Any]:
        return self._start_secure if scheme in ("https", "wss") else self._start

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
                "realm must be non-empty printable ASCII without quotes or backslashes"
                f"{not_shown_unless_word(realm)}",
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
        self.unavailable = lru_cache(maxsize=16)(self._unavailable)

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

    def _unavailable(self, detail: str, retry_after: int = 5) -> Denial:
        # A live key source that cannot be trusted, or a shared limiter that cannot
        # decide: the key may be valid, so this is not the client's fault (no
        # challenge), and it may work again soon (in retry_after seconds).
        return Denial(
            503,
            detail,
            None,
            self._security,
            reason="unavailable",
            description=detail,
            extra=((b"retry-after", str(max(1, retry_after)).encode("ascii")),),
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
