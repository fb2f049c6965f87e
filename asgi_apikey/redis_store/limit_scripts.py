"""The Lua script of the shared rate limits, and what goes in and out of it (no I/O here).

One script, :data:`LIMITS`, does every job, each in one atomic step:

- ``decide``: look at every part of a request's limits, and only when all of
  them admit, spend one of each (all or nothing, as
  :meth:`~asgi_apikey.ratelimit.local.LocalLimiter.decide`);
- ``peek``: the same look, spending nothing (``usage``);
- ``lease``: take up to *n* tokens of each part at once (the batched mode);
- ``release``: give unused leased tokens back.

Time is the Redis server's (``TIME``), so instances whose clocks disagree
still share one limit; a test may pass the time instead (never the
middleware). Rates are the GCRA of :mod:`~asgi_apikey.ratelimit.gcra`: the
script keeps the same integer, the theoretical arrival time scaled by the
rate's count, in exact integer arithmetic. Lua has only doubles (exact to
2**53), and that integer is some 10**27, so the script counts in limbs of
seven decimal digits. Quotas count per calendar window in UTC, the window's
end computed from ``TIME`` (months with their lengths and leap years).

The script answers the raw numbers (a rate's wait, a quota's count and the
time left in its window) and :func:`rate_decision` / :func:`quota_decision`
turn them into the same :class:`~asgi_apikey.ratelimit.gcra.Decision` as the
local limiter, with Python's integers.

Values in Redis (every key expires by itself once it holds nothing a fresh
one would not: a rate's bucket when full again, a quota's count when its
window ends)::

    rate:   "<count>/<period ns>/<burst, empty for the count>:<TAT x count>"
    quota:  "<count>/<window>:<window end, s since the epoch>:<requests counted>"

A change of a caller's limit changes the part before the first ``:``, and the
state starts afresh, as in the local limiter.

KEYS: one per part. ARGV: the job; the time (seconds, nanoseconds) or two
empty strings for the server's; then five values per part: ``rate``, count,
period in ns, burst (empty for the count), n; or ``quota``, count, window,
window end (``release`` only), n. *n* is the tokens wanted (``lease``) or
given back (``release``).
The answer: 1 or 0 (admitted, for ``decide``), then four values per part:
tokens granted (1 or 0 but for ``lease``), then a rate's wait (``TAT x count -
now x count`` before the step, never below 0) and two ``""``, or a quota's
count before the step, the nanoseconds left in its window and the window's
end (seconds since the epoch).

>>> from asgi_apikey.ratelimit.gcra import Rate
>>> rate_decision(Rate(2, 1.0), 0)
Decision(allowed=True, limit=2, remaining=1, retry_after_ns=0, reset_ns=500000000)
>>> rate_decision(Rate(2, 1.0), 2 * 10**9).allowed
False
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Sequence
from typing import NamedTuple

from ..ratelimit.gcra import Decision, Rate
from ..ratelimit.local import Check, Part, Verdict, combine
from ..ratelimit.quota import Quota

__all__ = [
    "BIGNUM",
    "LIMITS",
    "KeyNames",
    "PartSpec",
    "quota_args",
    "quota_decision",
    "rate_args",
    "rate_decision",
    "verdict_of",
]

#: ARGV values per part.
PART_ARGS = 5
#: Answer values per part.
PART_ANSWER = 4

#: Exact non-negative integers in Lua, whose numbers are doubles: limbs of 7 decimal
#: digits, least significant first. ``num`` reads a decimal text, ``text`` writes one.
BIGNUM = r"""
-- Non-negative integers as limbs of 7 decimal digits, least significant first.
local BASE = 10000000

local function num(text)
  local n, i = {}, #text
  while i > 0 do
    local j = i - 6
    if j < 1 then j = 1 end
    n[#n + 1] = tonumber(string.sub(text, j, i))
    i = j - 1
  end
  while #n > 1 and n[#n] == 0 do n[#n] = nil end
  if #n == 0 then n[1] = 0 end
  return n
end

local function text(n)
  local out = {string.format('%d', n[#n])}
  for i = #n - 1, 1, -1 do out[#out + 1] = string.format('%07d', n[i]) end
  return table.concat(out)
end

local function cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  for i = #a, 1, -1 do
    if a[i] ~= b[i] then return a[i] < b[i] and -1 or 1 end
  end
  return 0
end

local function add(a, b)
  local r, carry = {}, 0
  for i = 1, math.max(#a, #b) do
    local s = (a[i] or 0) + (b[i] or 0) + carry
    if s >= BASE then r[i] = s - BASE; carry = 1 else r[i] = s; carry = 0 end
  end
  if carry > 0 then r[#r + 1] = carry end
  return r
end

local function sub(a, b) -- a >= b
  local r, borrow = {}, 0
  for i = 1, #a do
    local s = a[i] - (b[i] or 0) - borrow
    if s < 0 then r[i] = s + BASE; borrow = 1 else r[i] = s; borrow = 0 end
  end
  while #r > 1 and r[#r] == 0 do r[#r] = nil end
  return r
end

local function mul(a, b)
  local r = {}
  for i = 1, #a + #b do r[i] = 0 end
  for i = 1, #a do
    local carry, ai = 0, a[i]
    for j = 1, #b do
      local t = r[i + j - 1] + ai * b[j] + carry -- below 2^53: exact
      carry = math.floor(t / BASE)
      r[i + j - 1] = t - carry * BASE
    end
    local k = i + #b
    while carry > 0 do
      local t = r[k] + carry
      carry = math.floor(t / BASE)
      r[k] = t - carry * BASE
      k = k + 1
    end
  end
  while #r > 1 and r[#r] == 0 do r[#r] = nil end
  return r
end

local ZERO = num('0')
"""

LIMITS = (
    BIGNUM
    + r"""
pcall(redis.replicate_commands) -- Redis 3.2 to 4: TIME then writes (a no-op since 5)

-- Calendar windows in UTC (days_from_civil / civil_from_days, H. Hinnant).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function window_end(window, s)
  if window == 'hour' then return s - s % 3600 + 3600 end
  if window == 'day' then return s - s % 86400 + 86400 end
  local z = math.floor(s / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  if m == 12 then y, m = y + 1, 1 else m = m + 1 end
  return days_from_civil(y, m, 1) * 86400
end

local job = ARGV[1]
-- Redis expires keys on its own clock: with a test's time, keys live at least an hour.
local shortest = 0
if ARGV[2] ~= '' then shortest = 3600000 end

local function ttl_ms(scaled, count) -- a TTL in ms no shorter than scaled / count ns
  -- (at most 90 * 10^12 ms, some 2,800 years: Redis reads no exponent)
  local ms = math.floor(tonumber(text(scaled)) / count / 1000000) + 2
  return math.min(math.max(ms, shortest), 9e13)
end

local now_s, now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now_s = tonumber(t[1])
  now = num(t[1] .. string.format('%06d', tonumber(t[2])) .. '000')
else
  now_s = tonumber(ARGV[2])
  now = num(ARGV[2] .. string.format('%09d', tonumber(ARGV[3])))
end

local answer, writes, allowed = {1}, {}, true
for i = 1, #KEYS do
  local key, at = KEYS[i], 3 + (i - 1) * 5
  local kind, count, n = ARGV[at + 1], ARGV[at + 2], tonumber(ARGV[at + 5]) or 0
  local held = redis.call('GET', key)
  local granted = 0
  if kind == 'rate' then
    local period, burst = num(ARGV[at + 3]), ARGV[at + 4] -- burst: '' for the count
    local per = tonumber(count)
    local sig = count .. '/' .. ARGV[at + 3] .. '/' .. burst
    if burst == '' then burst = count end
    local scaled_now = mul(now, num(count))
    local waited = ZERO -- TAT x count - now x count: 0 for a full bucket
    if held then
      local hsig, htat = string.match(held, '^(.-):(%d+)$')
      if hsig == sig then
        local tat = num(htat)
        if cmp(tat, scaled_now) > 0 then waited = sub(tat, scaled_now) end
      end
    end
    if job == 'release' then
      local back = mul(period, num(string.format('%d', n)))
      if cmp(waited, back) <= 0 then
        if waited ~= ZERO then redis.call('DEL', key) end
      else
        local left = sub(waited, back)
        redis.call('SET', key, sig .. ':' .. text(add(scaled_now, left)),
          'PX', ttl_ms(left, per))
      end
    else
      local full = mul(period, num(burst)) -- the wait of an empty bucket
      local room = ZERO
      if cmp(waited, full) < 0 then room = sub(full, waited) end
      if cmp(room, period) < 0 then
        allowed = false
      else
        granted = 1
        if job == 'lease' then -- as many as fit, at most n (the estimate, then made exact)
          granted = math.min(n, math.floor(tonumber(text(room)) / tonumber(text(period))))
          while granted > 0 and cmp(mul(period, num(string.format('%d', granted))), room) > 0 do
            granted = granted - 1
          end
          while granted < n
            and cmp(mul(period, num(string.format('%d', granted + 1))), room) <= 0 do
            granted = granted + 1
          end
        end
      end
      if granted > 0 and job ~= 'peek' then
        local after = add(waited, mul(period, num(string.format('%d', granted))))
        writes[#writes + 1] = {key, sig .. ':' .. text(add(scaled_now, after)),
          ttl_ms(after, per)}
      end
    end
    answer[#answer + 1] = granted
    answer[#answer + 1] = text(waited)
    answer[#answer + 1] = ''
    answer[#answer + 1] = ''
  else
    local window, limit = ARGV[at + 3], tonumber(count)
    local ends = window_end(window, now_s)
    if job == 'release' then ends = tonumber(ARGV[at + 4]) end
    local sig = count .. '/' .. window
    local used = 0
    if held then
      local hsig, hend, hused = string.match(held, '^(.-):(%d+):(%d+)$')
      if hsig == sig and tonumber(hend) == ends then used = tonumber(hused) end
    end
    local left = ZERO -- ns until the window ends
    local last = num(string.format('%d', ends) .. '000000000')
    if cmp(last, now) > 0 then left = sub(last, now) end
    if job == 'release' then
      if used > 0 and left ~= ZERO then -- a window that has ended is gone anyway
        if used <= n then
          redis.call('DEL', key)
        else
          redis.call('SET', key, sig .. ':' .. string.format('%d', ends) .. ':'
            .. string.format('%d', used - n), 'PX', ttl_ms(left, 1))
        end
      end
    elseif used >= limit then
      allowed = false
    else
      granted = 1
      if job == 'lease' then granted = math.min(n, limit - used) end
      if job ~= 'peek' and granted > 0 then
        writes[#writes + 1] = {key, sig .. ':' .. string.format('%d', ends) .. ':'
          .. string.format('%d', used + granted), ttl_ms(left, 1)}
      end
    end
    answer[#answer + 1] = granted
    answer[#answer + 1] = string.format('%d', used)
    answer[#answer + 1] = text(left)
    answer[#answer + 1] = string.format('%d', ends)
  end
end

-- decide: all or nothing. lease: each part on its own (a part it cannot lease gets 0).
if job == 'lease' or (job == 'decide' and allowed) then
  for _, w in ipairs(writes) do
    redis.call('SET', w[1], w[2], 'PX', w[3])
  end
end
if not allowed then answer[1] = 0 end
return answer
"""
)


def rate_args(rate: Rate, n: int = 0) -> list[str]:
    """The five ARGV values of a rate part.

    The burst goes as given, empty for the default (the count): the local
    limiter takes ``Rate(10, 1)`` and ``Rate(10, 1, burst=10)`` for two rates,
    and a caller's state starts afresh when its rate changes, so here too.
    """
    burst = "" if rate.burst is None else str(rate.burst)
    return ["rate", str(rate.count), str(rate.period_ns), burst, str(n)]


def quota_args(quota: Quota, n: int = 0, end_s: int = 0) -> list[str]:
    """The five ARGV values of a quota part (``end_s``: the window a release is for)."""
    return ["quota", str(quota.count), quota.window, str(end_s), str(n)]


def rate_decision(rate: Rate, waited: int) -> Decision:
    """What :meth:`GCRA.peek <asgi_apikey.ratelimit.gcra.GCRA.peek>` decides for this wait.

    ``waited`` is the script's ``TAT x count - now x count`` (0 for a full
    bucket); the arithmetic is the local limiter's, so both answer alike.
    """
    count, period, capacity = rate.count, rate.period_ns, rate.capacity
    slack = (capacity - 1) * period
    if waited > slack:
        retry = -(-(waited - slack) // count)  # ceil: never early
        return Decision(False, capacity, 0, retry, -(-waited // count))
    waited += period
    remaining = (capacity * period - waited) // period
    return Decision(True, capacity, remaining, 0, -(-waited // count))


def quota_decision(quota: Quota, used: int, left_ns: int) -> Decision:
    """What :meth:`QuotaCounter.peek <asgi_apikey.ratelimit.quota.QuotaCounter.peek>` decides."""
    if used >= quota.count:
        return Decision(False, quota.count, 0, left_ns, left_ns)
    return Decision(True, quota.count, quota.count - used - 1, 0, left_ns)


def answer_numbers(answer: Sequence[object], index: int) -> tuple[int, int, int, int]:
    """Part ``index``'s numbers in the script's answer: granted, wait or count, ns left, end.

    A rate's last two are 0.
    """
    at = 1 + index * PART_ANSWER
    return (
        _int(answer[at]),
        _int(answer[at + 1]),
        _int(answer[at + 2] or 0),
        _int(answer[at + 3] or 0),
    )


def _int(value: object) -> int:
    if isinstance(value, bytes):
        return int(value)
    if isinstance(value, (int, str)):
        return int(value)
    raise ValueError("the rate-limit script answered something that is not a number")


# -- names in Redis ----------------------------------------------------------------------


class PartSpec(NamedTuple):
    """One part of a request's limits: its policy name, its key in Redis, its rate or quota."""

    name: str
    kind: str
    window_s: int
    key: str
    rate: Rate | None
    quota: Quota | None

    def args(self, n: int = 0, end_s: int = 0) -> list[str]:
        """Its five ARGV values (``n`` tokens to lease or give back)."""
        if self.rate is not None:
            return rate_args(self.rate, n)
        assert self.quota is not None  # a part holds one or the other (built below)
        return quota_args(self.quota, n, end_s)

    @property
    def interval_ns(self) -> int:
        """What one request adds to a rate's wait (0 for a quota): a :class:`Part`'s."""
        return self.rate.period_ns // self.rate.count if self.rate is not None else 0

    def part(self, decision: Decision) -> Part:
        """Its :class:`Part` of a verdict, holding ``decision``."""
        return Part(self.name, self.kind, self.window_s, decision, self.interval_ns)

    def decision(self, answer: Sequence[object], index: int) -> Decision:
        """Its decision, from the script's answer (it was part ``index``)."""
        _, first, second, _ = answer_numbers(answer, index)
        if self.rate is not None:
            return rate_decision(self.rate, first)
        assert self.quota is not None
        return quota_decision(self.quota, first, second)


class KeyNames:
    """Where each caller's limits live in Redis: one hash tag per caller, names hashed.

    ``who`` (a ``key_id``, ``("client", host)``, or ``("path", rule, who)``)
    becomes ``{<prefix>:rl:<32 hex of SHA-256 of who>}:rate:<limit>`` (and
    ``:quota:<limit>``), where ``<limit>`` is 12 hex of the SHA-256 of the
    rate's count, period and burst (the quota's count and window): a caller
    decided under two limits (instances mid-deploy, nested middlewares, a
    token's scopes) keeps a bucket for each, as the local limiter does, and
    neither starts afresh. A path rule's limit of that caller sits under the
    same tag, as ``...:path:<16 hex of SHA-256 of the rule>:rate:<limit>``. So
    every key of one request's decision is in one cluster slot, callers spread
    over slots, and no key id, host or path appears in clear.

    >>> names = KeyNames("asgi_apikey")
    >>> names.base("billing") == names.base(("path", "/v1/chat", "billing")).split("path:")[0]
    True
    >>> names.base("billing")
    '{asgi_apikey:rl:faf2805a9391346f02697317fb8aae67}:'
    """

    __slots__ = ("_cache", "_prefix", "_signatures")

    #: Callers whose names are kept computed (the cache is emptied when full).
    CACHED = 10_000

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._cache: dict[Hashable, str] = {}
        self._signatures: dict[Rate | Quota, str] = {}

    def base(self, who: Hashable) -> str:
        """The start of every key name of ``who``'s limits (add ``rate`` or ``quota``)."""
        cached = self._cache.get(who)
        if cached is not None:
            return cached
        suffix = ""
        caller = who
        if isinstance(who, tuple) and len(who) == 3 and who[0] == "path":
            suffix = f"path:{_digest(who[1])[:16]}:"
            caller = who[2]
        name = "{" + f"{self._prefix}:rl:{_digest(caller)[:32]}" + "}:" + suffix
        if len(self._cache) >= self.CACHED:
            self._cache.clear()
        self._cache[who] = name
        return name

    def parts(self, checks: Sequence[Check]) -> list[PartSpec]:
        """The parts of ``checks``, in the local limiter's order: each check's rate, then quota."""
        found = []
        for who, limit, prefix in checks:
            base = self.base(who)
            if limit.rate is not None:
                rate = limit.rate
                key = f"{base}rate:{self.signature(rate)}"
                found.append(PartSpec(prefix + "rate", "rate", rate.window_s, key, rate, None))
            if limit.quota is not None:
                quota = limit.quota
                key = f"{base}quota:{self.signature(quota)}"
                found.append(PartSpec(prefix + "quota", "quota", quota.seconds, key, None, quota))
        return found

    def signature(self, part: Rate | Quota) -> str:
        """12 hex naming a rate (count, period, burst) or a quota (count, window)."""
        found = self._signatures.get(part)
        if found is None:
            if isinstance(part, Rate):
                text = f"rate {part.count}/{part.period_ns}/{part.capacity}"
            else:
                text = f"quota {part.count}/{part.window}"
            found = hashlib.sha256(text.encode("ascii")).hexdigest()[:12]
            if len(self._signatures) >= self.CACHED:
                self._signatures.clear()
            self._signatures[part] = found
        return found


def _digest(value: object) -> str:
    """SHA-256 of ``value``'s canonical JSON: stable across processes and versions."""
    try:
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    except (TypeError, ValueError):
        raise TypeError(
            "a shared limit's caller must be a str or a tuple of str and int (a key_id, "
            f"('client', host), ('path', rule, caller)), not a {type(value).__name__}"
        ) from None
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def verdict_of(specs: Sequence[PartSpec], answer: Sequence[object]) -> Verdict:
    """The :class:`Verdict` of a ``decide`` answer, as the local limiter builds it."""
    return combine([spec.part(spec.decision(answer, index)) for index, spec in enumerate(specs)])
