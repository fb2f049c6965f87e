"""The three errors: types, status codes, headers, context, and no secrets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from asgi_apikey import (
    APIKey,
    APIKeyAuth,
    APIKeyMiddleware,
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    require_scopes,
    verify_api_key,
)
from asgi_apikey.context import ANONYMOUS
from tests.asgi import CANARY, OTHER_KEY, Recorder, call, http_scope

CHALLENGE = 'Bearer realm="api"'


# ----------------------------------------------------------- ConfigurationError


def test_configuration_error_is_a_value_error_with_context() -> None:
    error = ConfigurationError("default must be one of ...", setting="default", index=2)
    assert isinstance(error, ValueError)
    assert str(error) == "default must be one of ..."
    assert error.context == {"setting": "default", "index": 2}
    assert ConfigurationError("plain").context == {}
    with pytest.raises(ValueError, match="boom"):
        raise ConfigurationError("boom")


def test_configuration_errors_from_the_package_carry_context() -> None:
    with pytest.raises(ConfigurationError) as info:
        APIKeyAuth(keys=[OTHER_KEY, 42])  # type: ignore[list-item]
    assert info.value.context["where"] == "keys[1]"
    assert isinstance(info.value.context, dict)


def raise_with_canary() -> list[tuple[str, Callable[[], object]]]:
    auth = APIKeyAuth(keys=[CANARY])
    return [
        ("whitespace", lambda: APIKey(CANARY + " ")),
        ("bad-char", lambda: APIKey(CANARY + "!")),
        ("both", lambda: APIKey(CANARY, digest="sha256:" + "0" * 64)),
        ("list-item", lambda: APIKeyAuth(keys=["sha256:" + CANARY])),
        ("duplicate", lambda: APIKeyAuth(keys=[CANARY, OTHER_KEY, CANARY])),
        ("add-duplicate", lambda: auth.add_key(CANARY)),
        ("add-bad", lambda: auth.add_key(" " + CANARY)),
        ("middleware-duplicate", lambda: APIKeyMiddleware(Recorder(), keys=[CANARY, CANARY])),
        ("middleware-bad", lambda: APIKeyMiddleware(Recorder(), keys=[CANARY + "\n"])),
        (
            "middleware-keys-and-auth",
            lambda: APIKeyMiddleware(Recorder(), keys=[CANARY], auth=APIKeyAuth(keys=[CANARY])),
        ),
    ]


@pytest.mark.parametrize(
    "action", [pytest.param(action, id=name) for name, action in raise_with_canary()]
)
def test_configuration_errors_never_hold_the_key(action: Callable[[], object]) -> None:
    with pytest.raises(ConfigurationError) as info:
        action()
    error: BaseException | None = info.value
    while error is not None:
        for text in (str(error), repr(error), repr(error.args), repr(vars(error))):
            assert CANARY not in text
        error = error.__cause__ or error.__context__


# ------------------------------------------------------ HTTP errors (401 / 403)


@pytest.mark.parametrize(("cls", "status"), [(AuthenticationError, 401), (AuthorizationError, 403)])
def test_http_errors_are_starlette_http_exceptions(
    cls: type[AuthenticationError | AuthorizationError], status: int
) -> None:
    error = cls("Nope", www_authenticate=CHALLENGE, context={"reason": "invalid"})
    assert isinstance(error, HTTPException)
    assert error.status_code == status
    assert error.detail == "Nope"
    assert error.headers == {"WWW-Authenticate": CHALLENGE}
    assert error.context == {"reason": "invalid"}
    assert isinstance(error.context, dict)
    assert str(status) in str(error)
    assert "Nope" in str(error)
    assert cls.__name__ in repr(error)


def test_http_error_context_is_a_copy_and_defaults_to_empty() -> None:
    source = {"reason": "missing"}
    error = AuthenticationError("Missing", www_authenticate=CHALLENGE, context=source)
    source["reason"] = "changed"
    assert error.context == {"reason": "missing"}
    assert AuthorizationError("x", www_authenticate=CHALLENGE).context == {}


def test_the_two_http_errors_are_distinct() -> None:
    assert not issubclass(AuthenticationError, AuthorizationError)
    assert not issubclass(AuthorizationError, AuthenticationError)
    assert not issubclass(AuthenticationError, ValueError)


@pytest.mark.parametrize(("cls", "status"), [(AuthenticationError, 401), (AuthorizationError, 403)])
def test_starlette_turns_http_errors_into_responses(
    cls: type[AuthenticationError | AuthorizationError], status: int
) -> None:
    async def endpoint(request: Request) -> Response:
        raise cls("Nope", www_authenticate=CHALLENGE)

    app = Starlette(routes=[Route("/", endpoint)])
    result = call(app, http_scope("/"))
    assert result.status == status
    assert result.header("www-authenticate") == CHALLENGE


def test_helper_errors_hold_no_secret() -> None:
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="billing")])
    ctx = auth.verify(CANARY)
    assert ctx is not None
    scope = http_scope("/", headers=[(b"authorization", b"Bearer " + CANARY.encode())])
    scope["auth"] = ctx
    request = Request(scope)
    with pytest.raises(AuthorizationError) as denied:
        require_scopes("admin")(request)
    assert denied.value.context["key_id"] == "billing"
    anonymous = http_scope("/", headers=[(b"authorization", b"Bearer " + CANARY.encode())])
    anonymous["auth"] = ANONYMOUS
    with pytest.raises(AuthenticationError) as missing:
        verify_api_key(Request(anonymous))
    for error in (denied.value, missing.value):
        text = str(error) + repr(error) + repr(error.context) + repr(error.headers)
        assert CANARY not in text
        assert error.headers is not None
        assert "WWW-Authenticate" in error.headers
