"""What an APIKeyMiddleware enforces, said in an OpenAPI 3 document.

:func:`add_openapi_security` edits a document in place and returns it: the
security schemes the middleware reads (``HTTPBearer`` always, ``APIKeyHeader``
with ``header_name``, ``APIKeyQuery`` with ``allow_query_token``: FastAPI's
own names), each operation's ``security`` from the rule the middleware applies
to its path, and the 401/400/403 (and, with a live key source, 503) responses
it may send there, with the 429 of its rate limits (and their 503 when a
shared limiter may refuse) where a limit can refuse a request. It works on any
OpenAPI dict: FastAPI's ``app.openapi()``, Starlette's ``SchemaGenerator``, one
written by hand.

The document depends on the rules and the rate limits, read at each call
(``middleware.rules`` may be replaced at run time): never a key, a key id or a
digest, since keys rotate while the document is cached; of the keys it asks
only whether any has a limit of its own. Each operation it decides carries an
``x-asgi-apikey`` extension (its access and scopes, and what the app itself
declared), so that applying again, with the same rules or new ones, gives
the document a fresh application would: never two layers.

:func:`hook_openapi` is how the middleware does this by itself for FastAPI
apps (``openapi=True``): it wraps each app's ``openapi``, FastAPI's documented
customisation point, once. This module sits below ``middleware.py``.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from starlette.routing import Host, Mount
from starlette.types import Scope

from .audit import emit
from .keys import KeySnapshot
from .paths import Access, Rule, RuleTable, normalize_path
from .ratelimit.fields import DRAFT

if TYPE_CHECKING:
    from .middleware import APIKeyMiddleware

__all__ = ["MARK", "OpenAPILimits", "OpenAPISecurity", "add_openapi_security", "hook_openapi"]

#: The extension each decided operation carries: its access, scopes, and what it declared.
MARK = "x-asgi-apikey"

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace", "query")
_OURS = "_asgi_apikey"  # the suffix of a name the app already uses for something else
_MAX_WRAPPERS = 16  # as middleware._rooted_app follows them
_CONVERTER = re.compile(r":\w+}")  # Starlette's `{id:int}` is `{id}` in a document


@dataclass(frozen=True, slots=True)
class OpenAPILimits:
    """Where one middleware's rate limits can refuse a request: the operations with a 429.

    >>> limits = OpenAPILimits(paths=RuleTable(protected=["/v1/chat"], default="public"))
    >>> limits.applies("/v1/chat/{model}", Access.PROTECTED, "post")
    True
    >>> limits.applies("/v1/models", Access.PUBLIC, "get")
    False

    Parameters:
        keys: a request with a key may be limited (a default or scope limit, a
            key with a limit of its own, or a live source whose keys may bring
            one): every operation, public ones too, since a key sent there counts.
        anonymous: requests without a key are limited per client address: the
            public and optional operations.
        paths: the path limits, as the protected rules of a table (every caller
            on those paths, with a key or without).
        preflight: CORS preflight requests pass without a key, so an ``options``
            operation on a protected path has anonymous callers too.
        refuses: the limiter is shared and answers 503 when it cannot decide.
    """

    keys: bool = False
    anonymous: bool = False
    paths: RuleTable | None = None
    preflight: bool = False
    refuses: bool = False

    @classmethod
    def of(cls, middleware: APIKeyMiddleware) -> OpenAPILimits | None:
        """Where ``middleware``'s limits apply now, or ``None`` where none can refuse."""
        plan = middleware.limits
        auth = middleware.auth
        snapshot = auth.snapshot
        if snapshot.development:  # development mode limits nothing
            return None
        shared = plan.shared
        described = shared.describe() if shared is not None else {}
        limits = cls(
            keys=bool(plan.default or plan.scopes)
            or auth.source_is_live
            or _keys_have_limits(snapshot),
            anonymous=plan.anonymous is not None,
            paths=plan.path_table,
            preflight=bool(middleware.describe()["allow_cors_preflight"]),
            refuses=described.get("on_unavailable") == "refuse",
        )
        if not (limits.keys or limits.anonymous or limits.paths is not None):
            return None
        return limits

    def applies(self, template: str, lenient: Access, method: str) -> bool:
        """Whether a request to the operation can be limited.

        ``lenient`` is the least strict access any value of the template gets:
        below protected, some requests come without a key.
        """
        if self.keys:
            return True
        anonymous = lenient < Access.PROTECTED or (self.preflight and method == "options")
        if self.anonymous and anonymous:
            return True
        if self.paths is None:
            return False
        rule, _ = OpenAPISecurity(self.paths).decide(template)  # the strictest of its values
        return rule.access is Access.PROTECTED


#: The last key set asked and its answer: keys change far less often than documents are read.
_KEYS_ASKED: list[tuple[KeySnapshot, bool]] = []


def _keys_have_limits(snapshot: KeySnapshot) -> bool:
    """Whether any key of ``snapshot`` has a limit of its own (not ``UNLIMITED``)."""
    if _KEYS_ASKED and _KEYS_ASKED[0][0] is snapshot:
        return _KEYS_ASKED[0][1]
    found = False
    for entry in snapshot.by_digest.values():
        limit = entry.key.limit
        if limit is not None and not limit.unlimited:
            found = True
            break
    _KEYS_ASKED[:] = [(snapshot, found)]  # holds the snapshot: its id is never reused
    return found


@dataclass(frozen=True, slots=True)
class OpenAPISecurity:
    """The security of one middleware configuration, ready to add to documents.

    >>> rules = RuleTable(public=["/health"], protected={"/admin": {"admin"}})
    >>> doc = {"openapi": "3.1.0", "paths": {"/admin": {"get": {"responses": {}}}}}
    >>> OpenAPISecurity(rules).apply(doc)["paths"]["/admin"]["get"]["security"]
    [{'HTTPBearer': ['admin']}]

    Parameters:
        rules: the middleware's :class:`~asgi_apikey.paths.RuleTable`.
        realm: the ``realm`` of its ``WWW-Authenticate`` challenges.
        header_name: the custom header it also reads, if any.
        allow_query_token: whether it also reads ``?access_token=``.
        live_source: whether its keys come from a live source (which may answer 503).
        also: the rules of other middleware that guard the same app, each with the
            mount path of the document's paths below it: an operation gets the
            strictest decision of them all.
        limits: where its rate limits can refuse a request (429); ``None``: nowhere.
        also_limits: the limits of the middleware in ``also``, each with its mount path.
    """

    rules: RuleTable
    realm: str = "api"
    header_name: str | None = None
    allow_query_token: bool = False
    live_source: bool = False
    also: tuple[tuple[RuleTable, str], ...] = ()
    limits: OpenAPILimits | None = None
    also_limits: tuple[tuple[OpenAPILimits, str], ...] = ()

    @classmethod
    def of(cls, middleware: APIKeyMiddleware) -> OpenAPISecurity:
        """What ``middleware`` enforces now (its current rules)."""
        described = middleware.describe()
        return cls(
            middleware.rules,
            realm=described["realm"],
            header_name=described["header_name"],
            allow_query_token=described["allow_query_token"],
            live_source=middleware.auth.source_is_live,
            limits=OpenAPILimits.of(middleware),
        )

    def apply(self, schema: dict[str, Any], *, mount_path: str = "") -> dict[str, Any]:
        """Add the security to ``schema`` in place and return it (see the module docstring).

        ``mount_path`` is where the document's paths sit below the middleware
        (a FastAPI app mounted at ``/v2`` inside the app the middleware wraps).
        """
        scoped = _version(schema) >= (3, 1)  # 3.0 allows scopes for oauth2 and openIdConnect only
        components = _dict(schema, "components")
        schemes = self._schemes(_dict(components, "securitySchemes"))
        declared = _dict(components, "responses")
        limits = [(self.limits, mount_path), *self.also_limits]
        limited = [(found, where) for found, where in limits if found is not None]
        refs, ours = self._responses(declared, limited)
        inherited = schema.get("security")
        paths = schema.get("paths") or {}
        used: set[int] = set()
        for path, item in paths.items():
            if not isinstance(item, dict) or not isinstance(path, str):
                continue
            rule, varies, lenient = self._decide(mount_path + path)
            for rules, below in self.also:  # nested middleware: a request passes them all
                other, other_varies, other_lenient = OpenAPISecurity(rules)._decide(below + path)
                access = max(rule.access, other.access)
                rule = Rule(rule.path, access, rule.scopes | other.scopes)
                varies = varies or other_varies
                lenient = max(lenient, other_lenient)
            for method in _METHODS:
                operation = item.get(method)
                if isinstance(operation, dict):
                    _undo(operation, ours)
                    # Each middleware's limits, on the path as that middleware reads it.
                    applying = [
                        found
                        for found, where in limited
                        if found.applies(where + path, lenient, method)
                    ]
                    statuses = self._operation(operation, rule, varies, schemes, inherited, scoped)
                    if applying:
                        statuses.append(429)
                    if any(found.refuses for found in applying) and 503 not in statuses:
                        statuses.append(503)  # the shared limiter could not decide
                    used.update(statuses)
                    _add_responses(operation, statuses, refs)
        # No operation is limited: no component (the key store's 503 stays, as 401 does).
        for status in (429, 503):
            if status in refs and status not in used and (status == 429 or not self.live_source):
                del declared[refs[status].rsplit("/", 1)[1]]
        return schema

    def decide(self, template: str) -> tuple[Rule, bool]:
        """The rule for a document path such as ``/items/{id}``, and whether it varies.

        A path parameter stands for any segment (the last one for several, as
        a ``{path:path}`` converter reads): where a rule lies below one, some
        values get another access than the rest. The strictest is returned,
        with every scope any value needs, and ``varies`` is true.

        >>> rules = RuleTable(public=["/files"], protected={"/files/secret": {"admin"}})
        >>> rule, varies = OpenAPISecurity(rules).decide("/files/{name}")
        >>> rule.access.name, sorted(rule.scopes), varies
        ('PROTECTED', ['admin'], True)
        """
        rule, varies, _ = self._decide(template)
        return rule, varies

    def _decide(self, template: str) -> tuple[Rule, bool, Access]:
        """:meth:`decide`, and the least strict access any value of the template gets."""
        path = normalize_path(_CONVERTER.sub("}", template))
        rule = self.rules.match(path)
        segments = path.split("/")[1:]
        # Rules that some values reach through a parameter, and that differ from the rule
        # for the rest ("/" covers every path: it is the rule or an ancestor of it).
        differing = [
            other
            for other in self.rules.rules
            if other.path != "/"
            and (other.access, other.scopes) != (rule.access, rule.scopes)
            and _below_parameter(other.path.split("/")[1:], segments)
        ]
        if not differing:
            return rule, False, rule.access
        access = max(other.access for other in (rule, *differing))
        lenient = min(other.access for other in (rule, *differing))
        scopes = frozenset().union(
            *(other.scopes for other in (rule, *differing) if other.access is Access.PROTECTED)
        )
        return Rule(rule.path, access, scopes), True, lenient

    def _schemes(self, declared: dict[str, Any]) -> list[str]:
        """Our scheme names, each added to ``declared`` unless an equal one is there."""
        wanted: list[tuple[str, dict[str, str], str]] = [
            ("HTTPBearer", {"type": "http", "scheme": "bearer"}, "`Authorization: Bearer <key>`")
        ]
        if self.header_name:
            definition = {"type": "apiKey", "in": "header", "name": self.header_name}
            wanted.append(("APIKeyHeader", definition, f"`{self.header_name}: <key>`"))
        if self.allow_query_token:
            definition = {"type": "apiKey", "in": "query", "name": "access_token"}
            wanted.append(("APIKeyQuery", definition, "`?access_token=<key>` (RFC 6750 §2.3)"))
        names = []
        for base, definition, how in wanted:
            text = f"An API key, sent as {how}"
            if len(wanted) > 1:
                text += "; one method per request (two are refused with 400)"
            names.append(
                _free_name(declared, base, {**definition, "description": text + "."}, _same)
            )
        return names

    def _responses(
        self, declared: dict[str, Any], limited: list[tuple[OpenAPILimits, str]]
    ) -> tuple[dict[int, str], set[str]]:
        """Our response components, by status: each added unless an equal one is there.

        Also every reference an earlier application may have added, for :func:`_undo`:
        the components of limits or causes of 503 that no longer apply are taken off.
        """
        realm = f'Bearer realm="{self.realm}"'
        detail = {
            "type": "object",
            "properties": {"detail": {"type": "string"}},
            "required": ["detail"],
        }

        def response(description: str, example: str, headers: dict[str, Any]) -> dict[str, Any]:
            return {
                "description": description,
                "headers": headers,
                "content": {
                    "application/json": {
                        "schema": copy.deepcopy(detail),
                        "example": {"detail": example},
                    }
                },
            }

        def challenge(text: str, example: str) -> dict[str, Any]:
            header = {"description": text, "schema": {"type": "string"}, "example": example}
            return {"WWW-Authenticate": header}

        wanted = {
            401: (
                "APIKeyUnauthorized",
                response(
                    "No API key, or one that is not valid (RFC 6750 `invalid_token`).",
                    "Invalid API key",
                    challenge(
                        f'The challenge: `{realm}` without a key, with `error="invalid_token"` '
                        "for a key that is not valid.",
                        f'{realm}, error="invalid_token", error_description="The API key is '
                        'not valid"',
                    ),
                ),
            ),
            400: (
                "APIKeyInvalidRequest",
                response(
                    "Malformed credentials (RFC 6750 `invalid_request`): an empty or "
                    "malformed key, or more than one.",
                    "Malformed credentials: The bearer token is empty",
                    challenge(
                        'The challenge, with `error="invalid_request"`.',
                        f'{realm}, error="invalid_request", error_description="The bearer '
                        'token is empty"',
                    ),
                ),
            ),
            403: (
                "APIKeyForbidden",
                response(
                    "The API key lacks a scope this operation requires "
                    "(RFC 6750 `insufficient_scope`).",
                    "This API key lacks a required scope: admin",
                    challenge(
                        'The challenge, with `error="insufficient_scope"` and the `scope` needed.',
                        f'{realm}, error="insufficient_scope", error_description="The API key '
                        'lacks a scope this path requires", scope="admin"',
                    ),
                ),
            ),
        }
        # What limits and a live source add, in every form: the forms that apply now are
        # wanted, the others are taken off where an earlier application added them.
        refuses = any(found.refuses for found, _ in limited)
        retry = {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        forms: list[tuple[int, str, dict[str, Any], bool]] = [
            (429, "APIKeyRateLimited", _rate_limited(response), bool(limited))
        ]
        for causes, (text, example) in _UNAVAILABLE.items():
            body = response(text, example, {"Retry-After": retry})
            forms.append((503, "APIKeyUnavailable", body, causes == (self.live_source, refuses)))
        old = set()
        for status, base, body, applies in forms:
            if applies:
                wanted[status] = (base, body)
                continue
            for name, present in list(declared.items()):
                if name.startswith(base) and present == body:
                    del declared[name]
                    old.add(f"#/components/responses/{name}")
        refs = {
            status: f"#/components/responses/{_free_name(declared, base, body, _equal)}"
            for status, (base, body) in wanted.items()
        }
        return refs, old | set(refs.values())

    def _operation(
        self,
        operation: dict[str, Any],
        rule: Rule,
        varies: bool,
        schemes: list[str],
        inherited: object,
        scoped: bool,
    ) -> list[int]:
        """Decide ``operation``'s security; return the statuses the middleware may answer."""
        access = rule.access
        scopes = sorted(rule.scopes) if access is Access.PROTECTED else []
        mark: dict[str, Any] = {"access": access.name.lower(), "scopes": scopes}
        if varies:
            mark["varies"] = True  # by path parameter: the strictest is stated
        declared = operation.get("security")
        if declared is not None:
            mark["app_security"] = copy.deepcopy(declared)
        operation[MARK] = mark

        # The app's own requirements (its schemes, not ours) still hold: each of
        # ours is combined with each of its (AND within one requirement object).
        own = declared if declared is not None else inherited
        theirs = _unique(
            [{k: v for k, v in req.items() if k not in schemes} for req in _requirements(own)]
        ) or [{}]
        ours: list[dict[str, list[str]]] = [{}]
        if access is not Access.PUBLIC:
            listed = scopes if scoped else []
            ours = [{name: list(listed)} for name in schemes]
            if access is Access.OPTIONAL:
                ours.insert(0, {})
        security = _unique([{**mine, **app} for mine in ours for app in theirs])
        if declared is None and security == _requirements(inherited):
            pass  # what the operation inherits already says it
        elif security != [{}]:
            operation["security"] = security
        elif inherited:
            operation["security"] = []  # overrides the document's top-level requirement
        else:
            operation.pop("security", None)

        statuses = [401, 400] if access is not Access.PUBLIC else []
        if scopes:
            statuses.append(403)
        if access is not Access.PUBLIC and self.live_source:
            statuses.append(503)  # a key the live source cannot vouch for now
        return statuses


def _add_responses(operation: dict[str, Any], statuses: list[int], refs: dict[int, str]) -> None:
    responses = operation.setdefault("responses", {})
    for status in statuses:
        if str(status) not in responses and status not in responses:  # the app's stay
            responses[str(status)] = {"$ref": refs[status]}


#: The 503 response's description and example, by its causes: (a live key source, a
#: shared limiter that refuses when it cannot decide).
_UNAVAILABLE = {
    (True, False): (
        "The key store cannot be trusted right now (the key may be valid): retry.",
        "The key store is unavailable",
    ),
    (False, True): (
        "The shared rate limiter cannot decide right now: retry.",
        "The rate limiter is unavailable",
    ),
    (True, True): (
        "The key store cannot be trusted right now (the key may be valid), or the shared "
        "rate limiter cannot decide: retry.",
        "The key store is unavailable",
    ),
}


def _rate_limited(response: Callable[[str, str, dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """The 429 component: the same for every configuration (it names no limit)."""
    return response(
        "Too many requests: the API key (or, without a key, the client address) is over a "
        "rate limit or quota; the request was not counted. Retry after `Retry-After` seconds.",
        "Too many requests: this API key is over its rate limit (rate); retry after 12 seconds",
        {
            "Retry-After": {
                "description": "Whole seconds until the request would be admitted.",
                "schema": {"type": "integer", "minimum": 1},
            },
            "RateLimit-Policy": {
                "description": f"The limits that apply ({DRAFT}): for each named policy, "
                "`q` requests per `w` seconds. `rate` and `quota` are the caller's own "
                "limit, `path-rate` and `path-quota` a path's.",
                "schema": {"type": "string"},
                "example": '"rate";q=100;w=60, "quota";q=10000;w=86400',
            },
            "RateLimit": {
                "description": f"Where the caller stands ({DRAFT}): for each policy, `r` "
                "requests left and `t` seconds until it is whole again.",
                "schema": {"type": "string"},
                "example": '"rate";r=0;t=12, "quota";r=9000;t=3600',
            },
        },
    )


def add_openapi_security(
    schema: dict[str, Any], middleware: APIKeyMiddleware | object, *, mount_path: str = ""
) -> dict[str, Any]:
    """Add what ``middleware`` enforces to the OpenAPI document ``schema``; return it.

    ``middleware`` is the :class:`~asgi_apikey.APIKeyMiddleware`, or an app it
    is installed in (``app.add_middleware``, after the app has started) or
    wraps. Idempotent, and applying again after ``middleware.rules`` changed
    gives what the new rules say.

    Examples:
        >>> from starlette.applications import Starlette
        >>> from asgi_apikey import APIKeyMiddleware
        >>> app = APIKeyMiddleware(Starlette(), keys=["sk-live-0123456789abcdef"], openapi=False)
        >>> doc = {"openapi": "3.1.0", "paths": {"/v1/models": {"get": {"responses": {}}}}}
        >>> add_openapi_security(doc, app)["components"]["securitySchemes"]["HTTPBearer"]["scheme"]
        'bearer'
        >>> doc["paths"]["/v1/models"]["get"]["security"]
        [{'HTTPBearer': []}]
        >>> sorted(doc["paths"]["/v1/models"]["get"]["responses"])
        ['400', '401']
    """
    return OpenAPISecurity.of(_find_middleware(middleware)).apply(schema, mount_path=mount_path)


def hook_openapi(middleware: APIKeyMiddleware, app: object, scope: Scope | None = None) -> int:
    """Wrap the ``openapi`` of every FastAPI app that ``middleware`` guards; return how many.

    ``app`` is what the middleware wraps: FastAPI apps are found through
    middleware in between (``.app``) and below mounts (with the mount path
    as prefix). ``scope["app"]`` is searched as well when ``middleware`` is in
    that app's middleware stack (``app.add_middleware``, where the middleware
    only sees the next middleware). An app already wrapped is not wrapped
    again: its wrapper follows the latest middleware.
    """
    found = list(_fastapi_apps(app, "", set()))
    if scope is not None:
        outer = scope.get("app")
        if outer is not None and in_stack(middleware, getattr(outer, "middleware_stack", None)):
            found += _fastapi_apps(outer, "", set())
    for fastapi_app, mount_path in found:
        current = getattr(fastapi_app, "openapi", None)
        if isinstance(current, _OpenAPIHook):
            current.follow(middleware, mount_path)
        elif callable(current):
            fastapi_app.openapi = _OpenAPIHook(current, middleware, mount_path)
    return len(found)


class _OpenAPIHook:
    """A FastAPI app's ``openapi``: the original (cached or not), with the security added.

    The first call after the document or the rules changed edits the
    document in place; later calls return it as it is, so that a document
    being served is not edited under another reader.
    """

    __slots__ = ("_done", "guards", "original")

    def __init__(self, original: Any, middleware: APIKeyMiddleware, mount_path: str) -> None:
        self.original = original
        #: The middleware that guard the app, each with the app's mount path below it.
        self.guards: list[tuple[APIKeyMiddleware, str]] = [(middleware, mount_path)]
        self._done: tuple[object, object] | None = None

    @property
    def middleware(self) -> APIKeyMiddleware:
        """The middleware followed last."""
        return self.guards[-1][0]

    def follow(self, middleware: APIKeyMiddleware, mount_path: str) -> None:
        """Follow ``middleware`` too if it and the ones followed are nested, else instead."""
        kept = [
            (other, below)
            for other, below in self.guards
            if other is not middleware
            and (_reaches(middleware, other) or _reaches(other, middleware))
        ]
        self.guards = [*kept, (middleware, mount_path)]
        self._done = None

    def _security(self) -> tuple[OpenAPISecurity, str]:
        (last, mount_path), others = self.guards[-1], self.guards[:-1]
        security = OpenAPISecurity.of(last)
        if others:
            security = replace(
                security,
                also=tuple((m.rules, p) for m, p in others),
                also_limits=tuple(
                    (limits, p) for m, p in others if (limits := OpenAPILimits.of(m)) is not None
                ),
            )
        return security, mount_path

    def __call__(self) -> dict[str, Any]:
        schema: dict[str, Any] = self.original()
        try:
            state: tuple[OpenAPISecurity, str] | Exception = self._security()
        except Exception as error:  # said below, once per document
            state = error
        # The rules, and where the limits apply (a key given a limit changes that).
        key = (
            tuple(middleware.rules for middleware, _ in self.guards),
            None if isinstance(state, Exception) else state,
        )
        done = self._done
        if done is None or done[0] is not schema or done[1] != key:
            self._done = (schema, key)  # holds the document: its id is never reused
            try:  # on a copy: a document is served whole, never half edited
                if isinstance(state, Exception):
                    raise state
                security, mount_path = state
                edited = security.apply(copy.deepcopy(schema), mount_path=mount_path)
                schema.clear()
                schema.update(edited)  # in place: FastAPI serves the dict it cached
            except Exception as error:  # a document this module cannot read: serve it as is
                # A docs page that worked must not become a 500; say why, once per document.
                emit(
                    "error",
                    "openapi_security_not_added",
                    {
                        "error": f"{type(error).__name__}: {error}"[:300],
                        "fix": "pass openapi=False and call add_openapi_security() where the "
                        "document is built, or fix the document",
                    },
                )
        return schema


def _reaches(start: object, target: object) -> bool:
    """Whether ``target`` is ``start`` or below it (wrappers, middleware stacks, mounts)."""
    pending: list[object] = [start]
    seen: set[int] = set()
    while pending and len(seen) < 256:
        app = pending.pop()
        if app is None or id(app) in seen:
            continue
        if app is target:
            return True
        seen.add(id(app))
        routes = getattr(app, "routes", None)
        if isinstance(routes, list):
            pending += [route.app for route in routes if isinstance(route, (Mount, Host))]
        pending += [getattr(app, "app", None), getattr(app, "middleware_stack", None)]
    return False


def _fastapi_apps(app: object, prefix: str, seen: set[int]) -> Iterator[tuple[Any, str]]:
    fastapi = sys.modules.get("fastapi")  # no FastAPI imported, no FastAPI app to find
    for _ in range(_MAX_WRAPPERS):
        if app is None or id(app) in seen:
            return
        seen.add(id(app))
        if fastapi is not None and isinstance(app, fastapi.FastAPI):
            yield app, prefix
        routes = getattr(app, "routes", None)
        if isinstance(routes, list):  # a Starlette app or router: its mounts hold sub-apps
            for route in routes:
                if isinstance(route, Mount):
                    path = prefix + _CONVERTER.sub("}", route.path)
                    yield from _fastapi_apps(route.app, path, seen)
                elif isinstance(route, Host):
                    yield from _fastapi_apps(route.app, prefix, seen)
            return
        app = getattr(app, "app", None)


def in_stack(middleware: object, stack: object) -> bool:
    """Whether ``middleware`` is in the middleware stack ``stack`` (``app.middleware_stack``)."""
    for _ in range(_MAX_WRAPPERS):
        if stack is middleware:
            return True
        stack = getattr(stack, "app", None)
        if stack is None:
            return False
    return False


def _find_middleware(given: object) -> APIKeyMiddleware:
    """``given`` if it is the middleware, else the one in its middleware stack or wrappers."""
    candidate = given
    for _ in range(_MAX_WRAPPERS):
        if isinstance(getattr(candidate, "rules", None), RuleTable) and callable(
            getattr(candidate, "describe", None)
        ):
            return candidate  # type: ignore[return-value]  # what APIKeyMiddleware is
        stack = getattr(candidate, "middleware_stack", None)
        candidate = stack if stack is not None else getattr(candidate, "app", None)
        if candidate is None:
            break
    raise ValueError(
        f"no APIKeyMiddleware in this {type(given).__name__}: pass the middleware, or the "
        "app it is installed in after the app has started"
    )


def _version(schema: object) -> tuple[int, int]:
    version = schema.get("openapi") if isinstance(schema, dict) else None
    match = re.match(r"3\.(\d+)(?:\.|$)", version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(
            "not an OpenAPI 3 document: it needs an 'openapi' field such as '3.1.0'"
            " (Swagger 2.0 documents are not supported)"
        )
    return 3, int(match[1])


def _dict(parent: dict[str, Any], name: str) -> dict[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        value = parent[name] = {}
    return value


def _free_name(declared: dict[str, Any], base: str, definition: Any, same: Any) -> str:
    """``base`` unless the app uses it for something else; the definition is added if new."""
    for number in range(1, 100):
        name = base if number == 1 else base + _OURS + ("" if number == 2 else str(number))
        present = declared.get(name)
        if present is None:
            declared[name] = definition
            return name
        if same(present, definition):
            return name
    raise ValueError(f"the document names too many components {base}{_OURS}...")


def _same(present: object, wanted: dict[str, Any]) -> bool:
    """Two security schemes that read the same credentials (descriptions aside)."""
    if not isinstance(present, dict) or present.get("type") != wanted["type"]:
        return False
    if wanted["type"] == "http":
        return str(present.get("scheme", "")).lower() == str(wanted["scheme"])
    if present.get("in") != wanted["in"]:
        return False
    name, expected = str(present.get("name", "")), str(wanted["name"])
    if wanted["in"] == "header":  # header names are case-insensitive, query names are not
        return name.lower() == expected.lower()
    return name == expected


def _equal(present: object, wanted: object) -> bool:
    return bool(present == wanted)


def _requirements(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [req for req in value if isinstance(req, dict)]


def _unique(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kept: list[dict[str, Any]] = []
    for item in items:
        if item not in kept:
            kept.append(item)
    return kept


def _undo(operation: dict[str, Any], ours: set[str]) -> None:
    """Take off what an earlier application added, from what its mark recorded."""
    mark = operation.pop(MARK, None)
    if not isinstance(mark, dict):
        return
    if "app_security" in mark:
        operation["security"] = mark["app_security"]
    else:
        operation.pop("security", None)
    responses = operation.get("responses")
    if isinstance(responses, dict):
        for status, response in list(responses.items()):
            if isinstance(response, dict) and response.get("$ref") in ours and len(response) == 1:
                del responses[status]


def _below_parameter(rule: list[str], template: list[str]) -> bool:
    """Whether some values of the template's parameters put a path under ``rule``.

    Only through a parameter: a rule the template names as spelled is its
    match or an ancestor of it. The template's last parameter may stand for
    several segments (a ``path`` converter), so rules deeper than it count.
    """
    through_parameter = False
    for wanted, segment in zip(rule, template, strict=False):
        if "{" in segment:
            through_parameter = True
        elif wanted != segment:
            return False
    if len(rule) > len(template):
        return bool(template) and "{" in template[-1]
    return through_parameter
