"""The document edit: :class:`OpenAPISecurity` and :func:`add_openapi_security`.

Each operation's ``security`` from the rule the middleware applies to its
path, the responses it may send there, and the ``x-asgi-apikey`` mark that
lets a later application undo this one (see :mod:`asgi_apikey.openapi`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..paths import Access, Rule, RuleTable
from .apps import _find_middleware
from .components import response_components, security_schemes
from .limits import OpenAPILimits
from .templates import decide_template

if TYPE_CHECKING:
    from ..middleware import APIKeyMiddleware

#: The extension each decided operation carries: its access, scopes, and what it declared.
MARK = "x-asgi-apikey"

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace", "query")


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
        """Add the security to ``schema`` in place and return it (see :mod:`asgi_apikey.openapi`).

        ``mount_path`` is where the document's paths sit below the middleware
        (a FastAPI app mounted at ``/v2`` inside the app the middleware wraps).
        """
        scoped = _version(schema) >= (3, 1)  # 3.0 allows scopes for oauth2 and openIdConnect only
        components = _dict(schema, "components")
        schemes = security_schemes(
            _dict(components, "securitySchemes"), self.header_name, self.allow_query_token
        )
        declared = _dict(components, "responses")
        limits = [(self.limits, mount_path), *self.also_limits]
        limited = [(found, where) for found, where in limits if found is not None]
        refs, ours = response_components(declared, self.realm, self.live_source, limited)
        inherited = schema.get("security")
        paths = schema.get("paths") or {}
        used: set[int] = set()
        for path, item in paths.items():
            if not isinstance(item, dict) or not isinstance(path, str):
                continue
            rule, varies, lenient = decide_template(self.rules, mount_path + path)
            for rules, below in self.also:  # nested middleware: a request passes them all
                other, other_varies, other_lenient = decide_template(rules, below + path)
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
        rule, varies, _ = decide_template(self.rules, template)
        return rule, varies

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
