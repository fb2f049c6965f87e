"""How a follower paces itself: its timing settings, checked together, and its back-off.

>>> timings = Timings.of(max_staleness=30, heartbeat=1, timeout=2)
>>> [timings.backoff(failures) for failures in (1, 2, 3, 10)]
[0.05, 0.1, 0.2, 2.0]
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigurationError


def positive(value: object, setting: str, hint: str) -> float:
    """``value`` as seconds, or a ConfigurationError naming ``setting`` if it is not above 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"{setting} must be a number of seconds above 0 ({hint}), not {value!r}",
            setting=setting,
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class Timings:
    """A follower's settings in seconds (see :class:`RedisKeySource` for each)."""

    max_staleness: float
    heartbeat: float
    resync_interval: float
    timeout: float
    reconnect_delay: float
    max_reconnect_delay: float

    @classmethod
    def of(
        cls,
        *,
        max_staleness: object = 30.0,
        heartbeat: object = 1.0,
        resync_interval: object = 300.0,
        timeout: object = 2.0,
        reconnect_delay: object = 0.05,
        max_reconnect_delay: object = 2.0,
    ) -> Timings:
        """Checked: each above 0, and ``heartbeat + timeout`` below ``max_staleness``."""
        staleness = positive(
            max_staleness, "max_staleness", "how long the last keys stay trusted without Redis"
        )
        beat = positive(heartbeat, "heartbeat", "how often to check the version")
        resync = positive(resync_interval, "resync_interval", "how often to reload every key")
        call = positive(timeout, "timeout", "how long one Redis call may take")
        if beat + call >= staleness:
            raise ConfigurationError(
                f"heartbeat ({beat:g} s) + timeout ({call:g} s) must be below max_staleness "
                f"({staleness:g} s), or a healthy store would be refused: lower them, or "
                "raise max_staleness",
                setting="max_staleness",
            )
        first = positive(reconnect_delay, "reconnect_delay", "the first wait")
        longest = positive(max_reconnect_delay, "max_reconnect_delay", "the longest wait")
        return cls(staleness, beat, resync, call, first, max(first, longest))

    def backoff(self, failures: int) -> float:
        """The wait before the next attempt, after ``failures`` in a row (doubling each time)."""
        doubled: float = self.reconnect_delay * 2 ** min(failures - 1, 30)
        return min(doubled, self.max_reconnect_delay)
