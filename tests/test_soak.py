"""A memory soak: one million mixed requests through the middleware, in-process, under tracemalloc.

The middleware is driven directly with hand-built scopes in front of a minimal raw
ASGI endpoint (no router, no server), so nearly all the time goes to the middleware.
The mix: accepted requests of several keys (headers, ``X-API-Key``, the query
string, https, websockets) and of a verifier's signed tokens; refusals (no
credentials, a different unknown key each time, an expired key or token, a verifier
that raises, a missing scope) from many different client addresses; malformed
credentials of many shapes; more distinct paths than the rule table's decision
cache holds (it is cleared when full), non-canonical and over-long paths, and
mounts (``root_path``).

How the million runs: tracemalloc is started first (one frame per trace), then a
warm-up of 50,000 requests of the same mix fills the caches (the decision cache,
the credential and denial caches, the failure throttle's client table, structlog's
first use); then a snapshot; then the one million requests, all of them under
tracemalloc; then a second snapshot. None of the million runs before tracing
started. Every response is also checked against the status its case must get, so
the soak is a correctness run as well.

Time, on the 2-core machine this was written on: about 15 us a request without
tracing, 60 us under tracemalloc, so the million takes 65 to 85 s (the whole test
70 to 90 s), and 2.5 to 3 minutes under pytest-cov's tracer. Deeper tracebacks
(``tracemalloc.start(10)``) would make it five times slower.

Logging goes to a null sink during the soak: a structlog processor that counts
events by name and drops them (the throttle holds back most refusals anyway).
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import pytest
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.typing import EventDict, WrappedLogger

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware, AuthContext, Rejected
from asgi_apikey.audit import MAX_COUNTED_KEY_IDS, MAX_THROTTLED_CLIENTS, REASONS
from asgi_apikey.paths import _MAX_DECIDED
from tests.asgi import http_scope

WARM_UP = 50_000
REQUESTS = 1_000_000
# What the million may leave behind. Everything the middleware keeps is bounded by
# design: the decision cache (<= 4096 paths of <= 256 characters), the throttle's
# client table (<= 4096 pairs), a few lru caches of denials (<= 64-256 entries each)
# and one counter per key id. Their fill level can differ between the two snapshots
# by some hundreds of kilobytes. A per-request leak cannot hide under 2 MB: keeping
# as little as one pointer per request (a list slot, 8 bytes) costs 8 MB here, and
# any object (a str, a tuple) costs 40 bytes or more, 40 MB.
MAX_GROWTH = 2 * 1024 * 1024
# The failure throttle: at most LIMIT events per reason in each interval of INTERVAL seconds.
LIMIT = 100
INTERVAL = 2.0

SECRETS = {
    name: f"sk-soak-{name}-0123456789abcdef".encode()
    for name in ("admin", "reader", "writer", "plain", "expired")
}
ADMIN = APIKey(SECRETS["admin"].decode(), name="admin", scopes={"admin", "read"})
READER = APIKey(SECRETS["reader"].decode(), name="reader", scopes={"read"})
WRITER = APIKey(SECRETS["writer"].decode(), name="writer", scopes={"write"})
PLAIN = APIKey(SECRETS["plain"].decode())  # no name: its key_id is a fingerprint
EXPIRED = APIKey(
    SECRETS["expired"].decode(), name="expired", expires_at=datetime(2001, 1, 1, tzinfo=UTC)
)

GOOD_SIGNATURE = "good-signature-00000000"
EXPIRED_SIGNATURE = "expired-signature-000000"
SUBJECTS = 200


def verify_signed_token(token: str) -> AuthContext | Rejected | None:
    """A stand-in for a signed-token verifier: ``jwt.<subject>.<signature>``.

    A good signature is a context per subject, an expired one a Rejected; any other
    signature makes it raise, as a buggy verifier would (the token is then invalid).
    """
    if not token.startswith("jwt."):
        return None
    _, subject, signature = token.split(".", 2)
    if signature == EXPIRED_SIGNATURE:
        return Rejected("The token has expired", reason="expired", key_id=f"user-{subject}")
    if signature != GOOD_SIGNATURE:
        raise ValueError("bad signature")
    return AuthContext(authenticated=True, key_id=f"user-{subject}", scopes=frozenset({"read"}))


#: Request n is a websocket handshake when n is a multiple of this: about 1,000 of the million.
WEBSOCKET_EVERY = 997
# Pseudo statuses for websocket outcomes that are not HTTP responses.
WS_ACCEPTED = 101
WS_CLOSED_1008 = 1008

HTTP_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The smallest app: 200 for HTTP, accept-and-close for a websocket."""
    if scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})
    else:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})


class Sink:
    """The send of every request: keeps the outcome of the last one, nothing else."""

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome = 0

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start" or kind == "websocket.http.response.start":
            self.outcome = message["status"]
        elif kind == "websocket.accept":
            self.outcome = WS_ACCEPTED
        elif kind == "websocket.close" and self.outcome != WS_ACCEPTED:
            self.outcome = message["code"]


async def receive_http() -> Message:
    return HTTP_REQUEST


def receive_websocket() -> Receive:
    incoming = [{"type": "websocket.connect"}]

    async def receive() -> Message:
        if incoming:
            return incoming.pop()
        return {"type": "websocket.disconnect", "code": 1000}

    return receive


class Request(NamedTuple):
    app: ASGIApp
    scope: Scope
    expected: int  # the status, or WS_ACCEPTED / WS_CLOSED_1008


def client(n: int) -> tuple[str, int]:
    """One of 2**24 client addresses."""
    return (f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", 1024 + n % 60_000)


def scope_of(
    path: str,
    n: int,
    headers: list[tuple[bytes, bytes]],
    *,
    kind: str = "http",
    query_string: bytes = b"",
    scheme: str = "http",
    root_path: str = "",
    extensions: dict[str, object] | None = None,
) -> Scope:
    """Request ``n``'s scope: tests.asgi's, from one of many clients, GET or POST."""
    scope = http_scope(
        path,
        headers=headers,
        method="GET" if n % 3 else "POST",
        scheme=scheme,
        query_string=query_string,
        root_path=root_path,
        kind=kind,
        extensions=extensions,
    )
    scope["client"] = client(n)
    return scope


def bearer(token: bytes) -> tuple[bytes, bytes]:
    return (b"authorization", b"Bearer " + token)


def build_mix(standard: ASGIApp, extended: ASGIApp) -> list[Callable[[int], Request]]:
    """The cases; request ``n`` is case ``n % len(cases)`` built with ``n``.

    ``standard`` reads Authorization only (the common configuration); ``extended``
    also reads ``X-API-Key`` and ``?access_token=``.
    """
    admin, reader, writer = SECRETS["admin"], SECRETS["reader"], SECRETS["writer"]
    plain, expired = SECRETS["plain"], SECRETS["expired"]

    def unknown(n: int) -> bytes:
        return b"sk-unknown-%020d" % n

    def signed(n: int, signature: str) -> bytes:
        return f"jwt.{n % SUBJECTS}.{signature}".encode()

    cases: list[Callable[[int], Request]] = [
        # Accepted: several keys, many distinct paths (more than the decision cache holds).
        lambda n: Request(standard, scope_of(f"/v1/items/{n % 9973}", n, [bearer(reader)]), 200),
        lambda n: Request(
            standard, scope_of(f"/v1/users/{n % 50}/orders", n, [bearer(plain)]), 200
        ),
        lambda n: Request(standard, scope_of("/admin/users", n, [bearer(admin)]), 200),
        lambda n: Request(
            standard, scope_of(f"/v1/files/{n % 7919}.txt", n, [bearer(writer)]), 200
        ),
        lambda n: Request(standard, scope_of("/v1/items", n, [bearer(admin)], scheme="https"), 200),
        lambda n: Request(standard, scope_of(f"/v1/./items/{n % 100}", n, [bearer(reader)]), 200),
        lambda n: Request(
            standard, scope_of("/v1/" + "long/" * 60 + str(n % 1000), n, [bearer(reader)]), 200
        ),
        lambda n: Request(
            standard,
            scope_of(f"/api/v1/items/{n % 500}", n, [bearer(plain)], root_path="/api"),
            200,
        ),
        lambda n: Request(extended, scope_of("/v1/items", n, [(b"x-api-key", reader)]), 200),
        lambda n: Request(
            extended,
            scope_of("/v1/items", n, [], query_string=b"page=2&access_token=" + writer),
            200,
        ),
        # Tokens a verifier decides: accepted, expired, a verifier that raises.
        lambda n: Request(
            standard, scope_of("/v1/items", n, [bearer(signed(n, GOOD_SIGNATURE))]), 200
        ),
        lambda n: Request(
            standard, scope_of("/v1/items", n, [bearer(signed(n, EXPIRED_SIGNATURE))]), 401
        ),
        lambda n: Request(
            standard, scope_of("/v1/items", n, [bearer(signed(n, f"forged-{n}"))]), 401
        ),
        lambda n: Request(
            standard, scope_of("/admin/jobs", n, [bearer(signed(n, GOOD_SIGNATURE))]), 403
        ),
        # Public and optional paths.
        lambda n: Request(standard, scope_of("/health", n, []), 200),
        lambda n: Request(
            standard, scope_of(f"/public/docs/{n % 3000}", n, [bearer(unknown(n))]), 200
        ),
        lambda n: Request(standard, scope_of("/maybe", n, []), 200),
        lambda n: Request(standard, scope_of("/maybe", n, [bearer(admin)]), 200),
        lambda n: Request(standard, scope_of("/api/health", n, [], root_path="/api"), 200),
        # Refused: no credentials, unknown keys (a new one each time), other schemes.
        lambda n: Request(standard, scope_of(f"/v1/items/{n % 9973}", n, []), 401),
        lambda n: Request(standard, scope_of("/v1/items", n, [bearer(unknown(n))]), 401),
        lambda n: Request(standard, scope_of("/maybe", n, [bearer(unknown(n))]), 401),
        lambda n: Request(
            standard, scope_of("/v1/items", n, [(b"authorization", b"Basic dXNlcjpwYXNz")]), 401
        ),
        lambda n: Request(extended, scope_of("/v1/items", n, [(b"x-api-key", unknown(n))]), 401),
        lambda n: Request(
            extended, scope_of("/v1/items", n, [], query_string=b"access_token=" + unknown(n)), 401
        ),
        lambda n: Request(standard, scope_of("/v1/items", n, [bearer(expired)]), 401),
        lambda n: Request(standard, scope_of(f"/public/../v1/items/{n % 2000}", n, []), 401),
        lambda n: Request(standard, scope_of(f"//v1//items/{n % 2000}", n, []), 401),
        lambda n: Request(standard, scope_of(f"/api/v1/x/{n % 500}", n, [], root_path="/api"), 401),
        # A key without the scope a path requires.
        lambda n: Request(standard, scope_of(f"/admin/users/{n % 100}", n, [bearer(reader)]), 403),
        lambda n: Request(standard, scope_of("/public/../admin", n, [bearer(writer)]), 403),
        # Malformed credentials, of many shapes and values.
        lambda n: Request(standard, scope_of("/v1/items", n, [bearer(reader), bearer(admin)]), 400),
        lambda n: Request(standard, scope_of("/v1/items", n, [bearer(b"")]), 400),
        lambda n: Request(standard, scope_of("/v1/items", n, [bearer(b"sk-%d x" % n)]), 400),
        lambda n: Request(standard, scope_of("/v1/items", n, [bearer(b"sk-%d\x01" % n)]), 400),
        lambda n: Request(
            standard, scope_of("/v1/items", n, [bearer(b"sk-%d" % n + "\u00e9".encode())]), 400
        ),
        lambda n: Request(standard, scope_of("/v1/items", n, [bearer(b"ab=cd%d" % n)]), 400),
        lambda n: Request(
            standard, scope_of("/v1/items", n, [bearer(b"k" * (4097 + n % 50))]), 400
        ),
        lambda n: Request(
            standard, scope_of("/maybe", n, [(b"authorization", b"Bearer\tsk-%d" % n)]), 400
        ),
        lambda n: Request(standard, scope_of("/v1/items", n, [(b"authorization", b"")]), 400),
        lambda n: Request(
            extended, scope_of("/v1/items", n, [bearer(reader), (b"x-api-key", reader)]), 400
        ),
        lambda n: Request(
            extended,
            scope_of("/v1/items", n, [], query_string=b"access_token=a&access_token=b"),
            400,
        ),
        lambda n: Request(extended, scope_of("/v1/items", n, [(b"x-api-key", b"sk %d" % n)]), 400),
    ]
    return cases


def websocket_case(standard: ASGIApp, n: int) -> Request:
    """A few websockets: accepted, refused with the denial extension, refused with 1008."""
    which = n % 3
    if which == 0:
        scope = scope_of("/ws", n, [bearer(SECRETS["reader"])], kind="websocket")
        return Request(standard, scope, WS_ACCEPTED)
    if which == 1:
        extensions: dict[str, object] = {"websocket.http.response": {}}
        scope = scope_of("/ws", n, [], kind="websocket", extensions=extensions)
        return Request(standard, scope, 401)
    scope = scope_of("/ws", n, [bearer(b"sk-unknown-%d" % n)], kind="websocket")
    return Request(standard, scope, WS_CLOSED_1008)


@dataclass
class Tally:
    requests: int = 0
    websockets: int = 0
    wrong: int = 0
    first_wrong: tuple[str, int, int] | None = None


async def drive(
    cases: list[Callable[[int], Request]], standard: ASGIApp, start: int, count: int, tally: Tally
) -> None:
    sink = Sink()
    size = len(cases)
    for n in range(start, start + count):
        if n % WEBSOCKET_EVERY == 0:  # a few websockets
            request = websocket_case(standard, n)
            receive = receive_websocket()
            tally.websockets += 1
        else:
            request = cases[n % size](n)
            receive = receive_http
        sink.outcome = 0
        await request.app(request.scope, receive, sink.send)
        tally.requests += 1
        if sink.outcome != request.expected:
            tally.wrong += 1
            if tally.first_wrong is None:
                tally.first_wrong = (request.scope["path"], request.expected, sink.outcome)
        if n % 20_000 == 0:
            await asyncio.sleep(0)  # let the throttle's flush timer run, as a server would


@pytest.fixture
def null_logging() -> Iterator[Counter[str]]:
    """structlog to a null sink for the test: events are counted by name and dropped."""
    seen: Counter[str] = Counter()

    def count_and_drop(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        seen[str(event.get("event"))] += 1
        raise structlog.DropEvent

    structlog.configure(processors=[count_and_drop], cache_logger_on_first_use=False)
    try:
        yield seen
    finally:
        structlog.reset_defaults()


@pytest.mark.timeout(900)  # minutes under coverage on a 2-core machine
def test_one_million_mixed_requests_leave_memory_bounded(null_logging: Counter[str]) -> None:
    born = time.monotonic()  # before the throttle's first interval starts
    auth = APIKeyAuth(
        [ADMIN, READER, WRITER, PLAIN, EXPIRED],
        verifiers=[verify_signed_token],
        failure_log_limit=LIMIT,
        failure_log_interval=INTERVAL,  # many throttle intervals during the run, each drained
    )
    public, optional, protected = ["/health", "/public"], ["/maybe"], {"/admin": {"admin"}}
    standard = APIKeyMiddleware(
        endpoint, auth=auth, public=public, optional=optional, protected=protected
    )
    extended = APIKeyMiddleware(
        endpoint,
        auth=auth,
        public=public,
        optional=optional,
        protected=protected,
        header_name="X-API-Key",
        allow_query_token=True,
    )
    cases = build_mix(standard, extended)
    warm_up, soak = Tally(), Tally()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]

    async def main() -> tuple[tracemalloc.Snapshot, tracemalloc.Snapshot, float]:
        await drive(cases, standard, 0, WARM_UP, warm_up)
        gc.collect()
        before = tracemalloc.take_snapshot().filter_traces(ignore)
        started = time.perf_counter()
        await drive(cases, standard, WARM_UP, REQUESTS, soak)
        elapsed = time.perf_counter() - started
        gc.collect()
        after = tracemalloc.take_snapshot().filter_traces(ignore)
        return before, after, elapsed

    tracemalloc.start(1)  # one frame per trace: deeper tracebacks make the run 5 times slower
    try:
        before, after, elapsed = asyncio.run(main())
    finally:
        tracemalloc.stop()

    lifetime = time.monotonic() - born
    differences = after.compare_to(before, "lineno")
    growth = sum(stat.size_diff for stat in differences)
    top = "\n".join(str(stat) for stat in differences[:10])
    print(
        f"\n{REQUESTS:,} requests under tracemalloc in {elapsed:.1f} s "
        f"({soak.websockets} websockets); traced memory grew {growth:+,} bytes; "
        f"log events: {dict(null_logging)}\ntop growth sites:\n{top}"
    )

    assert warm_up.wrong == 0, (
        f"warm-up: {warm_up.wrong} wrong answers, first {warm_up.first_wrong}"
    )
    assert soak.wrong == 0, (
        f"{soak.wrong} wrong answers, first (path, expected, got) {soak.first_wrong}"
    )
    assert soak.requests == REQUESTS
    first, last = WARM_UP, WARM_UP + REQUESTS - 1
    assert soak.websockets == last // WEBSOCKET_EVERY - (first - 1) // WEBSOCKET_EVERY
    counters = auth.counters()
    assert counters.requests == WARM_UP + REQUESTS
    users = {f"user-{subject}" for subject in range(SUBJECTS)}
    assert set(counters.by_key_id) == {"admin", "reader", "writer", PLAIN.key_id, *users}
    assert counters.refused["expired"] > 0
    assert counters.refused["insufficient_scope"] > 0
    # The bounded structures are within their bounds.
    assert len(standard.rules._decided) <= _MAX_DECIDED
    assert len(extended.rules._decided) <= _MAX_DECIDED
    assert auth.audit.throttle.clients <= MAX_THROTTLED_CLIENTS
    assert len(counters.by_key_id) <= MAX_COUNTED_KEY_IDS
    # Every refusal was logged or counted as held back, and no more were logged than the
    # throttle allows: the limit per reason in each interval (an interval ends only when due).
    logged = null_logging["authentication_failed"]
    assert logged + counters.suppressed_events == sum(counters.refused.values())
    intervals = int(lifetime / INTERVAL) + 1
    assert logged <= LIMIT * len(REASONS) * intervals
    assert null_logging["authentication_failures_suppressed"] > 0
    assert 0 < null_logging["verifier_failed"] <= LIMIT * intervals
    assert growth < MAX_GROWTH, f"traced memory grew by {growth:,} bytes; top sites:\n{top}"
