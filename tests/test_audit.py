"""Audit: authentication events, the failure throttle, counters and user tracking.

What ``audit.py`` promises and the middleware delivers: one
``authentication_failed`` per refusal (until throttled) with a fixed set of
fields and never a token; ``authentication_succeeded`` only with request
logging on; log-safe paths and client hosts; a throttle with bounded memory
whose held-back refusals are still counted and reported; exact counters; and
the ``key_id`` bound in structlog's contextvars for the app's own log lines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import string
import time
import tracemalloc
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote, urlsplit

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import (
    bind_contextvars,
    clear_contextvars,
    get_contextvars,
    merge_contextvars,
)
from structlog.testing import capture_logs
from structlog.typing import EventDict

import asgi_apikey.auth
from asgi_apikey import (
    APIKey,
    APIKeyAuth,
    APIKeyMiddleware,
    AuthContext,
    ConfigurationError,
    Counters,
    Rejected,
    audit,
)
from asgi_apikey.audit import (
    MAX_THROTTLED_CLIENTS,
    REASONS,
    Audit,
    FailureThrottle,
    HeldBack,
    token_fingerprint,
)
from asgi_apikey.keys import Accepted, KeySnapshot
from asgi_apikey.keytable import DigestTable, NameTable
from asgi_apikey.paths import DEFAULT_MAX_PATH_LENGTH
from asgi_apikey.responses import Denials, SecurityHeaders
from asgi_apikey.verifiers import _quotes
from tests.asgi import (
    CANARY,
    CANARY_QUERIES,
    CANARY_SHAPES,
    OTHER_KEY,
    Recorder,
    bearer,
    call,
    client_messages,
    http_scope,
    plain_digest,
)

REALM = "audit-tests"
ROOT_KEY = "sk-root-5t6y7u8i9o0p1q2w3e4r"
EXPIRED_KEY = "sk-expired-3e4r5t6y7u8i9o0p1q2w"
FUTURE_KEY = "sk-future-9o8i7u6y5t4r3e2w1q0a"
UNKNOWN = "sk-unknown-0000111122223333"
OTHER_ID = APIKey(OTHER_KEY).key_id  # an unnamed key: its id is a fingerprint

NOW = datetime(2030, 6, 1, tzinfo=UTC).timestamp()
EXPIRED_AT = datetime(2030, 1, 1, tzinfo=UTC)
VALID_FROM = datetime(2031, 1, 1, tzinfo=UTC)

CUT = "...(cut)"
MAX_PATH = audit.MAX_LOGGED_PATH
PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
#: An ASCII control in a path: a request with a key is refused as malformed (400).
ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

REQUEST_FIELDS = ("client", "method", "path", "realm")
FAILED = "authentication_failed"
SUCCEEDED = "authentication_succeeded"
SUPPRESSED = "authentication_failures_suppressed"

# What the verifier of these tests answers, by token.
VERIFIED: dict[str, AuthContext | Rejected] = {
    "jwt-alice": AuthContext(authenticated=True, key_id="jwt:alice", scopes=frozenset({"read"})),
    "jwt-expired-alice": Rejected("The token has expired", reason="expired", key_id="jwt:alice"),
    "jwt-early-bob": Rejected(
        "The token is not valid yet", reason="not_yet_valid", key_id="jwt:bob"
    ),
    "jwt-forged": Rejected("The token signature does not match"),
}


def verifier(token: str) -> AuthContext | Rejected | None:
    return VERIFIED.get(token)


@pytest.fixture(autouse=True)
def _no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every middleware sets the process default; leave none behind for other modules."""
    monkeypatch.setattr(asgi_apikey.auth, "_default", None)


# ================================================================== helpers


@dataclass
class Ticker:
    """An injected monotonic clock for the failure throttle."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def authenticator(**options: Any) -> APIKeyAuth:
    """An authenticator with named, unnamed, scoped and windowed keys and a verifier."""
    options.setdefault(
        "keys",
        [
            APIKey(CANARY, name="svc", scopes={"read"}),
            APIKey(OTHER_KEY),
            APIKey(ROOT_KEY, name="root", scopes={"admin", "ops"}),
            APIKey(EXPIRED_KEY, name="old", expires_at=EXPIRED_AT),
            APIKey(FUTURE_KEY, name="future", not_before=VALID_FROM),
        ],
    )
    options.setdefault("verifiers", [verifier])
    options.setdefault("clock", lambda: NOW)
    return APIKeyAuth(**options)


def middleware(
    auth: APIKeyAuth, app: ASGIApp | None = None, **options: Any
) -> tuple[APIKeyMiddleware, Recorder]:
    inner = Recorder()
    options.setdefault("realm", REALM)
    options.setdefault("public", ["/health"])
    options.setdefault("optional", ["/maybe"])
    options.setdefault("protected", {"/admin": {"ops", "admin"}})
    options.setdefault("header_name", "X-API-Key")
    options.setdefault("allow_query_token", True)
    return APIKeyMiddleware(app if app is not None else inner, auth=auth, **options), inner


def ws_scope(path: str = "/v1/x", headers: Iterable[tuple[bytes, bytes]] = ()) -> Scope:
    """A websocket handshake whose server can send a denial response."""
    return http_scope(
        path, headers=headers, kind="websocket", extensions={"websocket.http.response": {}}
    )


def client_scope(client: object, path: str = "/v1/x", **options: Any) -> Scope:
    """An HTTP scope whose ``client`` is ``client`` (``NO_CLIENT``: the key is absent)."""
    scope = http_scope(path, **options)
    if client is NO_CLIENT:
        del scope["client"]
    else:
        scope["client"] = client
    return scope


NO_CLIENT = object()


def fp(token: str | bytes) -> str:
    return token_fingerprint(token.encode() if isinstance(token, str) else token)


def events(logs: Iterable[EventDict], name: str) -> list[EventDict]:
    return [entry for entry in logs if entry["event"] == name]


async def through(app: ASGIApp, scope: Scope) -> list[Message]:
    """One request through ``app`` inside the running loop; what it sent."""
    sent: list[Message] = []
    incoming, gone = client_messages(scope)

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(0)
        return gone

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def status_of(sent: list[Message]) -> int:
    start = next(m for m in sent if m["type"].endswith("response.start"))
    return int(start["status"])


# ================================================= 1. authentication_failed


def failure(path: str = "/v1/x", **fields: Any) -> dict[str, Any]:
    """The whole expected event: the request fields plus ``fields``."""
    base: dict[str, Any] = {
        "event": FAILED,
        "client": "127.0.0.1",
        "method": "GET",
        "path": path,
        "realm": REALM,
        "log_level": "warning",
    }
    return base | fields


def _no_client(scope: Scope) -> Scope:
    del scope["client"]
    return scope


REFUSALS = [
    pytest.param(
        lambda: http_scope("/v1/x"),
        401,
        failure(reason="missing", log_level="info"),
        id="missing",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[(b"authorization", b"Basic dXNlcjpwYXNz")]),
        401,
        failure(reason="missing", log_level="info"),
        id="missing-basic-scheme",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[bearer(UNKNOWN)]),
        401,
        failure(reason="invalid", token_fingerprint=fp(UNKNOWN)),
        id="invalid",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[(b"authorization", b"Bearer a b")]),
        400,
        failure(reason="malformed", detail="The bearer token contains a space"),
        id="malformed-space",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[bearer(UNKNOWN), bearer(UNKNOWN)]),
        400,
        failure(reason="malformed", detail="Send exactly one Authorization header"),
        id="malformed-two-authorization-headers",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[(b"x-api-key", b"a b")]),
        400,
        failure(reason="malformed", detail="The X-API-Key header contains a space"),
        id="malformed-custom-header",
    ),
    pytest.param(
        lambda: http_scope("/admin/jobs", headers=[bearer(CANARY)]),
        403,
        failure(
            "/admin/jobs",
            reason="insufficient_scope",
            key_id="svc",
            required_scopes=["admin", "ops"],
        ),
        id="insufficient_scope-named",
    ),
    pytest.param(
        lambda: http_scope("/admin/jobs", headers=[bearer(OTHER_KEY)]),
        403,
        failure(
            "/admin/jobs",
            reason="insufficient_scope",
            key_id=OTHER_ID,
            required_scopes=["admin", "ops"],
        ),
        id="insufficient_scope-unnamed",
    ),
    pytest.param(
        lambda: http_scope("/admin/jobs", headers=[bearer("jwt-alice")]),
        403,
        failure(
            "/admin/jobs",
            reason="insufficient_scope",
            key_id="jwt:alice",
            required_scopes=["admin", "ops"],
        ),
        id="insufficient_scope-verifier",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[bearer(EXPIRED_KEY)]),
        401,
        failure(reason="expired", key_id="old", detail="The API key has expired"),
        id="expired",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[bearer(FUTURE_KEY)]),
        401,
        failure(reason="not_yet_valid", key_id="future", detail="The API key is not valid yet"),
        id="not_yet_valid",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[bearer("jwt-expired-alice")]),
        401,
        failure(reason="expired", key_id="jwt:alice", detail="The token has expired"),
        id="verifier-expired",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[bearer("jwt-early-bob")]),
        401,
        failure(reason="not_yet_valid", key_id="jwt:bob", detail="The token is not valid yet"),
        id="verifier-not_yet_valid",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[bearer("jwt-forged")]),
        401,
        failure(
            reason="invalid",
            token_fingerprint=fp("jwt-forged"),
            detail="The token signature does not match",
        ),
        id="verifier-rejected",
    ),
    pytest.param(
        lambda: http_scope("/maybe", headers=[bearer(UNKNOWN)]),
        401,
        failure("/maybe", reason="invalid", token_fingerprint=fp(UNKNOWN)),
        id="optional-invalid",
    ),
    pytest.param(
        lambda: http_scope("/maybe", headers=[(b"authorization", b"Bearer a b")]),
        400,
        failure("/maybe", reason="malformed", detail="The bearer token contains a space"),
        id="optional-malformed",
    ),
    pytest.param(
        lambda: http_scope("/maybe", headers=[bearer(EXPIRED_KEY)]),
        401,
        failure("/maybe", reason="expired", key_id="old", detail="The API key has expired"),
        id="optional-expired",
    ),
    pytest.param(
        lambda: ws_scope("/v1/x"),
        401,
        failure(reason="missing", method="WEBSOCKET", log_level="info"),
        id="websocket-missing",
    ),
    pytest.param(
        lambda: ws_scope("/v1/x", headers=[bearer(UNKNOWN)]),
        401,
        failure(reason="invalid", method="WEBSOCKET", token_fingerprint=fp(UNKNOWN)),
        id="websocket-invalid",
    ),
    pytest.param(
        lambda: ws_scope("/admin/ws", headers=[bearer(CANARY)]),
        403,
        failure(
            "/admin/ws",
            reason="insufficient_scope",
            method="WEBSOCKET",
            key_id="svc",
            required_scopes=["admin", "ops"],
        ),
        id="websocket-insufficient_scope",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", method="POST", headers=[bearer(UNKNOWN)]),
        401,
        failure(reason="invalid", method="POST", token_fingerprint=fp(UNKNOWN)),
        id="post-invalid",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", query_string=b"access_token=" + UNKNOWN.encode() + b"&a=1"),
        401,
        failure(reason="invalid", token_fingerprint=fp(UNKNOWN)),
        id="query-token-invalid",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[(b"x-api-key", UNKNOWN.encode())]),
        401,
        failure(reason="invalid", token_fingerprint=fp(UNKNOWN)),
        id="custom-header-invalid",
    ),
    pytest.param(
        lambda: _no_client(http_scope("/v1/x", headers=[bearer(UNKNOWN)])),
        401,
        failure(reason="invalid", client=None, token_fingerprint=fp(UNKNOWN)),
        id="no-client",
    ),
]


@pytest.mark.parametrize(("make_scope", "status", "expected"), REFUSALS)
def test_each_refusal_logs_one_event_with_exactly_its_fields(
    make_scope: Callable[[], Scope], status: int, expected: dict[str, Any]
) -> None:
    auth = authenticator()
    app, inner = middleware(auth)
    with capture_logs() as logs:
        result = call(app, make_scope(), inner)
    assert result.status == status
    assert result.seen is None
    assert logs == [expected]
    assert not ("key_id" in logs[0] and "token_fingerprint" in logs[0])
    # The reason first, then who (a key_id or a fingerprint), the request last.
    names = list(logs[0])
    assert names[0] == "reason"
    if "key_id" in logs[0] or "token_fingerprint" in logs[0]:
        assert names[1] in ("key_id", "token_fingerprint")
    assert [name for name in names if name in REQUEST_FIELDS] == list(REQUEST_FIELDS)
    counters = auth.counters()
    assert counters.refused[expected["reason"]] == 1
    assert sum(counters.refused.values()) == counters.requests == 1
    assert counters.suppressed_events == 0


def test_each_refusal_of_a_sequence_logs_its_own_event() -> None:
    auth = authenticator()
    app, inner = middleware(auth)
    cases = [param.values for param in REFUSALS]
    with capture_logs() as logs:
        for number, (make_scope, _, _) in enumerate(cases):
            scope = cast(Callable[[], Scope], make_scope)()
            if "client" in scope:
                scope["client"] = (f"10.0.0.{number}", 1)  # under the per-client budget
            call(app, scope, inner)
    assert len(events(logs, FAILED)) == len(cases)
    assert [entry["reason"] for entry in logs] == [
        cast(dict[str, Any], expected)["reason"] for _, _, expected in cases
    ]
    assert auth.counters().requests == len(cases)


BAD_ON_PUBLIC = [
    pytest.param([], id="no-credentials"),
    pytest.param([bearer(UNKNOWN)], id="unknown-token"),
    pytest.param([(b"authorization", b"Bearer a b")], id="malformed"),
    pytest.param([bearer(UNKNOWN), bearer(UNKNOWN)], id="two-headers"),
    pytest.param([bearer(EXPIRED_KEY)], id="expired-key"),
    pytest.param([bearer(FUTURE_KEY)], id="not-yet-valid-key"),
    pytest.param([bearer("jwt-forged")], id="verifier-rejected"),
    pytest.param([bearer("jwt-expired-alice")], id="verifier-expired"),
    pytest.param([(b"x-api-key", b"a b")], id="custom-header-malformed"),
]


@pytest.mark.parametrize("headers", BAD_ON_PUBLIC)
@pytest.mark.parametrize("kind", ["http", "websocket"])
def test_public_paths_pass_bad_credentials_anonymous_and_log_nothing(
    headers: list[tuple[bytes, bytes]], kind: str
) -> None:
    auth = authenticator(request_logging=True)
    app, inner = middleware(auth)
    scope = (
        http_scope("/health", headers=headers) if kind == "http" else ws_scope("/health", headers)
    )
    with capture_logs() as logs:
        result = call(app, scope, inner)
    assert result.seen is not None
    assert result.seen["auth"].authenticated is False
    assert logs == []
    counters = auth.counters()
    assert (counters.requests, counters.anonymous, sum(counters.refused.values())) == (1, 1, 0)


DEV_REQUESTS = [
    pytest.param(http_scope, [], id="no-credentials"),
    pytest.param(http_scope, [bearer(UNKNOWN)], id="unknown-token"),
    pytest.param(http_scope, [bearer(CANARY)], id="canary"),
    pytest.param(http_scope, [(b"authorization", b"Bearer a b")], id="malformed"),
    pytest.param(http_scope, [bearer(UNKNOWN), bearer(UNKNOWN)], id="two-headers"),
    pytest.param(ws_scope, [bearer(UNKNOWN)], id="websocket"),
]


@pytest.mark.parametrize(("make_scope", "headers"), DEV_REQUESTS)
@pytest.mark.parametrize(
    "options",
    [{}, {"request_logging": True}, {"user_tracking": True, "request_logging": True}],
    ids=["defaults", "request_logging", "tracking+logging"],
)
def test_development_mode_logs_no_per_request_event(
    make_scope: Callable[..., Scope], headers: list[tuple[bytes, bytes]], options: dict[str, Any]
) -> None:
    auth = APIKeyAuth(**options)  # no keys, empty environment: development mode
    assert auth.is_development_mode
    app, inner = middleware(auth)
    with capture_logs() as logs:
        for path in ("/v1/x", "/admin/jobs", "/maybe", "/health"):
            result = call(app, make_scope(path, headers=headers), inner)
            assert result.seen is not None
    assert logs == []
    counters = auth.counters()
    assert (counters.requests, counters.anonymous, counters.authenticated) == (4, 4, 0)


# ===================================================== 2. token_fingerprint

FINGERPRINTED = [
    pytest.param(CANARY, id="canary"),
    pytest.param(OTHER_KEY, id="other-key"),
    pytest.param(UNKNOWN, id="unknown"),
    pytest.param("sk-guess", id="short"),
    pytest.param("Zq" * 2048, id="4096-bytes"),
]


@pytest.mark.parametrize("token", FINGERPRINTED)
def test_token_fingerprint_is_16_hex_and_is_no_slice_of_any_digest(token: str) -> None:
    raw = token.encode()
    print_ = token_fingerprint(raw)
    assert re.fullmatch(r"[0-9a-f]{16}", print_)
    assert token_fingerprint(bytes(raw)) == print_  # equal tokens, equal fingerprints
    assert token_fingerprint(raw + b"x") != print_
    assert token not in print_
    assert print_ not in token
    digest = hashlib.sha256(raw)
    assert print_ not in digest.hexdigest()
    assert print_ not in plain_digest(token)
    key_id = APIKey(token).key_id
    assert print_ not in key_id
    assert key_id.removeprefix("key-") not in print_
    # The package's own key_id derivation, and the plain digest of the digest.
    derived = hashlib.sha256(b"asgi_apikey key_id\x00" + digest.digest()).hexdigest()
    assert print_ not in derived
    assert print_ not in hashlib.sha256(digest.digest()).hexdigest()
    assert print_ not in hashlib.sha256(digest.hexdigest().encode()).hexdigest()


def test_token_fingerprints_differ_for_different_tokens() -> None:
    tokens = [f"sk-test-{number:06d}".encode() for number in range(2000)]
    prints = {token_fingerprint(token) for token in tokens}
    assert len(prints) == len(tokens)
    assert [token_fingerprint(t) for t in tokens[:5]] == [token_fingerprint(t) for t in tokens[:5]]


def test_the_event_fingerprint_is_token_fingerprint_of_the_presented_bytes() -> None:
    auth = authenticator()
    app, inner = middleware(auth)
    with capture_logs() as logs:
        for token in (UNKNOWN, UNKNOWN, UNKNOWN + "x"):
            call(app, http_scope("/v1/x", headers=[bearer(token)], method="PUT"), inner)
    prints = [entry["token_fingerprint"] for entry in logs]
    assert prints == [fp(UNKNOWN), fp(UNKNOWN), fp(UNKNOWN + "x")]
    assert prints[0] == prints[1] != prints[2]


# ================================================== 3. authentication_succeeded


SUCCESSES = [
    pytest.param(
        lambda: http_scope("/v1/x", headers=[bearer(CANARY)]), "svc", "GET", "/v1/x", id="named"
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[bearer(OTHER_KEY)]),
        OTHER_ID,
        "GET",
        "/v1/x",
        id="unnamed",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[bearer("jwt-alice")], method="DELETE"),
        "jwt:alice",
        "DELETE",
        "/v1/x",
        id="verifier",
    ),
    pytest.param(
        lambda: http_scope("/admin/jobs", headers=[bearer(ROOT_KEY)]),
        "root",
        "GET",
        "/admin/jobs",
        id="scoped",
    ),
    pytest.param(
        lambda: http_scope("/health", headers=[bearer(CANARY)]),
        "svc",
        "GET",
        "/health",
        id="public",
    ),
    pytest.param(
        lambda: http_scope("/maybe", headers=[bearer(CANARY)]),
        "svc",
        "GET",
        "/maybe",
        id="optional",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[(b"x-api-key", CANARY.encode())]),
        "svc",
        "GET",
        "/v1/x",
        id="custom-header",
    ),
    pytest.param(
        lambda: http_scope("/v1/x", query_string=b"access_token=" + CANARY.encode()),
        "svc",
        "GET",
        "/v1/x",
        id="query-token",
    ),
    pytest.param(
        lambda: ws_scope("/v1/ws", headers=[bearer(CANARY)]),
        "svc",
        "WEBSOCKET",
        "/v1/ws",
        id="websocket",
    ),
]


@pytest.mark.parametrize(("make_scope", "key_id", "method", "path"), SUCCESSES)
def test_request_logging_logs_each_accepted_request(
    make_scope: Callable[[], Scope], key_id: str, method: str, path: str
) -> None:
    auth = authenticator(request_logging=True)
    app, inner = middleware(auth)
    with capture_logs() as logs:
        result = call(app, make_scope(), inner)
    assert result.seen is not None
    assert logs == [
        {
            "event": SUCCEEDED,
            "key_id": key_id,
            "client": "127.0.0.1",
            "method": method,
            "path": path,
            "realm": REALM,
            "log_level": "info",
        }
    ]
    assert [name for name in logs[0] if name not in ("event", "log_level")] == [
        "key_id",
        *REQUEST_FIELDS,
    ]
    assert auth.counters().by_key_id == {key_id: 1}


def test_request_logging_from_the_environment_logs_successes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENABLE_REQUEST_LOGGING", "true")
    auth = authenticator()
    app, inner = middleware(auth)
    with capture_logs() as logs:
        call(app, http_scope("/v1/x", headers=[bearer(CANARY)]), inner)
    assert [(entry["event"], entry["key_id"]) for entry in logs] == [(SUCCEEDED, "svc")]


def _refuse_to_log(*args: object, **kwargs: object) -> None:
    raise AssertionError("Audit.succeeded was called with request logging off")


@pytest.mark.parametrize(
    "make_scope", [param.values[0] for param in SUCCESSES], ids=[str(p.id) for p in SUCCESSES]
)
@pytest.mark.parametrize(
    "options",
    [{}, {"request_logging": False}, {"mode": "advanced"}, {"user_tracking": True}],
    ids=["default", "request_logging=False", "advanced", "user_tracking"],
)
def test_without_request_logging_an_accepted_request_does_no_logging_work(
    make_scope: Callable[[], Scope], options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Audit, "succeeded", _refuse_to_log)
    auth = authenticator(**options)
    app, inner = middleware(auth)
    with capture_logs() as logs:
        result = call(app, make_scope(), inner)
    assert result.seen is not None
    assert result.seen["auth"].authenticated is True
    assert logs == []
    assert auth.counters().authenticated == 1


# ========================================================= 4. no secret leaks

RAW = CANARY.encode()
SHAPES = CANARY_SHAPES
QUERIES = CANARY_QUERIES
QUERY_HEADERS = {"query plus header": [(b"authorization", b"Bearer " + RAW)]}
SECRETS = (
    CANARY,
    CANARY.removeprefix("sk-canary-"),
    plain_digest(CANARY).removeprefix("sha256:"),
    plain_digest(CANARY).removeprefix("sha256:")[:16],
    quote(CANARY),
)


def texts_of(logs: Iterable[EventDict]) -> Iterator[str]:
    for entry in logs:
        yield str(entry)
        yield repr(entry)
        for name, value in entry.items():
            yield str(name)
            yield str(value)
            yield repr(value)


def assert_no_secret(texts: Iterable[str]) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.parametrize("path", ["/v1/protected", "/maybe", "/admin/jobs", "/health"])
@pytest.mark.parametrize("registered", [True, False], ids=["canary-registered", "canary-unknown"])
@pytest.mark.parametrize("shape", list(SHAPES) + list(QUERIES))
def test_no_event_counter_or_status_shows_the_canary(
    shape: str, registered: bool, path: str
) -> None:
    keys = [APIKey(OTHER_KEY, name="other", scopes={"admin", "ops"})]
    if registered:
        keys.append(APIKey(CANARY, scopes={"read"}))  # unnamed: its key_id is a fingerprint
    auth = APIKeyAuth(keys=keys, request_logging=True, user_tracking=True)
    app, inner = middleware(auth)
    headers = QUERY_HEADERS.get(shape, SHAPES.get(shape, []))
    query = QUERIES.get(shape, b"")
    with capture_logs(processors=[merge_contextvars]) as logs:
        call(app, http_scope(path, headers=headers, query_string=query), inner)
        call(app, ws_scope(path, headers=headers), inner)
    if path in ("/v1/protected", "/admin/jobs") and (
        shape not in QUERIES or shape == "query plus header"
    ):
        assert len(logs) == 2  # refused or (request logging) accepted: an event each way
    assert all(entry["path"] == path for entry in logs)
    assert_no_secret(texts_of(logs))
    assert_no_secret([json.dumps(auth.status()), repr(auth.status()), repr(auth.counters())])
    assert auth.counters().requests == 2


@pytest.mark.parametrize("allow_query_token", [True, False], ids=["query-allowed", "query-ignored"])
@pytest.mark.parametrize(
    "url",
    [
        f"/v1/x?access_token={CANARY}",
        f"/v1/x?a=1&access_token={CANARY}&b=2",
        f"/v1/x?access_token={CANARY}x",
        f"/v1/x?access_token={quote(CANARY + ' ')}",
        f"/health?access_token={CANARY}x",
        f"/maybe?access_token={CANARY}x",
    ],
    ids=["token", "among-others", "unknown-token", "malformed-token", "public", "optional"],
)
def test_the_query_string_is_never_in_the_logged_path(url: str, allow_query_token: bool) -> None:
    parts = urlsplit(url)
    auth = APIKeyAuth(keys=[CANARY], request_logging=True)
    app, inner = middleware(auth, allow_query_token=allow_query_token)
    scope = http_scope(parts.path, query_string=parts.query.encode())
    with capture_logs() as logs:
        call(app, scope, inner)
    assert all(entry["path"] == parts.path for entry in logs)
    assert_no_secret(texts_of(logs))
    assert all("access_token=" not in text and "?" not in text for text in texts_of(logs))
    if parts.path == "/v1/x":
        assert len(logs) == 1


QUOTING_VERIFIERS = [
    pytest.param(
        lambda token: Rejected(f"The token {token} has expired", reason="expired"),
        id="description-is-token",
    ),
    pytest.param(
        lambda token: Rejected("The token has expired", reason="expired", key_id=token),
        id="rejected-key_id-is-token",
    ),
    pytest.param(
        lambda token: AuthContext(authenticated=True, key_id="user:" + token),
        id="context-key_id-holds-token",
    ),
    pytest.param(
        lambda token: Rejected(f"Signature of ...{token[-20:]} is bad"),
        id="description-holds-20-chars",
    ),
    pytest.param(
        lambda token: Rejected("The token has expired", key_id="acct:" + token[-20:]),
        id="rejected-key_id-holds-20-chars",
    ),
    pytest.param(
        lambda token: AuthContext(authenticated=True, key_id="user:" + token[-20:]),
        id="context-key_id-holds-20-chars",
    ),
]


@pytest.mark.parametrize("echo", QUOTING_VERIFIERS)
def test_a_verifier_that_quotes_the_token_puts_no_piece_of_it_in_any_event(
    echo: Callable[[str], AuthContext | Rejected],
) -> None:
    # The README: a key_id or Rejected description that holds the token "(or 16
    # characters of it)" fails like any other broken verifier.
    auth = APIKeyAuth(keys=[OTHER_KEY], verifiers=[echo], request_logging=True)
    app, inner = middleware(auth)
    with capture_logs() as logs:
        result = call(app, http_scope("/v1/x", headers=[bearer(CANARY)]), inner)
    assert_no_secret(texts_of(logs))
    assert_no_secret([json.dumps(auth.status()), repr(auth.counters())])
    assert result.status == 401
    assert [entry["event"] for entry in logs] == ["verifier_failed", FAILED]
    assert logs[1]["token_fingerprint"] == fp(CANARY)


def _broken_log(logger: object, method_name: str, event_dict: EventDict) -> EventDict:
    raise UnicodeEncodeError("ascii", "\u00e9", 0, 1, "the log stream cannot encode this")


BROKEN_LOG_REQUESTS = [
    pytest.param(lambda: http_scope("/v1/x"), 401, id="missing"),
    pytest.param(lambda: http_scope("/v1/x", headers=[bearer(UNKNOWN)]), 401, id="invalid"),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[(b"authorization", b"Bearer a b")]),
        400,
        id="malformed",
    ),
    pytest.param(lambda: http_scope("/admin/x", headers=[bearer(CANARY)]), 403, id="scope"),
    pytest.param(lambda: http_scope("/v1/x", headers=[bearer(EXPIRED_KEY)]), 401, id="expired"),
    pytest.param(lambda: ws_scope("/v1/x", headers=[bearer(UNKNOWN)]), 401, id="websocket"),
    pytest.param(lambda: http_scope("/v1/x", headers=[bearer(CANARY)]), 200, id="accepted"),
    pytest.param(lambda: ws_scope("/v1/x", headers=[bearer(CANARY)]), 0, id="ws-accepted"),
]


@pytest.mark.parametrize(("make_scope", "status"), BROKEN_LOG_REQUESTS)
def test_a_logging_failure_never_changes_the_response_or_the_counters(
    make_scope: Callable[[], Scope], status: int
) -> None:
    auth = authenticator(request_logging=True, failure_log_limit=1)
    app, inner = middleware(auth)
    with capture_logs(processors=[_broken_log]) as logs:
        results = [call(app, make_scope(), inner) for _ in range(3)]
        auth.audit.flush(force=True)  # the suppressed report fails to log too
    assert logs == []
    for result in results:
        if status:
            assert result.status == status
        else:
            assert {"type": "websocket.accept"} in result.messages
    counters = auth.counters()
    assert counters.requests == 3
    assert counters.suppressed_events == (2 if status != 200 and status else 0)


@pytest.mark.parametrize(
    ("keys", "token", "logged"),
    [
        ([APIKey(ROOT_KEY, name="caf\u00e9")], ROOT_KEY, "caf\\xe9"),
        ([APIKey(ROOT_KEY, name="a\\b")], ROOT_KEY, "a\\\\b"),
        ([], "jwt-zoe", "jwt:zo\\xeb"),
    ],
    ids=["non-ASCII-name", "backslash-name", "non-ASCII-verifier-id"],
)
def test_key_ids_are_logged_as_printable_ascii_and_counted_as_they_are(
    keys: list[APIKey], token: str, logged: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(VERIFIED, "jwt-zoe", AuthContext(authenticated=True, key_id="jwt:zo\u00eb"))
    auth = authenticator(keys=keys, request_logging=True)
    app, inner = middleware(auth)
    with capture_logs() as logs:
        call(app, http_scope("/v1/x", headers=[bearer(token)]), inner)
        call(app, http_scope("/admin/x", headers=[bearer(token)]), inner)
    assert [(entry["event"], entry["key_id"]) for entry in logs] == [
        (SUCCEEDED, logged),
        (FAILED, logged),
    ]
    assert all(PRINTABLE_ASCII.fullmatch(entry["key_id"]) for entry in logs)
    raw = auth.resolve(token.encode())
    assert isinstance(raw, Accepted)
    assert auth.counters().by_key_id == {raw.context.key_id: 1}


# ================================================== 5. log-injection safety

INJECTED_PATHS = [
    pytest.param("/v1/a\nb", "/v1/a\\x0ab", id="LF"),
    pytest.param("/v1/a\rb", "/v1/a\\x0db", id="CR"),
    pytest.param(
        "/v1/a\r\n2030-01-01 [info] forged",
        "/v1/a\\x0d\\x0a2030-01-01 [info] forged",
        id="CRLF-forged-line",
    ),
    pytest.param("/v1/a\x00b", "/v1/a\\x00b", id="NUL"),
    pytest.param("/v1/\x1b[31mred\x1b[0m", "/v1/\\x1b[31mred\\x1b[0m", id="ESC"),
    pytest.param("/v1/a\u2028b", "/v1/a\\u2028b", id="LINE-SEPARATOR"),
    pytest.param("/v1/a\u2029b", "/v1/a\\u2029b", id="PARAGRAPH-SEPARATOR"),
    pytest.param("/v1/a\x7fb", "/v1/a\\x7fb", id="DEL"),
    pytest.param("/v1/a\x85b\x9f", "/v1/a\\x85b\\x9f", id="C1"),
    pytest.param("/v1/a\tb\x0b\x0c", "/v1/a\\x09b\\x0b\\x0c", id="TAB-VT-FF"),
    pytest.param("/v1/caf\u00e9/\u65e5\u672c", "/v1/caf\\xe9/\\u65e5\\u672c", id="non-ASCII"),
    pytest.param("/v1/\u202egpj.exe", "/v1/\\u202egpj.exe", id="BIDI-OVERRIDE"),
    pytest.param("/v1/\ufeff\u200b", "/v1/\\ufeff\\u200b", id="BOM-ZERO-WIDTH"),
    pytest.param("/v1/\U0001f600", "/v1/\\U0001f600", id="astral"),
    pytest.param("/v1/a\udcffb", "/v1/a\\udcffb", id="lone-surrogate"),
    # A backslash is doubled, so a literal "\x0a" in a path cannot pass for an escape.
    pytest.param("/v1/a\\x0ab", "/v1/a\\\\x0ab", id="backslash-doubled"),
]


@pytest.mark.parametrize(("path", "logged"), INJECTED_PATHS)
@pytest.mark.parametrize(
    ("kind", "headers", "event"),
    [
        ("http", [], FAILED),
        ("websocket", [bearer(UNKNOWN)], FAILED),
        ("http", [bearer(CANARY)], SUCCEEDED),
    ],
    ids=["http-missing", "websocket-invalid", "http-accepted"],
)
def test_control_characters_in_the_path_are_escaped(
    path: str, logged: str, kind: str, headers: list[tuple[bytes, bytes]], event: str
) -> None:
    auth = authenticator(request_logging=True)
    app, inner = middleware(auth)
    scope = http_scope(path, headers=headers) if kind == "http" else ws_scope(path, headers)
    with capture_logs() as logs:
        call(app, scope, inner)
    if ASCII_CONTROL.search(path):
        event = FAILED  # the path is refused before the key counts; logged all the same
    assert [entry["event"] for entry in logs] == [event]
    assert logs[0]["path"] == logged
    assert PRINTABLE_ASCII.fullmatch(logs[0]["path"])


@pytest.mark.parametrize(
    ("length", "logged_length"),
    [
        (MAX_PATH - 1, MAX_PATH - 1),
        (MAX_PATH, MAX_PATH),
        (MAX_PATH + 1, MAX_PATH + len(CUT)),
        (100_000, MAX_PATH + len(CUT)),
    ],
    ids=["511", "512", "513", "100000"],
)
def test_a_long_path_is_cut_at_512_characters_and_marked(length: int, logged_length: int) -> None:
    path = "/" + "a" * (length - 1)
    auth = authenticator(request_logging=True)
    app, inner = middleware(auth)
    with capture_logs() as logs:
        call(app, http_scope(path), inner)
        call(app, http_scope(path, headers=[bearer(CANARY)]), inner)
    # Over max_path_length a key does not help (414), but the refusal is logged, cut.
    accepted = SUCCEEDED if length <= DEFAULT_MAX_PATH_LENGTH else FAILED
    assert [entry["event"] for entry in logs] == [FAILED, accepted]
    for entry in logs:
        assert len(entry["path"]) == logged_length
        expected = path if length <= MAX_PATH else path[:MAX_PATH] + CUT
        assert entry["path"] == expected


# MAX_LOGGED_PATH is the "longest path written to an event" (and 64 the longest
# client): the bound holds for the written, escaped value. Escapes are 2 to 10
# characters for one, so cutting before escaping cannot keep that bound.
@pytest.mark.parametrize(
    ("make_scope", "field_name", "bound"),
    [
        pytest.param(
            lambda: http_scope("/" + "\n" * 99_999), "path", MAX_PATH + len(CUT), id="path-of-LF"
        ),
        pytest.param(
            lambda: http_scope("/" + "\u2028" * 99_999),
            "path",
            MAX_PATH + len(CUT),
            id="path-of-U+2028",
        ),
        pytest.param(
            lambda: http_scope("/" + "\x1b" * 99_999), "path", MAX_PATH + len(CUT), id="path-of-ESC"
        ),
        pytest.param(
            lambda: client_scope(("\n" * 1000, 1)), "client", 64 + len(CUT), id="client-of-LF"
        ),
        pytest.param(
            lambda: client_scope(("\x00" * 64, 1)), "client", 64 + len(CUT), id="client-of-64-NUL"
        ),
        pytest.param(
            lambda: http_scope("/" + "\u00e9" * 99_999),
            "path",
            MAX_PATH + len(CUT),
            id="path-of-e-acute",
        ),
        pytest.param(
            lambda: http_scope("/" + "\\" * 99_999),
            "path",
            MAX_PATH + len(CUT),
            id="path-of-backslash",
        ),
    ],
)
def test_an_escaped_field_stays_within_its_cut_bound(
    make_scope: Callable[[], Scope], field_name: str, bound: int
) -> None:
    auth = authenticator()
    app, inner = middleware(auth)
    with capture_logs() as logs:
        # 400 for a control in the path, 414 for a path over max_path_length.
        assert call(app, make_scope(), inner).status in {400, 401, 414}
    value = logs[0][field_name]
    assert PRINTABLE_ASCII.fullmatch(value)
    assert len(value) <= bound, f"{field_name} is {len(value)} characters long, over {bound}"


@pytest.mark.parametrize(
    ("method", "logged"),
    [
        ("PATCH", "PATCH"),
        ("GET\r\nX-Forged: 1", "GET\\x0d\\x0aX-Forged: 1"),
        ("M" * 32, "M" * 32),
        ("M" * 33, "M" * 32 + CUT),
    ],
    ids=["plain", "CRLF", "32-chars", "33-chars"],
)
def test_the_method_is_escaped_and_cut_at_32(method: str, logged: str) -> None:
    auth = authenticator()
    app, inner = middleware(auth)
    with capture_logs() as logs:
        call(app, http_scope("/v1/x", method=method), inner)
    assert logs == [failure(reason="missing", method=logged, log_level="info")]


def test_the_path_is_the_whole_scope_path_under_a_root_path() -> None:
    auth = authenticator()
    app, inner = middleware(auth)
    with capture_logs() as logs:
        call(app, http_scope("/api/v1/x", root_path="/api", query_string=b"q=1"), inner)
    assert logs == [failure("/api/v1/x", reason="missing", log_level="info")]


CLIENTS = [
    pytest.param(("10.1.2.3", 5555), "10.1.2.3", id="tuple"),
    pytest.param(["10.1.2.3", 5555], "10.1.2.3", id="list"),
    pytest.param(("2001:db8::1", 443), "2001:db8::1", id="ipv6"),
    pytest.param(("evil\nhost", 1), "evil\\x0ahost", id="LF"),
    pytest.param(("a\r\x00\x1b\u2028b", 1), "a\\x0d\\x00\\x1b\\u2028b", id="controls"),
    pytest.param(("h\u00f4st\\", 1), "h\\xf4st\\\\", id="non-ASCII-and-backslash"),
    pytest.param(("h" * 64, 1), "h" * 64, id="64-chars"),
    pytest.param(("h" * 65, 1), "h" * 64 + CUT, id="65-chars"),
    pytest.param(("h" * 10_000, 1), "h" * 64 + CUT, id="10000-chars"),
    pytest.param(42, None, id="int"),
    pytest.param("x", None, id="str"),
    pytest.param("10.1.2.3", None, id="str-host"),
    pytest.param(None, None, id="None"),
    pytest.param((), None, id="empty-tuple"),
    pytest.param([], None, id="empty-list"),
    pytest.param({"host": "10.1.2.3"}, None, id="dict"),
    pytest.param(NO_CLIENT, None, id="absent"),
]


@pytest.mark.parametrize(("client", "logged"), CLIENTS)
@pytest.mark.parametrize(
    ("headers", "event"),
    [([bearer(UNKNOWN)], FAILED), ([bearer(CANARY)], SUCCEEDED)],
    ids=["refused", "accepted"],
)
def test_the_client_host_is_escaped_cut_and_never_raises(
    client: object, logged: str | None, headers: list[tuple[bytes, bytes]], event: str
) -> None:
    auth = authenticator(request_logging=True)
    app, inner = middleware(auth)
    with capture_logs() as logs:
        call(app, client_scope(client, headers=headers), inner)
    assert [entry["event"] for entry in logs] == [event]
    assert logs[0]["client"] == logged


def test_the_throttle_keeps_no_long_client_host_whole() -> None:
    # Behind a proxy-headers middleware the host is client-sent text of any length.
    auth = authenticator(failure_log_limit=1000)
    app, _ = middleware(auth)
    count = 200

    async def refuse_long_hosts() -> None:
        for n in range(count):
            host = f"{n:05d}" + "h" * 50_000  # freed after the request unless kept
            await through(app, client_scope((host, 1), headers=[bearer(UNKNOWN)]))

    with capture_logs() as logs:
        asyncio.run(refuse_long_hosts())  # warm-up
        auth.audit.flush(force=True)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            asyncio.run(refuse_long_hosts())
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert auth.audit.throttle.clients == count
    assert len(events(logs, FAILED)) == 2 * count
    assert all(len(entry["client"]) == 64 + len(CUT) for entry in events(logs, FAILED))
    assert grown < 1024 * 1024, f"the throttle kept {grown} bytes for {count} clients"


def test_requests_without_a_usable_client_share_only_the_per_reason_limit() -> None:
    auth = authenticator(failure_log_limit=4, failure_log_per_client=1)
    app, inner = middleware(auth)
    with capture_logs() as logs:
        for client in (42, "x", None, NO_CLIENT, (), 42):
            call(app, client_scope(client, headers=[bearer(UNKNOWN)]), inner)
    assert [entry["client"] for entry in logs] == [None] * 4
    assert auth.counters().suppressed_events == 2
    assert auth.audit.throttle.clients == 0


# ========================================================== 6. the throttle


def test_the_throttle_admits_at_most_limit_events_per_reason() -> None:
    throttle = FailureThrottle(limit=3, interval=60.0, per_client=100, clock=Ticker())
    for reason in REASONS:
        admitted = [throttle.admit(reason, f"10.0.0.{n}") for n in range(6)]
        assert admitted == [True, True, True, False, False, False], reason
    assert counts(throttle.drain(force=True)) == dict.fromkeys(REASONS, 3)


def test_the_throttle_admits_at_most_per_client_events_per_client_and_reason() -> None:
    throttle = FailureThrottle(limit=100, interval=60.0, per_client=2, clock=Ticker())
    for reason in REASONS:  # each reason has its own per-client budget
        assert [throttle.admit(reason, "10.0.0.1") for _ in range(3)] == [True, True, False]
    assert throttle.admit("invalid", "10.0.0.2") is True
    assert throttle.admit("invalid", "10.0.0.2") is True
    assert throttle.admit("invalid", "10.0.0.2") is False
    assert throttle.admit("missing", "10.0.0.2") is True
    assert throttle.clients == len(REASONS) + 2  # (reason, client) pairs
    assert counts(throttle.drain(force=True)) == dict(dict.fromkeys(REASONS, 1), invalid=2)


def test_requests_without_a_client_have_only_the_per_reason_limit() -> None:
    throttle = FailureThrottle(limit=3, interval=60.0, per_client=1, clock=Ticker())
    assert [throttle.admit("invalid", None) for _ in range(5)] == [True] * 3 + [False] * 2
    assert throttle.clients == 0  # nothing remembered for them


def test_the_throttle_reports_suppressed_counts_only_when_the_interval_ends() -> None:
    clock = Ticker(500.0)
    throttle = FailureThrottle(limit=1, interval=60.0, per_client=5, clock=clock)
    assert [throttle.admit("invalid", "a") for _ in range(4)] == [True, False, False, False]
    assert [throttle.admit("missing", "b") for _ in range(2)] == [True, False]
    assert throttle.due() is False
    assert counts(throttle.drain()) == {}
    assert throttle.admit("invalid", "c") is False  # still the same interval
    clock.now = 559.999
    assert throttle.due() is False
    assert counts(throttle.drain()) == {}
    clock.now = 560.0  # the interval is [500, 560)
    assert throttle.due() is True
    assert counts(throttle.drain()) == {"invalid": 4, "missing": 1}
    assert throttle.clients == 0
    assert throttle.due() is False  # a new interval, from 560 to 620
    assert counts(throttle.drain()) == {}
    assert throttle.admit("invalid", "a") is True
    clock.now = 619.0
    assert counts(throttle.drain()) == {}
    clock.now = 620.0
    assert counts(throttle.drain()) == {}  # nothing was held back
    assert throttle.admit("invalid", "a") is True


def test_a_forced_drain_reports_now_and_starts_a_new_interval() -> None:
    clock = Ticker()
    throttle = FailureThrottle(limit=1, interval=60.0, per_client=1, clock=clock)
    assert [throttle.admit("expired", "a") for _ in range(3)] == [True, False, False]
    assert counts(throttle.drain(force=True)) == {"expired": 2}
    assert counts(throttle.drain(force=True)) == {}
    assert throttle.admit("expired", "a") is True
    clock.now += 59.0
    assert throttle.due() is False  # the forced drain started the interval at 1000


def test_a_zero_limit_admits_nothing_and_counts_everything() -> None:
    throttle = FailureThrottle(limit=0, interval=60.0, per_client=1, clock=Ticker())
    assert [throttle.admit(reason, "a") for reason in REASONS] == [False] * len(REASONS)
    assert throttle.clients == len(REASONS)  # counted for the report all the same
    assert counts(throttle.drain(force=True)) == dict.fromkeys(REASONS, 1)


def test_the_throttle_forgets_the_oldest_client_first() -> None:
    throttle = FailureThrottle(
        limit=100, interval=60.0, per_client=1, max_clients=3, clock=Ticker()
    )
    assert [throttle.admit("invalid", c) for c in "abcd"] == [True] * 4  # d evicts a
    assert throttle.clients == 3
    assert throttle.admit("invalid", "c") is False  # c is still remembered
    assert throttle.admit("invalid", "a") is True  # a was forgotten: a fresh budget (evicts b)
    assert throttle.admit("invalid", "d") is False
    assert throttle.admit("invalid", "b") is True
    assert throttle.clients == 3


def test_eviction_never_lets_more_than_the_per_reason_limit_through() -> None:
    throttle = FailureThrottle(limit=5, interval=60.0, per_client=1, max_clients=2, clock=Ticker())
    admitted = [throttle.admit("invalid", client) for client in "abcabcabcabc"]
    assert admitted.count(True) == 5
    assert throttle.clients <= 2


def test_the_throttle_remembers_at_most_max_throttled_clients() -> None:
    throttle = FailureThrottle(limit=1_000_000, interval=60.0, per_client=1, clock=Ticker())
    high = 0
    for number in range(MAX_THROTTLED_CLIENTS + 1000):
        assert throttle.admit("invalid", f"10.{number >> 8 & 255}.{number & 255}.1") is True
        high = max(high, throttle.clients)
    # Full, it forgets its oldest quarter at once.
    assert high == MAX_THROTTLED_CLIENTS
    assert throttle.clients == MAX_THROTTLED_CLIENTS * 3 // 4 + 1000


def test_the_middleware_throttle_remembers_at_most_max_throttled_clients() -> None:
    auth = authenticator(failure_log_limit=1_000_000, failure_log_per_client=1)
    app, _ = middleware(auth)
    count = MAX_THROTTLED_CLIENTS + 500

    async def flood() -> int:
        high = 0
        for number in range(count):
            scope = client_scope(
                (f"10.9.{number >> 8 & 255}.{number & 255}", 1), headers=[bearer(UNKNOWN)]
            )
            await through(app, scope)
            high = max(high, auth.audit.throttle.clients)
        return high

    with capture_logs() as logs:
        high = asyncio.run(flood())
    assert high == MAX_THROTTLED_CLIENTS
    assert auth.audit.throttle.clients == MAX_THROTTLED_CLIENTS * 3 // 4 + 500
    assert len(logs) == count  # one per client: the per-reason limit is far away
    assert auth.counters().refused["invalid"] == count


def audit_with(clock: Ticker, **options: Any) -> tuple[Audit, Denials]:
    return Audit(clock=clock, **options), Denials(REALM, SecurityHeaders(False))


def suppressed(
    reason: str, count: int, limit: int, interval: float, *, top: Iterable[tuple[str, int]]
) -> dict[str, Any]:
    """The ``authentication_failures_suppressed`` event; ``top``: (client, refusals), most first."""
    return {
        "event": SUPPRESSED,
        "reason": reason,
        "count": count,
        "limit": limit,
        "interval": interval,
        "top_clients": [{"client": client, "refusals": refusals} for client, refusals in top],
        "log_level": "warning",
    }


def ones(prefix: str, numbers: Iterable[int]) -> list[tuple[str, int]]:
    """Clients ``prefix + n`` refused once each."""
    return [(f"{prefix}{n}", 1) for n in numbers]


def counts(drained: Mapping[str, HeldBack]) -> dict[str, int]:
    """What a drain held back, by reason, without the clients."""
    return {reason: held.count for reason, held in drained.items()}


def test_audit_logs_the_suppressed_counts_before_the_first_refusal_of_a_new_interval() -> None:
    clock = Ticker()
    log, denials = audit_with(
        clock, failure_log_limit=2, failure_log_interval=30, failure_log_per_client=10
    )
    scope = http_scope("/v1/x")
    with capture_logs() as logs:
        for _ in range(5):
            log.refused(scope, denials.invalid, REALM, token=UNKNOWN.encode())
        for _ in range(3):
            log.refused(scope, denials.missing, REALM)
        log.flush()  # before the interval ends: nothing
    assert [entry["reason"] for entry in logs] == ["invalid", "invalid", "missing", "missing"]
    counters = log.counters()
    assert (counters.refused["invalid"], counters.refused["missing"]) == (5, 3)
    assert counters.suppressed_events == 4
    clock.now += 30
    with capture_logs() as logs:
        log.refused(scope, denials.malformed("The bearer token is empty"), REALM)
        log.refused(scope, denials.invalid, REALM, token=UNKNOWN.encode())
    assert logs == [
        suppressed("invalid", 3, 2, 30.0, top=[("127.0.0.1", 5)]),
        suppressed("missing", 1, 2, 30.0, top=[("127.0.0.1", 3)]),
        failure(reason="malformed", detail="The bearer token is empty"),
        failure(reason="invalid", token_fingerprint=fp(UNKNOWN)),
    ]
    assert log.counters().suppressed_events == 4  # the new interval held nothing back yet


def test_audit_flush_reports_only_when_due_or_forced() -> None:
    clock = Ticker()
    log, denials = audit_with(clock, failure_log_limit=1, failure_log_interval=10)
    scope = http_scope("/v1/x")
    with capture_logs() as logs:
        for _ in range(3):
            log.refused(scope, denials.invalid, REALM, token=b"sk-x")
        clock.now += 9.9
        log.flush()
        flushed_early = list(logs)
        log.flush(force=True)
        log.flush(force=True)
    assert events(flushed_early, SUPPRESSED) == []
    assert events(logs, SUPPRESSED) == [suppressed("invalid", 2, 1, 10.0, top=[("127.0.0.1", 3)])]
    assert len(events(logs, FAILED)) == 1


@pytest.mark.parametrize("limit", [4, 8, 100, 3], ids=lambda limit: f"limit={limit}")
def test_the_default_per_client_budget_is_a_quarter_of_the_limit(limit: int) -> None:
    auth = authenticator(failure_log_limit=limit)
    assert auth.audit.throttle.limit == limit
    assert auth.audit.throttle.per_client == max(1, limit // 4)


def clocked(auth: APIKeyAuth, clock: Ticker) -> None:
    """Give the authenticator's throttle an injected clock, keeping its settings."""
    old = auth.audit.throttle
    auth.audit.throttle = FailureThrottle(
        old.limit, old.interval, per_client=old.per_client, clock=clock
    )


def test_the_middleware_throttles_per_client_and_per_reason_and_counts_the_rest() -> None:
    clock = Ticker()
    auth = authenticator(failure_log_limit=4, failure_log_interval=10)
    assert auth.audit.throttle.per_client == 1
    clocked(auth, clock)
    app, inner = middleware(auth)
    with capture_logs() as logs:
        for _ in range(10):  # one client: one event
            result = call(app, client_scope(("10.0.0.1", 1), headers=[bearer(UNKNOWN)]), inner)
            assert result.status == 401
        for n in range(10):  # ten clients: three more, then the per-reason limit
            call(app, client_scope((f"10.0.1.{n}", 1), headers=[bearer(UNKNOWN)]), inner)
        for n in range(6):
            call(app, client_scope((f"10.0.2.{n}", 1)), inner)
        auth.audit.flush()  # the interval has not ended: nothing
    assert [entry["reason"] for entry in logs] == ["invalid"] * 4 + ["missing"] * 4
    assert [entry["client"] for entry in logs[:4]] == [
        "10.0.0.1",
        "10.0.1.0",
        "10.0.1.1",
        "10.0.1.2",
    ]
    counters = auth.counters()
    assert counters.refused == dict(dict.fromkeys(REASONS, 0), invalid=20, missing=6)
    assert counters.suppressed_events == 26 - 8
    assert json.loads(json.dumps(auth.status()))["counters"]["suppressed_events"] == 18
    with capture_logs() as logs:
        auth.audit.flush(force=True)
        auth.audit.flush(force=True)
    assert logs == [
        suppressed("invalid", 16, 4, 10.0, top=[("10.0.0.1", 10), *ones("10.0.1.", range(4))]),
        suppressed("missing", 2, 4, 10.0, top=ones("10.0.2.", range(5))),
    ]
    # The forced flush started a new interval: a client logged before is logged again.
    with capture_logs() as logs:
        call(app, client_scope(("10.0.0.1", 1), headers=[bearer(UNKNOWN)]), inner)
    assert logs == [failure(reason="invalid", client="10.0.0.1", token_fingerprint=fp(UNKNOWN))]


def test_the_middleware_reports_a_flood_at_the_first_refusal_after_the_interval() -> None:
    clock = Ticker()
    auth = authenticator(failure_log_limit=2, failure_log_interval=60, failure_log_per_client=1)
    clocked(auth, clock)
    app, inner = middleware(auth)
    with capture_logs() as logs:
        for n in range(5):
            call(app, client_scope((f"10.0.0.{n}", 1), headers=[bearer(EXPIRED_KEY)]), inner)
        clock.now += 59.5
        call(app, client_scope(("10.0.0.9", 1), headers=[bearer(EXPIRED_KEY)]), inner)
        assert events(logs, SUPPRESSED) == []
        clock.now += 0.5
        result = call(
            app, client_scope(("10.0.0.0", 1), path="/admin/x", headers=[bearer(CANARY)]), inner
        )
    assert result.status == 403
    assert [entry["event"] for entry in logs] == [FAILED, FAILED, SUPPRESSED, FAILED]
    assert logs[2] == suppressed("expired", 4, 2, 60.0, top=ones("10.0.0.", range(5)))
    assert logs[3]["reason"] == "insufficient_scope"
    assert logs[3]["client"] == "10.0.0.0"  # a new interval: the client's budget is back


def test_a_zero_limit_logs_no_failure_but_reports_the_count() -> None:
    clock = Ticker()
    auth = authenticator(failure_log_limit=0, failure_log_interval=5)
    clocked(auth, clock)
    app, inner = middleware(auth)
    with capture_logs() as logs:
        for n in range(5):
            call(app, client_scope((f"10.0.0.{n}", 1)), inner)
        call(app, http_scope("/v1/x", headers=[bearer(UNKNOWN)]), inner)
        assert logs == []
        clock.now += 5
        call(app, http_scope("/v1/x", headers=[(b"authorization", b"Bearer a b")]), inner)
        auth.audit.flush(force=True)
    assert logs == [
        suppressed("missing", 5, 0, 5.0, top=ones("10.0.0.", range(5))),
        suppressed("invalid", 1, 0, 5.0, top=[("127.0.0.1", 1)]),
        suppressed("malformed", 1, 0, 5.0, top=[("127.0.0.1", 1)]),
    ]
    counters = auth.counters()
    assert counters.suppressed_events == counters.requests == 7


async def refuse_from_clients(app: ASGIApp, count: int) -> None:
    for n in range(count):
        sent = await through(app, client_scope((f"10.0.0.{n}", 1), headers=[bearer(UNKNOWN)]))
        assert status_of(sent) == 401


def test_a_flood_is_reported_when_its_interval_ends_without_another_refusal() -> None:
    auth = authenticator(failure_log_limit=1, failure_log_interval=0.2)
    app, _ = middleware(auth)

    async def main() -> tuple[list[EventDict], list[EventDict]]:
        with capture_logs() as logs:
            auth.audit.flush(force=True)  # the interval starts now, not at construction
            await refuse_from_clients(app, 6)
            during = list(logs)
            await asyncio.sleep(0.5)
        return during, logs

    started = time.monotonic()
    during, logs = asyncio.run(main())
    assert time.monotonic() - started < 3
    assert [entry["event"] for entry in during] == [FAILED]
    assert logs[1:] == [suppressed("invalid", 5, 1, 0.2, top=ones("10.0.0.", range(5)))]
    assert auth.counters().suppressed_events == 5


def test_a_flood_in_a_later_event_loop_is_reported_when_its_interval_ends() -> None:
    # A first loop ends while its scheduled report is pending (a test client, a
    # restarted server); the flood in the next loop must still be reported on time.
    auth = authenticator(failure_log_limit=1, failure_log_interval=0.2)
    app, _ = middleware(auth)

    async def first() -> None:
        auth.audit.flush(force=True)
        await refuse_from_clients(app, 3)

    async def second() -> None:
        await refuse_from_clients(app, 3)
        await asyncio.sleep(0.5)

    with capture_logs() as logs:
        asyncio.run(first())
        asyncio.run(second())
    assert [entry["event"] for entry in logs] == [FAILED, SUPPRESSED]
    assert logs[1] == suppressed(
        "invalid", 5, 1, 0.2, top=[("10.0.0.0", 2), ("10.0.0.1", 2), ("10.0.0.2", 2)]
    )


# ================================================================ 7. a flood

HOSTS = [(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 1234) for n in range(10_000)]
FLOOD = [
    # (reason, path, headers, status)
    ("missing", "/v1/x", [], 401),
    ("invalid", "/v1/x", [bearer(UNKNOWN)], 401),
    ("malformed", "/v1/x", [(b"authorization", b"Bearer a b")], 400),
    ("insufficient_scope", "/admin/jobs", [bearer(CANARY)], 403),
    ("expired", "/v1/x", [bearer(EXPIRED_KEY)], 401),
]


async def flood(app: ASGIApp, count: int) -> Counter[int]:
    statuses: Counter[int] = Counter()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] += 1

    kinds = len(FLOOD)
    for number in range(count):
        _, path, headers, _ = FLOOD[number % kinds]
        scope: Scope = {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": HOSTS[number % len(HOSTS)],
        }
        await app(scope, receive, send)
    return statuses


def test_a_flood_of_bad_requests_logs_boundedly_answers_all_and_counts_exactly() -> None:
    warm_auth = authenticator()
    warm_app, _ = middleware(warm_auth)
    with capture_logs():
        asyncio.run(flood(warm_app, 2000))  # caches, regexes, structlog's first use
    auth = authenticator()
    app, _ = middleware(auth)
    total = 100_000
    started = time.monotonic()
    with capture_logs() as logs:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            statuses = asyncio.run(flood(app, total))
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    elapsed = time.monotonic() - started
    per_kind = total // len(FLOOD)
    limit = auth.audit.throttle.limit
    assert limit == 100
    failed = events(logs, FAILED)
    assert len(failed) <= limit * len(FLOOD)
    assert Counter(entry["reason"] for entry in failed) == {reason: limit for reason, *_ in FLOOD}
    assert events(logs, SUPPRESSED) == []  # the interval (60 s) has not ended
    expected_statuses: Counter[int] = Counter()
    for _, _, _, status in FLOOD:
        expected_statuses[status] += per_kind
    assert statuses == expected_statuses
    assert sum(statuses.values()) == total
    counters = auth.counters()
    assert counters.requests == total == sum(counters.refused.values())
    assert counters.refused == dict(dict.fromkeys(REASONS, 0), **{r: per_kind for r, *_ in FLOOD})
    assert counters.suppressed_events == total - len(failed)
    assert (counters.authenticated, counters.anonymous, counters.by_key_id) == (0, 0, {})
    assert auth.audit.throttle.clients <= MAX_THROTTLED_CLIENTS
    assert grown < 2 * 1024 * 1024, f"the flood kept {grown} bytes"
    assert elapsed < 30  # about 3 s here; a generous bound for slow machines


# ============================================================== 8. counters


def test_counters_count_every_decision_exactly() -> None:
    auth = authenticator()
    app, inner = middleware(auth)
    requests: list[tuple[Scope, int]] = [
        (http_scope("/v1/x", headers=[bearer(CANARY)]), 200),
        (http_scope("/v1/x", headers=[bearer(CANARY)]), 200),
        (ws_scope("/v1/ws", headers=[bearer(CANARY)]), 0),
        (http_scope("/v1/x", headers=[bearer(OTHER_KEY)]), 200),
        (http_scope("/v1/x", headers=[bearer("jwt-alice")]), 200),
        (http_scope("/admin/jobs", headers=[bearer(ROOT_KEY)]), 200),
        (http_scope("/health"), 200),
        (http_scope("/health", headers=[bearer(UNKNOWN)]), 200),
        (http_scope("/maybe"), 200),
        (ws_scope("/maybe"), 0),
        (http_scope("/v1/x"), 401),
        (ws_scope("/v1/x"), 401),
        (http_scope("/v1/x", headers=[bearer(UNKNOWN)]), 401),
        (http_scope("/v1/x", headers=[bearer("jwt-forged")]), 401),
        (http_scope("/v1/x", headers=[(b"authorization", b"Bearer a b")]), 400),
        (http_scope("/admin/jobs", headers=[bearer(CANARY)]), 403),
        (http_scope("/v1/x", headers=[bearer(EXPIRED_KEY)]), 401),
        (http_scope("/v1/x", headers=[bearer("jwt-expired-alice")]), 401),
        (http_scope("/v1/x", headers=[bearer(FUTURE_KEY)]), 401),
    ]
    with capture_logs():
        for scope, status in requests:
            result = call(app, scope, inner)
            if status:
                assert result.status == status
    counters = auth.counters()
    assert counters == Counters(
        requests=len(requests),
        authenticated=6,
        anonymous=4,
        refused={
            "missing": 2,
            "invalid": 2,
            "malformed": 1,
            "insufficient_scope": 1,
            "expired": 2,
            "not_yet_valid": 1,
            "unavailable": 0,
            "rate_limited": 0,
        },
        by_key_id={"svc": 3, OTHER_ID: 1, "jwt:alice": 1, "root": 1},
        other_key_ids=0,
        suppressed_events=0,
    )
    assert counters.requests == counters.authenticated + counters.anonymous + sum(
        counters.refused.values()
    )
    assert list(counters.refused) == list(REASONS)


def test_a_fresh_authenticator_has_every_reason_at_zero() -> None:
    counters = authenticator().counters()
    assert counters.refused == dict.fromkeys(REASONS, 0)
    assert (counters.requests, counters.authenticated, counters.anonymous) == (0, 0, 0)
    assert (counters.by_key_id, counters.other_key_ids, counters.suppressed_events) == ({}, 0, 0)


def test_key_ids_beyond_the_counted_maximum_count_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "MAX_COUNTED_KEY_IDS", 3)
    keys = [APIKey(f"sk-count-{n:02d}-0123456789abcdef", name=f"k{n}") for n in range(5)]
    auth = authenticator(keys=keys)
    app, inner = middleware(auth)
    tokens = [f"sk-count-{n:02d}-0123456789abcdef" for n in range(5)] + ["jwt-alice"]
    for _ in range(2):
        for token in tokens:
            assert call(app, http_scope("/v1/x", headers=[bearer(token)]), inner).status == 200
    counters = auth.counters()
    assert counters.by_key_id == {"k0": 2, "k1": 2, "k2": 2}
    assert counters.other_key_ids == 6
    assert counters.authenticated == counters.requests == 12
    assert len(auth.audit.by_key_id) == 3


def test_anonymous_counts_preflight_public_optional_and_development_requests() -> None:
    preflight = [(b"origin", b"https://app.example"), (b"access-control-request-method", b"POST")]
    auth = authenticator()
    app, inner = middleware(auth, allow_cors_preflight=True)
    for scope in (
        http_scope("/v1/x", method="OPTIONS", headers=preflight),
        http_scope("/admin/jobs", method="OPTIONS", headers=preflight),
        http_scope("/health"),
        http_scope("/maybe"),
    ):
        assert call(app, scope, inner).status == 200
    counters = auth.counters()
    assert (counters.requests, counters.anonymous, counters.authenticated) == (4, 4, 0)
    development = APIKeyAuth()
    dev_app, dev_inner = middleware(development)
    call(dev_app, http_scope("/v1/x"), dev_inner)
    call(dev_app, ws_scope("/v1/ws"), dev_inner)
    assert development.counters().anonymous == development.counters().requests == 2


async def lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that completes startup and shutdown."""
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


def run_lifespan(app: ASGIApp) -> list[Message]:
    incoming: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    asyncio.run(main())
    return sent


def test_lifespan_is_not_counted_and_logs_nothing_of_its_own() -> None:
    auth = authenticator()
    app, _ = middleware(auth, lifespan_app)
    with capture_logs() as logs:
        sent = run_lifespan(app)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert logs == []
    assert auth.counters() == authenticator().counters()


def test_lifespan_shutdown_reports_what_the_throttle_still_holds() -> None:
    auth = authenticator(failure_log_limit=1)
    app, inner = middleware(auth, lifespan_app)
    with capture_logs() as logs:
        for n in range(4):
            call(app, client_scope((f"10.0.0.{n}", 1)), inner)
        run_lifespan(app)
    assert logs[1:] == [suppressed("missing", 3, 1, 60.0, top=ones("10.0.0.", range(4)))]
    counters = auth.counters()
    assert (counters.requests, counters.suppressed_events) == (4, 3)


def test_counters_survive_key_rotation() -> None:
    auth = authenticator(keys=[APIKey(CANARY, name="svc")])
    app, inner = middleware(auth)

    def send_token(token: str) -> int:
        return call(app, http_scope("/v1/x", headers=[bearer(token)]), inner).status

    with capture_logs():
        assert send_token(CANARY) == 200
        assert auth.add_key(APIKey(ROOT_KEY, name="root")) == "root"
        assert send_token(ROOT_KEY) == 200
        assert send_token(CANARY) == 200
        assert auth.remove_key("svc") is True
        assert send_token(CANARY) == 401
        auth.replace_keys([APIKey(OTHER_KEY)])
        assert send_token(OTHER_KEY) == 200
        assert send_token(ROOT_KEY) == 401
        auth.replace_keys([APIKey(CANARY, name="svc")])
        assert send_token(CANARY) == 200
    counters = auth.counters()
    assert counters.by_key_id == {"svc": 3, "root": 1, OTHER_ID: 1}
    assert counters.refused["invalid"] == 2
    assert counters.requests == 7


def test_counters_are_a_frozen_copy_with_read_only_mappings() -> None:
    auth = authenticator()
    app, inner = middleware(auth)
    call(app, http_scope("/v1/x", headers=[bearer(CANARY)]), inner)
    counters = auth.counters()
    with pytest.raises(dataclasses.FrozenInstanceError):
        counters.requests = 0  # type: ignore[misc]
    for mapping in (counters.refused, counters.by_key_id):
        with pytest.raises(TypeError):
            mapping["svc"] = 99  # type: ignore[index]
        with pytest.raises(TypeError):
            del mapping["svc"]  # type: ignore[attr-defined]
        with pytest.raises(TypeError):
            mapping.update({"x": 1})  # type: ignore[attr-defined]
        with pytest.raises(TypeError):
            mapping.clear()  # type: ignore[attr-defined]
    with capture_logs():
        call(app, http_scope("/v1/x", headers=[bearer(CANARY)]), inner)
        call(app, http_scope("/v1/x"), inner)
    # The copy did not move; a new one did.
    assert (counters.requests, counters.by_key_id["svc"], counters.refused["missing"]) == (1, 1, 0)
    later = auth.counters()
    assert (later.requests, later.by_key_id["svc"], later.refused["missing"]) == (3, 2, 1)


def test_status_counters_are_the_counters_as_json_ready_data() -> None:
    auth = authenticator()
    app, inner = middleware(auth)
    with capture_logs():
        for headers in ([bearer(CANARY)], [bearer(OTHER_KEY)], [], [bearer(UNKNOWN)]):
            call(app, http_scope("/v1/x", headers=headers), inner)
    status = auth.status()
    data = auth.counters().as_dict()
    assert status["counters"] == data
    assert json.loads(json.dumps(status))["counters"] == data
    assert data == {
        "requests": 4,
        "authenticated": 2,
        "anonymous": 0,
        "refused": dict(dict.fromkeys(REASONS, 0), missing=1, invalid=1),
        "by_key_id": {"svc": 1, OTHER_ID: 1},
        "other_key_ids": 0,
        "suppressed_events": 0,
        "rate_limited_by_key_id": {},
    }
    assert type(data["refused"]) is dict
    assert type(data["by_key_id"]) is dict
    data["refused"]["missing"] = 100  # a plain copy: changing it changes nothing
    assert auth.counters().refused["missing"] == 1


# ========================================================= 9. user tracking


@dataclass
class TrackingApp:
    """An inner app that records the contextvars it runs with and logs one line."""

    fail: bool = False
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(dict(get_contextvars()))
        structlog.get_logger("app").info("app_event")
        if self.fail:
            raise RuntimeError("the app failed")
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        else:
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})


def run_tracked(
    app: APIKeyMiddleware, scope: Scope, bound: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], BaseException | None]:
    """In one task: bind ``bound``, run the request, read the contextvars again."""

    async def main() -> tuple[dict[str, Any], dict[str, Any], BaseException | None]:
        clear_contextvars()
        bind_contextvars(**bound)
        before = dict(get_contextvars())
        error: BaseException | None = None
        try:
            await through(app, scope)
        except RuntimeError as raised:
            error = raised
        after = dict(get_contextvars())
        structlog.get_logger("app").info("after_request")
        return before, after, error

    return asyncio.run(main())


TRACKING = [
    pytest.param({"user_tracking": True}, True, id="user_tracking=True"),
    pytest.param({"mode": "advanced"}, True, id="advanced-mode"),
    pytest.param({"mode": "simple", "user_tracking": True}, True, id="simple+tracking"),
    pytest.param({}, False, id="default"),
    pytest.param({"user_tracking": False}, False, id="user_tracking=False"),
    pytest.param({"mode": "advanced", "user_tracking": False}, False, id="advanced-without"),
]
TRACKED_REQUESTS = [
    pytest.param(lambda: http_scope("/v1/x", headers=[bearer(CANARY)]), "svc", id="named"),
    pytest.param(lambda: http_scope("/v1/x", headers=[bearer(OTHER_KEY)]), OTHER_ID, id="unnamed"),
    pytest.param(
        lambda: http_scope("/v1/x", headers=[bearer("jwt-alice")]), "jwt:alice", id="verifier"
    ),
    pytest.param(lambda: ws_scope("/v1/ws", headers=[bearer(CANARY)]), "svc", id="websocket"),
    pytest.param(lambda: http_scope("/health"), None, id="public-anonymous"),
    pytest.param(lambda: ws_scope("/maybe"), None, id="optional-websocket-anonymous"),
]
BOUND = [
    pytest.param({}, id="nothing-bound"),
    pytest.param({"request_id": "r-1"}, id="request_id-bound"),
    pytest.param({"key_id": "outer", "request_id": "r-2"}, id="key_id-bound"),
]


@pytest.mark.parametrize("bound", BOUND)
@pytest.mark.parametrize(("make_scope", "key_id"), TRACKED_REQUESTS)
@pytest.mark.parametrize(("options", "tracking"), TRACKING)
def test_user_tracking_binds_the_key_id_for_the_request_only(
    options: dict[str, Any],
    tracking: bool,
    make_scope: Callable[[], Scope],
    key_id: str | None,
    bound: dict[str, Any],
) -> None:
    auth = authenticator(**options)
    assert auth.audit.track_users is tracking
    inner = TrackingApp()
    app, _ = middleware(auth, inner)
    with capture_logs(processors=[merge_contextvars]) as logs:
        before, after, error = run_tracked(app, make_scope(), bound)
    assert error is None
    expected = dict(bound)
    if tracking and key_id is not None:
        expected["key_id"] = key_id
    assert inner.seen == [expected]
    assert before == after == bound
    app_event, after_event = events(logs, "app_event"), events(logs, "after_request")
    assert [entry.get("key_id") for entry in app_event] == [expected.get("key_id")]
    assert [entry.get("key_id") for entry in after_event] == [bound.get("key_id")]
    assert [entry.get("request_id") for entry in app_event] == [bound.get("request_id")]


@pytest.mark.parametrize("bound", BOUND)
@pytest.mark.parametrize(
    "make_scope",
    [
        lambda: http_scope("/v1/x", headers=[bearer(CANARY)]),
        lambda: ws_scope("/v1/ws", headers=[bearer(CANARY)]),
    ],
    ids=["http", "websocket"],
)
def test_user_tracking_unbinds_the_key_id_when_the_app_raises(
    make_scope: Callable[[], Scope], bound: dict[str, Any]
) -> None:
    auth = authenticator(user_tracking=True)
    inner = TrackingApp(fail=True)
    app, _ = middleware(auth, inner)
    with capture_logs(processors=[merge_contextvars]) as logs:
        before, after, error = run_tracked(app, make_scope(), bound)
    assert isinstance(error, RuntimeError)
    assert inner.seen == [{**bound, "key_id": "svc"}]
    assert before == after == bound
    assert events(logs, "app_event")[0]["key_id"] == "svc"
    assert events(logs, "after_request")[0].get("key_id") == bound.get("key_id")


def test_user_tracking_binds_nothing_for_refused_requests() -> None:
    auth = authenticator(user_tracking=True)
    inner = TrackingApp()
    app, _ = middleware(auth, inner)
    with capture_logs(processors=[merge_contextvars]) as logs:
        for scope in (
            http_scope("/v1/x", headers=[bearer(UNKNOWN)]),
            http_scope("/admin/jobs", headers=[bearer(CANARY)]),
            ws_scope("/v1/ws"),
        ):
            before, after, error = run_tracked(app, scope, {"request_id": "r-3"})
            assert before == after == {"request_id": "r-3"}
            assert error is None
    assert inner.seen == []
    # Only the refused key's own id (of the 403), never one bound by tracking.
    assert [entry.get("key_id") for entry in events(logs, FAILED)] == [None, "svc", None]
    assert [entry["request_id"] for entry in events(logs, FAILED)] == ["r-3"] * 3


def test_consecutive_tracked_requests_in_one_task_each_see_their_own_key_id() -> None:
    auth = authenticator(mode="advanced")
    inner = TrackingApp()
    app, _ = middleware(auth, inner)

    async def main() -> dict[str, Any]:
        clear_contextvars()
        for token in (CANARY, OTHER_KEY, "jwt-alice"):
            await through(app, http_scope("/v1/x", headers=[bearer(token)]))
        await through(app, http_scope("/health"))
        return dict(get_contextvars())

    assert asyncio.run(main()) == {}
    assert inner.seen == [{"key_id": "svc"}, {"key_id": OTHER_ID}, {"key_id": "jwt:alice"}, {}]


# ==================================================== 10. configuration errors

BAD_SETTINGS = [
    ("failure_log_limit", -1),
    ("failure_log_limit", 1_000_001),
    ("failure_log_limit", True),
    ("failure_log_limit", False),
    ("failure_log_limit", "10"),
    ("failure_log_limit", 1.5),
    ("failure_log_limit", 10.0),
    ("failure_log_limit", None),
    ("failure_log_interval", 0),
    ("failure_log_interval", 0.05),
    ("failure_log_interval", 0.0999),
    ("failure_log_interval", -60),
    ("failure_log_interval", 86401),
    ("failure_log_interval", 86400.5),
    ("failure_log_interval", True),
    ("failure_log_interval", "60"),
    ("failure_log_interval", None),
    ("failure_log_interval", float("nan")),
    ("failure_log_interval", float("inf")),
    ("failure_log_per_client", 0),
    ("failure_log_per_client", -1),
    ("failure_log_per_client", True),
    ("failure_log_per_client", 2.0),
    ("failure_log_per_client", "2"),
]


@pytest.mark.parametrize(
    "build",
    [
        lambda **options: APIKeyAuth(keys=[CANARY], **options),
        lambda **options: APIKeyAuth.from_env(**options),
        lambda **options: Audit(**options),
    ],
    ids=["APIKeyAuth", "from_env", "Audit"],
)
@pytest.mark.parametrize(
    ("setting", "value"), BAD_SETTINGS, ids=[f"{s}={v!r}" for s, v in BAD_SETTINGS]
)
def test_bad_throttle_settings_are_configuration_errors_naming_the_setting(
    setting: str, value: object, build: Callable[..., object]
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        build(**{setting: value})
    assert caught.value.context == {"setting": setting}
    assert str(caught.value).startswith(setting)


GOOD_SETTINGS = [
    ({"failure_log_limit": 0}, (0, 60.0, 1)),
    ({"failure_log_limit": 1_000_000}, (1_000_000, 60.0, 250_000)),
    ({"failure_log_limit": 7, "failure_log_per_client": 7}, (7, 60.0, 7)),
    ({"failure_log_interval": 0.1}, (100, 0.1, 25)),
    ({"failure_log_interval": 86400}, (100, 86400.0, 25)),
    ({"failure_log_interval": 5}, (100, 5.0, 25)),
    ({"failure_log_per_client": 1}, (100, 60.0, 1)),
    ({"failure_log_per_client": 500}, (100, 60.0, 500)),
    ({}, (100, 60.0, 25)),
]


@pytest.mark.parametrize(
    ("options", "expected"), GOOD_SETTINGS, ids=[repr(options) for options, _ in GOOD_SETTINGS]
)
def test_throttle_settings_at_their_bounds_are_accepted(
    options: dict[str, Any], expected: tuple[int, float, int]
) -> None:
    throttle = APIKeyAuth(keys=[CANARY], **options).audit.throttle
    assert (throttle.limit, throttle.interval, throttle.per_client) == expected
    assert type(throttle.interval) is float


@pytest.mark.parametrize(
    "options",
    [
        {"reason": "nope"},
        {"reason": "missing"},
        {"reason": "malformed"},
        {"reason": "insufficient_scope"},
        {"reason": ""},
        {"key_id": ""},
        {"key_id": 5},
        {"key_id": "jwt\nalice"},
        {"key_id": b"jwt:alice"},
    ],
    ids=repr,
)
def test_bad_rejections_are_value_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Rejected"):
        Rejected("The token has expired", **options)


@pytest.mark.parametrize("reason", ["invalid", "expired", "not_yet_valid"])
@pytest.mark.parametrize("key_id", [None, "jwt:alice"])
def test_rejections_take_the_three_reasons_and_a_key_id(reason: str, key_id: str | None) -> None:
    rejected = Rejected("The token was refused", reason=reason, key_id=key_id)
    assert (rejected.reason, rejected.key_id) == (reason, key_id)


# ============================================ verifier texts and the timer that fires early

VERIFIER_MISTAKES = [
    pytest.param(
        lambda token: Rejected("Revoked", reason="revoked"),
        "built a Rejected that is not valid: Rejected(reason=...) must be one of invalid, "
        "expired, not_yet_valid",
        id="unknown-reason",
    ),
    pytest.param(
        lambda token: Rejected("Revoked", key_id="x" * 129),
        "built a Rejected that is not valid: Rejected(key_id=...) must be None or printable "
        "text of 1 to 128 characters",
        id="long-rejected-key_id",
    ),
    pytest.param(
        lambda token: AuthContext(authenticated=True, key_id="user\n2024-01-01 INFO forged"),
        "returned a key_id that is not printable text of 1 to 128 characters",
        id="key_id-with-line-feed",
    ),
    pytest.param(
        lambda token: AuthContext(authenticated=True, key_id="u" * 129),
        "returned a key_id that is not printable text of 1 to 128 characters",
        id="long-key_id",
    ),
    pytest.param(
        lambda token: AuthContext(authenticated=True, key_id=token),
        "returned a key_id that quotes the token (it is logged and counted)",
        id="key_id-is-token",
    ),
    pytest.param(
        lambda token: Rejected("Revoked", key_id="acct:" + token[3:19]),
        "returned a Rejected that quotes the token",
        id="rejected-key_id-holds-16-chars",
    ),
]


@pytest.mark.parametrize(("verify", "problem"), VERIFIER_MISTAKES)
def test_a_verifier_mistake_is_logged_with_its_fix_and_never_the_token(
    verify: Callable[[str], AuthContext | Rejected], problem: str
) -> None:
    auth = APIKeyAuth(keys=[OTHER_KEY], verifiers=[verify])
    app, inner = middleware(auth)
    with capture_logs() as logs:
        result = call(app, http_scope("/v1/x", headers=[bearer(CANARY)]), inner)
    assert result.status == 401
    assert [(entry["event"], entry.get("problem")) for entry in logs] == [
        ("verifier_failed", problem),
        (FAILED, None),
    ]
    assert logs[1]["reason"] == "invalid"
    assert_no_secret(texts_of(logs))


@pytest.mark.parametrize(
    "key_id",
    [
        pytest.param("acct_42", id="short-public-prefix"),
        pytest.param("sk-test-0123456", id="15-chars-of-the-token"),
        pytest.param("jwt:alice@example.com", id="long-but-unrelated"),
    ],
)
def test_a_key_id_with_less_than_16_characters_of_the_token_is_accepted(key_id: str) -> None:
    token = "sk-test-0123456789abcdef"
    auth = APIKeyAuth(
        keys=[OTHER_KEY], verifiers=[lambda _: AuthContext(authenticated=True, key_id=key_id)]
    )
    app, inner = middleware(auth)
    assert call(app, http_scope("/v1/x", headers=[bearer(token)]), inner).status == 200
    assert auth.counters().by_key_id == {key_id: 1}


class RecordingLoop:
    """Stands in for an event loop: records call_later instead of running it."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, Callable[..., object]]] = []

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> None:
        self.calls.append((delay, callback))


def test_a_timer_that_fires_early_waits_out_the_interval_instead_of_dropping_the_count() -> None:
    now = [0.0]
    auth = authenticator(failure_log_limit=1, failure_log_interval=10.0)
    audit_ = auth.audit
    audit_.throttle = FailureThrottle(1, 10.0, per_client=1, clock=lambda: now[0])
    loop = RecordingLoop()
    with capture_logs() as logs:
        assert audit_.throttle.admit("invalid", "a")
        assert not audit_.throttle.admit("invalid", "a")  # held back
        now[0] = 9.99  # the loop's clock ran ahead of ours
        audit_._on_timer(cast(asyncio.AbstractEventLoop, loop))
        assert logs == []
        assert len(loop.calls) == 1
        assert loop.calls[0][0] == pytest.approx(0.01)
        now[0] = 10.0
        audit_._on_timer(cast(asyncio.AbstractEventLoop, loop))
    assert logs == [suppressed("invalid", 1, 1, 10.0, top=[("a", 2)])]
    assert len(loop.calls) == 1  # reported: no further timer


def test_an_early_timer_with_nothing_held_stops_and_a_later_flood_schedules_again() -> None:
    now = [0.0]
    auth = authenticator()
    audit_ = auth.audit
    audit_.throttle = FailureThrottle(1, 10.0, per_client=1, clock=lambda: now[0])
    loop = RecordingLoop()
    audit_._flush_pending = cast(asyncio.AbstractEventLoop, loop)
    audit_._on_timer(cast(asyncio.AbstractEventLoop, loop))  # a refusal already reported it
    assert loop.calls == []
    assert audit_._flush_pending is None


def test_outside_an_event_loop_a_held_back_refusal_waits_for_the_next_one() -> None:
    auth = authenticator(failure_log_limit=1)
    denial = Denials("api", SecurityHeaders(False)).invalid
    scope = http_scope("/v1/x")
    with capture_logs() as logs:
        for _ in range(3):
            auth.audit.refused(scope, denial, "api", token=UNKNOWN.encode())
    assert [entry["event"] for entry in logs] == [FAILED]
    assert auth.audit._flush_pending is None  # no loop to put a timer on
    assert auth.counters().suppressed_events == 2


def test_an_unknown_scope_type_passes_through_uncounted() -> None:
    auth = authenticator()
    inner = Recorder()
    app = APIKeyMiddleware(inner, auth=auth)
    scope: Scope = {"type": "custom.event"}

    async def receive() -> Message:
        return {"type": "custom.ping"}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    asyncio.run(app(scope, receive, send))
    assert inner.seen == [scope]
    assert "auth" not in scope
    assert auth.counters().requests == 0


def test_budget_spent_by_another_thread_while_waiting_for_the_lock_is_held_back() -> None:
    throttle = FailureThrottle(1, 60.0, per_client=1, clock=lambda: 0.0)
    assert throttle.admit("invalid", "a")
    # What a second thread finds once it holds the lock: the budget already spent.
    assert throttle._spend("invalid", repeat=False) is False
    assert throttle._spend("missing", repeat=False) is True
    assert throttle._spend("missing", repeat=False) is False
    assert counts(throttle.drain(force=True)) == {"invalid": 1, "missing": 1}


@pytest.mark.parametrize(
    ("client", "logged"),
    [
        pytest.param((b"10.0.0.1", 1), "b'10.0.0.1'", id="bytes-host"),
        pytest.param((4242, 1), "4242", id="int-host"),
    ],
)
def test_a_host_that_is_not_a_str_is_logged_as_text(
    client: tuple[object, int], logged: str
) -> None:
    auth = authenticator()
    app, inner = middleware(auth)
    scope = http_scope("/v1/x")
    scope["client"] = client
    with capture_logs() as logs:
        assert call(app, scope, inner).status == 401
    assert logs[0]["client"] == logged


# ============================================================ the second review's findings


def test_a_sustained_flood_keeps_one_timer_not_one_more_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[float] = []
    original = Audit._on_timer

    def counted(self: Audit, loop: asyncio.AbstractEventLoop) -> None:
        calls.append(time.monotonic())
        original(self, loop)

    monkeypatch.setattr(Audit, "_on_timer", counted)
    auth = authenticator(failure_log_limit=1, failure_log_interval=0.1)
    app, _ = middleware(auth)

    async def flood(seconds: float) -> None:
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            await refuse_from_clients(app, 5)
            await asyncio.sleep(0)

    with capture_logs():
        asyncio.run(flood(0.8))
    # About one timer call per interval (8), a few more for early firing; with a
    # timer added per interval, the calls grow with the square of the intervals.
    assert 4 <= len(calls) <= 16


@pytest.fixture
def broken_logger_factory() -> Iterator[None]:
    def factory(*args: object) -> Any:
        raise RuntimeError("logger factory down")

    structlog.configure(logger_factory=factory, cache_logger_on_first_use=False)
    try:
        yield
    finally:
        structlog.reset_defaults()


def failing_verifier(token: str) -> AuthContext | None:
    if token.startswith("jwt-"):
        raise KeyError(token)
    return None


@pytest.mark.usefixtures("broken_logger_factory")
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param([], 401, id="missing"),
        pytest.param([bearer("jwt-broken-token")], 401, id="verifier-raises"),
        pytest.param([bearer(CANARY)], 200, id="accepted"),
    ],
)
def test_a_logger_factory_that_raises_changes_no_response(
    headers: list[tuple[bytes, bytes]], status: int
) -> None:
    auth = authenticator(verifiers=[failing_verifier], request_logging=True)
    app, inner = middleware(auth)
    assert call(app, http_scope("/v1/x", headers=headers), inner).status == status
    auth.audit.flush(force=True)  # what the lifespan shutdown does: no exception either
    assert auth.counters().requests == 1


def test_a_flood_of_tokens_to_a_broken_verifier_logs_boundedly_and_reports_the_rest() -> None:
    auth = authenticator(verifiers=[failing_verifier])
    app, inner = middleware(auth)
    with capture_logs() as logs:
        for n in range(1000):
            scope = client_scope((f"10.1.{n >> 8}.{n & 255}", 1), headers=[bearer(f"jwt-{n}")])
            assert call(app, scope, inner).status == 401
        auth.audit.flush(force=True)
    events = Counter(entry["event"] for entry in logs)
    per_problem = auth.audit.throttle.per_client
    assert events["verifier_failed"] == per_problem
    assert [entry for entry in logs if entry["event"] == "verifier_failures_suppressed"] == [
        {
            "count": 1000 - per_problem,
            "limit": auth.audit.throttle.limit,
            "interval": auth.audit.throttle.interval,
            "event": "verifier_failures_suppressed",
            "log_level": "warning",
        }
    ]
    assert auth.counters().refused["invalid"] == 1000
    assert auth.counters().suppressed_events == 1000 - auth.audit.throttle.limit


@pytest.mark.parametrize("separator", [".", "_", "-"])
def test_a_key_id_that_is_the_tokens_public_selector_is_accepted(separator: str) -> None:
    selector = "ak_9f8e7d6c5b4a39281706f5e4"
    token = f"{selector}{separator}Zm9vYmFyYmF6cXV4cXV1eHF1dXg"
    auth = APIKeyAuth(
        keys=[OTHER_KEY],
        verifiers=[lambda t: AuthContext(authenticated=True, key_id=t[: len(selector)])],
    )
    app, inner = middleware(auth)
    assert call(app, http_scope("/v1/x", headers=[bearer(token)]), inner).status == 200
    assert auth.counters().by_key_id == {selector: 1}


@pytest.mark.parametrize(
    "key_id",
    [
        pytest.param("ak_9f8e7d6c5b4a39281706f5e4.Zm9vYmFy", id="selector-and-a-piece"),
        pytest.param("ak_9f8e7d6c5b4a39281706f5e4.Zm9vYmFyYmF6", id="all-but-15"),
    ],
)
def test_more_than_the_selector_is_still_refused(key_id: str) -> None:
    token = "ak_9f8e7d6c5b4a39281706f5e4.Zm9vYmFyYmF6cXV4cXV1eHF1dXg"
    auth = APIKeyAuth(
        keys=[OTHER_KEY], verifiers=[lambda t: AuthContext(authenticated=True, key_id=key_id)]
    )
    app, inner = middleware(auth)
    with capture_logs() as logs:
        assert call(app, http_scope("/v1/x", headers=[bearer(token)]), inner).status == 401
    assert (
        logs[0]["problem"] == "returned a key_id that quotes the token (it is logged and counted)"
    )


def test_verifier_failures_held_back_are_reported_before_the_next_interval_s_first() -> None:
    ticker = Ticker()
    auth = authenticator(verifiers=[failing_verifier], failure_log_per_client=1)
    auth.audit.throttle = FailureThrottle(100, 60.0, per_client=1, clock=ticker)
    app, inner = middleware(auth)
    with capture_logs() as logs:
        for n in range(3):
            call(app, http_scope("/v1/x", headers=[bearer(f"jwt-{n}")]), inner)
        ticker.now += 60.0
        call(app, http_scope("/v1/x", headers=[bearer("jwt-next")]), inner)
    verifier_events = [entry for entry in logs if entry["event"].startswith("verifier_")]
    assert [entry["event"] for entry in verifier_events] == [
        "verifier_failed",
        "verifier_failures_suppressed",
        "verifier_failed",
    ]
    assert verifier_events[1]["count"] == 2


def test_a_snapshot_without_an_authenticator_logs_verifier_failures_itself() -> None:
    snapshot = KeySnapshot(
        by_digest=DigestTable.EMPTY,
        by_id=NameTable.EMPTY,
        anonymous=AuthContext(False),
        verifiers=(failing_verifier,),
    )
    with capture_logs() as logs:
        assert snapshot.resolve(b"jwt-token") is None
    assert logs == [
        {
            "verifier": "failing_verifier",
            "problem": "raised KeyError",
            "event": "verifier_failed",
            "log_level": "error",
        }
    ]


def naive_quotes(token: str, text: str | None) -> bool:
    """_quotes by its definition, window by window: as given, then letters and digits only."""
    if not text:
        return False
    if token in text:
        return True
    if len(token) - len(text) > 16 and token.startswith(text) and token[len(text)] in "._-":
        return False
    if any(text[start : start + 16] in token for start in range(len(text) - 15)):
        return True

    def squeezed(value: str) -> str:
        folded = unicodedata.normalize("NFKC", value).lower()
        return "".join(c for c in folded if c in string.ascii_lowercase + string.digits)

    plain, secret = squeezed(text), squeezed(token)
    size = min(16, len(secret))
    if size < 12:
        return False
    run = min(8, size)  # runs of 8 or more add up: together they must cover `size`
    covered: set[int] = set()
    for start in range(len(secret) - run + 1):
        if secret[start : start + run] in plain:
            covered.update(range(start, start + run))
    return len(covered) >= size


@pytest.mark.parametrize(
    ("text", "quotes"),
    [
        pytest.param("abcdefgh-0000000000", False, id="a-block-but-no-16-window"),
        pytest.param("xx abcdefghijklmnop yy", True, id="16-in-a-sentence"),
        pytest.param("abcdefghijklmno", False, id="15-only"),
        pytest.param("The token has expired", False, id="sentence"),
        pytest.param("", False, id="empty"),
    ],
)
def test_quotes_finds_16_shared_characters_and_nothing_less(text: str, quotes: bool) -> None:
    token = "abcdefghijklmnopqrstuvwxyz0123456789"
    assert _quotes(token, text) is quotes
    assert naive_quotes(token, text) is quotes


@given(
    token=st.text(alphabet="ab._-", min_size=1, max_size=60),
    prefix=st.text(alphabet="ab .", max_size=12),
    suffix=st.text(alphabet="ab .", max_size=12),
    cut=st.tuples(st.integers(0, 60), st.integers(0, 60)),
)
def test_quotes_agrees_with_its_definition(
    token: str, prefix: str, suffix: str, cut: tuple[int, int]
) -> None:
    start, end = sorted(cut)
    text = prefix + token[start:end] + suffix
    assert _quotes(token, text) == naive_quotes(token, text)


@given(
    token=st.text(alphabet="abcd0123._-", min_size=1, max_size=60),
    cuts=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=2, max_size=4),
    joiner=st.sampled_from(["...", " ", "x", ":", "\u200b"]),
)
def test_quotes_adds_up_pieces_as_its_definition_does(
    token: str, cuts: list[tuple[int, int]], joiner: str
) -> None:
    text = joiner.join(token[min(cut) : max(cut)] for cut in cuts)
    assert _quotes(token, text) == naive_quotes(token, text)


@pytest.mark.parametrize(
    "shown",
    [
        lambda token: token[:15] + "..." + token[-15:],
        lambda token: "x".join(token[i : i + 12] for i in range(0, len(token), 12)),
        lambda token: token[3:13] + " / " + token[20:30],
    ],
    ids=["masked-ends", "chunks", "two-tens"],
)
def test_pieces_that_cover_16_characters_quote_the_token(shown: Callable[[str], str]) -> None:
    """The second review: a token in pieces (each under 16) passed the guard."""
    token = "sk-live-7Hq2vK9xP4mN8rT1wZ6yB3cF5jL0dG"
    assert _quotes(token, shown(token))
