"""The refusal path's shortcuts decide, count and log exactly as the long way does.

A refusal is what a credential-stuffing flood is made of, so its cost is cut
with shortcuts (issue 19, item 2): the audit reads the usual ``(host, port)``
client inline instead of through ``audit._client``, the throttle holds back a
client over its own budget without looking at the reason budgets, and a
denial's messages are copied from templates. Each is held here to the long
way it replaces: the same decisions, counters, events and flood summaries.
"""

from __future__ import annotations

import heapq
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from asgi_apikey.audit import Audit, FailureThrottle, HeldBack
from asgi_apikey.credentials import CredentialReader, Malformed, parse_token
from asgi_apikey.responses import Denials, SecurityHeaders
from tests.asgi import CANARY, http_scope

REALM = "api"
DENIALS = Denials(REALM, SecurityHeaders(True))
REASONS = ("missing", "invalid", "malformed")


class Ticker:
    """A clock that stands still unless moved."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the throttle against a plain model of its rules ------------------------------------------


@dataclass
class Model:
    """The throttle's documented rules, written the long way (no table bound)."""

    limit: int
    per_client: int
    logged: dict[str, int] = field(default_factory=dict)
    repeats: dict[str, int] = field(default_factory=dict)
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)

    def admit(self, reason: str, client: str | None) -> bool:
        logged = self.logged.get(reason, 0)
        seen = 0
        if client is not None:
            seen = self.pairs.get((reason, client), 0)
            self.pairs[(reason, client)] = seen + 1
        repeat_limit = self.limit - self.limit // 2
        if (
            logged >= self.limit
            or seen >= self.per_client
            or (seen and self.repeats.get(reason, 0) >= repeat_limit)
        ):
            self.held[reason] = self.held.get(reason, 0) + 1
            return False
        self.logged[reason] = logged + 1
        if seen:
            self.repeats[reason] = self.repeats.get(reason, 0) + 1
        return True

    def drain(self) -> dict[str, HeldBack]:
        report = {}
        for reason, count in self.held.items():
            counts = {c: n for (r, c), n in self.pairs.items() if r == reason}
            top = heapq.nlargest(5, counts.items(), key=lambda item: item[1])
            report[reason] = HeldBack(count, tuple(top))
        self.logged, self.repeats, self.pairs, self.held = {}, {}, {}, {}
        return report


_STEPS = st.lists(
    st.one_of(
        # Runs of one client (a flood's shape) as well as clients in turn.
        st.tuples(
            st.sampled_from(REASONS),
            st.sampled_from(["a", "b", "c", "d", None]),
            st.booleans(),
            st.integers(1, 6),
        ),
        st.just(("end of interval", None, False, 1)),
        st.just(("interval ends unseen", None, False, 1)),
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(limit=st.integers(0, 8), per_client=st.integers(1, 5), steps=_STEPS)
def test_the_throttle_decides_and_reports_as_its_rules_say(
    limit: int, per_client: int, steps: list[tuple[str, str | None, bool, int]]
) -> None:
    # admit() and admit_in_interval() (whose runs of one client over its budget are
    # counted apart and settled later), mixed: the same decisions, counts and reports.
    clock = Ticker()
    throttle = FailureThrottle(limit, 60.0, per_client=per_client, clock=clock)
    model = Model(limit, per_client)
    for reason, client, in_interval, times in steps:
        if reason == "end of interval":
            clock.now += 60.0
            assert throttle.drain() == model.drain()
        elif reason == "interval ends unseen":
            clock.now += 60.0  # the next admit_in_interval() says so; drain() comes then
        else:
            for _ in range(times):
                if in_interval:
                    admitted = throttle.admit_in_interval(reason, client)
                    if admitted is None:  # what the audit does: report, then decide
                        assert throttle.drain() == model.drain()
                        admitted = throttle.admit_in_interval(reason, client)
                else:
                    admitted = throttle.admit(reason, client)
                assert admitted is model.admit(reason, client)
                assert throttle.holding is bool(model.held)
                assert throttle.clients == len(model.pairs)
    assert throttle.drain(force=True) == model.drain()


# -- the audit: the inline client and the long way log and count the same ---------------------


def _refuse_all(
    audit: Audit, steps: Sequence[tuple[str, object]]
) -> list[MutableMapping[str, Any]]:
    denials = {"missing": DENIALS.missing, "invalid": DENIALS.invalid}
    denials["malformed"] = DENIALS.malformed("The bearer token contains a space")
    with capture_logs() as logs:
        for reason, client in steps:
            scope = http_scope("/v1/x")
            if client is None:
                del scope["client"]
            else:
                scope["client"] = client
            token = CANARY.encode() if reason == "invalid" else None
            audit.refused(scope, denials[reason], REALM, token=token)
        audit.flush(force=True)
    return logs


# Hosts over 64 characters are cut where the throttle keeps them: these two count as one.
_LONG_HOST = "h" * 70
_LONG_HOST_TOO = "h" * 69 + "x"
_HOSTS = st.sampled_from(["10.0.0.1", "10.0.0.2", "::1", _LONG_HOST, _LONG_HOST_TOO, ""])


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.tuples(st.sampled_from(REASONS), st.one_of(st.none(), _HOSTS)), max_size=80),
    limit=st.integers(0, 6),
)
def test_the_inline_client_logs_and_counts_as_the_long_way(
    steps: list[tuple[str, str | None]], limit: int
) -> None:
    # Uvicorn's (host, port) tuple takes the inline read; the same host as a list
    # (what some servers give) takes audit._client(): everything must agree.
    fast, slow = (Audit(failure_log_limit=limit, clock=Ticker()) for _ in range(2))
    as_tuples = [(reason, None if host is None else (host, 40000)) for reason, host in steps]
    as_lists = [(reason, None if host is None else [host, 40000]) for reason, host in steps]
    fast_logs, slow_logs = _refuse_all(fast, as_tuples), _refuse_all(slow, as_lists)
    assert fast_logs == slow_logs
    assert fast.counters() == slow.counters()
    assert fast.counters().suppressed_events == sum(
        entry["count"] for entry in fast_logs if entry["event"].endswith("_suppressed")
    )
    assert CANARY not in repr(fast_logs)
    for entry in fast_logs:
        assert entry.get("client") not in (_LONG_HOST, _LONG_HOST_TOO)  # cut when logged
        for client in entry.get("top_clients", ()):
            assert len(client["client"]) <= 64 + len("...(cut)")


def test_a_host_that_is_not_a_string_takes_the_long_way() -> None:
    audit = Audit(clock=Ticker())
    with capture_logs() as logs:
        scope = http_scope("/v1/x")
        scope["client"] = (b"10.0.0.9", 1)  # a server's bug: bytes, shown as text
        audit.refused(scope, DENIALS.missing, REALM)
    assert logs[0]["client"] == "b'10.0.0.9'"


# -- denial messages: fresh every time ----------------------------------------------------------


def test_denial_messages_are_fresh_copies_of_the_prepared_ones() -> None:
    denial = DENIALS.invalid
    for scheme, hsts in (("http", False), ("https", True)):
        start, body = denial.http_messages(scheme)
        assert start["status"] == 401
        assert start["headers"] == list(denial.headers(scheme))
        names = {name for name, _ in start["headers"]}
        assert (b"strict-transport-security" in names) is hsts
        assert body == {"type": "http.response.body", "body": b'{"detail": "Invalid API key"}'}
        # An outer middleware edits what it is sent: the next refusal is untouched.
        start["headers"].append((b"x-edited", b"1"))
        start["status"] = 500
        body["body"] = b""
        again, again_body = denial.http_messages(scheme)
        assert again["status"] == 401
        assert again["headers"] == list(denial.headers(scheme))
        assert again_body["body"] == b'{"detail": "Invalid API key"}'
        assert again is not start
        assert again["headers"] is not start["headers"]


# -- a malformed bearer token: prepared descriptions, chosen by byte class ----------------------

# Every byte class the grammar tells apart, often: b64token characters, "=", spaces,
# other visible characters, controls, DEL and non-ASCII.
_TOKEN_BYTES = st.lists(
    st.one_of(
        st.sampled_from(b"aZ09-._~+/"),
        st.sampled_from(b"= "),
        st.sampled_from(b'!"#,:;@\\'),
        st.sampled_from(b"\x00\t\n\r\x0b\x0c\x7f\x80\xa0\xff"),
        st.integers(0, 255),
    ),
    max_size=40,
).map(bytes)


@settings(max_examples=2000, deadline=None)
@given(token=_TOKEN_BYTES, max_length=st.integers(16, 40))
def test_a_bearer_tokens_problem_is_the_one_parse_token_names(
    token: bytes, max_length: int
) -> None:
    # The reader decides "Bearer <token>" from each byte's class with prepared
    # answers; parse_token is the long way. Same token, same description.
    reader = CredentialReader(max_token_length=max_length)
    expected = parse_token(token.strip(b" "), "bearer token", max_length)
    read = reader.read([(b"host", b"x"), (b"authorization", b"Bearer " + token)], b"")
    assert read == (expected if isinstance(expected, Malformed) else (expected, False))
