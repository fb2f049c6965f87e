"""RateLimit: what one key (or client, or path rule) may spend: a rate with a burst, a quota.

Written in code, in a key file, in a Redis record or on the command line, a
limit has one text form and one data form, both checked here::

    RateLimit("100/minute")                       # 100 a minute, 100 at once
    RateLimit("100/minute", burst=20)             # ... but at most 20 at once
    RateLimit("10/s", quota="10000/day")          # and 10,000 a calendar day (UTC)
    RateLimit(quota="1000000/month")              # a quota alone
    UNLIMITED                                     # this key is not limited

A rate is ``<count>/<period>``: the period is ``second``, ``minute``,
``hour`` or ``day`` (or ``s``, ``m``, ``h``, ``d``, plural forms, and a
multiple such as ``15m`` or ``10 seconds``). A quota is ``<count>/<window>``
with a calendar window in UTC: ``hour``, ``day`` or ``month``.

>>> RateLimit("100/minute", burst=20, quota="10000/day")
RateLimit('100/minute', burst=20, quota='10000/day')
>>> RateLimit.from_data({"rate": "5/15m"}).rate
Rate(count=5, period=900, burst=None)
>>> UNLIMITED.as_data()
'unlimited'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError, not_shown_unless_word
from .gcra import Rate
from .quota import WINDOWS, Quota

__all__ = ["UNLIMITED", "RateLimit", "as_rate_limit", "parse_quota", "parse_rate"]

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_SHORT = ((86400, "day", "d"), (3600, "hour", "h"), (60, "minute", "m"), (1, "second", "s"))
_RATE = re.compile(r"\s*(\d{1,10})\s*/\s*(\d{1,8})?\s*([a-z]{1,7})\s*")
_QUOTA = re.compile(r"\s*(\d{1,10})\s*/\s*([a-z]{1,5})\s*")
_DATA_FIELDS = frozenset({"rate", "burst", "quota"})
_RATE_HELP = (
    "a rate is '<count>/<period>', such as '100/minute', '10/s' or '5/15m' (periods: "
    "second, minute, hour, day)"
)
_QUOTA_HELP = f"a quota is '<count>/<window>', such as '10000/day' (windows: {', '.join(WINDOWS)})"


def parse_rate(text: object, burst: int | None = None, setting: str = "rate") -> Rate:
    """The :class:`Rate` a text such as ``"100/minute"`` names; errors say the syntax."""
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    unit = _UNITS.get(match.group(3)) if match else None
    if match is None or unit is None:
        raise ConfigurationError(f"{_RATE_HELP}{not_shown_unless_word(text)}", setting=setting)
    multiple = int(match.group(2) or 1)
    if multiple < 1:
        raise ConfigurationError(f"{_RATE_HELP}: the period is 0", setting=setting)
    return Rate(int(match.group(1)), multiple * unit, burst)


def parse_quota(text: object, setting: str = "quota") -> Quota:
    """The :class:`Quota` a text such as ``"10000/day"`` names; errors say the syntax."""
    if isinstance(text, Quota):
        return text
    match = _QUOTA.fullmatch(text) if isinstance(text, str) else None
    if match is None or match.group(2) not in WINDOWS:
        raise ConfigurationError(f"{_QUOTA_HELP}{not_shown_unless_word(text)}", setting=setting)
    return Quota(int(match.group(1)), match.group(2))


def rate_text(rate: Rate) -> str:
    """The canonical text of ``rate``: ``100/minute``, ``5/15m``, ``1/0.5s``."""
    period = rate.period
    for seconds, word, short in _SHORT:
        if period == seconds:
            return f"{rate.count}/{word}"
        if period % seconds == 0:
            return f"{rate.count}/{int(period // seconds)}{short}"
    return f"{rate.count}/{period}s"  # a fraction of a second: only from Rate() in code


class RateLimit:
    """A limit: a rate (``"100/minute"``) with an optional ``burst``, a ``quota``, or both.

    ``burst`` (default: the rate's count) is how many requests may come at
    once after a pause. ``quota`` counts requests per calendar window in
    UTC (``"10000/day"``). Give a rate, a quota or both; :data:`UNLIMITED`
    exempts a key from a default limit. Values are checked here: a bad one
    raises :class:`ConfigurationError` that says the syntax.
    """

    __slots__ = ("quota", "rate", "unlimited")

    rate: Rate | None
    quota: Quota | None
    #: Whether this is :data:`UNLIMITED` (neither a rate nor a quota).
    unlimited: bool

    def __init__(
        self,
        rate: str | Rate | None = None,
        *,
        burst: int | None = None,
        quota: str | Quota | None = None,
    ) -> None:
        if rate is None and quota is None:
            raise ConfigurationError(
                "a RateLimit needs a rate ('100/minute'), a quota= ('10000/day') or both; "
                "use UNLIMITED (or 'unlimited') for a key that is not limited",
                setting="limit",
            )
        if rate is None and burst is not None:
            raise ConfigurationError(
                "burst= goes with a rate, such as '100/minute'", setting="burst"
            )
        parsed: Rate | None
        if isinstance(rate, Rate):
            parsed = rate if burst is None else Rate(rate.count, rate.period, burst)
        else:
            parsed = None if rate is None else parse_rate(rate, burst)
        set_ = object.__setattr__
        set_(self, "rate", parsed)
        set_(self, "quota", None if quota is None else parse_quota(quota))
        set_(self, "unlimited", False)

    @classmethod
    def _unlimited(cls) -> RateLimit:
        limit = object.__new__(cls)
        object.__setattr__(limit, "rate", None)
        object.__setattr__(limit, "quota", None)
        object.__setattr__(limit, "unlimited", True)
        return limit

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("RateLimit is immutable; build a new one")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RateLimit):
            return NotImplemented
        return (self.rate, self.quota) == (other.rate, other.quota)

    def __hash__(self) -> int:
        return hash((self.rate, self.quota))

    def __repr__(self) -> str:
        if self.unlimited:
            return "UNLIMITED"
        parts = []
        if self.rate is not None:
            parts.append(repr(rate_text(self.rate)))
            if self.rate.burst is not None:
                parts.append(f"burst={self.rate.burst}")
        if self.quota is not None:
            parts.append(f"quota='{self.quota.count}/{self.quota.window}'")
        return f"RateLimit({', '.join(parts)})"

    # -- the data form: key files, Redis records, JSON ------------------------------------

    def as_data(self) -> str | dict[str, Any]:
        """``"unlimited"``, a rate's text, or ``{"rate", "burst", "quota"}`` (what is set).

        >>> RateLimit("10/s").as_data(), RateLimit(quota="5/day").as_data()
        ('10/second', {'quota': '5/day'})
        """
        if self.unlimited:
            return "unlimited"
        rate, quota = self.rate, self.quota
        if quota is None and rate is not None and rate.burst is None:
            return rate_text(rate)
        data: dict[str, Any] = {}
        if rate is not None:
            data["rate"] = rate_text(rate)
            if rate.burst is not None:
                data["burst"] = rate.burst
        if quota is not None:
            data["quota"] = f"{quota.count}/{quota.window}"
        return data

    @classmethod
    def from_data(cls, data: object, where: str = "limit") -> RateLimit:
        """The limit that :meth:`as_data` wrote (or a person, in a key file).

        Errors start with ``where`` (such as ``"keys[3] limit"``) and never
        quote a value that could be a key.
        """
        try:
            if isinstance(data, RateLimit):
                return data
            if data == "unlimited":
                return UNLIMITED
            if isinstance(data, str):
                return cls(data)
            if isinstance(data, Mapping):
                unknown = set(data) - _DATA_FIELDS
                if unknown or not data:
                    # Only short words are named: a key pasted as a field name is not quoted.
                    named = sorted(
                        name
                        for name in unknown
                        if isinstance(name, str) and not_shown_unless_word(name)
                    )
                    raise ConfigurationError(
                        f"takes rate, burst and quota{f', not {named}' if named else ''}"
                    )
                return cls(data.get("rate"), burst=data.get("burst"), quota=data.get("quota"))
        except ConfigurationError as error:
            problem = str(error)
        else:
            problem = (
                "must be 'unlimited', a rate such as '100/minute', or a table of rate, burst "
                f"and quota{not_shown_unless_word(data)}"
            )
        raise ConfigurationError(f"{where} {problem}", setting="limit")


#: The limit of a key that no default limit applies to.
UNLIMITED = RateLimit._unlimited()


def as_rate_limit(value: object, where: str = "limit") -> RateLimit | None:
    """``None``, or the :class:`RateLimit` that ``value`` (a limit, its text or data) names."""
    if value is None:
        return None
    return RateLimit.from_data(value, where)
