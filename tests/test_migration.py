"""Migrating from the FastAPI-Streamlit-LLM starter template (docs/guides/migration.md).

Each behaviour that changed is shown twice through a real FastAPI app: as it
is now, and with the one line the guide gives to restore the template's
behaviour (``header_name="X-API-Key"``, ``default="public"``,
``optional=[...]``, ...). Then what the template's users lean on: ``except
HTTPException`` catching the helpers' errors (with FastAPI and without it),
``API_KEY`` with whitespace around it, a key's metadata in simple mode from
code, the key file and the Redis store, and the template's ``AuthConfig`` and
module functions.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import fastapi
import pytest
import starlette.exceptions
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

import asgi_apikey.auth
from asgi_apikey import (
    APIKey,
    APIKeyAuth,
    APIKeyMiddleware,
    AuthContext,
    AuthenticationError,
    AuthorizationError,
    AuthSettings,
    ConfigurationError,
    compat,
    optional_verify_api_key,
    require_scopes,
    verify_api_key,
    verify_api_key_with_metadata,
)
from asgi_apikey.compat import AuthConfig, get_auth_status, is_development_mode, supports_feature
from asgi_apikey.redis_store import RedisKeySource, add_key
from tests.asgi import CANARY, OTHER_KEY, error_texts
from tests.redis_server import running_redis

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guides" / "migration.md"
THIRD_KEY = "sk-third-9z8y7x6w5v4u3t2s1r0q"
UNKNOWN_KEY = "sk-unknown-0123456789abcdef"
#: The key the template accepted under pytest whatever was configured.
TEMPLATE_TEST_KEY = "test-api-key-12345"
#: The template module's names (app.infrastructure.security.auth), public and global.
TEMPLATE_NAMES = (
    "security",
    "get_api_key_from_request",
    "AuthConfig",
    "APIKeyAuth",
    "auth_config",
    "api_key_auth",
    "verify_api_key",
    "verify_api_key_with_metadata",
    "optional_verify_api_key",
    "verify_api_key_string",
    "get_auth_status",
    "is_development_mode",
    "supports_feature",
    "verify_api_key_http",
    "AuthenticationError",
    "ConfigurationError",
)
#: Its AuthConfig's and APIKeyAuth's attributes and methods.
TEMPLATE_MEMBERS = (
    "simple_mode",
    "enable_user_tracking",
    "enable_request_logging",
    "supports_user_context",
    "supports_permissions",
    "supports_rate_limiting",
    "get_auth_info",
    "config",
    "api_keys",
    "_key_metadata",
    "verify_api_key",
    "get_key_metadata",
    "add_request_metadata",
    "reload_keys",
)
#: The names asgi_apikey.compat gives a counterpart, importable under the same name.
COUNTERPARTS = (
    "AuthConfig",
    "APIKeyAuth",
    "verify_api_key",
    "verify_api_key_with_metadata",
    "optional_verify_api_key",
    "verify_api_key_string",
    "get_auth_status",
    "is_development_mode",
    "supports_feature",
    "verify_api_key_http",
    "AuthenticationError",
    "ConfigurationError",
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def key_id_of(auth: AuthContext | None) -> str | None:
    return None if auth is None else auth.key_id


def template_app(**options: Any) -> FastAPI:
    """The template's kinds of route, behind the middleware built with ``options``.

    ``/health`` has no auth dependency, ``/v1/models`` uses ``verify_api_key``,
    ``/v1/optional`` ``optional_verify_api_key`` and ``/v1/metadata``
    ``verify_api_key_with_metadata``, as the template's routes did.
    """
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models(auth: Annotated[AuthContext, Depends(verify_api_key)]) -> dict[str, Any]:
        return {"key_id": auth.key_id, "mode": auth.mode}

    @app.get("/v1/optional")
    def optional(
        auth: Annotated[AuthContext | None, Depends(optional_verify_api_key)],
    ) -> dict[str, Any]:
        return {"key_id": key_id_of(auth)}

    @app.get("/v1/metadata")
    def metadata(
        data: Annotated[dict[str, Any], Depends(verify_api_key_with_metadata)],
    ) -> dict[str, Any]:
        return data

    app.add_middleware(APIKeyMiddleware, **options)
    return app


@pytest.fixture(autouse=True)
def no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start without a process default authenticator, and leave none behind."""
    monkeypatch.setattr(asgi_apikey.auth, "_default", None)


def no_canary_in(texts: Iterator[str] | list[str], *secrets: str) -> None:
    """No secret, nor any 8-character run of one (the template logged key[:8]), in ``texts``."""
    needles = set()
    for secret in (CANARY, *secrets):
        needles |= {secret[i : i + 8] for i in range(len(secret) - 7)}
    for text in texts:
        for needle in needles:
            assert needle not in text, f"a key shows in {text!r}"


# ==================================================== behaviour changes, and their restore


def test_x_api_key_is_read_when_header_name_names_it() -> None:
    # The template read X-API-Key as well as Authorization: Bearer, without configuration.
    with TestClient(template_app(keys=[CANARY])) as client:
        refused = client.get("/v1/models", headers={"X-API-Key": CANARY})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="api"'
    with TestClient(template_app(keys=[CANARY], header_name="X-API-Key")) as client:
        accepted = client.get("/v1/models", headers={"X-API-Key": CANARY})
        assert accepted.status_code == 200
        assert accepted.json()["key_id"] == APIKey(CANARY).key_id
        assert client.get("/v1/models", headers=bearer(CANARY)).status_code == 200
        assert client.get("/v1/models", headers={"X-API-Key": UNKNOWN_KEY}).status_code == 401


def test_bearer_and_x_api_key_in_one_request_is_a_bad_request() -> None:
    # The template took the Bearer token and ignored X-API-Key; two methods are refused now.
    with TestClient(template_app(keys=[CANARY], header_name="X-API-Key")) as client:
        both = client.get("/v1/models", headers={**bearer(CANARY), "X-API-Key": CANARY})
        assert both.status_code == 400
        assert 'error="invalid_request"' in both.headers["www-authenticate"]
        assert client.get("/v1/models", headers=bearer(CANARY)).status_code == 200


def test_routes_without_an_auth_dependency_are_protected_by_default() -> None:
    # In the template only the routes with an auth dependency asked for a key.
    with TestClient(template_app(keys=[CANARY])) as client:
        assert client.get("/health").status_code == 401
        assert client.get("/docs").status_code == 401
        assert client.get("/openapi.json").status_code == 401
    with TestClient(template_app(keys=[CANARY], default="public")) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/docs").status_code == 200
        assert client.get("/v1/models").status_code == 401  # its dependency still asks
        assert client.get("/v1/models", headers=bearer(CANARY)).status_code == 200
    public = ["/health", "/docs", "/redoc", "/openapi.json"]
    with TestClient(template_app(keys=[CANARY], public=public)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/v1/models").status_code == 401


def test_optional_verify_api_key_needs_an_optional_rule() -> None:
    # The template's optional route ran anonymous without a key and refused a bad one.
    with TestClient(template_app(keys=[CANARY])) as client:
        assert client.get("/v1/optional").status_code == 401  # protected by default
    for options in (
        {"optional": ["/v1/optional"]},
        {"default": "public", "optional": ["/v1/optional"]},
    ):
        with TestClient(template_app(keys=[CANARY], **options)) as client:
            assert client.get("/v1/optional").json() == {"key_id": None}
            accepted = client.get("/v1/optional", headers=bearer(CANARY))
            assert accepted.json() == {"key_id": APIKey(CANARY).key_id}
            assert client.get("/v1/optional", headers=bearer(UNKNOWN_KEY)).status_code == 401
    # On a public path the middleware checks no key, and the helper sees none.
    with TestClient(template_app(keys=[CANARY], default="public")) as client:
        assert client.get("/v1/optional", headers=bearer(UNKNOWN_KEY)).json() == {"key_id": None}


def test_the_template_test_key_is_not_built_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under pytest the template accepted test-api-key-12345 whatever keys were set.
    monkeypatch.setenv("API_KEY", CANARY)
    with TestClient(template_app()) as client:
        assert client.get("/v1/models", headers=bearer(TEMPLATE_TEST_KEY)).status_code == 401
    monkeypatch.setenv("ADDITIONAL_API_KEYS", TEMPLATE_TEST_KEY)  # the tests' environment only
    with TestClient(template_app()) as client:
        assert client.get("/v1/models", headers=bearer(TEMPLATE_TEST_KEY)).status_code == 200
        assert client.get("/v1/models", headers=bearer(CANARY)).status_code == 200


def test_a_key_is_never_logged_not_even_its_first_characters() -> None:
    # The template logged key[:8] of every invalid key; a fingerprint stands in for it now.
    with capture_logs() as logs, TestClient(template_app(keys=[OTHER_KEY])) as client:
        for _ in range(2):
            assert client.get("/v1/models", headers=bearer(CANARY)).status_code == 401
    failed = [event for event in logs if event["event"] == "authentication_failed"]
    assert [event["reason"] for event in failed] == ["invalid", "invalid"]
    fingerprints = {event["token_fingerprint"] for event in failed}
    assert len(fingerprints) == 1  # the same token, recognisable across events
    no_canary_in([repr(event) for event in logs])


def test_development_mode_serves_other_hosts_only_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without keys the template let every client through; now only this machine, unless
    # ENVIRONMENT says development.
    with TestClient(template_app()) as client:
        assert client.get("/v1/models").json() == {"key_id": None, "mode": "test"}
    remote = "http://api.example.com"
    with TestClient(template_app(), base_url=remote) as client:
        refused = client.get("/v1/models")
        assert refused.status_code == 401
        assert "ENVIRONMENT=development" in refused.json()["detail"]
    monkeypatch.setenv("ENVIRONMENT", "development")
    with TestClient(template_app(), base_url=remote) as client:
        assert client.get("/v1/models").json() == {"key_id": None, "mode": "test"}


def test_a_content_security_policy_is_sent_by_default() -> None:
    # The template's own security middleware set CSP; the middleware sends one now.
    with TestClient(template_app(keys=[CANARY])) as client:
        response = client.get("/v1/models", headers=bearer(CANARY))
        assert response.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )
    dropped = {"Content-Security-Policy": None}
    with TestClient(template_app(keys=[CANARY], security_headers=dropped)) as client:
        response = client.get("/v1/models", headers=bearer(CANARY))
        assert response.status_code == 200
        assert "content-security-policy" not in response.headers


def test_the_dependencies_return_a_context_never_the_key() -> None:
    # The template's verify_api_key returned the key, with_metadata {"api_key": key, ...}.
    key = APIKey(CANARY, name="billing", scopes={"read"}, metadata={"team": "payments"})
    with TestClient(template_app(keys=[key])) as client:
        models = client.get("/v1/models", headers=bearer(CANARY))
        assert models.json() == {"key_id": "billing", "mode": "simple"}
        metadata = client.get("/v1/metadata", headers=bearer(CANARY))
        assert metadata.json() == {
            "key_id": "billing",
            "scopes": ["authenticated", "read"],
            "metadata": {"team": "payments"},
        }
        no_canary_in([models.text, metadata.text, repr(dict(metadata.headers))])


def test_user_tracking_is_on_by_default_in_advanced_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # The template left ENABLE_USER_TRACKING off unless it was set, in either mode.
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("AUTH_MODE", "advanced")
    assert APIKeyAuth.from_env().supports("user_tracking")
    assert AuthConfig().enable_user_tracking
    monkeypatch.setenv("ENABLE_USER_TRACKING", "false")
    assert not APIKeyAuth.from_env().supports("user_tracking")
    assert not AuthConfig().enable_user_tracking


@pytest.mark.parametrize(
    ("variable", "value", "feature", "on"),
    [
        pytest.param("ENABLE_REQUEST_LOGGING", "1", "request_logging", True, id="1-is-true"),
        pytest.param("ENABLE_USER_TRACKING", "yes", "user_tracking", True, id="yes-is-true"),
        pytest.param("ENABLE_USER_TRACKING", "off", "user_tracking", False, id="off-is-false"),
    ],
)
def test_flags_read_every_spelling_of_true(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, feature: str, on: bool
) -> None:
    # The template took only "true" as true, so ENABLE_REQUEST_LOGGING=1 meant off.
    monkeypatch.setenv(variable, value)
    assert APIKeyAuth(keys=[CANARY]).supports(feature) is on
    assert supports_feature(feature, APIKeyAuth(keys=[CANARY])) is on


def test_a_typo_in_a_mode_or_flag_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The template read AUTH_MODE=fancy as advanced and ENABLE_USER_TRACKING=ture as false.
    monkeypatch.setenv("AUTH_MODE", "fancy")
    with pytest.raises(ConfigurationError, match="AUTH_MODE must be 'simple' or 'advanced'"):
        APIKeyAuth(keys=[CANARY])
    with pytest.raises(ConfigurationError, match="AUTH_MODE"):
        AuthConfig()
    monkeypatch.setenv("AUTH_MODE", "advanced")
    monkeypatch.setenv("ENABLE_USER_TRACKING", "ture")
    with pytest.raises(ConfigurationError, match="ENABLE_USER_TRACKING must be true or false"):
        APIKeyAuth(keys=[CANARY])


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param(CANARY[:10] + " " + CANARY[10:], "characters", id="inner-space"),
        pytest.param(CANARY + "!", "characters", id="punctuation"),
        pytest.param("sk-" + "é" * 16, "characters", id="non-ascii"),
    ],
)
def test_a_key_a_bearer_token_cannot_carry_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str, fragment: str
) -> None:
    # The template compared any string; a key must be a b64token (keygen makes one).
    monkeypatch.setenv("API_KEY", value)
    with pytest.raises(ConfigurationError) as info:
        APIKeyMiddleware(FastAPI())
    assert str(info.value).startswith("API_KEY: ")
    assert fragment in str(info.value)
    no_canary_in([text for _, text in error_texts(info.value)], value)


def test_staging_and_production_refuse_short_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # The template took a key of any length in production; 16 characters at least now.
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("API_KEY", "short-key")
    with pytest.raises(ConfigurationError, match="shorter than 16 characters"):
        APIKeyAuth.from_env()
    monkeypatch.setenv("API_KEY", CANARY)
    assert APIKeyAuth.from_env().verify(CANARY) is not None


def test_enforce_auth_applies_the_production_rules_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The template's ENFORCE_AUTH=true made auth act as production: it still does.
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("ENFORCE_AUTH", "true\n")  # from a secret file, newline and all
    with pytest.raises(ConfigurationError, match="ENFORCE_AUTH=true refuses to start") as error:
        APIKeyAuth.from_env()
    assert error.value.context["variables"] == ["API_KEY", "ADDITIONAL_API_KEYS", "API_KEYS_FILE"]
    monkeypatch.setenv("API_KEY", "short-key")
    with pytest.raises(ConfigurationError, match="ENFORCE_AUTH=true refuses: use a long"):
        APIKeyAuth.from_env()
    monkeypatch.setenv("API_KEY", CANARY)
    assert APIKeyAuth.from_env().verify(CANARY) is not None
    monkeypatch.setenv("ENFORCE_AUTH", "false")
    monkeypatch.delenv("API_KEY")
    assert APIKeyAuth.from_env().is_development_mode  # as ENVIRONMENT=development says


def test_the_no_keys_error_of_production_names_the_key_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The template's error context listed the variables to set; so does this one.
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ConfigurationError, match="ENVIRONMENT=production refuses") as error:
        APIKeyAuth.from_env()
    assert error.value.context == {
        "setting": "environment",
        "variables": ["API_KEY", "ADDITIONAL_API_KEYS", "API_KEYS_FILE"],
    }


@pytest.mark.parametrize("value", ["true\n", "  TRUE  ", "1\r\n"])
def test_a_flag_with_whitespace_around_it_is_read(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # A flag read from a secret file keeps its newline; the template read such values.
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("ENABLE_USER_TRACKING", value)
    monkeypatch.setenv("ENABLE_REQUEST_LOGGING", value)
    auth = APIKeyAuth.from_env()
    assert auth.supports("user_tracking")
    assert auth.supports("request_logging")


# ===================================================== except HTTPException (FastAPI)


def test_except_fastapi_http_exception_catches_the_helpers_errors() -> None:
    app = FastAPI()
    admin_only = require_scopes("admin")

    @app.get("/v1/caught")
    def caught(request: Request) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, helper in (("verify", verify_api_key), ("scopes", admin_only)):
            try:
                helper(request)
            except fastapi.HTTPException as error:  # the template's handlers caught this
                found[name] = [error.status_code, (error.headers or {})["WWW-Authenticate"]]
        return found

    app.add_middleware(APIKeyMiddleware, keys=[CANARY], default="public")
    with TestClient(app) as client:
        assert client.get("/v1/caught").json() == {
            "verify": [401, "Bearer"],
            "scopes": [401, "Bearer"],
        }
        scoped = client.get("/v1/caught", headers=bearer(CANARY)).json()
        assert scoped["scopes"][0] == 403
        assert 'error="insufficient_scope"' in scoped["scopes"][1]
        assert list(scoped) == ["scopes"]
    for error_class in (AuthenticationError, AuthorizationError):
        assert issubclass(error_class, fastapi.HTTPException)
        assert issubclass(error_class, starlette.exceptions.HTTPException)


def test_an_uncaught_helper_error_is_fastapis_http_exception_response() -> None:
    with TestClient(template_app(keys=[CANARY], default="public")) as client:
        response = client.get("/v1/models")
        assert response.status_code == 401
        assert response.json() == {"detail": "Missing API key"}
        assert response.headers["www-authenticate"] == "Bearer"


def test_verify_api_key_http_is_verify_api_key() -> None:
    # The template's wrapper turned its errors into HTTPException; these are one already.
    assert compat.verify_api_key_http is verify_api_key
    app = FastAPI()

    @app.get("/v1/http")
    def http(auth: Annotated[AuthContext, Depends(compat.verify_api_key_http)]) -> dict[str, Any]:
        return {"key_id": auth.key_id}

    app.add_middleware(APIKeyMiddleware, keys=[CANARY], default="public")
    with TestClient(app) as client:
        assert client.get("/v1/http").status_code == 401
        assert client.get("/v1/http", headers=bearer(CANARY)).json() == {
            "key_id": APIKey(CANARY).key_id
        }


def test_without_fastapi_the_errors_are_starlettes_http_exception() -> None:
    # A Starlette-only install: 'import fastapi' fails, the package still imports, and
    # the errors are Starlette's HTTPException.
    script = textwrap.dedent(
        """
        import sys
        sys.modules["fastapi"] = None  # import fastapi raises ImportError from here on
        import starlette.exceptions
        import asgi_apikey
        from asgi_apikey import AuthenticationError, AuthorizationError, compat
        for error in (AuthenticationError, AuthorizationError):
            assert issubclass(error, starlette.exceptions.HTTPException), error.__mro__
            assert all(c.__module__.split(".")[0] != "fastapi" for c in error.__mro__)
        error = AuthenticationError("Missing API key", www_authenticate="Bearer")
        assert (error.status_code, error.headers) == (401, {"WWW-Authenticate": "Bearer"})
        assert compat.verify_api_key_http is asgi_apikey.verify_api_key
        assert sys.modules["fastapi"] is None
        print("starlette-only")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "starlette-only"


# ============================================================= whitespace around API_KEY


@pytest.mark.parametrize(
    "padded",
    [
        pytest.param(f" {CANARY}", id="leading-space"),
        pytest.param(f"{CANARY}\n", id="trailing-newline"),
        pytest.param(f"\t{CANARY} \r\n", id="both"),
    ],
)
def test_whitespace_around_the_keys_is_stripped(
    monkeypatch: pytest.MonkeyPatch, padded: str
) -> None:
    monkeypatch.setenv("API_KEY", padded)
    monkeypatch.setenv("ADDITIONAL_API_KEYS", f"  {OTHER_KEY} ,\t{THIRD_KEY}\n")
    with capture_logs() as logs, TestClient(template_app()) as client:
        for key in (CANARY, OTHER_KEY, THIRD_KEY):
            assert client.get("/v1/models", headers=bearer(key)).json() == {
                "key_id": APIKey(key).key_id,
                "mode": "simple",
            }
        assert client.get("/v1/models", headers=bearer(UNKNOWN_KEY)).status_code == 401
    no_canary_in([repr(event) for event in logs], OTHER_KEY, THIRD_KEY)
    assert repr(AuthSettings()).count("SecretStr('**********')") == 2


def observed(monkeypatch: pytest.MonkeyPatch, value: str) -> tuple[object, ...]:
    """What an authenticator and an app built with ``API_KEY=value`` do, and log."""
    monkeypatch.setenv("API_KEY", value)
    with capture_logs() as logs:
        auth = APIKeyAuth.from_env()
    app = FastAPI()
    app.add_middleware(APIKeyMiddleware, auth=auth)
    with TestClient(app) as client:
        status = client.get("/v1/models").status_code
    return (
        auth.is_development_mode,
        auth.key_ids,
        auth.empty_key_variables(),
        [(event["event"], event.get("detail")) for event in logs],
        status,
    )


@pytest.mark.parametrize("blank", [" ", "   ", "\n", " \t\r\n "], ids=repr)
def test_a_key_variable_of_whitespace_only_is_like_an_empty_one(
    monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    # A missing secret (API_KEY=${API_KEY} unset, a secret file of one newline) refuses
    # every protected request, as API_KEY= does; the template fell into development mode.
    empty = observed(monkeypatch, "")
    assert empty[:3] == (False, (), ("API_KEY",))
    assert empty[4] == 401
    assert "API_KEY is set but empty" in str(empty[3])
    assert observed(monkeypatch, blank) == empty
    monkeypatch.delenv("API_KEY")
    monkeypatch.setenv("ADDITIONAL_API_KEYS", blank)
    assert APIKeyAuth.from_env().empty_key_variables() == ("ADDITIONAL_API_KEYS",)


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        pytest.param("API_KEY", f" {CANARY[:9]} {CANARY[9:]} ", "API_KEY: ", id="inner-space"),
        pytest.param("API_KEY", f"{CANARY[:9]}\t{CANARY[9:]}\n", "API_KEY: ", id="inner-tab"),
        pytest.param("API_KEY", f" {CANARY}\x07", "API_KEY: ", id="control-character"),
        pytest.param("API_KEY", f"\x1b{CANARY} ", "API_KEY: ", id="escape-first"),
        pytest.param(
            "ADDITIONAL_API_KEYS",
            f" {OTHER_KEY} , {CANARY}\x01 ",
            "ADDITIONAL_API_KEYS (key 2): ",
            id="additional-control-character",
        ),
    ],
)
def test_what_is_left_after_stripping_is_checked_as_before(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        APIKeyAuth.from_env()
    assert str(info.value).startswith(fragment)
    assert "characters a Bearer token cannot carry" in str(info.value)
    assert info.value.context["setting"] == fragment.rstrip(": ")
    no_canary_in([text for _, text in error_texts(info.value)], OTHER_KEY)


# ===================================================== metadata in simple mode, from anywhere


def metadata_through(app: FastAPI, key: str = CANARY) -> Any:
    with TestClient(app) as client:
        return client.get("/v1/metadata", headers=bearer(key)).json()


def test_metadata_given_in_code_is_carried_in_simple_mode() -> None:
    # It was a ConfigurationError unless AUTH_MODE=advanced.
    key = APIKey(CANARY, name="billing", metadata={"team": "payments", "tier": 2})
    auth = APIKeyAuth(keys=[key])
    assert auth.mode == "simple"
    assert metadata_through(template_app(auth=auth))["metadata"] == {"team": "payments", "tier": 2}
    auth.add_key(APIKey(OTHER_KEY, name="ci", metadata={"team": "ci"}))
    assert metadata_through(template_app(auth=auth), OTHER_KEY)["metadata"] == {"team": "ci"}


def test_metadata_from_the_key_file_is_carried_in_simple_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(
        f'[[keys]]\ndigest = "{APIKey(CANARY).digest}"\nname = "billing"\n'
        'metadata = { team = "payments" }\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("API_KEYS_FILE", str(path))
    assert metadata_through(template_app()) == {
        "key_id": "billing",
        "scopes": ["authenticated"],
        "metadata": {"team": "payments"},
    }
    assert metadata_through(template_app(auth=APIKeyAuth(keys_file=path)))["metadata"] == {
        "team": "payments"
    }


def test_metadata_from_the_redis_store_is_carried_in_simple_mode(tmp_path: Path) -> None:
    # It was dropped silently in simple mode.
    with running_redis(tmp_path) as redis:
        add_key(redis.url, APIKey(CANARY, name="pro", metadata={"tier": "pro", "rpm": [60]}))
        auth = APIKeyAuth(source=RedisKeySource(redis.url))
        assert auth.mode == "simple"
        assert metadata_through(template_app(auth=auth)) == {
            "key_id": "pro",
            "scopes": ["authenticated"],
            "metadata": {"tier": "pro", "rpm": [60]},
        }


# ========================================================= AuthConfig and the module's functions

FLAG_SETTINGS = [
    pytest.param({}, id="defaults"),
    pytest.param({"AUTH_MODE": "advanced"}, id="advanced"),
    pytest.param({"AUTH_MODE": "advanced", "ENABLE_USER_TRACKING": "false"}, id="advanced-quiet"),
    pytest.param({"ENABLE_USER_TRACKING": "true", "ENABLE_REQUEST_LOGGING": "1"}, id="flags"),
]


@pytest.mark.parametrize("env", FLAG_SETTINGS)
def test_auth_settings_answer_as_the_template_auth_config_did(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = AuthSettings()
    advanced = env.get("AUTH_MODE") == "advanced"
    tracking = {"true": True, "false": False}.get(env.get("ENABLE_USER_TRACKING", ""), advanced)
    assert settings.simple_mode is not advanced
    assert settings.user_tracking is tracking
    assert settings.supports_user_context is advanced
    assert settings.supports_permissions is True
    assert settings.supports_rate_limiting is False
    info = settings.get_auth_info()
    assert info == {
        "mode": "advanced" if advanced else "simple",
        "features": {
            "user_context": advanced,
            "permissions": True,
            "rate_limiting": False,
            "user_tracking": tracking,
            "request_logging": "ENABLE_REQUEST_LOGGING" in env,
        },
    }
    # The same answers from compat.AuthConfig, the authenticator and get_auth_status.
    config = AuthConfig()
    assert (config.simple_mode, config.enable_user_tracking, config.enable_request_logging) == (
        settings.simple_mode,
        settings.user_tracking,
        settings.enable_request_logging,
    )
    assert (
        config.supports_user_context,
        config.supports_permissions,
        config.supports_rate_limiting,
    ) == (advanced, True, False)
    assert config.get_auth_info() == info
    auth = APIKeyAuth.from_env()
    assert get_auth_status()["auth_config"] == info == AuthConfig.of(auth).get_auth_info()
    assert {name: auth.features()[name] for name in info["features"]} == info["features"]
    for name, on in info["features"].items():
        assert supports_feature(name) is on


def test_auth_config_reads_a_settings_subclass_and_may_be_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic_settings import SettingsConfigDict

    class MyAppSettings(AuthSettings):
        model_config = SettingsConfigDict(env_prefix="MYAPP_")

    monkeypatch.setenv("MYAPP_AUTH_MODE", "advanced")
    config = AuthConfig(MyAppSettings)
    assert not config.simple_mode
    config.simple_mode = True  # the template's tests set its attributes
    assert not config.supports_user_context
    assert config.get_auth_info()["mode"] == "simple"
    assert repr(config) == (
        "AuthConfig(simple_mode=True, enable_user_tracking=True, enable_request_logging=False)"
    )


def test_the_module_functions_ask_the_authenticator_given_or_the_default() -> None:
    keyed = APIKeyAuth(keys=[CANARY])
    assert not is_development_mode(keyed)
    assert is_development_mode()  # built from the (empty) environment: development mode
    assert is_development_mode(APIKeyAuth())
    APIKeyMiddleware(FastAPI(), auth=keyed)  # the middleware built last is the default
    assert not is_development_mode()
    assert compat.verify_api_key_string(CANARY)
    assert not compat.verify_api_key_string(None)  # type: ignore[arg-type]
    assert get_auth_status() == {
        "auth_config": AuthConfig.of(keyed).get_auth_info(),
        "api_keys_configured": 1,
        "development_mode": False,
    }


def test_supports_feature_answers_false_for_a_name_it_does_not_know() -> None:
    auth = APIKeyAuth(keys=[CANARY])
    assert supports_feature("teleport", auth) is False  # as the template answered
    with pytest.raises(ValueError, match="unknown feature 'teleport'"):
        auth.supports("teleport")  # the strict form, for new code


def test_every_counterpart_is_importable_from_compat_under_the_template_name() -> None:
    for name in COUNTERPARTS:
        assert name in compat.__all__, name
        assert getattr(compat, name) is not None


def test_the_guide_names_every_name_of_the_template_module() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    mapping = guide.split("## Behaviour changes", 1)[0]
    for name in (*TEMPLATE_NAMES, *TEMPLATE_MEMBERS):
        assert re.search(rf"`[^`]*\b{re.escape(name)}\b[^`]*`", mapping), name


#: The restore line of each behaviour change the issue and the guide name.
RESTORE_LINES = (
    'header_name="X-API-Key"',
    'default="public"',
    'public=["/health", "/docs", "/redoc", "/openapi.json"]',
    'optional=["/v1/catalog"]',
    "ADDITIONAL_API_KEYS=test-api-key-12345",
    "ENVIRONMENT=development",
    'security_headers={"Content-Security-Policy": None}',
    "ENABLE_USER_TRACKING=false",
    "APIKey(key, metadata=",
    "verify_api_key_http",
    "compat.AuthConfig",
)


def test_the_readme_and_the_guide_give_each_restore_line() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Migrating from the starter template", 1)[1].split("\n## ", 1)[0]
    guide = GUIDE.read_text(encoding="utf-8")
    for line in RESTORE_LINES:
        assert line in section, line
        assert line in guide, line
    for topic in ("HTTPException", "API_KEY", "AuthConfig", "metadata", "optional_verify_api_key"):
        assert topic in section, topic
