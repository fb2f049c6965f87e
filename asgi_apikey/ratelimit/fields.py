"""The 429 response and the ``RateLimit`` / ``RateLimit-Policy`` fields.

The fields follow draft-ietf-httpapi-ratelimit-headers-10 (September 2025),
pinned here: both are Structured Field lists of named policies::

    RateLimit-Policy: "rate";q=100;w=60, "quota";q=10000;w=86400
    RateLimit: "rate";r=0;t=12, "quota";r=9950;t=3600

``q`` is a policy's quota and ``w`` its window in seconds: for a rate, its
burst and the seconds the rate takes to refill it (``100/minute`` is
``q=100;w=60``; with ``burst=5``, ``q=5;w=3``), so that ``q / w`` is the rate;
for a quota, its count per calendar window (a month is advertised as 30 days).
``r`` is what is left now and ``t`` the seconds until it is whole again: a
rate's full burst back, a quota's window end. A refusal also carries
``Retry-After``: the whole seconds until the request would be admitted, at
least 1. Names: ``rate`` and ``quota`` for the caller's own limit (a key's,
or a client address's), ``path-rate`` and ``path-quota`` for a path's.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..headers import Headers, SecurityHeaders
from ..responses import Denial
from .local import Part, Verdict

__all__ = ["DRAFT", "fields", "rate_limited"]

#: The version of the RateLimit fields draft these follow.
DRAFT = "draft-ietf-httpapi-ratelimit-headers-10"
_NS = 1_000_000_000


def _ceil_seconds(ns: int) -> int:
    return -(-ns // _NS)


def fields(parts: Sequence[Part], *, refused: bool = False) -> Headers:
    """The ``RateLimit-Policy`` and ``RateLimit`` fields of a request's parts.

    On a refusal nothing was spent: a part that would have admitted still
    holds the unit its decision counted as spent, and is whole again one
    interval sooner.

    >>> from asgi_apikey.ratelimit.gcra import Decision
    >>> part = Part("rate", "rate", 60, Decision(True, 100, 99, 0, 600_000_000))
    >>> [(name.decode(), value.decode()) for name, value in fields([part])]
    [('ratelimit-policy', '"rate";q=100;w=60'), ('ratelimit', '"rate";r=99;t=1')]
    """
    policies, states = [], []
    for name, _, window, decision, interval in parts:
        remaining, reset = decision.remaining, decision.reset_ns
        if refused and decision.allowed:  # not spent after all
            remaining, reset = remaining + 1, max(0, reset - interval)
        policies.append(f'"{name}";q={decision.limit};w={window}')
        states.append(f'"{name}";r={remaining};t={_ceil_seconds(reset)}')
    return (
        (b"ratelimit-policy", ", ".join(policies).encode("ascii")),
        (b"ratelimit", ", ".join(states).encode("ascii")),
    )


def rate_limited(verdict: Verdict, security: SecurityHeaders, whose: str) -> Denial:
    """The 429 of a refused ``verdict``; ``whose`` is ``"API key"`` or ``"client"``.

    No ``WWW-Authenticate``: the credentials are fine. Over a websocket the
    handshake is refused the same way, or closed with 1013 (try again later).
    """
    retry = max(1, _ceil_seconds(verdict.retry_after_ns))
    policy = verdict.refused_by or "rate"
    kind = "quota" if policy.endswith("quota") else "rate limit"
    return Denial(
        429,
        f"Too many requests: this {whose} is over its {kind} ({policy}); retry after {retry} "
        "seconds",
        None,
        security,
        reason="rate_limited",
        description=f"over the {policy} limit; retry after {retry} s",
        extra=((b"retry-after", str(retry).encode("ascii")), *fields(verdict.parts, refused=True)),
        close_code=1013,
    )
