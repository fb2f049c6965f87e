"""What an authenticator reports about itself: its features and a status without secrets.

>>> features(mode="advanced", key_file=False, request_logging=False,
...          user_tracking=True, verifiers=False)["metadata"]
True
"""

from __future__ import annotations

from typing import Any

from .audit import Counters
from .keys import KeySnapshot, Rejected
from .sources import KeySource

__all__ = ["FEATURES", "development_access", "features", "status", "supported"]

#: What :meth:`APIKeyAuth.supports` answers for (the starter template's names included).
FEATURES = (
    "expiry",
    "key_file",
    "metadata",
    "permissions",
    "rate_limiting",
    "request_logging",
    "rotation",
    "scopes",
    "user_context",
    "user_tracking",
    "verifiers",
)


def features(
    *, mode: str, key_file: bool, request_logging: bool, user_tracking: bool, verifiers: bool
) -> dict[str, bool]:
    """Each name of :data:`FEATURES` and whether it is on."""
    advanced = mode == "advanced"
    return {
        "expiry": True,
        "key_file": key_file,
        "metadata": advanced,
        "permissions": True,
        "rate_limiting": False,
        "request_logging": request_logging,
        "rotation": True,
        "scopes": True,
        "user_context": advanced,
        "user_tracking": user_tracking,
        "verifiers": verifiers,
    }


def supported(feature: str, on: dict[str, bool]) -> bool:
    """Whether ``feature`` is on in ``on``; ``ValueError`` names the known ones."""
    if feature not in on:
        raise ValueError(f"unknown feature {feature!r}: use one of {', '.join(FEATURES)}")
    return on[feature]


def development_access(snapshot: KeySnapshot) -> str | None:
    """``"local"`` or ``"open"`` in development mode, else ``None``."""
    if not snapshot.development:
        return None
    return "local" if snapshot.local_only else "open"


def status(
    snapshot: KeySnapshot,
    *,
    now: float,
    environment: str,
    flags: dict[str, bool],
    counters: Counters,
    source: KeySource | None,
) -> dict[str, Any]:
    """The status of ``snapshot`` at ``now``, for health endpoints and logs; no secret."""
    inactive = sorted(
        entry.key.key_id
        for entry in snapshot.by_digest.values()
        if isinstance(entry.check(now), Rejected)
    )
    return {
        "mode": snapshot.anonymous.mode,
        "environment": environment,
        "development_mode": snapshot.development,
        "development_access": development_access(snapshot),
        "key_count": len(snapshot.by_id),
        "key_ids": sorted(snapshot.by_id),
        "inactive_key_ids": inactive,
        "features": flags,
        "counters": counters.as_dict(),
        "source": source.describe() if source is not None else None,
        "unavailable": snapshot.unavailable,
    }
