"""APIKeyMiddleware: the pure-ASGI class users install.

``__init__`` validates and precomputes everything; ``__call__`` is the
per-request decision: pass ``lifespan`` through, find the path's rule, read
the credentials, verify, then run the app with ``scope["auth"]`` and
``scope["user"]`` filled in, or send a prepared denial. Each decision is
counted, and each refusal audited, by the authenticator's ``audit.Audit``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any, cast

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, reset_contextvars

from .arguments import check_flag
from .auth import APIKeyAuth, set_default
from .context import ANONYMOUS_USER
from .credentials import DEFAULT_MAX_TOKEN_LENGTH, CredentialReader, Malformed, is_http_token
from .errors import ConfigurationError, not_shown_unless_word
from .headers import (
    DEFAULT_DOCS_PATHS,
    Headers,
    PathHeaders,
    SecurityHeaders,
    merge_headers,
    private_cache_control,
)
from .keys import Accepted, APIKey
from .lifespan import run_lifespan
from .loopback import is_local_client
from .openapi import hook_openapi, in_stack
from .paths import DEFAULT_MAX_PATH_LENGTH, Access, RuleTable
from .ratelimit import RateLimit
from .ratelimit.fields import fields as rate_limit_fields
from .ratelimit.fields import rate_limited
from .ratelimit.local import Check
from .ratelimit.policy import LimitPlan, RateLimits
from .ratelimit.shared import LimiterUnavailable
from .readings import plain_prefix_mounts
from .responses import Denial, Denials

__all__ = ["APIKeyMiddleware"]

_PUBLIC = Access.PUBLIC
_PROTECTED = Access.PROTECTED
_REFUSED = Access.REFUSED


class APIKeyMiddleware:
    """API-key authentication in front of any ASGI app.

    >>> from starlette.applications import Starlette
    >>> app = Starlette()
    >>> app.add_middleware(
    ...     APIKeyMiddleware,
    ...     keys=["sk-live-0123456789abcdef"],
    ...     public=["/health", "/docs", "/openapi.json"],
    ...     protected={"/admin": {"admin"}},
    ... )

    Parameters:
        keys: plain keys (``str``) or :class:`APIKey` values. With neither
            ``keys`` nor ``auth``, the keys and settings come from the
            environment (``API_KEY``, ...), read once, here.
        auth: an :class:`APIKeyAuth` the application also holds, to rotate
            keys at run time (instead of ``keys``).
        public, optional, protected: path rules; ``protected`` may map a
            path to the scopes it requires.
        default: access for paths no rule names: ``"protected"`` (deny by
            default), ``"optional"`` or ``"public"``.
        realm: the ``realm`` of ``WWW-Authenticate`` challenges.
        security_headers: ``True`` (OWASP defaults, with a strict
            Content-Security-Policy), ``False``, or a mapping that overrides
            defaults by name (``None`` drops one).
        path_security_headers: path prefix -> overrides of ``security_headers``
            on the paths it covers (matched like the rules). By default the
            docs pages alone (a FastAPI app's ``docs_url``, ``redoc_url`` and
            OAuth2 redirect, else ``/docs``, ``/docs/oauth2-redirect`` and
            ``/redoc``) get ``DOCS_CONTENT_SECURITY_POLICY``; ``{}`` keeps them
            strict.
        header_name: also accept the key in this header (e.g. ``"X-API-Key"``).
        allow_query_token: also accept ``?access_token=`` (RFC 6750 §2.3).
        allow_cors_preflight: let CORS preflight requests through unauthenticated.
        max_token_length: longer tokens are ``invalid_request``.
        max_path_length: longer paths (after the mount point) are refused with
            414 unless a public rule covers them.
        openapi: add what this middleware enforces to the OpenAPI document of
            each FastAPI app it guards (``app.openapi()``); ``False`` leaves the
            documents alone (see :func:`asgi_apikey.add_openapi_security`).
        rate_limits: a :class:`~asgi_apikey.RateLimits`: a default limit for
            keys without their own, limits by scope and by path, anonymous
            clients' limit, shared limits through Redis. Without it, only the
            keys' own limits (``APIKey(..., limit=...)``) apply, in this process.

    A path with a control character (``/admin%0A``) that no public rule
    covers is refused with 400 ``invalid_request``: routers disagree on them,
    and Starlette's runs ``/admin`` for ``/admin\\n``.
    """

    def __init__(
        self,
        app: ASGIApp | Callable[..., Awaitable[None]],
        *,
        keys: Iterable[str | APIKey] | None = None,
        auth: APIKeyAuth | None = None,
        public: Iterable[str] = (),
        optional: Iterable[str] = (),
        protected: Iterable[str] | Mapping[str, Iterable[str]] = (),
        default: str = "protected",
        realm: str = "api",
        security_headers: bool | Mapping[str, str | None] = True,
        path_security_headers: Mapping[str, Mapping[str, str | None]] | None = None,
        header_name: str | None = None,
        allow_query_token: bool = False,
        allow_cors_preflight: bool = False,
        max_token_length: int = DEFAULT_MAX_TOKEN_LENGTH,
        max_path_length: int = DEFAULT_MAX_PATH_LENGTH,
        openapi: bool = True,
        rate_limits: RateLimits | None = None,
    ) -> None:
        # Any ASGI app: Litestar and Quart type their scopes as TypedDicts, which
        # Starlette's ASGIApp (a MutableMapping scope) does not accept.
        self.app: ASGIApp = cast(ASGIApp, app)
        self.auth = _authenticator(keys, auth)
        self._rooted = _rooted_app(app)
        # A Litestar app's ASGI mounts match as plain prefixes: /metricsx reaches /metrics.
        self._mounts = plain_prefix_mounts(app)
        self.rules = RuleTable(
            public=public,
            optional=optional,
            protected=protected,
            default=default,
            max_path_length=max_path_length,
        )
        security = SecurityHeaders(security_headers)
        self._security = security
        self._docs_from_app = path_security_headers is None  # read again at the first scope
        self._use_headers(PathHeaders(security, path_security_headers, docs_paths=_docs_paths(app)))
        check_flag(allow_query_token, "allow_query_token")
        check_flag(allow_cors_preflight, "allow_cors_preflight")
        if (
            isinstance(max_token_length, bool)
            or not isinstance(max_token_length, int)
            or not 16 <= max_token_length <= 65536
        ):
            raise ConfigurationError(
                "max_token_length must be an int from 16 to 65536"
                f"{not_shown_unless_word(max_token_length)}",
                setting="max_token_length",
            )
        self._reader = CredentialReader(
            header_name=_check_header_name(header_name),
            allow_query_token=allow_query_token,
            max_token_length=max_token_length,
        )
        how = "'Authorization: Bearer <key>'"
        if header_name:
            how += f" or '{header_name}: <key>'"
        if allow_query_token:
            how += " or '?access_token=<key>'"
        self._denials = Denials(realm, security, how=how)
        self._path_denials = {
            "control_character": self._denials.malformed("The path has a control character"),
            "too_long": self._denials.too_long,
        }
        self._query_token = allow_query_token
        self._preflight = allow_cors_preflight
        self._realm = realm
        self._audit = self.auth.audit
        self._by_key_id = self._audit.by_key_id  # one dict for the life of the authenticator
        self._log_successes = self._audit.log_successes
        self._track_users = self._audit.track_users
        self._observed = self._log_successes or self._track_users
        self._described: dict[str, Any] = {
            "realm": realm,
            "header_name": header_name,
            "allow_query_token": allow_query_token,
            "allow_cors_preflight": allow_cors_preflight,
            "security_headers": bool(security.for_scheme("https")),
            "max_path_length": max_path_length,
        }
        check_flag(openapi, "openapi")
        self._limits = LimitPlan(rate_limits, max_path_length)  # checks rate_limits first
        self._described["rate_limits"] = None if rate_limits is None else rate_limits.describe()
        # Whether a key without its own limit may be limited all the same.
        plan = self._limits
        self._limit_all = bool(plan.default or plan.scopes or plan.path_table is not None)
        self._limit_anonymous = plan.anonymous is not None or plan.path_table is not None
        # Decided here with nothing to report: a verdict is built only for a refusal.
        self._fast_limits = plan.shared is None and not plan.headers
        self._one_rate = self._fast_limits and plan.path_table is None
        self._rates = plan.local.rates
        self._rate_clock = plan.local.rate_clock
        self.auth.use_limits(plan)
        set_default(self.auth)  # what verify_api_key_string() and get_auth_status() ask
        # The first scope looks again: installed with add_middleware, this middleware
        # wraps the next one, and only scope["app"] leads to the FastAPI app; and a
        # scope that was routed already says where the middleware was installed.
        self._openapi = openapi
        self._first_scope = True
        if openapi:
            hook_openapi(self, app)

    @property
    def limits(self) -> LimitPlan:
        """The compiled rate limits (:class:`~asgi_apikey.RateLimits`) this middleware applies."""
        return self._limits

    @property
    def rules(self) -> RuleTable:
        """The compiled path rules; assign a new :class:`RuleTable` to change them."""
        return self._rules

    @rules.setter
    def rules(self, table: RuleTable) -> None:
        if not isinstance(table, RuleTable):
            raise ConfigurationError(
                f"rules must be a RuleTable, not {type(table).__name__}", setting="rules"
            )
        # The table and the decision cache read inline are replaced together.
        self._decided = table._decided
        self._rules = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._first_scope:
            self._see_first_scope(scope)
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":  # a live key source starts and stops with the app
                await run_lifespan(self.app, self.auth, scope, receive, send, self._limits.shared)
            else:
                await self.app(scope, receive, send)  # a type this middleware does not know
            return

        keys = self.auth.snapshot  # once: the whole request sees one key set
        accepted: Accepted | None = None
        denial: Denial | None = None
        token: bytes | None = None
        refused_id: str | None = None  # the key_id of a known key that is refused
        via_query = False
        path: str = scope["path"]
        rooted = self._rooted
        root: str = (rooted.root_path if rooted is not None else "") or scope.get("root_path") or ""
        if not keys.development:
            if root:
                rule = self._rules.decide_under(path, root)
            else:
                rule = self._decided.get(path) or self._rules.decide(path)  # the cache first
            if self._mounts:  # a Litestar app's mounts, matched as plain prefixes
                rule = self._rules.under_mounts(rule, path, root, self._mounts)
            access = rule.access
            query = scope.get("query_string", b"")
            if access is _REFUSED:  # the path alone decides (see paths.RuleTable)
                denial = self._path_denials[rule.problem]  # type: ignore[index]
            elif (found := self._reader.read(scope["headers"], query)) is None:
                if access is _PROTECTED and not (
                    self._preflight and kind == "http" and _is_preflight(scope)
                ):
                    denial = self._denials.missing
            elif isinstance(found, Malformed):
                if access is not _PUBLIC:
                    denial = self._denials.malformed(found.description)
                elif self._query_token:  # a public path runs: is there a key in the URL?
                    # Even a malformed or doubled one: the response is never cached publicly.
                    via_query = self._reader.names_query_token(query)
            else:
                token, via_query = found
                result = keys.resolve(token)
                if isinstance(result, Accepted):
                    if (
                        access is _PROTECTED
                        and rule.scopes
                        and not rule.scopes <= result.context.scopes
                    ):
                        denial = self._denials.forbidden(rule.scopes)
                        refused_id = result.context.key_id
                    else:
                        accepted = result
                elif access is not _PUBLIC:
                    if result is None:
                        unavailable = keys.unavailable  # a live source's keys cannot be trusted
                        if unavailable is None:
                            denial = self._denials.invalid
                        else:
                            denial = self._denials.unavailable(unavailable)
                            self.auth.refused_unavailable()
                    else:
                        denial = self._denials.rejected(result.description, result.reason)
                        refused_id = result.key_id
        elif keys.local_only and not is_local_client(scope):
            # Development mode nobody asked for (no ENVIRONMENT): this machine only.
            denial = self._denials.development_local_only

        added_fields: tuple[tuple[bytes, bytes], ...] = ()
        if denial is None and not keys.development:
            # Rate limits: a key's own (a KeyEntry's key), else the configured ones.
            checks: tuple[Check, ...] = ()
            if accepted is not None:
                try:
                    own = accepted.key.limit  # type: ignore[attr-defined]
                except AttributeError:  # a verifier's Accepted: no key of ours
                    own = None
                if own is not None or self._limit_all:
                    checks = self._key_checks(accepted, own, scope)
            elif self._limit_anonymous:
                plan = self._limits
                who = ("client", _client_host(scope))
                checks = plan.checks(
                    who, plan.anonymous, scope["path"], self._root_of(scope), self._mounts
                )
                if checks and self._fast_limits and plan.local.admit(checks):
                    checks = ()
            if checks:
                added_fields, denial = await self._limit(checks, accepted is not None, scope)
                if denial is not None and accepted is not None:
                    refused_id = accepted.context.key_id

        if denial is not None:
            self._audit.refused(scope, denial, self._realm, key_id=refused_id, token=token)
            if kind == "http":
                start, body = denial.http_messages(scope.get("scheme", "http"))
                await send(start)
                await send(body)
            else:
                await denial.send_websocket(scope, receive, send)
            return

        # The key set is not held while the app runs (a stream may last minutes):
        # the writer that swapped it out frees it (keyring.rows_of), not this task.
        if accepted is None:
            self._audit.anonymous += 1
            scope["auth"] = keys.anonymous
            del keys
            scope["user"] = ANONYMOUS_USER
        else:
            del keys
            context = scope["auth"] = accepted.context
            scope["user"] = accepted.user
            try:
                self._by_key_id[context.key_id] += 1  # type: ignore[index]  # set when accepted
            except KeyError:
                self._audit.first_use(context.key_id)  # type: ignore[arg-type]
            if self._observed:  # request logging or user tracking: off by default
                await self._call_observed(scope, receive, send, via_query, added_fields)
                return

        if added_fields:
            send = _with_fields(send, added_fields)
        starts = self._header_starts
        if (
            kind == "http"
            and not via_query
            and scope.get("scheme", "http") == "http"
            and not (
                starts
                and (path.startswith(starts) or (root and path.startswith(starts, len(root))))
            )
        ):
            # What nearly every request is (plain http behind a TLS proxy, no key in
            # the URL, not a docs page): its headers chosen inline, and a plain
            # function that returns send's awaitable, no coroutine to drive per
            # message. The other cases go through _sender.
            added, names = self._plain
            if not added:
                await self.app(scope, receive, send)
                return

            def send_with_headers(message: Message) -> Awaitable[None]:
                if message["type"] == "http.response.start":
                    # In place, as Starlette's own middleware edit the message they
                    # pass on; merging again adds nothing, so a reused message stays right.
                    headers = message.get("headers") or ()
                    if type(headers) is list:
                        # merge_headers() inline for what apps send: lowercase names,
                        # none of them ours. Anything else takes the long way.
                        for name, _ in headers:
                            if name in names or not name.islower():
                                break
                        else:
                            message["headers"] = [*headers, *added]
                            return send(message)
                    message["headers"] = merge_headers(headers, added, names)
                return send(message)

            await self.app(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, self._sender(scope, send, via_query))

    def _key_checks(
        self, accepted: Accepted, own: RateLimit | None, scope: Scope
    ) -> tuple[Check, ...]:
        """The checks left to decide for a key's request: none when its one rate admitted it."""
        plan = self._limits
        context = accepted.context
        key_id: str = context.key_id  # type: ignore[assignment]  # set when accepted
        limit = (
            own if own is not None and not own.unlimited else plan.limit_of_key(own, context.scopes)
        )
        if self._one_rate and limit is not None:
            rate = limit.rate
            if rate is not None and limit.quota is None:  # one rate: spent in one call
                if self._rates.admit(key_id, rate, self._rate_clock()):
                    return (Check(key_id, limit),)  # refused: decided again, to say why
                return ()
        checks = plan.checks(key_id, limit, scope["path"], self._root_of(scope), self._mounts)
        if checks and self._fast_limits and plan.local.admit(checks):
            return ()
        return checks  # refused (decided again, to say why), or for _limit to decide

    async def _limit(
        self, checks: tuple[Check, ...], with_key: bool, scope: Scope
    ) -> tuple[tuple[tuple[bytes, bytes], ...], Denial | None]:
        """Decide a request's limits: the fields to add to its response, or its denial.

        A shared limiter counts a request once: nested middlewares that share one
        skip the checks an outer one has decided for this request (in the scope).
        """
        plan = self._limits
        shared = plan.shared
        if shared is None:
            verdict = plan.local.decide(checks)
        else:
            decided: set[tuple[int, Check]] | None = scope.get(_DECIDED)
            if decided is not None:
                checks = tuple(check for check in checks if (id(shared), check) not in decided)
                if not checks:
                    return (), None
            try:
                verdict = await shared.decide(checks)
            except LimiterUnavailable as error:
                return (), self._denials.unavailable(error.detail, error.retry_after)
            if verdict.allowed:
                if decided is None:
                    decided = scope[_DECIDED] = set()
                decided.update((id(shared), check) for check in checks)
        if not verdict.allowed:
            return (), rate_limited(verdict, self._security, "API key" if with_key else "client")
        return (rate_limit_fields(verdict.parts) if plan.headers else ()), None

    def _root_of(self, scope: Scope) -> str:
        rooted = self._rooted
        return (rooted.root_path if rooted is not None else "") or scope.get("root_path") or ""

    def _use_headers(self, headers: PathHeaders) -> None:
        self._headers = headers
        self._added = headers.base
        self._header_starts = headers.starts  # () when every path gets the base headers
        self._plain = headers.base.plain  # plain http, no key in the URL, no docs page

    def _see_first_scope(self, scope: Scope) -> None:
        self._first_scope = False
        if "route_handler" in scope:
            # Litestar(middleware=[...]) runs middleware after routing, on the path a
            # mounted app is given: its rules would judge the wrong path. Nothing is let
            # through to the app, and every request says why.
            self.app = _Misinstalled()
            return
        outer = scope.get("app")
        # Installed with add_middleware, this middleware wraps the router: the app that
        # names the docs pages is only seen now.
        if self._docs_from_app and in_stack(self, getattr(outer, "middleware_stack", None)):
            docs = _docs_paths(outer)
            self._use_headers(PathHeaders(self._security, None, docs_paths=docs))
        if self._openapi:
            hook_openapi(self, self.app, scope)

    def _sender(self, scope: Scope, send: Send, via_query: bool) -> Send:
        """``send``, or ``send`` wrapped to add the path's security headers to the response.

        ``__call__`` wraps the common case (plain http, no key in the URL, not a
        docs page) itself; this is every case, read the long way.
        """
        scheme = scope.get("scheme", "http")
        chosen = self._added
        starts = self._header_starts
        if starts:
            # One C-level prefix test rules out nearly every API path: no reading of a
            # path that does not start with a prefix (after the mount point) is under it.
            path = scope["path"]
            root = self._root_of(scope)
            if path.startswith(starts) or (root and path.startswith(starts, len(root))):
                chosen = self._headers.choose(path, root)
        added, names = chosen.pick(scheme, via_query)
        if not added and not via_query:
            return send
        return _careful_sender(send, scope["type"], added, names, via_query)

    async def _call_observed(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        via_query: bool,
        added_fields: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        """The app for an accepted request, with request logging and user tracking."""
        if added_fields:
            send = _with_fields(send, added_fields)
        key_id: str = scope["auth"].key_id
        if self._log_successes:
            self._audit.succeeded(scope, key_id, self._realm)
        if not self._track_users:
            await self.app(scope, receive, self._sender(scope, send, via_query))
            return
        # The app's own structlog lines carry key_id during this request; the
        # binding is undone afterwards, whatever the app raised.
        bound = bind_contextvars(key_id=key_id)
        try:
            await self.app(scope, receive, self._sender(scope, send, via_query))
        finally:
            reset_contextvars(**bound)

    def describe(self) -> dict[str, Any]:
        """The configuration as data, for ``python -m asgi_apikey check`` and for logs.

        ``rules`` lists the compiled path rules, longest first, the default last.
        ``path_security_headers`` maps each path prefix, longest first, then
        ``/`` for every other path, to the security headers its responses get
        (``Strict-Transport-Security`` on https only).
        """
        rules = [
            {"path": rule.path, "access": rule.access.name.lower(), "scopes": sorted(rule.scopes)}
            for rule in self.rules.rules
        ]
        default = self.rules.default
        headers = {
            prefix: added.security.fields for prefix, added in self._headers.prefixes.items()
        }
        return {
            "rules": rules,
            "default": default.access.name.lower(),
            "default_scopes": sorted(default.scopes),
            **self._described,
            "path_security_headers": {**headers, "/": self._added.security.fields},
        }

    def __repr__(self) -> str:
        # getattr: error reporters may repr a half-built instance whose __init__ raised.
        auth, rules = getattr(self, "auth", None), getattr(self, "rules", None)
        if auth is None or rules is None:
            return f"{type(self).__name__}(<not built>)"
        return f"{type(self).__name__}(auth={auth!r}, rules={len(rules.rules)})"


def _careful_sender(
    send: Send, kind: str, added: Headers, names: frozenset[bytes], via_query: bool
) -> Send:
    """The header wrapper for the rarer cases: https, a websocket's denial response, a
    docs page, or a response to a URL that holds a key (never cached publicly, RFC 6750
    §2.3)."""
    start = "http.response.start" if kind == "http" else "websocket.http.response.start"

    def send_with_headers(message: Message) -> Awaitable[None]:
        if message["type"] == start:
            headers = merge_headers(message.get("headers") or (), added, names)
            message["headers"] = private_cache_control(headers) if via_query else headers
        return send(message)

    return send_with_headers


def _with_fields(send: Send, added: tuple[tuple[bytes, bytes], ...]) -> Send:
    """``send`` adding the RateLimit fields to an HTTP response, never over the app's own.

    The two go together: an app that sets either one (its own limits) gets neither.
    """

    def send_with_fields(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or ())
            if not any(name.lower() in _RATELIMIT_FIELDS for name, _ in headers):
                headers += added
            message["headers"] = headers
        return send(message)

    return send_with_fields


_RATELIMIT_FIELDS = frozenset({b"ratelimit", b"ratelimit-policy"})
#: The scope's record of the checks a shared limiter has decided for this request.
_DECIDED = "asgi_apikey.limits_decided"


def _client_host(scope: Scope) -> str:
    """The client address anonymous limits count by (``"unknown"`` without one).

    An IPv6 client counts by its /64, the block one subscriber gets (anyone
    holding one can use every address in it); an IPv4-mapped address as IPv4.
    """
    client = scope.get("client")
    if isinstance(client, (tuple, list)) and client and isinstance(client[0], str):
        host = client[0]
        return _ipv6_block(host) if ":" in host else host
    return "unknown"


@lru_cache(maxsize=4096)
def _ipv6_block(host: str) -> str:
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host  # not an address (a unix socket's name, say): counted as it is
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class _Misinstalled:
    """The app behind a middleware installed as Litestar route middleware: never runs."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise ConfigurationError(
            "APIKeyMiddleware is installed as Litestar middleware (Litestar(middleware=[...]) "
            "or DefineMiddleware), which runs after routing, where a mounted app's path is "
            "already rewritten and escapes the rules: wrap the app instead, "
            "app = APIKeyMiddleware(Litestar(...), ...)",
            setting="app",
        )


def _authenticator(keys: Iterable[str | APIKey] | None, auth: APIKeyAuth | None) -> APIKeyAuth:
    if keys is not None and auth is not None:
        raise ConfigurationError(
            "give keys= or auth=, not both: put the keys in the APIKeyAuth you pass as auth=",
            setting="keys",
        )
    if auth is not None:
        if not isinstance(auth, APIKeyAuth):
            raise ConfigurationError(
                f"auth must be an APIKeyAuth, not {type(auth).__name__}", setting="auth"
            )
        return auth
    if keys is None:
        return APIKeyAuth()  # the environment, read once, here, never per request
    return APIKeyAuth(keys)


def _rooted_app(app: object) -> Any:
    """The Starlette app inside ``app`` that sets its own ``root_path``, or ``None``.

    ``FastAPI(root_path="/api")`` overwrites ``scope["root_path"]`` with its
    ``root_path`` when called, then routes ``/api/admin`` as ``/admin``.
    Installed with ``add_middleware`` this middleware runs after that and sees
    it; wrapped around the app from outside it runs before, so it must read
    the same attribute (at each request: it may be set after wrapping), or
    ``/api/admin`` would escape a rule for ``/admin``. Only a Starlette app is
    trusted with the attribute: on other objects (a Quart or Flask app) a
    ``root_path`` is a directory, not a mount point. Middleware between this
    one and the app keep it as ``.app``; a few are followed.
    """
    for _ in range(_MAX_WRAPPERS):
        if isinstance(app, Starlette):
            return app if isinstance(getattr(app, "root_path", None), str) else None
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


_MAX_WRAPPERS = 16


def _docs_paths(app: object) -> tuple[str, ...]:
    """Where the docs pages of ``app`` are: a FastAPI app's own URLs, else the usual ones.

    A FastAPI docs URL set to ``None`` names no page: an app that serves its own
    docs page there (FastAPI's guide to self-hosting the docs) gives it a policy
    with ``path_security_headers``. Middleware between this one and the app keep
    it as ``.app``; installed with ``add_middleware`` this one wraps the router,
    and the app is read at the first request (``scope["app"]``).
    """
    for _ in range(_MAX_WRAPPERS):
        if isinstance(app, Starlette) and hasattr(app, "docs_url"):  # FastAPI
            docs = getattr(app, "docs_url", None)
            found = [docs, getattr(app, "redoc_url", None)]
            if docs:  # FastAPI serves the redirect only with the docs
                found.append(getattr(app, "swagger_ui_oauth2_redirect_url", None))
            return tuple(path for path in found if isinstance(path, str))
        app = getattr(app, "app", None)
        if app is None:
            break
    return DEFAULT_DOCS_PATHS


def _check_header_name(name: str | None) -> str | None:
    if name is None:
        return None
    if not is_http_token(name) or name.lower() == "authorization":
        raise ConfigurationError(
            "header_name must be a header name other than Authorization, such as "
            f"'X-API-Key'{not_shown_unless_word(name)}",
            setting="header_name",
        )
    return name


def _is_preflight(scope: Scope) -> bool:
    if scope["method"] != "OPTIONS":
        return False
    names = {name for name, _ in scope["headers"]}
    return b"origin" in names and b"access-control-request-method" in names
