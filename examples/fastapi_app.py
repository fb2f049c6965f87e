"""A FastAPI service protected by APIKeyMiddleware.

Run it (needs the demo extra for uvicorn, and fastapi):

    API_KEY=$(python -c "import secrets; print('sk-' + secrets.token_urlsafe(32))") \
        python -m examples.fastapi_app

then ``curl -H "Authorization: Bearer $API_KEY" http://127.0.0.1:8000/v1/models``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from asgi_apikey import (
    APIKey,
    APIKeyAuth,
    APIKeyMiddleware,
    AuthContext,
    optional_verify_api_key,
    require_scopes,
    verify_api_key,
    verify_api_key_with_metadata,
)
from examples._serve import serve


def create_app(keys: Sequence[str | APIKey]) -> FastAPI:
    # Advanced mode turns user tracking on (key_id bound into structlog's context);
    # the app holds the authenticator to revoke keys at run time.
    auth = APIKeyAuth(keys, mode="advanced")
    app = FastAPI(title="LLM API")
    app.add_middleware(
        APIKeyMiddleware,
        auth=auth,
        public=["/health", "/docs", "/openapi.json"],
        optional=["/v1/operations"],
        protected={"/v1/admin": {"admin"}},
    )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(auth: Annotated[AuthContext, Depends(verify_api_key)]) -> dict[str, Any]:
        return {"models": ["small", "large"], "key_id": auth.key_id}

    @app.get("/v1/operations")
    async def operations(
        auth: Annotated[AuthContext | None, Depends(optional_verify_api_key)],
    ) -> dict[str, Any]:
        return {"operations": ["chat"], "caller": auth.key_id if auth else None}

    @app.get("/v1/me")
    async def me(
        info: Annotated[dict[str, Any], Depends(verify_api_key_with_metadata)],
    ) -> dict[str, Any]:
        return info

    @app.delete("/v1/admin/keys/{key_id}")
    async def revoke(
        key_id: str,
        caller: Annotated[AuthContext, Depends(require_scopes("admin"))],
    ) -> dict[str, Any]:
        # Takes effect for the next request, on every worker thread and task.
        return {"revoked": auth.remove_key(key_id), "by": caller.key_id}

    return app


if __name__ == "__main__":
    serve(create_app)
