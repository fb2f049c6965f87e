"""The batched mode of the shared limits: each instance spends tokens it leased from Redis.

For every part of a caller's limits (a rate, a quota) an instance holds a
:class:`Lease`: tokens taken from the shared bucket or count in one script
call. A request that finds a token in each of its parts' leases spends them
with no I/O at all. A lease that runs low is refilled in the background,
before it runs out; a request that finds one empty asks Redis for its own
token and a refill in one call (so busy callers never queue behind each
other). Unused tokens go back to Redis once a lease has been idle for
``lease_seconds``, and a quota's tokens never outlive their calendar window.

How much an instance may hold of one part, and so the accuracy, is bounded:
``b = min(batch, max(1, capacity // 10))`` tokens (capacity: a rate's burst,
a quota's count). The lease sizes adapt: a lease starts at one token,
doubles each time it is refilled while in use, and halves each time it gives
tokens back, so a quiet caller costs one call per request and holds almost
nothing, while a busy one is served locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from ..ratelimit.gcra import Decision
from ..ratelimit.local import Verdict, combine
from .limit_runner import ScriptRunner
from .limit_scripts import PartSpec, answer_numbers

__all__ = ["Lease", "LeaseBook"]

_NS = 1_000_000_000


def holding_cap(capacity: int, batch: int) -> int:
    """The most tokens of one part an instance holds: ``min(batch, max(1, capacity // 10))``.

    >>> holding_cap(100, 16), holding_cap(1000, 16), holding_cap(5, 16)
    (10, 16, 1)
    """
    return min(batch, max(1, capacity // 10))


@dataclass(slots=True)
class Lease:
    """What this instance holds of one part of one caller's limits (times: monotonic ns)."""

    spec: PartSpec
    limit: int  # the part's count or burst, for the RateLimit fields
    cap: int  # the most tokens held at once
    tokens: int = 0  # held, ready to spend
    in_flight: int = 0  # asked for, for the lease, by calls not answered yet
    reserved: int = 0  # set aside by requests waiting for Redis on another part
    size: int = 1  # what the next refill asks for
    expires: int = 0  # idle after this: unused tokens go back
    window_end: int = 0  # a quota's tokens die when their window ends
    end_s: int = 0  # ... which Redis names by this end (s since the epoch)
    shared_left: int = 0  # what Redis had left after the last grant (an estimate after that)
    reset_at: int = 0  # when the part is whole again, as of the last grant
    recheck_at: int = 0  # a refusal is remembered until then ...
    retry_at: int = 0  # ... and says to retry at this time
    pending: asyncio.Future[None] | None = None  # a call for this lease, not answered yet

    def refused(self, now: int) -> bool:
        """Whether Redis refused this part lately and nothing is held: refuse without asking."""
        return self.tokens == 0 and now < self.recheck_at

    def refusal(self, now: int) -> Decision:
        """The part's refusal, as Redis last gave it."""
        return Decision(
            False, self.limit, 0, max(1, self.retry_at - now), max(0, self.reset_at - now)
        )

    def estimate(self, now: int, *, spent: bool) -> Decision:
        """The part's state for the ``RateLimit`` fields: estimated from the last grant."""
        held = self.tokens if spent else self.tokens - 1
        remaining = min(self.limit - 1, max(0, self.shared_left + held))
        return Decision(True, self.limit, remaining, 0, max(0, self.reset_at - now))


class LeaseBook:
    """Every lease of this instance, and the tasks that refill and return them."""

    def __init__(
        self, runner: ScriptRunner, *, batch: int, lease_seconds: float, timeout: float
    ) -> None:
        self._runner = runner
        self._timeout = timeout
        self._batch = batch
        self._lease_ns = round(lease_seconds * _NS)
        self._leases: dict[str, Lease] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._leases)

    def _lease(self, spec: PartSpec) -> Lease:
        lease = self._leases.get(spec.key)
        if lease is not None and lease.spec == spec:
            return lease
        # New, or the caller's limit changed: its state in Redis starts afresh under the
        # new limit (as in the local limiter), so the old lease's tokens are simply dropped.
        limit = spec.rate.capacity if spec.rate is not None else spec.quota.count  # type: ignore[union-attr]
        lease = self._leases[spec.key] = Lease(spec, limit, holding_cap(limit, self._batch))
        return lease

    # -- the decision ---------------------------------------------------------------------

    async def decide(self, specs: Sequence[PartSpec]) -> Verdict | None:
        """Admit or refuse a request under ``specs``: all or nothing. None: Redis did not answer."""
        self._ensure_sweeper()
        leases = [self._lease(spec) for spec in specs]
        waited = False
        while True:
            now = time.monotonic_ns()
            for lease in leases:
                if lease.tokens and lease.spec.quota is not None and now >= lease.window_end:
                    lease.tokens = 0  # counted in a window that has ended: gone with it
            refused = [lease.refused(now) for lease in leases]
            if any(refused):
                return self._verdict(leases, now, refused, spent=False)
            missing = [lease for lease in leases if lease.tokens == 0]
            if not missing:  # the hot path: every part has a token here
                for lease in leases:
                    lease.tokens -= 1
                verdict = self._verdict(leases, now, refused, spent=True)
                self._refill_low(leases, now)
                return verdict
            pending = {lease.pending for lease in missing if lease.pending is not None}
            if waited or not pending:
                break
            # A call for these parts is under way: its answer (tokens, or "nothing left
            # until then") most likely decides this request too, without a call of its own.
            waited = True
            await asyncio.wait(pending, timeout=self._timeout)
        # Tokens held for the other parts are set aside while Redis is asked for these.
        reserved = [lease for lease in leases if lease.tokens > 0]
        for lease in reserved:
            lease.tokens -= 1
            lease.reserved += 1
        try:
            granted = await self._ask(missing, own=True)
        finally:
            for lease in reserved:
                lease.reserved -= 1
        now = time.monotonic_ns()
        if granted is not None and all(granted):
            verdict = self._verdict(leases, now, refused, spent=True)
            self._refill_low(leases, now)
            return verdict
        for lease in reserved:
            lease.tokens += 1
        if granted is None:
            return None
        # Refused by a part: the request's tokens of the other parts go back to Redis.
        back = [(lease, 1) for lease, got in zip(missing, granted, strict=True) if got]
        if back:
            self._spawn(self._release(back))
        by_part = dict(zip(map(id, missing), granted, strict=True))
        refused = [by_part.get(id(lease)) == 0 for lease in leases]
        return self._verdict(leases, now, refused, spent=False)

    @staticmethod
    def _verdict(
        leases: Sequence[Lease], now: int, refused: Sequence[bool], *, spent: bool
    ) -> Verdict:
        return combine(
            [
                lease.spec.part(lease.refusal(now) if no else lease.estimate(now, spent=spent))
                for lease, no in zip(leases, refused, strict=True)
            ]
        )

    # -- calls to Redis -----------------------------------------------------------------

    async def _ask(self, leases: Sequence[Lease], *, own: bool) -> list[int] | None:
        """Lease tokens for ``leases`` in one call: one for the request (``own``) and a refill.

        Answers how many each part granted the request (0: refused), or None
        when Redis did not answer. The refill goes into the leases; no lease
        ever holds, or has asked for, more than its cap.
        """
        if not leases:
            return []
        extras = [min(lease.size, self._room(lease)) for lease in leases]
        for lease, extra in zip(leases, extras, strict=True):
            lease.in_flight += extra
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        announced = [lease for lease in leases if lease.pending is None]
        for lease in announced:
            lease.pending = answered
        sent = time.monotonic_ns()
        args = [
            arg
            for lease, extra in zip(leases, extras, strict=True)
            for arg in lease.spec.args(extra + own)
        ]
        mine: list[int] = []
        try:
            answer = await self._runner.run("lease", [lease.spec.key for lease in leases], args)
            if answer is not None:
                received = time.monotonic_ns()
                for index, lease in enumerate(leases):
                    got, first, left_ns, end_s = answer_numbers(answer, index)
                    own_token = min(got, int(own))
                    lease.tokens += got - own_token
                    mine.append(own_token)
                    self._granted(lease, (got, first, left_ns, end_s), sent, received)
        finally:
            for lease, extra in zip(leases, extras, strict=True):
                lease.in_flight -= extra
            for lease in announced:
                if lease.pending is answered:
                    lease.pending = None
            answered.set_result(None)
        return mine if answer is not None else None

    @staticmethod
    def _room(lease: Lease) -> int:
        """Tokens ``lease`` may still ask for: it never holds, or waits for, more than its cap."""
        return max(0, lease.cap - lease.tokens - lease.reserved - lease.in_flight)

    def _granted(
        self, lease: Lease, numbers: tuple[int, int, int, int], sent: int, received: int
    ) -> None:
        """Note what Redis said of ``lease``'s part when it granted some tokens.

        ``numbers`` are the part's in the script's answer; ``sent`` and
        ``received`` frame the moment Redis read its clock. When nothing was
        left after the grant (or it refused), the refusal is remembered until
        the part's next token is due, counted from ``received`` and at most
        ``lease_seconds``: the requests meanwhile are refused with no call
        (at worst one round trip after the token is due). ``Retry-After``
        and a quota's window end count from ``sent``: never late.
        """
        got, first, left_ns, end_s = numbers
        spec = lease.spec
        lease.expires = received + self._lease_ns
        wait = 0
        if spec.rate is not None:
            rate = spec.rate
            period, count = rate.period_ns, rate.count
            after = first + got * period  # the wait once the grant is taken
            lease.shared_left = max(0, rate.capacity * period - after) // period
            lease.reset_at = sent + -(-after // count)
            over = after - (rate.capacity - 1) * period
            if over > 0:  # empty: the next token is due then
                wait = -(-over // count)
        elif spec.quota is not None:
            lease.shared_left = max(0, spec.quota.count - first - got)
            lease.reset_at = lease.window_end = sent + left_ns
            lease.end_s = end_s
            if lease.shared_left == 0:
                wait = left_ns
        if wait:
            lease.retry_at = sent + wait
            lease.recheck_at = received + min(wait, self._lease_ns)

    def _refill_low(self, leases: Sequence[Lease], now: int) -> None:
        """Refill, in the background, the leases that ran low: before they run out."""
        low = [
            lease
            for lease in leases
            if lease.tokens <= lease.size // 2
            and lease.in_flight == 0
            and self._room(lease) > 0
            and now >= lease.recheck_at
        ]
        if low and self._runner.breaker.available:
            for lease in low:  # used up within its lifetime: the next one is larger
                lease.size = min(lease.cap, lease.size * 2)
            self._spawn(self._refill(low))

    async def _refill(self, leases: Sequence[Lease]) -> None:
        # Asked for when the request was decided: only those still with room.
        await self._ask([lease for lease in leases if self._room(lease)], own=False)

    def _give_back(self, lease: Lease) -> None:
        tokens, lease.tokens = lease.tokens, 0
        lease.size = max(1, lease.size // 2)
        if tokens and (lease.spec.quota is None or time.monotonic_ns() < lease.window_end):
            self._spawn(self._release([(lease, tokens)]))

    async def _release(self, given: Sequence[tuple[Lease, int]]) -> None:
        """Give tokens back: a rate's bucket fills by as much, a quota counts fewer."""
        for lease, tokens in given:  # one call each: callers may sit in different slots
            args = lease.spec.args(tokens, lease.end_s)
            await self._runner.run("release", [lease.spec.key], args)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- idle leases ----------------------------------------------------------------------

    def _ensure_sweeper(self) -> None:
        sweeper = self._sweeper
        if (
            sweeper is None
            or sweeper.done()
            or sweeper.get_loop() is not asyncio.get_running_loop()
        ):
            self._sweeper = asyncio.ensure_future(self._sweep_every())

    async def _sweep_every(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ns / _NS / 2)
            self.sweep(time.monotonic_ns())

    def sweep(self, now: int) -> None:
        """Give back the tokens of idle leases, and forget the leases that hold nothing."""
        for key, lease in list(self._leases.items()):
            if now < lease.expires or lease.in_flight or lease.reserved:
                continue
            if lease.tokens:
                self._give_back(lease)
            elif now >= lease.recheck_at:
                del self._leases[key]

    async def stop(self, timeout: float) -> None:
        """Give every token back (within ``timeout``), stop the tasks, forget the leases."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
        for lease in self._leases.values():
            self._give_back(lease)
        self._leases.clear()
        tasks = set(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for task in tasks:
            task.cancel()
        for task in tasks | ({sweeper} if sweeper is not None else set()):
            with contextlib.suppress(BaseException):
                await task
