"""An attacker's review of the rate limits (issue 18): each finding proved by a test.

Each finding's test failed on the code it was found in and passes since its
fix (see SECURITY.md, "Findings fixed"); the others are regression tests for
what was tried and held. The findings, in short:

1. a path limit on a public path is escaped by a path the limits' rule table
   refuses (longer than ``max_path_length``, or with a control character),
   while the path rules still serve it;
2. a Litestar mount matched as a plain prefix (``/chatx`` reaches ``/chat``)
   escapes the mount's path limit, although the path rules judge it;
3. a caller's state starts afresh whenever its limit differs from the last
   one it was decided under, so a caller decided under two limits in turn
   is never limited: a verifier's identity with tokens of different scopes
   (in process), instances with different limits on one Redis (a rolling
   deploy), nested middlewares sharing one limiter (the tests take either
   fix: a bucket per limit, or the spent time carried over; the nested one
   wants each middleware's limit to hold as it does in one process);
4. nested middlewares sharing one limiter spend a request twice;
5. anonymous limits count each IPv6 address alone: one /64 holds 2**64
   fresh budgets, each kept in memory for its interval;
6. the shared limiter's 503 says ``Retry-After: 5`` whatever its backoff;
7. ``usage()`` / ``status(key_id=)`` raise a ``KeyError`` that quotes its
   argument (a key pasted where its key_id belongs);
8. ``usage()`` answers from the first middleware built on the authenticator,
   and says "unlimited" when that one has no limits but another has;
9. ``RateLimit-Policy`` states a rate with a burst as its burst per period.

Real Redis where the shared limiter is under test (tests/redis_server.py, one
server for the module, a fresh prefix per test).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.handlers import asgi
from litestar.types import Receive as LitestarReceive
from litestar.types import Scope as LitestarScope
from litestar.types import Send as LitestarSend
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs

import asgi_apikey.auth
from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware, AuthContext, RateLimit, RateLimits
from asgi_apikey.ratelimit.local import Check, LocalLimiter
from asgi_apikey.redis_store import RedisRateLimiter
from asgi_apikey.redis_store.limit_scripts import KeyNames
from tests.asgi import CANARY, OTHER_KEY, Recorder, call, error_texts, http_scope
from tests.redis_server import RedisServer, _free_port, running_redis
from tests.test_rate_limits import Clock, build, get, limited, rate_limit_fields

_prefixes = itertools.count()
HEADERS = {"Authorization": f"Bearer {CANARY}"}


@pytest.fixture(autouse=True)
def _no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every middleware sets the process default; leave none behind for other modules."""
    monkeypatch.setattr(asgi_apikey.auth, "_default", None)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def shared(server: RedisServer, prefix: str | None = None, **options: Any) -> RedisRateLimiter:
    """A limiter on ``server`` (under a prefix of its own unless given), refusing when
    Redis cannot answer."""
    options.setdefault("timeout", 5.0)
    options.setdefault("on_unavailable", "refuse")
    prefix = prefix or f"review{next(_prefixes)}"
    return RedisRateLimiter(server.url, prefix=prefix, **options)


async def _ok(request: Request) -> Response:
    return PlainTextResponse(request.url.path)


# ====================================== finding 1: a path the limits' table refuses escapes

LONG_TAIL = "a" * 300  # over max_path_length=256 below


@pytest.mark.parametrize(
    "spelling",
    [f"/search/{LONG_TAIL}", "/search/x%00", "/search/x%1b"],
    ids=["over max_path_length", "NUL", "ESC"],
)
@pytest.mark.parametrize("with_key", [False, True], ids=["anonymous", "with a key"])
def test_no_path_under_a_public_path_limit_escapes_it(spelling: str, with_key: bool) -> None:
    # A public search endpoint limited per caller: the app's route takes any path below it.
    app = APIKeyMiddleware(
        Starlette(routes=[Route("/search/{rest:path}", _ok)]),
        keys=[CANARY],
        public=["/search"],
        max_path_length=256,
        rate_limits=RateLimits(paths={"/search": "1/hour"}),
    )
    headers = HEADERS if with_key else {}
    with TestClient(app) as client, capture_logs():
        assert client.get("/search/first", headers=headers).status_code == 200
        answers = [client.get(spelling, headers=headers) for _ in range(3)]
    ran = [answer.status_code for answer in answers if answer.status_code == 200]
    assert not ran, f"the handler ran {len(ran)} more times past the path's 1/hour"


# ====================================== finding 2: a Litestar mount matched as a plain prefix


@asgi("/chat", is_mount=True, copy_scope=True)
async def _mounted_chat(scope: LitestarScope, receive: LitestarReceive, send: LitestarSend) -> None:
    # A mounted app that serves whatever path it is handed (/chatx arrives as /x).
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"chat", "more_body": False})


def test_a_litestar_mount_matched_as_a_plain_prefix_meets_the_mounts_path_limit() -> None:
    app = APIKeyMiddleware(
        Litestar([_mounted_chat]),
        keys=[CANARY],
        rate_limits=RateLimits(paths={"/chat": "1/hour"}),
    )
    with TestClient(app) as client, capture_logs():
        assert client.get("/chat/a", headers=HEADERS).status_code == 200
        assert client.get("/chat/a", headers=HEADERS).status_code == 429  # the limit holds ...
        reached = [client.get("/chatx", headers=HEADERS) for _ in range(3)]
    assert all(answer.text == "chat" or answer.status_code == 429 for answer in reached)
    assert [answer.status_code for answer in reached] == [429] * 3, "/chatx escaped /chat's limit"


def test_the_path_rules_do_judge_the_litestar_mount() -> None:
    # The reference the path limit should follow: /chatx is judged as under /chat.
    app = APIKeyMiddleware(Litestar([_mounted_chat]), keys=[CANARY], public=["/other"])
    with TestClient(app) as client, capture_logs():
        assert client.get("/chatx").status_code == 401
        assert client.get("/chatx", headers=HEADERS).text == "chat"


# ====================================== finding 3: a change of limit starts a caller afresh


def _jwt_verifier(token: str) -> AuthContext | None:
    # One identity, two tokens: a full-scope token and a down-scoped one (as OAuth
    # clients routinely hold).
    if token in ("jwt-alice-pro", "jwt-alice-free"):
        scopes = frozenset({"pro"}) if token.endswith("pro") else frozenset()
        return AuthContext(authenticated=True, key_id="jwt:alice", scopes=scopes)
    return None


@pytest.mark.parametrize(
    ("default", "pro"),
    [("2/minute", "3/minute"), (RateLimit(quota="2/day"), RateLimit(quota="3/day"))],
    ids=["rates", "quotas"],
)
def test_one_identity_under_two_limits_in_turn_is_still_limited(
    default: str | RateLimit, pro: str | RateLimit
) -> None:
    auth = APIKeyAuth(keys=[CANARY], verifiers=[_jwt_verifier])
    app, inner = build(auth=auth, rate_limits=limited(default=default, scopes={"pro": pro}))
    with capture_logs():
        statuses = [
            get(app, inner, "/v1/x", "jwt-alice-pro" if n % 2 else "jwt-alice-free").status
            for n in range(20)
        ]
    # At one instant: never more than both limits together (2 + 3).
    assert statuses.count(200) <= 5, f"{statuses.count(200)} of 20 admitted at one instant"


def test_one_identity_under_one_limit_is_limited() -> None:
    # The same identity and tokens, one limit: the bucket is the key_id, as documented.
    auth = APIKeyAuth(keys=[CANARY], verifiers=[_jwt_verifier])
    app, inner = build(auth=auth, rate_limits=limited(default="2/minute"))
    with capture_logs():
        statuses = [
            get(app, inner, "/v1/x", "jwt-alice-pro" if n % 2 else "jwt-alice-free").status
            for n in range(6)
        ]
    assert statuses == [200, 200, 429, 429, 429, 429]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (RateLimit("2/hour"), RateLimit("3/hour")),
        (RateLimit(quota="2/day"), RateLimit(quota="3/day")),
    ],
    ids=["rates", "quotas"],
)
def test_two_instances_with_different_limits_still_limit_a_caller(
    redis: RedisServer, old: RateLimit, new: RateLimit
) -> None:
    async def scenario() -> int:
        prefix = f"review{next(_prefixes)}"  # one deployment, two versions of its limits
        before, after = shared(redis, prefix), shared(redis, prefix)
        try:
            admitted = 0
            for n in range(20):
                limiter, limit = (before, old) if n % 2 else (after, new)
                admitted += (await limiter.decide([Check("billing", limit)])).allowed
            return admitted
        finally:
            await before.stop()
            await after.stop()

    admitted = asyncio.run(scenario())
    assert admitted <= 5, f"{admitted} of 20 admitted under limits of 2 and 3"


def _nested(limiter: RedisRateLimiter | None, outer: str, inner: str) -> APIKeyMiddleware:
    """A sub-app with its own middleware (and limit) mounted in a guarded app, one auth."""
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="billing")])
    sub = APIKeyMiddleware(
        Starlette(routes=[Route("/chat", _ok)]),
        auth=auth,
        rate_limits=RateLimits(default=inner, shared=limiter),
    )
    return APIKeyMiddleware(
        Starlette(routes=[Mount("/v1", app=sub)]),
        auth=auth,
        rate_limits=RateLimits(default=outer, shared=limiter),
    )


def _statuses(app: APIKeyMiddleware, count: int) -> list[int]:
    with TestClient(app) as client, capture_logs():
        return [client.get("/v1/chat", headers=HEADERS).status_code for _ in range(count)]


def test_nested_middlewares_in_one_process_each_apply_their_limit() -> None:
    # The reference for the shared limiter: each middleware counts a request once.
    assert _statuses(_nested(None, "100/hour", "3/hour"), 6) == [200] * 3 + [429] * 3
    assert _statuses(_nested(None, "3/hour", "3/hour"), 6) == [200] * 3 + [429] * 3


def test_nested_middlewares_sharing_a_limiter_apply_the_inner_limit(redis: RedisServer) -> None:
    assert _statuses(_nested(shared(redis), "100/hour", "3/hour"), 6) == [200] * 3 + [429] * 3


# ====================================== finding 4: nested middlewares spend twice


def test_nested_middlewares_sharing_a_limiter_spend_once_per_request(redis: RedisServer) -> None:
    assert _statuses(_nested(shared(redis), "3/hour", "3/hour"), 6) == [200] * 3 + [429] * 3


# ====================================== finding 5: anonymous IPv6 clients


def test_anonymous_clients_of_one_ipv6_64_share_one_limit() -> None:
    app, inner = build([CANARY], limited(anonymous="2/minute"))
    with capture_logs():
        statuses = [
            get(app, inner, "/health", client=(f"2001:db8:1:2::{n:x}", 40000)).status
            for n in range(1, 201)
        ]
    held = len(app.limits.local)
    assert statuses.count(200) <= 2, f"one /64 made {statuses.count(200)} anonymous requests"
    assert held <= 2, f"one /64 holds {held} buckets"


def test_anonymous_ipv4_clients_are_limited_per_address_and_share_nothing() -> None:
    app, inner = build([CANARY], limited(anonymous="2/minute"))
    with capture_logs():
        statuses = [
            get(app, inner, "/health", client=(f"198.51.100.{n % 3}", 40000)).status
            for n in range(12)
        ]
    assert statuses.count(200) == 6  # 2 for each of the three addresses
    assert get(app, inner, "/health", CANARY).status == 200  # the key is not the address


# ====================================== finding 6: the limiter's 503 and its Retry-After


def test_the_limiters_503_says_when_redis_is_tried_again() -> None:
    password = "redis-review-pw-71c3e0"
    limiter = RedisRateLimiter(
        f"redis://:{password}@127.0.0.1:{_free_port()}/0",  # nothing listens there
        timeout=0.5,
        on_unavailable="refuse",
        backoff=60.0,
    )
    app = APIKeyMiddleware(
        Starlette(routes=[Route("/v1/x", _ok)]),
        keys=[APIKey(CANARY, name="billing", limit="5/minute")],
        rate_limits=RateLimits(shared=limiter),
    )
    with TestClient(app) as client, capture_logs() as logs:
        refused = client.get("/v1/x", headers=HEADERS)
    assert refused.status_code == 503
    for text in (refused.text, repr(refused.headers), repr(logs)):
        assert password not in text
        assert CANARY not in text
    assert int(refused.headers["retry-after"]) >= 59, refused.headers["retry-after"]


# ====================================== finding 9: RateLimit-Policy of a rate with a burst


@pytest.mark.parametrize(
    "limit",
    [RateLimit("100/minute", burst=5), RateLimit("10/minute", burst=50)],
    ids=["burst below the count", "burst above the count"],
)
def test_the_policy_of_a_rate_states_its_rate(limit: RateLimit) -> None:
    app, inner = build([APIKey(CANARY, name="k", limit=limit)], limited(headers=True))
    fields = rate_limit_fields(get(app, inner, key=CANARY).headers)
    assert fields is not None
    policy = fields.policy["rate"]
    assert limit.rate is not None
    q, w = policy["q"], policy["w"]
    assert isinstance(q, int)
    assert isinstance(w, int)
    # q requests per w seconds is the rate (count per period), exactly where it divides.
    assert q * limit.rate.period == limit.rate.count * w, policy
    left = fields.state["rate"]["r"]
    assert isinstance(left, int)
    assert left < q  # what is left never exceeds the policy's quota


def test_the_policy_of_a_rate_without_a_burst_is_its_count_per_period() -> None:
    app, inner = build([APIKey(CANARY, name="k", limit="100/minute")], limited(headers=True))
    fields = rate_limit_fields(get(app, inner, key=CANARY).headers)
    assert fields is not None
    assert fields.policy == {"rate": {"q": 100, "w": 60}}
    assert fields.state == {"rate": {"r": 99, "t": 1}}


# ====================================== findings 7 and 8: usage()


@pytest.mark.parametrize("ask", ["usage", "status"])
def test_usage_of_an_unknown_key_id_never_quotes_it(ask: str) -> None:
    auth = APIKeyAuth(keys=[APIKey(OTHER_KEY, name="billing", limit="5/minute")])
    APIKeyMiddleware(Recorder(), auth=auth)
    with pytest.raises(KeyError) as raised:
        auth.usage(CANARY) if ask == "usage" else auth.status(key_id=CANARY)
    for name, text in error_texts(raised.value):
        assert CANARY not in text, f"{name} quotes the argument: {text}"


def test_usage_reports_the_limit_another_middleware_applies() -> None:
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="billing")])
    # Held, as an app holds its middleware (the authenticator holds them weakly).
    outer = APIKeyMiddleware(Recorder(), auth=auth)  # e.g. an outer middleware without limits
    inner = APIKeyMiddleware(Recorder(), auth=auth, rate_limits=RateLimits(default="10/minute"))
    report = auth.usage("billing")
    assert report is not None, "usage() says the key is not limited"
    assert report["limit"] == "10/minute"
    del outer, inner  # gone: their limits with them
    gc.collect()
    assert auth.usage("billing") is None
    assert auth.supports("rate_limiting") is False


# ====================================== regressions: what was tried and held


def test_a_key_rotated_under_the_same_name_keeps_its_count() -> None:
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="billing")])
    app, inner = build(auth=auth, rate_limits=limited(default="2/minute"))
    with capture_logs():
        assert [get(app, inner, key=CANARY).status for _ in range(2)] == [200, 200]
        auth.replace_keys([APIKey(OTHER_KEY, name="billing")])  # the secret rotated
        assert get(app, inner, key=OTHER_KEY).status == 429
        assert get(app, inner, key=CANARY).status == 401
        auth.replace_keys([APIKey(OTHER_KEY, name="billing-2")])  # a new key: its own budget
        assert get(app, inner, key=OTHER_KEY).status == 200


def test_requests_without_a_valid_key_never_spend_a_keys_budget() -> None:
    # Unknown, malformed and key-id-spelled tokens on a public path are anonymous: they
    # spend their address's budget, never a key's. One limit for both, so that a shared
    # bucket would show (a differing limit would start it afresh: finding 3).
    app, inner = build(
        [APIKey(CANARY, name="billing")], limited(default="1/minute", anonymous="1/minute")
    )
    tokens = ["billing", "sk-unknown-0000111122223333", CANARY + "x", "key-0123", "a b"]
    with capture_logs():
        for n, token in enumerate(tokens):
            address = (f"198.51.100.{n}", 40000)
            assert get(app, inner, "/health", token, client=address).status == 200
            assert get(app, inner, "/health", token, client=address).status == 429
        assert get(app, inner, key=CANARY).status == 200


def test_a_key_id_spelled_as_a_client_or_a_path_bucket_shares_nothing_with_it() -> None:
    names = KeyNames("asgi_apikey")
    client = ("client", "127.0.0.1")
    spelled = ['["client","127.0.0.1"]', "client", "127.0.0.1", "('client', '127.0.0.1')"]
    bases = {names.base(who) for who in [client, *spelled]}
    assert len(bases) == 1 + len(spelled)
    path = ("path", "/v1/chat", "billing")
    # One hash tag (one cluster slot), another key.
    assert names.base(path) != names.base("billing")
    assert names.base(path).startswith(names.base("billing"))
    assert names.base(("path", "/v1/chat", client)) != names.base(("path", "/v1/chat", "billing"))
    local = LocalLimiter(clock=lambda: 0)
    one = RateLimit("1/hour")
    for who in [client, *spelled, path]:
        assert local.decide([Check(who, one)]).allowed, who


def test_a_key_id_spelled_as_a_client_shares_nothing_in_redis(redis: RedisServer) -> None:
    one = RateLimit("1/hour")
    callers: list[Any] = [
        ("client", "127.0.0.1"),
        '["client","127.0.0.1"]',
        ("path", "/v1/chat", '["client","127.0.0.1"]'),
        ("path", "/v1/chat", ("client", "127.0.0.1")),
        ("path", "/v1/chat/x", ("client", "127.0.0.1")),
    ]

    async def scenario() -> list[tuple[bool, bool]]:
        limiter = shared(redis)
        try:
            return [
                (
                    (await limiter.decide([Check(who, one)])).allowed,
                    (await limiter.decide([Check(who, one)])).allowed,
                )
                for who in callers
            ]
        finally:
            await limiter.stop()

    assert asyncio.run(scenario()) == [(True, False)] * len(callers)


clients = st.one_of(
    st.none(),
    st.tuples(st.text(max_size=50), st.integers(-(2**70), 2**70)),
    st.tuples(st.binary(max_size=20), st.integers(0, 65535)),
    st.lists(st.one_of(st.none(), st.text(max_size=10), st.integers()), max_size=3),
    st.text(max_size=20),
    st.integers(),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@settings(max_examples=120, deadline=None)
@given(client=clients, path=st.sampled_from(["/health", "/v1/chat/x", "/maybe"]))
def test_odd_client_values_are_limited_never_a_500(client: object, path: str) -> None:
    app, inner = build(
        [CANARY], limited(anonymous="1/minute", paths={"/v1/chat": "1/minute", "/health": "5/s"})
    )
    with capture_logs():
        statuses = []
        for _ in range(2):
            scope = http_scope(path)
            scope["client"] = client
            statuses.append(call(app, scope, inner).status)
    # /v1/chat is protected: 401 without a key, before any limit.
    assert statuses in ([200, 429], [401, 401]), statuses


def test_huge_limits_on_redis_answer_exact_fields_without_error(redis: RedisServer) -> None:
    limit = RateLimit("1000000000/366d", burst=1, quota="1000000000/month")
    app = APIKeyMiddleware(
        Starlette(routes=[Route("/v1/x", _ok)]),
        keys=[APIKey(CANARY, name="billing", limit=limit)],
        rate_limits=RateLimits(shared=shared(redis), headers=True),
    )
    with TestClient(app) as client, capture_logs():
        admitted = client.get("/v1/x", headers=HEADERS)
        refused = client.get("/v1/x", headers=HEADERS)
    assert admitted.status_code == 200
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"  # 366 days / 10**9 is 32 ms: at least 1
    assert "www-authenticate" not in refused.headers
    fields = rate_limit_fields(refused.headers.raw)
    assert fields is not None
    assert fields.names == ["rate", "quota"]
    assert fields.policy["quota"] == {"q": 1_000_000_000, "w": 30 * 86400}
    assert fields.state["rate"]["r"] == 0
    assert fields.state["quota"]["r"] == 1_000_000_000 - 1  # nothing spent by the refusal


def test_a_flood_of_refusals_keeps_the_limiters_and_counters_small() -> None:
    clock = Clock()
    app, inner = build([APIKey(CANARY, name="billing")], limited(clock, default="1/hour"))
    with capture_logs() as logs:
        assert get(app, inner, key=CANARY).status == 200
        for _ in range(2000):
            assert get(app, inner, key=CANARY).status == 429
    assert len(app.limits.local) == 1
    assert app.auth.counters().rate_limited_by_key_id == {"billing": 2000}
    assert len([log for log in logs if log["event"] == "rate_limited"]) <= 50
    assert CANARY not in repr(logs)
