"""What an APIKeyMiddleware enforces, said in an OpenAPI 3 document.

:func:`add_openapi_security` edits a document in place and returns it: the
security schemes the middleware reads (``HTTPBearer`` always, ``APIKeyHeader``
with ``header_name``, ``APIKeyQuery`` with ``allow_query_token``: FastAPI's
own names), each operation's ``security`` from the rule the middleware applies
to its path, and the 401/400/403 (and, with a live key source, 503) responses
it may send there. It works on any OpenAPI dict: FastAPI's ``app.openapi()``,
Starlette's ``SchemaGenerator``, one written by hand.

The document depends on the rules only, read at each call (``middleware.rules``
may be replaced at run time): never a key, a key id or a digest, since keys
rotate while the document is cached. Each operation it decides carries an
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
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from starlette.routing import Host, Mount
from starlette.types import Scope

from .audit import emit
from .paths import Access, Rule, RuleTable, normalize_path

if TYPE_CHECKING:
    from .middleware import APIKeyMiddleware

__all__ = ["MARK", "OpenAPISecurity", "add_openapi_security", "hook_openapi"]

#: The extension each decided operation carries: its access, scopes, and what it declared.
MARK = "x-asgi-apikey"

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace", "query")
_OURS = "_asgi_apikey"  # the suffix of a name the app already uses for something else
_MAX_WRAPPERS = 16  # as middleware._rooted_app follows them
_CONVERTER = re.compile(r":\w+}")  # Starlette's `{id:int}` is `{id}` in a document


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
    """

    rules: RuleTable
    realm: str = "api"
    header_name: str | None = None
    allow_query_token: bool = False
    live_source: bool = False
    also: tuple[tuple[RuleTable, str], ...] = ()

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
        )

    def apply(self, schema: dict[str, Any], *, mount_path: str = "") -> dict[str, Any]:
        """Add the security to ``schema`` in place and return it (see the module docstring).

        ``mount_path`` is where the document's paths sit below the middleware
        (a FastAPI app mounted at ``/v2`` inside the app the middleware wraps).
        """
        scoped = _version(schema) >= (3, 1)  # 3.0 allows scopes for oauth2 and openIdConnect only
        components = _dict(schema, "components")
        schemes = self._schemes(_dict(components, "securitySchemes"))
        refs = self._responses(_dict(components, "responses"))
        inherited = schema.get("security")
        paths = schema.get("paths") or {}
        for path, item in paths.items():
            if not isinstance(item, dict) or not isinstance(path, str):
                continue
            rule, varies = self.decide(mount_path + path)
            for rules, below in self.also:  # nested middleware: a request passes them all
                other, other_varies = OpenAPISecurity(rules).decide(below + path)
                access = max(rule.access, other.access)
                rule = Rule(rule.path, access, rule.scopes | other.scopes)
                varies = varies or other_varies
            for method in _METHODS:
                operation = item.get(method)
                if isinstance(operation, dict):
                    _undo(operation, refs)
                    self._operation(operation, rule, varies, schemes, refs, inherited, scoped)
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
            return rule, False
        access = max(other.access for other in (rule, *differing))
        scopes = frozenset().union(
            *(other.scopes for other in (rule, *differing) if other.access is Access.PROTECTED)
        )
        return Rule(rule.path, access, scopes), True

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

    def _responses(self, declared: dict[str, Any]) -> dict[int, str]:
        """Our response components, by status: each added unless an equal one is there."""
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
        if self.live_source:
            retry = {"description": "Seconds to wait.", "schema": {"type": "integer"}}
            wanted[503] = (
                "APIKeyUnavailable",
                response(
                    "The key store cannot be trusted right now (the key may be valid): retry.",
                    "The key store is unavailable",
                    {"Retry-After": retry},
                ),
            )
        return {
            status: f"#/components/responses/{_free_name(declared, base, body, _equal)}"
            for status, (base, body) in wanted.items()
        }

    def _operation(
        self,
        operation: dict[str, Any],
        rule: Rule,
        varies: bool,
        schemes: list[str],
        refs: dict[int, str],
        inherited: object,
        scoped: bool,
    ) -> None:
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

        responses = operation.setdefault("responses", {})
        statuses = [401, 400] if access is not Access.PUBLIC else []
        if scopes:
            statuses.append(403)
        if access is not Access.PUBLIC and 503 in refs:
            statuses.append(503)
        for status in statuses:
            if str(status) not in responses and status not in responses:  # the app's stay
                responses[str(status)] = {"$ref": refs[status]}


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
        self._done: tuple[object, tuple[RuleTable, ...]] | None = None

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
            security = replace(security, also=tuple((m.rules, p) for m, p in others))
        return security, mount_path

    def __call__(self) -> dict[str, Any]:
        schema: dict[str, Any] = self.original()
        rules = tuple(middleware.rules for middleware, _ in self.guards)
        done = self._done
        if done is None or done[0] is not schema or done[1] != rules:
            self._done = (schema, rules)  # holds the document: its id is never reused
            try:  # on a copy: a document is served whole, never half edited
                security, mount_path = self._security()
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


def _undo(operation: dict[str, Any], refs: dict[int, str]) -> None:
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
        ours = set(refs.values())
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
