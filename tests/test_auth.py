"""APIKeyAuth: modes, the development-mode latch, expiry, rotation under load, verifiers.

What DESIGN.md ("Configuration and modes", "Key checks", "Precise behaviours")
and the issue ask of the authenticator: keys are enforced under pytest too,
development mode only ever ends, validity windows are inclusive at
``not_before`` and exclusive at ``expires_at``, and a request sees one whole
key set even while another thread rotates keys.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send
from structlog.testing import capture_logs

import asgi_apikey
import asgi_apikey.auth
from asgi_apikey import (
    APIKey,
    APIKeyAuth,
    APIKeyMiddleware,
    AuthContext,
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    KeyChanges,
    Rejected,
    get_auth_status,
    optional_verify_api_key,
    require_scopes,
    verify_api_key,
    verify_api_key_string,
    verify_api_key_with_metadata,
)
from asgi_apikey.auth import FEATURES
from asgi_apikey.context import FrozenMapping
from asgi_apikey.keys import Accepted, KeySnapshot
from tests.asgi import AUTH_VARIABLES, CANARY, OTHER_KEY, Recorder, Result, bearer, call, http_scope

THIRD_KEY = "sk-third-9z8y7x6w5v4u3t2s1r0q"
FOURTH_KEY = "sk-fourth-1q2w3e4r5t6y7u8i9o0p"

MISSING = 'Bearer realm="api"'
INVALID = 'Bearer realm="api", error="invalid_token", error_description="The API key is not valid"'


def rejected_challenge(description: str) -> str:
    return f'Bearer realm="api", error="invalid_token", error_description="{description}"'


def fingerprint(secret: str) -> str:
    """The key_id of an unnamed key."""
    return APIKey(secret).key_id


def changes(added: Sequence[str] = (), removed: Sequence[str] = ()) -> KeyChanges:
    return KeyChanges(added=tuple(sorted(added)), removed=tuple(sorted(removed)))


def middleware(auth: APIKeyAuth, **options: Any) -> tuple[APIKeyMiddleware, Recorder]:
    inner = Recorder()
    options.setdefault("public", ["/health"])
    options.setdefault("optional", ["/maybe"])
    options.setdefault("protected", {"/admin": {"admin"}})
    return APIKeyMiddleware(inner, auth=auth, **options), inner


def websocket_scope(path: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> Scope:
    """A websocket scope whose server supports the denial-response extension."""
    return http_scope(
        path, headers=headers, kind="websocket", extensions={"websocket.http.response": {}}
    )


def seen_auth(result: Result) -> AuthContext:
    assert result.seen is not None, "the app did not run"
    context = result.seen["auth"]
    assert isinstance(context, AuthContext)
    return context


def assert_refused(result: Result, status: int, challenge: str) -> None:
    assert result.status == status
    assert result.header("www-authenticate") == challenge
    assert result.seen is None, "the app must not run on a denial"


@dataclass
class Clock:
    """An injected clock: a mutable number of seconds since the epoch."""

    now: float
    calls: int = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now


@dataclass
class CountingVerifier:
    """A verifier that records the tokens it is given and answers ``answer``."""

    answer: object = None
    tokens: list[str] = field(default_factory=list)

    def __call__(self, token: str) -> AuthContext | Rejected | None:
        self.tokens.append(token)
        return self.answer  # type: ignore[return-value]


def write_key_file(path: Path, keys: Sequence[Mapping[str, Any]]) -> Path:
    """A TOML key file: each key as a [[keys]] table of digest, name, scopes, metadata."""
    lines: list[str] = []
    for key in keys:
        lines.append("[[keys]]")
        lines.append(f'digest = "{APIKey(key["secret"]).digest}"')
        if "name" in key:
            lines.append(f'name = "{key["name"]}"')
        if "scopes" in key:
            lines.append(f"scopes = {json.dumps(sorted(key['scopes']))}")
        if "metadata" in key:
            pairs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in key["metadata"].items())
            lines.append(f"metadata = {{ {pairs} }}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start without a process default authenticator, and leave none behind."""
    monkeypatch.setattr(asgi_apikey.auth, "_default", None)


# ======================================================================== modes


DEV_REQUESTS = [
    pytest.param("/v1/chat", [], "http", id="protected-no-credentials"),
    pytest.param("/admin/jobs", [], "http", id="scoped-path-no-credentials"),
    pytest.param("/v1/chat", [bearer("sk-unknown-key-1234567")], "http", id="unknown-key"),
    pytest.param("/admin", [bearer(CANARY)], "http", id="unconfigured-key-on-scoped-path"),
    pytest.param("/v1/chat", [bearer("ab=cd")], "http", id="malformed-equals"),
    pytest.param("/v1/chat", [bearer(CANARY), bearer(CANARY)], "http", id="two-headers"),
    pytest.param("/v1/chat", [bearer("café".encode())], "http", id="non-ascii"),
    pytest.param("/v1/chat", [(b"authorization", b"Bearer ")], "http", id="empty-token"),
    pytest.param("/v1/chat", [(b"authorization", b"Basic dXNlcjpwdw==")], "http", id="basic"),
    pytest.param("/maybe", [bearer("sk-unknown-key-1234567")], "http", id="optional-unknown"),
    pytest.param("/health", [], "http", id="public"),
    pytest.param("/v1/chat", [], "websocket", id="websocket-no-credentials"),
    pytest.param("/v1/chat", [bearer("ab=cd")], "websocket", id="websocket-malformed"),
]


@pytest.mark.parametrize(("path", "headers", "kind"), DEV_REQUESTS)
def test_without_keys_every_request_passes_anonymous_in_test_mode(
    path: str, headers: list[tuple[bytes, bytes]], kind: str, no_default: None
) -> None:
    auth = APIKeyAuth()  # no key source at all: the (empty) environment
    assert auth.is_development_mode is True
    assert auth.mode == "test"
    app, inner = middleware(auth)
    result = call(app, http_scope(path, headers=headers, kind=kind), inner)
    if kind == "http":
        assert result.status == 200
    else:
        assert result.messages[0]["type"] == "websocket.accept"
    context = seen_auth(result)
    assert context.authenticated is False
    assert context.mode == "test"
    assert context.key_id is None
    assert context.scopes == frozenset()
    assert result.seen is not None
    assert result.seen["user"].is_authenticated is False


def test_development_mode_warns_once_at_construction_and_never_per_request(
    no_default: None,
) -> None:
    with capture_logs() as logs:
        auth = APIKeyAuth()
        app, inner = middleware(auth)
    warnings = [entry for entry in logs if entry["event"] == "development_mode"]
    assert len(warnings) == 1
    assert [entry for entry in logs if entry["event"] == "no_keys"] == []
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["mode"] == "test"
    assert "API_KEY" in warnings[0]["detail"]
    with capture_logs() as per_request:
        for headers in ([], [bearer("sk-unknown-key-1234567")], [bearer("ab=cd")]):
            for _ in range(5):
                assert call(app, http_scope("/v1/chat", headers=headers), inner).status == 200
    assert [entry for entry in per_request if entry["event"] == "development_mode"] == []


def test_a_starlette_app_without_keys_warns_once_however_many_requests(
    no_default: None,
) -> None:
    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"mode": request.auth.mode})

    app = Starlette(routes=[Route("/v1/chat", endpoint)])
    app.add_middleware(APIKeyMiddleware)  # keys from the (empty) environment
    with capture_logs() as logs:
        client = TestClient(app)
        for _ in range(5):
            assert client.get("/v1/chat").json() == {"mode": "test"}
    assert [entry["event"] for entry in logs].count("development_mode") == 1


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: APIKeyAuth(keys=[CANARY]), id="explicit-keys"),
        pytest.param(lambda: APIKeyAuth(verifiers=[lambda token: None]), id="verifier"),
        pytest.param(
            lambda: APIKeyAuth(keys=[], verifiers=[lambda token: None]), id="verifier-no-keys"
        ),
    ],
)
def test_enforcing_authenticators_do_not_warn(
    build: Callable[[], APIKeyAuth], no_default: None
) -> None:
    with capture_logs() as logs:
        auth = build()
    assert auth.is_development_mode is False
    assert [entry for entry in logs if entry["event"] == "development_mode"] == []
    assert [entry for entry in logs if entry["event"] == "no_keys"] == []  # keys or verifiers


def _empty_file(tmp: Path) -> Path:
    path = tmp / "empty.toml"
    path.write_text("", encoding="utf-8")
    return path


ZERO_KEY_SOURCES: list[Any] = [
    pytest.param({}, lambda tmp: {"keys": []}, id="keys=[]"),
    pytest.param({}, lambda tmp: {"keys": iter(())}, id="keys=empty-iterator"),
    pytest.param({}, lambda tmp: {"keys_file": _empty_file(tmp)}, id="empty-keys_file"),
    pytest.param({}, lambda tmp: {"keys": [], "keys_file": _empty_file(tmp)}, id="keys+file"),
    pytest.param({"ADDITIONAL_API_KEYS": ", ,"}, lambda tmp: {}, id="ADDITIONAL_API_KEYS=', ,'"),
    pytest.param({"API_KEYS_FILE": "EMPTY"}, lambda tmp: {}, id="API_KEYS_FILE-empty"),
    pytest.param({}, lambda tmp: {"keys": [], "middleware": True}, id="APIKeyMiddleware(keys=[])"),
]


@pytest.mark.parametrize(("variables", "options"), ZERO_KEY_SOURCES)
def test_a_key_source_without_keys_refuses_every_protected_request(
    variables: dict[str, str],
    options: Callable[[Path], dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_default: None,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, str(_empty_file(tmp_path)) if value == "EMPTY" else value)
    given = options(tmp_path)
    with capture_logs() as logs:
        if given.pop("middleware", False):
            inner = Recorder()
            app = APIKeyMiddleware(
                inner, **given, public=["/health"], optional=["/maybe"], protected=["/admin"]
            )
            auth = app.auth
        else:
            auth = APIKeyAuth(**given)
            app, inner = middleware(auth)
    assert [entry["event"] for entry in logs] == ["no_keys"]
    assert logs[0]["log_level"] == "warning"
    assert auth.is_development_mode is False
    assert auth.mode == "simple"
    status = auth.status()
    assert (status["development_mode"], status["key_count"]) == (False, 0)
    with capture_logs() as per_request:
        for path in ("/v1/chat", "/admin/jobs"):
            assert_refused(call(app, http_scope(path), inner), 401, MISSING)
            for token in (CANARY, "sk-unknown-key-1234567", "test"):
                result = call(app, http_scope(path, headers=[bearer(token)]), inner)
                assert_refused(result, 401, INVALID)
        assert_refused(call(app, websocket_scope("/v1/chat"), inner), 401, MISSING)
        # Where the app runs anonymous, it is the enforcing anonymous, not development's.
        for path in ("/health", "/maybe"):
            anonymous = seen_auth(call(app, http_scope(path), inner))
            assert (anonymous.authenticated, anonymous.mode) == (False, "simple")
    # Each refusal is audited; nothing repeats the construction-time warning.
    assert {entry["event"] for entry in per_request} == {"authentication_failed"}
    assert auth.verify(CANARY) is None


@pytest.mark.parametrize("name", ["API_KEY", "ADDITIONAL_API_KEYS", "API_KEYS_FILE"])
def test_an_empty_key_variable_names_a_source_that_holds_no_key(
    name: str, monkeypatch: pytest.MonkeyPatch, no_default: None
) -> None:
    # API_KEY=${API_KEY} with the secret missing: fail closed, never development mode.
    monkeypatch.setenv(name, "")
    with capture_logs() as logs:
        auth = APIKeyAuth.from_env()
    assert auth.is_development_mode is False
    assert auth.mode == "simple"
    assert [entry["event"] for entry in logs] == ["no_keys"]
    assert logs[0]["detail"].startswith(f"{name} is set but empty (a missing secret?): ")
    assert auth.empty_key_variables() == (name,)
    app, inner = middleware(auth)
    assert_refused(call(app, http_scope("/v1/chat"), inner), 401, MISSING)
    assert_refused(call(app, http_scope("/v1/chat", headers=[bearer(CANARY)]), inner), 401, INVALID)
    monkeypatch.setenv(name, CANARY if name != "API_KEYS_FILE" else "")
    auth.reload()
    assert auth.empty_key_variables() == (() if name != "API_KEYS_FILE" else (name,))


@pytest.mark.parametrize(
    "environment",
    [
        pytest.param(None, id="unset"),
        pytest.param("testing", id="testing"),
        pytest.param("development", id="development"),
    ],
)
def test_under_pytest_development_mode_is_named_test(
    environment: str | None, monkeypatch: pytest.MonkeyPatch, no_default: None
) -> None:
    if environment is not None:
        monkeypatch.setenv("ENVIRONMENT", environment)
    auth = APIKeyAuth()
    assert auth.is_development_mode is True
    assert auth.mode == "test"
    assert auth.status()["mode"] == "test"
    assert auth.environment == (environment or "development")


# Run without pytest imported: what development mode is called outside a test run.
_OUTSIDE_PYTEST = """
import json, os, sys
from structlog.testing import capture_logs
from asgi_apikey import APIKeyAuth

out = {"pytest_imported": "pytest" in sys.modules}
with capture_logs() as logs:
    out["unset"] = APIKeyAuth().mode
    out["development_argument"] = APIKeyAuth(environment="development").mode
    out["testing_argument"] = APIKeyAuth(environment="testing").mode
    os.environ["ENVIRONMENT"] = "testing"
    out["testing_variable"] = APIKeyAuth().mode
    del os.environ["ENVIRONMENT"]
    os.environ["PYTEST_CURRENT_TEST"] = "tests/x.py::test (call)"
    out["pytest_variable"] = APIKeyAuth().mode
    del os.environ["PYTEST_CURRENT_TEST"]
    out["development"] = APIKeyAuth().is_development_mode
    out["with_keys"] = APIKeyAuth(keys=["sk-live-0123456789abcdef"]).mode
    out["no_keys"] = APIKeyAuth(keys=[]).mode
    import pytest  # imported but no test running, as while pytest collects test modules
    out["pytest_collecting"] = APIKeyAuth().mode
out["warned"] = [
    (entry["mode"], entry["access"]) for entry in logs if entry["event"] == "development_mode"
]
print(json.dumps(out))
"""


def test_outside_pytest_development_mode_is_named_development() -> None:
    # The child starts with no key source: development mode is APIKeyAuth() there.
    removed = {"PYTEST_CURRENT_TEST", *AUTH_VARIABLES}
    environment = {k: v for k, v in os.environ.items() if k.upper() not in removed}
    package_root = str(Path(asgi_apikey.__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = package_root
    completed = subprocess.run(
        [sys.executable, "-c", _OUTSIDE_PYTEST],
        capture_output=True,
        text=True,
        env=environment,
        cwd=package_root,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    out = json.loads(completed.stdout.strip().splitlines()[-1])
    assert out == {
        "pytest_imported": False,
        "unset": "development",
        "development_argument": "development",
        "testing_argument": "test",
        "testing_variable": "test",
        "pytest_variable": "test",
        "development": True,
        "with_keys": "simple",
        "no_keys": "simple",  # keys=[] enforces zero keys, outside pytest too
        "pytest_collecting": "test",
        "warned": [
            ["development", "local"],
            ["development", "open"],
            ["test", "open"],
            ["test", "open"],
            ["test", "local"],
            ["development", "local"],
            ["test", "local"],
        ],
    }


@pytest.mark.parametrize(
    ("variables", "keys"),
    [
        pytest.param({}, [CANARY], id="explicit-keys"),
        pytest.param({"API_KEY": CANARY}, None, id="API_KEY"),
        pytest.param({"ADDITIONAL_API_KEYS": f"{OTHER_KEY},{CANARY}"}, None, id="ADDITIONAL"),
        pytest.param({"API_KEY": CANARY, "ENVIRONMENT": "testing"}, None, id="ENVIRONMENT=testing"),
        pytest.param({"ENVIRONMENT": "development"}, [CANARY], id="explicit-in-development"),
    ],
)
def test_keys_are_enforced_under_pytest(
    variables: dict[str, str],
    keys: list[str] | None,
    monkeypatch: pytest.MonkeyPatch,
    no_default: None,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    auth = APIKeyAuth(keys=keys)
    assert auth.is_development_mode is False
    assert auth.mode == "simple"
    app, inner = middleware(auth)
    assert_refused(call(app, http_scope("/v1/chat"), inner), 401, MISSING)
    assert_refused(call(app, websocket_scope("/v1/chat"), inner), 401, MISSING)
    ok = call(app, http_scope("/v1/chat", headers=[bearer(CANARY)]), inner)
    assert ok.status == 200
    assert seen_auth(ok).key_id == fingerprint(CANARY)
    anonymous = seen_auth(call(app, http_scope("/maybe"), inner))
    assert (anonymous.authenticated, anonymous.mode) == (False, "simple")


@pytest.mark.parametrize(
    "token",
    [
        "test-api-key-12345",
        "test",
        "test-key",
        "dev",
        "development",
        "bypass",
        "sk-test",
        "changeme",
        "secret",
    ],
)
@pytest.mark.parametrize("environment", [None, "testing", "development"])
def test_there_is_no_built_in_test_key_and_no_bypass(
    token: str, environment: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if environment is not None:
        monkeypatch.setenv("ENVIRONMENT", environment)
    auth = APIKeyAuth(keys=[CANARY])
    assert auth.verify(token) is None
    assert verify_api_key_string(token, auth) is False
    app, inner = middleware(auth)
    assert_refused(call(app, http_scope("/v1/chat", headers=[bearer(token)]), inner), 401, INVALID)
    assert_refused(call(app, http_scope("/maybe", headers=[bearer(token)]), inner), 401, INVALID)


# ============================================================ the development latch


def test_adding_a_key_ends_development_mode_for_good(no_default: None) -> None:
    auth = APIKeyAuth()
    app, inner = middleware(auth)
    assert seen_auth(call(app, http_scope("/v1/chat"), inner)).mode == "test"

    assert auth.add_key(CANARY) == fingerprint(CANARY)
    assert auth.is_development_mode is False
    assert auth.mode == "simple"
    assert_refused(call(app, http_scope("/v1/chat"), inner), 401, MISSING)
    assert call(app, http_scope("/v1/chat", headers=[bearer(CANARY)]), inner).status == 200

    assert auth.remove_key(CANARY) is True
    assert auth.key_ids == ()
    assert auth.is_development_mode is False
    assert auth.mode == "simple"
    assert auth.status()["development_mode"] is False
    assert_refused(call(app, http_scope("/v1/chat"), inner), 401, MISSING)
    assert_refused(call(app, http_scope("/v1/chat", headers=[bearer(CANARY)]), inner), 401, INVALID)
    assert_refused(call(app, websocket_scope("/v1/chat"), inner), 401, MISSING)
    # Where the app still runs anonymous, it is the enforcing anonymous, not "test".
    anonymous = seen_auth(call(app, http_scope("/maybe"), inner))
    assert (anonymous.authenticated, anonymous.mode) == (False, "simple")

    for _ in range(3):  # however often it is emptied again
        auth.add_key(OTHER_KEY)
        assert auth.replace_keys([]) == changes(removed=[fingerprint(OTHER_KEY)])
        assert auth.is_development_mode is False
        assert_refused(call(app, http_scope("/v1/chat"), inner), 401, MISSING)


def test_emptying_by_reload_refuses_everything(
    monkeypatch: pytest.MonkeyPatch, no_default: None
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    auth = APIKeyAuth.from_env()
    app, inner = middleware(auth)
    monkeypatch.delenv("API_KEY")
    assert auth.reload() == changes(removed=[fingerprint(CANARY)])
    assert auth.is_development_mode is False
    assert auth.mode == "simple"
    assert_refused(call(app, http_scope("/v1/chat"), inner), 401, MISSING)
    assert_refused(call(app, http_scope("/v1/chat", headers=[bearer(CANARY)]), inner), 401, INVALID)


def test_reload_of_a_development_authenticator_may_end_development_mode(
    monkeypatch: pytest.MonkeyPatch, no_default: None
) -> None:
    auth = APIKeyAuth.from_env()
    assert auth.reload() == changes()
    assert auth.is_development_mode is True
    monkeypatch.setenv("API_KEY", CANARY)
    assert auth.reload() == changes(added=[fingerprint(CANARY)])
    assert auth.is_development_mode is False
    monkeypatch.delenv("API_KEY")
    auth.reload()
    assert auth.is_development_mode is False
    app, inner = middleware(auth)
    assert_refused(call(app, http_scope("/v1/chat"), inner), 401, MISSING)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("ADDITIONAL_API_KEYS", ", ,", id="ADDITIONAL_API_KEYS=', ,'"),
        pytest.param("API_KEYS_FILE", "EMPTY", id="API_KEYS_FILE-empty"),
    ],
)
def test_reload_keeps_development_mode_only_while_no_key_variable_is_set(
    name: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default: None
) -> None:
    auth = APIKeyAuth.from_env()
    app, inner = middleware(auth)
    monkeypatch.setenv("AUTH_MODE", "")  # an empty variable other than a key's counts as unset
    assert auth.reload() == changes()
    assert auth.is_development_mode is True
    assert seen_auth(call(app, http_scope("/v1/chat"), inner)).mode == "test"
    # A variable set to something that holds no key is a configuration: no keys, enforced.
    monkeypatch.setenv(name, str(_empty_file(tmp_path)) if value == "EMPTY" else value)
    assert auth.reload() == changes()
    assert auth.is_development_mode is False
    assert auth.mode == "simple"
    assert_refused(call(app, http_scope("/v1/chat"), inner), 401, MISSING)
    # Unset again: still enforcing, never back to development mode.
    monkeypatch.delenv(name)
    monkeypatch.delenv("AUTH_MODE")
    assert auth.reload() == changes()
    assert auth.is_development_mode is False
    assert_refused(call(app, http_scope("/v1/chat"), inner), 401, MISSING)


def test_replace_keys_with_nothing_ends_development_mode(no_default: None) -> None:
    # An explicit (empty) key set is a configuration: every protected request is refused.
    auth = APIKeyAuth()
    app, inner = middleware(auth)
    assert seen_auth(call(app, http_scope("/v1/chat"), inner)).mode == "test"
    assert auth.replace_keys([]) == changes()
    assert auth.is_development_mode is False
    assert auth.mode == "simple"
    assert auth.status()["development_mode"] is False
    assert auth.key_ids == ()
    assert_refused(call(app, http_scope("/v1/chat"), inner), 401, MISSING)
    assert_refused(call(app, http_scope("/v1/chat", headers=[bearer(CANARY)]), inner), 401, INVALID)
    assert_refused(call(app, websocket_scope("/v1/chat"), inner), 401, MISSING)
    anonymous = seen_auth(call(app, http_scope("/maybe"), inner))
    assert (anonymous.authenticated, anonymous.mode) == (False, "simple")
    auth.reload()  # nor does a reload bring it back
    assert auth.is_development_mode is False


def test_replace_keys_with_nothing_on_an_enforcing_authenticator_refuses_everything() -> None:
    auth = APIKeyAuth(keys=[CANARY, OTHER_KEY])
    app, inner = middleware(auth)
    assert auth.replace_keys([]) == changes(removed=[fingerprint(CANARY), fingerprint(OTHER_KEY)])
    assert auth.is_development_mode is False
    for headers in ([], [bearer(CANARY)], [bearer(OTHER_KEY)]):
        result = call(app, http_scope("/v1/chat", headers=headers), inner)
        assert result.status == 401
        assert result.seen is None


def test_verifiers_alone_are_not_development_mode(no_default: None) -> None:
    verifier = CountingVerifier()
    auth = APIKeyAuth(verifiers=[verifier])  # no key source, but a verifier
    assert auth.is_development_mode is False
    assert auth.mode == "simple"
    assert auth.status()["development_mode"] is False
    app, inner = middleware(auth)
    assert_refused(call(app, http_scope("/v1/chat"), inner), 401, MISSING)
    assert_refused(
        call(app, http_scope("/v1/chat", headers=[bearer(THIRD_KEY)]), inner), 401, INVALID
    )
    assert verifier.tokens == [THIRD_KEY]
    # So ENVIRONMENT=production accepts them; without them it refuses to start.
    assert APIKeyAuth(verifiers=[verifier], environment="production").mode == "simple"
    assert APIKeyAuth(keys=[], verifiers=[verifier], environment="production").mode == "simple"
    with pytest.raises(ConfigurationError, match="production"):
        APIKeyAuth(environment="production")
    with pytest.raises(ConfigurationError, match="production"):
        APIKeyAuth(keys=[], environment="production")


# ========================================================== simple and advanced modes


@pytest.mark.parametrize(
    ("variables", "argument", "mode"),
    [
        pytest.param({}, None, "simple", id="default"),
        pytest.param({"AUTH_MODE": "simple"}, None, "simple", id="AUTH_MODE=simple"),
        pytest.param({}, "advanced", "advanced", id="argument"),
        pytest.param({"AUTH_MODE": "advanced"}, None, "advanced", id="AUTH_MODE=advanced"),
        pytest.param({"AUTH_MODE": "ADVANCED"}, None, "advanced", id="AUTH_MODE=ADVANCED"),
        pytest.param({"AUTH_MODE": "advanced"}, "simple", "simple", id="argument-wins"),
    ],
)
def test_contexts_carry_the_mode(
    variables: dict[str, str],
    argument: str | None,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    no_default: None,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    metadata = {"tier": "pro", "limits": {"rpm": 60}}
    keys: list[str | APIKey] = [APIKey(OTHER_KEY, name="plain", scopes={"read"})]
    if mode == "advanced":
        keys.append(APIKey(CANARY, name="rich", metadata=metadata))
    auth = APIKeyAuth(keys=keys, mode=argument)
    assert auth.mode == mode
    assert auth.status()["mode"] == mode
    plain = auth.verify(OTHER_KEY)
    assert plain is not None
    assert (plain.mode, dict(plain.metadata)) == (mode, {})
    if mode == "advanced":
        rich = auth.verify(CANARY)
        assert rich is not None
        assert (rich.mode, rich.metadata) == ("advanced", metadata)
    app, inner = middleware(auth)
    through = seen_auth(call(app, http_scope("/v1/chat", headers=[bearer(OTHER_KEY)]), inner))
    assert through.mode == mode
    anonymous = seen_auth(call(app, http_scope("/maybe"), inner))
    assert (anonymous.authenticated, anonymous.mode) == (False, mode)
    # Development mode names itself, whatever the AUTH_MODE.
    assert APIKeyAuth(mode=argument).mode == "test"


def _metadata_key() -> APIKey:
    return APIKey(CANARY, name="rich", metadata={"tier": "pro"})


def _added(auth: APIKeyAuth, change: Callable[[APIKeyAuth], object]) -> APIKeyAuth:
    change(auth)
    return auth


@pytest.mark.parametrize(
    "configure",
    [
        pytest.param(lambda tmp: APIKeyAuth(keys=[_metadata_key()]), id="keys"),
        pytest.param(
            lambda tmp: _added(APIKeyAuth(keys=[OTHER_KEY]), lambda a: a.add_key(_metadata_key())),
            id="add",
        ),
        pytest.param(
            lambda tmp: _added(
                APIKeyAuth(keys=[OTHER_KEY]), lambda a: a.replace_keys([_metadata_key()])
            ),
            id="replace_keys",
        ),
        pytest.param(
            lambda tmp: APIKeyAuth(
                keys_file=write_key_file(
                    tmp / "keys.toml", [{"secret": CANARY, "metadata": {"tier": "pro"}}]
                )
            ),
            id="keys_file",
        ),
    ],
)
def test_metadata_is_carried_in_simple_mode(
    configure: Callable[[Path], APIKeyAuth], tmp_path: Path
) -> None:
    context = configure(tmp_path).verify(CANARY)
    assert context is not None
    assert (context.mode, dict(context.metadata)) == ("simple", {"tier": "pro"})


def test_metadata_from_the_environment_key_file_in_either_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default: None
) -> None:
    path = write_key_file(tmp_path / "keys.toml", [{"secret": CANARY, "metadata": {"t": "x"}}])
    monkeypatch.setenv("API_KEYS_FILE", str(path))
    for mode in ("simple", "advanced"):
        monkeypatch.setenv("AUTH_MODE", mode)
        context = APIKeyAuth.from_env().verify(CANARY)
        assert context is not None
        assert (context.mode, context.metadata) == (mode, {"t": "x"})


NESTED: dict[str, Any] = {
    "tier": "pro",
    "limits": {"rpm": 60, "windows": [{"per": "minute", "max": 60}]},
    "teams": ["a", "b"],
    "tags": {"x"},
}
FROZEN_NESTED: dict[str, Any] = {
    "tier": "pro",
    "limits": {"rpm": 60, "windows": ({"per": "minute", "max": 60},)},
    "teams": ("a", "b"),
    "tags": frozenset({"x"}),
}


def assert_deeply_frozen(metadata: Any) -> None:
    assert metadata == FROZEN_NESTED
    assert isinstance(metadata, FrozenMapping)
    assert isinstance(metadata["limits"], FrozenMapping)
    assert isinstance(metadata["limits"]["windows"], tuple)
    assert isinstance(metadata["limits"]["windows"][0], FrozenMapping)
    assert isinstance(metadata["teams"], tuple)
    assert isinstance(metadata["tags"], frozenset)
    writes: list[Callable[[], object]] = [
        lambda: metadata.__setitem__("tier", "free"),
        lambda: metadata["limits"].__setitem__("rpm", 10_000),
        lambda: metadata["limits"].__delitem__("rpm"),
        lambda: metadata["limits"].update(rpm=10_000),
        lambda: metadata["limits"].setdefault("burst", 1),
        lambda: metadata["limits"].pop("rpm"),
        lambda: metadata["limits"].clear(),
        lambda: metadata["limits"]["windows"][0].__setitem__("max", 10_000),
    ]
    for write in writes:
        with pytest.raises(TypeError, match="read-only"):
            write()
    teams: Any = metadata["teams"]
    with pytest.raises(AttributeError):
        teams.append("c")
    assert metadata == FROZEN_NESTED


def test_key_metadata_is_read_only_at_every_level_and_copied(no_default: None) -> None:
    given = copy.deepcopy(NESTED)
    key = APIKey(CANARY, name="rich", metadata=given)
    auth = APIKeyAuth(keys=[key], mode="advanced")
    context = auth.verify(CANARY)
    assert context is not None
    app, inner = middleware(auth)
    seen = seen_auth(call(app, http_scope("/v1/chat", headers=[bearer(CANARY)]), inner))
    for metadata in (key.metadata, context.metadata, seen.metadata):
        assert_deeply_frozen(metadata)
    # Later changes to the caller's dict, at any level, do not show.
    given["tier"] = "free"
    given["limits"]["rpm"] = 10_000
    given["limits"]["windows"][0]["max"] = 10_000
    given["limits"]["windows"].append({"per": "hour"})
    given["teams"].append("c")
    given["tags"].add("y")
    given["new"] = True
    again = auth.verify(CANARY)
    assert again is not None
    for metadata in (key.metadata, again.metadata):
        assert_deeply_frozen(metadata)


def test_key_file_metadata_is_read_only_at_every_level(tmp_path: Path, no_default: None) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(
        "[[keys]]\n"
        f'digest = "{APIKey(CANARY).digest}"\n'
        'name = "filed"\n'
        'metadata = { tier = "pro", teams = ["a", "b"], tags = [], '
        'limits = { rpm = 60, windows = [{ per = "minute", max = 60 }] } }\n',
        encoding="utf-8",
    )
    context = APIKeyAuth(keys_file=path, mode="advanced").verify(CANARY)
    assert context is not None
    metadata: Any = context.metadata
    assert metadata["tags"] == ()
    assert {k: v for k, v in metadata.items() if k != "tags"} == {
        k: v for k, v in FROZEN_NESTED.items() if k != "tags"
    }
    assert isinstance(metadata["limits"]["windows"][0], FrozenMapping)
    with pytest.raises(TypeError, match="read-only"):
        metadata["limits"]["windows"][0]["max"] = 10_000
    with pytest.raises(TypeError, match="read-only"):
        metadata["limits"]["rpm"] = 10_000


@pytest.mark.parametrize(
    "scopes",
    [
        pytest.param({"admin": False}, id="dict-false"),
        pytest.param({"admin": True}, id="dict-true"),
        pytest.param(FrozenMapping({"read": False}), id="frozen-mapping"),
    ],
)
def test_scopes_given_as_a_mapping_are_a_configuration_error(scopes: Any) -> None:
    # A mapping would grant its keys whatever their values say.
    with pytest.raises(ConfigurationError, match="scopes of key 'm' must be a collection"):
        APIKey(CANARY, name="m", scopes=scopes)
    auth = APIKeyAuth(keys=[OTHER_KEY])
    with pytest.raises(ConfigurationError, match="scopes"):
        auth.add_key(APIKey(CANARY, name="m", scopes=scopes))
    assert auth.verify(CANARY) is None


def test_scopes_given_as_a_toml_table_are_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(
        f'[[keys]]\ndigest = "{APIKey(CANARY).digest}"\nname = "t"\nscopes = {{ admin = false }}\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match="scopes of key 't' must be a collection"):
        APIKeyAuth(keys_file=path)


# ========================================================================== expiry

NOT_BEFORE = datetime(2030, 1, 1, tzinfo=UTC)
EXPIRES_AT = datetime(2031, 6, 15, 12, 30, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def at(moment: datetime) -> float:
    return moment.timestamp()


WINDOW_CASES = [
    pytest.param(NOT_BEFORE - MICROSECOND, "The API key is not valid yet", id="before-1us"),
    pytest.param(NOT_BEFORE, None, id="not_before-exactly"),
    pytest.param(NOT_BEFORE + MICROSECOND, None, id="not_before+1us"),
    pytest.param(EXPIRES_AT - MICROSECOND, None, id="expires_at-1us"),
    pytest.param(EXPIRES_AT, "The API key has expired", id="expires_at-exactly"),
    pytest.param(EXPIRES_AT + MICROSECOND, "The API key has expired", id="expires_at+1us"),
    pytest.param(
        NOT_BEFORE - timedelta(days=400), "The API key is not valid yet", id="long-before"
    ),
    pytest.param(EXPIRES_AT + timedelta(days=400), "The API key has expired", id="long-after"),
]


@pytest.mark.parametrize(("moment", "refusal"), WINDOW_CASES)
def test_validity_window_boundaries(moment: datetime, refusal: str | None) -> None:
    clock = Clock(at(moment))
    key = APIKey(CANARY, name="windowed", not_before=NOT_BEFORE, expires_at=EXPIRES_AT)
    auth = APIKeyAuth(keys=[key, OTHER_KEY], clock=clock)
    result = auth.resolve(CANARY.encode())
    context = auth.verify(CANARY)
    status = auth.status()
    if refusal is None:
        assert isinstance(result, Accepted)
        assert context is not None
        assert context.key_id == "windowed"
        assert status["inactive_key_ids"] == []
    else:
        assert isinstance(result, Rejected)
        assert result.description == refusal
        assert context is None
        assert verify_api_key_string(CANARY, auth) is False
        assert status["inactive_key_ids"] == ["windowed"]
    assert auth.verify(OTHER_KEY) is not None  # keys without a window are always valid
    assert clock.calls > 0


@pytest.mark.parametrize(
    "offset",
    [
        pytest.param(timezone(timedelta(hours=2)), id="utc+2"),
        pytest.param(timezone(timedelta(hours=-7, minutes=-30)), id="utc-7:30"),
    ],
)
def test_window_bounds_are_instants_whatever_their_offset(offset: timezone) -> None:
    expires = EXPIRES_AT.astimezone(offset)
    clock = Clock(at(EXPIRES_AT - MICROSECOND))
    auth = APIKeyAuth(keys=[APIKey(CANARY, expires_at=expires)], clock=clock)
    assert auth.verify(CANARY) is not None
    clock.now = at(EXPIRES_AT)
    assert auth.verify(CANARY) is None


PATH_KINDS = [
    pytest.param("/v1/chat", True, id="protected"),
    pytest.param("/maybe", True, id="optional"),
    pytest.param("/health", False, id="public"),
]


@pytest.mark.parametrize(("path", "refused"), PATH_KINDS)
@pytest.mark.parametrize(
    ("moment", "description"),
    [
        pytest.param(EXPIRES_AT, "The API key has expired", id="expired"),
        pytest.param(NOT_BEFORE - MICROSECOND, "The API key is not valid yet", id="not-yet"),
    ],
)
def test_inactive_keys_through_the_middleware(
    path: str, refused: bool, moment: datetime, description: str
) -> None:
    clock = Clock(at(moment))
    key = APIKey(CANARY, name="windowed", not_before=NOT_BEFORE, expires_at=EXPIRES_AT)
    auth = APIKeyAuth(keys=[key], clock=clock)
    app, inner = middleware(auth)
    result = call(app, http_scope(path, headers=[bearer(CANARY)]), inner)
    if refused:
        assert_refused(result, 401, rejected_challenge(description))
        assert result.json() == {"detail": f"Invalid API key: {description}"}
        assert CANARY.encode() not in result.everything()
    else:
        assert result.status == 200
        context = seen_auth(result)
        assert (context.authenticated, context.key_id) == (False, None)
    # The clock is read per request: back inside the window, the same key works.
    clock.now = at(NOT_BEFORE)
    again = call(app, http_scope(path, headers=[bearer(CANARY)]), inner)
    assert again.status == 200
    assert seen_auth(again).key_id == "windowed"


def test_status_lists_inactive_keys_as_the_clock_moves() -> None:
    clock = Clock(at(NOT_BEFORE - timedelta(days=1)))
    auth = APIKeyAuth(
        keys=[
            APIKey(CANARY, name="always"),
            APIKey(OTHER_KEY, name="future", not_before=NOT_BEFORE),
            APIKey(THIRD_KEY, name="ending", expires_at=EXPIRES_AT),
            APIKey(FOURTH_KEY, name="window", not_before=NOT_BEFORE, expires_at=EXPIRES_AT),
        ],
        clock=clock,
    )
    assert auth.status()["inactive_key_ids"] == ["future", "window"]
    clock.now = at(NOT_BEFORE)
    assert auth.status()["inactive_key_ids"] == []
    clock.now = at(EXPIRES_AT)
    assert auth.status()["inactive_key_ids"] == ["ending", "window"]
    status = auth.status()
    assert status["key_count"] == 4  # inactive keys are still configured
    assert status["key_ids"] == ["always", "ending", "future", "window"]


@pytest.mark.parametrize(
    "window",
    [
        pytest.param({"not_before": datetime(2030, 1, 1)}, id="naive-not_before"),
        pytest.param({"expires_at": datetime(2030, 1, 1)}, id="naive-expires_at"),
        pytest.param({"expires_at": "2030-01-01T00:00:00Z"}, id="string"),
        pytest.param({"expires_at": 1893456000.0}, id="timestamp"),
        pytest.param({"not_before": EXPIRES_AT, "expires_at": NOT_BEFORE}, id="reversed"),
        pytest.param({"not_before": EXPIRES_AT, "expires_at": EXPIRES_AT}, id="empty-window"),
    ],
)
def test_bad_windows_are_configuration_errors(window: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        APIKey(CANARY, name="w", **window)
    assert CANARY not in str(info.value)


def test_a_bad_clock_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="clock"):
        APIKeyAuth(keys=[CANARY], clock=1893456000.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "clock",
    [
        pytest.param(time.monotonic, id="time.monotonic"),
        pytest.param(time.perf_counter, id="time.perf_counter"),
        pytest.param(lambda: "1893456000", id="returns-str"),
        pytest.param(lambda: None, id="returns-None"),
        pytest.param(lambda: True, id="returns-bool"),
        pytest.param(lambda: 1e9, id="exactly-1e9"),
        pytest.param(lambda: 0, id="zero"),
        pytest.param(lambda: -1893456000.0, id="negative"),
        pytest.param(lambda: float("nan"), id="nan"),
        pytest.param(lambda: datetime.now(UTC), id="returns-datetime"),
        pytest.param(datetime(2030, 1, 1, tzinfo=UTC), id="a-datetime"),
    ],
)
def test_a_clock_that_does_not_give_epoch_seconds_is_a_configuration_error(
    clock: Any, no_default: None
) -> None:
    builds: list[Callable[[], APIKeyAuth]] = [
        lambda: APIKeyAuth(keys=[CANARY], clock=clock),
        lambda: APIKeyAuth(keys=[APIKey(CANARY, expires_at=EXPIRES_AT)], clock=clock),
        lambda: APIKeyAuth.from_env(clock=clock),
    ]
    for build in builds:
        with pytest.raises(ConfigurationError, match="clock") as info:
            build()
        assert info.value.context == {"setting": "clock"}
    assert asgi_apikey.auth._default is None


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(1e9 + 1, id="just-above-1e9"),
        pytest.param(2_000_000_000, id="int"),
        pytest.param(at(EXPIRES_AT), id="float"),
    ],
)
def test_an_epoch_clock_is_called_once_at_construction(now: float) -> None:
    clock = Clock(now)
    auth = APIKeyAuth(keys=[CANARY], clock=clock)
    assert clock.calls == 1
    assert auth.verify(CANARY) is not None
    assert APIKeyAuth(keys=[CANARY], clock=time.time).verify(CANARY) is not None


# ==================================================================== replace and reload


def test_replace_keys_reports_changes_by_key_id() -> None:
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="a"), APIKey(OTHER_KEY, name="b"), THIRD_KEY])
    result = auth.replace_keys(
        [APIKey(OTHER_KEY, name="b"), APIKey(FOURTH_KEY, name="d"), "sk-new-0123456789abcdefgh"]
    )
    assert isinstance(result, KeyChanges)
    assert result == changes(
        added=["d", fingerprint("sk-new-0123456789abcdefgh")],
        removed=["a", fingerprint(THIRD_KEY)],
    )
    assert result.added == tuple(sorted(result.added))
    assert auth.verify(CANARY) is None
    assert auth.verify(THIRD_KEY) is None
    for kept in (OTHER_KEY, FOURTH_KEY, "sk-new-0123456789abcdefgh"):
        assert auth.verify(kept) is not None
    assert sorted(auth.key_ids) == sorted(["b", "d", fingerprint("sk-new-0123456789abcdefgh")])
    # The same set again changes nothing; given as digests it is still the same set.
    same: list[str | APIKey] = [
        APIKey(digest=APIKey(OTHER_KEY).digest, name="b"),
        APIKey(FOURTH_KEY, name="d"),
        "sk-new-0123456789abcdefgh",
    ]
    assert auth.replace_keys(same) == changes()
    assert auth.verify(OTHER_KEY) is not None
    assert auth.replace_keys(iter([CANARY])) == changes(
        added=[fingerprint(CANARY)],
        removed=["b", "d", fingerprint("sk-new-0123456789abcdefgh")],
    )


def test_a_key_rotated_under_the_same_name_is_both_added_and_removed() -> None:
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="svc"), APIKey(OTHER_KEY, name="other")])
    result = auth.replace_keys([APIKey(THIRD_KEY, name="svc"), APIKey(OTHER_KEY, name="other")])
    assert result == changes(added=["svc"], removed=["svc"])
    assert auth.verify(CANARY) is None
    context = auth.verify(THIRD_KEY)
    assert context is not None
    assert context.key_id == "svc"


BAD_REPLACEMENTS = [
    pytest.param(lambda: [THIRD_KEY, THIRD_KEY], "same key", id="duplicate-plain"),
    pytest.param(
        lambda: [THIRD_KEY, APIKey(digest=APIKey(THIRD_KEY).digest)], "same key", id="plain+digest"
    ),
    pytest.param(
        lambda: [APIKey(THIRD_KEY, name="x"), APIKey(FOURTH_KEY, name="x")],
        "reuses the key_id",
        id="duplicate-name",
    ),
    pytest.param(lambda: [THIRD_KEY, "has space inside-0123"], "characters", id="bad-key"),
    pytest.param(lambda: [THIRD_KEY, ""], "empty", id="empty-key"),
    pytest.param(lambda: [THIRD_KEY, 42], "str or an APIKey", id="not-a-key"),
    pytest.param(lambda: THIRD_KEY, "list of keys", id="a-single-string"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_REPLACEMENTS)
def test_a_failed_replace_keeps_the_old_set(bad: Callable[[], Any], message: str) -> None:
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="a"), OTHER_KEY])
    before = auth.snapshot
    with pytest.raises(ConfigurationError, match=message) as info:
        auth.replace_keys(bad())
    assert "replace_keys" in str(info.value)
    assert auth.snapshot is before
    assert auth.verify(CANARY) is not None
    assert auth.verify(OTHER_KEY) is not None
    assert auth.verify(THIRD_KEY) is None
    assert auth.key_ids == ("a", fingerprint(OTHER_KEY))


def test_a_failed_replace_keeps_development_mode_too(no_default: None) -> None:
    auth = APIKeyAuth()
    with pytest.raises(ConfigurationError):
        auth.replace_keys([THIRD_KEY, THIRD_KEY])
    assert auth.is_development_mode is True


def test_short_keys_are_refused_by_replace_in_production() -> None:
    auth = APIKeyAuth(keys=[CANARY], environment="production")
    before = auth.snapshot
    with pytest.raises(ConfigurationError, match="shorter than 16"):
        auth.replace_keys(["sk-short"])
    assert auth.snapshot is before


def test_reload_from_the_environment(monkeypatch: pytest.MonkeyPatch, no_default: None) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("ADDITIONAL_API_KEYS", f"{OTHER_KEY}, {THIRD_KEY}")
    auth = APIKeyAuth.from_env()
    assert sorted(auth.key_ids) == sorted(fingerprint(k) for k in (CANARY, OTHER_KEY, THIRD_KEY))
    assert auth.reload() == changes()

    monkeypatch.setenv("API_KEY", FOURTH_KEY)
    monkeypatch.setenv("ADDITIONAL_API_KEYS", OTHER_KEY)
    auth.add_key(APIKey("sk-added-at-run-time-0123", name="runtime"))
    assert auth.remove_key(OTHER_KEY)  # still in a source: reload brings it back
    assert auth.reload() == changes(
        added=[fingerprint(FOURTH_KEY), fingerprint(OTHER_KEY)],
        removed=[fingerprint(CANARY), fingerprint(THIRD_KEY)],
    )
    for kept in (FOURTH_KEY, OTHER_KEY, "sk-added-at-run-time-0123"):
        assert auth.verify(kept) is not None  # the run-time key stays
    for gone in (CANARY, THIRD_KEY):
        assert auth.verify(gone) is None


def test_reload_from_explicit_keys_and_a_key_file(tmp_path: Path) -> None:
    path = write_key_file(
        tmp_path / "keys.toml",
        [{"secret": OTHER_KEY, "name": "filed", "scopes": ["read"]}, {"secret": THIRD_KEY}],
    )
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="explicit")], keys_file=path)
    assert auth.supports("key_file") is True
    filed = auth.verify(OTHER_KEY)
    assert filed is not None
    assert (filed.key_id, filed.scopes) == ("filed", frozenset({"read", "authenticated"}))
    auth.add_key(APIKey("sk-added-at-run-time-0123", name="runtime"))

    write_key_file(path, [{"secret": FOURTH_KEY, "name": "rotated"}, {"secret": THIRD_KEY}])
    assert auth.reload() == changes(added=["rotated"], removed=["filed"])
    assert sorted(auth.key_ids) == sorted(
        ["explicit", "runtime", "rotated", fingerprint(THIRD_KEY)]
    )
    assert auth.verify(CANARY) is not None  # explicit keys stay
    assert auth.verify("sk-added-at-run-time-0123") is not None  # and run-time ones
    assert auth.verify(OTHER_KEY) is None

    path.write_text("", encoding="utf-8")  # an empty file: only the keys given in code
    assert auth.reload() == changes(removed=["rotated", fingerprint(THIRD_KEY)])
    assert sorted(auth.key_ids) == ["explicit", "runtime"]


def test_reload_never_brings_back_a_key_revoked_in_code(tmp_path: Path) -> None:
    # A key given in code and revoked with remove_key stays revoked: reload only
    # replaces the keys that came from the file.
    path = write_key_file(tmp_path / "keys.toml", [{"secret": THIRD_KEY, "name": "filed"}])
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="old")], keys_file=path)
    auth.add_key(APIKey(OTHER_KEY, name="2026-11"))
    assert auth.remove_key("old") is True
    assert auth.reload() == changes()
    assert auth.verify(CANARY) is None
    assert sorted(auth.key_ids) == ["2026-11", "filed"]
    # replace_keys makes every key one given in code: reload adds the file's again.
    auth.replace_keys([APIKey(FOURTH_KEY, name="only")])
    assert auth.reload() == changes(added=["filed"])
    assert sorted(auth.key_ids) == ["filed", "only"]


def test_reload_of_explicit_keys_alone_has_nothing_to_read() -> None:
    auth = APIKeyAuth(keys=[CANARY, APIKey(OTHER_KEY, name="o")])
    assert auth.remove_key("o") is True
    with pytest.raises(ConfigurationError, match=r"built from keys= alone: use replace_keys\(\)"):
        auth.reload()
    assert auth.verify(OTHER_KEY) is None  # the revoked key stays revoked


BAD_RELOADS: list[Any] = [
    pytest.param("API_KEY", "has space-0123456789", id="bad-env-key"),
    pytest.param("ADDITIONAL_API_KEYS", f"{CANARY},{CANARY}", id="duplicate-env-key"),
    pytest.param("file", "[[keys]]\ndigest = 'sha256:nothex'\n", id="bad-digest"),
    pytest.param("file", "[[keys\n", id="bad-toml"),
    pytest.param("file", f"[[keys]]\nsecret = '{OTHER_KEY}'\n", id="plain-key-in-file"),
    pytest.param("file", None, id="file-deleted"),
]


@pytest.mark.parametrize(("what", "value"), BAD_RELOADS)
def test_a_failed_reload_keeps_the_old_set(
    what: str,
    value: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_default: None,
) -> None:
    path = write_key_file(tmp_path / "keys.toml", [{"secret": THIRD_KEY, "name": "filed"}])
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("API_KEYS_FILE", str(path))
    auth = APIKeyAuth.from_env()
    before = auth.snapshot
    if what == "file":
        if value is None:
            path.unlink()
        else:
            path.write_text(value, encoding="utf-8")
    else:
        monkeypatch.setenv(what, value or "")
    with pytest.raises(ConfigurationError) as info:
        auth.reload()
    assert auth.snapshot is before
    assert auth.verify(CANARY) is not None
    assert auth.verify(THIRD_KEY) is not None
    assert CANARY not in str(info.value)
    assert OTHER_KEY not in str(info.value)


def test_reload_keeps_mode_environment_and_flags(
    monkeypatch: pytest.MonkeyPatch, no_default: None
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("AUTH_MODE", "advanced")
    monkeypatch.setenv("ENVIRONMENT", "testing")
    monkeypatch.setenv("ENABLE_REQUEST_LOGGING", "true")
    auth = APIKeyAuth.from_env()
    features = auth.features()
    monkeypatch.setenv("AUTH_MODE", "simple")
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("ENABLE_REQUEST_LOGGING", "false")
    monkeypatch.setenv("API_KEY", "sk-short")  # too short for production, fine for testing
    assert auth.reload() == changes(added=[fingerprint("sk-short")], removed=[fingerprint(CANARY)])
    assert (auth.mode, auth.environment) == ("advanced", "testing")
    assert auth.features() == features
    context = auth.verify("sk-short")
    assert context is not None
    assert context.mode == "advanced"


# ======================================================================= concurrency

# Two disjoint sets, large enough that rebuilding one takes a while.
SET_A = {f"a{i}": f"sk-rotate-a{i}-0123456789abcdef" for i in range(80)}
SET_B = {f"b{i}": f"sk-rotate-b{i}-0123456789abcdef" for i in range(80)}
EXTRA = ("extra", "sk-rotate-extra-0123456789abcdef")
# In every set: never refused however the sets rotate, unless a set is torn.
ALWAYS = ("always", "sk-rotate-always-0123456789abcdef")
OWNER = {secret: name for name, secret in [*SET_A.items(), *SET_B.items(), EXTRA, ALWAYS]}
WHOLE_SETS = {
    frozenset(SET_A) | {ALWAYS[0]},
    frozenset(SET_B) | {ALWAYS[0]},
    frozenset(SET_A) | {ALWAYS[0], EXTRA[0]},
    frozenset(SET_B) | {ALWAYS[0], EXTRA[0]},
}


def keys_of(named: Mapping[str, str]) -> list[str | APIKey]:
    return [APIKey(secret, name=name) for name, secret in named.items()]


@pytest.fixture
def fine_switching() -> Iterator[None]:
    """Switch threads often, so that a torn update has every chance to be seen."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


@dataclass
class Outcome:
    secret: str | None
    status: int
    challenge: str | None
    context: AuthContext | None
    body: bytes


async def drive(app: APIKeyMiddleware, scope: Scope) -> list[Message]:
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    await app(scope, receive, send)
    return messages


def outcome_of(secret: str | None, messages: list[Message], seen: Scope | None) -> Outcome:
    start = messages[0]
    assert start["type"] == "http.response.start"
    challenge = None
    for name, value in start.get("headers", []):
        if name == b"www-authenticate":
            challenge = value.decode("latin-1")
    body = b"".join(m.get("body", b"") for m in messages[1:])
    context = seen["auth"] if seen is not None else None
    return Outcome(secret, int(start["status"]), challenge, context, body)


class KeyIdApp:
    """A raw ASGI app that answers with the key_id it was given, and keeps each scope."""

    def __init__(self) -> None:
        self.scopes: dict[int, Scope] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes[id(scope)] = scope
        context = scope["auth"]
        body = json.dumps({"key_id": context.key_id, "user": scope["user"].display_name})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": body.encode()})


def run_load(
    app: APIKeyMiddleware,
    inner: KeyIdApp,
    secrets: Sequence[str | None],
    *,
    tasks: int,
    calls: int,
    path: str = "/v1/chat",
    started: threading.Event | None = None,
) -> list[list[Outcome]]:
    """``tasks`` concurrent clients, each making ``calls`` requests in turn."""

    async def client(number: int) -> list[Outcome]:
        secret = secrets[number % len(secrets)]
        outcomes = []
        for _ in range(calls):
            if started is not None:
                started.set()
            headers = [bearer(secret)] if secret is not None else []
            scope = http_scope(path, headers=headers)
            messages = await drive(app, scope)
            outcomes.append(outcome_of(secret, messages, inner.scopes.pop(id(scope), None)))
            await asyncio.sleep(0)
        return outcomes

    async def main() -> list[list[Outcome]]:
        return list(await asyncio.gather(*(client(n) for n in range(tasks))))

    return asyncio.run(main())


def test_concurrent_requests_during_rotation_each_see_one_key_set(
    fine_switching: None,
) -> None:
    always = APIKey(ALWAYS[1], name=ALWAYS[0])
    set_a, set_b = [*keys_of(SET_A), always], [*keys_of(SET_B), always]
    auth = APIKeyAuth(keys=set_a)
    inner = KeyIdApp()
    app = APIKeyMiddleware(inner, auth=auth)
    stop = threading.Event()
    errors: list[BaseException] = []
    failures: list[str] = []
    # Every snapshot the writer made, kept alive so that context ids stay unique.
    snapshots: list[KeySnapshot] = [auth.snapshot]

    def rotate() -> None:
        try:
            while not stop.is_set():
                got = auth.replace_keys(set_b)
                if got != changes(added=list(SET_B), removed=list(SET_A)):
                    failures.append(f"replace_keys(B) reported {got}")
                snapshots.append(auth.snapshot)
                auth.add_key(APIKey(EXTRA[1], name=EXTRA[0]))
                snapshots.append(auth.snapshot)
                if not auth.remove_key(EXTRA[0]):
                    failures.append("remove_key('extra') found nothing")
                snapshots.append(auth.snapshot)
                got = auth.replace_keys(set_a)
                if got != changes(added=list(SET_A), removed=list(SET_B)):
                    failures.append(f"replace_keys(A) reported {got}")
                snapshots.append(auth.snapshot)
        except BaseException as error:
            errors.append(error)

    writer = threading.Thread(target=rotate)
    # Half the clients present the key every set holds; the others one of A, B or extra.
    secrets = [*list(SET_A.values())[:4], *list(SET_B.values())[:4], EXTRA[1]]
    secrets = [x for secret in secrets for x in (secret, ALWAYS[1])]
    writer.start()
    try:
        results = run_load(app, inner, secrets, tasks=2000, calls=4)
    finally:
        stop.set()
        writer.join(timeout=30)
    assert not writer.is_alive()
    assert errors == []
    assert failures[:5] == []
    assert len(snapshots) > 8, "the writer barely ran: the load did not overlap rotation"

    # The sets each context can have come from: every one a whole set, never a mix.
    origin: dict[int, set[frozenset[str]]] = {}
    for snapshot in snapshots:
        ids = frozenset(snapshot.by_id)
        assert ids in WHOLE_SETS
        for entry in snapshot.by_digest.values():
            origin.setdefault(id(entry.context), set()).add(ids)

    outcomes = [outcome for client in results for outcome in client]
    assert len(outcomes) == 2000 * 4
    by_status: dict[tuple[str, int], int] = {}
    for outcome in outcomes:
        assert outcome.secret is not None
        name = OWNER[outcome.secret]
        kind = "a" if name in SET_A else "b" if name in SET_B else name
        by_status[kind, outcome.status] = by_status.get((kind, outcome.status), 0) + 1
        if outcome.status == 200:
            context = outcome.context
            assert context is not None
            assert (context.authenticated, context.key_id) == (True, name)
            assert json.loads(outcome.body) == {"key_id": name, "user": name}
            sets = origin.get(id(context))
            assert sets, "a context that no snapshot of the writer held"
            assert all(name in ids for ids in sets)
        else:
            assert (outcome.status, outcome.challenge) == (401, INVALID), outcome
            assert outcome.context is None
    # Both key sets were seen accepted and refused: the rotation overlapped the load.
    for kind in ("a", "b"):
        assert by_status.get((kind, 200), 0) > 0, by_status
        assert by_status.get((kind, 401), 0) > 0, by_status
    # The key that every set holds was never refused: no request saw a part of a set.
    assert by_status.get(("always", 401), 0) == 0, by_status
    assert by_status.get(("always", 200), 0) > 0, by_status


def test_snapshots_read_from_threads_are_whole_key_sets(fine_switching: None) -> None:
    # Large sets make each rebuild slow enough for a torn swap to show.
    big_a = {f"a{i}": f"sk-bulk-a{i:04d}-0123456789abcdef" for i in range(300)}
    big_b = {f"b{i}": f"sk-bulk-b{i:04d}-0123456789abcdef" for i in range(300)}
    keys_a, keys_b = keys_of(big_a), keys_of(big_b)
    extra = APIKey(EXTRA[1], name=EXTRA[0])
    # Each whole set, with a key inside it (and its name) and a key outside it.
    in_a = ((big_a["a299"], "a299"), big_b["b299"])
    in_b = ((big_b["b299"], "b299"), big_a["a299"])
    allowed = {
        frozenset(big_a): in_a,
        frozenset(big_b): in_b,
        frozenset(big_a) | {EXTRA[0]}: in_a,
        frozenset(big_b) | {EXTRA[0]}: in_b,
    }
    auth = APIKeyAuth(keys=keys_a)
    done = threading.Event()
    errors: list[BaseException] = []
    failures: list[str] = []
    seen: list[set[frozenset[str]]] = [set() for _ in range(3)]

    # On a loaded machine the writer may finish before a reader runs at all: it waits
    # (boundedly) until each whole set has been seen once, so the test always tests.
    seen_whole = {frozenset(big_a): threading.Event(), frozenset(big_b): threading.Event()}

    def writer() -> None:
        try:
            seen_whole[frozenset(big_a)].wait(timeout=10)
            for _ in range(60):
                auth.replace_keys(keys_b)
                seen_whole[frozenset(big_b)].wait(timeout=10)
                auth.add_key(extra)
                auth.replace_keys(keys_a)
                auth.add_key(extra)
                auth.remove_key(EXTRA[1])
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    def reader(number: int) -> None:
        try:
            while not done.is_set():
                snapshot = auth.snapshot
                ids = frozenset(snapshot.by_id)
                if ids not in allowed:
                    failures.append(f"a snapshot of {len(ids)} ids is no whole set")
                    continue
                seen[number].add(ids)
                if ids in seen_whole:
                    seen_whole[ids].set()
                if set(snapshot.by_id.values()) != set(snapshot.by_digest):
                    failures.append("by_id and by_digest disagree")
                (inside, name), outside = allowed[ids]
                accepted = snapshot.resolve(inside.encode())
                if not isinstance(accepted, Accepted) or accepted.context.key_id != name:
                    failures.append(f"a key of the snapshot was not accepted: {accepted!r}")
                if snapshot.resolve(outside.encode()) is not None:
                    failures.append("a key of the other set was accepted")
                if snapshot.development:
                    failures.append("development mode came back")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(3)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert failures[:5] == []
    assert set().union(*seen) >= {frozenset(big_a), frozenset(big_b)}
    assert frozenset(auth.key_ids) == frozenset(big_a)


def development_round() -> tuple[APIKeyAuth, list[list[Outcome]]]:
    """Requests in flight while a thread adds a key, removes it, adds it, and so on."""
    with capture_logs():
        auth = APIKeyAuth()
    inner = KeyIdApp()
    app = APIKeyMiddleware(inner, auth=auth)
    started, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def flip() -> None:
        try:
            started.wait(10)
            while not stop.is_set():
                auth.add_key(APIKey(CANARY, name="canary"))
                auth.remove_key("canary")
            auth.add_key(APIKey(CANARY, name="canary"))
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=flip)
    thread.start()
    try:
        results = run_load(app, inner, [None, CANARY], tasks=100, calls=4, started=started)
    finally:
        started.set()
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []
    return auth, results


def test_the_end_of_development_mode_is_seen_whole_by_concurrent_requests(
    fine_switching: None, no_default: None
) -> None:
    # A request passes as development (anonymous, mode "test") or is checked
    # against the keys, never half of each; and once a client was checked, it is
    # never waved through again.
    tally = {"development": 0, "checked": 0}
    for _ in range(25):
        auth, results = development_round()
        for client in results:
            checked = False
            for outcome in client:
                context = outcome.context
                development = (
                    outcome.status == 200
                    and context is not None
                    and (context.authenticated, context.mode) == (False, "test")
                )
                if development:
                    assert not checked, "development mode came back after keys were enforced"
                    tally["development"] += 1
                    continue
                checked = True
                tally["checked"] += 1
                if outcome.secret is None:
                    assert (outcome.status, outcome.challenge) == (401, MISSING), outcome
                elif outcome.status == 200:
                    assert context is not None
                    assert (context.authenticated, context.key_id) == (True, "canary"), outcome
                else:
                    assert (outcome.status, outcome.challenge) == (401, INVALID), outcome
        assert auth.is_development_mode is False
    assert tally["development"] > 0, tally
    assert tally["checked"] > 0, tally


class RotatedAfterRead(APIKeyAuth):
    """An authenticator whose key set another thread changes right after a request reads it.

    Each public read (``snapshot``, ``is_development_mode``, ``resolve``) runs
    the next pending rotation just after it has read the current key set: the
    worst moment for a request that would read the set a second time.
    """

    def __init__(self, keys: Sequence[str | APIKey] | None) -> None:
        super().__init__(keys=keys)  # None: from the (empty) environment, development mode
        self.pending: list[Callable[[APIKeyAuth], object]] = []

    def _rotate(self) -> None:
        if self.pending:
            self.pending.pop(0)(self)

    @property
    def snapshot(self) -> KeySnapshot:
        current = super().snapshot
        self._rotate()
        return current

    @property
    def is_development_mode(self) -> bool:
        current = super().is_development_mode
        self._rotate()
        return current

    def resolve(self, token: bytes) -> Accepted | Rejected | None:
        current = super().resolve(token)
        self._rotate()
        return current


def _add_canary(auth: APIKeyAuth) -> object:
    return auth.add_key(APIKey(CANARY, name="canary"))


def _to_set_b(auth: APIKeyAuth) -> object:
    return auth.replace_keys(keys_of(SET_B))


def _drop_a0(auth: APIKeyAuth) -> object:
    return auth.remove_key("a0")


def _empty(auth: APIKeyAuth) -> object:
    return auth.replace_keys([])


MID_REQUEST = [
    # keys before, rotation, presented key, (status, key_id or mode) of that request,
    # then (status, key_id or mode) of the next request with the same key.
    pytest.param(None, _add_canary, None, (200, "test"), (401, None), id="dev-then-key:none"),
    pytest.param(None, _add_canary, CANARY, (200, "test"), (200, "canary"), id="dev-then-key:key"),
    pytest.param(keys_of(SET_A), _to_set_b, SET_A["a0"], (200, "a0"), (401, None), id="A-to-B:a0"),
    pytest.param(keys_of(SET_A), _to_set_b, SET_B["b0"], (401, None), (200, "b0"), id="A-to-B:b0"),
    pytest.param(keys_of(SET_A), _drop_a0, SET_A["a0"], (200, "a0"), (401, None), id="remove"),
    pytest.param(keys_of(SET_A), _empty, SET_A["a1"], (200, "a1"), (401, None), id="emptied"),
]


@pytest.mark.parametrize(("keys", "rotation", "secret", "first", "then"), MID_REQUEST)
def test_a_rotation_landing_mid_request_leaves_that_request_its_key_set(
    keys: list[str | APIKey] | None,
    rotation: Callable[[APIKeyAuth], object],
    secret: str | None,
    first: tuple[int, str | None],
    then: tuple[int, str | None],
    no_default: None,
) -> None:
    with capture_logs():
        auth = RotatedAfterRead(keys)
    app, inner = middleware(auth)
    headers = [bearer(secret)] if secret is not None else []
    for expected, pending in ((first, [rotation]), (then, [])):
        auth.pending = pending
        result = call(app, http_scope("/v1/chat", headers=headers), inner)
        assert result.status == expected[0]
        if expected[0] == 200:
            context = seen_auth(result)
            seen = context.mode if not context.authenticated else context.key_id
            assert seen == expected[1]
        else:
            assert result.seen is None
        assert auth.pending == [], "the request never read the key set"


# ========================================================================= verifiers


@pytest.mark.parametrize(
    ("headers", "calls"),
    [
        pytest.param([bearer(CANARY)], [], id="valid-key"),
        pytest.param([], [], id="no-credentials"),
        pytest.param([bearer("ab=cd")], [], id="malformed"),
        pytest.param([bearer(CANARY), bearer(CANARY)], [], id="two-headers"),
        pytest.param([(b"authorization", b"Basic " + CANARY.encode())], [], id="basic"),
        pytest.param([bearer(THIRD_KEY)], [THIRD_KEY], id="unknown-token"),
        pytest.param(
            [(b"authorization", b"bearer   " + THIRD_KEY.encode())], [THIRD_KEY], id="spaces"
        ),
    ],
)
def test_verifiers_run_only_for_tokens_that_match_no_key(
    headers: list[tuple[bytes, bytes]], calls: list[str]
) -> None:
    verifier = CountingVerifier()
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="key")], verifiers=[verifier])
    app, inner = middleware(auth)
    call(app, http_scope("/v1/chat", headers=headers), inner)
    assert verifier.tokens == calls


def test_verify_asks_verifiers_only_for_unknown_ascii_tokens() -> None:
    verifier = CountingVerifier()
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="key")], verifiers=[verifier])
    context = auth.verify(CANARY)
    assert context is not None
    assert context.key_id == "key"
    assert auth.verify("caf\u00e9") is None
    assert verifier.tokens == []
    assert auth.verify(THIRD_KEY) is None
    assert verifier.tokens == [THIRD_KEY]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("a b", id="inner-space"),
        pytest.param(" abc", id="leading-space"),
        pytest.param("abc ", id="trailing-space"),
        pytest.param("a\tb", id="tab"),
        pytest.param("ab=cd", id="inner-equals"),
        pytest.param("=abc", id="leading-equals"),
        pytest.param("a,b", id="comma"),
        pytest.param('a"b', id="quote"),
        pytest.param("caf\u00e9", id="non-ascii"),
    ],
)
def test_verify_returns_none_for_non_tokens_without_asking_verifiers(token: str) -> None:
    # The verifier accepts anything it is given: only never asking keeps these out.
    verifier = CountingVerifier(AuthContext(True, key_id="jwt:any", mode="jwt"))
    auth = APIKeyAuth(keys=[CANARY], verifiers=[verifier])
    assert auth.verify(token) is None
    assert verify_api_key_string(token, auth) is False
    assert verifier.tokens == []
    # A b64token (trailing '=' allowed) does reach the verifier.
    for valid in ("abc==", "a-b.c_d~e+f/g"):
        accepted = auth.verify(valid)
        assert accepted is not None
        assert accepted.key_id == "jwt:any"
    assert verifier.tokens == ["abc==", "a-b.c_d~e+f/g"]


ACCEPT = AuthContext(True, key_id="jwt:alice", scopes=frozenset({"read"}), mode="jwt")


@pytest.mark.parametrize(
    ("first", "second", "status", "asked", "key_id"),
    [
        pytest.param(None, None, 401, 2, None, id="none-none"),
        pytest.param(None, ACCEPT, 200, 2, "jwt:alice", id="none-accept"),
        pytest.param(ACCEPT, None, 200, 1, "jwt:alice", id="accept-first"),
        pytest.param(Rejected("Go away"), ACCEPT, 401, 1, None, id="rejected-stops"),
        pytest.param(None, Rejected("Go away"), 401, 2, None, id="none-rejected"),
    ],
)
def test_verifiers_are_asked_in_order_until_one_answers(
    first: object, second: object, status: int, asked: int, key_id: str | None
) -> None:
    one, two = CountingVerifier(first), CountingVerifier(second)
    auth = APIKeyAuth(keys=[CANARY], verifiers=[one, two])
    app, inner = middleware(auth)
    result = call(app, http_scope("/v1/chat", headers=[bearer(THIRD_KEY)]), inner)
    assert result.status == status
    assert len(one.tokens) + len(two.tokens) == asked
    assert one.tokens == [THIRD_KEY]
    if status == 200:
        context = seen_auth(result)
        assert context.key_id == key_id
        assert result.seen is not None
        assert result.seen["user"].identity == key_id
    elif isinstance(first, Rejected) or isinstance(second, Rejected):
        assert_refused(result, 401, rejected_challenge("Go away"))
    else:
        assert_refused(result, 401, INVALID)


@pytest.mark.parametrize(("path", "refused"), PATH_KINDS)
def test_a_verifiers_rejection_reaches_the_client(path: str, refused: bool) -> None:
    description = "The token has expired (exp 2030-01-01T00:00:00Z)"
    verifier = CountingVerifier(Rejected(description))
    auth = APIKeyAuth(keys=[CANARY], verifiers=[verifier])
    app, inner = middleware(auth)
    result = call(app, http_scope(path, headers=[bearer(THIRD_KEY)]), inner)
    if refused:
        assert_refused(result, 401, rejected_challenge(description))
        assert result.json() == {"detail": f"Invalid API key: {description}"}
        assert THIRD_KEY.encode() not in result.everything()
    else:
        assert result.status == 200
        assert seen_auth(result).authenticated is False


@pytest.mark.parametrize(
    "scopes",
    [
        pytest.param(frozenset(), id="no-scopes"),
        pytest.param(frozenset({"read"}), id="read"),
        pytest.param(frozenset({"read", "authenticated"}), id="already-there"),
    ],
)
def test_a_verifier_context_gets_the_authenticated_scope(scopes: frozenset[str]) -> None:
    given = AuthContext(True, key_id="jwt:bob", scopes=scopes, metadata={"sub": "bob"}, mode="jwt")
    auth = APIKeyAuth(keys=[CANARY], verifiers=[CountingVerifier(given)])
    context = auth.verify(THIRD_KEY)
    assert context is not None
    assert context.scopes == scopes | {"authenticated"}
    assert (context.key_id, context.mode, dict(context.metadata)) == (
        "jwt:bob",
        "jwt",
        {"sub": "bob"},
    )
    app, inner = middleware(auth)
    result = call(app, http_scope("/v1/chat", headers=[bearer(THIRD_KEY)]), inner)
    assert "authenticated" in seen_auth(result).scopes


def named_junk_verifier(token: str) -> Any:
    return "a string"


def raising_verifier(token: str) -> AuthContext | None:
    raise ValueError(token)  # the message quotes the token: it must never be logged


async def _never_awaited(token: str) -> AuthContext:
    return AuthContext(True, key_id="jwt:async")


def coroutine_verifier(token: str) -> Any:
    return _never_awaited(token)  # a sync function handing back a coroutine


def failures_of(logs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "verifier_failed"]


#: Each way a verifier can fail, and the problem its "verifier_failed" event names.
VERIFIER_FAILURES: list[Any] = [
    pytest.param("a string", "returned str", id="str"),
    pytest.param(42, "returned int", id="int"),
    pytest.param(True, "returned bool", id="bool"),
    pytest.param({"key_id": "x"}, "returned dict", id="dict"),
    pytest.param(
        AuthContext(False, key_id="x"),
        "returned a context with authenticated=False (return None instead)",
        id="unauthenticated",
    ),
    pytest.param(
        AuthContext(True, key_id=None), "returned a context without a key_id", id="no-key_id"
    ),
    pytest.param(
        AuthContext(True, key_id=""), "returned a context without a key_id", id="empty-key_id"
    ),
    pytest.param(
        AuthContext(True, key_id="jwt:x", mode="development"),
        "returned a context with mode 'development', kept for development mode",
        id="mode-development",
    ),
    pytest.param(
        AuthContext(True, key_id="jwt:x", scopes=frozenset({"admin"}), mode="test"),
        "returned a context with mode 'test', kept for development mode",
        id="mode-test",
    ),
    pytest.param(
        AuthContext(True, key_id="key", scopes=frozenset({"admin"}), mode="jwt"),
        "returned the key_id of a configured key",
        id="configured-name",
    ),
    pytest.param(
        AuthContext(True, key_id=APIKey(OTHER_KEY).key_id, mode="jwt"),
        "returned the key_id of a configured key",
        id="configured-fingerprint",
    ),
]


@pytest.mark.parametrize(("junk", "problem"), VERIFIER_FAILURES)
def test_a_verifier_returning_junk_makes_the_token_invalid_and_logs_why(
    junk: object, problem: str
) -> None:
    verifier = CountingVerifier(junk)
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="key"), OTHER_KEY], verifiers=[verifier])
    with capture_logs() as logs:
        assert auth.verify(THIRD_KEY) is None
        assert verify_api_key_string(THIRD_KEY, auth) is False
    assert (
        failures_of(logs)
        == [
            {
                "event": "verifier_failed",
                "log_level": "error",
                "verifier": "CountingVerifier",
                "problem": problem,
            }
        ]
        * 2
    )
    app, inner = middleware(auth)
    for path in ("/v1/chat", "/maybe", "/admin"):
        with capture_logs() as logs:
            result = call(app, http_scope(path, headers=[bearer(THIRD_KEY)]), inner)
        assert_refused(result, 401, INVALID)
        assert result.json() == {"detail": "Invalid API key"}
        assert [(e["verifier"], e["problem"]) for e in failures_of(logs)] == [
            ("CountingVerifier", problem)
        ]
        assert THIRD_KEY not in repr(logs)
    # The configured keys still work; the verifier was never asked about them.
    assert call(app, http_scope("/v1/chat", headers=[bearer(CANARY)]), inner).status == 200
    assert verifier.tokens == [THIRD_KEY] * 5
    named = APIKeyAuth(keys=[CANARY], verifiers=[named_junk_verifier])
    with capture_logs() as logs:
        assert named.verify(THIRD_KEY) is None
    assert [(e["verifier"], e["problem"]) for e in failures_of(logs)] == [
        ("named_junk_verifier", "returned str")
    ]


def test_a_verifier_may_not_claim_a_key_id_rotated_in_later() -> None:
    verifier = CountingVerifier(AuthContext(True, key_id="svc", mode="jwt"))
    auth = APIKeyAuth(keys=[CANARY], verifiers=[verifier])
    accepted = auth.verify(THIRD_KEY)
    assert accepted is not None
    assert accepted.key_id == "svc"
    auth.add_key(APIKey(OTHER_KEY, name="svc"))
    with capture_logs() as logs:
        assert auth.verify(THIRD_KEY) is None
    assert [e["problem"] for e in failures_of(logs)] == ["returned the key_id of a configured key"]
    own = auth.verify(OTHER_KEY)  # the configured key itself still works
    assert own is not None
    assert own.key_id == "svc"
    assert auth.remove_key("svc") is True
    assert auth.verify(THIRD_KEY) is not None


SPECIAL_FAILURES: list[Any] = [
    pytest.param(raising_verifier, "raised ValueError", id="raises"),
    pytest.param(coroutine_verifier, "returned coroutine", id="returns-a-coroutine"),
]


@pytest.mark.parametrize(("verifier", "problem"), SPECIAL_FAILURES)
def test_a_failing_verifier_is_a_401_and_an_event_without_the_token(
    verifier: Callable[[str], AuthContext | None], problem: str
) -> None:
    # A coroutine left unawaited would warn when collected: filterwarnings=error catches it.
    auth = APIKeyAuth(keys=[CANARY], verifiers=[verifier])
    app, inner = middleware(auth)
    with capture_logs() as logs:
        result = call(app, http_scope("/v1/chat", headers=[bearer(THIRD_KEY)]), inner)
        assert auth.verify(THIRD_KEY) is None
    assert_refused(result, 401, INVALID)
    assert THIRD_KEY.encode() not in result.everything()
    events = failures_of(logs)
    assert (
        events
        == [
            {
                "event": "verifier_failed",
                "log_level": "error",
                "verifier": verifier.__qualname__,
                "problem": problem,
            }
        ]
        * 2
    )
    assert THIRD_KEY not in repr(logs)  # nor the exception's message, which is the token


def test_a_failing_verifier_stops_the_chain() -> None:
    # The token counts as invalid: a later verifier does not get to accept it.
    later = CountingVerifier(AuthContext(True, key_id="jwt:later", mode="jwt"))
    auth = APIKeyAuth(keys=[CANARY], verifiers=[raising_verifier, later])
    app, inner = middleware(auth)
    with capture_logs() as logs:
        assert_refused(
            call(app, http_scope("/v1/chat", headers=[bearer(THIRD_KEY)]), inner), 401, INVALID
        )
    assert later.tokens == []
    assert len(failures_of(logs)) == 1


async def async_verifier(token: str) -> AuthContext | None:
    return None


class AsyncCallVerifier:
    async def __call__(self, token: str) -> AuthContext | None:
        return None


@pytest.mark.parametrize(
    "verifier",
    [
        pytest.param(async_verifier, id="async-def"),
        pytest.param(AsyncCallVerifier(), id="async-__call__"),
    ],
)
def test_async_verifiers_are_refused_at_construction(verifier: Any, no_default: None) -> None:
    builds: list[Callable[[], object]] = [
        lambda: APIKeyAuth(keys=[CANARY], verifiers=[verifier]),
        lambda: APIKeyAuth(keys=[CANARY], verifiers=[lambda token: None, verifier]),
        lambda: APIKeyAuth.from_env(verifiers=[verifier]),
    ]
    for build in builds:
        with pytest.raises(ConfigurationError, match=r"verifiers\[\d\] is async") as info:
            build()
        assert info.value.context["setting"] == "verifiers"
    assert asgi_apikey.auth._default is None


@pytest.mark.parametrize(
    ("path", "challenge"),
    [
        pytest.param("/admin", INVALID, id="protected-by-the-middleware"),
        # On a public path the middleware lets the request through anonymous; the
        # dependency then refuses it as unauthenticated.
        pytest.param("/open/admin", "Bearer", id="public-dependency-only"),
    ],
)
@pytest.mark.parametrize("mode", ["test", "development"])
def test_a_verifier_context_with_a_development_mode_cannot_pass_require_scopes(
    path: str, challenge: str, mode: str
) -> None:
    # Were it accepted, require_scopes could take it for development mode's context.
    sneaky = CountingVerifier(AuthContext(True, key_id="jwt:mallory", mode=mode))
    auth = APIKeyAuth(keys=[CANARY], verifiers=[sneaky])
    app = FastAPI()
    app.add_middleware(APIKeyMiddleware, auth=auth, public=["/open"])

    async def admin(context: Annotated[AuthContext, Depends(require_scopes("admin"))]) -> str:
        return "admin area"

    app.get("/admin")(admin)
    app.get("/open/admin")(admin)
    with capture_logs() as logs:
        response = TestClient(app).get(path, headers={"Authorization": f"Bearer {THIRD_KEY}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == challenge
    assert "admin area" not in response.text
    assert sneaky.tokens == [THIRD_KEY]
    assert [e["problem"] for e in failures_of(logs)] == [
        f"returned a context with mode {mode!r}, kept for development mode"
    ]


def connection_with(context: AuthContext) -> HTTPConnection:
    scope = http_scope("/admin")
    scope["auth"] = context
    return HTTPConnection(scope)


@pytest.mark.parametrize("mode", ["test", "development"])
def test_require_scopes_checks_authenticated_contexts_whatever_their_mode(mode: str) -> None:
    admin_only = require_scopes("admin")
    lacking = AuthContext(True, key_id="hand-made", scopes=frozenset({"read"}), mode=mode)
    with pytest.raises(AuthorizationError) as info:
        admin_only(connection_with(lacking))
    assert info.value.status_code == 403
    assert info.value.context == {"key_id": "hand-made", "required": ["admin"]}
    holding = AuthContext(True, key_id="hand-made", scopes=frozenset({"admin"}), mode=mode)
    assert admin_only(connection_with(holding)) is holding
    # Development mode's own context (unauthenticated, that mode) still passes.
    anonymous = AuthContext(False, mode=mode)
    assert admin_only(connection_with(anonymous)) is anonymous
    # Unauthenticated in any other mode does not.
    with pytest.raises(AuthenticationError):
        admin_only(connection_with(AuthContext(False, mode="simple")))


@pytest.mark.parametrize(
    "description",
    [
        pytest.param('say "please"', id="quote"),
        pytest.param("caf\u00e9", id="non-ascii"),
        pytest.param("back\\slash", id="backslash"),
        pytest.param("", id="empty"),
        pytest.param("line\nbreak", id="newline"),
        pytest.param("tab\there", id="tab"),
        pytest.param("x" * 201, id="too-long"),
    ],
)
def test_a_rejection_description_must_fit_in_the_header(description: str) -> None:
    with pytest.raises(ValueError, match="RFC 6750"):
        Rejected(description)


def test_a_rejection_description_may_be_any_printable_ascii_without_quotes() -> None:
    text = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')
    assert Rejected(text[:200]).description == text[:200]
    assert Rejected("x" * 200).description == "x" * 200


@pytest.mark.parametrize(
    "verifiers",
    [
        pytest.param(["not callable"], id="a-string-in-a-list"),
        pytest.param("check_jwt", id="a-string"),
        pytest.param([len, 3], id="an-int-in-a-list"),
        pytest.param(42, id="an-int"),
        pytest.param([None], id="none"),
    ],
)
def test_verifiers_must_be_callables(verifiers: Any) -> None:
    with pytest.raises(ConfigurationError, match="verifiers"):
        APIKeyAuth(keys=[CANARY], verifiers=verifiers)


@pytest.mark.parametrize(
    ("scopes", "status"),
    [
        pytest.param(frozenset({"read"}), 403, id="lacks-admin"),
        pytest.param(frozenset({"admin"}), 200, id="has-admin"),
    ],
)
def test_scope_rules_apply_to_verifier_contexts(scopes: frozenset[str], status: int) -> None:
    verifier = CountingVerifier(AuthContext(True, key_id="jwt:carol", scopes=scopes, mode="jwt"))
    auth = APIKeyAuth(keys=[CANARY], verifiers=[verifier])
    app, inner = middleware(auth)
    result = call(app, http_scope("/admin/jobs", headers=[bearer(THIRD_KEY)]), inner)
    if status == 403:
        assert_refused(
            result,
            403,
            'Bearer realm="api", error="insufficient_scope", '
            'error_description="The API key lacks a scope this path requires", scope="admin"',
        )
    else:
        assert result.status == 200
        assert seen_auth(result).key_id == "jwt:carol"
    # Elsewhere the same context passes.
    assert call(app, http_scope("/v1/chat", headers=[bearer(THIRD_KEY)]), inner).status == 200


# ======================================================== status, features, supports


def test_status_reports_keys_and_holds_no_secret(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "keys.toml", [{"secret": THIRD_KEY, "name": "filed"}])
    auth = APIKeyAuth(
        keys=[CANARY, APIKey(OTHER_KEY, name="ci", metadata={"team": "x"})],
        keys_file=path,
        mode="advanced",
        environment="staging",
        clock=Clock(at(NOT_BEFORE)),
    )
    status = auth.status()
    assert status == {
        "mode": "advanced",
        "environment": "staging",
        "development_mode": False,
        "development_access": None,
        "key_count": 3,
        "key_ids": sorted(["ci", "filed", fingerprint(CANARY)]),
        "inactive_key_ids": [],
        "features": auth.features(),
        "counters": auth.counters().as_dict(),
        "source": {"kind": "key_file"},
        "unavailable": None,
    }
    digest_hex = hashlib.sha256(CANARY.encode()).hexdigest()
    for text in (json.dumps(status), repr(auth), str(auth), json.dumps(get_auth_status(auth))):
        assert CANARY not in text
        assert OTHER_KEY not in text
        assert digest_hex not in text
        assert digest_hex[:16] not in text
    assert repr(auth) == "APIKeyAuth(mode='advanced', key_count=3)"


FEATURE_CASES = [
    pytest.param(
        {},
        {"user_context": False, "metadata": True, "user_tracking": False},
        id="simple",
    ),
    pytest.param(
        {"mode": "advanced"},
        {"user_context": True, "metadata": True, "user_tracking": True},
        id="advanced",
    ),
    pytest.param(
        {"mode": "advanced", "user_tracking": False},
        {"user_context": True, "metadata": True, "user_tracking": False},
        id="advanced-untracked",
    ),
    pytest.param(
        {"user_tracking": True}, {"user_context": False, "user_tracking": True}, id="tracked"
    ),
    pytest.param({"request_logging": True}, {"request_logging": True}, id="logging"),
    pytest.param({"verifiers": [lambda token: None]}, {"verifiers": True}, id="verifiers"),
    pytest.param({"keys_file": "FILE"}, {"key_file": True}, id="key-file"),
]
BASE_FEATURES = {
    "expiry": True,
    "key_file": False,
    "metadata": True,
    "permissions": True,
    "rate_limiting": False,
    "request_logging": False,
    "rotation": True,
    "scopes": True,
    "user_context": False,
    "user_tracking": False,
    "verifiers": False,
}


@pytest.mark.parametrize(("options", "expected"), FEATURE_CASES)
def test_features_and_supports(
    options: dict[str, Any], expected: dict[str, bool], tmp_path: Path
) -> None:
    if options.get("keys_file") == "FILE":
        options = {**options, "keys_file": write_key_file(tmp_path / "k.toml", [])}
    auth = APIKeyAuth(keys=[CANARY], **options)
    features = auth.features()
    assert list(features) == list(FEATURES)
    assert features == {**BASE_FEATURES, **expected}
    for name in FEATURES:
        assert auth.supports(name) is features[name]
    assert auth.status()["features"] == features


@pytest.mark.parametrize(
    ("variables", "user_context", "tracking", "logging"),
    [
        pytest.param({"AUTH_MODE": "advanced"}, True, True, False, id="advanced"),
        pytest.param(
            {"AUTH_MODE": "advanced", "ENABLE_USER_TRACKING": "false"},
            True,
            False,
            False,
            id="advanced-untracked",
        ),
        pytest.param({"ENABLE_REQUEST_LOGGING": "1"}, False, False, True, id="logging"),
        pytest.param({"ENABLE_USER_TRACKING": "yes"}, False, True, False, id="tracked"),
    ],
)
def test_features_from_the_environment(
    variables: dict[str, str],
    user_context: bool,
    tracking: bool,
    logging: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    auth = APIKeyAuth(keys=[CANARY])
    assert auth.supports("user_context") is user_context
    assert auth.supports("user_tracking") is tracking
    assert auth.supports("request_logging") is logging


@pytest.mark.parametrize("feature", ["unknown", "", "USER_CONTEXT", "user-context", "jwt"])
def test_supports_an_unknown_feature_raises_listing_the_names(feature: str) -> None:
    auth = APIKeyAuth(keys=[CANARY])
    with pytest.raises(ValueError, match="unknown feature") as info:
        auth.supports(feature)
    for name in FEATURES:
        assert name in str(info.value)


# ================================================ verify_api_key_string, get_auth_status


def starter_status(
    mode: str, *, keys: int, development: bool, advanced: bool = False
) -> dict[str, Any]:
    return {
        "auth_config": {
            "mode": mode,
            "features": {
                "user_context": advanced,
                "permissions": True,
                "rate_limiting": False,
                "user_tracking": advanced,
                "request_logging": False,
            },
        },
        "api_keys_configured": keys,
        "development_mode": development,
    }


def test_module_functions_with_an_authenticator(no_default: None) -> None:
    auth = APIKeyAuth(keys=[CANARY, OTHER_KEY])
    assert verify_api_key_string(CANARY, auth) is True
    assert verify_api_key_string(OTHER_KEY, auth=auth) is True
    assert verify_api_key_string(THIRD_KEY, auth) is False
    assert verify_api_key_string("", auth) is False
    assert verify_api_key_string("caf\u00e9", auth) is False
    assert get_auth_status(auth) == starter_status("simple", keys=2, development=False)
    advanced = APIKeyAuth(keys=[CANARY], mode="advanced")
    assert get_auth_status(advanced) == starter_status(
        "advanced", keys=1, development=False, advanced=True
    )
    development = APIKeyAuth()
    assert verify_api_key_string(CANARY, development) is False  # no token is a key
    assert get_auth_status(development) == starter_status("simple", keys=0, development=True)
    with capture_logs():
        empty = APIKeyAuth(keys=[])  # an explicit empty set enforces: no development mode
    assert verify_api_key_string(CANARY, empty) is False
    assert get_auth_status(empty) == starter_status("simple", keys=0, development=False)


def test_module_functions_follow_the_latest_middleware_or_environment_authenticator(
    monkeypatch: pytest.MonkeyPatch, no_default: None
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    first = APIKeyAuth.from_env()
    assert asgi_apikey.auth._default is first
    assert verify_api_key_string(CANARY) is True
    assert verify_api_key_string(OTHER_KEY) is False

    # An authenticator given explicit keys or a key file does not become the default.
    APIKeyAuth(keys=[OTHER_KEY])
    assert verify_api_key_string(OTHER_KEY) is False
    assert asgi_apikey.auth._default is first

    # A middleware built from the environment does.
    monkeypatch.setenv("API_KEY", OTHER_KEY)
    monkeypatch.setenv("ADDITIONAL_API_KEYS", THIRD_KEY)
    monkeypatch.setenv("AUTH_MODE", "advanced")
    app = APIKeyMiddleware(Recorder())
    assert asgi_apikey.auth._default is app.auth
    assert verify_api_key_string(OTHER_KEY) is True
    assert verify_api_key_string(CANARY) is False
    assert get_auth_status() == starter_status("advanced", keys=2, development=False, advanced=True)
    # Rotating the default shows at once.
    app.auth.add_key(FOURTH_KEY)
    assert verify_api_key_string(FOURTH_KEY) is True
    assert get_auth_status()["api_keys_configured"] == 3

    # So does a middleware given keys=, or auth=: the last one built wins.
    by_keys = APIKeyMiddleware(Recorder(), keys=[CANARY])
    assert asgi_apikey.auth._default is by_keys.auth
    assert verify_api_key_string(CANARY) is True
    assert verify_api_key_string(OTHER_KEY) is False
    held = APIKeyAuth(keys=[APIKey(FOURTH_KEY, name="held")])
    assert asgi_apikey.auth._default is by_keys.auth
    APIKeyMiddleware(Recorder(), auth=held)
    assert asgi_apikey.auth._default is held
    assert verify_api_key_string(FOURTH_KEY) is True
    assert verify_api_key_string(CANARY) is False
    status = get_auth_status()  # AUTH_MODE=advanced still set: explicit keys read it too
    assert status == starter_status("advanced", keys=1, development=False, advanced=True)

    # Then an authenticator built from the environment again.
    latest = APIKeyAuth.from_env()
    assert asgi_apikey.auth._default is latest


FAILING_MIDDLEWARE: list[Any] = [
    pytest.param({"keys": [THIRD_KEY], "default": "closed"}, id="keys-bad-default"),
    pytest.param({"keys": [THIRD_KEY], "max_token_length": 3}, id="keys-bad-length"),
    pytest.param({"auth": "HELD", "header_name": "Authorization"}, id="auth-bad-header"),
    pytest.param({"auth": "HELD", "keys": [THIRD_KEY]}, id="auth-and-keys"),
    pytest.param({"keys": [THIRD_KEY, THIRD_KEY]}, id="duplicate-keys"),
]


@pytest.mark.parametrize("options", FAILING_MIDDLEWARE)
def test_a_middleware_that_fails_to_build_does_not_become_the_default(
    options: dict[str, Any], no_default: None
) -> None:
    current = APIKeyMiddleware(Recorder(), keys=[CANARY])
    assert asgi_apikey.auth._default is current.auth
    held = APIKeyAuth(keys=[THIRD_KEY])
    if options.get("auth") == "HELD":
        options = {**options, "auth": held}
    with pytest.raises(ConfigurationError):
        APIKeyMiddleware(Recorder(), **options)
    assert asgi_apikey.auth._default is current.auth
    assert verify_api_key_string(CANARY) is True
    assert verify_api_key_string(THIRD_KEY) is False


def test_module_functions_build_one_from_the_environment_when_there_is_none(
    monkeypatch: pytest.MonkeyPatch, no_default: None
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    assert verify_api_key_string(CANARY) is True
    built = asgi_apikey.auth._default
    assert built is not None
    # Read once: later changes to the environment need a new authenticator or reload().
    monkeypatch.setenv("API_KEY", OTHER_KEY)
    assert verify_api_key_string(OTHER_KEY) is False
    assert get_auth_status() == starter_status("simple", keys=1, development=False)
    assert asgi_apikey.auth._default is built
    built.reload()
    assert verify_api_key_string(OTHER_KEY) is True


def test_get_auth_status_without_keys_reports_development_mode(no_default: None) -> None:
    with capture_logs():
        status = get_auth_status()
    assert status == starter_status("simple", keys=0, development=True)
    assert verify_api_key_string(CANARY) is False


# ========================================================= helpers in development mode


def fastapi_app(auth: APIKeyAuth) -> FastAPI:
    app = FastAPI()
    app.add_middleware(APIKeyMiddleware, auth=auth)

    def described(context: AuthContext) -> dict[str, Any]:
        return {
            "authenticated": context.authenticated,
            "mode": context.mode,
            "key_id": context.key_id,
        }

    @app.get("/verify")
    async def verify(context: Annotated[AuthContext, Depends(verify_api_key)]) -> dict[str, Any]:
        return described(context)

    @app.get("/admin")
    async def admin(
        context: Annotated[AuthContext, Depends(require_scopes("admin"))],
    ) -> dict[str, Any]:
        return described(context)

    @app.get("/optional")
    async def optional(
        context: Annotated[AuthContext | None, Depends(optional_verify_api_key)],
    ) -> dict[str, Any]:
        return {"context": None if context is None else described(context)}

    @app.get("/metadata")
    async def metadata(
        found: Annotated[dict[str, Any], Depends(verify_api_key_with_metadata)],
    ) -> dict[str, Any]:
        return found

    return app


DEV_CONTEXT = {"authenticated": False, "mode": "test", "key_id": None}


def test_fastapi_dependencies_pass_in_development_mode(no_default: None) -> None:
    client = TestClient(fastapi_app(APIKeyAuth()))
    for headers in ({}, {"Authorization": "Bearer sk-unknown-key-1234567"}):
        assert client.get("/verify", headers=headers).json() == DEV_CONTEXT
        assert client.get("/admin", headers=headers).json() == DEV_CONTEXT
        assert client.get("/optional", headers=headers).json() == {"context": None}
        assert client.get("/metadata", headers=headers).json() == {
            "key_id": None,
            "scopes": [],
            "metadata": {},
        }


def test_fastapi_dependencies_refuse_once_a_key_is_configured(no_default: None) -> None:
    auth = APIKeyAuth()
    client = TestClient(fastapi_app(auth))
    assert client.get("/admin").status_code == 200
    auth.add_key(APIKey(CANARY, name="reader", scopes={"read"}))
    for path in ("/verify", "/admin", "/optional", "/metadata"):
        assert client.get(path).status_code == 401
    reader = {"Authorization": f"Bearer {CANARY}"}
    assert client.get("/verify", headers=reader).json()["key_id"] == "reader"
    assert client.get("/admin", headers=reader).status_code == 403


HELPER_CASES: list[Any] = [
    pytest.param(verify_api_key, DEV_CONTEXT, id="verify_api_key"),
    pytest.param(require_scopes("admin", "write"), DEV_CONTEXT, id="require_scopes"),
    pytest.param(optional_verify_api_key, None, id="optional_verify_api_key"),
]


@pytest.mark.parametrize(("helper", "expected"), HELPER_CASES)
def test_starlette_helpers_pass_in_development_mode(
    helper: Callable[[HTTPConnection], AuthContext | None],
    expected: dict[str, Any] | None,
    no_default: None,
) -> None:
    async def endpoint(request: Request) -> JSONResponse:
        context = helper(request)
        if context is None:
            return JSONResponse(None)
        return JSONResponse(
            {"authenticated": context.authenticated, "mode": context.mode, "key_id": context.key_id}
        )

    app = Starlette(routes=[Route("/e", endpoint)])
    app.add_middleware(APIKeyMiddleware, auth=APIKeyAuth())
    response = TestClient(app).get("/e")
    assert response.status_code == 200
    assert response.json() == expected


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        pytest.param({"mode": "fancy"}, "mode must be 'simple' or 'advanced'", id="mode"),
        pytest.param({"user_tracking": "yes"}, "user_tracking must be True or False", id="flag"),
        pytest.param(
            {"request_logging": 1}, "request_logging must be True or False", id="flag-int"
        ),
    ],
)
def test_bad_arguments_are_configuration_errors(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(needle)):
        APIKeyAuth(keys=[CANARY], **kwargs)


def test_a_verifier_context_whose_key_id_is_not_a_str_is_refused() -> None:
    auth = APIKeyAuth(
        keys=[CANARY],
        verifiers=[lambda token: AuthContext(True, key_id=123)],  # type: ignore[arg-type]
    )
    with capture_logs() as logs:
        assert auth.verify("sk-unknown-token") is None
    assert [log["problem"] for log in logs] == ["returned a key_id that is not a str but int"]


# ============================================================ second review regressions


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        pytest.param(
            AuthContext(True, key_id="jwt:a", scopes=["read"]),  # type: ignore[arg-type]
            "returned scopes that are not a set of str",
            id="scopes-list",
        ),
        pytest.param(
            AuthContext(True, key_id="jwt:a", scopes="admin"),  # type: ignore[arg-type]
            "returned scopes that are not a set of str",
            id="scopes-str",
        ),
        pytest.param(
            AuthContext(True, key_id="jwt:a", scopes=frozenset({1})),  # type: ignore[arg-type]
            "returned scopes that are not a set of str",
            id="scopes-int",
        ),
        pytest.param(
            AuthContext(True, key_id="jwt:a", metadata=["x"]),  # type: ignore[arg-type]
            "returned metadata that is not a mapping",
            id="metadata-list",
        ),
    ],
)
def test_a_verifier_with_malformed_scopes_or_metadata_is_a_401(
    context: AuthContext, problem: str
) -> None:
    app = APIKeyMiddleware(
        Recorder(), auth=APIKeyAuth(keys=[CANARY], verifiers=[lambda token: context])
    )
    with capture_logs() as logs:
        result = call(app, http_scope("/x", headers=[bearer("some.jwt.token")]), Recorder())
    assert result.status == 401
    failures = [
        (log["event"], log["problem"]) for log in logs if log["event"] != "authentication_failed"
    ]
    assert failures == [("verifier_failed", problem)]


def test_a_verifier_context_gets_its_metadata_frozen() -> None:
    metadata = {"claims": {"sub": "a"}, "groups": ["x"]}
    auth = APIKeyAuth(
        keys=[CANARY],
        verifiers=[lambda token: AuthContext(True, key_id="jwt:a", metadata=metadata)],
    )
    context = auth.verify("some.jwt.token")
    assert context is not None
    assert context.metadata == {"claims": {"sub": "a"}, "groups": ("x",)}
    with pytest.raises(TypeError):
        context.metadata["claims"]["sub"] = "admin"


def test_removing_the_last_key_logs_no_keys() -> None:
    auth = APIKeyAuth(keys=[CANARY])
    with capture_logs() as logs:
        assert auth.remove_key(CANARY)
        auth.replace_keys([])  # already empty: nothing new to say
    assert [log["event"] for log in logs] == ["no_keys"]


def test_only_from_env_and_middleware_set_the_default(
    monkeypatch: pytest.MonkeyPatch, no_default: None
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    first = APIKeyMiddleware(Recorder())
    assert asgi_apikey.auth._default is first.auth
    APIKeyAuth()  # built from the environment, but not by from_env: not the default
    assert asgi_apikey.auth._default is first.auth
    with pytest.raises(ConfigurationError):
        APIKeyMiddleware(Recorder(), default="closed")  # fails after reading the environment
    assert asgi_apikey.auth._default is first.auth
    assert APIKeyAuth.from_env() is asgi_apikey.auth._default


# ================================================= a logging failure is never an error


def _raising_processor(logger: object, method_name: str, event_dict: Any) -> Any:
    raise UnicodeEncodeError("ascii", "\u00e9", 0, 1, "the log stream cannot encode this")


class _NeverStarted(asgi_apikey.LiveKeySource):
    """A live source nobody starts: its first 503 logs key_store_not_started."""

    async def start(self, sink: Any) -> None:  # pragma: no cover - never started here
        raise AssertionError("not started in this test")

    async def stop(self) -> None:  # pragma: no cover
        raise AssertionError("not started in this test")


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: APIKeyAuth(), id="development_mode"),
        pytest.param(lambda: APIKeyAuth(keys=[]), id="no_keys"),
        pytest.param(lambda: _removed_last(APIKeyAuth(keys=[CANARY])), id="last-key-removed"),
    ],
)
def test_a_logging_failure_never_stops_construction_or_rotation(
    build: Callable[[], APIKeyAuth], no_default: None
) -> None:
    with capture_logs(processors=[_raising_processor]) as logs:
        auth = build()
    assert isinstance(auth, APIKeyAuth)
    assert logs == []


def _removed_last(auth: APIKeyAuth) -> APIKeyAuth:
    assert auth.remove_key(CANARY)
    return auth


def test_the_first_503_stays_a_503_when_logging_raises() -> None:
    auth = APIKeyAuth(source=_NeverStarted())
    app, inner = middleware(auth)
    with capture_logs(processors=[_raising_processor]):
        results = [call(app, http_scope("/v1/x", headers=[bearer(CANARY)]), inner) for _ in "ab"]
    assert [result.status for result in results] == [503, 503]
    assert auth.counters().refused["unavailable"] == 2
    with capture_logs() as logs:
        auth.refused_unavailable()
    assert logs == []  # said once already (its log line failed, not the decision)


def test_refused_unavailable_never_raises_when_logging_raises() -> None:
    auth = APIKeyAuth(source=_NeverStarted())
    with capture_logs(processors=[_raising_processor]) as logs:
        auth.refused_unavailable()
    assert logs == []
