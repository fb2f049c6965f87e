"""A bare ASGI app, no framework: the middleware wraps it directly.

The app reads ``scope["auth"]`` (an ``AuthContext``) itself.

    API_KEY=sk-... python -m examples.raw_asgi_app
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import Receive, Scope, Send

from asgi_apikey import APIKey, APIKeyMiddleware, AuthContext
from examples._serve import serve


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    auth: AuthContext = scope["auth"]
    body = json.dumps({"path": scope["path"], "key_id": auth.key_id}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(keys: Sequence[str | APIKey]) -> APIKeyMiddleware:
    return APIKeyMiddleware(app, keys=keys, public=["/ping"])


if __name__ == "__main__":
    serve(create_app)
