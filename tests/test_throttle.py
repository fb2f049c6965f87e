"""The failure throttle's fairness and its report (review 15, finding 2).

A few noisy clients must not spend a reason's whole log budget: half of it is
kept for clients' first refusals, so the next client's refusal is still logged.
When the interval ends, ``authentication_failures_suppressed`` names the
clients refused most, with their counts; memory stays bounded however many
clients there are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from starlette.types import Message, Receive, Scope, Send
from structlog.testing import capture_logs
from structlog.typing import EventDict

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware
from asgi_apikey.audit import (
    MAX_RETIRED_CLIENTS,
    MAX_THROTTLED_CLIENTS,
    TOP_CLIENTS,
    FailureThrottle,
    HeldBack,
)
from tests.asgi import CANARY, http_scope

UNKNOWN = "sk-unknown-but-well-formed-key-0001"
FAILED = "authentication_failed"
SUPPRESSED = "authentication_failures_suppressed"


class Ticker:
    """A clock that stands still unless moved: one interval for the whole test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("every request of these tests is refused")


def guarded(**options: object) -> APIKeyMiddleware:
    auth = APIKeyAuth([APIKey(CANARY, name="svc")], **options)  # type: ignore[arg-type]
    throttle = auth.audit.throttle
    auth.audit.throttle = FailureThrottle(
        throttle.limit, throttle.interval, per_client=throttle.per_client, clock=Ticker()
    )
    return APIKeyMiddleware(endpoint, auth=auth)


def refuse(app: APIKeyMiddleware, hosts: Iterable[str]) -> None:
    """One request with an unknown key from each of ``hosts``, in order, each refused."""

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        for host in hosts:
            scope = http_scope("/v1/x", headers=[(b"authorization", f"Bearer {UNKNOWN}".encode())])
            scope["client"] = (host, 40000)
            sent.clear()
            await app(scope, receive, send)
            assert sent[0]["status"] == 401

    asyncio.run(main())


def logged_clients(logs: Iterable[EventDict]) -> list[str]:
    return [entry["client"] for entry in logs if entry["event"] == FAILED]


def noisy(count: int, rounds: int) -> list[str]:
    """``count`` clients taking turns, ``rounds`` refusals each."""
    return [f"10.6.{n >> 8}.{n & 255}" for _ in range(rounds) for n in range(count)]


# -- a few noisy clients leave room for everyone else ---------------------------------------


def test_four_noisy_clients_do_not_silence_the_next_clients_refusal() -> None:
    app = guarded()  # the defaults: 100 events per reason, 25 per client
    with capture_logs() as logs:
        refuse(app, noisy(4, 1000))
        refuse(app, ["192.0.2.7", "192.0.2.8"])
    clients = logged_clients(logs)
    assert clients[-2:] == ["192.0.2.7", "192.0.2.8"]
    # The noisy four had their first refusals and half the budget for the rest.
    assert len(clients) == 4 + 50 + 2
    assert app.auth.counters().suppressed_events == 4000 - 54


def test_a_hundred_noisy_clients_do_not_silence_the_next_clients_refusal() -> None:
    # Every client's first refusal is logged while the budget lasts, so it must
    # hold more than a hundred: here 1000 events, 250 per client.
    app = guarded(failure_log_limit=1000)
    with capture_logs() as logs:
        refuse(app, noisy(100, 30))
        refuse(app, ["192.0.2.7"])
    clients = logged_clients(logs)
    assert clients[-1] == "192.0.2.7"
    assert len(clients) == 100 + 500 + 1


def test_the_report_names_the_noisy_clients_with_their_counts() -> None:
    app = guarded()
    with capture_logs() as logs:
        refuse(app, noisy(4, 1000) + noisy(6, 1)[4:] * 3 + ["192.0.2.7"])
        app.auth.audit.flush(force=True)
    [report] = [entry for entry in logs if entry["event"] == SUPPRESSED]
    assert report["reason"] == "invalid"
    assert report["count"] == 4000 + 6 + 1 - len(logged_clients(logs))
    assert report["top_clients"] == [
        {"client": "10.6.0.0", "refusals": 1000},
        {"client": "10.6.0.1", "refusals": 1000},
        {"client": "10.6.0.2", "refusals": 1000},
        {"client": "10.6.0.3", "refusals": 1000},
        {"client": "10.6.0.4", "refusals": 3},
    ]
    assert UNKNOWN not in repr(logs)


def test_repeats_share_half_the_budget_and_first_refusals_may_use_all_of_it() -> None:
    throttle = FailureThrottle(limit=10, interval=60.0, per_client=10, clock=Ticker())
    assert [throttle.admit("invalid", "a") for _ in range(8)] == [True] * 6 + [False] * 2
    assert [throttle.admit("invalid", f"new-{n}") for n in range(6)] == [True] * 4 + [False] * 2
    assert throttle.repeat_limit == 5
    drained = throttle.drain(force=True)
    assert drained == {
        "invalid": HeldBack(4, (("a", 8), ("new-0", 1), ("new-1", 1), ("new-2", 1), ("new-3", 1)))
    }


def test_a_client_with_no_address_has_the_whole_per_reason_limit() -> None:
    # Behind a unix socket there is nobody to tell apart, and nobody to name.
    throttle = FailureThrottle(limit=4, interval=60.0, per_client=4, clock=Ticker())
    assert [throttle.admit("missing", None) for _ in range(6)] == [True] * 4 + [False] * 2
    assert throttle.drain(force=True) == {"missing": HeldBack(2, ())}


# -- bounded, whatever the flood -----------------------------------------------------------


def test_a_busy_client_is_named_even_among_more_clients_than_the_table_holds() -> None:
    throttle = FailureThrottle(limit=10, interval=60.0, per_client=1, clock=Ticker())
    busy = "198.51.100.9"
    for n in range(5 * MAX_THROTTLED_CLIENTS):
        throttle.admit("invalid", f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
        if n % 7 == 0:
            throttle.admit("invalid", busy)
        assert throttle.clients <= MAX_THROTTLED_CLIENTS
        assert len(throttle._retired) <= MAX_RETIRED_CLIENTS
    held = throttle.drain(force=True)["invalid"]
    assert held.top_clients[0] == (busy, len(range(0, 5 * MAX_THROTTLED_CLIENTS, 7)))
    assert len(held.top_clients) == TOP_CLIENTS
    assert throttle.clients == 0


def test_a_forgotten_busy_client_keeps_its_spent_budget() -> None:
    throttle = FailureThrottle(
        limit=100, interval=60.0, per_client=2, max_clients=4, clock=Ticker()
    )
    assert [throttle.admit("invalid", "busy") for _ in range(3)] == [True, True, False]
    for n in range(8):  # forgets "busy" with the oldest quarter
        throttle.admit("invalid", f"other-{n}")
    assert throttle.admit("invalid", "busy") is False  # its three refusals were kept
    assert throttle.drain(force=True)["invalid"].top_clients[0] == ("busy", 4)
