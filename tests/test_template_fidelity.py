"""What the starter template's own authentication tests checked, kept by asgi_apikey.

The template (FastAPI-Streamlit-LLM starter, ``app.infrastructure.security.auth``)
came with unit and integration tests of its key checks, its dependencies and
its module functions. Ported through the migration guide (docs/guides/migration.md:
``header_name="X-API-Key"``, the ``public`` and ``optional`` rules, keys from
``API_KEY`` and ``ADDITIONAL_API_KEYS``, ``key_id`` where the template returned
the key), most of what they checked still holds. Each behaviour here is one of
those, shown through a FastAPI app behind the middleware where a request is
involved. What changed on purpose is in tests/test_migration.py.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

import asgi_apikey.auth
from asgi_apikey import (
    APIKey,
    APIKeyAuth,
    APIKeyMiddleware,
    AuthContext,
    ConfigurationError,
    compat,
)
from asgi_apikey.compat import (
    AuthConfig,
    get_auth_status,
    is_development_mode,
    supports_feature,
    verify_api_key_string,
)
from tests.asgi import CANARY, OTHER_KEY

UNKNOWN_KEY = "sk-unknown-7d1e4b9a2c6f0e3d8b5a"
#: The restore lines of the guide for an app shaped like the template's.
RESTORES: dict[str, Any] = {
    "header_name": "X-API-Key",
    "public": ["/health", "/docs", "/redoc", "/openapi.json"],
    "optional": ["/v1/optional"],
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def key_id(key: str) -> str:
    return APIKey(key).key_id


class TemplateApp:
    """A FastAPI app with one route per template dependency, counting the routes' runs."""

    def __init__(self, **options: Any) -> None:
        self.runs = 0
        app = FastAPI()

        def ran(auth: AuthContext | None) -> dict[str, Any]:
            self.runs += 1
            if auth is None:
                return {"key_id": None}
            return {"key_id": auth.key_id, "mode": auth.mode}

        @app.get("/health")
        def health() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/v1/models")
        def models(auth: Annotated[AuthContext, Depends(compat.verify_api_key)]) -> dict[str, Any]:
            return ran(auth)

        @app.get("/v1/http")
        def http(
            auth: Annotated[AuthContext, Depends(compat.verify_api_key_http)],
        ) -> dict[str, Any]:
            return ran(auth)

        @app.get("/v1/optional")
        def optional(
            auth: Annotated[AuthContext | None, Depends(compat.optional_verify_api_key)],
        ) -> dict[str, Any]:
            return ran(auth)

        @app.get("/v1/metadata")
        def metadata(
            data: Annotated[dict[str, Any], Depends(compat.verify_api_key_with_metadata)],
        ) -> dict[str, Any]:
            self.runs += 1
            return data

        @app.put("/v1/process")
        def process(auth: Annotated[AuthContext, Depends(compat.verify_api_key)]) -> dict[str, Any]:
            return ran(auth)

        app.add_middleware(APIKeyMiddleware, **{**RESTORES, **options})
        self.app = app

    def client(self) -> TestClient:
        return TestClient(self.app)


@pytest.fixture(autouse=True)
def _no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # The module functions ask a process default; each test starts without one.
    monkeypatch.setattr(asgi_apikey.auth, "_default", None)


@pytest.fixture
def two_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("ADDITIONAL_API_KEYS", OTHER_KEY)


# ============================================================== which keys are accepted


def test_keys_are_compared_exactly(two_keys: None) -> None:
    # The template compared case-sensitively, and a key with spaces around it was not the key.
    template = TemplateApp()
    with template.client() as client:
        assert client.get("/v1/models", headers=bearer(CANARY)).status_code == 200
        variants = {"upper": CANARY.upper(), "swapcase": CANARY.swapcase()}
        variants |= {"shorter": CANARY[:-1], "longer": CANARY + "0"}
        for label, variant in variants.items():  # labels: no key in a failure's message
            refused = client.get("/v1/models", headers=bearer(variant))
            assert refused.status_code == 401, label
            assert refused.json() == {"detail": "Invalid API key"}
    assert template.runs == 1
    auth = APIKeyAuth.from_env()
    assert verify_api_key_string(CANARY, auth) is True
    for wrong in (f" {CANARY} ", CANARY.upper(), "", None):
        assert verify_api_key_string(wrong, auth) is False  # type: ignore[arg-type]


def test_blank_items_of_additional_api_keys_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Commas with nothing (or only spaces) between them gave no key in the template either.
    third = "sk-third-9z8y7x6w5v4u3t2s1r0q"
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("ADDITIONAL_API_KEYS", f",,{OTHER_KEY},  ,, {third} ,")
    auth = APIKeyAuth.from_env()
    assert sorted(auth.key_ids) == sorted(key_id(key) for key in (CANARY, OTHER_KEY, third))
    assert get_auth_status(auth)["api_keys_configured"] == 3
    with TemplateApp(auth=auth).client() as client:
        for key in (CANARY, OTHER_KEY, third):
            assert client.get("/v1/models", headers=bearer(key)).json()["key_id"] == key_id(key)
        assert client.get("/v1/models", headers=bearer(UNKNOWN_KEY)).status_code == 401


def test_with_keys_and_no_environment_a_request_without_a_key_is_refused(two_keys: None) -> None:
    # The template fell back to production rules when it could not tell the environment.
    template = TemplateApp()
    with template.client() as client:
        missing = client.get("/v1/models")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["detail"].startswith("Missing API key")
        assert client.get("/v1/http").status_code == 401
        assert client.get("/health").status_code == 200
    assert template.runs == 0


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_staging_and_production_refuse_to_start_without_keys(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    with pytest.raises(ConfigurationError) as info:
        APIKeyAuth.from_env()
    assert "API_KEY" in str(info.value)
    assert f"ENVIRONMENT={environment}" in str(info.value)
    with pytest.raises(ConfigurationError), TemplateApp().client() as client:
        client.get("/health")  # the middleware is built on the first request


# ================================================================ the dependencies


def test_every_dependency_names_the_same_caller_by_either_header(two_keys: None) -> None:
    # verify_api_key, verify_api_key_http, optional_verify_api_key and
    # verify_api_key_with_metadata agreed in the template; key_id stands for the key.
    with TemplateApp().client() as client:
        ways = {"bearer": bearer(OTHER_KEY), "x-api-key": {"X-API-Key": OTHER_KEY}}
        for how, headers in ways.items():
            for path in ("/v1/models", "/v1/http", "/v1/optional", "/v1/metadata"):
                response = client.get(path, headers=headers)
                assert response.status_code == 200, (path, how)
                assert response.json()["key_id"] == key_id(OTHER_KEY), (path, how)
        by_bearer = client.get("/v1/models", headers=bearer(CANARY))
        by_header = client.get("/v1/models", headers={"X-API-Key": CANARY})
        assert by_bearer.json() == by_header.json() == {"key_id": key_id(CANARY), "mode": "simple"}


def test_the_optional_dependency_is_none_without_a_key_and_refuses_a_bad_one(
    two_keys: None,
) -> None:
    template = TemplateApp()
    with template.client() as client:
        assert client.get("/v1/optional").json() == {"key_id": None}
        accepted = client.get("/v1/optional", headers=bearer(CANARY))
        assert accepted.json() == {"key_id": key_id(CANARY), "mode": "simple"}
        refused = client.get("/v1/optional", headers=bearer(UNKNOWN_KEY))
        assert refused.status_code == 401
        assert refused.json() == {"detail": "Invalid API key"}
    assert template.runs == 2


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 401, id="no-key"),
        pytest.param(bearer(UNKNOWN_KEY), 401, id="unknown-key"),
        pytest.param({"X-API-Key": UNKNOWN_KEY}, 401, id="unknown-x-api-key"),
        # A key that cannot be a bearer token is invalid_request (400); the template said 401.
        pytest.param({"Authorization": "Bearer "}, 400, id="empty-bearer"),
        pytest.param(bearer(CANARY + "!@#$%"), 400, id="bad-characters"),
    ],
)
def test_a_refused_request_never_runs_the_route(
    two_keys: None, headers: dict[str, str], status: int
) -> None:
    # The template's dependencies raised before the route's body ran; the middleware
    # answers before the app does.
    template = TemplateApp()
    with template.client() as client:
        for path in ("/v1/models", "/v1/http", "/v1/metadata"):
            refused = client.get(path, headers=headers)
            assert refused.status_code == status, path
            assert refused.headers["www-authenticate"].startswith("Bearer realm="), path
        if headers:  # a key that is sent must be good, on an optional route too
            assert client.get("/v1/optional", headers=headers).status_code == status
    assert template.runs == 0


def test_development_mode_runs_every_dependency_anonymous(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without keys the template let the request in and named it "development".
    monkeypatch.setenv("ENVIRONMENT", "development")
    template = TemplateApp()
    with template.client() as client:
        for path in ("/v1/models", "/v1/http"):
            assert client.get(path).json() == {"key_id": None, "mode": "test"}
        assert client.get("/v1/optional").json() == {"key_id": None}
        assert client.get("/v1/metadata").json() == {"key_id": None, "scopes": [], "metadata": {}}
    assert template.runs == 4
    assert is_development_mode() is True
    assert get_auth_status()["development_mode"] is True
    assert get_auth_status()["api_keys_configured"] == 0
    assert verify_api_key_string("sk-anything-at-all-0123456789") is False


def test_requests_in_flight_together_keep_their_own_outcome(two_keys: None) -> None:
    # The template checked interleaved good and bad keys under asyncio.gather.
    template = TemplateApp()

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=template.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            keys = [CANARY, UNKNOWN_KEY, OTHER_KEY] * 10
            responses = await asyncio.gather(
                *(client.get("/v1/models", headers=bearer(key)) for key in keys)
            )
        for key, response in zip(keys, responses, strict=True):
            if response.status_code == 200:
                assert response.json()["key_id"] == key_id(key)
        return [response.status_code for response in responses]

    assert asyncio.run(run()) == [200, 401, 200] * 10
    assert template.runs == 20


def test_request_logging_names_the_method_and_path(
    two_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The template's add_request_metadata echoed the method and endpoint with
    # ENABLE_REQUEST_LOGGING on; the succeeded event carries them now.
    monkeypatch.setenv("ENABLE_REQUEST_LOGGING", "true")
    with capture_logs() as logs, TemplateApp().client() as client:
        assert client.put("/v1/process", headers=bearer(CANARY)).status_code == 200
    succeeded = [event for event in logs if event["event"] == "authentication_succeeded"]
    assert len(succeeded) == 1
    assert succeeded[0]["method"] == "PUT"
    assert succeeded[0]["path"] == "/v1/process"
    assert succeeded[0]["key_id"] == key_id(CANARY)
    assert CANARY not in repr(logs)


# ================================================================== reloading keys


def test_reload_swaps_the_keys_the_app_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    auth = APIKeyAuth.from_env()
    with TemplateApp(auth=auth).client() as client:
        assert client.get("/v1/models", headers=bearer(CANARY)).status_code == 200
        monkeypatch.setenv("API_KEY", OTHER_KEY)
        monkeypatch.setenv("ADDITIONAL_API_KEYS", UNKNOWN_KEY)
        auth.reload()
        assert client.get("/v1/models", headers=bearer(CANARY)).status_code == 401
        for key in (OTHER_KEY, UNKNOWN_KEY):
            assert client.get("/v1/models", headers=bearer(key)).status_code == 200
    assert get_auth_status(auth)["api_keys_configured"] == 2


def write_key_file(path: Path, keys: dict[str, str]) -> None:
    """A key file of ``key -> team`` (digests and metadata), replaced atomically."""
    tables = [
        f'[[keys]]\ndigest = "{APIKey(key).digest}"\nmetadata = {{ team = "{team}" }}\n'
        for key, team in keys.items()
    ]
    fresh = path.with_suffix(".new")
    fresh.write_text("\n".join(tables), encoding="utf-8")
    fresh.replace(path)


def test_reload_keeps_each_keys_metadata_with_its_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The template rebuilt its metadata on reload_keys(): no key without its metadata, no
    # metadata left over for a removed key.
    path = tmp_path / "keys.toml"
    write_key_file(path, {CANARY: "payments", OTHER_KEY: "search"})
    monkeypatch.setenv("API_KEYS_FILE", str(path))
    auth = APIKeyAuth.from_env()
    with TemplateApp(auth=auth).client() as client:

        def team(key: str) -> Any:
            response = client.get("/v1/metadata", headers=bearer(key))
            return response.json()["metadata"]["team"] if response.status_code == 200 else None

        assert (team(CANARY), team(OTHER_KEY)) == ("payments", "search")
        write_key_file(path, {OTHER_KEY: "billing", UNKNOWN_KEY: "ci"})
        auth.reload()
        assert (team(CANARY), team(OTHER_KEY), team(UNKNOWN_KEY)) == (None, "billing", "ci")
    assert len(auth.key_ids) == 2


# ============================================================ the module's functions


def test_the_module_functions_agree_from_many_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("AUTH_MODE", "advanced")
    monkeypatch.setenv("ENABLE_USER_TRACKING", "true")
    monkeypatch.setenv("ENABLE_REQUEST_LOGGING", "false")
    APIKeyAuth.from_env()  # the default the functions ask, as the template's globals
    expected_features = {
        "user_context": True,
        "permissions": True,
        "rate_limiting": False,
        "user_tracking": True,
        "request_logging": False,
    }
    expected = (True, False, 1, expected_features, expected_features)
    seen: list[tuple[Any, ...]] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            for _ in range(20):
                status = get_auth_status()
                functions = {name: supports_feature(name) for name in expected_features}
                seen.append(
                    (
                        verify_api_key_string(CANARY),
                        is_development_mode(),
                        status["api_keys_configured"],
                        status["auth_config"]["features"],
                        functions,
                    )
                )
        except BaseException as error:  # reported below, with the thread's answers
            errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert seen == [expected] * 100
    assert get_auth_status()["auth_config"]["mode"] == "advanced"
    assert CANARY not in repr(get_auth_status())


def test_verify_api_key_string_logs_nothing(
    two_keys: None, caplog: pytest.LogCaptureFixture
) -> None:
    # A programmatic check, for batch jobs: silent, whether the key is good or not.
    auth = APIKeyAuth.from_env()
    with caplog.at_level(logging.DEBUG), capture_logs() as logs:
        for _ in range(5):
            assert verify_api_key_string(CANARY, auth) is True
            assert verify_api_key_string(UNKNOWN_KEY, auth) is False
            assert verify_api_key_string("not a key", auth) is False
    assert logs == []
    assert caplog.records == []


@pytest.mark.parametrize("true", ["true", "TRUE", "True"])
def test_auth_config_flags_are_off_by_default_and_read_any_case(
    monkeypatch: pytest.MonkeyPatch, true: str
) -> None:
    config = AuthConfig()
    assert (config.simple_mode, config.enable_user_tracking, config.enable_request_logging) == (
        True,
        False,
        False,
    )
    monkeypatch.setenv("ENABLE_USER_TRACKING", true)
    monkeypatch.setenv("ENABLE_REQUEST_LOGGING", true)
    config = AuthConfig()
    assert (config.enable_user_tracking, config.enable_request_logging) == (True, True)
    assert supports_feature("unknown_feature") is False
    assert supports_feature("") is False
