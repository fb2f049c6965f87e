"""Redis clients: opened with no retries inside redis-py, closed within a bound of time."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def client(url: str, timeout: float) -> Redis:
    """A client of ``url`` whose every call and connect gives up after ``timeout`` seconds."""
    # No retries inside redis-py: a lost connection must reach the source, which
    # then reloads everything once it is back (messages sent meanwhile are lost).
    # (The ignores and casts here are for redis-py 5, whose types are looser.)
    no_backoff = NoBackoff()  # type: ignore[no-untyped-call, unused-ignore]
    opened: Redis = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(no_backoff, 0),
        client_name="asgi_apikey",
    )
    return opened


async def bounded(closing: Coroutine[Any, Any, Any], timeout: float) -> None:
    """Await ``closing`` for at most ``timeout`` seconds, ignoring its errors.

    ``asyncio.wait`` rather than ``wait_for``: a close stuck where cancelling
    does not reach (a socket that never finishes closing) is left behind
    instead of being waited for again.
    """
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
    elif not task.cancelled():
        task.exception()  # retrieved: a failed close is not worth a warning
