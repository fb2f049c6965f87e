"""What an authenticator reports about itself: its features and a status without secrets.

>>> features(mode="advanced", key_file=False, request_logging=False,
...          user_tracking=True, verifiers=False)["metadata"]
True
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .audit import Audit, Counters
from .keys import KeySnapshot, Rejected, Verifier
from .sources import KeySource

if TYPE_CHECKING:
    from .configuration import Configuration
    from .keyring import KeyRing
    from .ratelimit.policy import LimitPlan

__all__ = ["FEATURES", "Reports", "development_access", "features", "status", "supported"]

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
    *,
    mode: str,
    key_file: bool,
    request_logging: bool,
    user_tracking: bool,
    verifiers: bool,
    rate_limiting: bool = False,
) -> dict[str, bool]:
    """Each name of :data:`FEATURES` and whether it is on."""
    advanced = mode == "advanced"
    return {
        "expiry": True,
        "key_file": key_file,
        "metadata": True,  # carried in every mode, from every source
        "permissions": True,
        "rate_limiting": rate_limiting,
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


class Reports:
    """What an authenticator tells about itself, read-only: the part of
    :class:`~asgi_apikey.APIKeyAuth` that health endpoints, exporters and
    ``python -m asgi_apikey check`` use. It changes when what is reported
    changes; the authenticator's building and rotation live elsewhere."""

    # Set by APIKeyAuth.__init__.
    _audit: Audit
    _clock: Callable[[], float]
    _configuration: Configuration
    _empty: tuple[str, ...]
    _has_file: bool
    _live: bool
    _limit_plans: list[weakref.ref[LimitPlan]]
    _ring: KeyRing
    _source: KeySource | None
    _verifiers: tuple[Verifier, ...]

    @property
    def audit(self) -> Audit:
        """The counters, failure throttle and event switches the middleware reports to."""
        return self._audit

    def counters(self) -> Counters:
        """What the middleware decided with this authenticator so far: the exporter hook.

        Cheap and safe to call from a metrics callback (a Prometheus
        collector, an OpenTelemetry observable counter) at collection time.

        >>> from asgi_apikey import APIKeyAuth
        >>> APIKeyAuth(keys=["sk-test-0123456789abcdef"]).counters().requests
        0
        """
        return self._audit.counters()

    def empty_key_variables(self) -> tuple[str, ...]:
        """The key variables that were set to nothing when the environment was last read.

        Such a variable (``API_KEY=``, a missing secret) is a key source holding no
        key: every protected request is refused. ``python -m asgi_apikey check``
        names them.
        """
        return self._empty

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the current keys (names or fingerprints), sorted; never the keys."""
        return tuple(sorted(self._ring.snapshot.by_id))

    @property
    def is_development_mode(self) -> bool:
        """True when built without keys: requests pass anonymous (see development_access)."""
        return self._ring.snapshot.development

    @property
    def development_access(self) -> str | None:
        """Who development mode serves: ``"local"``, ``"open"``, or ``None`` outside it.

        ``"local"`` (no ``ENVIRONMENT`` set): this machine's clients only, others
        get 401; ``"open"`` (``ENVIRONMENT=development`` or ``testing``): every
        client.

        >>> from asgi_apikey import APIKeyAuth
        >>> APIKeyAuth(keys=["sk-test-0123456789abcdef"]).development_access is None
        True
        """
        return development_access(self._ring.snapshot)

    @property
    def mode(self) -> str:
        """``"simple"``, ``"advanced"``, or ``"development"`` / ``"test"`` in development mode."""
        return self._ring.snapshot.anonymous.mode

    @property
    def environment(self) -> str:
        """The ``ENVIRONMENT`` this authenticator was built for."""
        return self._configuration.environment

    @property
    def configuration(self) -> Configuration:
        """The settled options (mode, environment, flags, variable names), read-only.

        >>> from asgi_apikey import APIKeyAuth
        >>> auth = APIKeyAuth(keys=["sk-test-0123456789abcdef"], environment="staging")
        >>> auth.configuration.strict, auth.configuration.names["environment"]
        (True, 'ENVIRONMENT')
        """
        return self._configuration

    @property
    def clock(self) -> Callable[[], float]:
        """The clock (seconds since the epoch) that expiry and ``not_before`` are judged by."""
        return self._clock

    @property
    def unguarded(self) -> bool:
        """True with no key, no verifier and no live source: every protected request is refused
        (or passes, in development mode)."""
        return not self._ring.snapshot.by_id and not self._verifiers and not self._live

    def features(self) -> dict[str, bool]:
        """Each name of :data:`FEATURES` and whether it is on."""
        options = self._configuration
        return features(
            mode=options.mode,
            key_file=self._has_file,
            request_logging=options.request_logging,
            user_tracking=options.user_tracking,
            verifiers=bool(self._verifiers),
            rate_limiting=self._limits_in_force(),
        )

    # -- rate limits (the middleware registers its plan with use_limits) -----------------

    def use_limits(self, plan: LimitPlan) -> None:
        """Called by each middleware built on this authenticator with its compiled limits.

        Held weakly: a middleware that is gone takes its limits with it.
        """
        if plan not in self._live_plans():
            self._limit_plans.append(weakref.ref(plan))

    def _live_plans(self) -> list[LimitPlan]:
        plans = [plan for ref in self._limit_plans if (plan := ref()) is not None]
        if len(plans) < len(self._limit_plans):
            self._limit_plans[:] = [weakref.ref(plan) for plan in plans]
        return plans

    def _limits_in_force(self) -> bool:
        plans = self._live_plans()
        if any(plan.configured for plan in plans):
            return True
        entries = self._ring.snapshot.by_digest.values()
        return bool(plans) and any(entry.key.limit is not None for entry in entries)

    def usage(self, key_id: str) -> dict[str, Any] | None:
        """How much of its limit ``key_id`` has left now in this process, or ``None`` if unlimited.

        This reports the limiter of the first middleware built on this
        authenticator that limits the key. Limits shared through Redis are counted there: the
        report then holds the limit and ``"shared": True``, and the counts
        come from the store (``await limiter.usage(key_id, limit)`` or
        ``python -m asgi_apikey keys usage``). Raises ``KeyError`` for a key
        id that is not current (without quoting it).

        >>> from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware, RateLimit
        >>> key = APIKey("sk-test-0123456789abcdef", name="ci", limit=RateLimit("10/minute"))
        >>> auth = APIKeyAuth(keys=[key])
        >>> _ = APIKeyMiddleware(None, auth=auth)
        >>> rate = auth.usage("ci")["rate"]
        >>> rate["remaining"], rate["limit"]
        (10, 10)
        """
        snapshot = self._ring.snapshot
        digest = snapshot.by_id.get(key_id)
        if digest is None:  # not quoted: a key may have been given where its key_id belongs
            raise KeyError("no current key has that key_id")
        entry = snapshot.by_digest[digest]
        for plan in self._live_plans():
            limit = plan.limit_of_key(entry.key.limit, entry.context.scopes)
            if limit is None:
                continue  # another middleware may limit it
            if plan.shared is not None:  # the counts are in the shared store, not here
                return {"limit": limit.as_data(), "shared": True}
            report = plan.local.usage(key_id, limit)
            report["shared"] = False
            return report
        return None

    def supports(self, feature: str) -> bool:
        """Whether ``feature`` (one of :data:`FEATURES`) is on.

        >>> from asgi_apikey import APIKeyAuth
        >>> APIKeyAuth(keys=["sk-test-0123456789abcdef"]).supports("scopes")
        True
        """
        return supported(feature, self.features())

    def status(self, key_id: str | None = None) -> dict[str, Any]:
        """A snapshot for health endpoints and logs; it holds no secret.

        With ``key_id``, ``"usage"`` says what that key has left of its rate
        limit and quota (see :meth:`usage`).

        >>> from asgi_apikey import APIKey, APIKeyAuth
        >>> status = APIKeyAuth(keys=[APIKey("sk-test-0123456789abcdef", name="ci")]).status()
        >>> status["mode"], status["key_count"], status["key_ids"]
        ('simple', 1, ['ci'])
        """
        report = status(
            self._ring.snapshot,
            now=self._clock(),
            environment=self._configuration.environment,
            flags=self.features(),
            counters=self._audit.counters(),
            source=self._source,
        )
        if key_id is not None:
            report["usage"] = self.usage(key_id)
        return report
