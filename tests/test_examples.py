"""Each example app works as its docstring says."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from asgi_apikey import APIKey
from examples import fastapi_app, raw_asgi_app, starlette_app
from tests.asgi import CANARY, OTHER_KEY

ADMIN = {"Authorization": f"Bearer {CANARY}"}
USER = {"Authorization": f"Bearer {OTHER_KEY}"}
QUICKSTART = "examples.quickstart"


@pytest.fixture
def keys() -> list[str | APIKey]:
    return [
        APIKey(CANARY, name="admin", scopes={"admin"}),
        APIKey(OTHER_KEY, name="user"),
    ]


def test_fastapi_example() -> None:
    keys: list[str | APIKey] = [
        APIKey(CANARY, name="admin", scopes={"admin"}),
        APIKey(OTHER_KEY, name="user", metadata={"tier": "free"}),
    ]
    client = TestClient(fastapi_app.create_app(keys))
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers=USER).json()["key_id"] == "user"
    assert client.get("/v1/operations").json() == {"operations": ["chat"], "caller": None}
    assert client.get("/v1/operations", headers=ADMIN).json()["caller"] == "admin"
    assert client.get("/v1/me", headers=USER).json() == {
        "key_id": "user",
        "scopes": ["authenticated"],
        "metadata": {"tier": "free"},
    }
    assert client.delete("/v1/admin/keys/user", headers=USER).status_code == 403
    assert client.delete("/v1/admin/keys/user", headers=ADMIN).json() == {
        "revoked": True,
        "by": "admin",
    }
    assert client.get("/v1/models", headers=USER).status_code == 401
    assert client.delete("/v1/admin/keys/user", headers=ADMIN).json()["revoked"] is False


def test_starlette_example(keys: list[str | APIKey]) -> None:
    client = TestClient(starlette_app.create_app(keys))
    assert client.get("/health").status_code == 200
    assert client.get("/whoami").status_code == 401
    assert client.get("/whoami", headers=USER).json() == {
        "user": "user",
        "scopes": ["authenticated"],
    }
    assert client.get("/admin", headers=USER).status_code == 403
    assert client.get("/admin", headers=ADMIN).json() == {"admin": "admin"}


def test_raw_asgi_example(keys: list[str | APIKey]) -> None:
    client = TestClient(raw_asgi_app.create_app(keys))
    assert client.get("/ping").json() == {"path": "/ping", "key_id": None}
    assert client.get("/data").status_code == 401
    response = client.get("/data", headers=ADMIN)
    assert response.json() == {"path": "/data", "key_id": "admin"}
    assert response.headers["x-frame-options"] == "DENY"


@pytest.fixture
def fresh_quickstart() -> Iterator[None]:
    """``examples.quickstart`` imported afresh in the test, and as it was after.

    It builds its app at import from the environment, so a module left imported
    would carry this test's API_KEY into later tests.
    """
    package = sys.modules["examples"]
    saved = (sys.modules.pop(QUICKSTART, None), getattr(package, "quickstart", None))
    try:
        yield
    finally:
        sys.modules.pop(QUICKSTART, None)
        if hasattr(package, "quickstart"):
            delattr(package, "quickstart")
        module, attribute = saved
        if module is not None:
            sys.modules[QUICKSTART] = module
        if attribute is not None:
            package.__dict__["quickstart"] = attribute


@pytest.mark.usefixtures("fresh_quickstart")
def test_quickstart_example(monkeypatch: pytest.MonkeyPatch) -> None:
    # Built at import from the environment, as under `uvicorn main:app`.
    monkeypatch.setenv("API_KEY", CANARY)
    assert QUICKSTART not in sys.modules
    client = TestClient(importlib.import_module(QUICKSTART).app)
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/docs").status_code == 200
    assert client.get("/hello").status_code == 401
    caller = client.get("/hello", headers=ADMIN).json()["hello"]
    assert caller.startswith("key-")
    assert CANARY not in caller
