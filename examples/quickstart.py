"""The quick start of the README and the docs: a complete FastAPI app, as ``main.py``.

pip install . fastapi uvicorn
export API_KEY=$(python -m asgi_apikey keygen | sed -n 's/^key: *//p')
uvicorn examples.quickstart:app
curl -H "Authorization: Bearer $API_KEY" http://127.0.0.1:8000/hello
"""

from typing import Annotated

from fastapi import Depends, FastAPI

from asgi_apikey import APIKeyAuth, APIKeyMiddleware, AuthContext, verify_api_key

api = FastAPI(title="My API")


@api.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@api.get("/hello")
async def hello(caller: Annotated[AuthContext, Depends(verify_api_key)]) -> dict[str, str | None]:
    return {"hello": caller.key_id}


# Built now, as the module is imported: a bad key, variable or rule stops the
# server at start-up, however it is started.
auth = APIKeyAuth.from_env()  # reads API_KEY, ADDITIONAL_API_KEYS, ENVIRONMENT, ...
app = APIKeyMiddleware(api, auth=auth, public=["/health", "/docs", "/openapi.json"])
