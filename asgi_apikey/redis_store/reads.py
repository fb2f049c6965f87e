"""What a follower reads from Redis: the version, every key in chunks, the changed records.

Each read returns the store's version with what it read, so the follower
knows which state of the store it holds.
"""

from __future__ import annotations

import time
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from .records import Names, version_of

_SCAN_COUNT = 250  # keys a full load asks for at a time: a reply parsed in a few ms
_BATCH = 1000  # change messages applied together at most

#: Records of the keys hash by field (a SHA-256 digest in hex).
Records = dict[bytes, bytes]


async def head(redis: Redis, names: Names) -> tuple[int, bytes | None]:
    """The store's version and epoch."""
    version, epoch = await redis.mget(names.version, names.epoch)
    return version_of(version), cast(bytes | None, epoch)


async def everything(
    redis: Redis, names: Names
) -> tuple[int, bytes | None, list[Records], float | None]:
    """Every record (as the scan's chunks), the version and epoch read before them, and when.

    In chunks (HSCAN), so that no reply is large enough to hold up the event
    loop: a change made during the scan may or may not be in it, but its
    message (a later version) is applied next, and applying a change again
    leaves the same keys.

    The version is read again after the scan: if it has not moved, no change
    was made meanwhile, and the records are the store as it was at that
    second reading (``time.monotonic()``, the last item; None if it moved).
    A million keys take seconds to scan; the keys are fresh from the end of
    the scan, not its start.
    """
    version, epoch = await head(redis, names)
    # Kept as the chunks they came in: one dict of them all would grow (and be
    # copied whole) on the event loop.
    records: list[Records] = []
    cursor = 0
    while True:
        cursor, chunk = await redis.hscan(names.keys, cursor, count=_SCAN_COUNT)
        records.append(cast(Records, chunk))
        if cursor == 0:
            break
    again = time.monotonic()
    unchanged = await head(redis, names) == (version, epoch)
    return version, epoch, records, again if unchanged else None


async def changed(
    redis: Redis, names: Names, fields: list[bytes]
) -> tuple[int, bytes | None, list[bytes | None]]:
    """The records of ``fields`` (None where gone), with the version and epoch, at one moment."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.mget(names.version, names.epoch)
        pipe.hmget(names.keys, fields)
        (version, epoch), records = await pipe.execute()
    return version_of(version), epoch, records


async def burst(pubsub: PubSub, first: dict[str, Any] | None, wait: float = 0.0) -> list[bytes]:
    """The change messages received (after ``first``, or within ``wait``): one change."""
    batch = [first] if first is not None else []
    while len(batch) < _BATCH:
        more = await pubsub.get_message(
            ignore_subscribe_messages=True, timeout=0 if batch else wait
        )
        if more is None:
            break
        batch.append(more)
    return [message["data"] for message in batch if message["type"] == "message"]
