"""``keys usage KEY_ID --redis URL``: where a key stands under its shared rate limit and quota.

The key's limit comes from its record in the Redis key store, or from
``--limit`` for a key that the app's default limit covers (or a key kept
elsewhere, in code or a key file). The counts come from the shared limiter's
counters in the same Redis (:class:`~asgi_apikey.redis_store.RedisRateLimiter`),
read without spending anything: the remaining rate and quota, and when they
come back.

The argument is echoed only once the store has matched it as a key_id: until
then it may be the plain key itself, typed where its key_id belongs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any, TextIO

from .cli_keys import store_url
from .errors import ConfigurationError, KeySourceError
from .ratelimit.limits import RateLimit, as_rate_limit

__all__ = ["run_usage"]

#: How long the command waits for Redis (an operator's command, not a request's).
TIMEOUT = 5.0


def run_usage(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``keys usage``: print the key's remaining rate and quota; the exit code."""
    url = store_url(args, err)
    if isinstance(url, int):
        return url
    try:
        given = as_rate_limit(args.limit, "--limit") if args.limit is not None else None
        found = asyncio.run(_usage(url, args.redis_prefix, args.key, given))
    except (ConfigurationError, KeySourceError) as error:
        err.write(f"error: {error}\n")
        return 1
    in_store, limit, from_record, report = found
    if in_store and from_record and given is not None:
        err.write("note: the key's record sets its own limit, which applies; --limit is ignored\n")
    key_id = args.key if in_store else None
    if args.json:
        shown = {
            "key_id": key_id,
            "in_store": in_store,
            "limit_from": "record" if from_record else "--limit",
            **report,
        }
        out.write(json.dumps(shown, indent=2) + "\n")
        return 0
    out.write(f"key_id: {key_id if in_store else '(as given; not in the key store)'}\n")
    out.write(f"limit:  {_limit_text(limit)}{'' if from_record else ' (from --limit)'}\n")
    rate, quota = report.get("rate"), report.get("quota")
    if rate is not None:
        line = f"rate:   {rate['remaining']} of {rate['limit']} left now"
        if not rate["remaining"]:
            line += f"; the next in {_duration(rate['retry_after_seconds'])}"
        out.write(line + "\n")
    if quota is not None:
        out.write(
            f"quota:  {quota['remaining']} of {quota['limit']} left this {quota['window']} "
            f"(UTC; {quota['used']} used); resets in {_duration(quota['resets_in_seconds'])}\n"
        )
    if rate is None and quota is None:
        out.write("the key is not limited\n")
    return 0


async def _usage(
    url: str, prefix: str, key_id: str, given: RateLimit | None
) -> tuple[bool, RateLimit, bool, dict[str, Any]]:
    """(in the store, the limit, whether its record set it, the usage report)."""
    from .ratelimit.shared import LimiterUnavailable
    from .redis_store.limits import RedisRateLimiter

    in_store, own = await _record_limit(url, prefix, key_id)
    limit = own or given
    if limit is None:
        if in_store:
            raise ConfigurationError(
                f"the key {key_id!r} has no limit of its own in the store: give the limit "
                "the app applies to it, such as --limit 60/minute"
            )
        raise ConfigurationError(
            "the store holds no key with that key_id ('keys list' shows them): for a key "
            "kept elsewhere (in code, a key file), give its limit, such as --limit 60/minute"
        )
    limiter = RedisRateLimiter(url, prefix=prefix, timeout=TIMEOUT, on_unavailable="refuse")
    failed = None
    try:
        report = await limiter.usage(key_id, limit)
    except LimiterUnavailable:
        failed = limiter.describe()["url"]
    finally:
        await limiter.stop()
    if failed is not None:
        raise KeySourceError(
            f"the rate-limit counters at {failed} cannot be read: check that Redis runs "
            "there, and the URL, password and ACL",
            source="redis",
            url=failed,
        )
    return in_store, limit, own is not None, report


async def _record_limit(url: str, prefix: str, key_id: str) -> tuple[bool, RateLimit | None]:
    """Whether the store holds ``key_id``, and the limit its record sets (None: none)."""
    from redis.exceptions import RedisError

    from .redis_store.connection import bounded, client
    from .redis_store.records import Names
    from .redis_store.urls import check_url, redacted, why

    names = Names.of(prefix)
    redis = client(check_url(url), TIMEOUT)
    problem = None
    record = None
    try:
        digest = await redis.hget(names.ids, key_id)  # type: ignore[misc, unused-ignore]
        if digest is not None:
            record = await redis.hget(names.keys, digest)  # type: ignore[misc, unused-ignore]
    except (RedisError, OSError) as error:
        problem = why(error, url)
    finally:
        await bounded(redis.aclose(), TIMEOUT)
    if problem is not None:  # raised here: nothing chained holds the connection
        raise KeySourceError(
            f"the Redis key store at {redacted(url)} cannot be read ({problem}): check that "
            "Redis runs there, and the URL, password and ACL",
            source="redis",
            url=redacted(url),
        )
    if record is None:
        return False, None
    try:
        data = json.loads(record)
    except (TypeError, ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise ConfigurationError("the key's record in the store is not a JSON object")
    return True, as_rate_limit(data.get("limit"), "the key's record: limit")


def _limit_text(limit: RateLimit) -> str:
    data = limit.as_data()
    if isinstance(data, str):
        return data
    return ", ".join(f"{name} {value}" for name, value in data.items())


def _duration(seconds: float) -> str:
    """``0.25 s``, ``42 s``, ``3h 12m 5s``, ``2d 4h``."""
    if seconds < 60:
        return f"{seconds:g} s"
    whole = int(seconds + 0.999)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s"
