"""Configuration from the environment: every variable, the key file, production refusals.

Each test sets the variables it needs with ``monkeypatch`` (conftest.py clears
them all first). Error messages are checked for naming the variable and the fix,
and for holding no key anywhere: message, repr, context, chained exceptions or (for
the environment and the key file) the locals of the frames an error passed through.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import string
import threading
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_settings import SettingsConfigDict
from structlog.testing import capture_logs

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware, AuthSettings, ConfigurationError
from asgi_apikey.keys import Accepted, Rejected
from asgi_apikey.settings import environment_keys, load_key_file, read_settings, variable
from tests.asgi import (
    AUTH_VARIABLES,
    CANARY,
    OTHER_KEY,
    Recorder,
    bearer,
    call,
    chain,
    error_texts,
    http_scope,
    plain_digest,
)

THIRD_KEY = "sk-third-9z8y7x6w5v4u3t2s1r0q"
#: Shorter than the 16 characters production demands.
SHORT_KEY = "sk-short-key"
#: The environments that refuse development mode and short plain keys.
STRICT = ("production", "staging")
#: Exactly 16 characters: the shortest key production accepts.
SIXTEEN = "sk-0123456789abc"
FIFTEEN = SIXTEEN[:-1]

Builder = Callable[[], APIKeyAuth]


# --------------------------------------------------------------------------- helpers


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    """No trace of the secrets (nor of any 8-character run of one) in the error chain."""
    needles = {CANARY}
    for secret in secrets:
        needles |= {secret, secret.strip()}
        needles |= set(re.findall(r"[A-Za-z0-9._~+/-]{8,}", secret))
    needles = {needle for needle in needles if any(c.isalnum() for c in needle)}  # not " , "
    for name, text in error_texts(error):
        for needle in needles:
            assert needle not in text, f"secret leaked by {name}: {text}"


def raised(action: Callable[[], object]) -> ConfigurationError:
    """The ConfigurationError ``action`` raises, caught in a frame that holds no secret."""
    try:
        action()
    except ConfigurationError as error:
        return error
    raise AssertionError("no ConfigurationError was raised")


def assert_raised_outside_except_blocks(error: BaseException, *secrets: str) -> None:
    """No chained exception, and no frame of the traceback holds a secret in its locals.

    Error reporters (Sentry and the like) record __context__ and every frame's locals.
    """
    assert error.__context__ is None, repr(error.__context__)
    assert error.__cause__ is None, repr(error.__cause__)
    assert list(chain(error)) == [error]
    assert error.__traceback__ is not None
    text = "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())
    assert "raise ConfigurationError" in text  # the locals were captured: frames are there
    for secret in (CANARY, *secrets):
        assert secret not in text, f"{secret!r} in the traceback:\n{text}"
    assert_no_secret(error, *secrets)


def raises_config(action: Callable[[], object], *fragments: str) -> ConfigurationError:
    """Run ``action``, expect a ConfigurationError whose message holds every fragment."""
    with pytest.raises(ConfigurationError) as info:
        action()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return info.value


def secrets_of(env: dict[str, str]) -> list[str]:
    """The values of the variables that hold keys (the others may be quoted in errors)."""
    return [value for name, value in env.items() if name.endswith(("API_KEY", "API_KEYS"))]


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def via_middleware() -> APIKeyAuth:
    """The authenticator APIKeyMiddleware builds when given neither keys nor auth."""
    return APIKeyMiddleware(Recorder()).auth


BUILDERS = [
    pytest.param(APIKeyAuth.from_env, id="from_env"),
    pytest.param(APIKeyAuth, id="APIKeyAuth()"),
    pytest.param(via_middleware, id="middleware"),
]


def status(app: APIKeyMiddleware, token: str | None = None) -> int:
    headers = [bearer(token)] if token is not None else []
    return call(app, http_scope("/", headers=headers)).status


def write(tmp_path: Path, content: str | bytes, name: str = "keys.toml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """Seconds since the epoch of a UTC date-time."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


# A complete key file: two keys with names, scopes, metadata and a validity window.
VALID_FILE = f"""
# keys for the billing service
[[keys]]
digest = "{plain_digest(CANARY)}"
name = "billing"
scopes = ["read", "write"]
metadata = {{ team = "payments", tier = 2 }}
not_before = 2026-01-01T00:00:00Z
expires_at = 2027-01-01T00:00:00+02:00

[[keys]]
digest = "{plain_digest(OTHER_KEY).upper().replace("SHA256:", "sha256:")}"
name = "ci"
"""

# A valid first entry, so that a bad second one is reported as keys[1].
FIRST_ENTRY = f"""
[[keys]]
digest = "{plain_digest(OTHER_KEY)}"
name = "first"
"""


# ------------------------------------------------------------ the variables, one by one


@pytest.mark.parametrize("build", BUILDERS)
def test_api_key_is_enforced(monkeypatch: pytest.MonkeyPatch, build: Builder) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    auth = build()
    assert not auth.is_development_mode
    assert len(auth.key_ids) == 1
    assert auth.verify(CANARY) is not None
    assert auth.verify(OTHER_KEY) is None
    assert CANARY not in repr(auth) + repr(auth.status())


def test_api_key_through_the_middleware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    recorder = Recorder()
    app = APIKeyMiddleware(recorder)
    assert status(app) == 401
    assert status(app, OTHER_KEY) == 401
    result = call(app, http_scope("/", headers=[bearer(CANARY)]), recorder)
    assert result.status == 200
    assert result.seen is not None
    assert result.seen["auth"].authenticated
    assert result.seen["auth"].mode == "simple"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(f"{OTHER_KEY},{THIRD_KEY}", id="plain"),
        pytest.param(f"  {OTHER_KEY} ,   {THIRD_KEY}  ", id="spaces"),
        pytest.param(f",{OTHER_KEY},, ,{THIRD_KEY},", id="empty-items"),
        pytest.param(f"\t{OTHER_KEY}\t,\t{THIRD_KEY}", id="tabs"),
    ],
)
@pytest.mark.parametrize("build", BUILDERS)
def test_additional_api_keys_comma_separated(
    monkeypatch: pytest.MonkeyPatch, build: Builder, value: str
) -> None:
    monkeypatch.setenv("ADDITIONAL_API_KEYS", value)
    auth = build()
    assert len(auth.key_ids) == 2
    assert auth.verify(OTHER_KEY) is not None
    assert auth.verify(THIRD_KEY) is not None
    assert auth.verify(CANARY) is None
    assert auth.verify("") is None


def test_additional_api_keys_are_labelled_by_position_skipping_empty_items(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("ADDITIONAL_API_KEYS", f" , {OTHER_KEY},,{THIRD_KEY} ,")
    labelled = environment_keys(read_settings())
    assert [label for label, _ in labelled] == [
        "API_KEY",
        "ADDITIONAL_API_KEYS (key 1)",
        "ADDITIONAL_API_KEYS (key 2)",
    ]
    assert [key.digest for _, key in labelled] == [
        plain_digest(CANARY),
        plain_digest(OTHER_KEY),
        plain_digest(THIRD_KEY),
    ]


@pytest.mark.parametrize("build", BUILDERS)
def test_api_key_and_additional_api_keys_together(
    monkeypatch: pytest.MonkeyPatch, build: Builder
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("ADDITIONAL_API_KEYS", f"{OTHER_KEY}, {THIRD_KEY}")
    auth = build()
    assert len(auth.key_ids) == 3
    for key in (CANARY, OTHER_KEY, THIRD_KEY):
        assert auth.verify(key) is not None
    assert auth.verify(SIXTEEN) is None


def test_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("api_key", CANARY)
    monkeypatch.setenv("auth_mode", "advanced")
    auth = APIKeyAuth.from_env()
    assert auth.verify(CANARY) is not None
    assert auth.mode == "advanced"


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        pytest.param("simple", "simple", id="simple"),
        pytest.param("advanced", "advanced", id="advanced"),
        pytest.param("ADVANCED", "advanced", id="ADVANCED"),
        pytest.param("Simple", "simple", id="Simple"),
        pytest.param("  Advanced ", "advanced", id="padded"),
    ],
)
@pytest.mark.parametrize("build", BUILDERS)
def test_auth_mode(monkeypatch: pytest.MonkeyPatch, build: Builder, value: str, mode: str) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("AUTH_MODE", value)
    auth = build()
    assert auth.mode == mode
    context = auth.verify(CANARY)
    assert context is not None
    assert context.mode == mode
    assert auth.supports("metadata")


def test_auth_mode_defaults_to_simple(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    auth = APIKeyAuth.from_env()
    assert auth.mode == "simple"
    assert auth.supports("metadata")  # carried in every mode


TRUE_VALUES = ["true", "TRUE", "True", "1", "yes", "YES", "on"]
FALSE_VALUES = ["false", "FALSE", "0", "no", "No", "off"]
FLAG_VALUES = [pytest.param(v, True, id=f"{v}-on") for v in TRUE_VALUES] + [
    pytest.param(v, False, id=f"{v}-off") for v in FALSE_VALUES
]


@pytest.mark.parametrize(
    ("variable_name", "feature"),
    [
        pytest.param("ENABLE_USER_TRACKING", "user_tracking", id="user_tracking"),
        pytest.param("ENABLE_REQUEST_LOGGING", "request_logging", id="request_logging"),
    ],
)
@pytest.mark.parametrize(("value", "expected"), FLAG_VALUES)
def test_feature_flags(
    monkeypatch: pytest.MonkeyPatch, variable_name: str, feature: str, value: str, expected: bool
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv(variable_name, value)
    for build in (APIKeyAuth.from_env, APIKeyAuth, via_middleware):
        assert build().supports(feature) is expected


@pytest.mark.parametrize(
    ("env", "tracking", "logging"),
    [
        pytest.param({}, False, False, id="simple-default-off"),
        pytest.param({"AUTH_MODE": "advanced"}, True, False, id="advanced-tracking-on"),
        pytest.param(
            {"AUTH_MODE": "advanced", "ENABLE_USER_TRACKING": "false"},
            False,
            False,
            id="advanced-tracking-turned-off",
        ),
        pytest.param(
            {"AUTH_MODE": "simple", "ENABLE_USER_TRACKING": "yes"},
            True,
            False,
            id="simple-tracking-turned-on",
        ),
        pytest.param(
            {"AUTH_MODE": "advanced", "ENABLE_REQUEST_LOGGING": "1"},
            True,
            True,
            id="advanced-logging-on",
        ),
    ],
)
def test_feature_flag_defaults_follow_the_mode(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], tracking: bool, logging: bool
) -> None:
    set_env(monkeypatch, {"API_KEY": CANARY, **env})
    auth = APIKeyAuth.from_env()
    assert auth.supports("user_tracking") is tracking
    assert auth.supports("request_logging") is logging


@pytest.mark.parametrize(
    ("value", "environment"),
    [
        pytest.param(None, "development", id="unset"),
        pytest.param("development", "development", id="development"),
        pytest.param("testing", "testing", id="testing"),
        pytest.param("staging", "staging", id="staging"),
        pytest.param("production", "production", id="production"),
        pytest.param("PRODUCTION", "production", id="PRODUCTION"),
        pytest.param(" Staging ", "staging", id="padded-Staging"),
    ],
)
@pytest.mark.parametrize("build", BUILDERS)
def test_environment(
    monkeypatch: pytest.MonkeyPatch, build: Builder, value: str | None, environment: str
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    if value is not None:
        monkeypatch.setenv("ENVIRONMENT", value)
    auth = build()
    assert auth.environment == environment
    assert auth.status()["environment"] == environment
    assert auth.verify(CANARY) is not None


@pytest.mark.parametrize("build", BUILDERS)
def test_api_keys_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, build: Builder) -> None:
    monkeypatch.setenv("API_KEYS_FILE", str(write(tmp_path, VALID_FILE)))
    monkeypatch.setenv("AUTH_MODE", "advanced")
    auth = build()
    assert auth.supports("key_file")
    assert sorted(auth.key_ids) == ["billing", "ci"]
    assert auth.verify(OTHER_KEY) is not None
    assert auth.verify(THIRD_KEY) is None


def test_no_key_file_is_reported_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    assert not APIKeyAuth.from_env().supports("key_file")


@pytest.mark.parametrize("environment", [None, "development", "testing"])
def test_no_keys_is_development_mode_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, environment: str | None
) -> None:
    if environment is not None:
        monkeypatch.setenv("ENVIRONMENT", environment)
    recorder = Recorder()
    with capture_logs() as logs:
        app = APIKeyMiddleware(recorder)
    assert [entry["event"] for entry in logs] == ["development_mode"]
    assert logs[0]["log_level"] == "warning"
    assert "API_KEY" in logs[0]["detail"]
    # Nobody asked for development (no ENVIRONMENT): it serves this machine only.
    assert logs[0]["access"] == ("local" if environment is None else "open")
    assert app.auth.is_development_mode
    result = call(app, http_scope("/", headers=[bearer(CANARY)]), recorder)
    assert result.status == 200
    assert result.seen is not None
    assert not result.seen["auth"].authenticated
    assert result.seen["auth"].mode == "test"  # under pytest


def test_settings_repr_holds_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("ADDITIONAL_API_KEYS", f"{OTHER_KEY},{THIRD_KEY}")
    settings = read_settings()
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == CANARY
    text = repr(settings) + str(settings) + repr(settings.model_dump())
    for key in (CANARY, OTHER_KEY, THIRD_KEY):
        assert key not in text


# ------------------------------------------------------ read once, at construction


def test_environment_is_read_once_until_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    auth = APIKeyAuth.from_env()
    monkeypatch.setenv("API_KEY", OTHER_KEY)
    monkeypatch.setenv("ADDITIONAL_API_KEYS", THIRD_KEY)
    assert auth.verify(CANARY) is not None
    assert auth.verify(OTHER_KEY) is None
    assert auth.verify(THIRD_KEY) is None

    changes = auth.reload()
    assert changes.added == tuple(sorted([APIKey(OTHER_KEY).key_id, APIKey(THIRD_KEY).key_id]))
    assert changes.removed == (APIKey(CANARY).key_id,)
    assert auth.verify(CANARY) is None
    assert auth.verify(OTHER_KEY) is not None
    assert auth.verify(THIRD_KEY) is not None


def test_middleware_reads_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    app = APIKeyMiddleware(Recorder())
    monkeypatch.setenv("API_KEY", OTHER_KEY)
    assert status(app, CANARY) == 200
    assert status(app, OTHER_KEY) == 401
    app.auth.reload()
    assert status(app, CANARY) == 401
    assert status(app, OTHER_KEY) == 200


def test_development_mode_lasts_until_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    app = APIKeyMiddleware(Recorder())
    monkeypatch.setenv("API_KEY", CANARY)
    assert status(app) == 200  # still built without keys
    app.auth.reload()
    assert not app.auth.is_development_mode
    assert status(app) == 401
    assert status(app, CANARY) == 200


def test_reload_keeps_the_mode_environment_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    auth = APIKeyAuth.from_env()
    monkeypatch.setenv("AUTH_MODE", "advanced")
    monkeypatch.setenv("ENVIRONMENT", "staging")
    monkeypatch.setenv("ENABLE_REQUEST_LOGGING", "true")
    auth.reload()
    assert auth.mode == "simple"
    assert auth.environment == "development"
    assert not auth.supports("request_logging")
    context = auth.verify(CANARY)
    assert context is not None
    assert context.mode == "simple"


def test_a_failed_reload_keeps_the_current_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    auth = APIKeyAuth.from_env()
    bad = OTHER_KEY + " x"
    monkeypatch.setenv("API_KEY", bad)
    error = raises_config(auth.reload, "API_KEY")
    assert_no_secret(error, bad)
    assert auth.verify(CANARY) is not None


# ------------------------------------------------- explicit arguments win over variables


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: APIKeyAuth(keys=[OTHER_KEY]), id="keys"),
        pytest.param(lambda: APIKeyAuth([APIKey(OTHER_KEY, name="o")]), id="APIKey"),
        pytest.param(lambda: APIKeyMiddleware(Recorder(), keys=[OTHER_KEY]).auth, id="middleware"),
    ],
)
def test_explicit_keys_replace_environment_keys(
    monkeypatch: pytest.MonkeyPatch, build: Builder
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("ADDITIONAL_API_KEYS", THIRD_KEY)
    auth = build()
    assert auth.verify(OTHER_KEY) is not None
    assert auth.verify(CANARY) is None
    assert auth.verify(THIRD_KEY) is None
    assert len(auth.key_ids) == 1


def test_explicit_keys_replace_environment_keys_in_the_middleware(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    app = APIKeyMiddleware(Recorder(), keys=[OTHER_KEY])
    assert status(app, CANARY) == 401
    assert status(app, OTHER_KEY) == 200


def test_explicit_key_file_replaces_environment_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("API_KEY", THIRD_KEY)
    monkeypatch.setenv("AUTH_MODE", "advanced")
    auth = APIKeyAuth(keys_file=write(tmp_path, VALID_FILE))
    assert auth.verify(OTHER_KEY) is not None
    assert auth.verify(THIRD_KEY) is None


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"API_KEY": CANARY + " x"}, id="bad-API_KEY"),
        pytest.param({"ADDITIONAL_API_KEYS": f"{CANARY},{CANARY}"}, id="duplicate-additional"),
        pytest.param({"API_KEYS_FILE": "/nonexistent/keys.toml"}, id="missing-file"),
    ],
)
def test_explicit_keys_leave_environment_keys_unread(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    set_env(monkeypatch, env)
    auth = APIKeyAuth(keys=[OTHER_KEY])
    assert auth.key_ids == (APIKey(OTHER_KEY).key_id,)
    assert not auth.supports("key_file")


def test_explicit_keys_still_follow_the_other_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        {"AUTH_MODE": "advanced", "ENVIRONMENT": "production", "ENABLE_REQUEST_LOGGING": "on"},
    )
    auth = APIKeyAuth(keys=[OTHER_KEY])
    assert auth.mode == "advanced"
    assert auth.environment == "production"
    assert auth.supports("request_logging")
    assert auth.supports("user_tracking")


@pytest.mark.parametrize(
    ("env", "kwargs", "check"),
    [
        pytest.param(
            {"AUTH_MODE": "fancy"},
            {"mode": "advanced"},
            lambda a: a.mode == "advanced",
            id="mode-over-invalid",
        ),
        pytest.param(
            {"AUTH_MODE": "advanced"},
            {"mode": "simple"},
            lambda a: a.mode == "simple" and not a.supports("user_tracking"),
            id="mode-over-valid",
        ),
        pytest.param(
            {"ENVIRONMENT": "prod"},
            {"environment": "staging"},
            lambda a: a.environment == "staging",
            id="environment-over-invalid",
        ),
        pytest.param(
            {"ENVIRONMENT": "staging"},
            {"environment": "production"},
            lambda a: a.environment == "production",
            id="environment-over-valid",
        ),
        pytest.param(
            {"ENABLE_USER_TRACKING": "maybe"},
            {"user_tracking": True},
            lambda a: a.supports("user_tracking"),
            id="user_tracking-over-invalid",
        ),
        pytest.param(
            {"AUTH_MODE": "advanced", "ENABLE_USER_TRACKING": "true"},
            {"user_tracking": False},
            lambda a: not a.supports("user_tracking"),
            id="user_tracking-over-valid",
        ),
        pytest.param(
            {"ENABLE_REQUEST_LOGGING": "sometimes"},
            {"request_logging": False},
            lambda a: not a.supports("request_logging"),
            id="request_logging-over-invalid",
        ),
        pytest.param(
            {"ENABLE_REQUEST_LOGGING": "false"},
            {"request_logging": True},
            lambda a: a.supports("request_logging"),
            id="request_logging-over-valid",
        ),
    ],
)
@pytest.mark.parametrize(
    "factory",
    [
        pytest.param(APIKeyAuth.from_env, id="from_env"),
        pytest.param(APIKeyAuth, id="APIKeyAuth"),
    ],
)
def test_constructor_arguments_win_over_variables(
    monkeypatch: pytest.MonkeyPatch,
    factory: Callable[..., APIKeyAuth],
    env: dict[str, str],
    kwargs: dict[str, Any],
    check: Callable[[APIKeyAuth], bool],
) -> None:
    set_env(monkeypatch, {"API_KEY": CANARY, **env})
    auth = factory(**kwargs)
    assert check(auth)
    assert auth.verify(CANARY) is not None


def test_environment_argument_lifts_the_production_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    auth = APIKeyAuth.from_env(environment="development")
    assert auth.is_development_mode
    assert auth.environment == "development"


# ------------------------------------------------------------- empty counts as unset

KEY_VARIABLES = ("API_KEY", "ADDITIONAL_API_KEYS", "API_KEYS_FILE")


@pytest.mark.parametrize(
    "name",
    [name for name in AUTH_VARIABLES if name not in KEY_VARIABLES],
)
@pytest.mark.parametrize("build", BUILDERS)
def test_empty_variable_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, build: Builder, name: str
) -> None:
    monkeypatch.setenv(name, "")
    auth = build()
    assert auth.is_development_mode
    assert auth.key_ids == ()
    assert auth.environment == "development"
    assert auth.mode == "test"
    for feature in ("key_file", "user_tracking", "request_logging"):
        assert not auth.supports(feature), feature


@pytest.mark.parametrize("name", KEY_VARIABLES)
@pytest.mark.parametrize("build", BUILDERS)
def test_an_empty_key_variable_is_a_key_source_that_holds_no_key(
    monkeypatch: pytest.MonkeyPatch, build: Builder, name: str
) -> None:
    monkeypatch.setenv(name, "")
    with capture_logs() as logs:
        auth = build()
    assert not auth.is_development_mode
    assert auth.key_ids == ()
    assert [entry["event"] for entry in logs] == ["no_keys"]


def test_empty_api_key_next_to_a_real_additional_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "")
    monkeypatch.setenv("ADDITIONAL_API_KEYS", OTHER_KEY)
    auth = APIKeyAuth.from_env()
    assert auth.key_ids == (APIKey(OTHER_KEY).key_id,)


def test_empty_api_key_in_production_is_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "")
    monkeypatch.setenv("ENVIRONMENT", "production")
    raises_config(
        APIKeyAuth.from_env,
        "no API key is configured (API_KEY, ADDITIONAL_API_KEYS and API_KEYS_FILE hold none)",
        "ENVIRONMENT=production refuses to start that way",
    )


def test_only_empty_items_in_additional_api_keys_is_no_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A variable that names a key source but holds no key enforces zero keys: every
    # protected request is refused, never let through as in development mode.
    monkeypatch.setenv("ADDITIONAL_API_KEYS", " , ,, ")
    with capture_logs() as logs:
        app = APIKeyMiddleware(Recorder())
    assert [entry["event"] for entry in logs] == ["no_keys"]
    assert logs[0]["log_level"] == "warning"
    assert not app.auth.is_development_mode
    assert app.auth.key_ids == ()
    assert app.auth.mode == "simple"
    assert status(app) == 401
    assert status(app, CANARY) == 401
    assert app.auth.verify(CANARY) is None


def test_only_empty_items_in_additional_api_keys_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADDITIONAL_API_KEYS", ", ,")
    monkeypatch.setenv("ENVIRONMENT", "production")
    with capture_logs() as logs:
        raises_config(
            APIKeyAuth.from_env, "hold none", "ENVIRONMENT=production refuses to start that way"
        )
    assert logs == []


# -------------------------------------------------------------------------- bad values


BAD_VALUES = [
    pytest.param(
        {"AUTH_MODE": "fancy"}, ["AUTH_MODE", "'simple' or 'advanced'", "fancy"], id="AUTH_MODE"
    ),
    pytest.param(
        {"ENVIRONMENT": "prod"},
        ["ENVIRONMENT", "one of development, testing, staging, production", "prod"],
        id="ENVIRONMENT",
    ),
    pytest.param(
        {"ENABLE_USER_TRACKING": "maybe"},
        ["ENABLE_USER_TRACKING", "true or false", "yes/no"],
        id="ENABLE_USER_TRACKING",
    ),
    pytest.param(
        {"ENABLE_REQUEST_LOGGING": "2"},
        ["ENABLE_REQUEST_LOGGING", "true or false"],
        id="ENABLE_REQUEST_LOGGING",
    ),
    pytest.param(
        {"API_KEY": CANARY[:10] + " " + CANARY[10:]},
        ["API_KEY:", "characters a Bearer token cannot carry", "letters, digits"],
        id="API_KEY-inner-space",
    ),
    pytest.param(
        # Surrounding whitespace is stripped (test_migration.py); a control character
        # left after it is still refused.
        {"API_KEY": " " + CANARY + "\x07\n"},
        ["API_KEY:", "characters a Bearer token cannot carry"],
        id="API_KEY-control-character",
    ),
    pytest.param(
        {"API_KEY": CANARY + "!"},
        ["API_KEY:", "characters a Bearer token cannot carry"],
        id="API_KEY-bang",
    ),
    pytest.param(
        {"API_KEY": CANARY + "é"},
        ["API_KEY:", "characters a Bearer token cannot carry"],
        id="API_KEY-non-ascii",
    ),
    pytest.param(
        {"API_KEY": f"{CANARY},{OTHER_KEY}"},
        ["API_KEY:", "several keys?", "comma-separated, in ADDITIONAL_API_KEYS"],
        id="API_KEY-comma",
    ),
    pytest.param(
        {"API_KEY": f"{CANARY}, {OTHER_KEY}"},
        ["API_KEY:", "comma-separated, in ADDITIONAL_API_KEYS"],
        id="API_KEY-comma-space",
    ),
    pytest.param(
        {"API_KEY": "sha256:" + hashlib.sha256(CANARY.encode()).hexdigest()},
        ["API_KEY:", "looks like a digest"],
        id="API_KEY-digest",
    ),
    pytest.param(
        {"ADDITIONAL_API_KEYS": f"{OTHER_KEY}, {CANARY}!"},
        ["ADDITIONAL_API_KEYS (key 2):", "characters a Bearer token cannot carry"],
        id="ADDITIONAL_API_KEYS-bad-key-2",
    ),
    pytest.param(
        {"API_KEY": CANARY, "ADDITIONAL_API_KEYS": f"{OTHER_KEY}, {CANARY}"},
        ["ADDITIONAL_API_KEYS (key 2) is the same key as API_KEY", "give each key once"],
        id="API_KEY-repeated-in-ADDITIONAL_API_KEYS",
    ),
    pytest.param(
        {"API_KEY": THIRD_KEY, "ADDITIONAL_API_KEYS": f"{CANARY}, {OTHER_KEY},{CANARY}"},
        [
            "ADDITIONAL_API_KEYS (key 3) is the same key as ADDITIONAL_API_KEYS (key 1)",
            "give each key once",
        ],
        id="ADDITIONAL_API_KEYS-repeated",
    ),
]


@pytest.mark.parametrize(("env", "fragments"), BAD_VALUES)
@pytest.mark.parametrize("build", BUILDERS)
def test_bad_value_names_the_variable_and_the_fix_without_the_key(
    monkeypatch: pytest.MonkeyPatch, build: Builder, env: dict[str, str], fragments: list[str]
) -> None:
    # A real key sits next to every bad value: it must not leak either.
    set_env(monkeypatch, {"API_KEY": CANARY, **env})
    error = raises_config(build, *fragments)
    assert_no_secret(error, *secrets_of(env))
    assert error.__cause__ is None


def test_several_bad_values_are_all_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        {"API_KEY": CANARY, "AUTH_MODE": "fancy", "ENVIRONMENT": "prod"},
    )
    error = raises_config(APIKeyAuth.from_env, "AUTH_MODE must be", "ENVIRONMENT must be")
    assert_no_secret(error)


def test_a_key_pasted_into_a_flag_is_not_echoed_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    # Values of non-secret variables are quoted only when short (20 characters at most):
    # a longer one may be a key pasted into the wrong variable, and none of it is shown.
    long_value = "x" * 100
    monkeypatch.setenv("ENVIRONMENT", long_value)
    error = raises_config(APIKeyAuth.from_env, "ENVIRONMENT must be")
    assert str(error) == "ENVIRONMENT must be one of development, testing, staging, production"
    assert "x" * 8 not in str(error) + repr(error.context)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        pytest.param(
            "AUTH_MODE",
            "a" * 12,
            f"AUTH_MODE must be 'simple' or 'advanced', not {'a' * 12!r}",
            id="AUTH_MODE-12-quoted",
        ),
        pytest.param(
            "AUTH_MODE", "a" * 13, "AUTH_MODE must be 'simple' or 'advanced'", id="AUTH_MODE-13"
        ),
        pytest.param(
            "ENVIRONMENT",
            "prod",
            "ENVIRONMENT must be one of development, testing, staging, production, not 'prod'",
            id="ENVIRONMENT-short-quoted",
        ),
        pytest.param(
            "ENVIRONMENT",
            "prod2",
            "ENVIRONMENT must be one of development, testing, staging, production",
            id="ENVIRONMENT-digit",
        ),
        pytest.param(
            "ENABLE_USER_TRACKING",
            "maybe",
            "ENABLE_USER_TRACKING must be true or false (or 1/0, yes/no, on/off), not 'maybe'",
            id="flag-word-quoted",
        ),
        pytest.param(
            "ENABLE_REQUEST_LOGGING",
            "y" * 13,
            "ENABLE_REQUEST_LOGGING must be true or false (or 1/0, yes/no, on/off)",
            id="flag-13",
        ),
    ],
)
def test_bad_values_are_quoted_only_when_a_short_word(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    error = raised(APIKeyAuth.from_env)
    assert str(error) == message


@pytest.mark.parametrize(
    "name", ["AUTH_MODE", "ENVIRONMENT", "ENABLE_USER_TRACKING", "ENABLE_REQUEST_LOGGING"]
)
@pytest.mark.parametrize("build", [p for p in BUILDERS if p.id != "middleware"])
def test_a_key_pasted_into_another_variable_never_appears_in_the_error(
    monkeypatch: pytest.MonkeyPatch, build: Builder, name: str
) -> None:
    monkeypatch.setenv(name, CANARY)
    error = raised(build)
    assert str(error).startswith(f"{name} must be ")
    assert error.context == {"setting": name, "variables": [name]}
    # Not in the message, the context, a chained ValidationError nor any frame's locals.
    assert_raised_outside_except_blocks(error, CANARY)


# Keys of 16 to 20 characters, the lengths an error used to quote in full.
SHORT_CANARIES = [
    pytest.param("sk-A1b2C3d4E5f6G7", id="17-mixed"),
    pytest.param("abcdefghijklmnop", id="16-letters"),
    pytest.param("Zx9_Qw8-Er7.Ty6~Ui", id="18-symbols"),
    pytest.param("0123456789abcdefABCD", id="20-hex"),
    pytest.param("abcdefghijklmnopqrst", id="20-letters"),
]


@pytest.mark.parametrize("key", SHORT_CANARIES)
@pytest.mark.parametrize(
    "name", ["AUTH_MODE", "ENVIRONMENT", "ENABLE_USER_TRACKING", "ENABLE_REQUEST_LOGGING"]
)
def test_a_short_key_pasted_into_another_variable_is_never_quoted(
    monkeypatch: pytest.MonkeyPatch, name: str, key: str
) -> None:
    monkeypatch.setenv(name, key)
    for build in (APIKeyAuth.from_env, APIKeyAuth, via_middleware):
        error = raised(build)
        assert str(error).startswith(f"{name} must be ")
        assert key not in str(error) + repr(error.context) + repr(error.args)
        assert error.context == {"setting": name, "variables": [name]}
        assert_raised_outside_except_blocks(error, key)


@pytest.mark.parametrize("key", SHORT_CANARIES)
@pytest.mark.parametrize(
    ("argument", "message"),
    [
        pytest.param("mode", "mode must be 'simple' or 'advanced'", id="mode"),
        pytest.param(
            "environment",
            "environment must be one of development, testing, staging, production",
            id="environment",
        ),
        pytest.param("user_tracking", "user_tracking must be True or False", id="user_tracking"),
        pytest.param(
            "request_logging", "request_logging must be True or False", id="request_logging"
        ),
    ],
)
def test_a_short_key_passed_as_another_argument_is_never_quoted(
    argument: str, message: str, key: str
) -> None:
    arguments: dict[str, Any] = {argument: key}
    error = raised(lambda: APIKeyAuth(**arguments))
    assert str(error) == message
    assert key not in str(error) + repr(error.context)
    # The caller's frames hold the argument, as they would any value passed; the
    # error holds none of it and chains nothing.
    assert list(chain(error)) == [error]
    assert_no_secret(error, key)


def test_an_error_building_the_middleware_can_be_reported_with_its_locals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTH_MODE", CANARY)
    error = raised(via_middleware)
    assert str(error) == "AUTH_MODE must be 'simple' or 'advanced'"
    assert_raised_outside_except_blocks(error, CANARY)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        pytest.param({"AUTH_MODE": "fancy"}, ["AUTH_MODE"], id="one"),
        pytest.param(
            {"ENVIRONMENT": "prod", "AUTH_MODE": "fancy", "ENABLE_USER_TRACKING": "maybe"},
            ["AUTH_MODE", "ENABLE_USER_TRACKING", "ENVIRONMENT"],
            id="three",
        ),
        pytest.param(
            {"API_KEY": CANARY, "ENABLE_REQUEST_LOGGING": "2", "ENVIRONMENT": "x" * 40},
            ["ENABLE_REQUEST_LOGGING", "ENVIRONMENT"],
            id="two-next-to-a-key",
        ),
    ],
)
def test_a_settings_error_names_every_bad_variable_in_its_context(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], names: list[str]
) -> None:
    set_env(monkeypatch, env)
    for action in (read_settings, APIKeyAuth.from_env):
        error = raised(action)
        assert set(error.context) == {"setting", "variables"}
        assert sorted(error.context["variables"]) == names
        assert error.context["setting"] == error.context["variables"][0]
        for name in names:
            assert f"{name} must be" in str(error)
        assert_raised_outside_except_blocks(error)


@pytest.mark.parametrize(
    ("spellings", "values"),
    [
        pytest.param(["ENVIRONMENT", "environment"], ["production", "staging"], id="ENVIRONMENT"),
        pytest.param(["ENVIRONMENT", "environment"], ["staging", "staging"], id="same-value"),
        pytest.param(["AUTH_MODE", "Auth_Mode"], ["simple", "advanced"], id="AUTH_MODE"),
        pytest.param(["API_KEY", "api_key"], [CANARY, OTHER_KEY], id="API_KEY"),
        pytest.param(
            ["ADDITIONAL_API_KEYS", "additional_api_keys"], [CANARY, OTHER_KEY], id="ADDITIONAL"
        ),
        pytest.param(
            ["ENABLE_USER_TRACKING", "Enable_User_Tracking", "enable_user_tracking"],
            ["true", "false", "true"],
            id="three-spellings",
        ),
    ],
)
@pytest.mark.parametrize("build", BUILDERS)
def test_a_variable_set_twice_with_different_case_is_refused(
    monkeypatch: pytest.MonkeyPatch, build: Builder, spellings: list[str], values: list[str]
) -> None:
    # The names are case-insensitive: with both set, whichever came last would silently win.
    monkeypatch.setenv("API_KEY" if spellings[0] != "API_KEY" else "ADDITIONAL_API_KEYS", THIRD_KEY)
    for spelling, value in zip(spellings, values, strict=True):
        monkeypatch.setenv(spelling, value)
    name = spellings[0]
    error = raises_config(
        build, f"{name} is set more than once, as {', '.join(sorted(spellings))}: keep one"
    )
    assert error.context["setting"] == name
    assert_no_secret(error, *values)
    # The control: either spelling alone is read.
    monkeypatch.delenv(spellings[1])
    if len(spellings) > 2:
        monkeypatch.delenv(spellings[2])
    build()


# ----------------------------------------------------------------------- production


@pytest.mark.parametrize("build", BUILDERS)
def test_production_refuses_development_mode(
    monkeypatch: pytest.MonkeyPatch, build: Builder
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with capture_logs() as logs:
        error = raises_config(
            build,
            "no API key is configured (API_KEY, ADDITIONAL_API_KEYS and API_KEYS_FILE hold none)",
            "ENVIRONMENT=production refuses to start that way",
            "without keys it would run in development mode or refuse everything",
            "set API_KEY to a long random key",
            "keygen",
        )
    assert logs == []  # refused, not warned about
    assert_no_secret(error)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: APIKeyAuth(keys=[], environment="production"), id="argument"),
        pytest.param(lambda: APIKeyAuth(keys=[]), id="variable"),
        pytest.param(lambda: APIKeyMiddleware(Recorder(), keys=[]), id="middleware"),
    ],
)
def test_production_refuses_an_empty_explicit_key_list(
    monkeypatch: pytest.MonkeyPatch, build: Callable[[], object]
) -> None:
    monkeypatch.setenv("API_KEY", CANARY)  # replaced by keys=[], so it does not count
    monkeypatch.setenv("ENVIRONMENT", "production")
    with capture_logs() as logs:
        error = raises_config(
            build,
            "keys= and keys_file hold no key",
            "ENVIRONMENT=production refuses to start that way",
            "pass at least one key",
        )
    assert logs == []  # refused, not warned about
    assert_no_secret(error)


@pytest.mark.parametrize(
    ("build", "fragments"),
    [
        pytest.param(
            APIKeyAuth.from_env,
            [
                "no API key is configured (API_KEY, ADDITIONAL_API_KEYS and API_KEYS_FILE "
                "hold none)",
                "set API_KEY to a long random key",
            ],
            id="API_KEYS_FILE",
        ),
        pytest.param(
            via_middleware,
            ["no API key is configured (API_KEY, ", "set API_KEY to a long random key"],
            id="middleware",
        ),
        pytest.param(
            lambda: APIKeyAuth(keys_file=os.environ["API_KEYS_FILE"]),
            ["keys= and keys_file hold no key", "pass at least one key"],
            id="keys_file=",
        ),
        pytest.param(
            lambda: APIKeyAuth(keys=[], keys_file=os.environ["API_KEYS_FILE"]),
            ["keys= and keys_file hold no key", "pass at least one key"],
            id="keys=[]-and-keys_file=",
        ),
    ],
)
@pytest.mark.parametrize(
    "content",
    [
        pytest.param("# no keys yet\n", id="comments-only"),
        pytest.param("", id="empty"),
        pytest.param("keys = []\n", id="empty-array"),
    ],
)
def test_production_refuses_a_key_file_without_keys(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    build: Builder,
    fragments: list[str],
    content: str,
) -> None:
    monkeypatch.setenv("API_KEYS_FILE", str(write(tmp_path, content)))
    for environment in ("production", "staging"):
        monkeypatch.setenv("ENVIRONMENT", environment)
        raises_config(build, *fragments, f"ENVIRONMENT={environment} refuses to start that way")
    # The control: the same file in development builds an enforcing authenticator.
    monkeypatch.setenv("ENVIRONMENT", "development")
    auth = build()
    assert not auth.is_development_mode
    assert auth.key_ids == ()
    assert auth.verify(CANARY) is None


def test_production_accepts_verifiers_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    auth = APIKeyAuth.from_env(verifiers=[lambda token: None])
    assert not auth.is_development_mode
    assert auth.verify(CANARY) is None


@pytest.mark.parametrize(
    ("env", "kwargs", "label"),
    [
        pytest.param({"API_KEY": SHORT_KEY}, {}, "API_KEY", id="API_KEY"),
        pytest.param(
            {"ADDITIONAL_API_KEYS": f"{CANARY}, {SHORT_KEY}"},
            {},
            "ADDITIONAL_API_KEYS (key 2)",
            id="ADDITIONAL_API_KEYS",
        ),
        pytest.param(
            {"API_KEY": CANARY, "ADDITIONAL_API_KEYS": f" ,{FIFTEEN}"},
            {},
            "ADDITIONAL_API_KEYS (key 1)",
            id="ADDITIONAL_API_KEYS-fifteen",
        ),
        pytest.param({}, {"keys": [SHORT_KEY]}, "keys[0]", id="keys"),
        pytest.param(
            {}, {"keys": [CANARY, APIKey(FIFTEEN, name="ci")]}, "keys[1]", id="keys-APIKey"
        ),
        pytest.param(
            {"ENVIRONMENT": "staging"},
            {"keys": [SHORT_KEY], "environment": "production"},
            "keys[0]",
            id="environment-argument",
        ),
    ],
)
@pytest.mark.parametrize("environment", STRICT)
def test_production_refuses_short_keys(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    kwargs: dict[str, Any],
    label: str,
    environment: str,
) -> None:
    set_env(monkeypatch, {"ENVIRONMENT": environment, **env})
    refusing = kwargs.get("environment", env.get("ENVIRONMENT", environment))
    error = raises_config(
        lambda: APIKeyAuth(**kwargs),
        f"{label} is shorter than 16 characters",
        f"ENVIRONMENT={refusing} refuses",
        "keygen",
    )
    assert error.context["where"] == label
    assert_no_secret(error, SHORT_KEY, FIFTEEN)


@pytest.mark.parametrize("environment", STRICT)
def test_production_refuses_short_keys_through_the_middleware(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.setenv("API_KEY", SHORT_KEY)
    error = raises_config(lambda: APIKeyMiddleware(Recorder()), "API_KEY is shorter than 16")
    assert_no_secret(error, SHORT_KEY)
    error = raises_config(
        lambda: APIKeyMiddleware(Recorder(), keys=[SHORT_KEY]), "keys[0] is shorter than 16"
    )
    assert_no_secret(error, SHORT_KEY)


@pytest.mark.parametrize("environment", STRICT)
def test_production_refuses_short_keys_in_rotation(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    auth = APIKeyAuth(keys=[CANARY])
    before = auth.key_ids
    error = raises_config(lambda: auth.add_key(SHORT_KEY), "add_key is shorter than 16")
    assert_no_secret(error, SHORT_KEY)
    error = raises_config(
        lambda: auth.replace_keys([OTHER_KEY, SHORT_KEY]), "replace_keys[1] is shorter than 16"
    )
    assert_no_secret(error, SHORT_KEY)
    assert auth.key_ids == before
    assert auth.verify(SHORT_KEY) is None
    auth.add_key(SIXTEEN)
    assert auth.verify(SIXTEEN) is not None


@pytest.mark.parametrize("environment", STRICT)
@pytest.mark.parametrize("variable", ["API_KEY", "ADDITIONAL_API_KEYS"])
def test_production_refuses_short_keys_on_reload(
    monkeypatch: pytest.MonkeyPatch, environment: str, variable: str
) -> None:
    set_env(monkeypatch, {"ENVIRONMENT": environment, "API_KEY": CANARY})
    auth = APIKeyAuth.from_env()
    monkeypatch.setenv(variable, SHORT_KEY)
    raises_config(auth.reload, variable, "is shorter than 16", f"ENVIRONMENT={environment} refuses")
    assert auth.verify(CANARY) is not None
    assert auth.verify(SHORT_KEY) is None


@pytest.mark.parametrize(
    ("env", "kwargs"),
    [
        pytest.param({"API_KEY": SIXTEEN}, {}, id="API_KEY"),
        pytest.param({"ADDITIONAL_API_KEYS": f"{CANARY},{SIXTEEN}"}, {}, id="ADDITIONAL"),
        pytest.param({}, {"keys": [SIXTEEN]}, id="keys"),
    ],
)
def test_production_accepts_a_sixteen_character_key(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], kwargs: dict[str, Any]
) -> None:
    assert len(SIXTEEN) == 16
    set_env(monkeypatch, {"ENVIRONMENT": "production", **env})
    auth = APIKeyAuth(**kwargs)
    assert auth.verify(SIXTEEN) is not None


def test_production_accepts_digest_keys_of_unknown_length(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    auth = APIKeyAuth(keys=[APIKey(digest=plain_digest(SHORT_KEY))])
    assert auth.verify(SHORT_KEY) is not None
    auth.add_key(APIKey(digest=plain_digest("sk-tiny"), name="tiny"))
    assert auth.verify("sk-tiny") is not None

    path = write(tmp_path, f'[[keys]]\ndigest = "{plain_digest(SHORT_KEY)}"\n')
    monkeypatch.setenv("API_KEYS_FILE", str(path))
    from_file = APIKeyAuth.from_env()
    assert from_file.environment == "production"
    assert from_file.verify(SHORT_KEY) is not None


@pytest.mark.parametrize("environment", ["development", "testing", "TESTING"])
def test_other_environments_accept_short_keys(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    set_env(monkeypatch, {"ENVIRONMENT": environment, "API_KEY": SHORT_KEY})
    auth = APIKeyAuth.from_env()
    assert auth.verify(SHORT_KEY) is not None
    assert APIKeyAuth(keys=[FIFTEEN]).verify(FIFTEEN) is not None
    auth.add_key("sk-x")
    assert auth.verify("sk-x") is not None


@pytest.mark.parametrize(
    "environment", ["Production", "PRODUCTION", " production ", "\tProduction"]
)
def test_the_environment_argument_is_case_insensitive_and_stripped(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "staging")  # the argument wins
    error = raises_config(
        lambda: APIKeyAuth(keys=[SHORT_KEY], environment=environment),
        "keys[0] is shorter than 16 characters",
        "ENVIRONMENT=production refuses",
    )
    assert_no_secret(error, SHORT_KEY)
    raises_config(
        lambda: APIKeyAuth(keys=[CANARY, SHORT_KEY], environment=environment),
        "keys[1] is shorter than 16 characters",
    )
    monkeypatch.setenv("API_KEY", SHORT_KEY)
    raises_config(
        lambda: APIKeyAuth.from_env(environment=environment), "API_KEY is shorter than 16"
    )
    monkeypatch.delenv("API_KEY")
    raises_config(
        lambda: APIKeyAuth.from_env(environment=environment),
        "no API key is configured",
        "ENVIRONMENT=production refuses to start that way",
    )
    raises_config(
        lambda: APIKeyAuth(keys=[], environment=environment), "keys= and keys_file hold no key"
    )
    auth = APIKeyAuth(keys=[CANARY], environment=environment)
    assert auth.environment == "production"
    assert auth.status()["environment"] == "production"
    assert auth.verify(CANARY) is not None


@pytest.mark.parametrize("environment", ["Testing", " TESTING ", "Development"])
def test_the_environment_argument_is_case_insensitive_outside_production(
    environment: str,
) -> None:
    auth = APIKeyAuth(keys=[SHORT_KEY], environment=environment)
    assert auth.environment == environment.strip().lower()
    assert auth.verify(SHORT_KEY) is not None
    assert APIKeyAuth.from_env(environment=environment).is_development_mode


@pytest.mark.parametrize("environment", ["prod", "Prod uction", "", " "])
def test_the_environment_argument_must_still_name_an_environment(environment: str) -> None:
    error = raises_config(
        lambda: APIKeyAuth(keys=[CANARY], environment=environment),
        "environment must be one of development, testing, staging, production",
    )
    assert error.context == {"setting": "environment"}


# ------------------------------------------------------------------------- key file


def test_load_key_file_reads_every_field(tmp_path: Path) -> None:
    path = write(tmp_path, VALID_FILE)
    labelled = load_key_file(path)
    assert [label for label, _ in labelled] == [
        f"API_KEYS_FILE ({path}) keys[0]",
        f"API_KEYS_FILE ({path}) keys[1]",
    ]
    billing, ci = (key for _, key in labelled)
    assert billing.digest == plain_digest(CANARY)
    assert billing.name == "billing"
    assert billing.scopes == frozenset({"read", "write"})
    assert dict(billing.metadata) == {"team": "payments", "tier": 2}
    assert billing.not_before == datetime(2026, 1, 1, tzinfo=UTC)
    assert billing.expires_at == datetime(2026, 12, 31, 22, tzinfo=UTC)
    assert ci.digest == plain_digest(OTHER_KEY)  # upper-case hex is the same digest
    assert ci.name == "ci"
    assert ci.scopes == frozenset()
    assert dict(ci.metadata) == {}
    assert ci.not_before is None
    assert ci.expires_at is None
    assert [label for label, _ in load_key_file(str(path), "KEYS")] == [
        f"KEYS ({path}) keys[0]",
        f"KEYS ({path}) keys[1]",
    ]


def test_key_file_keys_carry_scopes_metadata_and_validity(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("API_KEYS_FILE", str(write(tmp_path, VALID_FILE)))
    monkeypatch.setenv("AUTH_MODE", "advanced")
    now = [at(2026, 6, 1)]
    auth = APIKeyAuth.from_env(clock=lambda: now[0])
    context = auth.verify(CANARY)
    assert context is not None
    assert context.key_id == "billing"
    assert {"read", "write"} <= context.scopes
    assert dict(context.metadata) == {"team": "payments", "tier": 2}
    assert context.mode == "advanced"

    now[0] = at(2026, 1, 1)  # not_before is inclusive
    assert isinstance(auth.resolve(CANARY.encode()), Accepted)
    now[0] = at(2025, 12, 31, 23, 59, 59)
    refused = auth.resolve(CANARY.encode())
    assert isinstance(refused, Rejected)
    assert refused.reason == "not_yet_valid"
    now[0] = at(2026, 12, 31, 21, 59, 59)  # expires_at 2027-01-01T00:00:00+02:00
    assert isinstance(auth.resolve(CANARY.encode()), Accepted)
    now[0] = at(2026, 12, 31, 22)  # exclusive
    refused = auth.resolve(CANARY.encode())
    assert isinstance(refused, Rejected)
    assert refused.reason == "expired"
    assert auth.verify(OTHER_KEY) is not None  # "ci" has no window


def test_key_file_metadata_is_carried_in_simple_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write(tmp_path, VALID_FILE)
    monkeypatch.setenv("API_KEYS_FILE", str(path))
    now = at(2026, 6, 1)
    for auth in (
        APIKeyAuth.from_env(clock=lambda: now),
        APIKeyAuth(keys_file=path, clock=lambda: now),
    ):
        context = auth.verify(CANARY)
        assert context is not None
        assert (context.mode, dict(context.metadata)) == ("simple", {"team": "payments", "tier": 2})


Route = Callable[[Path], object]


def load_directly(path: Path) -> object:
    return load_key_file(path)


def load_through_the_variable(path: Path) -> object:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("API_KEYS_FILE", str(path))
        mp.setenv("AUTH_MODE", "advanced")
        return APIKeyAuth.from_env()


def load_through_the_middleware(path: Path) -> object:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("API_KEYS_FILE", str(path))
        mp.setenv("AUTH_MODE", "advanced")
        return APIKeyMiddleware(Recorder())


def load_as_keys_file(path: Path) -> object:
    return APIKeyAuth(keys_file=path, mode="advanced")


ROUTES = [
    pytest.param(load_directly, "API_KEYS_FILE", id="load_key_file"),
    pytest.param(load_through_the_variable, "API_KEYS_FILE", id="API_KEYS_FILE"),
    pytest.param(load_through_the_middleware, "API_KEYS_FILE", id="middleware"),
    pytest.param(load_as_keys_file, "keys_file", id="keys_file="),
]

# (second entry of a file whose first entry is valid, fragments of the message)
BAD_ENTRIES = [
    pytest.param(
        'name = "x"\nscopes = ["read"]\n', ['has no digest = "sha256:..."'], id="no-digest"
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nscope = ["read"]\n',
        ["has unknown field 'scope': use [", "'scopes'"],
        id="unknown-field",
    ),
    pytest.param(
        f'secret = "{CANARY}"\nname = "billing"\n',
        ["holds a plain key", 'digest = "sha256:..."', "python -m asgi_apikey hash"],
        id="plain-secret",
    ),
    pytest.param(
        f'key = "{CANARY}"\n',
        ["holds a plain key", "take the plain key out of the file"],
        id="plain-key",
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nsecret = "{CANARY}"\n',
        ["holds a plain key"],
        id="digest-and-secret",
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)[:-1]}"\n',
        ["'sha256:' followed by 64 hex digits", "python -m asgi_apikey hash"],
        id="short-digest",
    ),
    pytest.param(
        f'digest = "sha1:{hashlib.sha1(CANARY.encode(), usedforsecurity=False).hexdigest()}"\n',
        ["'sha256:' followed by 64 hex digits"],
        id="sha1-digest",
    ),
    pytest.param(
        f'digest = "{CANARY}"\n', ["'sha256:' followed by 64 hex digits"], id="plain-as-digest"
    ),
    pytest.param("digest = 42\n", ["'sha256:' followed by 64 hex digits"], id="digest-int"),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nexpires_at = "2027-01-01T00:00:00Z"\n',
        ["expires_at must be an unquoted TOML date-time with an offset", "2027-01-01T00:00:00Z"],
        id="quoted-expires_at",
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nexpires_at = 2027-01-01T00:00:00\n',
        ["expires_at", "timezone-aware", "2027-01-01T00:00:00Z in a key file"],
        id="local-date-time",
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nnot_before = 2026-01-01T00:00:00\n',
        ["not_before", "timezone-aware", "2027-01-01T00:00:00Z"],
        id="local-not_before",
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nexpires_at = 2027-01-01\n',
        ["expires_at must be an unquoted TOML date-time with an offset"],
        id="bare-date",
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nnot_before = 09:00:00\n',
        ["not_before must be an unquoted TOML date-time with an offset"],
        id="bare-time",
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nnot_before = 2027-01-01T00:00:00Z\n'
        "expires_at = 2026-01-01T00:00:00Z\n",
        ["expires_at", "is not after its not_before", "would never be valid"],
        id="expires-before-not_before",
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nnot_before = 2027-01-01T00:00:00Z\n'
        "expires_at = 2027-01-01T01:00:00+01:00\n",
        ["is not after its not_before"],
        id="expires-at-not_before",
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nscopes = "read"\n',
        ["scopes of key", "collection of strings"],
        id="scopes-string",
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nscopes = ["read all"]\n',
        ["not an RFC 6749 scope token"],
        id="bad-scope",
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nmetadata = "payments"\n',
        ["metadata of key", "must be a mapping"],
        id="metadata-string",
    ),
    pytest.param(
        f'digest = "{plain_digest(CANARY)}"\nname = " padded "\n',
        ["key name must be printable text", "without surrounding spaces"],
        id="bad-name",
    ),
]


@pytest.mark.parametrize(("entry", "fragments"), BAD_ENTRIES)
@pytest.mark.parametrize(("route", "setting"), ROUTES)
def test_bad_key_file_entry_names_the_file_the_index_and_the_fix(
    tmp_path: Path, route: Route, setting: str, entry: str, fragments: list[str]
) -> None:
    path = write(tmp_path, FIRST_ENTRY + "\n[[keys]]\n" + entry)
    error = raises_config(lambda: route(path), f"{setting} ({path}) keys[1]", *fragments)
    assert "keys[0]" not in str(error)
    assert_no_secret(error)


# (file content, or None for no file, or "DIR" for a directory; fragments of the message)
BAD_FILES = [
    pytest.param(None, ["does not exist", "fix the path or unset"], id="missing"),
    pytest.param(
        "DIR",
        ["is a directory: point", "at the TOML key file"],
        id="directory",
    ),
    pytest.param(
        f"[[keys]]\nsecret = {CANARY}\n".encode(),
        ["is not valid TOML", "line 2"],
        id="invalid-toml-unquoted",
    ),
    pytest.param(
        f'[[keys]]\ndigest = "{CANARY}\n'.encode(),
        ["is not valid TOML", "line 2"],
        id="invalid-toml-unterminated",
    ),
    pytest.param(
        (FIRST_ENTRY + f'[[keys]]\ndigest = "{plain_digest(THIRD_KEY)}"\n').encode(),
        [],
        id="valid-control",
    ),
    pytest.param(
        f'[[key]]\ndigest = "{plain_digest(CANARY)}"\n'.encode(),
        ["has unknown top-level entry 'key': list keys as [[keys]] tables"],
        id="key-table",
    ),
    pytest.param(
        f'api_key = "{CANARY}"\n'.encode(),
        ["has unknown top-level entry 'api_key': list keys as [[keys]] tables"],
        id="top-level-plain-key",
    ),
    pytest.param(
        f'keys = ["{plain_digest(CANARY)}"]\n'.encode(),
        ["'keys' must be an array of tables, written [[keys]]"],
        id="keys-array-of-strings",
    ),
    pytest.param(
        f'[keys]\ndigest = "{plain_digest(CANARY)}"\n'.encode(),
        ["'keys' must be an array of tables, written [[keys]]"],
        id="keys-single-table",
    ),
    pytest.param(
        (FIRST_ENTRY + "# caf\xe9\n").encode("latin-1"),
        ["is not UTF-8 text"],
        id="latin-1",
    ),
    pytest.param(b"\xff\xfe" + FIRST_ENTRY.encode("utf-16-le"), ["is not UTF-8 text"], id="utf-16"),
]


@pytest.mark.parametrize(("content", "fragments"), BAD_FILES)
@pytest.mark.parametrize(("route", "setting"), ROUTES)
def test_bad_key_file_names_the_file_and_the_fix(
    tmp_path: Path, route: Route, setting: str, content: bytes | str | None, fragments: list[str]
) -> None:
    path = tmp_path / "keys.toml"
    if content == "DIR":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    if not fragments:  # the control: the same route accepts a good file
        route(path)
        return
    error = raises_config(lambda: route(path), f"{setting} ({path})", *fragments)
    assert "keys[" not in str(error)  # a problem of the whole file, not of one entry
    assert_no_secret(error)


def test_a_file_error_names_the_variable_in_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    raises_config(lambda: load_key_file(missing), "fix the path or unset API_KEYS_FILE")
    raises_config(lambda: load_key_file(missing, "MY_KEYS"), "fix the path or unset MY_KEYS")
    raises_config(lambda: APIKeyAuth(keys_file=missing), "fix the path or unset keys_file")


def test_a_directory_error_names_the_variable_in_the_fix(tmp_path: Path) -> None:
    raises_config(
        lambda: load_key_file(tmp_path),
        f"API_KEYS_FILE ({tmp_path}) is a directory: point API_KEYS_FILE at the TOML key file",
    )
    raises_config(
        lambda: APIKeyAuth(keys_file=tmp_path),
        f"keys_file ({tmp_path}) is a directory: point keys_file at the TOML key file",
    )


def test_a_non_utf8_key_file_does_not_carry_its_bytes_in_the_error(tmp_path: Path) -> None:
    # A plain key pasted into a file saved as Latin-1: the error must not hold the file's
    # bytes, not even in the (suppressed) UnicodeDecodeError it was raised from.
    content = f'[[keys]]\nsecret = "{CANARY}"\nname = "caf\xe9"\n'.encode("latin-1")
    path = write(tmp_path, content)
    error = raises_config(lambda: load_key_file(path), f"API_KEYS_FILE ({path})", "UTF-8")
    assert_no_secret(error)


def test_an_invalid_toml_error_does_not_carry_the_document(tmp_path: Path) -> None:
    path = write(tmp_path, f'[[keys]]\nsecret = "{CANARY}"\nname = \n')
    error = raises_config(lambda: load_key_file(path), "is not valid TOML")
    assert_no_secret(error)


@pytest.mark.parametrize(
    ("content", "position"),
    [
        pytest.param(f"[[keys]]\nsecret = {CANARY}\n", "line 2, column 10", id="unquoted-key"),
        pytest.param(
            f'[[keys]]\ndigest = "{CANARY}\n', "line 2, column 41", id="unterminated-line"
        ),
        pytest.param(
            # tomllib's message quotes the name: "Cannot declare ('sk-canary-...',) twice".
            f"[{CANARY}]\nx = 1\n[{CANARY}]\nx = 2\n",
            "line 3, column 32",
            id="duplicated-table-name",
        ),
        pytest.param(
            f'[[keys]]\n"{CANARY}" = 1\n"{CANARY}" = 2\n',
            "line 3, column 37",
            id="duplicated-field-name",
        ),
        pytest.param("[[keys]]\ndigest = ", "end of document", id="end-of-document"),
        pytest.param(f'[[keys]]\nname = "{CANARY}', "end of document", id="unterminated-end"),
    ],
)
@pytest.mark.parametrize(
    ("route", "setting"), [p for p in ROUTES if p.id in ("load_key_file", "keys_file=")]
)
def test_a_toml_error_shows_only_the_position(
    tmp_path: Path, route: Route, setting: str, content: str, position: str
) -> None:
    path = write(tmp_path, content)
    error = raised(lambda: route(path))
    assert str(error) == (
        f"{setting} ({path}) is not valid TOML (at {position}): fix the syntax there"
    )
    assert_raised_outside_except_blocks(error)


UNKNOWN_FIELDS = [
    pytest.param(["expire_at = 2027-01-01T00:00:00Z"], "field 'expire_at'", id="typo"),
    pytest.param(["b = 1", "a = 2"], "fields 'a', 'b'", id="two-sorted"),
    pytest.param(["x" * 24 + " = 1"], f"field {'x' * 24!r}", id="24-characters"),
    pytest.param(["x" * 25 + " = 1"], "field 1 other not shown", id="25-characters"),
    pytest.param(["Name = 'x'"], "field 1 other not shown", id="upper-case"),
    pytest.param(["name2 = 'x'"], "field 1 other not shown", id="digit"),
    pytest.param(["team-id = 'x'"], "field 1 other not shown", id="hyphen"),
    pytest.param(['"" = 1'], "field 1 other not shown", id="empty-name"),
    pytest.param(['"caf\u00e9" = 1'], "field 1 other not shown", id="non-ascii"),
    pytest.param([f'"{CANARY}" = 1'], "field 1 other not shown", id="plain-key"),
    pytest.param([f"{CANARY} = 1"], "field 1 other not shown", id="plain-key-bare"),
    pytest.param(
        [f'"{CANARY}" = 1', f'"{OTHER_KEY}" = 2'], "fields 2 others not shown", id="two-hidden"
    ),
    pytest.param(
        [f'"{CANARY}" = 1', "expire_at = 1", "scope = 2"],
        "fields 'expire_at', 'scope', 1 other not shown",
        id="shown-and-hidden",
    ),
]


@pytest.mark.parametrize(("lines", "shown"), UNKNOWN_FIELDS)
def test_unknown_fields_are_named_only_when_they_look_like_field_names(
    tmp_path: Path, lines: list[str], shown: str
) -> None:
    body = "\n".join([f'digest = "{plain_digest(CANARY)}"', *lines])
    path = write(tmp_path, FIRST_ENTRY + "\n[[keys]]\n" + body + "\n")
    error = raised(lambda: load_key_file(path))
    assert str(error) == (
        f"API_KEYS_FILE ({path}) keys[1] has unknown {shown}: use "
        "['digest', 'expires_at', 'limit', 'metadata', 'name', 'not_before', 'scopes']"
    )
    assert_raised_outside_except_blocks(error, OTHER_KEY)


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        pytest.param("version = 1\n", "entry 'version'", id="typo"),
        pytest.param("key = 1\nsecrets = 2\n", "entries 'key', 'secrets'", id="two"),
        pytest.param(f"[{CANARY}]\nx = 1\n", "entry 1 other not shown", id="table-name"),
        pytest.param(f"[[{CANARY}]]\n", "entry 1 other not shown", id="array-table-name"),
        pytest.param(f'"{CANARY}" = 1\n', "entry 1 other not shown", id="quoted-name"),
        pytest.param(
            f"version = 1\n[{CANARY}]\n[{OTHER_KEY}]\n",
            "entries 'version', 2 others not shown",
            id="shown-and-hidden",
        ),
    ],
)
def test_unknown_top_level_entries_are_named_only_when_they_look_like_names(
    tmp_path: Path, content: str, shown: str
) -> None:
    path = write(tmp_path, content + FIRST_ENTRY)
    error = raised(lambda: load_key_file(path))
    assert str(error) == (
        f"API_KEYS_FILE ({path}) has unknown top-level {shown}: list keys as [[keys]] tables"
    )
    assert_raised_outside_except_blocks(error, OTHER_KEY)


@pytest.mark.parametrize(
    ("content", "byte"),
    [
        pytest.param(b"[[keys]]\n# caf\xe9\n", 14, id="latin-1"),
        pytest.param(b"\xff\xfe[\x00[\x00", 0, id="utf-16"),
        pytest.param(b"# \xe2\x82\xac \xe2\x82\n", 6, id="truncated-sequence"),
    ],
)
def test_a_non_utf8_key_file_names_the_first_bad_byte(
    tmp_path: Path, content: bytes, byte: int
) -> None:
    path = write(tmp_path, content)
    error = raised(lambda: load_key_file(path))
    assert str(error) == (
        f"API_KEYS_FILE ({path}) is not UTF-8 text (byte {byte}): save it as UTF-8"
    )
    assert_raised_outside_except_blocks(error)


def _load_in_a_thread(path: Path) -> BaseException | None:
    """Build from API_KEYS_FILE=path in a thread; fail if it has not finished within 5 s."""
    outcome: list[BaseException | None] = []

    def build() -> None:
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("API_KEYS_FILE", str(path))
                APIKeyAuth.from_env()
            outcome.append(None)
        except BaseException as error:  # reported to the test below
            outcome.append(error)

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    thread.join(timeout=5)
    if thread.is_alive():
        if stat.S_ISFIFO(path.stat().st_mode):
            # Release the blocked open(): a writer that opens and closes at once.
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            thread.join(timeout=5)
        pytest.fail(f"reading {path} as the key file hung")
    [result] = outcome
    return result


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_key_file_that_is_not_a_regular_file_is_refused_without_waiting(
    tmp_path: Path, kind: str
) -> None:
    if kind == "fifo":
        path = tmp_path / "keys.toml"
        os.mkfifo(path)  # with no writer: a blocking open() would wait forever
    else:
        path = Path(os.devnull)
    error = _load_in_a_thread(path)
    assert isinstance(error, ConfigurationError), repr(error)
    assert str(error) == (
        f"API_KEYS_FILE ({path}) is not a regular file: point API_KEYS_FILE at the TOML key file"
    )
    assert error.context == {"setting": "API_KEYS_FILE"}


def test_a_key_file_larger_than_256_mib_is_refused(tmp_path: Path) -> None:
    # A million keys take about 111 MiB (benchmarks/results/scale.md): they must fit.
    path = tmp_path / "keys.toml"
    with path.open("wb") as handle:
        handle.truncate(256 * 1024 * 1024 + 1)  # sparse: no disk space used
    raises_config(
        lambda: load_key_file(path),
        f"API_KEYS_FILE ({path}) is larger than 256 MiB: is it the right file?",
    )
    with path.open("r+b") as handle:
        handle.truncate(256 * 1024 * 1024)
    error = raises_config(lambda: load_key_file(path), "is not valid TOML")
    assert "256 MiB" not in str(error)  # exactly 256 MiB is read


# Each file holds the plain key CANARY where a key file must not: none of these errors,
# their chained exceptions or the locals of the frames that raised them may hold it.
PASTED_KEY_FILES = [
    pytest.param(f"[{CANARY}]\nx = 1\n", "unknown top-level entry", id="table-name"),
    pytest.param(f"[[{CANARY}]]\n", "unknown top-level entry", id="array-table-name"),
    pytest.param(
        f'[[keys]]\ndigest = "{plain_digest(OTHER_KEY)}"\n"{CANARY}" = 1\n',
        "unknown field 1 other not shown",
        id="field-name",
    ),
    pytest.param(f'[[keys]]\nsecret = "{CANARY}"\n', "holds a plain key", id="secret-value"),
    pytest.param(f'[[keys]]\nkey = "{CANARY}"\n', "holds a plain key", id="key-value"),
    pytest.param(f'[[keys]]\ndigest = "{CANARY}"\n', "'sha256:' followed by", id="digest"),
    pytest.param(
        f'[[keys]]\ndigest = "{plain_digest(OTHER_KEY)}"\nname = " {CANARY}"\n',
        "key name must be printable",
        id="name",
    ),
    pytest.param(
        f'[[keys]]\ndigest = "{plain_digest(OTHER_KEY)}"\nmetadata = "{CANARY}"\n',
        "must be a mapping",
        id="metadata",
    ),
    pytest.param(
        f'[[keys]]\ndigest = "{plain_digest(OTHER_KEY)}"\nexpires_at = "{CANARY}"\n',
        "unquoted TOML date-time",
        id="expires_at",
    ),
    pytest.param(f"[[keys]]\nsecret = {CANARY}\n", "is not valid TOML", id="invalid-toml"),
    pytest.param(
        f"[{CANARY}]\n[{CANARY}]\n", "is not valid TOML (at line 2", id="duplicated-table"
    ),
    pytest.param(
        f'[[keys]]\nsecret = "{CANARY}"\nname = "caf\xe9"\n'.encode("latin-1"),
        "is not UTF-8 text",
        id="latin-1",
    ),
]


@pytest.mark.parametrize(("content", "fragment"), PASTED_KEY_FILES)
@pytest.mark.parametrize(
    ("route", "setting"), [p for p in ROUTES if p.id in ("load_key_file", "API_KEYS_FILE")]
)
def test_a_key_file_error_holds_no_pasted_key_in_its_chain_or_frames(
    tmp_path: Path, route: Route, setting: str, content: str | bytes, fragment: str
) -> None:
    path = write(tmp_path, content)
    assert CANARY.encode() in path.read_bytes()
    error = raised(lambda: route(path))
    assert str(error).startswith(f"{setting} ({path})")
    assert fragment in str(error)
    assert error.context == {"setting": "API_KEYS_FILE"}
    assert_raised_outside_except_blocks(error)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        pytest.param({"API_KEY": CANARY + "!"}, "API_KEY: an API key has characters", id="bang"),
        pytest.param({"API_KEY": f"{CANARY} x"}, "API_KEY: an API key has characters", id="space"),
        pytest.param(
            {"API_KEY": f" {CANARY}\x01 "}, "API_KEY: an API key has characters", id="control"
        ),
        pytest.param({"API_KEY": f"{CANARY},{OTHER_KEY}"}, "several keys?", id="comma"),
        pytest.param(
            {"ADDITIONAL_API_KEYS": f"{CANARY}, {OTHER_KEY}!"},
            "ADDITIONAL_API_KEYS (key 2): an API key has characters",
            id="next-to-a-bad-item",
        ),
        pytest.param(
            {"API_KEY": OTHER_KEY, "ADDITIONAL_API_KEYS": f"{CANARY},{OTHER_KEY}"},
            "ADDITIONAL_API_KEYS (key 2) is the same key as API_KEY",
            id="duplicate",
        ),
        pytest.param(
            {"API_KEY": SHORT_KEY, "ADDITIONAL_API_KEYS": CANARY, "ENVIRONMENT": "production"},
            "API_KEY is shorter than 16 characters",
            id="short-in-production",
        ),
    ],
)
def test_a_bad_api_key_error_holds_no_key_in_its_chain_or_frames(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragment: str
) -> None:
    set_env(monkeypatch, env)
    error = raised(APIKeyAuth.from_env)
    assert fragment in str(error)
    assert_raised_outside_except_blocks(error, *secrets_of(env), OTHER_KEY, SHORT_KEY)


@pytest.mark.parametrize(
    ("second", "fragments"),
    [
        pytest.param(
            f'[[keys]]\ndigest = "{plain_digest(CANARY)}"\nname = "first"\n',
            ["keys[1] reuses the key_id 'first' of", "keys[0]", "give each key its own name"],
            id="duplicate-name",
        ),
        pytest.param(
            f'[[keys]]\ndigest = "{plain_digest(OTHER_KEY).upper().replace("SHA256", "sha256")}"\n',
            ["keys[1] is the same key as", "keys[0] (key_id 'first')", "give each key once"],
            id="duplicate-digest",
        ),
    ],
)
@pytest.mark.parametrize(("route", "setting"), [p for p in ROUTES if p.id != "load_key_file"])
def test_duplicate_keys_in_a_key_file(
    tmp_path: Path, route: Route, setting: str, second: str, fragments: list[str]
) -> None:
    path = write(tmp_path, FIRST_ENTRY + second)
    assert len(load_key_file(path)) == 2  # each entry is valid on its own
    error = raises_config(lambda: route(path), f"{setting} ({path})", *fragments)
    assert_no_secret(error)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        pytest.param({"API_KEY": OTHER_KEY}, "is the same key as API_KEY", id="API_KEY"),
        pytest.param(
            {"ADDITIONAL_API_KEYS": f"{CANARY},{OTHER_KEY}"},
            "is the same key as ADDITIONAL_API_KEYS (key 2)",
            id="ADDITIONAL_API_KEYS",
        ),
    ],
)
def test_an_environment_key_repeated_in_the_key_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], fragment: str
) -> None:
    path = write(tmp_path, FIRST_ENTRY)
    set_env(monkeypatch, {"API_KEYS_FILE": str(path), **env})
    error = raises_config(
        APIKeyAuth.from_env, f"API_KEYS_FILE ({path}) keys[0] {fragment}", "give each key once"
    )
    assert_no_secret(error, *env.values())


def test_a_relative_key_file_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write(tmp_path, FIRST_ENTRY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("API_KEYS_FILE", "keys.toml")
    auth = APIKeyAuth.from_env()
    assert auth.key_ids == ("first",)


# --------------------------------------------------------------- settings subclasses


class MyAppSettings(AuthSettings):
    model_config = SettingsConfigDict(env_prefix="MYAPP_")


#: A variable name without the MYAPP_ prefix: one the application does not read.
UNPREFIXED = re.compile(
    r"(?<![A-Za-z0-9_])(?:API_KEY|ADDITIONAL_API_KEYS|API_KEYS_FILE|AUTH_MODE|ENVIRONMENT"
    r"|ENABLE_USER_TRACKING|ENABLE_REQUEST_LOGGING)(?![A-Za-z0-9_])"
)


def assert_only_prefixed_names(error: ConfigurationError) -> None:
    """Every variable an error names is one the MYAPP_ application reads."""
    assert "MYAPP_" in str(error)
    assert UNPREFIXED.search(str(error)) is None, str(error)


def test_settings_subclass_reads_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", OTHER_KEY)  # not this application's variable
    monkeypatch.setenv("AUTH_MODE", "fancy")  # nor this one
    monkeypatch.setenv("MYAPP_API_KEY", CANARY)
    monkeypatch.setenv("MYAPP_ADDITIONAL_API_KEYS", THIRD_KEY)
    monkeypatch.setenv("MYAPP_AUTH_MODE", "Advanced")
    auth = APIKeyAuth(settings=MyAppSettings)
    assert auth.verify(CANARY) is not None
    assert auth.verify(THIRD_KEY) is not None
    assert auth.verify(OTHER_KEY) is None
    assert auth.mode == "advanced"
    assert variable(MyAppSettings, "api_key") == "MYAPP_API_KEY"
    assert APIKeyAuth.from_env(settings=MyAppSettings).key_ids == auth.key_ids


def test_settings_subclass_keeps_empty_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYAPP_AUTH_MODE", "")
    monkeypatch.setenv("API_KEY", "")  # another prefix's variable: not this app's source
    assert APIKeyAuth(settings=MyAppSettings).is_development_mode
    monkeypatch.setenv("MYAPP_API_KEY", "")  # this app's key source, set and empty
    assert not APIKeyAuth(settings=MyAppSettings).is_development_mode


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        pytest.param(
            {"MYAPP_API_KEY": CANARY + "!"},
            ["MYAPP_API_KEY:", "characters a Bearer token cannot carry"],
            id="bad-key",
        ),
        pytest.param({"MYAPP_AUTH_MODE": "fancy"}, ["MYAPP_AUTH_MODE must be"], id="bad-mode"),
        pytest.param(
            {"MYAPP_ENVIRONMENT": "production"},
            [
                "no API key is configured (MYAPP_API_KEY, MYAPP_ADDITIONAL_API_KEYS and "
                "MYAPP_API_KEYS_FILE hold none)",
                "MYAPP_ENVIRONMENT=production refuses to start that way",
                "set MYAPP_API_KEY",
            ],
            id="production-no-key",
        ),
        pytest.param(
            {"MYAPP_ENVIRONMENT": "production", "MYAPP_ADDITIONAL_API_KEYS": " , "},
            ["hold none", "MYAPP_ENVIRONMENT=production refuses to start that way"],
            id="production-empty-items",
        ),
        pytest.param(
            {"MYAPP_ENVIRONMENT": "production", "MYAPP_API_KEY": SHORT_KEY},
            [
                "MYAPP_API_KEY is shorter than 16 characters",
                "which MYAPP_ENVIRONMENT=production refuses",
            ],
            id="production-short-key",
        ),
        pytest.param(
            {"MYAPP_ENVIRONMENT": "prod"},
            ["MYAPP_ENVIRONMENT must be one of", "not 'prod'"],
            id="bad-environment",
        ),
        pytest.param(
            {"MYAPP_ENVIRONMENT": "staging", "myapp_environment": "production"},
            [
                "MYAPP_ENVIRONMENT is set more than once, as MYAPP_ENVIRONMENT, "
                "myapp_environment: keep one"
            ],
            id="set-twice",
        ),
        pytest.param(
            {"MYAPP_ADDITIONAL_API_KEYS": f"{OTHER_KEY},{SHORT_KEY} x"},
            ["MYAPP_ADDITIONAL_API_KEYS (key 2):"],
            id="bad-additional-key",
        ),
        pytest.param(
            {"MYAPP_API_KEY": CANARY, "MYAPP_ADDITIONAL_API_KEYS": CANARY},
            ["MYAPP_ADDITIONAL_API_KEYS (key 1) is the same key as MYAPP_API_KEY"],
            id="duplicate",
        ),
        pytest.param(
            {"MYAPP_API_KEYS_FILE": "/nonexistent/keys.toml"},
            ["MYAPP_API_KEYS_FILE (/nonexistent/keys.toml) does not exist", "unset MYAPP_"],
            id="missing-file",
        ),
    ],
)
def test_settings_subclass_errors_name_the_prefixed_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragments: list[str]
) -> None:
    set_env(monkeypatch, env)
    error = raises_config(lambda: APIKeyAuth(settings=MyAppSettings), *fragments)
    assert_no_secret(error, *secrets_of(env))
    assert_only_prefixed_names(error)


def test_settings_subclass_context_names_the_prefixed_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_env(monkeypatch, {"MYAPP_AUTH_MODE": "fancy", "MYAPP_ENABLE_REQUEST_LOGGING": "2"})
    error = raised(lambda: APIKeyAuth(settings=MyAppSettings))
    assert sorted(error.context["variables"]) == [
        "MYAPP_AUTH_MODE",
        "MYAPP_ENABLE_REQUEST_LOGGING",
    ]
    assert error.context["setting"] == error.context["variables"][0]
    assert_only_prefixed_names(error)


def test_settings_subclass_ignores_other_spellings_of_unprefixed_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not this application's variables: set twice, they are none of its business.
    set_env(monkeypatch, {"ENVIRONMENT": "production", "environment": "staging"})
    monkeypatch.setenv("MYAPP_API_KEY", CANARY)
    auth = APIKeyAuth(settings=MyAppSettings)
    assert auth.environment == "development"
    raises_config(APIKeyAuth, "ENVIRONMENT is set more than once")  # the control


def test_settings_subclass_production_refuses_an_empty_key_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MYAPP_ENVIRONMENT", "production")
    error = raises_config(
        lambda: APIKeyAuth(keys=[], settings=MyAppSettings),
        "keys= and keys_file hold no key",
        "MYAPP_ENVIRONMENT=production refuses to start that way",
        "pass at least one key",
    )
    assert_only_prefixed_names(error)
    error = raises_config(
        lambda: APIKeyAuth(keys=[SHORT_KEY], settings=MyAppSettings),
        "keys[0] is shorter than 16 characters, which MYAPP_ENVIRONMENT=production refuses",
    )
    assert_only_prefixed_names(error)


def test_settings_subclass_comma_hint_names_the_prefixed_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fix must point at a variable this application reads.
    monkeypatch.setenv("MYAPP_API_KEY", f"{CANARY},{OTHER_KEY}")
    error = raises_config(
        lambda: APIKeyAuth(settings=MyAppSettings),
        "MYAPP_API_KEY:",
        "comma-separated, in MYAPP_ADDITIONAL_API_KEYS",
    )
    assert_no_secret(error, OTHER_KEY)
    assert_only_prefixed_names(error)
    assert_raised_outside_except_blocks(error, OTHER_KEY)


def test_settings_subclass_key_file_metadata_is_carried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MYAPP_API_KEYS_FILE", str(write(tmp_path, VALID_FILE)))
    now = at(2026, 6, 1)
    context = APIKeyAuth(settings=MyAppSettings, clock=lambda: now).verify(CANARY)
    assert context is not None
    assert dict(context.metadata) == {"team": "payments", "tier": 2}
    auth = APIKeyAuth(keys=[APIKey(CANARY, metadata={"team": "x"})], settings=MyAppSettings)
    context = auth.verify(CANARY)
    assert context is not None
    assert (context.mode, dict(context.metadata)) == ("simple", {"team": "x"})


def test_settings_subclass_reads_a_dotenv_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dotenv = write(tmp_path, f"API_KEY={CANARY}\nAUTH_MODE=advanced\n", name=".env")

    class DotEnvSettings(AuthSettings):
        model_config = SettingsConfigDict(env_file=dotenv)

    auth = APIKeyAuth(settings=DotEnvSettings)
    assert auth.verify(CANARY) is not None
    assert auth.mode == "advanced"
    monkeypatch.setenv("AUTH_MODE", "simple")  # the environment wins over the file
    assert APIKeyAuth(settings=DotEnvSettings).mode == "simple"


@pytest.mark.parametrize(
    "line",
    ["MYAPP_API_KEY=", 'MYAPP_API_KEY=""', "myapp_additional_api_keys=", "MYAPP_API_KEYS_FILE="],
)
def test_an_empty_key_variable_in_a_dotenv_file_names_a_key_source(
    tmp_path: Path, line: str
) -> None:
    # The README's Settings(AuthSettings) with env_file=".env": API_KEY= there must
    # fail closed as it does in the environment, never mean development mode.
    dotenv = write(tmp_path, f"MYAPP_AUTH_MODE=simple\n{line}\n", name=".env")

    class DotEnvSettings(AuthSettings):
        model_config = SettingsConfigDict(env_prefix="MYAPP_", env_file=dotenv)

    with capture_logs() as logs:
        auth = APIKeyAuth(settings=DotEnvSettings)
    assert not auth.is_development_mode
    assert [entry["event"] for entry in logs] == ["no_keys"]


def test_an_empty_secret_file_names_a_key_source(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()

    class SecretSettings(AuthSettings):
        model_config = SettingsConfigDict(env_prefix="MYAPP_", secrets_dir=secrets)

    assert APIKeyAuth(settings=SecretSettings).is_development_mode  # nothing given
    (secrets / "MYAPP_API_KEY").write_text("")
    assert not APIKeyAuth(settings=SecretSettings).is_development_mode


@pytest.mark.parametrize(
    "env_file",
    [
        pytest.param("missing", id="missing-file"),
        pytest.param("other", id="other-variables"),
        pytest.param("unprefixed", id="another-prefix"),
    ],
)
def test_a_dotenv_file_without_key_variables_keeps_development_mode(
    tmp_path: Path, env_file: str
) -> None:
    dotenv = tmp_path / ".env"
    if env_file == "other":
        dotenv.write_text("MYAPP_AUTH_MODE=\nDATABASE_URL=\n")
    elif env_file == "unprefixed":
        dotenv.write_text("API_KEY=\n")  # read only by apps without the MYAPP_ prefix

    class DotEnvSettings(AuthSettings):
        model_config = SettingsConfigDict(env_prefix="MYAPP_", env_file=dotenv)

    assert APIKeyAuth(settings=DotEnvSettings).is_development_mode


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(object, id="object"),
        pytest.param(dict, id="dict"),
        pytest.param("MYAPP_", id="str"),
        pytest.param(AuthSettings(), id="instance"),
        pytest.param(None, id="None"),
    ],
)
def test_settings_must_be_an_authsettings_subclass(settings: object) -> None:
    raises_config(
        lambda: APIKeyAuth(keys=[CANARY], settings=settings),  # type: ignore[arg-type]
        "settings must be AuthSettings or a subclass of it",
        "the class, not an instance",
    )


# ---------------------------------------------------------------------------- property

TOKEN_BODY = st.text(
    alphabet=string.ascii_letters + string.digits + "-._~+/", min_size=1, max_size=64
)
KEYS = st.lists(
    st.tuples(TOKEN_BODY, st.sampled_from(["", "=", "=="])).map("".join),
    min_size=1,
    max_size=8,
    unique=True,
)
PADDING = st.text(alphabet=" \t", max_size=3)


@given(keys=KEYS, data=st.data())
def test_additional_api_keys_round_trip(keys: list[str], data: st.DataObject) -> None:
    items: list[str] = []
    for key in keys:
        if data.draw(st.booleans(), label="empty item before"):
            items.append(data.draw(PADDING))
        items.append(data.draw(PADDING) + key + data.draw(PADDING))
    value = ",".join(items)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADDITIONAL_API_KEYS", value)
        labelled = environment_keys(read_settings())
        auth = APIKeyAuth.from_env()
    assert [label for label, _ in labelled] == [
        f"ADDITIONAL_API_KEYS (key {number})" for number in range(1, len(keys) + 1)
    ]
    assert [key.digest for _, key in labelled] == [plain_digest(key) for key in keys]
    assert len(auth.key_ids) == len(keys)
    for key in keys:
        assert auth.verify(key) is not None
    assert auth.verify("x" + max(keys, key=len)) is None  # longer than any key


def test_a_field_a_subclass_adds_is_explained_with_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class WithPort(AuthSettings):
        port: int = 8000

    monkeypatch.setenv("PORT", "eighty")
    error = raised(lambda: APIKeyAuth(settings=WithPort))
    assert str(error).startswith("PORT: ")
    assert error.context == {"setting": "PORT", "variables": ["PORT"]}


def test_a_key_file_path_that_cannot_be_opened_says_so(tmp_path: Path) -> None:
    too_long = tmp_path / ("k" * 300 + ".toml")
    raises_config(
        lambda: load_key_file(too_long),
        "cannot be opened (File name too long): point API_KEYS_FILE at the TOML key file",
    )


def test_a_key_pasted_into_api_keys_file_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS_FILE", CANARY)
    error = raised(APIKeyAuth)
    assert str(error) == (
        f"API_KEYS_FILE (a path of {len(CANARY)} characters) does not exist: "
        "fix the path or unset API_KEYS_FILE"
    )


def test_a_key_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_bytes(b"\xef\xbb\xbf" + f'[[keys]]\ndigest = "{plain_digest(CANARY)}"\n'.encode())
    assert [key.digest for _, key in load_key_file(path)] == [plain_digest(CANARY)]


def test_a_key_file_nested_too_deeply_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    raises_config(lambda: load_key_file(path), "is nested too deeply to be a key file")


# ------------------------------------------- a key file rewritten while it is read

_FILE_KEYS = [f"sk-file-{n}-0123456789abcdef" for n in range(4)]


def _key_file_text(secrets: list[str]) -> str:
    return "".join(
        f'[[keys]]\ndigest = "{plain_digest(secret)}"\nname = "k{n}"\n'
        for n, secret in enumerate(secrets)
    )


def test_a_key_file_rewritten_during_a_reload_is_read_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import asgi_apikey.settings

    path = write(tmp_path, _key_file_text(_FILE_KEYS[:3]))
    auth = APIKeyAuth(keys_file=path)
    assert auth.key_ids == ("k0", "k1", "k2")
    new_text = _key_file_text([*_FILE_KEYS[:3], _FILE_KEYS[3]])
    original = asgi_apikey.keyfile._read_all
    reads: list[int] = []

    def torn(handle: Any) -> bytes:
        # The first read sees the writer halfway: its first table only (it parses,
        # with fewer keys), and then the writer finishes, in place.
        data = original(handle)
        reads.append(len(data))
        if len(reads) == 1:
            path.write_text(new_text, encoding="utf-8")
            return data[: data.index(b"[[keys]]", 1)]
        return data

    monkeypatch.setattr(asgi_apikey.keyfile, "_read_all", torn)
    auth.reload()
    assert len(reads) == 2
    assert list(auth.key_ids) == ["k0", "k1", "k2", "k3"]
    assert auth.verify(_FILE_KEYS[3]) is not None


def test_a_key_file_that_never_holds_still_fails_the_reload_and_keeps_the_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import asgi_apikey.settings

    path = write(tmp_path, _key_file_text(_FILE_KEYS[:2]))
    auth = APIKeyAuth(keys_file=path)
    original = asgi_apikey.keyfile._read_all
    rewrites = iter(range(1, 100))

    def always_rewritten(handle: Any) -> bytes:
        data = original(handle)
        path.write_text(_key_file_text(_FILE_KEYS[: 1 + next(rewrites) % 4]), encoding="utf-8")
        return data[: len(data) // 2]

    monkeypatch.setattr(asgi_apikey.keyfile, "_read_all", always_rewritten)
    error = raises_config(
        auth.reload,
        f"keys_file ({path}) changed while it was read, 5 times in a row",
        "rename it over the old one",
    )
    assert error.context == {"setting": "keys_file"}
    assert auth.key_ids == ("k0", "k1")  # the old keys stay
    assert auth.verify(_FILE_KEYS[1]) is not None


def test_a_key_file_replaced_by_rename_during_a_read_is_read_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An atomic replace while the old file is being read: the old text is whole,
    # but no longer the file; the next read takes the new one.
    import asgi_apikey.settings

    path = write(tmp_path, _key_file_text(_FILE_KEYS[:1]))
    auth = APIKeyAuth(keys_file=path)
    original = asgi_apikey.keyfile._read_all
    calls: list[None] = []

    def renamed_over(handle: Any) -> bytes:
        data = original(handle)
        if not calls:
            staged = write(tmp_path, _key_file_text(_FILE_KEYS[:2]), name="keys.toml.new")
            os.replace(staged, path)
        calls.append(None)
        return data

    monkeypatch.setattr(asgi_apikey.keyfile, "_read_all", renamed_over)
    auth.reload()
    assert len(calls) == 2
    assert auth.key_ids == ("k0", "k1")
