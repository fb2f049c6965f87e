"""Security headers: which are added to every HTTP response, and how they are merged.

:class:`SecurityHeaders` turns the ``security_headers`` setting into header
byte pairs once; :class:`AddedHeaders` picks them per scheme (HSTS on https
only) and per credential method (a key in the URL makes a response private);
:class:`PathHeaders` holds one :class:`AddedHeaders` per path prefix of the
``path_security_headers`` setting (API docs pages need a looser
Content-Security-Policy than JSON routes) and picks one per request path;
:func:`merge_headers` adds them to an app's response without overriding what
the app set; :func:`private_cache_control` keeps a response to a URL that holds
a key out of shared caches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from urllib.parse import unquote

from .credentials import is_http_token
from .errors import ConfigurationError, not_shown_unless_word
from .readings import (
    CONTROL,
    fixed_part,
    merge_slashes,
    normalize_path,
    root_readings,
    url_readings,
)

__all__ = [
    "DEFAULT_DOCS_PATHS",
    "DEFAULT_HSTS",
    "DEFAULT_SECURITY_HEADERS",
    "DOCS_CONTENT_SECURITY_POLICY",
    "STRICT_CONTENT_SECURITY_POLICY",
    "AddedHeaders",
    "Headers",
    "PathHeaders",
    "SecurityHeaders",
    "merge_headers",
    "private_cache_control",
]

Headers = tuple[tuple[bytes, bytes], ...]

#: The Content-Security-Policy of every response no path rule relaxes: a JSON API
#: loads nothing and is framed by nobody (OWASP's REST Security Cheat Sheet).
STRICT_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
#: OWASP's current baseline for an API. ``X-XSS-Protection`` is deliberately
#: absent: OWASP advises against ``1; mode=block``.
DEFAULT_SECURITY_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": STRICT_CONTENT_SECURITY_POLICY,
    }
)
# The folders FastAPI's default docs pages load from (fastapi/openapi/docs.py), not the
# whole CDN, which serves any package: Swagger UI 5 and ReDoc 2.
_SWAGGER_CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"
_FASTAPI_CDN = _SWAGGER_CDN + " https://cdn.jsdelivr.net/npm/redoc@2/"
#: What FastAPI's Swagger UI and ReDoc pages need, served by the app ('self') or
#: from FastAPI's default CDN, checked in Chromium: the scripts and stylesheets;
#: Swagger UI's inline start-up script (its text depends on the app's settings,
#: so no hash can name it) and ReDoc's injected styles, hence 'unsafe-inline';
#: data: icons, FastAPI's favicon, ReDoc's logo, blob: images (Swagger UI shows
#: image responses so); ReDoc's fonts and its search worker (a blob: URL); calls
#: to the app itself (the OpenAPI document, "Try it out"). Nothing else may
#: load, embed a plugin, change the base URL, post a form elsewhere or frame
#: the page.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self' 'unsafe-inline' " + _FASTAPI_CDN,
        "style-src 'self' 'unsafe-inline' " + _SWAGGER_CDN + " https://fonts.googleapis.com",
        "img-src 'self' data: blob: https://fastapi.tiangolo.com https://cdn.redoc.ly",
        "font-src 'self' https://fonts.gstatic.com",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)
#: Where the docs pages are when the app does not say (FastAPI's defaults, and
#: where FastAPI's guide to self-hosting the docs serves its own pages).
DEFAULT_DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
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
    >>> relaxed = SecurityHeaders(True).overridden({"X-Frame-Options": None})
    >>> relaxed.sends("X-Frame-Options"), relaxed.sends("referrer-policy")
    (False, True)
    """

    __slots__ = ("_merged", "_plain", "_secure")

    def __init__(self, config: bool | Mapping[str, str | None] = True) -> None:
        merged: dict[str, tuple[str, str | None]] = {}
        if config is not False:
            if config is not True and not isinstance(config, Mapping):
                raise ConfigurationError(
                    "security_headers must be True, False or a mapping of header name to "
                    f"value (None drops a default), not {type(config).__name__}",
                    setting="security_headers",
                )
            merged = {
                name.lower(): (name, value) for name, value in DEFAULT_SECURITY_HEADERS.items()
            }
            merged[_HSTS] = ("Strict-Transport-Security", DEFAULT_HSTS)
            if isinstance(config, Mapping):
                _overlay(merged, config, "security_headers")
        self._build(merged)

    def overridden(
        self,
        overrides: Mapping[str, str | None],
        *,
        setting: str = "security_headers",
        where: str = "",
    ) -> SecurityHeaders:
        """These headers with ``overrides`` on top (``None`` drops one).

        An error names ``setting``, and ``where`` in it (such as ``['/docs']``).
        """
        merged = dict(self._merged)
        _overlay(merged, overrides, setting, where)
        headers = object.__new__(SecurityHeaders)
        headers._build(merged)
        return headers

    def _build(self, merged: dict[str, tuple[str, str | None]]) -> None:
        self._merged = merged
        self._plain: Headers = tuple(
            _pair(name, value)
            for key, (name, value) in merged.items()
            if value is not None and key != _HSTS
        )
        hsts = merged.get(_HSTS, ("", None))[1]
        self._secure: Headers = self._plain + ((_pair(_HSTS, hsts),) if hsts is not None else ())

    @property
    def fields(self) -> dict[str, str]:
        """Name and value of each header sent over https (all but HSTS over http too)."""
        return {name: value for name, value in self._merged.values() if value is not None}

    def sends(self, name: str) -> bool:
        """Whether ``name`` (any case) is sent, over https at least."""
        return self._merged.get(name.lower(), ("", None))[1] is not None

    def for_scheme(self, scheme: str) -> Headers:
        """The header pairs for a request made over ``scheme``."""
        return self._secure if scheme in ("https", "wss") else self._plain


def _overlay(
    merged: dict[str, tuple[str, str | None]],
    config: Mapping[str, str | None],
    setting: str,
    where: str = "",
) -> None:
    """Check ``config`` and write it over ``merged`` by lowercased name."""
    label = setting + where
    for name, value in config.items():
        if not is_http_token(name):
            raise ConfigurationError(
                f"{label}: a name{not_shown_unless_word(name).replace(', not', '')} "
                "is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)",
                setting=setting,
            )
        if name.lower() in _NOT_SECURITY_HEADERS:
            raise ConfigurationError(
                f"{label}: {name!r} is not a security header; set it in the app",
                setting=setting,
            )
        if value is not None and (
            not isinstance(value, str) or _FIELD_VALUE.fullmatch(value) is None
        ):
            raise ConfigurationError(
                f"{label}: the value of {name!r} must be printable ASCII "
                "text without line breaks, or None to drop the header",
                setting=setting,
            )
        merged[name.lower()] = (name, value)


class AddedHeaders:
    """The headers added to one app response, and their names, by scheme and method.

    A token sent in the query string (RFC 6750 §2.3) also makes the response
    ``Cache-Control: private``, unless the security headers set a Cache-Control
    (an app's own Cache-Control is made private by :func:`private_cache_control`).
    """

    __slots__ = ("_variants", "plain", "security")

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
        self.security = security
        #: What nearly every request behind a TLS-terminating proxy gets: plain http, no query key.
        self.plain = variants["http", False]

    def pick(self, scheme: str, via_query: bool) -> tuple[Headers, frozenset[bytes]]:
        https = "https" if scheme in ("https", "wss") else "http"
        return self._variants[https, via_query]


class PathHeaders:
    """The security headers by path: the base ones, and overrides under some path prefixes.

    ``overrides`` maps a path prefix to a mapping like ``security_headers``'s,
    merged over the base headers (``None`` drops one). Prefixes match like the
    path rules: on segment boundaries (``/docs`` covers ``/docs`` and
    ``/docs/...``, never ``/docs-admin``), the longest wins, relative to the
    mount point. A path gets a prefix's headers only when every reading of it
    a router may make (as spelled, with dot segments and repeated slashes
    resolved, as a URL, without control characters) is under that prefix, so
    ``/docs/../admin`` keeps the base headers. ``None`` gives the docs pages
    (``docs_paths``, each that exact path, nothing below it)
    :data:`DOCS_CONTENT_SECURITY_POLICY` in place of the base policy, when the
    base sends one; ``{}`` gives every path the base headers.

    >>> headers = PathHeaders(SecurityHeaders(True), None)
    >>> headers.starts
    ('/docs', '/docs/oauth2-redirect', '/redoc')
    >>> base = headers.base
    >>> headers.choose("/docs", "") is base, headers.choose("/docs/oauth2-redirect", "") is base
    (False, False)
    >>> headers.choose("/docs/../admin", "") is base, headers.choose("/docs/x", "") is base
    (True, True)
    """

    __slots__ = ("_prefixes", "base", "starts")

    def __init__(
        self,
        base: SecurityHeaders,
        overrides: Mapping[str, Mapping[str, str | None]] | None,
        *,
        docs_paths: Iterable[str] = DEFAULT_DOCS_PATHS,
    ) -> None:
        setting = "path_security_headers"
        exact: set[str] = set()
        if overrides is None:
            # The docs pages need more than the strict policy allows; with no
            # policy to relax (switched off or dropped), there is nothing to do.
            # Only the pages themselves: what an app serves below them stays strict.
            overrides = {}
            if base.sends("content-security-policy"):
                csp = {"Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY}
                exact = set(_docs_prefixes(docs_paths))
                overrides = dict.fromkeys(sorted(exact), csp)
        elif not isinstance(overrides, Mapping):
            raise ConfigurationError(
                f"{setting} must be a mapping of path prefix to header overrides, such as "
                "{'/docs': {'Content-Security-Policy': DOCS_CONTENT_SECURITY_POLICY}}, "
                f"not {type(overrides).__name__}",
                setting=setting,
            )
        self.base = AddedHeaders(base)
        profiles: dict[str, AddedHeaders] = {}
        for raw, headers in overrides.items():
            prefix = _check_prefix(raw, setting)
            if prefix in profiles:
                raise ConfigurationError(
                    f"{setting}: {prefix!r} is given twice (a trailing slash changes nothing); "
                    "give each prefix once",
                    setting=setting,
                )
            if not isinstance(headers, Mapping):
                raise ConfigurationError(
                    f"{setting}: the headers of {prefix!r} must be a mapping of header name to "
                    f"value (None drops one), not {type(headers).__name__}",
                    setting=setting,
                )
            overridden = base.overridden(headers, setting=setting, where=f"[{prefix!r}]")
            profiles[prefix] = AddedHeaders(overridden)
        # Longest first: the first prefix that covers a path is the longest that does.
        ordered = sorted(profiles.items(), key=lambda item: (-len(item[0]), item[0]))
        self._prefixes = tuple(
            (prefix, None if prefix in exact else prefix + "/", added) for prefix, added in ordered
        )
        #: Every path a prefix covers starts with one of these: the request's first test.
        self.starts = tuple(sorted(profiles))

    @property
    def prefixes(self) -> dict[str, AddedHeaders]:
        """The headers of each path prefix, longest first."""
        return {prefix: added for prefix, _, added in self._prefixes}

    def choose(self, path: str, root_path: str) -> AddedHeaders:
        """The headers for ``path`` (``scope["path"]``) under the mount point ``root_path``."""
        cut = len(root_path)
        if root_path and path.startswith(root_path) and (len(path) == cut or path[cut] == "/"):
            spelled = path[cut:] or "/"  # as Starlette takes the mount point off
        else:
            spelled = path
        chosen = self._match(spelled)
        if chosen is self.base:
            return chosen
        readings = _readings(spelled)
        for other in root_readings(path, root_path) if root_path else ():
            readings += [other, *_readings(other)]  # as Quart, Django and Litestar take it off
        for reading in readings:
            if self._match(reading) is not chosen:
                return self.base  # readings disagree: no relaxation
        return chosen

    def _match(self, path: str) -> AddedHeaders:
        for prefix, below, added in self._prefixes:
            if path == prefix or (below is not None and path.startswith(below)):
                return added
        return self.base


def _readings(spelled: str) -> list[str]:
    """The other paths a router may route ``spelled`` as (see ``readings.py``)."""
    if spelled[:1] == "/" and "//" not in spelled and "/." not in spelled and spelled.isprintable():
        return []  # canonical: every router reads it as spelled
    texts = [spelled, CONTROL.sub("", spelled)]
    found = [reading for text in texts for reading in (text, *url_readings(text))]
    return [
        variant
        for reading in found
        for rooted in [reading if reading[:1] == "/" else "/" + reading]
        for variant in (reading, normalize_path(rooted), merge_slashes(rooted))
    ]


def _docs_prefixes(paths: Iterable[str]) -> list[str]:
    """The docs pages an app names, as canonical paths: valid and distinct."""
    found = set()
    for path in paths:
        try:
            found.add(_check_prefix(path, "docs"))
        except ConfigurationError:
            continue  # a docs URL no path can name ('/' or a query): its page stays strict
    return sorted(found)


def _check_prefix(path: object, setting: str) -> str:
    """A path prefix of ``path_security_headers``, canonical, or a ConfigurationError."""
    if not isinstance(path, str) or not path.startswith("/"):
        shown = not_shown_unless_word(path).removeprefix(", not ")
        raise ConfigurationError(
            f"{setting}: a prefix{' ' + shown if shown else ''} is not an absolute path: write "
            "each path prefix with a leading '/', such as '/docs'",
            setting=setting,
        )
    if any(char in path for char in "?#*") or not path.isprintable():
        raise ConfigurationError(
            f"{setting}: {path!r} must be a plain path prefix (no query, fragment, wildcard "
            "or control character); '/docs' already covers '/docs/...'",
            setting=setting,
        )
    if "{" in path or "}" in path:
        raise ConfigurationError(
            f"{setting}: {path!r} looks like a route template, but prefixes are literal: "
            f"write {fixed_part(path)!r}",
            setting=setting,
        )
    if "%" in path:
        raise ConfigurationError(
            f"{setting}: {path!r} has a percent-escape, but prefixes match the decoded path: "
            f"write it as {unquote(path)!r}",
            setting=setting,
        )
    canonical = normalize_path(path)
    if path not in (canonical, canonical + "/"):
        raise ConfigurationError(
            f"{setting}: {path!r} has dot segments or repeated slashes; write it as {canonical!r}",
            setting=setting,
        )
    if canonical == "/":
        raise ConfigurationError(
            f"{setting}: '/' would cover every path: set the headers of every path with "
            "security_headers=, and name the exceptions here",
            setting=setting,
        )
    return canonical


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
