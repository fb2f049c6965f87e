"""Observability: structlog audit events, throttled failure logging, counters.

Every :class:`~asgi_apikey.APIKeyAuth` owns one :class:`Audit`; each
middleware built on it reports its decisions there (which refusals are logged
one by one is the throttle's decision, in :mod:`asgi_apikey.throttle`):

- a refusal counts under its reason and, unless the throttle holds it back,
  logs ``authentication_failed``; a throttled flood logs one
  ``authentication_failures_suppressed`` with the count and the clients
  refused most when its interval ends; half of each reason's budget is kept
  for clients' first refusals, so a few noisy clients cannot silence the rest;
- an accepted request counts under its ``key_id`` and, with request logging
  on, logs ``authentication_succeeded``; with it off (the default) the
  accepted path does no logging work at all;
- an anonymous request (public and optional paths, development mode) counts;
- a request over its rate limit counts under ``rate_limited`` and under its
  ``key_id`` in ``rate_limited_by_key_id``, and logs ``rate_limited``
  (key_id, or the client for an anonymous request; the policy; the wait),
  throttled the same way;
- a failing verifier logs ``verifier_failed``, throttled the same way.

Events never carry a token. A token that matched no key is identified by
:func:`token_fingerprint`, a truncated HMAC under a secret drawn at random
when the package is imported and never written anywhere: equal tokens give equal
fingerprints within one process, and nobody can test a guess against a
fingerprint offline. The package logs through ``structlog.get_logger
("asgi_apikey")`` and never configures structlog or logging itself (the
command line does, for its own process).

Every log line of the package goes through :func:`emit`, which nothing a
logging pipeline raises can get past (save Ctrl-C, ``SystemExit`` and
cancellation): logging never changes an answer or stops a task. The fields
of an event are built so that they cannot raise either.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from .context import FrozenMapping
from .responses import Denial
from .throttle import (
    MAX_RETIRED_CLIENTS,
    MAX_THROTTLED_CLIENTS,
    TOP_CLIENTS,
    FailureThrottle,
    HeldBack,
    check_throttle,
)

__all__ = [
    "MAX_COUNTED_KEY_IDS",
    "MAX_RETIRED_CLIENTS",
    "MAX_THROTTLED_CLIENTS",
    "REASONS",
    "TOP_CLIENTS",
    "Audit",
    "Counters",
    "FailureThrottle",
    "HeldBack",
    "emit",
    "loggable",
    "token_fingerprint",
]

_log = structlog.get_logger("asgi_apikey")

#: Why a request was refused: the ``reason`` of ``authentication_failed``.
REASONS = (
    "missing",
    "invalid",
    "malformed",
    "insufficient_scope",
    "expired",
    "not_yet_valid",
    "unavailable",
    "rate_limited",
)
#: Key ids counted one by one; authenticated requests of further ids count together.
MAX_COUNTED_KEY_IDS = 10_000
# The throttle's key for verifier failures, next to the refusal reasons.
_VERIFIER_FAILED = "verifier_failed"
#: Hex characters of a token fingerprint (64 bits).
FINGERPRINT_LENGTH = 16
#: Longest path written to an event; longer ones are cut and marked.
MAX_LOGGED_PATH = 512
_MAX_LOGGED_HOST = 64

# Drawn once per process, never logged or exposed: fingerprints correlate
# within one process and cannot be checked against guesses anywhere else.
_FINGERPRINT_SECRET = secrets.token_bytes(32)
# ASCII controls and DEL, escaped after everything else is ASCII: a path decoded
# from %0a must not start a fake line in a plain-text log.
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def token_fingerprint(token: bytes) -> str:
    """A short, one-way, per-process identifier of a presented token.

    >>> token_fingerprint(b"sk-guess") == token_fingerprint(b"sk-guess")
    True
    >>> len(token_fingerprint(b"sk-guess"))
    16
    """
    return hmac.digest(_FINGERPRINT_SECRET, token, "sha256").hex()[:FINGERPRINT_LENGTH]


def loggable(text: str, limit: int = MAX_LOGGED_PATH) -> str:
    r"""``text`` as printable ASCII for one log line, cut after ``limit`` characters.

    Backslashes are doubled, controls become ``\xNN`` and anything beyond
    ASCII (lone surrogates, bidi controls) a Python escape, so any stream can
    print it, nothing can fake a line or reorder it on a terminal, and an
    escape is never mistaken for the text (though the cut may end inside one).

    >>> loggable("/v1/chat\n200 OK")
    '/v1/chat\\x0a200 OK'
    >>> loggable("/caf\u00e9/\u202egpj.exe")
    '/caf\\xe9/\\u202egpj.exe'
    """
    # Escaping first, then cutting, keeps the promise on the written length;
    # the first cut only bounds the work (no character grows past 10).
    text = text[: limit + 1].replace("\\", "\\\\")
    text = _CONTROL.sub(_escape, text.encode("ascii", "backslashreplace").decode("ascii"))
    return text if len(text) <= limit else text[:limit] + "...(cut)"


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


@dataclass(frozen=True, slots=True)
class Counters:
    """What an authenticator decided since it was built: read with ``APIKeyAuth.counters()``.

    ``requests`` is every HTTP request and websocket handshake the middleware
    decided: ``authenticated + anonymous + sum(refused.values())``.
    ``refused`` has every reason of :data:`REASONS`, zeros included.
    ``by_key_id`` counts the first :data:`MAX_COUNTED_KEY_IDS` key ids seen;
    ``other_key_ids`` counts the authenticated requests of any further ids.
    ``suppressed_events`` counts refusals the throttle did not log one by one.
    ``rate_limited_by_key_id`` counts the ``rate_limited`` refusals of each key
    id (the first :data:`MAX_COUNTED_KEY_IDS`); anonymous ones are only in
    ``refused["rate_limited"]``.
    """

    requests: int
    authenticated: int
    anonymous: int
    refused: Mapping[str, int]
    by_key_id: Mapping[str, int]
    other_key_ids: int
    suppressed_events: int
    rate_limited_by_key_id: Mapping[str, int] = field(default_factory=lambda: FrozenMapping({}))

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data (what ``status()["counters"]`` holds)."""
        return {
            "requests": self.requests,
            "authenticated": self.authenticated,
            "anonymous": self.anonymous,
            "refused": dict(self.refused),
            "by_key_id": dict(self.by_key_id),
            "other_key_ids": self.other_key_ids,
            "suppressed_events": self.suppressed_events,
            "rate_limited_by_key_id": dict(self.rate_limited_by_key_id),
        }


class Audit:
    """The observability state of one authenticator: counters, throttle, events.

    The middleware increments ``anonymous`` and ``by_key_id`` inline (the
    accepted path calls nothing here) and calls :meth:`refused` for each
    refusal. Counters are exact in one event loop; with several threads an
    increment can be lost, never invented.
    """

    __slots__ = (
        "_flush_pending",
        "anonymous",
        "by_key_id",
        "log_successes",
        "other_key_ids",
        "rate_limited_by_key_id",
        "refused_by_reason",
        "suppressed_events",
        "throttle",
        "track_users",
    )

    def __init__(
        self,
        *,
        log_successes: bool = False,
        track_users: bool = False,
        failure_log_limit: int = 100,
        failure_log_interval: float = 60.0,
        failure_log_per_client: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        limit, interval, per_client = check_throttle(
            failure_log_limit, failure_log_interval, failure_log_per_client
        )
        self.log_successes = log_successes
        self.track_users = track_users
        self.throttle = FailureThrottle(limit, interval, per_client=per_client, clock=clock)
        self.anonymous = 0
        self.by_key_id: dict[str, int] = {}
        self.other_key_ids = 0
        self.rate_limited_by_key_id: dict[str, int] = {}
        self.refused_by_reason = dict.fromkeys(REASONS, 0)
        self.suppressed_events = 0
        # The loop whose timer will report what the throttle holds, if any.
        self._flush_pending: asyncio.AbstractEventLoop | None = None

    # -- called by the middleware -------------------------------------------------------

    def first_use(self, key_id: str) -> None:
        """Count an authenticated request of a key id not counted before."""
        if len(self.by_key_id) < MAX_COUNTED_KEY_IDS:
            self.by_key_id[key_id] = self.by_key_id.get(key_id, 0) + 1
        else:
            self.other_key_ids += 1

    def succeeded(self, scope: Mapping[str, Any], key_id: str, realm: str) -> None:
        """Log ``authentication_succeeded`` (only called with request logging on)."""
        fields = {"key_id": loggable(key_id), **_request(scope, _client(scope)), "realm": realm}
        emit("info", "authentication_succeeded", fields)

    def refused(
        self,
        scope: Mapping[str, Any],
        denial: Denial,
        realm: str,
        *,
        key_id: str | None = None,
        token: bytes | None = None,
    ) -> None:
        """Count a refusal and log ``authentication_failed`` unless the throttle holds it back.

        ``key_id`` names a known key that was refused (for scope, out of its
        validity window); otherwise a presented ``token`` is named by its
        fingerprint.
        """
        reason = denial.reason
        self.refused_by_reason[reason] += 1
        if key_id is not None and reason == "rate_limited":
            limited = self.rate_limited_by_key_id
            if key_id in limited or len(limited) < MAX_COUNTED_KEY_IDS:
                limited[key_id] = limited.get(key_id, 0) + 1
        # What every server gives, inline: (host, port) with a short str host is the
        # host as _client() returns it; anything else goes through _client().
        client = scope.get("client")
        if type(client) is tuple and client:
            host = client[0]
            if type(host) is not str or len(host) > _MAX_LOGGED_HOST:
                host = _client(scope)
        else:
            host = _client(scope)
        throttle = self.throttle
        admitted = throttle.admit_in_interval(reason, host)
        if admitted is None:  # the interval has ended: report what it held back first
            self.flush()
            admitted = throttle.admit(reason, host)
        if admitted:
            self._log_failure(scope, denial, realm, key_id, token, host)
            return
        self.suppressed_events += 1
        pending = self._flush_pending
        if pending is None or pending.is_closed():  # else that loop's timer will report it
            self._schedule_flush()

    def _log_failure(
        self,
        scope: Mapping[str, Any],
        denial: Denial,
        realm: str,
        key_id: str | None,
        token: bytes | None,
        host: str | None,
    ) -> None:
        reason = denial.reason
        fields: dict[str, Any] = {"reason": reason}
        if key_id is not None:
            fields["key_id"] = loggable(key_id)
        elif token is not None:
            fields["token_fingerprint"] = token_fingerprint(token)
        if denial.required_scopes is not None:
            fields["required_scopes"] = sorted(denial.required_scopes)
        if denial.description is not None:
            fields["detail"] = denial.description
        fields.update(_request(scope, host))
        if reason == "rate_limited":  # the credentials were fine: no realm, its own event
            emit("warning", "rate_limited", fields)
            return
        fields["realm"] = realm
        emit("info" if reason == "missing" else "warning", "authentication_failed", fields)

    def verifier_failed(self, verifier: str, problem: str) -> None:
        """Log ``verifier_failed``, at most ``per_client`` times per verifier and problem.

        A broken verifier fails on every token it sees; a flood of tokens must
        not become a flood of errors. What is held back is reported in one
        ``verifier_failures_suppressed`` when the interval ends.
        """
        throttle = self.throttle
        if throttle.due():
            self.flush()
        if throttle.admit(_VERIFIER_FAILED, f"{verifier}: {problem}"):
            emit("error", _VERIFIER_FAILED, {"verifier": verifier, "problem": problem})
        else:
            self._schedule_flush()

    # -- reading and flushing ---------------------------------------------------------------

    def flush(self, *, force: bool = False) -> None:
        """Report what an ended interval (or, with ``force``, this one) held back.

        One ``authentication_failures_suppressed`` per reason, naming the
        clients refused most (``top_clients``: host and refusals, at most
        :data:`TOP_CLIENTS`), and one ``verifier_failures_suppressed``; then a
        new interval starts.
        """
        throttle = self.throttle
        for reason, held in throttle.drain(force=force).items():
            fields: dict[str, Any] = {
                "count": held.count,
                "limit": throttle.limit,
                "interval": throttle.interval,
            }
            if reason == _VERIFIER_FAILED:
                emit("warning", "verifier_failures_suppressed", fields)
                continue
            top = [
                {"client": loggable(host, _MAX_LOGGED_HOST), "refusals": refusals}
                for host, refusals in held.top_clients
            ]
            emit(
                "warning",
                "authentication_failures_suppressed",
                {"reason": reason, **fields, "top_clients": top},
            )

    def _schedule_flush(self) -> None:
        # Report a flood's count when its interval ends, even if no refusal follows.
        # Only on asyncio and the real clock; otherwise the next refusal reports it.
        pending = self._flush_pending
        if pending is not None and not pending.is_closed():
            return  # that loop's timer will report it (a closed loop's never fires)
        if not self.throttle.realtime:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._flush_pending = loop
        loop.call_later(self.throttle.remaining, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        # Event loop clocks may fire a timer a little early (a coarse clock, a
        # cached one): wait out the rest instead of draining nothing.
        throttle = self.throttle
        if not throttle.due():
            if throttle.holding:
                loop.call_later(throttle.remaining, self._on_timer, loop)
            else:
                self._flush_pending = None  # a refusal already reported it
            return
        # Only the timer clears this: a refusal's flush leaves its timer in place,
        # so a sustained flood keeps one timer, not one more per interval.
        self._flush_pending = None
        self.flush()

    def counters(self) -> Counters:
        """An immutable copy of the counters."""
        by_key_id = dict(self.by_key_id)
        refused = dict(self.refused_by_reason)
        authenticated = sum(by_key_id.values()) + self.other_key_ids
        return Counters(
            requests=authenticated + self.anonymous + sum(refused.values()),
            authenticated=authenticated,
            anonymous=self.anonymous,
            refused=FrozenMapping(refused),
            by_key_id=FrozenMapping(by_key_id),
            other_key_ids=self.other_key_ids,
            suppressed_events=self.suppressed_events,
            rate_limited_by_key_id=FrozenMapping(dict(self.rate_limited_by_key_id)),
        )


def emit(level: str, event: str, fields: dict[str, Any]) -> None:
    """Log ``event`` at ``level`` from the ``asgi_apikey`` logger, come what may.

    A logging failure (a closed stream, a logger factory or processor that
    raises, a logger whose attribute lookup raises, a broken handler) must
    never turn a request into a 500 or end a task; the counters still count
    what happened. Only ``Exception`` is caught: Ctrl-C, ``SystemExit`` and a
    task's cancellation go on.
    """
    with contextlib.suppress(Exception):
        getattr(_log, level)(event, **fields)


def _request(scope: Mapping[str, Any], host: str | None) -> dict[str, Any]:
    """The request fields of an event: client, method, path (never the query string)."""
    return {
        "client": None if host is None else loggable(host, _MAX_LOGGED_HOST),
        "method": loggable(_text(scope.get("method", "WEBSOCKET")), 32),
        "path": loggable(_text(scope.get("path", ""))),
    }


def _text(value: object) -> str:
    """``str(value)``, or its type's name when even that raises: logging never fails a request."""
    if type(value) is str:
        return value
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _client(scope: Mapping[str, Any]) -> str | None:
    # The server's (host, port). Behind a proxy-headers middleware the host comes
    # from X-Forwarded-For: cut here (the throttle keeps it), escaped when logged.
    client = scope.get("client")
    if not isinstance(client, (tuple, list)) or not client:
        return None
    host = _text(client[0])
    return host if len(host) <= _MAX_LOGGED_HOST else host[: _MAX_LOGGED_HOST + 1]
