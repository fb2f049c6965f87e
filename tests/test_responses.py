"""Security headers on every response, and the prepared denials."""

from __future__ import annotations

import json

import pytest

from asgi_apikey import APIKeyMiddleware, ConfigurationError
from asgi_apikey.responses import DEFAULT_HSTS, Denials, SecurityHeaders
from tests.asgi import CANARY, Recorder, bearer, call, http_scope

BASELINE = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def headers_of(app: APIKeyMiddleware, inner: Recorder, **scope: object) -> dict[str, str]:
    result = call(app, http_scope("/x", headers=[bearer(CANARY)], **scope), inner)  # type: ignore[arg-type]
    assert result.status == 200
    return {k.decode(): v.decode() for k, v in result.headers}


@pytest.mark.parametrize("path", ["/x", "/nope"], ids=["app response", "denial"])
def test_baseline_headers_on_app_responses_and_denials(path: str) -> None:
    inner = Recorder()
    app = APIKeyMiddleware(inner, keys=[CANARY], public=["/x"])
    result = call(app, http_scope(path), inner)
    sent = {k.decode(): v.decode() for k, v in result.headers}
    assert BASELINE.items() <= sent.items()
    assert "strict-transport-security" not in sent
    assert "x-xss-protection" not in sent


@pytest.mark.parametrize("path", ["/x", "/nope"], ids=["app response", "denial"])
def test_hsts_only_over_https(path: str) -> None:
    inner = Recorder()
    app = APIKeyMiddleware(inner, keys=[CANARY], public=["/x"])
    result = call(app, http_scope(path, scheme="https"), inner)
    assert result.header("strict-transport-security") == DEFAULT_HSTS


def test_app_headers_win_case_insensitively() -> None:
    inner = Recorder(
        response_headers=[(b"X-Frame-Options", b"SAMEORIGIN"), (b"referrer-policy", b"origin")]
    )
    app = APIKeyMiddleware(inner, keys=[CANARY])
    result = call(app, http_scope("/x", headers=[bearer(CANARY)]), inner)
    frame = [v for k, v in result.headers if k.lower() == b"x-frame-options"]
    assert frame == [b"SAMEORIGIN"]
    assert result.header("referrer-policy") == "origin"
    assert result.header("x-content-type-options") == "nosniff"


def test_switched_off() -> None:
    inner = Recorder()
    app = APIKeyMiddleware(inner, keys=[CANARY], security_headers=False)
    sent = headers_of(app, inner, scheme="https")
    assert not set(BASELINE) & set(sent)
    assert "strict-transport-security" not in sent
    denial = call(app, http_scope("/x"), inner)
    assert denial.header("x-frame-options") is None
    assert denial.header("www-authenticate") == 'Bearer realm="api"'


def test_overridden_dropped_and_added() -> None:
    inner = Recorder()
    app = APIKeyMiddleware(
        inner,
        keys=[CANARY],
        security_headers={
            "X-Frame-Options": None,
            "Referrer-Policy": "same-origin",
            "Content-Security-Policy": "default-src 'none'",
            "Strict-Transport-Security": "max-age=600",
        },
    )
    sent = headers_of(app, inner, scheme="https")
    assert "x-frame-options" not in sent
    assert sent["referrer-policy"] == "same-origin"
    assert sent["content-security-policy"] == "default-src 'none'"
    assert sent["strict-transport-security"] == "max-age=600"
    assert sent["x-content-type-options"] == "nosniff"


def test_hsts_can_be_dropped() -> None:
    security = SecurityHeaders({"Strict-Transport-Security": None})
    assert security.for_scheme("https") == security.for_scheme("http")
    assert security.for_scheme("https")
    assert SecurityHeaders(False).for_scheme("https") == ()


def test_none_for_an_unknown_header_is_allowed() -> None:
    assert SecurityHeaders({"X-Unknown": None}).for_scheme("http") == SecurityHeaders(
        True
    ).for_scheme("http")


@pytest.mark.parametrize(
    "config",
    [{1: "x"}, {"X-Ok": 1}, {"X-Ok": "caf\u00e9"}, {"": "x"}, ["X-Frame-Options"]],
    ids=["int name", "int value", "non-ASCII value", "empty name", "list"],
)
def test_bad_security_header_configuration(config: object) -> None:
    with pytest.raises(ConfigurationError):
        SecurityHeaders(config)  # type: ignore[arg-type]


def test_denial_bodies_are_json_detail_only() -> None:
    denials = Denials("api", SecurityHeaders(True))
    for denial in (
        denials.missing,
        denials.invalid,
        denials.malformed("The bearer token is empty"),
        denials.forbidden(frozenset({"admin"})),
    ):
        assert json.loads(denial._body) == {"detail": denial.detail}
        assert (b"cache-control", b"no-store") in denial.headers("http")
        assert denial.status in (400, 401, 403)
        assert repr(denial).startswith(f"Denial({denial.status}")


def test_denials_are_prepared_once() -> None:
    denials = Denials("api", SecurityHeaders(True))
    assert denials.malformed("x") is denials.malformed("x")
    assert denials.forbidden(frozenset({"a"})) is denials.forbidden(frozenset({"a"}))


def test_challenges_are_valid_rfc_6750_quoted_strings() -> None:
    # error_description and scope must not carry '"' or '\' (RFC 6750 §3).
    denials = Denials("api", SecurityHeaders(False))
    from asgi_apikey.credentials import Malformed, parse_authorization

    samples = [b"", b"Bearer", b"Bearer a b", b"Bearer \x00", b"Bearer ab=cd", b"\x01"]
    for sample in samples:
        parsed = parse_authorization(sample, 16)
        assert isinstance(parsed, Malformed)
        challenge = dict(denials.malformed(parsed.description).headers("http"))[b"www-authenticate"]
        inner = challenge.split(b'error_description="', 1)[1][:-1]
        assert b'"' not in inner
        assert b"\\" not in inner


@pytest.mark.parametrize(
    "name",
    ["Content-Length", "content-type", "Set-Cookie", "WWW-Authenticate", "Transfer-Encoding"],
)
def test_framing_and_challenge_headers_are_not_security_headers(name: str) -> None:
    with pytest.raises(ConfigurationError, match="not a security header"):
        SecurityHeaders({name: "x"})


def test_configured_cache_control_is_not_doubled() -> None:
    inner = Recorder()
    app = APIKeyMiddleware(
        inner, keys=[CANARY], allow_query_token=True, security_headers={"Cache-Control": "no-store"}
    )
    denial = call(app, http_scope("/x"), inner)
    assert [v for k, v in denial.headers if k == b"cache-control"] == [b"no-store"]
    query = b"access_token=" + CANARY.encode()
    accepted = call(app, http_scope("/x", query_string=query), inner)
    assert [v for k, v in accepted.headers if k == b"cache-control"] == [b"no-store"]


def test_default_security_headers_cannot_be_changed_at_run_time() -> None:
    from asgi_apikey.responses import DEFAULT_SECURITY_HEADERS

    with pytest.raises(TypeError):
        DEFAULT_SECURITY_HEADERS["X-Frame-Options"] = "SAMEORIGIN"  # type: ignore[index]
