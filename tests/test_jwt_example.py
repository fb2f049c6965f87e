"""examples/jwt_app.py works as its docstring says: API keys and HS256 JWTs side by side."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx2
import jwt
import pytest
from starlette.testclient import TestClient

from asgi_apikey import APIKey
from examples.jwt_app import AUDIENCE, ISSUER, create_app, hs256_verifier
from tests.asgi import CANARY, OTHER_KEY

#: The shared HS256 secret: like CANARY, it must never appear in a response.
SECRET = "jwt-secret-canary-9d8c7b6a5f4e3d2c1b0a9f8e"
OTHER_SECRET = "jwt-other-secret-0a1b2c3d4e5f6a7b8c9d0e1f"
#: An API key that has the form of a JWT: three dot-separated parts.
DOTTED_KEY = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLTAxMjM0NTY3"

NOT_A_JWT = "The token is not a valid JWT for this API"


@pytest.fixture
def client() -> TestClient:
    keys: list[str | APIKey] = [
        APIKey(CANARY, name="admin", scopes={"admin"}),
        APIKey(OTHER_KEY, name="reader", scopes={"read"}),
        APIKey(DOTTED_KEY, name="dotted"),
    ]
    return TestClient(create_app(keys, SECRET))


def _claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims; an override of None drops the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "scope": "read write",
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def _token(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), secret, algorithm="HS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _forge(header: dict[str, Any], claims: dict[str, Any], secret: str | None) -> str:
    """A JWT built by hand: any header, signed with HMAC-SHA256 (or unsigned)."""
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    signature = b""
    if secret is not None:
        signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def _tampered() -> str:
    header, _, signature = _token(scope="read").split(".")
    payload = _b64(json.dumps(_claims(scope="admin")).encode())
    return f"{header}.{payload}.{signature}"


def _get(client: TestClient, path: str, token: str | None = None) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = client.get(path, headers=headers)
    everything = response.text + repr(response.headers.multi_items())
    for secret in (SECRET, OTHER_SECRET):
        # Not the secret, nor any 12 characters of it.
        for start in range(len(secret) - 11):
            assert secret[start : start + 12] not in everything
    return response


def _challenge(response: httpx2.Response) -> dict[str, str]:
    header = response.headers["www-authenticate"]
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def _assert_invalid_token(
    response: httpx2.Response, description: str, detail: str | None = None
) -> None:
    assert response.status_code == 401
    challenge = _challenge(response)
    assert challenge["error"] == "invalid_token"
    assert challenge["error_description"] == description
    assert response.json() == {"detail": detail or f"Invalid API key: {description}"}


def test_api_keys_work(client: TestClient) -> None:
    assert _get(client, "/health").json() == {"status": "ok"}
    assert _get(client, "/v1/whoami").status_code == 401
    assert _get(client, "/v1/whoami", CANARY).json() == {
        "key_id": "admin",
        "scopes": ["admin", "authenticated"],
        "mode": "simple",
    }
    assert _get(client, "/v1/admin/stats", CANARY).json() == {"requests": 0, "by": "admin"}
    assert _get(client, "/v1/admin/stats", OTHER_KEY).status_code == 403


@pytest.mark.parametrize(
    ("overrides", "scopes"),
    [
        ({}, ["authenticated", "read", "write"]),
        ({"scope": "read"}, ["authenticated", "read"]),
        ({"scope": "  read   read  "}, ["authenticated", "read"]),
        ({"scope": None}, ["authenticated"]),
        ({"scope": ""}, ["authenticated"]),
        ({"scope": ["admin"]}, ["authenticated"]),
        ({"sub": "svc:billing@example"}, ["authenticated", "read", "write"]),
        ({"sub": "x" * 99}, ["authenticated", "read", "write"]),
    ],
    ids=[
        "read-write",
        "read",
        "spaces",
        "no-scope",
        "empty-scope",
        "scope-not-a-string",
        "sub",
        "sub-99-chars",
    ],
)
def test_a_valid_jwt_is_accepted(
    client: TestClient, overrides: dict[str, Any], scopes: list[str]
) -> None:
    response = _get(client, "/v1/whoami", _token(**overrides))
    assert response.status_code == 200
    assert response.json() == {
        "key_id": f"jwt:{overrides.get('sub', 'alice')}",
        "scopes": scopes,
        "mode": "jwt",
    }


@pytest.mark.parametrize(
    ("scope", "status"),
    [("read write", 403), ("", 403), ("administrator", 403), ("admin", 200), ("read admin", 200)],
    ids=["read-write", "none", "prefix-is-not-enough", "admin", "read-admin"],
)
def test_admin_paths_need_the_admin_scope(client: TestClient, scope: str, status: int) -> None:
    response = _get(client, "/v1/admin/stats", _token(scope=scope))
    assert response.status_code == status
    if status == 403:
        challenge = _challenge(response)
        assert challenge["error"] == "insufficient_scope"
        assert challenge["scope"] == "admin"
    else:
        assert response.json() == {"requests": 0, "by": "jwt:alice"}


@pytest.mark.parametrize("seconds_ago", [1, 3600], ids=["just", "an-hour"])
def test_an_expired_jwt_says_so(client: TestClient, seconds_ago: int) -> None:
    token = _token(exp=int(time.time()) - seconds_ago, iat=int(time.time()) - 7200)
    _assert_invalid_token(_get(client, "/v1/whoami", token), "The token has expired")


_HS256 = {"alg": "HS256", "typ": "JWT"}

_INVALID: list[Callable[[], str]] = [
    lambda: _token(secret=OTHER_SECRET),
    lambda: _token(aud="another-api"),
    lambda: _token(aud=None),
    lambda: _token(iss="https://evil.example.test"),
    lambda: _token(iss=None),
    lambda: _token(exp=None),
    lambda: _token(sub=None),
    lambda: _token(sub=12345),
    lambda: _token(nbf=int(time.time()) + 3600),
    lambda: _forge({"alg": "none", "typ": "JWT"}, _claims(scope="admin"), None),
    lambda: _forge({"alg": "None", "typ": "JWT"}, _claims(scope="admin"), None),
    lambda: _forge({"alg": "RS256", "typ": "JWT"}, _claims(scope="admin"), SECRET),
    lambda: _forge({"alg": "HS512", "typ": "JWT"}, _claims(scope="admin"), SECRET),
    lambda: _forge(_HS256, _claims(scope="admin"), None),
    _tampered,
    lambda: _token().rsplit(".", 1)[0] + "." + _token(secret=OTHER_SECRET).rsplit(".", 1)[1],
    lambda: "a.b.c",
    lambda: f"{DOTTED_KEY[:-1]}8",
]


@pytest.mark.parametrize(
    "make",
    _INVALID,
    ids=[
        "wrong-secret",
        "wrong-audience",
        "no-audience",
        "wrong-issuer",
        "no-issuer",
        "no-exp",
        "no-sub",
        "sub-not-a-string",
        "not-yet-valid",
        "alg-none",
        "alg-None",
        "rs256-header-hs256-signature",
        "hs512-header-hs256-signature",
        "hs256-header-no-signature",
        "tampered-payload",
        "signature-of-another-token",
        "three-parts-garbage",
        "api-key-shaped-like-a-jwt-one-char-off",
    ],
)
def test_an_invalid_jwt_is_refused(client: TestClient, make: Callable[[], str]) -> None:
    token = make()
    for path in ("/v1/whoami", "/v1/admin/stats"):
        _assert_invalid_token(_get(client, path, token), NOT_A_JWT)


@pytest.mark.parametrize(
    "sub", ["", "x" * 100, "tab\there", "line\nbreak"], ids=["empty", "long", "tab", "newline"]
)
def test_a_jwt_with_an_unusable_subject_is_refused(client: TestClient, sub: str) -> None:
    response = _get(client, "/v1/whoami", _token(sub=sub))
    _assert_invalid_token(response, "The token has an unusable subject")


@pytest.mark.parametrize(
    "token",
    ["sk-unknown-0123456789abcdef", "one.dot", "four.dots.are.too.many", f"{CANARY}x"],
    ids=["unknown-key", "one-dot", "four-dots", "key-plus-one"],
)
def test_a_token_that_is_no_jwt_and_no_key_is_an_invalid_key(
    client: TestClient, token: str
) -> None:
    response = _get(client, "/v1/whoami", token)
    _assert_invalid_token(response, "The API key is not valid", "Invalid API key")


@pytest.mark.parametrize(
    "secret",
    ["", "x" * 31, "é" * 15, SECRET[:31]],
    ids=["empty", "31-ascii", "30-bytes-in-15-chars", "canary-31"],
)
def test_a_secret_shorter_than_32_bytes_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match=r"at least 32 bytes") as caught:
        create_app([CANARY], secret)
    assert not secret or secret not in str(caught.value)
    with pytest.raises(ValueError, match=r"at least 32 bytes"):
        hs256_verifier(secret)


@pytest.mark.parametrize("secret", ["x" * 32, "é" * 16], ids=["32-ascii", "32-bytes-in-16-chars"])
def test_a_secret_of_32_bytes_is_enough(secret: str) -> None:
    client = TestClient(create_app([CANARY], secret))
    token = jwt.encode(_claims(), secret, algorithm="HS256")
    assert client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json() == {
        "key_id": "jwt:alice",
        "scopes": ["authenticated", "read", "write"],
        "mode": "jwt",
    }


def test_a_jwt_never_takes_an_api_keys_identity(client: TestClient) -> None:
    # A JWT whose subject is the admin key's name is still a JWT, with its own scopes.
    token = _token(sub="admin", scope="read")
    assert _get(client, "/v1/whoami", token).json() == {
        "key_id": "jwt:admin",
        "scopes": ["authenticated", "read"],
        "mode": "jwt",
    }
    assert _get(client, "/v1/admin/stats", token).status_code == 403
    # A JWT signed with an API key instead of the JWT secret is refused.
    forged = _forge(_HS256, _claims(scope="admin"), CANARY)
    _assert_invalid_token(_get(client, "/v1/admin/stats", forged), NOT_A_JWT)


def test_an_api_key_shaped_like_a_jwt_is_checked_as_a_key(client: TestClient) -> None:
    assert _get(client, "/v1/whoami", DOTTED_KEY).json() == {
        "key_id": "dotted",
        "scopes": ["authenticated"],
        "mode": "simple",
    }
    assert _get(client, "/v1/admin/stats", DOTTED_KEY).status_code == 403


def test_the_secret_never_appears_in_responses(client: TestClient) -> None:
    # _get checks every response; these send the secret itself as the token.
    for token in (SECRET, f"{SECRET}.{SECRET}.{SECRET}", f"{SECRET}.e30.{SECRET}"):
        assert _get(client, "/v1/whoami", token).status_code == 401


# RFC 6749 §3.3: the scope claim is scope-tokens separated by the ASCII space. Any
# other whitespace is no separator (str.split() would make "read\u00a0admin" grant
# admin), and a claim holding anything but scope-tokens refuses the token.
ODD_SCOPES = [
    pytest.param("read\u00a0admin", id="no-break-space"),
    pytest.param("read\tadmin", id="tab"),
    pytest.param("read\nadmin", id="newline"),
    pytest.param("read\u3000admin", id="ideographic-space"),
    pytest.param("read\u2028admin", id="line-separator"),
    pytest.param("read\x1fadmin", id="unit-separator"),
    pytest.param('read "admin"', id="quote"),
    pytest.param("read admin\\", id="backslash"),
    pytest.param("read adm\u00efn", id="non-ASCII"),
]


@pytest.mark.parametrize("scope", ODD_SCOPES)
def test_a_scope_claim_with_anything_but_scope_tokens_is_refused(
    client: TestClient, scope: str
) -> None:
    token = _token(scope=scope)
    admin = _get(client, "/v1/admin/stats", token)
    assert admin.status_code == 401
    assert "requests" not in admin.text
    description = "The token's scope claim is not space-separated scope-tokens"
    _assert_invalid_token(_get(client, "/v1/whoami", token), description)


@pytest.mark.parametrize(
    ("scope", "scopes"),
    [
        ("admin", ["admin"]),
        ("read admin", ["admin", "read"]),
        ("!#[]~ a.b:c/d", ["!#[]~", "a.b:c/d"]),
    ],
    ids=["admin", "read-admin", "every-allowed-character-class"],
)
def test_scope_tokens_separated_by_spaces_are_the_scopes(
    client: TestClient, scope: str, scopes: list[str]
) -> None:
    response = _get(client, "/v1/whoami", _token(scope=scope))
    assert response.status_code == 200
    assert response.json()["scopes"] == sorted(["authenticated", *scopes])
