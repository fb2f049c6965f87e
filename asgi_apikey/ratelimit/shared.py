"""What a limiter shared by many instances offers the middleware (Redis's is one).

A shared limiter answers the same :class:`~asgi_apikey.ratelimit.local.Verdict`
as the local one, for the same checks, over the network. When it cannot
answer in time it follows its configured policy: decide locally instead, or
raise :class:`LimiterUnavailable`, which the middleware answers with ``503``
and ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

from .limits import RateLimit
from .local import Check, Verdict

__all__ = ["LimiterUnavailable", "SharedLimiter"]


class LimiterUnavailable(Exception):
    """A shared limiter could not decide in time and is configured to refuse (503).

    ``detail`` is what the response says; ``retry_after`` (seconds) what its
    ``Retry-After`` says. Neither ever holds a key or a store's password.
    """

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


@runtime_checkable
class SharedLimiter(Protocol):
    """A limiter many instances share: ``decide`` is awaited once per limited request."""

    async def decide(self, checks: Sequence[Check]) -> Verdict:
        """One all-or-nothing decision over ``checks``; may raise :class:`LimiterUnavailable`."""

    async def usage(self, who: Hashable, limit: RateLimit) -> dict[str, Any]:
        """Where ``who`` stands under ``limit``, spending nothing."""

    async def start(self) -> None:
        """Connect (the app's lifespan start); ``decide`` also connects on first use."""

    async def stop(self) -> None:
        """Close connections (the app's lifespan end); safe to call twice."""

    def describe(self) -> dict[str, Any]:
        """The configuration as data, without secrets (a URL's password is redacted)."""
