"""FastAPI's /docs with Swagger UI served by the app itself (no CDN), to try the API with a key.

FastAPI's own /docs loads Swagger UI from a CDN. Here the app serves Swagger UI 5
(it renders the OpenAPI 3.1 that FastAPI writes) from the fastapi-swagger
package under /docs/assets, so the docs work offline and a strict
Content-Security-Policy needs no outside host. APIKeyMiddleware wraps the
FastAPI app, so the document declares the bearer scheme and what each operation
needs: /docs shows Authorize and a lock on each protected operation.

    pip install . fastapi fastapi-swagger uvicorn
    export API_KEY=$(python -m asgi_apikey keygen | sed -n 's/^key: *//p')
    uvicorn --factory examples.docs_app:create_app

then open http://127.0.0.1:8000/docs, click Authorize, paste the key and try
``GET /v1/models``. Keys with scopes (``admin`` for /v1/admin) come from a key
file named by API_KEYS_FILE (see ``python -m asgi_apikey hash``).

Every response gets the strict ``Content-Security-Policy: default-src 'none';
frame-ancestors 'none'`` but /docs, which gets ``DOCS_POLICY``: what Swagger UI
needs when the app serves it, and no other host.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from asgi_apikey import (
    DOCS_CONTENT_SECURITY_POLICY,
    APIKeyAuth,
    APIKeyMiddleware,
    AuthContext,
    optional_verify_api_key,
    require_scopes,
    verify_api_key,
)

#: Where Swagger UI's files are served; under /docs, so the public rule for /docs covers them.
ASSETS = "/docs/assets"
#: The Content-Security-Policy of /docs (and /docs/...). The package's default for
#: docs pages also allows the hosts of FastAPI's CDN; served from here, none is needed.
DOCS_POLICY = "; ".join(
    (
        "default-src 'none'",
        # The bundle, and the start-up script that get_swagger_ui_html writes into the page.
        "script-src 'self' 'unsafe-inline'",
        # The stylesheet; Swagger UI styles elements through the DOM, which CSP allows.
        "style-src 'self'",
        "img-src 'self' data: blob:",  # the icon, Swagger UI's inline icons, image responses
        "connect-src 'self'",  # the OpenAPI document, and "Try it out"
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)


def create_app(docs_policy: str | None = DOCS_POLICY) -> APIKeyMiddleware:
    """The API behind APIKeyMiddleware, with keys from the environment, read now.

    A bad key or variable stops the server at start-up, not at the first request.
    ``docs_policy=None`` gives /docs the package's policy for docs pages
    (``DOCS_CONTENT_SECURITY_POLICY``, which also allows FastAPI's CDN folders).
    """
    # docs_url=None: FastAPI's own /docs would fetch Swagger UI from a CDN.
    api = FastAPI(title="Docs demo", docs_url=None, redoc_url=None)
    # The package directory holds Swagger UI's bundle, stylesheet and icon (and
    # its own empty __init__.py): nothing private.
    api.mount(
        ASSETS, StaticFiles(packages=[("fastapi_swagger", "resources")]), name="swagger-assets"
    )

    @api.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        # Behind a proxy or mounted under a prefix, every URL the page loads carries it.
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (api.openapi_url or "/openapi.json"),
            title=f"{api.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        )

    @api.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/v1/models")
    async def models(caller: Annotated[AuthContext, Depends(verify_api_key)]) -> dict[str, Any]:
        return {"models": ["small", "large"], "key_id": caller.key_id}

    @api.get("/v1/operations")
    async def operations(
        caller: Annotated[AuthContext | None, Depends(optional_verify_api_key)],
    ) -> dict[str, Any]:
        return {"operations": ["chat"], "caller": caller.key_id if caller else None}

    @api.get("/v1/admin/usage")
    async def usage(
        caller: Annotated[AuthContext, Depends(require_scopes("admin"))],
    ) -> dict[str, Any]:
        return {"requests": 0, "by": caller.key_id}

    return APIKeyMiddleware(
        api,
        auth=APIKeyAuth.from_env(),  # API_KEY, ADDITIONAL_API_KEYS, API_KEYS_FILE, ...
        public=["/health", "/docs", "/openapi.json"],
        optional=["/v1/operations"],
        protected={"/v1/admin": {"admin"}},
        path_security_headers=(
            {"/docs": {"Content-Security-Policy": docs_policy or DOCS_CONTENT_SECURITY_POLICY}}
        ),
    )
