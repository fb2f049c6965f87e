"""One decision over the limits of a request, all or nothing, in this process.

A request is checked against one to four *parts*: the caller's rate and
quota (a key's, or a client address's), and a path rule's rate and quota for
that caller. :class:`LocalLimiter` decides them together: each part is looked
at first, and only when every part admits is any of them spent, so a request
refused by one part costs nothing of the others. A :class:`Verdict` carries
what the response says: admitted or not, when to retry, and each part's
state for the ``RateLimit`` fields (:mod:`~asgi_apikey.ratelimit.fields`).

A shared limiter (:mod:`asgi_apikey.redis_store.limits`) decides the same
checks in Redis and answers the same :class:`Verdict`.

>>> from asgi_apikey.ratelimit.limits import RateLimit
>>> limiter = LocalLimiter(clock=lambda: 0)
>>> checks = (Check("billing", RateLimit("1/minute")),)
>>> limiter.decide(checks).allowed
True
>>> limiter.decide(checks).retry_after_ns
60000000000
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from typing import NamedTuple

from .gcra import GCRA, Decision, Rate
from .limits import RateLimit
from .quota import Quota, QuotaCounter

__all__ = ["Check", "LocalLimiter", "Part", "Verdict", "combine"]


class Check(NamedTuple):
    """One limit to check for a request: whose bucket, which limit, under which name.

    ``who`` is a ``key_id`` (a ``str``) for a key, ``("client", host)`` for an
    anonymous client, and ``("path", rule path, who)`` for a path rule's
    limit of that caller. ``prefix`` starts the policy names the ``RateLimit``
    fields give its parts: ``"rate"`` and ``"quota"`` for the caller's own
    limit, ``"path-rate"`` and ``"path-quota"`` for a path rule's.
    """

    who: Hashable
    limit: RateLimit
    prefix: str = ""


class Part(NamedTuple):
    """One part's decision: the policy name, ``"rate"`` or ``"quota"``, the window, the numbers.

    ``interval_ns`` (a rate's period over its count) is what one request adds to
    the time until the bucket is full: a refusal reports a part that would have
    admitted without it, since nothing was spent.
    """

    name: str
    kind: str
    window_s: int
    decision: Decision
    interval_ns: int = 0


class Verdict(NamedTuple):
    """What a request's limits decided: admitted, when to retry, and every part's state."""

    allowed: bool
    retry_after_ns: int
    parts: tuple[Part, ...]
    refused_by: str | None = None


def combine(parts: Sequence[Part]) -> Verdict:
    """The verdict of ``parts`` decided together: refused if any part refuses.

    ``retry_after_ns`` is the longest wait among the refusing parts (all of
    them must admit again); ``refused_by`` names the first refusing part.
    """
    retry, refused_by = 0, None
    for part in parts:
        decision = part.decision
        if not decision.allowed:
            if refused_by is None:
                refused_by = part.name
            retry = max(retry, decision.retry_after_ns)
    return Verdict(refused_by is None, retry, tuple(parts), refused_by)


class LocalLimiter:
    """The limits of this process: a GCRA per rate and a calendar counter per quota.

    ``clock`` returns integer nanoseconds. By default rates run on
    :func:`time.monotonic_ns` (immune to wall-clock steps) and quotas on
    :func:`time.time_ns` (calendar windows); a test clock drives both.
    Memory is O(1) per active caller: idle buckets and ended windows are
    forgotten by amortised sweeps.
    """

    __slots__ = ("_wall_clock", "quotas", "rate_clock", "rates")

    def __init__(self, clock: Callable[[], int] | None = None) -> None:
        self.rate_clock = clock or time.monotonic_ns
        self._wall_clock = clock or time.time_ns
        self.rates = GCRA(self.rate_clock)
        self.quotas = QuotaCounter(self._wall_clock)

    def __len__(self) -> int:
        """How many buckets and quota counters hold state."""
        return len(self.rates) + len(self.quotas)

    def admit(self, checks: Sequence[Check]) -> bool:
        """Whether every check admits a request now; if so, all of them are spent.

        ``decide(checks).allowed`` without building the verdict: the request
        path asks :meth:`decide` only to say why a request was refused.
        """
        rates, quotas = self.rates, self.quotas
        mono = wall = None
        spent_rates: list[tuple[Hashable, Rate, int]] = []
        spent_quotas: list[tuple[Hashable, Quota, tuple[int, int]]] = []
        for who, limit, _ in checks:
            rate, quota = limit.rate, limit.quota
            if rate is not None:
                if mono is None:
                    mono = self.rate_clock()
                tat = rates.reserve(who, rate, mono)
                if tat is None:
                    return False
                spent_rates.append((who, rate, tat))
            if quota is not None:
                if wall is None:
                    wall = self._wall_clock()
                held = quotas.reserve(who, quota, wall)
                if held is None:
                    return False
                spent_quotas.append((who, quota, held))
        for who, rate, tat in spent_rates:
            rates.commit(who, rate, tat, mono)  # type: ignore[arg-type]  # set with them
        for who, quota, (end, used) in spent_quotas:
            quotas.commit(who, quota, end, used, wall)  # type: ignore[arg-type]
        return True

    def decide(self, checks: Sequence[Check]) -> Verdict:
        """Admit or refuse a request under every check at once: all or nothing."""
        rates, quotas = self.rates, self.quotas
        if len(checks) == 1:  # the usual case: one key, one rate, nothing else
            who, limit, prefix = checks[0]
            name = prefix + "rate"
            rate = limit.rate
            if rate is not None and limit.quota is None:
                now = self.rate_clock()
                decision, tat = rates.peek(who, rate, now)
                if decision.allowed:
                    rates.commit(who, rate, tat, now)
                    return Verdict(True, 0, (Part(name, "rate", rate.window_s, decision),))
                part = Part(name, "rate", rate.window_s, decision, rate.period_ns // rate.count)
                return Verdict(False, decision.retry_after_ns, (part,), name)
        mono = self.rate_clock()
        wall = self._wall_clock()
        parts: list[Part] = []
        commits: list[tuple[bool, Hashable, object, int, int]] = []
        for who, limit, prefix in checks:
            rate, quota = limit.rate, limit.quota
            if rate is not None:
                decision, tat = rates.peek(who, rate, mono)
                interval = rate.period_ns // rate.count
                parts.append(Part(prefix + "rate", "rate", rate.window_s, decision, interval))
                commits.append((True, who, rate, tat, 0))
            if quota is not None:
                decision, end, used = quotas.peek(who, quota, wall)
                parts.append(Part(prefix + "quota", "quota", quota.seconds, decision))
                commits.append((False, who, quota, end, used))
        verdict = combine(parts)
        if verdict.allowed:
            for is_rate, who, limit_part, first, second in commits:
                if is_rate:
                    rates.commit(who, limit_part, first, mono)  # type: ignore[arg-type]
                else:
                    quotas.commit(who, limit_part, first, second, wall)  # type: ignore[arg-type]
        return verdict

    def usage(self, who: Hashable, limit: RateLimit) -> dict[str, object]:
        """Where ``who`` stands under ``limit`` now, spending nothing: for ``status()``."""
        report: dict[str, object] = {"limit": limit.as_data()}
        if limit.rate is not None:
            decision = self.rates.state(who, limit.rate)
            report["rate"] = {
                "limit": decision.limit,
                "period_seconds": limit.rate.period,
                "remaining": decision.remaining + 1 if decision.allowed else 0,
                "retry_after_seconds": _seconds(decision.retry_after_ns),
            }
        if limit.quota is not None:
            used = self.quotas.used(who, limit.quota)
            decision = self.quotas.peek(who, limit.quota, self._wall_clock())[0]
            report["quota"] = {
                "limit": limit.quota.count,
                "window": limit.quota.window,
                "used": used,
                "remaining": limit.quota.count - used,
                "resets_in_seconds": _seconds(decision.reset_ns),
            }
        return report


def _seconds(ns: int) -> float:
    return round(ns / 1e9, 3)
