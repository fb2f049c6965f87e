"""A FastAPI service whose keys live in Redis, shared by every worker and replica.

Run Redis, add a key, and start as many workers as you like (needs the redis
and demo extras, and fastapi):

    export REDIS_URL=redis://127.0.0.1:6379/0
    python -m asgi_apikey keys add --name demo --scopes read      # prints the key once
    uvicorn examples.redis_app:app --workers 2 --lifespan on

then ``curl -H "Authorization: Bearer <key>" http://127.0.0.1:8000/v1/models``;
``python -m asgi_apikey keys revoke demo`` and every worker refuses it at once.
``/health`` reports the store's state for the load balancer: 503 while the
store's keys cannot be trusted, so a cut-off replica leaves the pool.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from asgi_apikey import APIKeyAuth, APIKeyMiddleware, AuthContext, require_scopes
from asgi_apikey.redis_store import RedisKeySource


def create_app(url: str, **source_options: Any) -> FastAPI:
    auth = APIKeyAuth(source=RedisKeySource(url, **source_options))
    app = FastAPI(title="LLM API")
    app.add_middleware(APIKeyMiddleware, auth=auth, public=["/health"])

    @app.get("/health")
    async def health() -> JSONResponse:
        source = auth.status()["source"]
        healthy = source["state"] in ("live", "reconnecting")
        body = {"store": source["state"], "keys": source["key_count"]}
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/v1/models")
    async def models(
        caller: Annotated[AuthContext, Depends(require_scopes("read"))],
    ) -> dict[str, Any]:
        return {"models": ["small", "large"], "key_id": caller.key_id}

    return app


app = create_app(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
