"""Rate limits through the middleware (issue 18): which limit applies, and what a refusal says.

Driven through raw ASGI calls (tests/asgi.py), Starlette's ``TestClient``,
and uvicorn and hypercorn on 127.0.0.1 (tests/servers.py), on a simulated
clock where time matters (``RateLimits(clock=...)``):

- which limit a request gets: the key's own, ``UNLIMITED``, the first
  matching scope in the configured order, the default, or none; a path's
  limit per caller and per *reading* of the path (no spelling escapes it,
  under a mount point too); anonymous clients per address, opt-in; all or
  nothing across a key's and a path's limits;
- the 429: ``Retry-After`` (whole seconds, rounded up, at least 1), the
  ``RateLimit-Policy`` and ``RateLimit`` fields read by a strict Structured
  Field parser of the subset used, ``Cache-Control: no-store``, a JSON body,
  the security headers, no ``WWW-Authenticate``; ``headers=True`` on
  admitted responses, never over the app's own fields;
- websocket handshakes over a limit are refused (a denial response, else a
  close with 1013), never accepted; development mode is never limited;
- the throttled ``rate_limited`` event (never the key), the counters,
  ``usage`` and ``status(key_id=)``, ``features()``; keys from a key file
  with a ``limit``; bad configuration fails at construction without quoting
  a key planted in it;
- the local rate-limit benchmark's smoke run answers right.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import ASGIApp, Scope
from starlette.websockets import WebSocket
from structlog.testing import capture_logs
from structlog.typing import EventDict

import asgi_apikey.auth
from asgi_apikey import (
    UNLIMITED,
    APIKey,
    APIKeyAuth,
    APIKeyMiddleware,
    AuthContext,
    ConfigurationError,
    RateLimit,
    RateLimits,
)
from tests.asgi import (
    CANARY,
    OTHER_KEY,
    Recorder,
    Result,
    bearer,
    call,
    error_texts,
    http_scope,
    plain_digest,
)
from tests.servers import RunningServer, WebSocketClient, exchange, serve

NS = 1_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Noon, 1 June 2030 (UTC): half a day from the day's end, eleven days from the month's.
NOON = datetime(2030, 6, 1, 12, tzinfo=UTC)
THIRD_KEY = "sk-third-9a8b7c6d5e4f3a2b1c0d"
#: A canary spelled as an identifier (as many real keys are: ``sk_live_...``).
UNDERSCORE_CANARY = "sk_canary_5f3c9a1e7b2d4c6f8a0e"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
SUPPRESSED = "authentication_failures_suppressed"


@pytest.fixture(autouse=True)
def _no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every middleware sets the process default; leave none behind for other modules."""
    monkeypatch.setattr(asgi_apikey.auth, "_default", None)


def ns_of(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(seconds=1) * NS


@dataclass
class Clock:
    """The limiter's simulated clock: integer nanoseconds, moved by the test."""

    now: int = ns_of(NOON)

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float | Fraction) -> None:
        self.now += math.ceil(Fraction(seconds) * NS)


# ============================================================ a strict Structured Field parser

# RFC 8941, the subset the RateLimit fields use: a List of Items whose bare item is a
# String (or a Token), with Parameters whose values are Integers or Strings.
_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_INTEGER = re.compile(r"-?[0-9]{1,15}")


class FieldError(ValueError):
    """Not a valid Structured Field list (of the subset parsed here)."""


def _string(text: str, at: int) -> tuple[str, int]:
    if text[at : at + 1] != '"':
        raise FieldError(f"a string expected at {at}: {text!r}")
    out, at = [], at + 1
    while at < len(text):
        char = text[at]
        if char == "\\":
            if text[at + 1 : at + 2] not in ('"', "\\"):
                raise FieldError(f"a bad escape at {at}: {text!r}")
            out.append(text[at + 1])
            at += 2
        elif char == '"':
            return "".join(out), at + 1
        elif not " " <= char <= "~":
            raise FieldError(f"a character outside a string's range at {at}: {text!r}")
        else:
            out.append(char)
            at += 1
    raise FieldError(f"an unterminated string: {text!r}")


def _bare(text: str, at: int) -> tuple[str | int, int]:
    if text[at : at + 1] == '"':
        return _string(text, at)
    for pattern, convert in ((_INTEGER, int), (_TOKEN, str)):
        match = pattern.match(text, at)
        if match:
            return convert(match.group()), match.end()
    raise FieldError(f"a bare item expected at {at}: {text!r}")


def parse_sf_list(text: str) -> list[tuple[str, dict[str, str | int]]]:
    """``[(name, {param: value})]`` of a Structured Field List; raise FieldError if it is not one.

    Stricter than RFC 8941 in two ways the fields here must meet anyway: no
    whitespace around the whole value, and no parameter given twice.
    """
    items: list[tuple[str, dict[str, str | int]]] = []
    at = 0
    if not text or text != text.strip(" \t"):
        raise FieldError(f"empty, or whitespace around the value: {text!r}")
    while True:
        name, at = _bare(text, at)
        if not isinstance(name, str):
            raise FieldError(f"a policy name must be a string or token: {text!r}")
        params: dict[str, str | int] = {}
        while text[at : at + 1] == ";":
            at += 1
            while text[at : at + 1] == " ":
                at += 1
            key = _KEY.match(text, at)
            if key is None:
                raise FieldError(f"a parameter key expected at {at}: {text!r}")
            at = key.end()
            if key.group() in params:
                raise FieldError(f"parameter {key.group()} twice: {text!r}")
            if text[at : at + 1] != "=":
                raise FieldError(f"a parameter without a value at {at}: {text!r}")
            params[key.group()], at = _bare(text, at + 1)
        items.append((name, params))
        while text[at : at + 1] in (" ", "\t"):
            at += 1
        if at == len(text):
            return items
        if text[at] != ",":
            raise FieldError(f"',' expected at {at}: {text!r}")
        at += 1
        while text[at : at + 1] in (" ", "\t"):
            at += 1
        if at == len(text):
            raise FieldError(f"a trailing comma: {text!r}")


@pytest.mark.parametrize(
    "text",
    [
        "",
        ' "rate";q=1',
        '"rate";q=1,',
        '"rate";q=1;q=2',
        '"rate";q',
        '"rate";Q=1',
        '"rate" ;q=1',
        '"rate";q=1 "quota"',
        '"ra\\te";q=1',
        '"rate;q=1',
        '"rate";q=1.5',
        "1;q=1",
        '"rate";q=1234567890123456',
    ],
)
def test_the_structured_field_parser_is_strict(text: str) -> None:
    with pytest.raises(FieldError):
        parse_sf_list(text)


def test_the_structured_field_parser_reads_the_drafts_examples() -> None:
    assert parse_sf_list('"rate";q=100;w=60, "quota";q=10000;w=86400') == [
        ("rate", {"q": 100, "w": 60}),
        ("quota", {"q": 10000, "w": 86400}),
    ]
    assert parse_sf_list('"rate";r=0;t=12,"quota";r=9000;t=3600') == [
        ("rate", {"r": 0, "t": 12}),
        ("quota", {"r": 9000, "t": 3600}),
    ]
    assert parse_sf_list('burst; q=5;pk="a\\"b"') == [("burst", {"q": 5, "pk": 'a"b'})]


@dataclass(frozen=True)
class Fields:
    """A response's ``RateLimit-Policy`` and ``RateLimit`` fields, parsed and checked."""

    policy: dict[str, dict[str, str | int]]
    state: dict[str, dict[str, str | int]]

    @property
    def names(self) -> list[str]:
        return list(self.policy)


def rate_limit_fields(headers: Iterable[tuple[bytes, bytes]]) -> Fields | None:
    """The two fields of a response (each once, or neither), checked against the draft."""
    found: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        if name.lower() in (b"ratelimit-policy", b"ratelimit"):
            found.setdefault(name.lower(), []).append(value)
    if not found:
        return None
    assert set(found) == {b"ratelimit-policy", b"ratelimit"}, "one field without the other"
    assert all(len(values) == 1 for values in found.values()), found
    policy = parse_sf_list(found[b"ratelimit-policy"][0].decode("ascii"))
    state = parse_sf_list(found[b"ratelimit"][0].decode("ascii"))
    policies, states = dict(policy), dict(state)
    assert len(policies) == len(policy), "a policy named twice"
    assert len(states) == len(state), "a policy's state named twice"
    assert list(policies) == list(states), "the two fields name different policies"
    for params in policies.values():
        assert set(params) == {"q", "w"}, params
        assert all(isinstance(value, int) and value >= 1 for value in params.values()), params
    for params in states.values():
        assert set(params) == {"r", "t"}, params
        assert all(isinstance(value, int) and value >= 0 for value in params.values()), params
    return Fields(policies, states)


# ====================================================================== helpers


def build(
    keys: Iterable[str | APIKey] = (),
    rate_limits: RateLimits | None = None,
    app: ASGIApp | None = None,
    **options: Any,
) -> tuple[APIKeyMiddleware, Recorder]:
    inner = Recorder()
    options.setdefault("public", ["/health"])
    options.setdefault("optional", ["/maybe"])
    if "auth" not in options:
        options["keys"] = list(keys)
    middleware = APIKeyMiddleware(
        app if app is not None else inner, rate_limits=rate_limits, **options
    )
    return middleware, inner


def get(
    app: APIKeyMiddleware,
    inner: Recorder | None,
    path: str = "/v1/x",
    key: str | None = None,
    *,
    client: tuple[str, int] = ("127.0.0.1", 50000),
    **options: Any,
) -> Result:
    scope = http_scope(path, headers=[bearer(key)] if key else [], **options)
    scope["client"] = client
    return call(app, scope, inner)


def admitted(app: APIKeyMiddleware, key: str | None, count: int, path: str = "/v1/x") -> int:
    """How many of ``count`` requests at one instant pass (the rest must be 429)."""
    statuses = [get(app, None, path, key).status for _ in range(count)]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses == sorted(statuses), f"admitted after a refusal at one instant: {statuses}"
    return statuses.count(200)


def limited(clock: Clock | None = None, **options: Any) -> RateLimits:
    """``RateLimits`` on the simulated clock (a fresh one at noon unless given)."""
    return RateLimits(clock=clock or Clock(), **options)


def assert_429(result: Result, *, retry_after: int, names: list[str], whose: str) -> Fields:
    """Everything a refusal over a limit must be; its fields, parsed."""
    assert result.status == 429
    assert result.seen is None, "the app must not run"
    assert result.header("retry-after") == str(retry_after)
    assert result.header("www-authenticate") is None, "the credentials were fine"
    assert result.header("cache-control") == "no-store"
    assert result.header("content-type") == "application/json"
    assert result.header("content-length") == str(len(result.body))
    detail = result.json()["detail"]
    assert list(result.json()) == ["detail"]
    assert f"this {whose} is over its" in detail
    assert f"retry after {retry_after} seconds" in detail
    for name, value in SECURITY_HEADERS.items():
        assert result.header(name) == value, name
    fields = rate_limit_fields(result.headers)
    assert fields is not None
    assert fields.names == names
    # The refusing part has nothing left.
    assert any(state["r"] == 0 for state in fields.state.values()), fields
    return fields


# ============================================================ 1. which limit applies

# Keys: CANARY with its own limit, OTHER_KEY with scopes, THIRD_KEY with nothing.
WHICH = [
    pytest.param(
        [APIKey(CANARY, name="own", scopes={"pro"}, limit="2/minute")],
        RateLimits("5/minute", scopes={"pro": "7/minute"}),
        CANARY,
        2,
        id="own limit wins over the scope's and the default",
    ),
    pytest.param(
        [APIKey(CANARY, name="vip", scopes={"pro"}, limit=UNLIMITED)],
        RateLimits("1/minute", scopes={"pro": "1/minute"}),
        CANARY,
        30,
        id="UNLIMITED exempts from the scope's and the default",
    ),
    pytest.param(
        [APIKey(CANARY, name="vip", limit="unlimited")],
        RateLimits("1/minute"),
        CANARY,
        30,
        id="'unlimited' in data form too",
    ),
    pytest.param(
        [APIKey(OTHER_KEY, name="both", scopes={"pro", "gold"})],
        RateLimits("1/minute", scopes={"gold": "3/minute", "pro": "6/minute"}),
        OTHER_KEY,
        3,
        id="the first configured scope the key holds (gold)",
    ),
    pytest.param(
        [APIKey(OTHER_KEY, name="both", scopes={"pro", "gold"})],
        RateLimits("1/minute", scopes={"pro": "6/minute", "gold": "3/minute"}),
        OTHER_KEY,
        6,
        id="the first configured scope the key holds (pro)",
    ),
    pytest.param(
        [APIKey(OTHER_KEY, name="pro", scopes={"pro"})],
        RateLimits("1/minute", scopes={"gold": "3/minute", "pro": "6/minute"}),
        OTHER_KEY,
        6,
        id="a later scope when the key lacks the first",
    ),
    pytest.param(
        [APIKey(THIRD_KEY, name="plain", scopes={"read"})],
        RateLimits("4/minute", scopes={"pro": "6/minute"}),
        THIRD_KEY,
        4,
        id="the default without own limit or limited scope",
    ),
    pytest.param(
        [APIKey(THIRD_KEY, name="plain")],
        RateLimits(scopes={"pro": "6/minute"}),
        THIRD_KEY,
        30,
        id="none: no own limit, no scope, no default",
    ),
    pytest.param(
        [APIKey(THIRD_KEY, name="plain")],
        None,
        THIRD_KEY,
        30,
        id="none: no RateLimits at all",
    ),
    pytest.param(
        [APIKey(CANARY, name="own", limit=RateLimit("3/minute", burst=2))],
        None,
        CANARY,
        2,
        id="own limit without RateLimits (its burst)",
    ),
    pytest.param(
        [APIKey(CANARY, name="own", limit={"quota": "3/day"})],
        RateLimits("10/minute"),
        CANARY,
        3,
        id="own quota alone (not the default's rate too)",
    ),
]


@pytest.mark.parametrize("headers", [False, True], ids=["plain", "headers=True"])
@pytest.mark.parametrize(("keys", "config", "key", "expected"), WHICH)
def test_which_limit_applies(
    keys: list[APIKey], config: RateLimits | None, key: str, expected: int, headers: bool
) -> None:
    clock = Clock()
    if config is not None:
        config = RateLimits(
            None if config.default is None else config.default,
            scopes=dict(config.scopes),
            headers=headers,
            clock=clock,
        )
    elif headers:
        config = RateLimits(headers=True, clock=clock)
    # Without RateLimits the keys' own limits run on the real clock: the 30 requests
    # take far less than one interval of any limit here.
    app, _ = build(keys, config)
    assert admitted(app, key, 30) == expected


def test_a_key_without_rate_limits_configured_runs_on_its_own_limit() -> None:
    # No RateLimits: the limiter's clocks are the real ones; one burst is spent at once.
    app, inner = build([APIKey(CANARY, name="own", limit="2/hour")])
    assert [get(app, inner, key=CANARY).status for _ in range(3)] == [200, 200, 429]


def test_each_key_has_its_own_bucket_under_a_shared_default() -> None:
    app, _ = build([CANARY, OTHER_KEY], limited(default="2/minute"))
    assert admitted(app, CANARY, 5) == 2
    assert admitted(app, OTHER_KEY, 5) == 2


def test_a_verifiers_identity_is_limited_by_its_key_id() -> None:
    def verifier(token: str) -> AuthContext | None:
        if token.startswith("jwt-"):
            return AuthContext(authenticated=True, key_id=f"jwt:{token[4:]}")
        return None

    auth = APIKeyAuth(keys=[CANARY], verifiers=[verifier])
    app, _ = build(auth=auth, rate_limits=limited(default="2/minute"))
    assert admitted(app, "jwt-alice", 5) == 2
    assert admitted(app, "jwt-bob", 5) == 2
    assert auth.counters().rate_limited_by_key_id == {"jwt:alice": 3, "jwt:bob": 3}


def test_a_limit_comes_back_with_time() -> None:
    clock = Clock()
    app, _ = build([CANARY], limited(default="6/minute", clock=clock))
    assert admitted(app, CANARY, 10) == 6
    clock.advance(10)  # one request's share
    assert admitted(app, CANARY, 10) == 1
    clock.advance(60)
    assert admitted(app, CANARY, 10) == 6


# ============================================================ 2. path limits

PATH_LIMITS = {"/v1/chat": "1/minute", "/v1/chat/admin": "2/minute"}

#: Every spelling of a path under /v1/chat that a router would serve there.
CHAT_SPELLINGS = [
    "/v1/chat",
    "/v1/chat/",
    "/v1/chat/completions",
    "//v1/chat",
    "/v1//chat",
    "/v1/chat//",
    "/v1/./chat",
    "/./v1/chat",
    "/v1/x/../chat",
    "/x/../v1/chat/completions",
    "//v1//chat/completions",
]
#: Paths that are not under /v1/chat, however close.
NOT_CHAT = ["/v1/chatter", "/v1/cha", "/v2/chat", "/v1", "/v1/x", "/v1/chat-admin"]


@pytest.mark.parametrize("spelling", CHAT_SPELLINGS)
def test_no_spelling_of_a_path_escapes_its_limit(spelling: str) -> None:
    app, inner = build([CANARY], limited(paths={"/v1/chat": "1/minute"}))
    assert get(app, inner, "/v1/chat", CANARY).status == 200
    refused = get(app, inner, spelling, CANARY)
    assert refused.status == 429, f"{spelling} escaped the limit of /v1/chat"
    assert_429(refused, retry_after=60, names=["path-rate"], whose="API key")


@pytest.mark.parametrize("spelling", CHAT_SPELLINGS)
def test_every_spelling_of_a_path_spends_the_same_limit(spelling: str) -> None:
    app, inner = build([CANARY], limited(paths={"/v1/chat": "1/minute"}))
    assert get(app, inner, spelling, CANARY).status == 200
    assert get(app, inner, "/v1/chat/completions", CANARY).status == 429


@pytest.mark.parametrize("path", NOT_CHAT)
def test_a_path_limit_covers_its_segments_only(path: str) -> None:
    app, inner = build([CANARY], limited(paths={"/v1/chat": "1/minute"}))
    assert get(app, inner, "/v1/chat", CANARY).status == 200
    assert [get(app, inner, path, CANARY).status for _ in range(3)] == [200] * 3


@pytest.mark.parametrize(
    "path",
    ["/api/v1/chat", "/api/v1/chat/", "/api//v1/chat", "/api/v1/./chat", "/api/x/../v1/chat"],
)
def test_a_path_limit_is_relative_to_the_mount_point(path: str) -> None:
    app, inner = build([CANARY], limited(paths={"/v1/chat": "1/minute"}))
    assert get(app, inner, "/api/v1/chat", CANARY, root_path="/api").status == 200
    refused = get(app, inner, path, CANARY, root_path="/api")
    assert refused.status == 429, f"{path} under /api escaped the limit of /v1/chat"


def test_a_path_limit_under_a_starlette_mount() -> None:
    async def chat(request: Request) -> Response:
        return PlainTextResponse("chat")

    inner = Starlette(routes=[Route("/v1/chat", chat), Route("/v1/other", chat)])
    guarded = APIKeyMiddleware(
        inner, keys=[CANARY], rate_limits=limited(paths={"/v1/chat": "1/minute"})
    )
    outer = Starlette(routes=[Mount("/api", app=guarded)])
    with TestClient(outer) as client:
        headers = {"Authorization": f"Bearer {CANARY}"}
        assert client.get("/api/v1/chat", headers=headers).status_code == 200
        assert client.get("/api/v1/chat", headers=headers).status_code == 429
        assert client.get("/api/v1/other", headers=headers).status_code == 200


@pytest.mark.parametrize("configured", ["/v1/chat", "/v1/chat/"])
def test_a_configured_path_limits_its_path_however_it_is_written(configured: str) -> None:
    app, inner = build([CANARY], limited(paths={configured: "1/minute"}))
    statuses = [get(app, inner, "/v1/chat", CANARY).status for _ in range(2)]
    assert statuses == [200, 429], f"paths={{{configured!r}: ...}} limited nothing"


def test_a_path_limit_is_per_caller() -> None:
    app, inner = build([CANARY, OTHER_KEY], limited(paths={"/v1/chat": "1/minute"}))
    assert get(app, inner, "/v1/chat", CANARY).status == 200
    assert get(app, inner, "/v1/chat", CANARY).status == 429
    assert get(app, inner, "/v1/chat", OTHER_KEY).status == 200
    assert get(app, inner, "/v1/chat", OTHER_KEY).status == 429


def test_the_longest_path_limit_wins() -> None:
    app, _ = build([CANARY], limited(paths=PATH_LIMITS))
    assert admitted(app, CANARY, 5, "/v1/chat/admin/x") == 2
    assert admitted(app, CANARY, 5, "/v1/chat/x") == 1


def test_an_unlimited_key_still_meets_a_path_limit() -> None:
    # UNLIMITED exempts a key from the default and the scopes' limits; a path's limit
    # applies to every caller on top of its own.
    app, _ = build(
        [APIKey(CANARY, limit=UNLIMITED)], limited(default="1/minute", paths=PATH_LIMITS)
    )
    assert admitted(app, CANARY, 5, "/v1/x") == 5
    assert admitted(app, CANARY, 5, "/v1/chat") == 1


def test_a_path_limit_counts_anonymous_callers_per_address() -> None:
    app, inner = build([CANARY], limited(paths={"/health": "1/minute"}))
    first, second = ("198.51.100.1", 1000), ("198.51.100.2", 1000)
    assert get(app, inner, "/health", client=first).status == 200
    refused = get(app, inner, "/health", client=first)
    assert_429(refused, retry_after=60, names=["path-rate"], whose="client")
    assert get(app, inner, "/health", client=second).status == 200


def test_all_or_nothing_across_a_keys_limit_and_a_paths() -> None:
    clock = Clock()
    app, inner = build(
        [CANARY], limited(default="2/minute", paths={"/v1/chat": "1/hour"}, clock=clock)
    )
    # The path's limit refuses: the key's own is not spent.
    assert get(app, inner, "/v1/chat", CANARY).status == 200  # key 1 of 2, path 1 of 1
    for _ in range(5):
        assert get(app, inner, "/v1/chat", CANARY).status == 429
    assert get(app, inner, "/v1/x", CANARY).status == 200  # key 2 of 2: still there
    assert get(app, inner, "/v1/x", CANARY).status == 429
    # The key's limit refuses: the path's is not spent.
    app, inner = build(
        [CANARY], limited(default="2/minute", paths={"/v1/chat": "1/hour"}, clock=clock)
    )
    assert get(app, inner, "/v1/x", CANARY).status == 200
    assert get(app, inner, "/v1/x", CANARY).status == 200
    refused = get(app, inner, "/v1/chat", CANARY)
    fields = assert_429(refused, retry_after=30, names=["rate", "path-rate"], whose="API key")
    assert fields.state["path-rate"]["r"] == 1  # nothing of it was spent
    assert fields.state["path-rate"]["t"] == 0  # ... so it is whole now, not in an hour
    clock.advance(30)  # one of the key's two comes back
    assert get(app, inner, "/v1/chat", CANARY).status == 200  # the path's one was kept


# ============================================================ 3. anonymous clients


def test_anonymous_requests_are_not_limited_unless_asked() -> None:
    app, _ = build([CANARY], limited(default="1/minute"))
    assert admitted(app, None, 20, "/health") == 20
    assert admitted(app, None, 20, "/maybe") == 20


@pytest.mark.parametrize("path", ["/health", "/maybe"])
def test_anonymous_requests_are_limited_per_client_address(path: str) -> None:
    app, inner = build([CANARY], limited(anonymous="2/minute"))
    first, second = ("198.51.100.1", 1000), ("198.51.100.2", 1000)
    assert [get(app, inner, path, client=first).status for _ in range(3)] == [200, 200, 429]
    refused = get(app, inner, path, client=(first[0], 2000))  # another port, the same host
    assert_429(refused, retry_after=30, names=["rate"], whose="client")
    assert [get(app, inner, path, client=second).status for _ in range(3)] == [200, 200, 429]


def test_a_key_on_a_public_path_is_limited_as_the_key_not_as_the_client() -> None:
    app, inner = build([CANARY], limited(default="3/minute", anonymous="1/minute"))
    assert admitted(app, CANARY, 5, "/health") == 3
    assert get(app, inner, "/health").status == 200  # the address's own limit is untouched


def test_refusals_before_the_limits_spend_nothing() -> None:
    app, inner = build([CANARY], limited(anonymous="1/minute", default="1/minute"))
    for _ in range(3):
        assert get(app, inner, "/v1/x").status == 401  # no key on a protected path
        assert get(app, inner, "/v1/x", "sk-unknown-0000111122223333").status == 401
        assert get(app, inner, "/maybe", "sk-unknown-0000111122223333").status == 401
    assert get(app, inner, "/health").status == 200
    assert get(app, inner, "/v1/x", CANARY).status == 200


# ============================================================ 4. the 429 and the fields


@pytest.mark.parametrize(
    ("limit", "spend", "wait"),
    [
        pytest.param(RateLimit("3/10s"), 3, Fraction(10, 3), id="a third of 10 s, rounded up"),
        pytest.param(RateLimit("10/second", burst=1), 1, Fraction(1, 10), id="under 1 s: 1"),
        pytest.param(RateLimit("1/minute"), 1, Fraction(60), id="a whole minute"),
        pytest.param(RateLimit("2/hour", burst=1), 1, Fraction(1800), id="half an hour"),
        pytest.param(RateLimit(quota="2/day"), 2, Fraction(12 * 3600), id="to the day's end"),
        pytest.param(RateLimit(quota="1/hour"), 1, Fraction(3600), id="to the hour's end"),
        pytest.param(
            RateLimit(quota="1/month"), 1, Fraction(29 * 86400 + 12 * 3600), id="to June's end"
        ),
    ],
)
def test_retry_after_is_the_wait_in_whole_seconds_rounded_up(
    limit: RateLimit, spend: int, wait: Fraction
) -> None:
    clock = Clock()
    app, inner = build([APIKey(CANARY, name="k", limit=limit)], limited(clock=clock))
    for _ in range(spend):
        assert get(app, inner, key=CANARY).status == 200
    refused = get(app, inner, key=CANARY)
    retry_after = max(1, math.ceil(wait))
    names = (["rate"] if limit.rate else []) + (["quota"] if limit.quota else [])
    fields = assert_429(refused, retry_after=retry_after, names=names, whose="API key")
    if limit.rate is not None:
        assert fields.policy["rate"] == {"q": limit.rate.capacity, "w": limit.rate.window_s}
    if limit.quota is not None:
        assert fields.policy["quota"]["q"] == limit.quota.count
    # A moment before the wait is over it is still refused; at its end, admitted.
    clock.advance(wait - Fraction(1, NS))
    assert get(app, inner, key=CANARY).status == 429
    clock.advance(Fraction(1, NS))
    assert get(app, inner, key=CANARY).status == 200


def test_the_fields_name_each_policy_with_its_quota_and_window() -> None:
    clock = Clock()
    key = APIKey(CANARY, name="k", limit=RateLimit("100/minute", burst=5, quota="1000/day"))
    app, inner = build([key], limited(paths={"/v1/chat": "10/hour"}, clock=clock))
    for _ in range(5):
        assert get(app, inner, "/v1/chat", CANARY).status == 200
    fields = assert_429(
        get(app, inner, "/v1/chat", CANARY),
        retry_after=1,  # 0.6 s for one of the 100 a minute
        names=["rate", "quota", "path-rate"],
        whose="API key",
    )
    assert fields.policy == {
        "rate": {"q": 5, "w": 3},  # 5 in the 3 s that 100 a minute refills them in
        "quota": {"q": 1000, "w": 86400},
        "path-rate": {"q": 10, "w": 3600},
    }
    assert fields.state["rate"]["r"] == 0
    assert fields.state["quota"] == {"r": 995, "t": 12 * 3600}
    assert fields.state["path-rate"]["r"] == 5


def test_a_refusal_over_https_carries_hsts() -> None:
    app, inner = build([CANARY], limited(default="1/minute"))
    assert get(app, inner, key=CANARY, scheme="https").status == 200
    refused = get(app, inner, key=CANARY, scheme="https")
    assert_429(refused, retry_after=60, names=["rate"], whose="API key")
    assert (refused.header("strict-transport-security") or "").startswith("max-age=")


def test_admitted_responses_carry_no_fields_unless_asked() -> None:
    app, inner = build([CANARY], limited(default="3/minute"))
    assert rate_limit_fields(get(app, inner, key=CANARY).headers) is None


def test_headers_true_adds_the_fields_to_admitted_responses() -> None:
    app, inner = build([CANARY], limited(default="3/minute", headers=True))
    remaining = []
    for _ in range(3):
        result = get(app, inner, key=CANARY)
        assert result.status == 200
        fields = rate_limit_fields(result.headers)
        assert fields is not None
        assert fields.policy == {"rate": {"q": 3, "w": 60}}
        remaining.append(fields.state["rate"]["r"])
    assert remaining == [2, 1, 0]


def test_headers_true_adds_nothing_where_no_limit_applies() -> None:
    app, inner = build([APIKey(CANARY, limit=UNLIMITED)], limited(default="1/minute", headers=True))
    assert rate_limit_fields(get(app, inner, key=CANARY).headers) is None
    assert rate_limit_fields(get(app, inner, "/health").headers) is None


@pytest.mark.parametrize(
    "own",
    [
        [(b"ratelimit", b'"app";r=1;t=1'), (b"ratelimit-policy", b'"app";q=9;w=1')],
        [(b"RateLimit", b'"app";r=1;t=1'), (b"RateLimit-Policy", b'"app";q=9;w=1')],
        [(b"RATELIMIT", b'"app";r=1;t=1'), (b"ratelimit-POLICY", b'"app";q=9;w=1')],
    ],
    ids=["lower", "mixed", "upper"],
)
def test_headers_true_never_overrides_the_apps_own_fields(own: list[tuple[bytes, bytes]]) -> None:
    inner = Recorder(response_headers=[(b"content-type", b"text/plain"), *own])
    app = APIKeyMiddleware(
        inner, keys=[CANARY], rate_limits=limited(default="3/minute", headers=True)
    )
    result = call(app, http_scope("/v1/x", headers=[bearer(CANARY)]), inner)
    assert result.status == 200
    fields = rate_limit_fields(result.headers)
    assert fields is not None
    assert fields.policy == {"app": {"q": 9, "w": 1}}
    assert [pair for pair in result.headers if pair[0].lower().startswith(b"ratelimit")] == own


@pytest.mark.parametrize(
    "own",
    [[(b"RateLimit", b'"app";r=1;t=1')], [(b"ratelimit-policy", b'"app";q=9;w=1')]],
    ids=["ratelimit", "policy"],
)
def test_an_app_that_sets_one_of_the_two_fields_gets_neither_of_ours(
    own: list[tuple[bytes, bytes]],
) -> None:
    inner = Recorder(response_headers=[(b"content-type", b"text/plain"), *own])
    app = APIKeyMiddleware(
        inner, keys=[CANARY], rate_limits=limited(default="3/minute", headers=True)
    )
    result = call(app, http_scope("/v1/x", headers=[bearer(CANARY)]), inner)
    assert result.status == 200
    assert [pair for pair in result.headers if pair[0].lower().startswith(b"ratelimit")] == own


def test_headers_true_with_request_logging_still_adds_the_fields() -> None:
    auth = APIKeyAuth(keys=[CANARY], request_logging=True, user_tracking=True)
    app, inner = build(auth=auth, rate_limits=limited(default="3/minute", headers=True))
    with capture_logs():
        result = get(app, inner, key=CANARY)
    fields = rate_limit_fields(result.headers)
    assert fields is not None
    assert fields.state == {"rate": {"r": 2, "t": 20}}


def test_the_test_client_sees_a_whole_429() -> None:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/v1/x", endpoint)])
    app.add_middleware(
        APIKeyMiddleware, keys=[CANARY], rate_limits=RateLimits("2/hour", headers=True)
    )
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {CANARY}"}
        assert [client.get("/v1/x", headers=headers).status_code for _ in range(2)] == [200] * 2
        refused = client.get("/v1/x", headers=headers)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1800"
    assert "www-authenticate" not in refused.headers
    assert refused.headers["cache-control"] == "no-store"
    assert refused.json()["detail"].startswith("Too many requests")
    fields = rate_limit_fields(refused.headers.raw)
    assert fields is not None
    assert fields.policy == {"rate": {"q": 2, "w": 3600}}
    assert CANARY not in refused.text
    assert CANARY not in str(refused.headers)


# ============================================================ 5. websockets


def ws_scope(path: str = "/v1/ws", key: str = CANARY, denial: bool = True) -> Scope:
    scope = http_scope(path, headers=[bearer(key)], kind="websocket")
    if denial:
        scope["extensions"] = {"websocket.http.response": {}}
    return scope


def test_a_websocket_handshake_over_the_limit_gets_a_429_denial_response() -> None:
    app, inner = build([CANARY], limited(default="1/minute"))
    first = call(app, ws_scope(), inner)
    assert [m["type"] for m in first.messages] == ["websocket.accept", "websocket.close"]
    refused = call(app, ws_scope(), inner)
    assert refused.seen is None, "the app must not see the handshake"
    types = [m["type"] for m in refused.messages]
    assert types == ["websocket.http.response.start", "websocket.http.response.body"]
    assert refused.status == 429
    assert refused.header("retry-after") == "60"
    assert refused.header("www-authenticate") is None
    fields = rate_limit_fields(refused.headers)
    assert fields is not None
    assert fields.names == ["rate"]


def test_a_websocket_handshake_over_the_limit_is_closed_with_1013_without_the_extension() -> None:
    app, inner = build([CANARY], limited(default="1/minute"))
    assert call(app, ws_scope(denial=False), inner).seen is not None
    refused = call(app, ws_scope(denial=False), inner)
    assert refused.seen is None
    assert len(refused.messages) == 1
    assert refused.messages[0]["type"] == "websocket.close"
    assert refused.messages[0]["code"] == 1013
    assert "websocket.accept" not in [m["type"] for m in refused.messages]


def test_an_anonymous_websocket_over_the_limit_is_refused() -> None:
    app, inner = build([CANARY], limited(anonymous="1/minute"))
    scope = http_scope("/health", kind="websocket")
    assert call(app, scope, inner).seen is not None
    refused = call(app, http_scope("/health", kind="websocket"), inner)
    assert refused.seen is None
    assert [(m["type"], m.get("code")) for m in refused.messages] == [("websocket.close", 1013)]


def test_the_test_client_gets_the_websocket_denial() -> None:
    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/v1/ws", socket)])
    app.add_middleware(APIKeyMiddleware, keys=[CANARY], rate_limits=RateLimits("1/hour"))
    headers = {"Authorization": f"Bearer {CANARY}"}
    with TestClient(app) as client:
        with client.websocket_connect("/v1/ws", headers=headers) as connection:
            assert connection.receive_text() == "hi"
        with (
            pytest.raises(WebSocketDenialResponse) as caught,
            client.websocket_connect("/v1/ws", headers=headers),
        ):
            pytest.fail("the handshake over the limit was accepted")
    assert caught.value.status_code == 429
    assert caught.value.headers["retry-after"] == "3600"


# ============================================================ 6. development mode


@pytest.mark.parametrize("environment", [None, "development", "testing"])
def test_development_mode_is_never_limited(
    environment: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if environment is not None:
        monkeypatch.setenv("ENVIRONMENT", environment)
    config = limited(
        default="1/minute",
        anonymous="1/minute",
        paths={"/v1": "1/minute", "/health": "1/minute"},
        headers=True,
    )
    inner = Recorder()
    with capture_logs():  # the development-mode warning
        app = APIKeyMiddleware(inner, public=["/health"], optional=["/maybe"], rate_limits=config)
    assert app.auth.is_development_mode
    for path in ("/v1/x", "/health", "/maybe"):
        results = [get(app, inner, path) for _ in range(5)]
        assert [result.status for result in results] == [200] * 5
        assert all(rate_limit_fields(result.headers) is None for result in results)
    assert app.auth.counters().refused["rate_limited"] == 0


# ============================================================ 7. the event, the counters, usage


def rate_limited_events(logs: Iterable[EventDict]) -> list[EventDict]:
    return [entry for entry in logs if entry["event"] == "rate_limited"]


def test_the_rate_limited_event_names_the_key_id_never_the_key() -> None:
    app, inner = build([APIKey(CANARY, name="billing")], limited(default="1/minute"))
    with capture_logs() as logs:
        assert get(app, inner, "/v1/x", CANARY).status == 200
        assert get(app, inner, "/v1/x", CANARY, query_string=b"a=1").status == 429
    assert rate_limited_events(logs) == [
        {
            "event": "rate_limited",
            "log_level": "warning",
            "reason": "rate_limited",
            "key_id": "billing",
            "detail": "over the rate limit; retry after 60 s",
            "client": "127.0.0.1",
            "method": "GET",
            "path": "/v1/x",
        }
    ]
    assert [entry["event"] for entry in logs] == ["rate_limited"]
    assert CANARY not in repr(logs)


def test_the_rate_limited_event_of_an_unnamed_key_names_its_fingerprint_id() -> None:
    app, inner = build([CANARY], limited(default="1/minute"))
    with capture_logs() as logs:
        get(app, inner, key=CANARY)
        get(app, inner, key=CANARY)
    (event,) = rate_limited_events(logs)
    assert event["key_id"] == APIKey(CANARY).key_id
    assert "token_fingerprint" not in event
    assert CANARY not in repr(logs)


def test_the_rate_limited_event_of_an_anonymous_client_names_the_client() -> None:
    app, inner = build([CANARY], limited(anonymous="1/minute"))
    with capture_logs() as logs:
        get(app, inner, "/health", client=("203.0.113.7", 1234))
        get(app, inner, "/health", client=("203.0.113.7", 1234))
    (event,) = rate_limited_events(logs)
    assert event["client"] == "203.0.113.7"
    assert "key_id" not in event
    assert "token_fingerprint" not in event
    assert event["path"] == "/health"
    counters = app.auth.counters()
    assert counters.refused["rate_limited"] == 1
    assert counters.rate_limited_by_key_id == {}


def test_a_flood_over_the_limit_logs_a_few_events_and_one_summary() -> None:
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="flood")], failure_log_limit=8)
    app, inner = build(auth=auth, rate_limits=limited(default="1/minute"))
    with capture_logs() as logs:
        assert get(app, inner, key=CANARY).status == 200
        for _ in range(200):
            assert get(app, inner, key=CANARY).status == 429
        auth.audit.flush(force=True)
    events = rate_limited_events(logs)
    assert 1 <= len(events) <= 8
    summaries = [entry for entry in logs if entry["event"] == SUPPRESSED]
    assert len(summaries) == 1
    assert summaries[0]["reason"] == "rate_limited"
    assert summaries[0]["count"] == 200 - len(events)
    # The client's refusals in the interval, logged ones included.
    assert summaries[0]["top_clients"] == [{"client": "127.0.0.1", "refusals": 200}]
    counters = auth.counters()
    assert counters.refused["rate_limited"] == 200
    assert counters.rate_limited_by_key_id == {"flood": 200}
    assert counters.suppressed_events == 200 - len(events)
    assert counters.by_key_id == {"flood": 1}
    assert counters.requests == 201
    assert CANARY not in repr(logs)


def test_the_counters_count_refusals_per_key_id() -> None:
    app, inner = build(
        [APIKey(CANARY, name="a"), APIKey(OTHER_KEY, name="b")], limited(default="2/minute")
    )
    with capture_logs():
        for key, count in ((CANARY, 5), (OTHER_KEY, 3)):
            for _ in range(count):
                get(app, inner, key=key)
        get(app, inner, "/health")
    counters = app.auth.counters()
    assert counters.rate_limited_by_key_id == {"a": 3, "b": 1}
    assert counters.refused["rate_limited"] == 4
    assert counters.by_key_id == {"a": 2, "b": 2}
    assert counters.requests == counters.authenticated + counters.anonymous + 4 == 9
    status = app.auth.status()
    assert status["counters"]["rate_limited_by_key_id"] == {"a": 3, "b": 1}
    json.dumps(status)  # JSON-ready


def test_usage_and_status_report_what_a_key_has_left() -> None:
    clock = Clock()
    limit = RateLimit("5/minute", quota="10/day")
    app, inner = build(
        [APIKey(CANARY, name="metered", limit=limit), APIKey(OTHER_KEY, name="free")],
        limited(clock=clock),
    )
    for _ in range(2):
        assert get(app, inner, key=CANARY).status == 200
    usage = app.auth.usage("metered")
    assert usage == {
        "limit": {"rate": "5/minute", "quota": "10/day"},
        "rate": {
            "limit": 5,
            "period_seconds": 60,
            "remaining": 3,
            "retry_after_seconds": 0.0,
        },
        "quota": {
            "limit": 10,
            "window": "day",
            "used": 2,
            "remaining": 8,
            "resets_in_seconds": 12 * 3600.0,
        },
        "shared": False,
    }
    assert app.auth.status(key_id="metered")["usage"] == usage
    assert app.auth.usage("free") is None
    assert app.auth.status(key_id="free")["usage"] is None
    with pytest.raises(KeyError):
        app.auth.usage("nobody")
    # Reading the usage spends nothing.
    assert app.auth.usage("metered") == usage
    for _ in range(3):
        assert get(app, inner, key=CANARY).status == 200
    exhausted = app.auth.usage("metered")
    assert exhausted is not None
    assert exhausted["rate"]["remaining"] == 0
    assert exhausted["rate"]["retry_after_seconds"] == 12.0
    assert exhausted["quota"]["remaining"] == 5
    assert CANARY not in json.dumps(app.auth.status(key_id="metered"))


def test_usage_of_a_key_under_a_scopes_limit() -> None:
    app, inner = build(
        [APIKey(CANARY, name="pro", scopes={"pro"})],
        limited(default="1/minute", scopes={"pro": "4/minute"}),
    )
    get(app, inner, key=CANARY)
    usage = app.auth.usage("pro")
    assert usage is not None
    assert usage["limit"] == "4/minute"
    assert usage["rate"]["remaining"] == 3


@pytest.mark.parametrize(
    ("keys", "config", "on"),
    [
        pytest.param([CANARY], None, False, id="no limits"),
        pytest.param([CANARY], RateLimits(), False, id="an empty RateLimits"),
        pytest.param([CANARY], RateLimits(headers=True), False, id="headers alone"),
        pytest.param([CANARY], RateLimits("10/minute"), True, id="a default"),
        pytest.param([CANARY], RateLimits(scopes={"pro": "1/s"}), True, id="a scope's"),
        pytest.param([CANARY], RateLimits(paths={"/v1": "1/s"}), True, id="a path's"),
        pytest.param([CANARY], RateLimits(anonymous="1/s"), True, id="anonymous"),
        pytest.param([APIKey(CANARY, limit="1/s")], None, True, id="a key's own"),
    ],
)
def test_features_say_whether_rate_limiting_is_on(
    keys: list[str | APIKey], config: RateLimits | None, on: bool
) -> None:
    app, _ = build(keys, config)
    assert app.auth.features()["rate_limiting"] is on
    assert app.auth.supports("rate_limiting") is on
    assert app.auth.status()["features"]["rate_limiting"] is on


# ============================================================ 8. the key file


def test_keys_from_a_key_file_carry_their_limits(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(
        f"""
[[keys]]
digest = "{plain_digest(CANARY)}"
name = "filed"
limit = "2/minute"

[[keys]]
digest = "{plain_digest(OTHER_KEY)}"
name = "tabled"
limit = {{ rate = "10/minute", burst = 3, quota = "4/day" }}

[[keys]]
digest = "{plain_digest(THIRD_KEY)}"
name = "exempt"
limit = "unlimited"
"""
    )
    auth = APIKeyAuth(keys_file=path)
    app, _ = build(auth=auth, rate_limits=limited(default="1/minute"))
    assert admitted(app, CANARY, 10) == 2
    assert admitted(app, OTHER_KEY, 10) == 3
    assert admitted(app, THIRD_KEY, 10) == 10
    assert auth.features()["key_file"]
    assert auth.features()["rate_limiting"]
    usage = auth.usage("tabled")
    assert usage is not None
    assert usage["limit"] == {"rate": "10/minute", "burst": 3, "quota": "4/day"}
    assert usage["quota"]["used"] == 3


@pytest.mark.parametrize(
    "limit",
    [
        f'"{UNDERSCORE_CANARY}"',
        f'{{ rate = "{UNDERSCORE_CANARY}" }}',
        f'{{ rate = "1/minute", quota = "{UNDERSCORE_CANARY}" }}',
        f"{{ {UNDERSCORE_CANARY} = 1 }}",
        f'["{UNDERSCORE_CANARY}"]',
    ],
    ids=["the limit", "its rate", "its quota", "a field's name", "a list"],
)
def test_a_key_files_bad_limit_is_a_configuration_error_without_the_key(
    tmp_path: Path, limit: str
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(f'[[keys]]\ndigest = "{plain_digest(CANARY)}"\nname = "x"\nlimit = {limit}\n')
    with pytest.raises(ConfigurationError) as caught:
        APIKeyAuth(keys_file=path)
    assert "limit" in str(caught.value)
    for _, text in error_texts(caught.value):
        assert UNDERSCORE_CANARY not in text


# ============================================================ 9. bad configuration


def _middleware(config: RateLimits) -> APIKeyMiddleware:
    return APIKeyMiddleware(Recorder(), keys=[OTHER_KEY], rate_limits=config)


BAD: dict[str, Callable[[str], object]] = {
    "default": lambda k: RateLimits(k),
    "default's rate": lambda k: RateLimits({"rate": k}),
    "default's quota": lambda k: RateLimits({"quota": k}),
    "default's burst": lambda k: RateLimits({"rate": "1/minute", "burst": k}),
    "default's field name": lambda k: RateLimits({k: "1/minute"}),
    "default in a list": lambda k: RateLimits([k]),  # type: ignore[arg-type]
    "anonymous": lambda k: RateLimits(anonymous=k),
    "a scope's limit": lambda k: RateLimits(scopes={"pro": k}),
    "a scope's limit's field name": lambda k: RateLimits(scopes={"pro": {k: 1}}),
    "a scope named by the key, bad limit": lambda k: RateLimits(scopes={k: "often"}),
    "a scope named by the key with a space": lambda k: RateLimits(scopes={k + " x": "1/s"}),
    "scopes as a list": lambda k: RateLimits(scopes=[k]),  # type: ignore[arg-type]
    "a path's limit": lambda k: RateLimits(paths={"/v1": k}),
    "a path named by the key, bad limit": lambda k: RateLimits(paths={k: "often"}),
    "a path under the key, bad limit": lambda k: RateLimits(paths={"/" + k: "often"}),
    "a path named by the key": lambda k: _middleware(RateLimits(paths={k: "1/minute"})),
    "paths as a list": lambda k: RateLimits(paths=[k]),  # type: ignore[arg-type]
    "headers": lambda k: RateLimits(headers=k),  # type: ignore[arg-type]
    "shared": lambda k: RateLimits(shared=k),  # type: ignore[arg-type]
    "clock": lambda k: RateLimits(clock=k),  # type: ignore[arg-type]
    "rate_limits": lambda k: _middleware(k),  # type: ignore[arg-type]
    "a key's own limit": lambda k: APIKey(OTHER_KEY, name="x", limit=k),
    "a key's own limit's field name": lambda k: APIKey(OTHER_KEY, name="x", limit={k: "1/s"}),
}


@pytest.mark.parametrize("canary", [CANARY, UNDERSCORE_CANARY], ids=["dashes", "underscores"])
@pytest.mark.parametrize("where", list(BAD))
def test_bad_configuration_fails_at_construction_without_quoting_a_planted_key(
    where: str, canary: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        BAD[where](canary)
    for name, text in error_texts(caught.value):
        assert canary not in text, f"{name} quotes the key: {text}"
    assert str(caught.value), "an error says what is wrong"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: RateLimits("100/fortnight"), "rate_limits default"),
        (lambda: RateLimits(anonymous={"rate": "1/s", "burst": 0}), "rate_limits anonymous"),
        (lambda: RateLimits(scopes={"pro": None}), "needs a limit"),  # type: ignore[dict-item]
        (lambda: RateLimits(paths={"/v1": "often"}), "'100/minute'"),
        (lambda: RateLimits({"rate": "1/s", "quota": "1/week"}), "windows: hour, day, month"),
    ],
    ids=["unknown period", "zero burst", "a scope without a limit", "a bad path limit", "week"],
)
def test_bad_configuration_says_where_and_how(make: Callable[[], object], says: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make()
    assert says in str(caught.value)


def test_a_bad_path_in_paths_is_named_as_a_rate_limits_path() -> None:
    with pytest.raises(ConfigurationError) as caught:
        _middleware(RateLimits(paths={"v1/chat": "1/minute"}))
    assert "paths" in str(caught.value), f"the error names another setting: {caught.value}"


# ============================================================ 10. real servers


async def _http_endpoint(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hi")
    await websocket.close()


def _served_app() -> Starlette:
    return Starlette(
        routes=[Route("/v1/x", _http_endpoint), WebSocketRoute("/v1/ws", _ws_endpoint)],
        middleware=[
            Middleware(
                APIKeyMiddleware,
                keys=[APIKey(CANARY, name="http"), APIKey(OTHER_KEY, name="ws")],
                rate_limits=RateLimits("2/hour", headers=True),
            )
        ],
    )


def _request(key: str) -> bytes:
    return (
        f"GET /v1/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


@pytest.fixture(params=["uvicorn-h11", "hypercorn"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with serve(_served_app(), request.param) as running:
        yield running


def test_a_real_server_sends_the_429_and_refuses_the_handshake(server: RunningServer) -> None:
    with capture_logs() as logs:
        answers = [exchange(server.port, _request(CANARY)) for _ in range(3)]
        with WebSocketClient(
            server.port, "/v1/ws", [("Authorization", f"Bearer {OTHER_KEY}")]
        ) as ws:
            assert ws.response is not None
            assert ws.response.status == 101
            assert ws.receive() == (1, b"hi")
        ws_answers = []
        for _ in range(2):
            with WebSocketClient(
                server.port, "/v1/ws", [("Authorization", f"Bearer {OTHER_KEY}")]
            ) as ws:
                ws_answers.append(ws.response)
    assert all(answer is not None for answer in answers)
    ok, ok_again, refused = answers
    assert ok is not None
    assert ok_again is not None
    assert refused is not None
    assert (ok.status, ok_again.status, refused.status) == (200, 200, 429)
    admitted_fields = rate_limit_fields(
        [(name.encode(), value.encode()) for name, value in ok.headers]
    )
    assert admitted_fields is not None
    assert admitted_fields.state["rate"]["r"] == 1
    assert refused.header("retry-after") == "1800"
    assert refused.header("www-authenticate") is None
    assert refused.header("cache-control") == "no-store"
    assert json.loads(refused.body)["detail"].startswith("Too many requests")
    fields = rate_limit_fields([(name.encode(), value.encode()) for name, value in refused.headers])
    assert fields is not None
    assert fields.policy == {"rate": {"q": 2, "w": 3600}}
    second, third = ws_answers
    assert second is not None
    assert second.status == 101
    assert third is not None
    assert third.status == 429
    assert third.header("retry-after") == "1800"
    assert server.errors() == []
    events = rate_limited_events(logs)
    assert [event["key_id"] for event in events] == ["http", "ws"]
    assert CANARY not in repr(logs)
    assert OTHER_KEY not in repr(logs)
    assert CANARY not in refused.raw_head.decode("latin-1") + refused.body.decode()


# ============================================================ 11. the benchmark's smoke run


@pytest.mark.usefixtures("uncached_structlog")  # the benchmark configures structlog
def test_the_local_rate_limit_benchmark_smoke_run_checks_its_answers(tmp_path: Path) -> None:
    from benchmarks import ratelimit_local

    assert ratelimit_local.main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "ratelimit_local.json").read_text())
    assert data["smoke"] is True
    assert {row["name"] for row in data["rows"]} >= {
        "no limit",
        "key limit",
        "key limit, headers=True",
        "key and path limit",
    }
    assert "# " in (tmp_path / "ratelimit_local.md").read_text()
