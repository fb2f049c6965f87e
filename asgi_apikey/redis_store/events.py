"""The follower's log events: each one's name, level and fields in one place.

Operators alert on these names (``key_store_unavailable``, ...). Every event
names the store by its redacted URL and goes through :func:`~asgi_apikey.audit.emit`,
so a failing logger can never stop the follower.
"""

from __future__ import annotations

from ..audit import emit


class FollowerLog:
    """The events of the follower of the store at ``url`` (already redacted)."""

    def __init__(self, url: str, max_staleness: float) -> None:
        self._url = url
        self._max_staleness = max_staleness

    def started(self, version: int, key_count: int) -> None:
        emit(
            "info",
            "key_store_started",
            {"url": self._url, "version": version, "key_count": key_count},
        )

    def stop_timeout(self, timeout: float) -> None:
        emit(
            "error",
            "key_store_stop_timeout",
            {
                "url": self._url,
                "detail": f"the follower did not stop within {timeout:g} s; "
                "left to end with the event loop",
            },
        )

    def follower_died(self, error: BaseException, delay: float) -> None:
        emit(
            "error",
            "key_store_follower_died",
            {
                "url": self._url,
                "error": type(error).__name__,  # its text may quote anything: not logged
                "detail": f"the follower of the Redis key store ended unexpectedly; it is "
                f"started again in {delay:g} s and reloads every key",
            },
        )

    def message_invalid(self) -> None:
        emit(
            "error",
            "key_store_message_invalid",
            {"url": self._url, "detail": "reloading every key"},
        )

    def load_too_slow(self, seconds: float) -> None:
        emit(
            "warning",
            "key_store_load_too_slow",
            {
                "url": self._url,
                "seconds": round(seconds, 3),
                "detail": "reading every key took longer than max_staleness "
                f"({self._max_staleness:g} s), so the keys cannot be trusted: raise "
                "max_staleness",
            },
        )

    def lost(self, why: str) -> None:
        """``why``: the error, as :func:`~asgi_apikey.redis_store.urls.why` shows it."""
        emit(
            "warning",
            "key_store_lost",
            {
                "url": self._url,
                "error": why,
                "detail": "reconnecting; the last keys are used for up to "
                f"{self._max_staleness:g} s",
            },
        )

    def unavailable(self) -> None:
        emit(
            "error",
            "key_store_unavailable",
            {
                "url": self._url,
                "detail": f"no answer from Redis for {self._max_staleness:g} s: the "
                "store's keys are refused (503) until it answers",
            },
        )

    def recovered(self, down_seconds: float, version: int, key_count: int) -> None:
        emit(
            "info",
            "key_store_recovered",
            {
                "url": self._url,
                "down_seconds": round(down_seconds, 3),
                "version": version,
                "key_count": key_count,
            },
        )
