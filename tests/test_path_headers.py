"""Security headers per path (issue 17, item 3): strict for the API, what the docs pages need.

Every response gets ``Content-Security-Policy: default-src 'none';
frame-ancestors 'none'`` unless a path prefix of ``path_security_headers`` says
otherwise; by default the docs pages (``/docs``, ``/redoc``, or a wrapped
FastAPI app's own URLs) get ``DOCS_CONTENT_SECURITY_POLICY``. Prefixes match
like the path rules, and a path gets a prefix's headers only when every reading
of it is under that prefix: no spelling of an API path gets the docs policy.
"""

from __future__ import annotations

import inspect
import posixpath
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_apikey import APIKeyMiddleware, ConfigurationError
from asgi_apikey.headers import (
    DEFAULT_HSTS,
    DOCS_CONTENT_SECURITY_POLICY,
    STRICT_CONTENT_SECURITY_POLICY,
    AddedHeaders,
    PathHeaders,
    SecurityHeaders,
)
from tests.asgi import CANARY, Recorder, Result, call, chain, http_scope

STRICT = STRICT_CONTENT_SECURITY_POLICY
DOCS = DOCS_CONTENT_SECURITY_POLICY
CSP = "content-security-policy"


def middleware(app: ASGIApp | None = None, **options: Any) -> APIKeyMiddleware:
    options.setdefault("keys", [CANARY])
    options.setdefault("default", "public")  # the app runs: its response carries the headers
    return APIKeyMiddleware(app or Recorder(), **options)


def sent(app: ASGIApp, path: str, **scope: Any) -> Result:
    return call(app, http_scope(path, **scope), Recorder())


def csp(app: ASGIApp, path: str, **scope: Any) -> str | None:
    return sent(app, path, **scope).header(CSP)


# --- the defaults ----------------------------------------------------------------------------


def test_an_api_response_and_a_denial_get_the_strict_policy() -> None:
    app = middleware(default="protected", public=["/health"])
    assert csp(app, "/health") == STRICT
    denial = sent(app, "/v1/models")
    assert denial.status == 401
    assert denial.header(CSP) == STRICT


@pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect", "/redoc"])
def test_the_docs_pages_get_the_docs_policy_by_default(path: str) -> None:
    result = sent(middleware(), path)
    assert result.header(CSP) == DOCS
    # Only the policy is relaxed: the page still cannot be framed or sniffed.
    assert result.header("x-frame-options") == "DENY"
    assert result.header("x-content-type-options") == "nosniff"
    assert result.header("referrer-policy") == "no-referrer"


@pytest.mark.parametrize(
    "path",
    ["/openapi.json", "/docsx", "/docs-admin", "/redocs", "/v1/docs", "/", "/doc", "/Docs"],
)
def test_other_paths_keep_the_strict_policy(path: str) -> None:
    assert csp(middleware(), path) == STRICT


def test_the_docs_policy_is_what_swagger_ui_and_redoc_need_and_no_more() -> None:
    directives = dict(part.split(" ", 1) for part in DOCS.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["connect-src"] == "'self'"  # the OpenAPI document and "Try it out"
    assert "'unsafe-eval'" not in DOCS
    assert "*" not in DOCS
    # FastAPI's default CDN for Swagger UI and ReDoc, and ReDoc's search worker.
    assert "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/" in directives["script-src"]
    assert "https://cdn.jsdelivr.net/npm/redoc@2/" in directives["script-src"]
    # FastAPI's folders of the CDN, never the whole CDN (it serves any package).
    assert "https://cdn.jsdelivr.net" not in directives["script-src"].split()
    assert "blob:" in directives["worker-src"]
    # ... and the folders are where this FastAPI's docs pages load their assets from.
    defaults: list[tuple[str, Callable[..., object], str]] = [
        ("script-src", get_swagger_ui_html, "swagger_js_url"),
        ("style-src", get_swagger_ui_html, "swagger_css_url"),
        ("script-src", get_redoc_html, "redoc_js_url"),
    ]
    for directive, page, parameter in defaults:
        url = inspect.signature(page).parameters[parameter].default
        sources = directives[directive].split()
        assert any(url.startswith(source) for source in sources if "://" in source), url


def test_an_empty_mapping_keeps_the_docs_strict() -> None:
    app = middleware(path_security_headers={})
    assert csp(app, "/docs") == STRICT
    assert app.describe()["path_security_headers"] == {"/": SecurityHeaders(True).fields}


def test_with_the_policy_dropped_the_docs_get_none_either() -> None:
    # Nothing to relax: a policy the operator dropped (say, a proxy sets one) is not
    # brought back on the docs pages, where it would be a second, conflicting one.
    app = middleware(security_headers={"Content-Security-Policy": None})
    assert csp(app, "/docs") is None
    assert csp(app, "/v1") is None
    assert sent(app, "/docs").header("x-frame-options") == "DENY"


def test_with_the_headers_switched_off_the_docs_get_none_either() -> None:
    result = sent(middleware(security_headers=False), "/docs")
    assert result.header(CSP) is None
    assert result.header("x-frame-options") is None


def test_an_own_strict_policy_is_relaxed_on_the_docs_pages() -> None:
    app = middleware(security_headers={"Content-Security-Policy": "default-src 'self'"})
    assert csp(app, "/v1") == "default-src 'self'"
    assert csp(app, "/docs") == DOCS


# --- where the docs are ----------------------------------------------------------------------


def _fastapi(**settings: Any) -> FastAPI:
    api = FastAPI(**settings)

    @api.get("/v1/models")
    async def models() -> dict[str, list[str]]:
        return {"models": ["small"]}

    return api


def test_a_fastapi_app_gets_the_docs_policy_on_its_docs_and_strict_elsewhere() -> None:
    app = middleware(_fastapi())
    client = TestClient(app)
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "text/html" in response.headers["content-type"]
        assert response.headers[CSP] == DOCS, path
    for path in ("/openapi.json", "/v1/models"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers[CSP] == STRICT, path


def test_a_fastapi_app_installed_with_add_middleware_gets_the_usual_docs_paths() -> None:
    api = _fastapi()
    api.add_middleware(APIKeyMiddleware, keys=[CANARY], default="public")
    client = TestClient(api)
    assert client.get("/docs").headers[CSP] == DOCS
    assert client.get("/redoc").headers[CSP] == DOCS
    assert client.get("/openapi.json").headers[CSP] == STRICT
    assert client.get("/v1/models").headers[CSP] == STRICT


def test_a_fastapi_apps_own_docs_urls_are_followed() -> None:
    api = _fastapi(docs_url="/reference", swagger_ui_oauth2_redirect_url="/oauth/redirect")
    app = middleware(api)
    assert app.describe()["path_security_headers"].keys() == {
        "/oauth/redirect",
        "/reference",
        "/redoc",
        "/",
    }
    client = TestClient(app)
    assert client.get("/reference").headers[CSP] == DOCS
    assert client.get("/oauth/redirect").headers[CSP] == DOCS
    assert client.get("/redoc").headers[CSP] == DOCS
    assert client.get("/docs").headers[CSP] == STRICT  # not the docs here: a 404


@pytest.mark.parametrize(
    "path", ["/docs/", "/docs/assets/swagger-ui.css", "/docs/123", "/redoc/x", "/docs/oauth2"]
)
def test_only_the_docs_pages_themselves_are_relaxed(path: str) -> None:
    # What an app serves below a docs page (an HTML route /docs/{id}, a catch-all)
    # keeps the strict policy; assets need no page policy (issue 17 review).
    assert csp(middleware(), path) == STRICT


def test_docs_pages_a_fastapi_app_turned_off_stay_strict() -> None:
    # FastAPI(docs_url=None, redoc_url=None) names no docs page: a page the app serves
    # there itself (FastAPI's guide to self-hosting the docs) gets a policy only when
    # given one, as examples/docs_app.py does.
    api = _fastapi(docs_url=None, redoc_url=None)

    @api.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return Response("<html></html>", media_type="text/html")

    client = TestClient(middleware(api))
    assert client.get("/docs").headers[CSP] == STRICT
    assert client.get("/redoc").headers[CSP] == STRICT
    given = {"/docs": {"Content-Security-Policy": DOCS}}
    client = TestClient(middleware(api, path_security_headers=given))
    assert client.get("/docs").headers[CSP] == DOCS
    assert client.get("/v1/models").headers[CSP] == STRICT


def test_add_middleware_reads_the_apps_own_docs_urls_at_the_first_request() -> None:
    api = _fastapi(docs_url="/reference", redoc_url=None)
    api.add_middleware(APIKeyMiddleware, keys=[CANARY], default="public")
    with TestClient(api) as client:
        assert client.get("/reference").headers[CSP] == DOCS
        assert client.get("/docs").headers[CSP] == STRICT
        assert client.get("/redoc").headers[CSP] == STRICT


def test_the_fastapi_app_is_found_through_other_middleware() -> None:
    class Outer:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self.app(scope, receive, send)

    app = middleware(Outer(Outer(_fastapi(docs_url="/reference"))))
    assert "/reference" in app.describe()["path_security_headers"]
    assert "/docs" not in app.describe()["path_security_headers"]


def test_a_docs_url_no_prefix_can_name_is_left_strict() -> None:
    # Docs at '/' would relax every path: that page keeps the strict policy.
    app = middleware(_fastapi(docs_url="/", redoc_url=None))
    assert list(app.describe()["path_security_headers"]) == ["/docs/oauth2-redirect", "/"]
    assert csp(app, "/") == STRICT


def test_docs_paths_relative_to_the_mount_point() -> None:
    app = middleware(Recorder())
    assert csp(app, "/api/docs", root_path="/api") == DOCS
    assert csp(app, "/api/v1", root_path="/api") == STRICT
    # Starlette takes the mount point off at a segment boundary only; Quart takes it
    # off as a plain prefix. Where they disagree, the strict policy stays.
    assert csp(app, "/apidocs", root_path="/api") == STRICT
    assert csp(app, "/docs", root_path="/api") == DOCS  # not under the mount point: as is
    assert csp(app, "/docs/x", root_path="/do") == STRICT  # Quart routes '/cs/x'


@pytest.mark.filterwarnings(
    "ignore:The `root_path` parameter is deprecated:fastapi.exceptions.FastAPIDeprecationWarning"
)
def test_docs_paths_relative_to_a_fastapi_apps_own_root_path() -> None:
    # FastAPI(root_path=...) wrapped directly: its own mount point, read at each request.
    rooted = middleware(_fastapi(root_path="/prefix"))
    assert csp(rooted, "/prefix/docs") == DOCS
    assert csp(rooted, "/prefix/openapi.json") == STRICT


# --- explicit prefixes -----------------------------------------------------------------------


def test_the_longest_prefix_wins_and_each_merges_over_the_base() -> None:
    app = middleware(
        security_headers={"Referrer-Policy": "same-origin"},
        path_security_headers={
            "/files": {"X-Frame-Options": "SAMEORIGIN", "Content-Security-Policy": "sandbox"},
            "/files/public/": {"Content-Security-Policy": None},
        },
    )
    files = sent(app, "/files/report.html")
    assert files.header("x-frame-options") == "SAMEORIGIN"
    assert files.header(CSP) == "sandbox"
    assert files.header("referrer-policy") == "same-origin"  # the base, as configured
    public = sent(app, "/files/public/logo.png")
    assert public.header(CSP) is None
    assert public.header("x-frame-options") == "DENY"  # over the base, not over /files
    assert csp(app, "/files-old") == STRICT
    assert csp(app, "/docs") == STRICT  # explicit prefixes replace the docs default
    assert list(app.describe()["path_security_headers"]) == ["/files/public", "/files", "/"]


def test_describe_shows_every_prefix_with_all_its_headers() -> None:
    described = middleware().describe()["path_security_headers"]
    assert list(described) == ["/docs/oauth2-redirect", "/redoc", "/docs", "/"]
    assert described["/docs"] == {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": DOCS,
        "Strict-Transport-Security": DEFAULT_HSTS,
    }
    assert described["/"]["Content-Security-Policy"] == STRICT
    assert middleware().describe()["security_headers"] is True


def test_the_apps_own_header_always_wins() -> None:
    own = Recorder(
        response_headers=[(b"Content-Security-Policy", b"default-src 'self'"), (b"x", b"1")]
    )
    app = middleware(own, path_security_headers={"/v1": {"X-Frame-Options": "SAMEORIGIN"}})
    for path in ("/docs", "/v1/x", "/other"):
        result = call(app, http_scope(path), own)
        values = [v for k, v in result.headers if k.lower() == CSP.encode()]
        assert values == [b"default-src 'self'"], path
    assert call(app, http_scope("/v1/x"), own).header("x-frame-options") == "SAMEORIGIN"


def test_hsts_on_https_only_on_every_path() -> None:
    app = middleware(path_security_headers={"/docs": {"Content-Security-Policy": DOCS}})
    for path, policy in (("/docs", DOCS), ("/v1", STRICT)):
        secure = sent(app, path, scheme="https")
        assert secure.header("strict-transport-security") == DEFAULT_HSTS
        assert secure.header(CSP) == policy
        assert sent(app, path).header("strict-transport-security") is None


def test_a_prefix_may_change_or_drop_hsts() -> None:
    app = middleware(
        path_security_headers={
            "/legacy": {"Strict-Transport-Security": None},
            "/short": {"Strict-Transport-Security": "max-age=60"},
        }
    )
    assert sent(app, "/legacy/x", scheme="https").header("strict-transport-security") is None
    assert sent(app, "/short", scheme="https").header("strict-transport-security") == "max-age=60"
    assert sent(app, "/v1", scheme="https").header("strict-transport-security") == DEFAULT_HSTS


@pytest.mark.parametrize(("path", "policy"), [("/docs", DOCS), ("/v1/models", STRICT)])
def test_a_key_in_the_url_makes_the_response_private_on_every_path(path: str, policy: str) -> None:
    inner = Recorder(response_headers=[(b"cache-control", b"public, max-age=60")])
    app = middleware(inner, default="protected", public=["/docs"], allow_query_token=True)
    query = b"access_token=" + CANARY.encode()
    result = call(app, http_scope(path, query_string=query), inner)
    assert result.status == 200
    assert result.header(CSP) == policy
    assert result.header("cache-control") == "private, max-age=60"


def test_the_middlewares_own_denials_keep_the_strict_headers() -> None:
    app = middleware(
        default="protected",
        path_security_headers={"/docs": {"Content-Security-Policy": DOCS, "X-Frame-Options": None}},
    )
    for path, query in (("/docs", b""), ("/docs/x", b"access_token=" + CANARY.encode())):
        denial = sent(app, path, query_string=query)
        assert denial.status in (400, 401)
        assert denial.header(CSP) == STRICT
        assert denial.header("x-frame-options") == "DENY"


async def _refusing_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    start = {"type": "websocket.http.response.start", "status": 403, "headers": []}
    await send(start)
    await send({"type": "websocket.http.response.body", "body": b"no"})


@pytest.mark.parametrize(("path", "frame"), [("/live/feed", "SAMEORIGIN"), ("/feed", "DENY")])
def test_an_apps_websocket_denial_response_gets_its_paths_headers(path: str, frame: str) -> None:
    app = middleware(
        _refusing_websocket, path_security_headers={"/live": {"X-Frame-Options": "SAMEORIGIN"}}
    )
    scope = http_scope(path, kind="websocket", extensions={"websocket.http.response": {}})
    result = call(app, scope)
    assert result.status == 403
    assert result.header("x-frame-options") == frame
    assert result.header(CSP) == STRICT


# --- configuration errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (["/docs"], "must be a mapping of path prefix to header overrides"),
        ({"docs": {}}, "is not an absolute path: write each path prefix with a leading '/'"),
        ({1: {}}, "is not an absolute path"),
        ({"/docs?x=1": {}}, "must be a plain path prefix"),
        ({"/docs/*": {}}, "must be a plain path prefix"),
        ({"/do\ncs": {}}, "must be a plain path prefix"),
        ({"/my%20docs": {}}, "write it as '/my docs'"),
        ({"/a/../docs": {}}, "write it as '/docs'"),
        ({"//docs": {}}, "write it as '/docs'"),
        ({"/": {}}, "'/' would cover every path: set the headers of every path with security_h"),
        ({"/docs": {}, "/docs/": {}}, "'/docs' is given twice"),
        ({"/docs": "default-src 'self'"}, "the headers of '/docs' must be a mapping"),
        ({"/docs": {"X Bad": "1"}}, "path_security_headers['/docs']: a name is not a valid"),
        ({"/docs": {"X-Ok": "a\r\nb"}}, "the value of 'X-Ok' must be printable ASCII"),
        ({"/docs": {"X-Ok": 1}}, "must be printable ASCII"),
        ({"/docs": {"Content-Type": "text/html"}}, "'Content-Type' is not a security header"),
        ({"/docs/{page}": {}}, "looks like a route template, but prefixes are literal"),
    ],
    ids=[
        "a list",
        "relative path",
        "not a string",
        "query",
        "wildcard",
        "control character",
        "percent-escape",
        "dot segments",
        "repeated slash",
        "root",
        "twice",
        "headers not a mapping",
        "bad name",
        "line break in a value",
        "value not text",
        "not a security header",
        "route template",
    ],
)
def test_bad_path_security_headers_name_the_fix(config: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match="path_security_headers") as caught:
        middleware(path_security_headers=config)
    assert message in str(caught.value)
    assert caught.value.context == {"setting": "path_security_headers"}


@pytest.mark.parametrize("key", ["sk-live-0123456789abcdef", "0123456789abcdef"])
@pytest.mark.parametrize(
    "config",
    [
        lambda key: {key: {}},
        lambda key: {"/docs": {key + " x": "1"}},
        lambda key: {"/docs": {"X-Key": key + "\n"}},
    ],
    ids=["as a path", "as a header name", "as a header value"],
)
def test_a_key_pasted_into_path_security_headers_is_never_quoted(config: Any, key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        middleware(path_security_headers=config(key))
    for error in chain(caught.value):
        shown = str(error) + repr(error) + repr(getattr(error, "context", ""))
        assert key[:12] not in shown


# --- properties: the choice against a reference ----------------------------------------------


def resolved(path: str) -> str:
    """An independent normaliser: POSIX normpath on the path made absolute with one slash."""
    return posixpath.normpath("/" + path.lstrip("/"))


def reference(prefixes: list[str], path: str) -> str | None:
    """The longest prefix that is ``path`` or a '/'-bounded string prefix of it."""
    covering = [prefix for prefix in prefixes if path == prefix or path.startswith(prefix + "/")]
    return max(covering, key=len, default=None)


def framed(prefixes: list[str]) -> PathHeaders:
    """Headers that drop X-Frame-Options under each of ``prefixes``."""
    return PathHeaders(
        SecurityHeaders(True), {prefix: {"X-Frame-Options": None} for prefix in prefixes}
    )


def chosen_prefix(headers: PathHeaders, chosen: AddedHeaders) -> str | None:
    found = [prefix for prefix, added in headers.prefixes.items() if added is chosen]
    assert found or chosen is headers.base
    return found[0] if found else None


_NAME = st.sampled_from(["docs", "docs", "redoc", "docsx", "v1", "a", "oauth2-redirect"])
_PREFIXES = st.lists(
    st.lists(_NAME, min_size=1, max_size=2).map(lambda parts: "/" + "/".join(parts)),
    unique=True,
    min_size=1,
    max_size=4,
)
# As sent on the wire, then decoded as uvicorn decodes a request target: '%2e' becomes a
# dot, '%2f' a slash, '%0a' a newline; '%252e' stays '%2e' (a name, for every router).
_RAW_SEGMENT = st.sampled_from(
    [
        *["docs", "docs", "redoc", "docsx", "v1", "a", "oauth2-redirect", ".", "..", "", "%2e"],
        *["%2e%2e", ".%2e", "%2f", "%2F", "docs%2f..", "%0a", "%00", ";", "%252e%252e", "http:"],
        *["..%23", "..%3f", "..;p=1"],  # a fragment, a query or params, for URL readings
    ]
)
_AUTHORITY = st.sampled_from([""] * 6 + ["http://testserver", "//testserver", "http:"])


@st.composite
def decoded_paths(draw: st.DrawFn) -> str:
    """A request path as the ASGI scope holds it: any spelling of the names above."""
    raw = "/" + "/".join(draw(st.lists(_RAW_SEGMENT, max_size=6)))
    return unquote(draw(_AUTHORITY) + raw)


@given(_PREFIXES, st.lists(_NAME, max_size=4).map(lambda parts: "/" + "/".join(parts)))
def test_a_canonical_path_gets_the_longest_covering_prefix(prefixes: list[str], path: str) -> None:
    headers = framed(prefixes)
    assert chosen_prefix(headers, headers.choose(path, "")) == reference(prefixes, path)


@given(_PREFIXES, decoded_paths())
@example(["/docs"], "/docs/../v1")
@example(["/docs"], "/docs/\n..")
@example(["/docs"], "/docs/..\n")
@example(["/docs"], "http://testserver/docs/../v1")
@example(["/docs", "/docs/a"], "/docs/a/../b")
@example(["/docs"], "/docs/..;x://y")
@example(["/docs"], "/docs/..#/http://v1")
def test_no_spelling_gets_a_prefix_that_a_reading_of_it_is_not_under(
    prefixes: list[str], path: str
) -> None:
    headers = framed(prefixes)
    got = chosen_prefix(headers, headers.choose(path, ""))
    if got is not None:
        # As a router resolves it, as Starlette routes it, and without control characters.
        assert got == reference(prefixes, resolved(path))
        assert got == reference(prefixes, path)
        stripped = "".join(char for char in path if char.isprintable())
        assert got == reference(prefixes, resolved(stripped))
        if "://" in path or not path.startswith("/") or path.startswith("//"):
            # As a URL, as Quart routes a target that is not in origin form.
            for url in (urlsplit(path).path, urlparse(path).path):
                assert got == reference(prefixes, resolved(url))
    origin = path.startswith("/") and not path.startswith("//") and "://" not in path
    if (
        origin
        and path.isprintable()
        and reference(prefixes, path) == reference(prefixes, resolved(path))
    ):
        assert got == reference(prefixes, path)  # where every reading agrees, it is chosen


@given(decoded_paths(), st.sampled_from(["", "/api"]))
def test_the_middleware_sends_what_the_choice_says(path: str, root: str) -> None:
    headers = PathHeaders(SecurityHeaders(True), None)
    expected = DOCS if headers.choose(root + path, root) is not headers.base else STRICT
    assert csp(_DEFAULTS, root + path, root_path=root) == expected


_DEFAULTS = middleware()


# --- differential: what actually ran under which policy --------------------------------------


def _docs_and_api(ran: list[str]) -> Starlette:
    """Docs pages and their assets under /docs and /redoc; every other path is the API."""

    def endpoint(name: str) -> Any:
        async def handle(request: Request) -> Response:
            ran.append(name)
            return PlainTextResponse(name)

        return handle

    return Starlette(
        routes=[
            Route("/docs", endpoint("docs")),
            Route("/docs/{asset:path}", endpoint("docs")),
            Route("/redoc", endpoint("docs")),
            Route("/redoc/{asset:path}", endpoint("docs")),
            Route("/openapi.json", endpoint("api")),
            Route("/{rest:path}", endpoint("api")),
        ]
    )


@given(decoded_paths())
@example("/docs/../v1")
@example("/docs/%2e%2e/v1")
@example("/docs\n")
def test_an_api_handler_never_runs_under_the_docs_policy(path: str) -> None:
    ran: list[str] = []
    app = middleware(_docs_and_api(ran))
    result = call(app, http_scope(path))
    if result.header(CSP) == DOCS:
        assert "api" not in ran, path  # a docs page, or the router's 404
    if ran == ["api"]:
        assert result.header(CSP) == STRICT, path


def test_an_api_beside_the_docs_stays_strict_when_the_docs_url_is_precise() -> None:
    # A prefix covers every path below it, whatever serves it: name the pages precisely
    # when an API shares the prefix.
    api = FastAPI(docs_url="/docs/ui", redoc_url=None)

    @api.get("/docs/items")
    async def items() -> JSONResponse:
        return JSONResponse({"items": []})

    client = TestClient(middleware(api))
    assert client.get("/docs/ui").headers[CSP] == DOCS
    assert client.get("/docs/items").headers[CSP] == STRICT


def test_security_headers_mapping_type_is_checked_before_the_paths() -> None:
    with pytest.raises(ConfigurationError, match="security_headers must be True, False or a"):
        middleware(security_headers="on", path_security_headers={"/docs": {}})


def test_a_prefix_with_no_overrides_sends_the_base_headers() -> None:
    app = middleware(path_security_headers={"/x": {}})
    assert sent(app, "/x").headers == sent(app, "/y").headers
