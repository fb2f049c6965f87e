"""The middleware through a raw ASGI harness: the decision table of DESIGN.md."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware, AuthContext, ConfigurationError
from asgi_apikey.context import ANONYMOUS, ANONYMOUS_USER, APIKeyUser
from asgi_apikey.paths import RuleTable, normalize_path
from tests.asgi import CANARY, OTHER_KEY, Recorder, Result, bearer, call, http_scope

READER = APIKey(OTHER_KEY, name="reader", scopes={"read"})


def make(recorder: Recorder | None = None, **options: Any) -> tuple[APIKeyMiddleware, Recorder]:
    inner = recorder or Recorder()
    options.setdefault("keys", [APIKey(CANARY, name="admin", scopes={"admin", "read"}), READER])
    return APIKeyMiddleware(inner, **options), inner


def assert_json_denial(result: Result, status: int, challenge: str) -> None:
    assert result.status == status
    assert result.header("content-type") == "application/json"
    assert result.header("cache-control") == "no-store"
    assert result.header("www-authenticate") == challenge
    assert result.header("content-length") == str(len(result.body))
    assert set(result.json()) == {"detail"}
    assert result.seen is None, "the app must not run on a denial"


# --- the response table ----------------------------------------------------------


def test_protected_path_without_credentials_is_401_with_a_bare_challenge() -> None:
    app, inner = make()
    result = call(app, http_scope("/v1/chat"), inner)
    assert_json_denial(result, 401, 'Bearer realm="api"')
    assert "Authorization: Bearer" in result.json()["detail"]


def test_unknown_key_is_401_invalid_token() -> None:
    app, inner = make()
    result = call(app, http_scope("/v1/chat", headers=[bearer("sk-unknown-key-1234567")]), inner)
    assert_json_denial(
        result,
        401,
        'Bearer realm="api", error="invalid_token", error_description="The API key is not valid"',
    )


def test_malformed_credentials_are_400_invalid_request() -> None:
    app, inner = make()
    result = call(app, http_scope("/v1/chat", headers=[bearer("ab=cd")]), inner)
    assert result.status == 400
    challenge = result.header("www-authenticate") or ""
    assert challenge.startswith('Bearer realm="api", error="invalid_request", error_description="')
    assert_json_denial(result, 400, challenge)


def test_missing_scope_is_403_insufficient_scope_naming_the_scope() -> None:
    app, inner = make(protected={"/internal": {"admin"}})
    result = call(app, http_scope("/internal/jobs", headers=[bearer(OTHER_KEY)]), inner)
    assert_json_denial(
        result,
        403,
        'Bearer realm="api", error="insufficient_scope", '
        'error_description="The API key lacks a scope this path requires", scope="admin"',
    )


def test_several_required_scopes_are_listed_sorted_in_the_challenge() -> None:
    app, inner = make(protected={"/x": {"write", "admin"}})
    result = call(app, http_scope("/x", headers=[bearer(OTHER_KEY)]), inner)
    assert 'scope="admin write"' in (result.header("www-authenticate") or "")


def test_key_with_the_required_scope_reaches_the_app() -> None:
    app, inner = make(protected={"/internal": {"admin"}})
    result = call(app, http_scope("/internal", headers=[bearer(CANARY)]), inner)
    assert result.status == 200
    assert result.seen is not None
    assert result.seen["auth"].key_id == "admin"


def test_realm_is_configurable() -> None:
    app, inner = make(realm="llm-gateway")
    result = call(app, http_scope("/x"), inner)
    assert result.header("www-authenticate") == 'Bearer realm="llm-gateway"'


# --- what the app sees -------------------------------------------------------------


def test_authenticated_scope_carries_context_and_user() -> None:
    app, inner = make()
    result = call(app, http_scope("/v1/chat", headers=[bearer(OTHER_KEY)]), inner)
    assert result.status == 200
    assert result.seen is not None
    context = result.seen["auth"]
    assert isinstance(context, AuthContext)
    assert context.authenticated
    assert context.key_id == "reader"
    assert context.scopes == {"read", "authenticated"}
    assert result.seen["user"] == APIKeyUser("reader")
    assert result.seen["user"].is_authenticated


def test_lifespan_passes_through_untouched() -> None:
    app, inner = make()
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        await app(scope, receive, send)

    asyncio.run(main())
    assert inner.seen == [scope]
    assert "auth" not in scope
    assert "user" not in scope
    assert sent == [{"type": "lifespan.startup.complete"}]


@pytest.mark.parametrize(
    ("default", "status"),
    [("protected", 401), ("optional", 200), ("public", 200)],
)
def test_default_access_applies_to_unnamed_paths(default: str, status: int) -> None:
    app, inner = make(default=default)
    assert call(app, http_scope("/anything"), inner).status == status


# --- optional and public paths --------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "key_id"),
    [
        ([], 200, None),
        ([bearer(OTHER_KEY)], 200, "reader"),
        ([bearer("sk-unknown-key-1234567")], 401, None),
        ([bearer("a b")], 400, None),
    ],
    ids=["anonymous", "valid", "invalid", "malformed"],
)
def test_optional_path(headers: list[tuple[bytes, bytes]], status: int, key_id: str | None) -> None:
    app, inner = make(optional=["/v1/operations"])
    result = call(app, http_scope("/v1/operations", headers=headers), inner)
    assert result.status == status
    if status == 200:
        assert result.seen is not None
        assert result.seen["auth"].key_id == key_id
        assert result.seen["auth"].authenticated is (key_id is not None)
    else:
        assert result.seen is None


@pytest.mark.parametrize(
    ("headers", "key_id"),
    [
        ([], None),
        ([bearer(OTHER_KEY)], "reader"),
        ([bearer("sk-unknown-key-1234567")], None),
        ([bearer("a b")], None),
    ],
    ids=["anonymous", "valid", "invalid", "malformed"],
)
def test_public_path_always_runs_the_app(
    headers: list[tuple[bytes, bytes]], key_id: str | None
) -> None:
    app, inner = make(public=["/health"])
    result = call(app, http_scope("/health", headers=headers), inner)
    assert result.status == 200
    assert result.seen is not None
    assert result.seen["auth"].key_id == key_id
    if key_id is None:
        assert result.seen["auth"] is ANONYMOUS
        assert result.seen["user"] is ANONYMOUS_USER


def test_other_schemes_count_as_no_credentials() -> None:
    app, inner = make(optional=["/o"])
    basic = [(b"authorization", b"Basic dXNlcjpwYXNz")]
    assert call(app, http_scope("/o", headers=basic), inner).status == 200
    assert call(app, http_scope("/p", headers=basic), inner).header("www-authenticate") == (
        'Bearer realm="api"'
    )


def test_two_authorization_headers_are_400() -> None:
    app, inner = make()
    result = call(app, http_scope("/x", headers=[bearer(CANARY), bearer(CANARY)]), inner)
    assert result.status == 400
    assert "exactly one Authorization header" in result.json()["detail"]


def test_token_over_the_length_limit_is_400() -> None:
    app, inner = make(max_token_length=32)
    result = call(app, http_scope("/x", headers=[bearer("a" * 33)]), inner)
    assert result.status == 400
    assert "longer than 32 bytes" in result.json()["detail"]


# --- other credential methods ------------------------------------------------------------


def test_custom_header_method() -> None:
    app, inner = make(header_name="X-API-Key")
    result = call(app, http_scope("/x", headers=[(b"x-api-key", OTHER_KEY.encode())]), inner)
    assert result.status == 200
    assert "X-API-Key: <key>" in call(app, http_scope("/x"), inner).json()["detail"]


def test_custom_header_is_ignored_unless_configured() -> None:
    app, inner = make()
    result = call(app, http_scope("/x", headers=[(b"x-api-key", OTHER_KEY.encode())]), inner)
    assert result.status == 401


def test_two_methods_in_one_request_are_400() -> None:
    app, inner = make(header_name="X-API-Key")
    headers = [bearer(OTHER_KEY), (b"x-api-key", OTHER_KEY.encode())]
    result = call(app, http_scope("/x", headers=headers), inner)
    assert result.status == 400
    assert "one method only" in result.json()["detail"]


def test_query_token_is_off_by_default() -> None:
    app, inner = make()
    query = b"access_token=" + OTHER_KEY.encode()
    assert call(app, http_scope("/x", query_string=query), inner).status == 401


def test_query_token_marks_the_response_private() -> None:
    app, inner = make(allow_query_token=True)
    query = b"q=1&access_token=" + OTHER_KEY.encode()
    result = call(app, http_scope("/x", query_string=query), inner)
    assert result.status == 200
    assert result.header("cache-control") == "private"
    header_result = call(app, http_scope("/x", headers=[bearer(OTHER_KEY)]), inner)
    assert header_result.header("cache-control") is None


def test_query_token_keeps_the_apps_own_cache_control() -> None:
    inner = Recorder(response_headers=[(b"cache-control", b"no-store")])
    app, _ = make(inner, allow_query_token=True)
    query = b"access_token=" + OTHER_KEY.encode()
    assert call(app, http_scope("/x", query_string=query), inner).header("cache-control") == (
        "no-store"
    )


def test_query_token_and_header_together_are_400() -> None:
    app, inner = make(allow_query_token=True)
    query = b"access_token=" + OTHER_KEY.encode()
    result = call(app, http_scope("/x", headers=[bearer(OTHER_KEY)], query_string=query), inner)
    assert result.status == 400


# --- keys held by the application -------------------------------------------------------


def test_shared_authenticator_rotates_keys_for_the_next_request() -> None:
    auth = APIKeyAuth(keys=[CANARY])
    inner = Recorder()
    app = APIKeyMiddleware(inner, auth=auth)
    assert app.auth is auth
    assert call(app, http_scope("/x", headers=[bearer(OTHER_KEY)]), inner).status == 401
    auth.add_key(OTHER_KEY)
    assert call(app, http_scope("/x", headers=[bearer(OTHER_KEY)]), inner).status == 200
    assert auth.remove_key(CANARY)
    result = call(app, http_scope("/x", headers=[bearer(CANARY)]), inner)
    assert result.status == 401
    assert 'error="invalid_token"' in (result.header("www-authenticate") or "")


def test_empty_key_set_refuses_everything_protected() -> None:
    # keys=[] is a configured source that holds no key (an empty database
    # lookup, say): it refuses, it never falls into development mode.
    app, inner = make(keys=[])
    assert not app.auth.is_development_mode
    assert call(app, http_scope("/x", headers=[bearer(CANARY)]), inner).status == 401
    assert call(app, http_scope("/x"), inner).status == 401


def test_removing_every_key_refuses_everything_protected() -> None:
    # Development mode is decided at construction: once keys were enforced, an
    # empty set refuses every request instead of letting every request through.
    auth = APIKeyAuth(keys=[CANARY])
    inner = Recorder()
    app = APIKeyMiddleware(inner, auth=auth)
    assert auth.remove_key(CANARY)
    assert not auth.is_development_mode
    assert call(app, http_scope("/x", headers=[bearer(CANARY)]), inner).status == 401
    assert call(app, http_scope("/x"), inner).status == 401


def test_digest_configured_key_authenticates_with_the_plain_token() -> None:
    digest = APIKey(CANARY).digest
    app, inner = make(keys=[APIKey(digest=digest, name="from-digest")])
    result = call(app, http_scope("/x", headers=[bearer(CANARY)]), inner)
    assert result.status == 200
    assert result.seen is not None
    assert result.seen["auth"].key_id == "from-digest"


# --- the send wrapper and prepared responses ------------------------------------------


def test_denial_headers_are_fresh_for_every_response() -> None:
    # An outer middleware that appends to the header list in place must not
    # grow the prepared denial from one request to the next.
    app, inner = make()

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        async def appending_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-outer", b"1"))
            await send(message)

        await app(scope, receive, appending_send)

    first = call(outer, http_scope("/x"), inner)
    second = call(outer, http_scope("/x"), inner)
    assert first.headers == second.headers
    assert first.header("x-outer") == "1"


def test_app_start_message_without_headers_gets_security_headers() -> None:
    async def bare(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    app = APIKeyMiddleware(bare, keys=[CANARY], default="public")
    result = call(app, http_scope("/"))
    assert result.status == 204
    assert result.header("x-content-type-options") == "nosniff"


def test_body_messages_pass_through_unchanged() -> None:
    app, _ = make(default="public")
    result = call(app, http_scope("/"))
    bodies = [m for m in result.messages if m["type"] == "http.response.body"]
    assert bodies == [{"type": "http.response.body", "body": b"ok"}]


# --- configuration errors at construction ----------------------------------------------


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"auth": APIKeyAuth(keys=[OTHER_KEY])}, "not both"),
        ({"keys": None, "auth": object()}, "auth must be an APIKeyAuth"),
        ({"default": "closed"}, "default must be"),
        ({"realm": 'a"b'}, "realm must be"),
        ({"realm": ""}, "realm must be"),
        ({"header_name": "Authorization"}, "header_name"),
        ({"header_name": "X API Key"}, "header_name"),
        ({"max_token_length": 8}, "max_token_length"),
        ({"max_token_length": True}, "max_token_length"),
        ({"allow_query_token": "yes"}, "allow_query_token must be True or False"),
        ({"allow_cors_preflight": 1}, "allow_cors_preflight must be True or False"),
        ({"security_headers": "on"}, "security_headers must be"),
        ({"security_headers": {"X-Bad\n": "1"}}, "not a valid header name"),
        ({"security_headers": {"X-Ok": "a\r\nb"}}, "printable ASCII"),
        ({"public": ["docs"]}, "not an absolute path"),
        ({"keys": [""]}, "keys[0]: an API key is empty"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_configuration_fails_at_construction(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make(**options)
    assert needle in str(caught.value)
    assert CANARY not in str(caught.value)


def test_repr_names_no_key() -> None:
    app, _ = make()
    assert CANARY not in repr(app)
    assert "key_count=2" in repr(app)


def test_websocket_that_disconnects_before_connect_gets_nothing() -> None:
    app, inner = make()
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.disconnect", "code": 1006}

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        await app(http_scope("/x", kind="websocket"), receive, send)

    asyncio.run(main())
    assert sent == []
    assert inner.seen == []


# --- found in review -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["http://testserver/admin", "https://h:8443/admin/x", "admin", "admin/x", "*", ""],
)
def test_paths_not_in_origin_form_are_never_opened_by_a_public_root(path: str) -> None:
    # Hypercorn and uvicorn pass an absolute-form target through as scope["path"];
    # Quart routes urlsplit(path).path. No reading of it may turn a protected route public.
    app, inner = make(default="public", protected=["/admin"])
    scope = http_scope("/")
    scope["path"] = path
    result = call(app, scope, inner)
    if path in ("*", ""):
        assert result.status == 200  # "/" and "/*" are public here
    else:
        assert result.status == 401, path


def test_nested_protected_rule_inherits_the_outer_scopes() -> None:
    app, inner = make(protected={"/v1": {"admin"}, "/v1/jobs": set()}, optional=["/v1/ops"])
    reader = [bearer(OTHER_KEY)]
    assert call(app, http_scope("/v1/jobs/7", headers=reader), inner).status == 403
    assert call(app, http_scope("/v1/jobs/7", headers=[bearer(CANARY)]), inner).status == 200
    # An optional (or public) rule is still a deliberate exception.
    assert call(app, http_scope("/v1/ops", headers=reader), inner).status == 200


@pytest.mark.parametrize(
    "make_headers",
    [
        lambda: iter([(b"x-frame-options", b"SAMEORIGIN"), (b"content-type", b"text/plain")]),
        lambda: ([b"x-frame-options", b"SAMEORIGIN"], [b"content-type", b"text/plain"]),
    ],
    ids=["generator", "tuple of lists"],
)
def test_app_headers_in_any_iterable_are_kept(make_headers: Any) -> None:
    async def app_(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": make_headers()})
        await send({"type": "http.response.body", "body": b"ok"})

    app = APIKeyMiddleware(app_, keys=[CANARY], default="public")
    result = call(app, http_scope("/"))
    assert result.header("content-type") == "text/plain"
    assert result.header("x-frame-options") == "SAMEORIGIN"
    assert result.header("referrer-policy") == "no-referrer"


def test_cors_preflight_passes_only_when_enabled_and_without_credentials() -> None:
    preflight = [(b"origin", b"https://app.example"), (b"access-control-request-method", b"POST")]
    closed, inner = make()
    opened, _ = make(inner, allow_cors_preflight=True)
    scope = http_scope("/v1/chat", method="OPTIONS", headers=preflight)
    assert call(closed, scope, inner).status == 401
    assert (
        call(opened, http_scope("/v1/chat", method="OPTIONS", headers=preflight), inner).status
        == 200
    )
    # A browser never sends credentials on a preflight: one that does is judged as usual.
    with_key = http_scope(
        "/v1/chat", method="OPTIONS", headers=[*preflight, bearer("sk-nope-0000000000000000")]
    )
    assert call(opened, with_key, inner).status == 401
    not_preflight = http_scope("/v1/chat", method="OPTIONS", headers=preflight[:1])
    assert call(opened, not_preflight, inner).status == 401
    as_get = http_scope("/v1/chat", headers=preflight)
    assert call(opened, as_get, inner).status == 401


def test_websocket_scope_with_extensions_none_is_closed() -> None:
    app, inner = make()
    scope = http_scope("/ws", kind="websocket")
    scope["extensions"] = None
    result = call(app, scope, inner)
    assert result.messages == [
        {"type": "websocket.close", "code": 1008, "reason": result.messages[0]["reason"]}
    ]


@pytest.mark.parametrize("missing", ["root_path", "query_string", "scheme"])
def test_optional_scope_keys_may_be_absent(missing: str) -> None:
    app, inner = make(allow_query_token=True)
    scope = http_scope("/x", headers=[bearer(OTHER_KEY)])
    del scope[missing]
    assert call(app, scope, inner).status == 200


def test_missing_key_detail_names_every_enabled_method() -> None:
    app, inner = make(header_name="X-API-Key", allow_query_token=True)
    detail = call(app, http_scope("/x"), inner).json()["detail"]
    assert "Authorization: Bearer <key>" in detail
    assert "X-API-Key: <key>" in detail
    assert "?access_token=<key>" in detail


_SEGMENTS = st.sampled_from(["", ".", "..", "admin", "public", "x", "admin.", "%2e"])


@given(
    prefix=st.sampled_from(["", "http://h", "https://h:1", "//h", "h"]),
    segments=st.lists(_SEGMENTS, max_size=6),
)
def test_no_reading_of_a_path_opens_the_protected_route(prefix: str, segments: list[str]) -> None:
    # The judged rule is never more lenient than the rule of the path that a router
    # resolving dot segments, slashes and absolute form would route to.
    table = RuleTable(public=["/public"], protected={"/admin": {"admin"}}, default="public")
    path = prefix + "/" + "/".join(segments)
    readings = [normalize_path("/" + path.lstrip("/"))]
    if "://" in path or path.startswith("//"):
        readings.append(normalize_path(urlsplit(path).path))
    judged = table.decide(path)
    for routed in readings:
        expected = table.decide(routed)
        assert judged.access >= expected.access, routed
        assert judged.scopes >= expected.scopes, routed


@pytest.mark.parametrize(
    "path",
    ["//a" * 5000 + "/admin", "http://[::1/admin", "//[/admin", "/" * 10000, "/." * 10000],
    ids=["many network-path prefixes", "broken IPv6 host", "broken host", "slashes", "dots"],
)
def test_hostile_paths_get_an_answer_not_an_exception(path: str) -> None:
    app, inner = make(default="public", protected=["/admin"])
    scope = http_scope("/")
    scope["path"] = path
    assert call(app, scope, inner).status in (200, 401, 414)
