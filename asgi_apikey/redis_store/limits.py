"""Rate limits shared by every instance of an app through Redis: :class:`RedisRateLimiter`.

Give it to the middleware as ``RateLimits(shared=RedisRateLimiter(url))``
and every instance counts against the same limits: a key's ``100/minute`` is
100 a minute in all, however many processes serve it. It decides the same
checks as :class:`~asgi_apikey.ratelimit.local.LocalLimiter` and answers the
same :class:`~asgi_apikey.ratelimit.local.Verdict`.

**Exact mode** (``mode="exact"``, the default): one atomic Lua script call
per limited request looks at every part of its limits (the caller's rate and
quota, a path rule's) and spends one of each only when all of them admit,
all or nothing, with the local limiter's arithmetic. Rates are a GCRA on the
Redis server's clock (``TIME``), so instances whose clocks disagree still
agree; quotas count per calendar window in UTC (an hour, a day, a month)
computed from that clock. Every request costs one round trip to Redis.

**Batched mode** (``mode="batched"``): the hot path stays in the process.
Each instance leases tokens of each limit from Redis in batches and spends
them locally, refilling in the background before they run out; unused tokens
go back to Redis after ``lease_seconds`` of idling (see
:mod:`~asgi_apikey.redis_store.limit_leases`). One instance holds at most
``b = min(batch, max(1, capacity // 10))`` tokens of one limit (capacity: a
rate's burst, a quota's count). With ``I`` instances, counting a request
when Redis grants its token or when it spends a leased one:

- a quota is never exceeded: at most its count per calendar window, exactly;
- a rate admits, over any interval of ``t`` seconds, at most
  ``burst + rate x t + I x b`` requests in all: at most ``I x b`` (so at
  most ``I x batch``) more than the exact mode's ``burst + rate x t``;
- false refusals: a request may be refused while tokens it could have had
  sit in other instances' leases, at most ``(I - 1) x b`` of a limit at any
  moment, each given back within ``lease_seconds`` of idling; and a part
  found empty is refused without asking Redis until its next token is due,
  counted from when Redis's answer arrived (so up to one round trip late)
  and for at most ``lease_seconds``, so tokens given back meanwhile are seen
  only then;
- the ``RateLimit`` fields' remaining counts are estimates from the last lease.

**When Redis is slow or gone.** Every call gives up after ``timeout``
seconds. Then ``on_unavailable="local"`` (the default) decides with a
:class:`~asgi_apikey.ratelimit.local.LocalLimiter` inside this instance:
each instance then enforces the whole limit alone (``N`` instances admit up
to ``N`` times it), and what they count meanwhile never reaches Redis;
``on_unavailable="refuse"`` raises
:class:`~asgi_apikey.ratelimit.shared.LimiterUnavailable`, answered with
``503`` and ``Retry-After``. After a failure Redis is left alone for
``backoff`` seconds, then one request tries it again, so a dead Redis does
not cost every request a timeout. The events ``rate_limit_store_unavailable``
(once per outage) and ``rate_limit_store_recovered`` name the store by its
URL without the password.

**In Redis**, beside the key store under the same ``prefix``, one short
string per active caller and limit, each in its caller's hash tag (so one
request's keys share a cluster slot, and callers spread over slots)::

    {asgi_apikey:rl:<h>}:rate:<l>            "<count>/<period ns>/<burst or "">:<TAT x count>"
    {asgi_apikey:rl:<h>}:quota:<l>           "<count>/<window>:<window end, s>:<used>"
    {asgi_apikey:rl:<h>}:path:<r>:rate:<l>   a path rule's limit of that caller
    {asgi_apikey:rl:<h>}:path:<r>:quota:<l>

``<h>`` is 32 hex digits of the SHA-256 of the caller's JSON (``"billing"``
for a key, ``["client","203.0.113.7"]`` for an anonymous client), ``<r>`` 16
of the rule path's, ``<l>`` 12 of the limit's (so a caller decided under two
limits, by instances mid-deploy or nested middlewares, keeps a count for
each and neither starts afresh): no key id, address or path in clear. A rate's key
expires once its bucket is full again, a quota's when its window ends, so
idle callers take no memory. Needs Redis 5 or later.

>>> RedisRateLimiter("redis://:s3cret@127.0.0.1:6379/0", mode="batched")
RedisRateLimiter('redis://:***@127.0.0.1:6379/0', prefix='asgi_apikey', mode='batched')
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from ..errors import ConfigurationError, not_shown_unless_word
from ..ratelimit.limits import RateLimit
from ..ratelimit.local import Check, LocalLimiter, Verdict
from ..ratelimit.shared import LimiterUnavailable
from .limit_leases import LeaseBook
from .limit_runner import Breaker, ScriptRunner
from .limit_scripts import KeyNames, answer_numbers, verdict_of
from .records import DEFAULT_PREFIX, Names
from .timings import positive
from .urls import check_url, redacted

__all__ = ["RedisRateLimiter"]

MODES = ("exact", "batched")
POLICIES = ("local", "refuse")
_MAX_BATCH = 100_000
_MAX_CONNECTIONS = 10_000


class RedisRateLimiter:
    """Limits shared by every instance through Redis: pass it as ``RateLimits(shared=...)``.

    Parameters:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` for TLS,
            or ``unix:///path/redis.sock`` (the key store's URL can be reused).
        prefix: the start of every name in Redis (the key store's by default).
        mode: ``"exact"`` (one Redis call per limited request) or
            ``"batched"`` (tokens leased in batches; see the module's text for
            the accuracy).
        timeout: how long, in seconds, one Redis call may take.
        on_unavailable: ``"local"`` (decide in this instance alone) or
            ``"refuse"`` (``503``) when Redis cannot answer in time.
        batch: batched mode: the most tokens of one limit an instance holds.
        lease_seconds: batched mode: how long unused tokens are kept before
            they go back to Redis.
        backoff: how long, in seconds, Redis is left alone after a failure.
        max_connections: the most connections to Redis at once (calls wait
            for one, within ``timeout``).

    Bad values raise :class:`~asgi_apikey.errors.ConfigurationError` here;
    nothing connects until :meth:`start` or the first :meth:`decide`.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        mode: str = "exact",
        timeout: float = 0.05,
        on_unavailable: str = "local",
        batch: int = 16,
        lease_seconds: float = 1.0,
        backoff: float = 1.0,
        max_connections: int = 32,
    ) -> None:
        self._url = check_url(url)
        Names.of(prefix)  # checked as the key store checks it
        if mode not in MODES:
            raise ConfigurationError(
                "mode must be 'exact' (one Redis call per limited request) or 'batched' "
                f"(tokens leased in batches, decided in the process){not_shown_unless_word(mode)}",
                setting="mode",
            )
        if on_unavailable not in POLICIES:
            raise ConfigurationError(
                "on_unavailable must be 'local' (each instance decides alone while Redis "
                "cannot answer) or 'refuse' (limited requests get 503)"
                f"{not_shown_unless_word(on_unavailable)}",
                setting="on_unavailable",
            )
        self._timeout = positive(timeout, "timeout", "how long one Redis call may take, e.g. 0.05")
        self._lease_seconds = positive(
            lease_seconds, "lease_seconds", "how long unused leased tokens are kept, e.g. 1"
        )
        self._backoff = positive(
            backoff, "backoff", "how long Redis is left alone after a failure, e.g. 1"
        )
        self._batch = _count(batch, "batch", _MAX_BATCH, "the most tokens an instance holds")
        self._max_connections = _count(
            max_connections, "max_connections", _MAX_CONNECTIONS, "connections to Redis"
        )
        self._prefix = prefix
        self._mode = mode
        self._policy = on_unavailable
        self._breaker = Breaker(redacted(self._url), self._backoff, on_unavailable)
        self._runner = ScriptRunner(
            self._url,
            timeout=self._timeout,
            max_connections=self._max_connections,
            breaker=self._breaker,
        )
        self._names = KeyNames(prefix)
        self._local = LocalLimiter()
        self._leases = (
            LeaseBook(
                self._runner,
                batch=self._batch,
                lease_seconds=self._lease_seconds,
                timeout=self._timeout,
            )
            if mode == "batched"
            else None
        )

    # -- the decision ---------------------------------------------------------------------

    async def decide(self, checks: Sequence[Check]) -> Verdict:
        """One all-or-nothing decision over ``checks``, shared by every instance.

        Raises :class:`~asgi_apikey.ratelimit.shared.LimiterUnavailable` when
        Redis cannot answer in time and ``on_unavailable="refuse"``.
        """
        specs = self._names.parts(checks)
        if not specs:  # unlimited: nothing to count
            return Verdict(True, 0, ())
        verdict: Verdict | None
        if self._leases is not None:
            verdict = await self._leases.decide(specs)
        else:
            keys = [spec.key for spec in specs]
            args = [arg for spec in specs for arg in spec.args()]
            answer = await self._runner.run("decide", keys, args)
            verdict = None if answer is None else verdict_of(specs, answer)
        if verdict is None:
            if self._policy == "local":
                return self._local.decide(checks)
            raise self._unavailable()
        return verdict

    async def usage(self, who: Hashable, limit: RateLimit) -> dict[str, Any]:
        """Where ``who`` stands under ``limit`` in Redis, spending nothing.

        The same form as :meth:`LocalLimiter.usage
        <asgi_apikey.ratelimit.local.LocalLimiter.usage>`: ``limit``, and a
        ``rate`` (remaining, retry after) and ``quota`` (used, remaining,
        reset) for what the limit has. In batched mode, tokens that
        instances hold count as spent.
        """
        specs = self._names.parts([Check(who, limit)])
        report: dict[str, Any] = {"limit": limit.as_data()}
        if not specs:
            return report
        keys = [spec.key for spec in specs]
        answer = await self._runner.run("peek", keys, [a for s in specs for a in s.args()])
        if answer is None:
            if self._policy == "local":
                return self._local.usage(who, limit)
            raise self._unavailable()
        for index, spec in enumerate(specs):
            decision = spec.decision(answer, index)
            if spec.rate is not None:
                report["rate"] = {
                    "limit": decision.limit,
                    "period_seconds": spec.rate.period,
                    "remaining": decision.remaining + 1 if decision.allowed else 0,
                    "retry_after_seconds": _seconds(decision.retry_after_ns),
                }
            elif spec.quota is not None:
                used = answer_numbers(answer, index)[1]
                report["quota"] = {
                    "limit": spec.quota.count,
                    "window": spec.quota.window,
                    "used": used,
                    "remaining": max(0, spec.quota.count - used),
                    "resets_in_seconds": _seconds(decision.reset_ns),
                }
        return report

    def _unavailable(self) -> LimiterUnavailable:
        return LimiterUnavailable(
            "the rate limits cannot be checked now; try again shortly",
            retry_after=self._breaker.retry_after(),
        )

    # -- lifespan ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and load the script (the app's lifespan start); safe to call twice.

        A Redis that does not answer is logged and handled as ``on_unavailable``
        says, never raised: the app starts, and recovers once Redis answers.
        """
        await self._runner.load()

    async def stop(self) -> None:
        """Give leased tokens back, stop the background tasks, close the connections.

        Safe to call twice; the limiter connects again if used afterwards.
        """
        if self._leases is not None:
            await self._leases.stop(self._timeout)
        await self._runner.close()

    # -- what it shows ----------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The configuration and state as data, with the URL's password redacted."""
        described: dict[str, Any] = {
            "kind": "redis",
            "url": self._runner.shown,
            "prefix": self._prefix,
            "mode": self._mode,
            "timeout": self._timeout,
            "on_unavailable": self._policy,
            "backoff": self._backoff,
            "max_connections": self._max_connections,
            "available": self._breaker.available,
        }
        if self._leases is not None:
            described.update(
                batch=self._batch, lease_seconds=self._lease_seconds, leases=len(self._leases)
            )
        return described

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter({self._runner.shown!r}, prefix={self._prefix!r}, "
            f"mode={self._mode!r})"
        )

    def _use_test_clock(self, clock: Callable[[], int]) -> None:
        """Tests only: the script's "now" (ns since the epoch) and the fallback's clock."""
        self._runner.test_clock = clock
        self._local = LocalLimiter(clock)


def _count(value: object, setting: str, most: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ConfigurationError(
            f"{setting} must be a whole number from 1 to {most} ({what})"
            f"{not_shown_unless_word(value)}",
            setting=setting,
        )
    return value


def _seconds(ns: int) -> float:
    return round(ns / 1e9, 3)
