"""Run an example app on 127.0.0.1:8000 with the key from the API_KEY variable."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp

from asgi_apikey import APIKey


def serve(create_app: Callable[[Sequence[str | APIKey]], ASGIApp]) -> None:  # pragma: no cover
    import uvicorn

    key = os.environ.get("API_KEY")
    if not key:
        raise SystemExit("set API_KEY to the key clients must send, e.g. API_KEY=sk-...")
    uvicorn.run(
        create_app([APIKey(key, name="env", scopes={"admin", "metrics"})]), host="127.0.0.1"
    )
