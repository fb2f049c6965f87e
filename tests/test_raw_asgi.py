"""The middleware's refusals are its own, whatever runs behind it.

The baseline is the middleware in front of a bare ASGI app that must never run:
no framework at all. Each example app (raw ASGI, Starlette, FastAPI, Litestar,
Quart, Django) refuses the same requests with the same bytes as the baseline:
status, body, ``WWW-Authenticate`` and every other header, over HTTP and over a
websocket handshake. No framework adds, drops or rewrites anything, and the key
never shows in a response or a log event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httpx2
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from structlog.testing import capture_logs

from asgi_apikey import APIKey, APIKeyMiddleware
from examples import (
    django_app,
    fastapi_app,
    litestar_app,
    quart_app,
    raw_asgi_app,
    starlette_app,
)
from tests.asgi import CANARY, OTHER_KEY

KEYS = [APIKey(CANARY, name="admin", scopes={"admin"}), APIKey(OTHER_KEY, name="user")]


async def never_runs(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError(f"the app ran for a refused request: {scope['path']!r}")


#: The middleware with nothing behind it, with the examples' rules.
BASELINE = APIKeyMiddleware(
    never_runs,
    keys=KEYS,
    public=["/health"],
    optional=["/v1/operations"],
    protected={"/v1/admin": {"admin"}},
)


@dataclass(frozen=True)
class Framework:
    name: str
    build: Callable[[], ASGIApp]
    #: A path every key may reach, and one whose rule asks for the "admin" scope.
    protected: str
    scoped: str | None = None


FRAMEWORKS = [
    Framework("raw ASGI", lambda: raw_asgi_app.create_app(KEYS), "/data"),
    Framework("Starlette", lambda: starlette_app.create_app(KEYS), "/whoami"),
    Framework("FastAPI", lambda: fastapi_app.create_app(KEYS), "/v1/models", "/v1/admin/keys/user"),
    Framework("Litestar", lambda: litestar_app.create_app(KEYS), "/v1/whoami", "/v1/admin/stats"),
    Framework(
        "Quart",
        lambda: cast(ASGIApp, quart_app.create_app(KEYS)),
        "/v1/whoami",
        "/v1/admin/stats",
    ),
    Framework("Django", lambda: django_app.create_app(KEYS), "/v1/whoami", "/v1/admin/stats"),
]

_SPLIT = "Bearer " + CANARY[:8] + " " + CANARY[8:]
#: Each refusal: its headers, and whether it is on the scoped path.
CASES: dict[str, tuple[list[tuple[str, str]], bool]] = {
    "no key": ([], False),
    "unknown key": ([("Authorization", f"Bearer {CANARY}x")], False),
    "space in the key": ([("Authorization", _SPLIT)], False),
    "two authorization headers": ([("Authorization", f"Bearer {CANARY}")] * 2, False),
    "other scheme": ([("Authorization", f"Basic {CANARY}")], False),
    "key without the scope": ([("Authorization", f"Bearer {OTHER_KEY}")], True),
}


def answer(app: ASGIApp, path: str, headers: list[tuple[str, str]]) -> tuple[Any, ...]:
    """Status, body and every header of the answer, in order (no lifespan: Django refuses it)."""
    response = TestClient(app).get(path, headers=httpx2.Headers(headers))
    return response.status_code, response.content, response.headers.multi_items()


def websocket_answer(app: ASGIApp, path: str, headers: list[tuple[str, str]]) -> tuple[Any, ...]:
    with (
        pytest.raises(WebSocketDenialResponse) as caught,
        TestClient(app).websocket_connect(path, headers=httpx2.Headers(headers)),
    ):
        pass  # pragma: no cover - never accepted
    denial = caught.value
    return denial.status_code, denial.content, denial.headers.multi_items()


def combinations(cases: list[str]) -> list[Any]:
    """(framework, case) pairs; a case on the scoped path only where the example has one."""
    return [
        pytest.param(framework, case, id=f"{framework.name}-{case}")
        for framework in FRAMEWORKS
        for case in cases
        if framework.scoped is not None or not CASES[case][1]
    ]


def paths(framework: Framework, case: str) -> tuple[str, str]:
    """The baseline's path and the framework's for ``case``."""
    if CASES[case][1]:
        assert framework.scoped is not None
        return "/v1/admin/stats", framework.scoped
    return "/v1/whoami", framework.protected


@pytest.mark.parametrize(("framework", "case"), combinations(list(CASES)))
def test_an_http_refusal_is_the_middlewares_whatever_the_framework(
    framework: Framework, case: str
) -> None:
    headers = CASES[case][0]
    baseline_path, path = paths(framework, case)
    with capture_logs() as logs:
        expected = answer(BASELINE, baseline_path, headers)
        got = answer(framework.build(), path, headers)
    assert expected[0] in (400, 401, 403)
    assert got == expected
    assert CANARY not in repr(got) + repr(logs)


@pytest.mark.parametrize(
    ("framework", "case"), combinations(["no key", "unknown key", "key without the scope"])
)
def test_a_websocket_refusal_is_the_middlewares_whatever_the_framework(
    framework: Framework, case: str
) -> None:
    headers = CASES[case][0]
    baseline_path, path = paths(framework, case)
    with capture_logs() as logs:
        expected = websocket_answer(BASELINE, baseline_path, headers)
        got = websocket_answer(framework.build(), path, headers)
    assert expected[0] in (401, 403)
    assert got == expected
    assert CANARY not in repr(got) + repr(logs)


def test_the_baseline_refuses_as_the_design_says() -> None:
    # The baseline itself, pinned: what every framework above must match.
    with capture_logs():
        status, body, headers = answer(BASELINE, "/v1/whoami", [])
    assert (status, body) == (
        401,
        b'{"detail": "Missing API key: send it as \'Authorization: Bearer <key>\'"}',
    )
    assert dict(headers)["www-authenticate"] == 'Bearer realm="api"'
    assert dict(headers)["cache-control"] == "no-store"
    assert dict(headers)["content-type"] == "application/json"
