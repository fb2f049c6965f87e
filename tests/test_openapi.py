"""The OpenAPI document says what the middleware does: asgi_apikey/openapi/.

The strongest test is differential: a FastAPI app with many routes (path
parameters, a mounted sub-app, scopes, optional and public rules, each
default, root_path, header and query methods) serves its document; then, for
every operation, real requests go through the real app without a key, with a
good key (by each documented method), a bad one, a malformed one, and keys
lacking each scope, and the document's claim (security required, optional or
none; the scopes; 400/401/403 documented) must match what happened.

The rate limits get their own differential test: the same app under several
limit configurations (a default, path limits, anonymous clients, a key's own
limit, a shared limiter that refuses), every operation driven past its limits
with a key and without one, and the document's 429 (and 503) must be listed
exactly where the middleware answered them.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from fastapi import Depends, FastAPI
from fastapi.security import APIKeyCookie, HTTPBearer
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.schemas import OpenAPIResponse, SchemaGenerator
from starlette.testclient import TestClient

from asgi_apikey import (
    APIKey,
    APIKeyAuth,
    APIKeyMiddleware,
    ConfigurationError,
    LiveKeySource,
    RateLimit,
    RateLimits,
    add_openapi_security,
)
from asgi_apikey.openapi import MARK, OpenAPILimits, OpenAPISecurity
from asgi_apikey.paths import Access, RuleTable
from asgi_apikey.ratelimit.local import Check, LocalLimiter, Verdict
from asgi_apikey.ratelimit.shared import LimiterUnavailable, SharedLimiter
from tests.asgi import CANARY, OTHER_KEY

SCOPES = ("admin", "read", "write")


def _secret(scopes: frozenset[str]) -> str:
    return "sk-test-" + ("-".join(sorted(scopes)) or "none") + "-0123456789abcdef"


#: One key for every subset of SCOPES: the full set is the good key, the others lack scopes.
SUBSETS = [
    frozenset(combo)
    for size in range(len(SCOPES) + 1)
    for combo in itertools.combinations(SCOPES, size)
]
KEYS = [
    APIKey(_secret(subset), name=f"k{index}", scopes=subset) for index, subset in enumerate(SUBSETS)
]
GOOD = _secret(frozenset(SCOPES))
BAD = "sk-not-a-key-of-this-app-0123456789"

RULES: dict[str, Any] = {
    "public": [
        *("/health", "/openapi.json", "/v2/openapi.json"),
        *("/v1/reports", "/v1/pub", "/files", "/v2/open"),
    ],
    "optional": ["/v1/ops"],
    "protected": {
        "/v1/admin": {"admin"},
        "/v1/write": {"write"},
        "/v1/write/bulk": set(),  # inherits write
        "/v1/reports/secret": {"read"},
        "/files/private/deep": {"write"},
        "/v2/things/special": {"admin"},
    },
}


def fastapi_apps(version: str) -> FastAPI:
    """The app under test: every handler answers with its route's path, so routing is visible."""
    app = FastAPI(title="differential")
    sub = FastAPI(title="sub")
    app.openapi_version = sub.openapi_version = version

    async def routed(request: Request) -> dict[str, str]:
        return {"route": request.scope["route"].path_format}

    async def by_int(request: Request, item_id: int) -> dict[str, str]:
        return {"route": request.scope["route"].path_format}

    for method, path in [
        ("get", "/"),
        ("get", "/health"),
        ("get", "/v1/models"),
        ("post", "/v1/models"),
        ("get", "/v1/ops"),
        ("get", "/v1/ops/{value}"),
        ("get", "/v1/admin"),
        ("delete", "/v1/admin/keys/{value}"),
        ("put", "/v1/write/bulk"),
        ("get", "/v1/reports"),
        ("get", "/v1/reports/{value}"),
        ("get", "/v1/publication"),  # not under the /v1/pub rule: segment boundaries
        ("get", "/v1/{value}/detail"),
        ("get", "/files/{value:path}"),
    ]:
        app.add_api_route(path, routed, methods=[method])
    app.get("/v1/items/{item_id}")(by_int)
    for method, path in [
        ("get", "/things"),
        ("get", "/things/{value}"),
        ("get", "/open"),
        ("post", "/open/submit"),
    ]:
        sub.add_api_route(path, routed, methods=[method])
    app.mount("/v2", sub)
    return app


@dataclass(frozen=True)
class Variant:
    style: str  # "wrapped" (APIKeyMiddleware(app)) or "add_middleware"
    methods: str  # "bearer", or "all" (X-API-Key header and ?access_token= too)
    version: str
    root_path: str
    default: str

    def __str__(self) -> str:
        root = self.root_path or "no-root"
        return f"{self.style}-{self.methods}-{self.version}-{root}-{self.default}"


VARIANTS = [
    Variant("wrapped", "bearer", "3.1.0", "", "protected"),
    Variant("add_middleware", "all", "3.1.0", "/api", "protected"),
    Variant("wrapped", "all", "3.0.2", "/api", "public"),
    Variant("add_middleware", "bearer", "3.0.2", "", "optional"),
]


def configuration(variant: Variant) -> dict[str, Any]:
    config: dict[str, Any] = {"keys": KEYS, "default": variant.default, **RULES}
    if variant.methods == "all":
        config.update(header_name="X-API-Key", allow_query_token=True)
    return config


def serve(variant: Variant) -> TestClient:
    app = fastapi_apps(variant.version)
    if variant.style == "wrapped":
        return TestClient(
            APIKeyMiddleware(app, **configuration(variant)), root_path=variant.root_path
        )
    app.add_middleware(APIKeyMiddleware, **configuration(variant))
    return TestClient(app, root_path=variant.root_path)


# ------------------------------------------------------------------ reading a document


def security_of(doc: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = operation.get("security", doc.get("security", []))
    return found


def claim(doc: dict[str, Any], operation: dict[str, Any]) -> tuple[str, frozenset[str]]:
    """What the document says an operation needs: none, optional or protected, and scopes."""
    security = security_of(doc, operation)
    if not security or security == [{}]:
        return "public", frozenset()
    listed = frozenset(scope for req in security for scopes in req.values() for scope in scopes)
    if doc["openapi"].startswith("3.0"):
        assert not listed, "OpenAPI 3.0 allows scopes for oauth2 and openIdConnect only"
        listed = frozenset(operation[MARK]["scopes"])
    return ("optional" if {} in security else "protected"), listed


def credentials(doc: dict[str, Any], name: str, key: str) -> dict[str, Any]:
    """How the document's scheme ``name`` sends ``key``: request keyword arguments."""
    scheme = doc["components"]["securitySchemes"][name]
    if scheme["type"] == "http":
        assert scheme["scheme"] == "bearer"
        return {"headers": {"Authorization": f"Bearer {key}"}}
    if scheme["in"] == "header":
        return {"headers": {scheme["name"]: key}}
    assert scheme["in"] == "query"
    return {"params": {scheme["name"]: key}}


def our_schemes(doc: dict[str, Any]) -> list[str]:
    return list(doc["components"]["securitySchemes"])


def instances(template: str, extra: Sequence[str] = ()) -> Iterator[str]:
    """Concrete paths for a template: a plain value, and each rule's segment in its place."""
    rule_paths = [*RULES["public"], *RULES["optional"], *RULES["protected"], *extra]
    segments = template.split("/")[1:]
    rule_segments = [path.split("/")[1:] for path in rule_paths]
    choices: list[list[str]] = []
    for index, segment in enumerate(segments):
        if "{" not in segment:
            choices.append([segment])
            continue
        options = {"7"} | {rule[index] for rule in rule_segments if len(rule) > index}
        if index == len(segments) - 1:  # a path converter takes several segments
            options |= {"/".join(rule[index:]) for rule in rule_segments if len(rule) > index + 1}
        choices.append(sorted(options))
    for combo in itertools.product(*choices):
        yield "/" + "/".join(combo)


# ------------------------------------------------------------------ observing the app


@dataclass(frozen=True)
class Observed:
    url: str
    access: str
    required: frozenset[str]


def observe(
    client: TestClient, doc: dict[str, Any], method: str, url: str, path: str
) -> Observed | None:
    """What the middleware does at ``url``; None where the operation does not route there."""

    def send(**kwargs: Any) -> Any:
        return client.request(method, url, **kwargs)

    routed = send(headers={"Authorization": f"Bearer {GOOD}"})
    if routed.status_code != 200 or routed.json() != {"route": path}:
        return None  # another route's path, or no route's: not this operation
    for name in our_schemes(doc):  # every documented method works
        assert send(**credentials(doc, name, GOOD)).status_code == 200, (url, name)

    anonymous = send()
    if anonymous.status_code == 401:
        access = "protected"
        assert anonymous.headers["www-authenticate"] == 'Bearer realm="api"'
        assert set(anonymous.json()) == {"detail"}
    else:
        assert anonymous.status_code == 200, url
        access = (
            "optional"
            if send(headers={"Authorization": f"Bearer {BAD}"}).status_code == 401
            else "public"
        )
    bad = send(headers={"Authorization": f"Bearer {BAD}"})
    assert bad.status_code == (200 if access == "public" else 401)
    if access != "public":
        assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    malformed = send(headers={"Authorization": "Bearer not=valid"})
    assert malformed.status_code == (200 if access == "public" else 400), url
    if access != "public":
        assert 'error="invalid_request"' in malformed.headers["www-authenticate"]

    # An undocumented method is never accepted.
    undocumented = []
    if "APIKeyHeader" not in our_schemes(doc):
        undocumented.append({"headers": {"X-API-Key": GOOD}})
    if "APIKeyQuery" not in our_schemes(doc):
        undocumented.append({"params": {"access_token": GOOD}})
    for kwargs in undocumented:
        assert send(**kwargs).status_code == anonymous.status_code, (url, kwargs)

    required: set[str] = set()
    if access == "protected":
        for scope in SCOPES:
            lacking = send(
                headers={"Authorization": f"Bearer {_secret(frozenset(SCOPES) - {scope})}"}
            )
            assert lacking.status_code in (200, 403), url
            if lacking.status_code == 403:
                required.add(scope)
                assert 'error="insufficient_scope"' in lacking.headers["www-authenticate"]
        exact = send(headers={"Authorization": f"Bearer {_secret(frozenset(required))}"})
        assert exact.status_code == 200, (url, required)
    return Observed(url, access, frozenset(required))


def documents(client: TestClient, root: str) -> list[tuple[dict[str, Any], str]]:
    """The main document and the sub-app's, each with its mount point under the root path."""
    found = []
    for where in ("", "/v2"):
        response = client.get(f"{root}{where}/openapi.json")
        assert response.status_code == 200
        doc = response.json()
        servers = doc.get("servers", [])
        # servers are FastAPI's, untouched: root_path and the mount point, nothing else.
        expected = [{"url": root + where}] if root + where else []
        assert servers == expected
        found.append((doc, where))
    return found


ACCESS_ORDER = {"public": 0, "optional": 1, "protected": 2}


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_the_document_says_what_the_middleware_does(variant: Variant) -> None:
    checked = 0
    with serve(variant) as client:
        for doc, mount in documents(client, variant.root_path):
            assert doc["openapi"] == variant.version
            expected_schemes = ["HTTPBearer"] + (
                ["APIKeyHeader", "APIKeyQuery"] if variant.methods == "all" else []
            )
            assert our_schemes(doc) == expected_schemes
            for path, item in doc["paths"].items():
                for method, operation in item.items():
                    said, scopes = claim(doc, operation)
                    assert operation[MARK]["access"] == said
                    seen = [
                        found
                        for url in instances(mount + path)
                        if (found := observe(client, doc, method, variant.root_path + url, path))
                    ]
                    assert seen, f"{method} {path}: no instance routed"
                    strictest = max((o.access for o in seen), key=ACCESS_ORDER.__getitem__)
                    assert said == strictest, (path, said, seen)
                    needed = frozenset().union(
                        *(o.required for o in seen if o.access == "protected")
                    )
                    assert scopes == needed, (path, scopes, seen)
                    varies = len({(o.access, o.required) for o in seen}) > 1
                    assert operation[MARK].get("varies", False) == varies, (path, seen)
                    if said == "protected":
                        names = {name for req in security_of(doc, operation) for name in req}
                        assert names == set(our_schemes(doc))  # each method, an alternative
                    statuses = set(operation["responses"])
                    assert ("401" in statuses) == ("400" in statuses) == (said != "public")
                    assert ("403" in statuses) == bool(scopes)
                    checked += len(seen)
    assert checked >= 25


def test_the_responses_document_the_challenge_and_the_body() -> None:
    variant = VARIANTS[0]
    with serve(variant) as client:
        doc = client.get("/openapi.json").json()
        operation = doc["paths"]["/v1/admin"]["get"]
        for status in ("400", "401", "403"):
            ref = operation["responses"][status]["$ref"]
            response = doc["components"]["responses"][ref.rsplit("/", 1)[1]]
            assert 'Bearer realm="api"' in response["headers"]["WWW-Authenticate"]["example"]
            schema = response["content"]["application/json"]["schema"]
            assert schema["required"] == ["detail"]
        real = client.get("/v1/admin", headers={"Authorization": "Bearer " + _secret(frozenset())})
        assert real.status_code == 403
        assert set(real.json()) == {"detail"}


# ------------------------------------------------------------------ the hook and its cases


def small_app(version: str = "3.1.0") -> FastAPI:
    app = FastAPI()
    app.openapi_version = version

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/admin/{name}")
    async def admin(name: str) -> dict[str, str]:
        return {"name": name}

    @app.get("/v1/ops")
    async def ops() -> dict[str, str]:
        return {}

    return app


SMALL: dict[str, Any] = {
    "public": ["/health", "/openapi.json"],
    "optional": ["/v1/ops"],
    "protected": {"/v1/admin": {"admin"}},
}


def operations(doc: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {
        path: (item["get"].get("security"), sorted(item["get"]["responses"]))
        for path, item in doc["paths"].items()
    }


EXPECTED_SMALL: dict[str, tuple[Any, Any]] = {
    "/health": (None, ["200"]),
    "/v1/admin/{name}": ([{"HTTPBearer": ["admin"]}], ["200", "400", "401", "403", "422"]),
    "/v1/ops": ([{}, {"HTTPBearer": []}], ["200", "400", "401"]),
}


def test_applying_twice_is_applying_once() -> None:
    app = small_app()
    middleware = APIKeyMiddleware(app, keys=[CANARY], openapi=False, **SMALL)
    once = add_openapi_security(app.openapi(), middleware)
    assert operations(once) == EXPECTED_SMALL
    snapshot = copy.deepcopy(once)
    assert add_openapi_security(once, middleware) == snapshot
    assert add_openapi_security(json.loads(json.dumps(once)), middleware) == snapshot


def test_a_document_cached_before_the_middleware_still_gets_the_security() -> None:
    app = small_app()
    cached = app.openapi()
    assert "securitySchemes" not in cached.get("components", {})
    wrapped = APIKeyMiddleware(app, keys=[CANARY], **SMALL)
    assert app.openapi() is cached  # FastAPI's cache, edited in place
    assert operations(cached) == EXPECTED_SMALL
    with TestClient(wrapped) as client:
        assert operations(client.get("/openapi.json").json()) == EXPECTED_SMALL


def test_rules_replaced_at_run_time_change_the_document() -> None:
    app = small_app()
    middleware = APIKeyMiddleware(app, keys=[CANARY], **SMALL)
    with TestClient(middleware) as client:
        assert operations(client.get("/openapi.json").json()) == EXPECTED_SMALL
        middleware.rules = RuleTable(
            public=["/health", "/openapi.json", "/v1/admin"], optional=["/v1/ops"]
        )
        doc = client.get("/openapi.json").json()
        assert client.get("/v1/admin/x").status_code == 200  # the middleware agrees
    assert operations(doc)["/v1/admin/{name}"] == (None, ["200", "422"])
    fresh = small_app()
    expected = add_openapi_security(fresh.openapi(), middleware)
    assert doc == json.loads(json.dumps(expected))


def test_add_middleware_hooks_the_app_at_its_first_scope() -> None:
    app = small_app()
    app.add_middleware(APIKeyMiddleware, keys=[CANARY], **SMALL)
    assert operations(app.openapi())["/v1/ops"][0] is None  # nothing has run yet
    with TestClient(app):  # the lifespan is the first scope
        assert operations(app.openapi()) == EXPECTED_SMALL


def test_add_middleware_without_a_lifespan_hooks_at_the_first_request() -> None:
    app = small_app()
    app.add_middleware(APIKeyMiddleware, keys=[CANARY], **SMALL)
    client = TestClient(app)  # no `with`: no lifespan
    assert operations(client.get("/openapi.json").json()) == EXPECTED_SMALL


def test_a_middleware_inside_a_mount_reads_paths_relative_to_it() -> None:
    sub = small_app()
    guarded = APIKeyMiddleware(sub, keys=[CANARY], **SMALL)
    outer = Starlette(routes=[Mount("/sub", app=guarded)])
    with TestClient(outer) as client:
        doc = client.get("/sub/openapi.json").json()
        assert client.get("/sub/v1/admin/x").status_code == 401
    assert doc["servers"] == [{"url": "/sub"}]
    assert operations(doc) == EXPECTED_SMALL  # rules and paths both below the mount point


def test_a_sub_app_mounted_below_the_middleware_gets_its_mount_path() -> None:
    sub = small_app()
    outer = Starlette(routes=[Mount("/v2", app=sub)])
    APIKeyMiddleware(
        outer, keys=[CANARY], public=["/v2/health"], protected={"/v2/v1/admin": {"admin"}}
    )
    ops = operations(sub.openapi())
    assert ops["/health"][0] is None
    assert ops["/v1/admin/{name}"][0] == [{"HTTPBearer": ["admin"]}]
    assert ops["/v1/ops"][0] == [{"HTTPBearer": []}]  # no optional rule under /v2


def test_root_path_goes_to_servers_and_rules_stay_relative() -> None:
    app = small_app()
    wrapped = APIKeyMiddleware(app, keys=[CANARY], **SMALL)
    with TestClient(wrapped, root_path="/api") as client:
        doc = client.get("/api/openapi.json").json()
        assert client.get("/api/v1/admin/x").status_code == 401
        assert client.get("/api/health").status_code == 200
    assert doc["servers"] == [{"url": "/api"}]
    assert operations(doc) == EXPECTED_SMALL


def test_openapi_false_leaves_the_document_alone() -> None:
    app = small_app()
    APIKeyMiddleware(app, keys=[CANARY], openapi=False, **SMALL)
    assert "securitySchemes" not in app.openapi().get("components", {})
    other = small_app()
    other.add_middleware(APIKeyMiddleware, keys=[CANARY], openapi=False, **SMALL)
    with TestClient(other) as client:
        doc = client.get("/openapi.json").json()
    assert "securitySchemes" not in doc.get("components", {})
    assert all(MARK not in item["get"] for item in doc["paths"].values())


def test_openapi_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="openapi must be True or False"):
        APIKeyMiddleware(small_app(), keys=[CANARY], openapi="yes")  # type: ignore[arg-type]


def test_the_openapi_method_is_wrapped_once_and_follows_the_latest_middleware(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    applied: list[RuleTable] = []
    apply = OpenAPISecurity.apply

    def counted(self: OpenAPISecurity, schema: dict[str, Any], **options: Any) -> dict[str, Any]:
        applied.append(self.rules)
        return apply(self, schema, **options)

    monkeypatch.setattr(OpenAPISecurity, "apply", counted)
    app = small_app()
    APIKeyMiddleware(app, keys=[CANARY], public=["/v1"])
    latest = APIKeyMiddleware(app, keys=[CANARY], **SMALL)
    assert operations(app.openapi()) == EXPECTED_SMALL
    assert applied == [latest.rules]  # one wrapper, following the latest middleware
    assert operations(app.openapi()) == EXPECTED_SMALL
    assert len(applied) == 1  # nothing changed: the cached document is served as it is
    with TestClient(latest):  # the first scope looks again: still one wrapper
        assert operations(app.openapi()) == EXPECTED_SMALL
    assert applied == [latest.rules] * 2


def test_a_custom_openapi_set_before_the_middleware_is_wrapped() -> None:
    app = small_app()

    def custom() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schema["info"]["x-logo"] = {"url": "/logo.png"}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = custom  # type: ignore[method-assign]
    APIKeyMiddleware(app, keys=[CANARY], **SMALL)
    doc = app.openapi()
    assert doc["info"]["x-logo"] == {"url": "/logo.png"}
    assert operations(doc) == EXPECTED_SMALL


def test_a_custom_openapi_set_after_calls_add_openapi_security() -> None:
    app = small_app()
    app.add_middleware(APIKeyMiddleware, keys=[CANARY], **SMALL)

    def custom() -> dict[str, Any]:
        schema = FastAPI.openapi(app)
        return add_openapi_security(schema, app)  # finds the middleware in the app's stack

    with TestClient(app) as client:
        app.openapi = custom  # type: ignore[method-assign]
        assert operations(client.get("/openapi.json").json()) == EXPECTED_SMALL


def test_the_middleware_is_found_only_once_the_app_has_started() -> None:
    app = small_app()
    app.add_middleware(APIKeyMiddleware, keys=[CANARY], **SMALL)
    with pytest.raises(ValueError, match="no APIKeyMiddleware in this FastAPI"):
        add_openapi_security(app.openapi(), app)


def test_a_swagger_2_document_is_refused() -> None:
    middleware = APIKeyMiddleware(small_app(), keys=[CANARY], openapi=False)
    with pytest.raises(ValueError, match="not an OpenAPI 3 document"):
        add_openapi_security({"swagger": "2.0", "paths": {}}, middleware)


@pytest.mark.parametrize(
    "document",
    [
        {"swagger": "2.0", "paths": {}},
        {"paths": {"/v1/ops": {"get": {"responses": {}}}}},  # no "openapi" field
        {"openapi": "3.1.0", "paths": {"/v1/ops": {"get": {"responses": []}}}},
    ],
    ids=["swagger-2", "no-version", "responses-not-a-mapping"],
)
def test_a_document_the_hook_cannot_read_is_served_whole_and_the_error_logged(
    document: dict[str, Any],
) -> None:
    # The automatic hook must not turn a docs page that worked into a 500 (issue 17
    # review); add_openapi_security itself stays strict (above).
    api = small_app()
    api.openapi = lambda: document  # type: ignore[method-assign]
    app = APIKeyMiddleware(api, keys=[CANARY], public=["/openapi.json"])
    served = copy.deepcopy(document)
    with structlog.testing.capture_logs() as logs, TestClient(app) as client:
        response = client.get("/openapi.json")
        client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == served  # untouched, not half edited
    errors = [log for log in logs if log["event"] == "openapi_security_not_added"]
    assert len(errors) == 1  # once per document
    assert "openapi=False" in errors[0]["fix"]
    assert CANARY not in json.dumps(logs)


def test_nested_middleware_document_the_strictest_of_their_rules() -> None:
    # An inner middleware that opens /items and an outer one that protects it with a
    # scope: a request must pass both, and so says the document, before and after the
    # first request (found by review: the last one to see a request used to win).
    api = FastAPI()

    @api.get("/items")
    def items() -> list[str]:
        return []

    inner = APIKeyMiddleware(api, keys=[CANARY], default="public")
    outer = APIKeyMiddleware(
        inner, keys=[CANARY], public=["/openapi.json"], protected={"/items": {"admin"}}
    )
    assert api.openapi()["paths"]["/items"]["get"]["security"] == [{"HTTPBearer": ["admin"]}]
    with TestClient(outer) as client:
        assert client.get("/items").status_code == 401
        served = client.get("/openapi.json").json()
    assert served["paths"]["/items"]["get"]["security"] == [{"HTTPBearer": ["admin"]}]


def test_a_sub_app_with_its_own_middleware_documents_the_outer_rules_too() -> None:
    outer_app, sub = FastAPI(), FastAPI()

    @sub.get("/secret")
    def secret() -> str:
        return "s"

    outer_app.mount("/v2", APIKeyMiddleware(sub, keys=[CANARY], default="public"))
    outer_app.add_middleware(APIKeyMiddleware, keys=[CANARY], public=["/v2/openapi.json"])
    with TestClient(outer_app) as client:
        assert client.get("/v2/secret").status_code == 401
        for _ in range(2):  # the sub-app's own middleware sees its first request now
            served = client.get("/v2/openapi.json").json()
            assert served["paths"]["/secret"]["get"]["security"] == [{"HTTPBearer": []}]


def test_middleware_that_do_not_guard_each_other_replace_each_other() -> None:
    # The same app wrapped again (a test, a reload): the document follows the last one.
    api = small_app()
    APIKeyMiddleware(api, keys=[CANARY], default="public")
    APIKeyMiddleware(api, keys=[CANARY], protected={"/health": {"ops"}})
    assert api.openapi()["paths"]["/health"]["get"]["security"] == [{"HTTPBearer": ["ops"]}]
    assert "security" in api.openapi()["paths"]["/v1/ops"]["get"]  # default: protected


# ------------------------------------------------------------------ Starlette's SchemaGenerator


SCHEMAS = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "starlette", "version": "1"}})


async def list_users(request: Request) -> JSONResponse:
    """
    responses:
      200:
        description: The users.
    """
    return JSONResponse({"route": "users"})


async def get_user(request: Request) -> JSONResponse:
    """
    responses:
      200:
        description: One user.
      403:
        description: The app's own 403, kept.
    """
    return JSONResponse({"route": "user"})


async def openapi_schema(request: Request) -> JSONResponse:
    schema = SCHEMAS.get_schema(routes=request.app.routes)
    return JSONResponse(add_openapi_security(schema, request.app))


def test_starlette_schema_generator() -> None:
    app = Starlette(
        routes=[
            Route("/users", list_users),
            Route("/users/{user_id:int}", get_user),
            Route("/openapi.json", openapi_schema, include_in_schema=False),
        ]
    )
    app.add_middleware(
        APIKeyMiddleware,
        keys=KEYS,
        public=["/openapi.json", "/users"],
        protected={"/users/1": {"admin"}},
    )
    with TestClient(app) as client:
        doc = client.get("/openapi.json").json()
        assert client.get("/users").status_code == 200
        assert client.get("/users/2").status_code == 200
        assert client.get("/users/1").status_code == 401
    assert b"x-asgi-apikey" in OpenAPIResponse(doc).body  # Starlette serves it as YAML
    users, user = doc["paths"]["/users"]["get"], doc["paths"]["/users/{user_id}"]["get"]
    assert "security" not in users
    assert sorted(users["responses"]) == ["200"]
    assert user["security"] == [{"HTTPBearer": []}]  # 3.0: scopes in the mark
    assert user[MARK] == {"access": "protected", "scopes": ["admin"], "varies": True}
    assert user["responses"]["403"] == {"description": "The app's own 403, kept."}
    assert sorted(user["responses"]) == ["200", "400", "401", "403"]


# ------------------------------------------------------------------ 3.0 and 3.1


@pytest.mark.parametrize(
    ("version", "listed"), [("3.0.3", []), ("3.1.0", ["admin"]), ("3.2.0", ["admin"])]
)
def test_scopes_are_listed_where_the_version_allows(version: str, listed: list[str]) -> None:
    app = small_app(version)
    APIKeyMiddleware(app, keys=[CANARY], **SMALL)
    operation = app.openapi()["paths"]["/v1/admin/{name}"]["get"]
    assert operation["security"] == [{"HTTPBearer": listed}]
    assert operation[MARK]["scopes"] == ["admin"]


# ------------------------------------------------------------------ what the app declared itself


def app_with_its_own_security() -> FastAPI:
    app = FastAPI()
    bearer, cookie = HTTPBearer(), APIKeyCookie(name="session")

    @app.get("/v1/bearer", dependencies=[Depends(bearer)])
    async def with_bearer() -> dict[str, str]:
        return {}

    @app.get(
        "/v1/cookie",
        dependencies=[Depends(cookie)],
        responses={401: {"description": "The app's own 401."}},
    )
    async def with_cookie() -> dict[str, str]:
        return {}

    @app.get("/health", dependencies=[Depends(cookie)])
    async def health() -> dict[str, str]:
        return {}

    return app


def test_the_apps_own_schemes_are_kept_and_combined() -> None:
    app = app_with_its_own_security()
    APIKeyMiddleware(app, keys=[CANARY], public=["/health"], header_name="X-API-Key")
    doc = app.openapi()
    schemes = doc["components"]["securitySchemes"]
    assert sorted(schemes) == ["APIKeyCookie", "APIKeyHeader", "HTTPBearer"]
    assert schemes["HTTPBearer"] == {"type": "http", "scheme": "bearer"}  # FastAPI's, reused
    paths = doc["paths"]
    # The app's bearer is the middleware's: its rule says what it needs.
    assert paths["/v1/bearer"]["get"]["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}]
    # Its cookie is its own: required together with the key (AND), by each method.
    assert paths["/v1/cookie"]["get"]["security"] == [
        {"HTTPBearer": [], "APIKeyCookie": []},
        {"APIKeyHeader": [], "APIKeyCookie": []},
    ]
    assert paths["/v1/cookie"]["get"]["responses"]["401"] == {"description": "The app's own 401."}
    assert paths["/health"]["get"]["security"] == [{"APIKeyCookie": []}]  # public: the app's only


def test_a_scheme_name_the_app_uses_differently_is_not_taken_over() -> None:
    app = small_app()
    app.openapi_schema = app.openapi()
    theirs = {"type": "apiKey", "in": "header", "name": "X-Tenant"}
    app.openapi_schema["components"] = {"securitySchemes": {"APIKeyHeader": dict(theirs)}}
    app.openapi_schema["security"] = [{"APIKeyHeader": []}]  # every operation needs X-Tenant
    APIKeyMiddleware(app, keys=[CANARY], header_name="X-API-Key", **SMALL)
    doc = app.openapi()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == theirs
    assert schemes["APIKeyHeader_asgi_apikey"]["name"] == "X-API-Key"
    assert doc["security"] == [{"APIKeyHeader": []}]  # untouched
    paths = doc["paths"]
    assert paths["/health"]["get"].get("security") is None  # inherits X-Tenant: still needed
    assert paths["/v1/ops"]["get"]["security"] == [
        {"APIKeyHeader": []},
        {"HTTPBearer": [], "APIKeyHeader": []},
        {"APIKeyHeader_asgi_apikey": [], "APIKeyHeader": []},
    ]


def test_a_public_operation_overrides_a_top_level_requirement_of_ours() -> None:
    app = small_app()
    app.openapi_schema = app.openapi()
    app.openapi_schema["security"] = [{"HTTPBearer": []}]  # a common way to get an Authorize button
    APIKeyMiddleware(app, keys=[CANARY], **SMALL)
    paths = app.openapi()["paths"]
    assert paths["/health"]["get"]["security"] == []
    assert paths["/v1/ops"]["get"]["security"] == [{}, {"HTTPBearer": []}]


# ------------------------------------------------------------------ re-application, as a property

PATHS = ["/a", "/a/b", "/a/{x}", "/a/{x}/c", "/d", "/d/{rest}"]
RULE_PATHS = ["/a", "/a/b", "/a/b/c", "/a/z", "/a/z/c", "/d", "/d/e/f"]

rule_sets = st.dictionaries(
    st.sampled_from(RULE_PATHS),
    st.one_of(
        st.just("public"),
        st.just("optional"),
        st.frozensets(st.sampled_from(SCOPES), max_size=2),
    ),
)


def table(rules: dict[str, Any], default: str) -> RuleTable:
    return RuleTable(
        public=[path for path, access in rules.items() if access == "public"],
        optional=[path for path, access in rules.items() if access == "optional"],
        protected={path: access for path, access in rules.items() if isinstance(access, frozenset)},
        default=default,
    )


def pristine(version: str, top: bool) -> dict[str, Any]:
    def operation(index: int) -> dict[str, Any]:
        found: dict[str, Any] = {"responses": {"200": {"description": "ok"}}}
        if index % 3 == 1:
            found["security"] = [{"Cookie": []}, {"HTTPBearer": []}]
        if index % 3 == 2:
            found["responses"]["401"] = {"description": "the app's"}
        return found

    doc: dict[str, Any] = {
        "openapi": version,
        "paths": {
            path: {"get": operation(i), "post": operation(i + 1)} for i, path in enumerate(PATHS)
        },
        "components": {
            "securitySchemes": {"Cookie": {"type": "apiKey", "in": "cookie", "name": "s"}}
        },
    }
    if top:
        doc["security"] = [{"Cookie": []}]
    return doc


@given(
    first=rule_sets,
    second=rule_sets,
    defaults=st.tuples(*[st.sampled_from(["protected", "optional", "public"])] * 2),
    version=st.sampled_from(["3.0.3", "3.1.0"]),
    top=st.booleans(),
    methods=st.booleans(),
)
def test_applying_new_rules_over_old_ones_is_applying_them_afresh(
    first: dict[str, Any],
    second: dict[str, Any],
    defaults: tuple[str, str],
    version: str,
    top: bool,
    methods: bool,
) -> None:
    options: dict[str, Any] = {"header_name": "X-Key", "allow_query_token": True} if methods else {}
    before = OpenAPISecurity(table(first, defaults[0]), **options)
    after = OpenAPISecurity(table(second, defaults[1]), **options)
    layered = after.apply(before.apply(pristine(version, top)))
    assert layered == after.apply(pristine(version, top))
    assert after.apply(copy.deepcopy(layered)) == layered  # and again: idempotent


# ------------------------------------------------------------------ a live key source: 503


class NeverStarted(LiveKeySource):
    """A live source that is never started: every key is unavailable (503)."""

    async def start(self, sink: Any) -> None:  # pragma: no cover - never started here
        raise AssertionError("not started in this test")

    async def stop(self) -> None:  # pragma: no cover
        raise AssertionError("not started in this test")


def test_a_live_key_source_documents_503_where_a_key_is_checked() -> None:
    app = small_app()
    wrapped = APIKeyMiddleware(app, auth=APIKeyAuth(source=NeverStarted()), **SMALL)
    responses = {path: statuses for path, (_, statuses) in operations(app.openapi()).items()}
    assert "503" in responses["/v1/admin/{name}"]
    assert "503" in responses["/v1/ops"]
    assert "503" not in responses["/health"]
    unavailable = TestClient(wrapped).get("/v1/ops", headers={"Authorization": f"Bearer {CANARY}"})
    assert unavailable.status_code == 503
    assert "retry-after" in unavailable.headers
    component = app.openapi()["components"]["responses"]["APIKeyUnavailable"]
    assert "Retry-After" in component["headers"]


# ------------------------------------------------------------------ never a key in the document


def test_the_document_never_holds_a_key_a_key_id_or_a_digest() -> None:
    auth = APIKeyAuth(
        keys=[
            APIKey(
                CANARY,
                name="canary-name-7f3e",
                scopes={"admin"},
                metadata={"owner": "canary-owner"},
                limit=RateLimit("5/minute", quota="1000/day"),  # its limit is not shown either
            ),
            OTHER_KEY,  # unnamed: its key_id is a fingerprint
        ]
    )
    fingerprint = auth.verify(OTHER_KEY).key_id  # type: ignore[union-attr]
    assert fingerprint
    app = small_app()
    limits = RateLimits(
        "60/minute",
        scopes={"admin": "600/minute"},
        paths={"/v1/ops": "10/minute"},
        anonymous="10/minute",
        shared=FlakySharedLimiter(Clock()),
    )
    wrapped = APIKeyMiddleware(
        app,
        auth=auth,
        header_name="X-API-Key",
        allow_query_token=True,
        rate_limits=limits,
        **SMALL,
    )
    with TestClient(wrapped) as client:
        for _ in range(6):  # past its limit: the key id is in the refusals' events, not here
            client.get("/v1/admin/x", headers={"Authorization": f"Bearer {CANARY}"})
        auth.add_key(
            APIKey("sk-rotated-canary-0123456789", name="rotated-name-9c1d", limit="7/hour")
        )
        text = client.get("/openapi.json").text
    secrets = [CANARY, OTHER_KEY, "sk-rotated-canary-0123456789"]
    forbidden = [
        *secrets,
        *(hashlib.sha256(secret.encode()).hexdigest() for secret in secrets),
        "canary-name-7f3e",
        "rotated-name-9c1d",
        "canary-owner",
        fingerprint,
        *("5/minute", "1000/day", "7/hour", "60/minute", "600/minute", "10/minute"),  # limits
    ]
    assert json.loads(text)["components"]["securitySchemes"]
    assert "APIKeyRateLimited" in json.loads(text)["components"]["responses"]
    for value in forbidden:
        assert value not in text


# ------------------------------------------------------------------ rate limits: 429 (and 503)

#: Path limits: a public rule's path (with a protected rule below it), a protected path,
#: a path that only some values of a parameter reach, and a path in the mounted sub-app.
LIMITED_PATHS = {
    "/v1/reports": "1/minute",
    "/v1/admin": "1/minute",
    "/v1/ops/special": "1/minute",
    "/v2/things": "1/minute",
}
DAY_NS = 86_400 * 10**9
POLICY_NAMES = {"rate", "quota", "path-rate", "path-quota"}


class Clock:
    """The limiters' clock (rates and quota windows): a reset jumps past every window."""

    def __init__(self) -> None:
        self.now = 1_700_000_000 * 10**9

    def __call__(self) -> int:
        return self.now

    def reset(self) -> None:
        self.now += 400 * DAY_NS


class FlakySharedLimiter:
    """A shared limiter deciding in this process; when ``down`` it cannot decide, and then
    refuses (503) or decides locally, as ``on_unavailable`` says (the key RedisRateLimiter
    describes its policy with)."""

    def __init__(self, clock: Clock, on_unavailable: str = "refuse") -> None:
        self.local = LocalLimiter(clock)
        self.on_unavailable = on_unavailable
        self.down = False

    async def decide(self, checks: Sequence[Check]) -> Verdict:
        if self.down and self.on_unavailable == "refuse":
            raise LimiterUnavailable("The rate limiter is unavailable", 2)
        return self.local.decide(checks)

    async def usage(self, who: Hashable, limit: RateLimit) -> dict[str, Any]:
        return {}  # pragma: no cover - not asked here

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"kind": "in-process fake", "on_unavailable": self.on_unavailable}


def test_the_fake_is_a_shared_limiter() -> None:
    assert isinstance(FlakySharedLimiter(Clock()), SharedLimiter)


@dataclass(frozen=True)
class LimitCase:
    name: str
    default: str | None = None
    paths: bool = False
    anonymous: str | None = None
    own: str | None = None  # the good key's own limit
    shared: str | None = None  # a shared limiter's on_unavailable: "refuse" or "local"
    #: What the document must show: "all" operations limited, "some", or "none".
    expect: str = "some"

    def __str__(self) -> str:
        return self.name


LIMIT_CASES = [
    LimitCase(
        "default-paths-anonymous", "2/minute", paths=True, anonymous="2/minute", expect="all"
    ),
    LimitCase("paths-anonymous", paths=True, anonymous="2/minute"),
    LimitCase("paths", paths=True),
    LimitCase("anonymous", anonymous="2/minute"),
    LimitCase("own-limit", own="2/minute", expect="all"),
    LimitCase("unlimited-key-no-default", own="unlimited", expect="none"),
    LimitCase("shared-refuses", paths=True, anonymous="2/minute", shared="refuse"),
    LimitCase("shared-falls-back", paths=True, shared="local"),
    LimitCase("none", expect="none"),
]


def serve_limited(
    variant: Variant, case: LimitCase, clock: Clock, shared: FlakySharedLimiter | None
) -> TestClient:
    config = configuration(variant)
    config["keys"] = [
        APIKey(_secret(subset), name=f"k{index}", scopes=subset, limit=case.own)
        if subset == frozenset(SCOPES)
        else APIKey(_secret(subset), name=f"k{index}", scopes=subset)
        for index, subset in enumerate(SUBSETS)
    ]
    config["rate_limits"] = RateLimits(
        case.default,
        paths=LIMITED_PATHS if case.paths else None,
        anonymous=case.anonymous,
        shared=shared,
        clock=clock,
    )
    app = fastapi_apps(variant.version)
    if variant.style == "wrapped":
        return TestClient(APIKeyMiddleware(app, **config), root_path=variant.root_path)
    app.add_middleware(APIKeyMiddleware, **config)
    return TestClient(app, root_path=variant.root_path)


def check_429(response: Any, component: dict[str, Any]) -> None:
    """A real 429 is what the document's component says."""
    assert int(response.headers["retry-after"]) >= 1
    for name in component["headers"]:
        assert name.lower() in response.headers, name
    names = {
        item.split(";")[0].strip().strip('"') for item in response.headers["ratelimit"].split(",")
    }
    assert names <= POLICY_NAMES
    assert "www-authenticate" not in response.headers
    assert set(response.json()) == {"detail"}
    assert isinstance(response.json()["detail"], str)


def probe_limits(
    client: TestClient,
    clock: Clock,
    shared: FlakySharedLimiter | None,
    component: dict[str, Any] | None,
    method: str,
    url: str,
    path: str,
) -> frozenset[int] | None:
    """The statuses the limits answer at ``url`` (429, 503), driven past them with the
    good key and without a key; None where the operation does not route there."""

    def send(key: str | None) -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return client.request(method, url, headers=headers)

    clock.reset()
    routed = send(GOOD)
    if routed.status_code != 200 or routed.json() != {"route": path}:
        return None
    seen: set[int] = set()
    for key in (GOOD, None):
        clock.reset()
        for _ in range(3):  # every limit here admits at most 2 at once
            response = send(key)
            if response.status_code == 429:
                assert component is not None, f"{method} {url}: a 429 the document lacks"
                check_429(response, component)
                seen.add(429)
                break
            assert response.status_code in (200, 401), (url, response.status_code)
    if shared is not None:
        shared.down = True
        try:
            for key in (GOOD, None):
                clock.reset()
                response = send(key)
                if response.status_code == 503:
                    assert int(response.headers["retry-after"]) >= 1
                    seen.add(503)
        finally:
            shared.down = False
    return frozenset(seen)


@pytest.mark.parametrize("case", LIMIT_CASES, ids=str)
def test_the_document_lists_429_where_the_limits_refuse(case: LimitCase) -> None:
    variant = VARIANTS[LIMIT_CASES.index(case) % len(VARIANTS)]
    clock = Clock()
    shared = FlakySharedLimiter(clock, case.shared) if case.shared else None
    listed: list[bool] = []
    with serve_limited(variant, case, clock, shared) as client:
        clock.reset()
        for doc, mount in documents(client, variant.root_path):
            components = doc["components"]["responses"]
            component = components.get("APIKeyRateLimited")
            for path, item in doc["paths"].items():
                for method, operation in item.items():
                    seen = [
                        found
                        for url in instances(mount + path, list(LIMITED_PATHS))
                        if (
                            found := probe_limits(
                                client,
                                clock,
                                shared,
                                component,
                                method,
                                variant.root_path + url,
                                path,
                            )
                        )
                        is not None
                    ]
                    assert seen, f"{method} {path}: no instance routed"
                    observed = frozenset().union(*seen)
                    statuses = set(operation["responses"])
                    said = "429" in statuses
                    assert said == (429 in observed), (case.name, method, mount + path, seen)
                    # No live key source here: a 503 comes from the shared limiter alone.
                    assert ("503" in statuses) == (503 in observed), (method, mount + path)
                    if said:
                        ref = operation["responses"]["429"]["$ref"]
                        assert ref == "#/components/responses/APIKeyRateLimited"
                    listed.append(said)
            assert (component is not None) == any(
                "429" in operation["responses"]
                for item in doc["paths"].values()
                for operation in item.values()
            ), "the component is there exactly when an operation refers to it"
    assert len(listed) >= 19  # every operation of both documents
    if case.expect == "all":
        assert all(listed)
    elif case.expect == "none":
        assert not any(listed)
    else:  # the test tells limited operations from the others
        assert any(listed), listed
        assert not all(listed), listed


def limited_small_app(*default: str, **limits: Any) -> tuple[FastAPI, APIKeyMiddleware]:
    app = small_app()
    rate_limits = RateLimits(*default, **limits)
    middleware = APIKeyMiddleware(app, keys=[CANARY], rate_limits=rate_limits, **SMALL)
    return app, middleware


def statuses_of(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {path: statuses for path, (_, statuses) in operations(doc).items()}


def test_the_429_component_has_its_headers_and_body() -> None:
    app, _ = limited_small_app(anonymous="10/minute")
    doc = app.openapi()
    component = doc["components"]["responses"]["APIKeyRateLimited"]
    headers = component["headers"]
    assert headers["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    for name in ("RateLimit", "RateLimit-Policy"):
        assert headers[name]["schema"] == {"type": "string"}
        assert "draft-ietf-httpapi-ratelimit-headers-10" in headers[name]["description"]
    body = component["content"]["application/json"]
    assert body["schema"]["properties"] == {"detail": {"type": "string"}}
    assert body["schema"]["required"] == ["detail"]
    # Anonymous clients are limited on the public and optional operations only.
    assert statuses_of(doc) == {
        "/health": ["200", "429"],
        "/v1/admin/{name}": ["200", "400", "401", "403", "422"],
        "/v1/ops": ["200", "400", "401", "429"],
    }


def test_the_guide_shows_the_429_component_as_it_is() -> None:
    guide = (Path(__file__).resolve().parent.parent / "docs/guides/openapi.md").read_text()
    marker = '"APIKeyRateLimited": '
    start = guide.index(marker) + len(marker)
    shown = json.JSONDecoder().raw_decode(guide[start:])[0]
    app, _ = limited_small_app("60/minute")
    assert shown == app.openapi()["components"]["responses"]["APIKeyRateLimited"]


def test_the_apps_own_429_is_kept() -> None:
    app = FastAPI()

    @app.get("/v1/chat", responses={429: {"description": "The app's own 429."}})
    async def chat() -> dict[str, str]:
        return {}

    @app.get("/v1/models")
    async def models() -> dict[str, str]:
        return {}

    APIKeyMiddleware(app, keys=[CANARY], rate_limits=RateLimits("10/minute"))
    paths = app.openapi()["paths"]
    assert paths["/v1/chat"]["get"]["responses"]["429"] == {"description": "The app's own 429."}
    assert paths["/v1/models"]["get"]["responses"]["429"] == {
        "$ref": "#/components/responses/APIKeyRateLimited"
    }


def test_a_key_given_a_limit_at_run_time_changes_the_served_document() -> None:
    app = small_app()
    auth = APIKeyAuth(keys=[CANARY])
    wrapped = APIKeyMiddleware(app, auth=auth, **SMALL)
    fresh = add_openapi_security(small_app().openapi(), wrapped)
    with TestClient(wrapped) as client:
        before = client.get("/openapi.json").json()
        assert before == json.loads(json.dumps(fresh))
        assert "APIKeyRateLimited" not in before["components"]["responses"]
        auth.add_key(APIKey(OTHER_KEY, name="limited", limit="1/hour"))
        during = client.get("/openapi.json").json()
        assert all("429" in statuses for statuses in statuses_of(during).values())
        assert "APIKeyRateLimited" in during["components"]["responses"]
        client.get("/v1/ops", headers={"Authorization": f"Bearer {OTHER_KEY}"})
        limited = client.get("/v1/ops", headers={"Authorization": f"Bearer {OTHER_KEY}"})
        assert limited.status_code == 429  # the middleware agrees
        assert auth.remove_key("limited")
        after = client.get("/openapi.json").json()
    assert after == before  # taken off again, component and references: never a layer


def test_a_live_key_source_may_bring_limits_with_its_keys() -> None:
    app = small_app()
    APIKeyMiddleware(app, auth=APIKeyAuth(source=NeverStarted()), **SMALL)
    doc = app.openapi()
    assert all("429" in statuses for statuses in statuses_of(doc).values())
    assert "503" not in statuses_of(doc)["/health"]  # the key store's 503: keys checked only


def test_a_shared_limiter_that_refuses_documents_503_on_limited_operations() -> None:
    app, _ = limited_small_app(anonymous="10/minute", shared=FlakySharedLimiter(Clock()))
    doc = app.openapi()
    statuses = statuses_of(doc)
    assert statuses["/health"] == ["200", "429", "503"]
    assert "503" not in statuses["/v1/admin/{name}"]  # anonymous only, and 401 there
    unavailable = doc["components"]["responses"]["APIKeyUnavailable"]
    assert "rate limiter" in unavailable["description"]
    assert "key store" not in unavailable["description"]
    # With a live key source too, one 503 says both causes.
    live = small_app()
    APIKeyMiddleware(
        live,
        auth=APIKeyAuth(source=NeverStarted()),
        rate_limits=RateLimits(anonymous="10/minute", shared=FlakySharedLimiter(Clock())),
        **SMALL,
    )
    both = live.openapi()
    assert all("503" in found for found in statuses_of(both).values())
    description = both["components"]["responses"]["APIKeyUnavailable"]["description"]
    assert "key store" in description
    assert "rate limiter" in description


@pytest.mark.parametrize(("policy", "listed"), [("refuse", True), ("local", False)])
def test_the_redis_rate_limiter_says_its_policy(policy: str, listed: bool) -> None:
    # Built only: nothing connects until start() or a decision, and neither happens here.
    from asgi_apikey.redis_store import RedisRateLimiter

    password = "canary-redis-password-8d1f"
    shared = RedisRateLimiter(f"redis://:{password}@127.0.0.1:1/0", on_unavailable=policy)
    app, _ = limited_small_app(anonymous="10/minute", shared=shared)
    doc = app.openapi()
    assert ("503" in statuses_of(doc)["/health"]) is listed
    assert password not in json.dumps(doc)


def test_a_limiter_that_falls_back_documents_no_503() -> None:
    shared = FlakySharedLimiter(Clock(), on_unavailable="local")
    app, _ = limited_small_app("10/minute", shared=shared)
    doc = app.openapi()
    assert all("429" in found and "503" not in found for found in statuses_of(doc).values())
    assert "APIKeyUnavailable" not in doc["components"]["responses"]


def test_cors_preflight_under_an_anonymous_limit_is_limited_on_a_protected_path() -> None:
    app = FastAPI()

    @app.get("/v1/chat")
    async def chat() -> dict[str, str]:
        return {}

    @app.options("/v1/chat")
    async def chat_options() -> dict[str, str]:
        return {}

    clock = Clock()
    wrapped = APIKeyMiddleware(
        app,
        keys=[CANARY],
        public=["/openapi.json"],
        allow_cors_preflight=True,
        rate_limits=RateLimits(anonymous="1/minute", clock=clock),
    )
    with TestClient(wrapped) as client:
        doc = client.get("/openapi.json").json()
        clock.reset()  # the document's request spent the anonymous limit
        preflight = {"Origin": "https://example.test", "Access-Control-Request-Method": "GET"}
        answers = [client.options("/v1/chat", headers=preflight).status_code for _ in range(2)]
        assert client.get("/v1/chat").status_code == 401  # not anonymous: no limit
    assert answers == [200, 429]
    operations_ = doc["paths"]["/v1/chat"]
    assert "429" in operations_["options"]["responses"]
    assert "429" not in operations_["get"]["responses"]


def test_development_mode_documents_no_limits() -> None:
    app = small_app()
    wrapped = APIKeyMiddleware(app, rate_limits=RateLimits("1/minute", anonymous="1/minute"))
    assert wrapped.auth.is_development_mode
    with TestClient(wrapped) as client:
        assert [client.get("/health").status_code for _ in range(3)] == [200] * 3
    assert not any("429" in found for found in statuses_of(app.openapi()).values())


def test_nested_middleware_document_the_limits_of_each() -> None:
    # The inner middleware limits anonymous clients and a path; the outer one protects
    # /items: no anonymous request reaches the inner one there, and keys are not limited.
    api = FastAPI()

    @api.get("/items")
    def items() -> list[str]:
        return []

    @api.get("/other")
    def other() -> list[str]:
        return []

    @api.get("/paid")
    def paid() -> list[str]:
        return []

    clock = Clock()
    limits = RateLimits(paths={"/paid": "1/hour"}, anonymous="1/hour", clock=clock)
    inner = APIKeyMiddleware(api, keys=[CANARY], default="public", rate_limits=limits)
    outer = APIKeyMiddleware(inner, keys=[CANARY], public=["/openapi.json", "/other", "/paid"])
    expected = {"/items": False, "/other": True, "/paid": True}

    def listed() -> dict[str, bool]:
        paths = api.openapi()["paths"]
        return {path: "429" in item["get"]["responses"] for path, item in paths.items()}

    assert listed() == expected  # the outer middleware followed last, the inner one also
    key = {"Authorization": f"Bearer {CANARY}"}
    with TestClient(outer) as client:
        assert listed() == expected  # each has seen its first scope: the inner one last
        seen = {}
        for path, headers in [("/items", {}), ("/other", {}), ("/paid", key)]:
            clock.reset()
            seen[path] = 429 in {client.get(path, headers=headers).status_code for _ in range(2)}
    assert seen == expected


def test_no_operation_under_a_limit_adds_no_component() -> None:
    shared = FlakySharedLimiter(Clock())
    app, _ = limited_small_app(paths={"/v1/chat": "10/minute"}, shared=shared)  # no such route
    doc = app.openapi()
    assert not any("429" in found or "503" in found for found in statuses_of(doc).values())
    assert "APIKeyRateLimited" not in doc["components"]["responses"]
    assert "APIKeyUnavailable" not in doc["components"]["responses"]


def test_openapi_limits_reads_the_path_limits_through_parameters() -> None:
    limits = OpenAPILimits(paths=RuleTable(protected=["/files/secret"], default="public"))
    assert limits.applies("/files/{name}", Access.PUBLIC, "get")  # one value is limited
    assert not limits.applies("/files", Access.PUBLIC, "get")
    assert not OpenAPILimits(anonymous=True).applies("/a", Access.PROTECTED, "get")
    assert OpenAPILimits(anonymous=True).applies("/a", Access.OPTIONAL, "get")
    assert OpenAPILimits(anonymous=True, preflight=True).applies("/a", Access.PROTECTED, "options")


limit_sets = st.one_of(
    st.none(),
    st.builds(
        OpenAPILimits,
        keys=st.booleans(),
        anonymous=st.booleans(),
        paths=st.one_of(
            st.none(),
            st.lists(st.sampled_from(RULE_PATHS), min_size=1, unique=True).map(
                lambda paths: RuleTable(protected=paths, default="public")
            ),
        ),
        refuses=st.booleans(),
    ),
)


@given(
    rules=rule_sets,
    first=limit_sets,
    second=limit_sets,
    live=st.booleans(),
    version=st.sampled_from(["3.0.3", "3.1.0"]),
)
def test_applying_new_limits_over_old_ones_is_applying_them_afresh(
    rules: dict[str, Any],
    first: OpenAPILimits | None,
    second: OpenAPILimits | None,
    live: bool,
    version: str,
) -> None:
    before = OpenAPISecurity(table(rules, "protected"), live_source=live, limits=first)
    after = OpenAPISecurity(table(rules, "protected"), live_source=live, limits=second)
    layered = after.apply(before.apply(pristine(version, False)))
    assert layered == after.apply(pristine(version, False))
    assert after.apply(copy.deepcopy(layered)) == layered
