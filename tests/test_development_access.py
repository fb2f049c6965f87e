"""Closed by default: development mode that nobody asked for serves this machine only.

DESIGN.md, "Configuration and modes": with no key source, development mode
lets requests pass; where no ``ENVIRONMENT`` is set it serves loopback
clients only and refuses others with 401 and the fix; an explicit
``ENVIRONMENT=development`` or ``testing`` opens it to all; ``staging`` and
``production`` refuse to start (and refuse keys under 16 characters).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Scope
from structlog.testing import capture_logs

import asgi_apikey.auth
import asgi_apikey.middleware
from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware, ConfigurationError
from tests.asgi import CANARY, Recorder, Result, bearer, call, http_scope

CHALLENGE = 'Bearer realm="api"'
REMOTE = ("203.0.113.9", 40000)
SHORT = "sk-short-key"  # 12 characters


@pytest.fixture(autouse=True)
def _no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi_apikey.auth, "_default", None)


def remote(path: str = "/v1/x", **options: Any) -> Scope:
    scope = http_scope(path, **options)
    scope["client"] = REMOTE
    return scope


def built(**options: Any) -> tuple[APIKeyMiddleware, Recorder]:
    inner = Recorder()
    return APIKeyMiddleware(inner, public=["/health"], **options), inner


def assert_local_only_denial(result: Result) -> None:
    assert result.status == 401
    assert result.seen is None, "the app must not run"
    assert result.header("www-authenticate") == CHALLENGE
    assert result.header("cache-control") == "no-store"
    detail = result.json()["detail"]
    assert "only this machine" in detail
    assert "API_KEY" in detail
    assert "ENVIRONMENT=development" in detail


# ---------------------------------------------------------------- unset: local only


def test_unrequested_development_mode_serves_this_machine_only() -> None:
    with capture_logs() as logs:
        app, inner = built()
    assert [entry["event"] for entry in logs] == ["development_mode"]
    warning = logs[0]
    assert warning["access"] == "local"
    assert "serves only this machine" in warning["detail"]
    assert "ENVIRONMENT=development" in warning["detail"]
    assert app.auth.is_development_mode
    assert app.auth.development_access == "local"
    assert app.auth.status()["development_access"] == "local"

    local = call(app, http_scope("/v1/x"), inner)
    assert local.status == 200
    assert local.seen is not None
    assert local.seen["auth"].mode == "test"

    with capture_logs() as logs:
        refused = call(app, remote(headers=[bearer(CANARY)]), inner)
    assert_local_only_denial(refused)
    assert CANARY.encode() not in refused.everything()
    assert [(e["event"], e["reason"]) for e in logs] == [("authentication_failed", "missing")]
    assert logs[0]["detail"] == "development mode serves only this machine"
    assert "token_fingerprint" not in logs[0]  # the token was never read
    assert CANARY not in json.dumps(logs, default=str)
    counters = app.auth.counters()
    assert (counters.anonymous, counters.refused["missing"]) == (1, 1)


@pytest.mark.parametrize("path", ["/health", "/v1/x", "/"])
def test_every_path_is_refused_to_other_machines(path: str) -> None:
    app, inner = built()
    assert_local_only_denial(call(app, remote(path), inner))


@pytest.mark.parametrize(
    "header",
    [
        (b"x-forwarded-for", b"203.0.113.9"),
        (b"x-real-ip", b"203.0.113.9"),
        (b"forwarded", b"for=203.0.113.9"),
    ],
)
def test_a_request_relayed_by_a_local_proxy_is_refused(header: tuple[bytes, bytes]) -> None:
    app, inner = built()
    assert_local_only_denial(call(app, http_scope("/v1/x", headers=[header]), inner))


def test_a_request_without_a_client_is_refused() -> None:
    # A unix socket (nginx in front): the server knows no client address.
    app, inner = built()
    scope = http_scope("/v1/x")
    scope["client"] = None
    assert_local_only_denial(call(app, scope, inner))


def test_a_remote_websocket_is_refused_before_the_app() -> None:
    app, inner = built()
    with_extension = remote(kind="websocket", extensions={"websocket.http.response": {}})
    result = call(app, with_extension, inner)
    assert result.messages[0]["type"] == "websocket.http.response.start"
    assert_local_only_denial(result)
    closed = call(app, remote(kind="websocket"), inner)
    assert closed.seen is None
    assert [m["type"] for m in closed.messages] == ["websocket.close"]
    assert closed.messages[0]["code"] == 1008
    local = call(app, http_scope("/v1/x", kind="websocket"), inner)
    assert local.seen is not None


def test_starlette_test_client_counts_as_this_machine() -> None:
    async def who(request: Request) -> JSONResponse:
        return JSONResponse({"mode": request.auth.mode, "client": request.client.host})  # type: ignore[union-attr]

    app = Starlette(routes=[Route("/who", who)])
    app.add_middleware(APIKeyMiddleware)
    with TestClient(app) as client:
        response = client.get("/who")
        assert response.status_code == 200
        assert response.json() == {"mode": "test", "client": "testclient"}
        relayed = client.get("/who", headers={"X-Forwarded-For": "203.0.113.9"})
        assert relayed.status_code == 401
        assert "only this machine" in relayed.json()["detail"]


def test_local_only_outlives_reload_while_still_unconfigured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = APIKeyAuth()
    app, inner = built(auth=auth)
    auth.reload()
    assert auth.development_access == "local"
    assert call(app, remote(), inner).status == 401
    monkeypatch.setenv("API_KEY", CANARY)
    auth.reload()
    assert not auth.is_development_mode
    assert auth.status()["development_access"] is None
    assert call(app, remote(headers=[bearer(CANARY)]), inner).status == 200
    assert call(app, remote(), inner).status == 401


def test_keys_configured_never_ask_where_the_client_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # The check stays off the normal path: enforcing keys, it is never called.
    def boom(scope: Scope) -> bool:
        raise AssertionError("is_local_client on the normal path")

    monkeypatch.setattr(asgi_apikey.middleware, "is_local_client", boom)
    app, inner = built(keys=[CANARY])
    assert call(app, remote(headers=[bearer(CANARY)]), inner).status == 200
    assert call(app, remote(), inner).status == 401
    assert APIKeyAuth(keys=[]).development_access is None


# ------------------------------------------------------------ asked for: open to all


@pytest.mark.parametrize("environment", ["development", "testing", " Development "])
@pytest.mark.parametrize("how", ["variable", "argument"])
def test_development_asked_for_is_open_to_every_client(
    environment: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "variable":
        monkeypatch.setenv("ENVIRONMENT", environment)
        auth = APIKeyAuth()
    else:
        with capture_logs() as logs:
            auth = APIKeyAuth(environment=environment)
        assert [(e["event"], e["access"]) for e in logs] == [("development_mode", "open")]
        assert "every client" in logs[0]["detail"]
    assert auth.development_access == "open"
    assert auth.status()["development_access"] == "open"
    app, inner = built(auth=auth)
    for scope in (remote(), remote(headers=[(b"x-forwarded-for", b"1.2.3.4")])):
        result = call(app, scope, inner)
        assert result.status == 200
        assert result.seen is not None
        assert not result.seen["auth"].authenticated


# ---------------------------------------------------- staging behaves like production


@pytest.mark.parametrize("how", ["variable", "argument"])
@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda env: APIKeyAuth(**env), id="environment"),
        pytest.param(lambda env: APIKeyAuth(keys=[], **env), id="keys=[]"),
        pytest.param(
            lambda env: APIKeyMiddleware(Recorder()) if not env else APIKeyAuth(**env),
            id="middleware",
        ),
    ],
)
def test_staging_without_keys_refuses_to_start(
    how: str, build: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    env: dict[str, Any] = {}
    if how == "variable":
        monkeypatch.setenv("ENVIRONMENT", "staging")
    else:
        env = {"environment": "staging"}
    with pytest.raises(ConfigurationError) as caught:
        build(env)
    message = str(caught.value)
    assert "ENVIRONMENT=staging refuses to start that way" in message
    assert "keygen" in message
    variables = ["API_KEY", "ADDITIONAL_API_KEYS", "API_KEYS_FILE"]
    from_env = request.node.callspec.id.split("-")[0] != "keys=[]"
    assert caught.value.context == {"setting": "environment"} | (
        {"variables": variables} if from_env else {}
    )


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: APIKeyAuth(keys=[SHORT], environment="staging"), id="keys"),
        pytest.param(
            lambda: APIKeyAuth(keys=[APIKey(SHORT, name="s")], environment="staging"), id="APIKey"
        ),
        pytest.param(lambda: APIKeyAuth(environment="staging"), id="API_KEY"),
    ],
)
def test_staging_refuses_short_keys(build: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", SHORT)
    with pytest.raises(ConfigurationError) as caught:
        build()
    assert "is shorter than 16 characters, which ENVIRONMENT=staging refuses" in str(caught.value)
    assert SHORT not in str(caught.value) + repr(caught.value.context)


def test_staging_refuses_short_keys_in_rotation() -> None:
    auth = APIKeyAuth(keys=[CANARY], environment="staging")
    with pytest.raises(ConfigurationError, match="ENVIRONMENT=staging refuses"):
        auth.add_key(SHORT)
    assert auth.verify(SHORT) is None
    assert auth.verify(CANARY) is not None


# ---------------------------------------------------------------- check says which


@pytest.mark.parametrize(
    ("environment", "access", "mode_line", "warning"),
    [
        pytest.param(
            None,
            "local",
            "mode:        test (development: this machine only)",
            "development mode serves only this machine",
            id="unset",
        ),
        pytest.param(
            "development",
            "open",
            "mode:        test (development: every client)",
            "development mode lets every request through, from every client",
            id="development",
        ),
    ],
)
def test_check_says_who_development_mode_serves(
    environment: str | None,
    access: str,
    mode_line: str,
    warning: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from asgi_apikey.cli import main

    if environment is not None:
        monkeypatch.setenv("ENVIRONMENT", environment)
    assert main(["check"]) == 0
    text = capsys.readouterr().out
    assert mode_line in text.splitlines()
    assert warning in text
    assert main(["check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"]["development_access"] == access
    assert any(warning in line for line in report["warnings"])
