"""APIKeyAuth: the authenticator. It owns the key set, the mode and the settings.

Built from explicit keys or from the environment (``settings.py``), it decides
the mode once, at construction:

- keys (or verifiers) configured: keys are enforced, under pytest too;
- none: development mode, where requests pass anonymous
  (``mode="development"``, ``"test"`` under pytest), with one warning. It is
  closed by default: where nobody asked for development (no ``ENVIRONMENT``)
  it serves only this machine (``loopback.py``) and refuses other clients
  with 401 and the fix; ``ENVIRONMENT=development`` or ``testing`` opens it to
  every client; ``staging`` and ``production`` refuse to start that way.

Rotation (:meth:`~APIKeyAuth.add_key`, :meth:`~APIKeyAuth.remove_key`,
:meth:`~APIKeyAuth.replace_keys`, :meth:`~APIKeyAuth.reload`) builds a whole new
:class:`~asgi_apikey.keys.KeySnapshot` and swaps it in with one assignment.
Once an authenticator has enforced keys it never falls back to development
mode: removing every key refuses every request.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .audit import Audit, Counters, emit
from .context import ANONYMOUS, AuthContext
from .credentials import is_b64token
from .errors import ConfigurationError
from .keys import (
    MIN_PRODUCTION_KEY_LENGTH,
    Accepted,
    APIKey,
    KeyEntry,
    KeySnapshot,
    Rejected,
    Verifier,
    _parse_digest,
    entry_for,
    index,
)
from .settings import (
    ENVIRONMENTS,
    STRICT_ENVIRONMENTS,
    AuthSettings,
    not_shown_unless_word,
    read_settings,
    variable,
)
from .sources import EnvironmentSource, KeyFileSource, KeySource, LiveKeySource, SourceKeys

__all__ = ["FEATURES", "APIKeyAuth", "KeyChanges", "get_auth_status", "verify_api_key_string"]

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


class KeyChanges(NamedTuple):
    """What a :meth:`~APIKeyAuth.replace_keys` or :meth:`~APIKeyAuth.reload` changed."""

    added: tuple[str, ...]
    removed: tuple[str, ...]


def _under_test() -> bool:
    return "pytest" in sys.modules or "PYTEST_CURRENT_TEST" in os.environ


class APIKeyAuth:
    """The authenticator: owns the key set, verifies tokens, rotates keys.

    Hold one in your application to rotate keys and read status at run time,
    and pass it to the middleware as ``auth=``. With ``keys=None`` (and no
    ``keys_file``) it reads ``API_KEY``, ``ADDITIONAL_API_KEYS`` and
    ``API_KEYS_FILE``; explicit keys replace those, they do not add to them.
    ``mode``, ``environment``, ``user_tracking`` and ``request_logging`` win
    over ``AUTH_MODE``, ``ENVIRONMENT`` and the ``ENABLE_*`` variables.

    >>> auth = APIKeyAuth(keys=["sk-test-0123456789abcdef"])
    >>> auth.verify("sk-test-0123456789abcdef").authenticated
    True
    >>> auth.verify("sk-wrong") is None
    True

    Parameters:
        keys: plain keys or :class:`APIKey` values; ``None`` reads the environment.
        keys_file: a TOML key file (digests only) read now and on :meth:`reload`;
            the same as ``source=KeyFileSource(keys_file)``.
        source: where the keys come from (:mod:`asgi_apikey.sources`): the
            environment (the default without ``keys``), a key file, or a live
            store shared by many processes such as
            :class:`~asgi_apikey.redis_store.RedisKeySource`, started and
            stopped with the app's lifespan. Keys given as ``keys`` are kept
            beside the source's.
        mode: ``"simple"`` or ``"advanced"`` (per-key metadata in the context).
        environment: ``"development"``, ``"testing"``, ``"staging"`` or ``"production"``.
        user_tracking: bind ``key_id`` into structlog's contextvars for each
            authenticated request (default: on in advanced mode).
        request_logging: log ``authentication_succeeded`` for each accepted request.
        verifiers: callables tried, in order, for tokens that match no key.
        clock: seconds since the epoch, for key validity windows (tests inject one).
        failure_log_limit, failure_log_interval, failure_log_per_client: at
            most ``failure_log_limit`` ``authentication_failed`` events per
            reason, and ``failure_log_per_client`` per client (default: a
            quarter of the limit), in each interval of ``failure_log_interval``
            seconds; the rest are counted and reported in one
            ``authentication_failures_suppressed`` per reason.
        settings: an :class:`AuthSettings` subclass (a prefix, a ``.env`` file).
    """

    def __init__(
        self,
        keys: Iterable[str | APIKey] | None = None,
        *,
        keys_file: str | Path | None = None,
        source: KeySource | None = None,
        mode: str | None = None,
        environment: str | None = None,
        user_tracking: bool | None = None,
        request_logging: bool | None = None,
        verifiers: Iterable[Verifier] = (),
        clock: Callable[[], float] | None = None,
        failure_log_limit: int = 100,
        failure_log_interval: float = 60.0,
        failure_log_per_client: int | None = None,
        settings: type[AuthSettings] = AuthSettings,
    ) -> None:
        if not (isinstance(settings, type) and issubclass(settings, AuthSettings)):
            raise ConfigurationError(
                "settings must be AuthSettings or a subclass of it (the class, not an instance)",
                setting="settings",
            )
        self._settings_class = settings
        self._overrides = _overrides(mode, environment, user_tracking, request_logging)
        config = read_settings(settings, **self._overrides)
        self._mode: str = config.auth_mode
        self._environment: str = config.environment or "development"
        self._environment_set = config.environment is not None
        self._user_tracking = (
            config.enable_user_tracking
            if config.enable_user_tracking is not None
            else self._mode == "advanced"
        )
        self._request_logging = config.enable_request_logging
        self._audit = Audit(
            log_successes=self._request_logging,
            track_users=self._user_tracking,
            failure_log_limit=failure_log_limit,
            failure_log_interval=failure_log_interval,
            failure_log_per_client=failure_log_per_client,
        )
        self._verifiers = _check_verifiers(verifiers)
        self._clock: Callable[[], float] = _check_clock(clock)
        # One lock for writers: a rotation reads its sources, builds and swaps while
        # holding it, so two reloads cannot land in the opposite order. Requests
        # never take it; they read the current snapshot.
        self._lock = threading.Lock()
        self._vars = {field: variable(settings, field) for field in AuthSettings.model_fields}

        # Plain keys are not kept once hashed: reload() reads the environment again.
        self._config = _without_keys(config)
        self._source = _check_source(source, keys, keys_file)
        self._from_env = isinstance(self._source, EnvironmentSource)
        self._live = isinstance(self._source, LiveKeySource)
        self._started = False
        self._told_not_started = False
        self._sink = _LiveSink(self)
        explicit = [] if keys is None else _explicit_keys(keys)
        read = self._read_source(config)
        sourced = list(read.keys)
        self._has_file = isinstance(self._source, KeyFileSource) or (
            self._from_env and config.api_keys_file is not None
        )
        entries, labels = self._prepare([*explicit, *sourced])
        # The digests that came from the source (the environment, a key file, a
        # live store); reload() and a live source replace these and leave the
        # others as they are.
        self._sourced = frozenset(key._digest for _, key in sourced)

        # Development mode only when no key source is configured at all. A source
        # that yields no key (keys=[], an empty file) refuses every request instead.
        self._empty = read.empty
        development = not self._verifiers and keys is None and not read.configured
        if (
            self._environment in STRICT_ENVIRONMENTS
            and not entries
            and not self._verifiers
            and not self._live
        ):
            raise ConfigurationError(self._no_keys_refused(), setting="environment")
        # Development mode that nobody asked for (no ENVIRONMENT, by variable or
        # argument) serves this machine only: a deployment that forgot its keys is
        # not open to the network.
        self._local_only = not self._environment_set
        label = "test" if _under_test() or self._environment == "testing" else "development"
        self._anonymous = {
            False: ANONYMOUS if self._mode == "simple" else AuthContext(False, mode=self._mode),
            True: AuthContext(authenticated=False, mode=label),
        }
        # A live source's keys are unavailable until it has started and loaded them.
        self._snapshot = self._snapshot_of(
            entries, labels, development, unavailable=_NOT_STARTED if self._live else None
        )
        if development:
            access = "local" if self._local_only else "open"
            emit(
                "warning",
                "development_mode",
                {"mode": label, "access": access, "detail": self._development_detail()},
            )
        elif not entries and not self._verifiers and not self._live:
            emit(
                "warning",
                "no_keys",
                {
                    "detail": f"{_set_but_empty(self._empty)}the configured key sources hold no "
                    "key, so every protected request is refused; add keys, or leave every key "
                    "source unset for development mode"
                },
            )

    @classmethod
    def from_env(
        cls,
        *,
        mode: str | None = None,
        environment: str | None = None,
        user_tracking: bool | None = None,
        request_logging: bool | None = None,
        verifiers: Iterable[Verifier] = (),
        clock: Callable[[], float] | None = None,
        failure_log_limit: int = 100,
        failure_log_interval: float = 60.0,
        failure_log_per_client: int | None = None,
        settings: type[AuthSettings] = AuthSettings,
    ) -> APIKeyAuth:
        """An authenticator whose keys come from the environment, read now.

        The same as ``APIKeyAuth()``, and it becomes the authenticator that
        :func:`verify_api_key_string` and :func:`get_auth_status` ask. The
        keyword arguments win over the variables they name.
        """
        auth = cls(
            None,
            mode=mode,
            environment=environment,
            user_tracking=user_tracking,
            request_logging=request_logging,
            verifiers=verifiers,
            clock=clock,
            failure_log_limit=failure_log_limit,
            failure_log_interval=failure_log_interval,
            failure_log_per_client=failure_log_per_client,
            settings=settings,
        )
        set_default(auth)
        return auth

    # -- building snapshots -------------------------------------------------------------

    def _read_source(self, config: AuthSettings) -> SourceKeys:
        source = self._source
        if source is None or self._live:
            return SourceKeys(())  # keys= alone, or a live source: nothing to read now
        read = source.read(config)
        if not isinstance(read, SourceKeys):
            raise ConfigurationError(
                f"{type(source).__name__}.read() must return SourceKeys, not {type(read).__name__}",
                setting="source",
            )
        return read

    def _prepare(self, labelled: Sequence[tuple[str, APIKey]]) -> tuple[list[KeyEntry], list[str]]:
        for label, key in labelled:
            self._admit(key, label)
        return [entry_for(key, self._mode) for _, key in labelled], [label for label, _ in labelled]

    def _admit(self, key: APIKey, label: str) -> None:
        if self._mode == "simple" and key.metadata:
            raise ConfigurationError(
                f"{label}: key {key.key_id!r} has metadata, which only advanced mode carries "
                f"into the AuthContext: set {self._vars['auth_mode']}=advanced (or "
                "mode='advanced'), or drop the metadata",
                where=label,
                key_id=key.key_id,
            )
        if self._environment in STRICT_ENVIRONMENTS and key._short:
            raise ConfigurationError(
                f"{label} is shorter than {MIN_PRODUCTION_KEY_LENGTH} characters, which "
                f"{self._vars['environment']}={self._environment} refuses: use a long random "
                "key ('python -m asgi_apikey keygen' makes one)",
                where=label,
                key_id=key.key_id,
            )

    def _snapshot_of(
        self,
        entries: Sequence[KeyEntry],
        labels: Sequence[str],
        development: bool,
        *,
        unavailable: str | None = None,
    ) -> KeySnapshot:
        by_digest, by_id = index(entries, labels)
        return self._snapshot_from(by_digest, by_id, development, unavailable)

    def _snapshot_from(
        self,
        by_digest: dict[bytes, KeyEntry],
        by_id: dict[str, bytes],
        development: bool = False,
        unavailable: str | None = None,
    ) -> KeySnapshot:
        return KeySnapshot(
            by_digest=by_digest,
            by_id=by_id,
            anonymous=self._anonymous[development],
            development=development,
            local_only=development and self._local_only,
            verifiers=self._verifiers,
            clock=self._clock,
            report_verifier_failure=self._audit.verifier_failed,
            unavailable=unavailable,
        )

    def _swap(
        self, entries: Sequence[KeyEntry], labels: Sequence[str], *, unconfigured: bool = False
    ) -> KeyChanges:
        # Called with the lock held: build first (it may raise), then one assignment.
        # Development mode only ever ends: once keys were enforced, none means
        # every request is refused, never that every request passes.
        old = self._snapshot
        development = old.development and not entries and unconfigured
        new = self._snapshot_of(entries, labels, development, unavailable=old.unavailable)
        self._snapshot = new
        if (
            not entries
            and not development
            and not self._verifiers
            and old.by_digest
            and not self._live
        ):
            emit(
                "warning",
                "no_keys",
                {"detail": "the last key was removed, so every protected request is refused"},
            )
        return KeyChanges(
            added=_ids(new.by_digest, old.by_digest), removed=_ids(old.by_digest, new.by_digest)
        )

    # -- the request path ---------------------------------------------------------------

    @property
    def snapshot(self) -> KeySnapshot:
        """The current immutable key set. Read it once per request."""
        return self._snapshot

    def resolve(self, token: bytes) -> Accepted | Rejected | None:
        """What a presented token (raw bytes) is: accepted, refused with a reason, or unknown."""
        return self._snapshot.resolve(token)

    def verify(self, token: str) -> AuthContext | None:
        """The :class:`AuthContext` for ``token``, or ``None`` when it is not accepted.

        >>> APIKeyAuth(keys=["sk-test-0123456789abcdef"]).verify("nope") is None
        True
        """
        if not isinstance(token, str) or not token.isascii():
            return None  # keys are ASCII b64tokens: nothing else can match
        raw = token.encode("ascii")
        if not is_b64token(raw):
            return None  # nor reaches a verifier, as through the middleware
        result = self._snapshot.resolve(raw)
        return result.context if isinstance(result, Accepted) else None

    # -- rotation -----------------------------------------------------------------------

    def add_key(self, key: str | APIKey) -> str:
        """Add a key (atomically) and return its ``key_id``.

        Raises :class:`ConfigurationError` if the key or its key_id is already present.
        """
        new = _as_key(key, "add_key")
        self._admit(new, "add_key")
        entry = entry_for(new, self._mode)
        with self._lock:
            current = self._snapshot
            present = current.by_digest.get(entry.digest)
            if present is not None:
                raise ConfigurationError(
                    f"add_key: the same key is already present, as key_id {present.key.key_id!r}",
                    key_id=present.key.key_id,
                )
            if new.key_id in current.by_id:
                raise ConfigurationError(
                    f"add_key: the new key reuses the key_id {new.key_id!r}: give it another name",
                    key_id=new.key_id,
                )
            entries = [*current.by_digest.values(), entry]
            self._swap(entries, [e.key.key_id for e in entries])
        return new.key_id

    def remove_key(self, key_or_name: str | APIKey) -> bool:
        """Remove a key given as the plain key, an :class:`APIKey` or its name / key_id.

        Returns ``False`` when nothing matched.
        """
        with self._lock:
            current = self._snapshot
            digest = _find(current, key_or_name)
            if digest is None:
                return False
            entries = [e for e in current.by_digest.values() if e.digest != digest]
            self._swap(entries, [e.key.key_id for e in entries])
            return True

    def replace_keys(self, keys: Iterable[str | APIKey]) -> KeyChanges:
        """Swap in a whole new key set at once; requests see the old set or the new one.

        The new keys count as given in code: a later :meth:`reload` adds the
        keys of the sources to them, and never takes them away.
        """
        labelled = _explicit_keys(keys, "replace_keys")
        with self._lock:
            entries, labels = self._prepare(labelled)
            changes = self._swap(entries, labels)
            self._sourced = frozenset()
            return changes

    def reload(self) -> KeyChanges:
        """Read the key sources again and swap in the keys they hold now.

        The sources are ``API_KEY``, ``ADDITIONAL_API_KEYS`` and the file
        ``API_KEYS_FILE`` names (for an authenticator built from the
        environment), or ``keys_file``. Only the keys that came from them are
        replaced: keys given in code or with :meth:`add_key` /
        :meth:`replace_keys` stay, and a key removed with :meth:`remove_key`
        comes back if a source still holds it (remove it there). The mode,
        environment and flags stay as built. On any error the current set stays.

        Raises :class:`ConfigurationError` when there is nothing to re-read
        (built from ``keys=`` alone: use :meth:`replace_keys`), or when the
        source is live (it keeps itself current).
        """
        if self._source is None:
            raise ConfigurationError(
                "reload() re-reads the environment or keys_file, and this APIKeyAuth was "
                "built from keys= alone: use replace_keys() to change its keys",
                setting="reload",
            )
        if self._live:
            raise ConfigurationError(
                f"reload() re-reads a local source, and this APIKeyAuth follows a "
                f"{type(self._source).__name__}, which keeps itself current",
                setting="reload",
            )
        with self._lock:
            config = self._config
            if self._from_env:
                config = read_settings(self._settings_class, **self._overrides)
            read = self._read_source(config)
            self._empty = read.empty
            unconfigured = not read.configured
            fresh, fresh_labels = self._prepare(read.keys)
            kept = [e for e in self._snapshot.by_digest.values() if e.digest not in self._sourced]
            changes = self._swap(
                [*kept, *fresh],
                [*(e.key.key_id for e in kept), *fresh_labels],
                unconfigured=unconfigured,
            )
            self._sourced = frozenset(entry.digest for entry in fresh)
            return changes

    # -- a live source ------------------------------------------------------------------

    @property
    def source(self) -> KeySource | None:
        """Where the keys come from; ``None`` when they were all given as ``keys=``."""
        return self._source

    @property
    def source_is_live(self) -> bool:
        """Whether the source keeps itself current and must be started (:meth:`start`)."""
        return self._live

    async def start(self) -> None:
        """Start a live source: connect, load its keys, and follow its changes.

        The middleware calls this when the app's lifespan starts and
        :meth:`stop` when it ends; call them yourself where no lifespan runs.
        Does nothing for a local source, or when already started. Raises the
        source's error (:class:`~asgi_apikey.errors.KeySourceError`) when the
        store cannot be reached, so that the app does not start half-blind.
        """
        source = self._source
        if not isinstance(source, LiveKeySource) or self._started:
            return
        self._started = True
        try:
            await source.start(self._sink)
        except BaseException:
            self._started = False
            raise

    async def stop(self) -> None:
        """Stop a live source; its keys are unavailable (503) from then on. Safe to call twice."""
        source = self._source
        if not isinstance(source, LiveKeySource) or not self._started:
            return
        self._started = False
        try:
            await source.stop()
        finally:
            self._live_unavailable(_STOPPED)

    def refused_unavailable(self) -> None:
        """Called by the middleware for each 503: say once if the source was never started."""
        if self._live and not self._started and not self._told_not_started:
            self._told_not_started = True
            emit(
                "warning",
                "key_store_not_started",
                {
                    "detail": "a request was refused with 503 because the key source has not "
                    "been started: run the server with the app's lifespan on (uvicorn "
                    "--lifespan on), or await auth.start() yourself"
                },
            )

    def _kept(self) -> list[KeyEntry]:
        """The entries that did not come from the source (keys=, add_key, replace_keys)."""
        return [e for e in self._snapshot.by_digest.values() if e.digest not in self._sourced]

    def _live_replace(self, keys: Sequence[APIKey]) -> None:
        # The entries are built before the lock is taken (100,000 new ones take a
        # second or more), reusing those of the same APIKey objects as before: a
        # source passes the ones it had for records that did not change, so a
        # periodic reload of 100,000 keys allocates next to nothing.
        current = self._snapshot.by_digest
        built = []
        for key in keys:
            entry = current.get(key._digest)
            built.append(
                entry if entry is not None and entry.key is key else entry_for(key, self._mode)
            )
        with self._lock:
            if not self._started:
                return  # a load that finished after stop(): the keys stay unavailable
            kept = self._kept()
            by_digest, by_id = index(kept, [e.key.key_id for e in kept])
            sourced = set()
            for entry in built:
                if _admitted_live(entry.key, by_digest, by_id):
                    by_digest[entry.digest] = entry
                    by_id[entry.key.key_id] = entry.digest
                    sourced.add(entry.digest)
            self._snapshot = self._snapshot_from(by_digest, by_id)
            self._sourced = frozenset(sourced)

    def _live_change(self, added: Sequence[APIKey], removed: Sequence[str]) -> None:
        dropped = [_parse_digest(digest) for digest in removed]
        with self._lock:
            current = self._snapshot
            if not self._started or current.unavailable is not None:
                return  # untrusted keys: only a whole new set (replace) ends that
            # Copies of the two dicts: O(n) for one change (or one burst of them), but
            # no entry is rebuilt: about 16 ms among 100,000 keys on a small machine.
            by_digest, by_id = dict(current.by_digest), dict(current.by_id)
            sourced = set(self._sourced)
            for digest in [*dropped, *(key._digest for key in added)]:
                if digest in sourced:  # removed, or about to be replaced by a newer record
                    sourced.discard(digest)
                    gone = by_digest.pop(digest, None)  # None: remove_key() took it already
                    if gone is not None:
                        del by_id[gone.key.key_id]
            for key in added:
                if _admitted_live(key, by_digest, by_id):
                    entry = entry_for(key, self._mode)
                    by_digest[entry.digest] = entry
                    by_id[key.key_id] = entry.digest
                    sourced.add(entry.digest)
            self._snapshot = self._snapshot_from(by_digest, by_id, False, current.unavailable)
            self._sourced = frozenset(sourced)

    def _live_unavailable(self, detail: str) -> None:
        with self._lock:
            kept = self._kept()
            by_digest, by_id = index(kept, [e.key.key_id for e in kept])
            self._snapshot = self._snapshot_from(by_digest, by_id, unavailable=detail)
            self._sourced = frozenset()

    # -- status -------------------------------------------------------------------------

    @property
    def audit(self) -> Audit:
        """The counters, failure throttle and event switches the middleware reports to."""
        return self._audit

    def counters(self) -> Counters:
        """What the middleware decided with this authenticator so far: the exporter hook.

        Cheap and safe to call from a metrics callback (a Prometheus
        collector, an OpenTelemetry observable counter) at collection time.

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
        """The ids of the current keys (names or fingerprints), never the keys."""
        return tuple(self._snapshot.by_id)

    @property
    def is_development_mode(self) -> bool:
        """True when built without keys: requests pass anonymous (see development_access)."""
        return self._snapshot.development

    @property
    def development_access(self) -> str | None:
        """Who development mode serves: ``"local"``, ``"open"``, or ``None`` outside it.

        ``"local"`` (no ``ENVIRONMENT`` set): this machine's clients only, others
        get 401; ``"open"`` (``ENVIRONMENT=development`` or ``testing``): every
        client.

        >>> APIKeyAuth(keys=["sk-test-0123456789abcdef"]).development_access is None
        True
        """
        snapshot = self._snapshot
        if not snapshot.development:
            return None
        return "local" if snapshot.local_only else "open"

    @property
    def mode(self) -> str:
        """``"simple"``, ``"advanced"``, or ``"development"`` / ``"test"`` in development mode."""
        return self._snapshot.anonymous.mode

    @property
    def environment(self) -> str:
        """The ``ENVIRONMENT`` this authenticator was built for."""
        return self._environment

    def features(self) -> dict[str, bool]:
        """Each name of :data:`FEATURES` and whether it is on."""
        advanced = self._mode == "advanced"
        return {
            "expiry": True,
            "key_file": self._has_file,
            "metadata": advanced,
            "permissions": True,
            "rate_limiting": False,
            "request_logging": self._request_logging,
            "rotation": True,
            "scopes": True,
            "user_context": advanced,
            "user_tracking": self._user_tracking,
            "verifiers": bool(self._verifiers),
        }

    def supports(self, feature: str) -> bool:
        """Whether ``feature`` (one of :data:`FEATURES`) is on.

        >>> APIKeyAuth(keys=["sk-test-0123456789abcdef"]).supports("scopes")
        True
        """
        features = self.features()
        if feature not in features:
            raise ValueError(f"unknown feature {feature!r}: use one of {', '.join(FEATURES)}")
        return features[feature]

    def status(self) -> dict[str, Any]:
        """A snapshot for health endpoints and logs; it holds no secret.

        >>> status = APIKeyAuth(keys=[APIKey("sk-test-0123456789abcdef", name="ci")]).status()
        >>> status["mode"], status["key_count"], status["key_ids"]
        ('simple', 1, ['ci'])
        """
        snapshot = self._snapshot
        now = self._clock()
        inactive = sorted(
            entry.key.key_id
            for entry in snapshot.by_digest.values()
            if isinstance(entry.check(now), Rejected)
        )
        return {
            "mode": snapshot.anonymous.mode,
            "environment": self._environment,
            "development_mode": snapshot.development,
            "development_access": self.development_access,
            "key_count": len(snapshot.by_id),
            "key_ids": sorted(snapshot.by_id),
            "inactive_key_ids": inactive,
            "features": self.features(),
            "counters": self._audit.counters().as_dict(),
            "source": self._source.describe() if self._source is not None else None,
            "unavailable": snapshot.unavailable,
        }

    def _development_detail(self) -> str:
        names = self._vars
        api_key, environment = names["api_key"], names["environment"]
        refused = f"{environment}=staging or production refuses to start like this"
        if self._local_only:
            return (
                "no API keys are configured and "
                f"{environment} is not set: development mode serves only this machine "
                "(loopback clients that name it as the host, through no proxy) and refuses every "
                f"other client with 401. Set {api_key} (or pass keys=[...]) to serve them, or "
                f"{environment}=development to open development mode to every client; "
                f"{refused}."
            )
        return (
            f"no API keys are configured and {environment}={self._environment}: development "
            "mode lets every request from every client through unauthenticated. Set "
            f"{api_key} (or pass keys=[...]) before you deploy; {refused}."
        )

    def _no_keys_refused(self) -> str:
        names = self._vars
        if self._from_env:
            where = (
                f"no API key is configured ({names['api_key']}, {names['additional_api_keys']} "
                f"and {names['api_keys_file']} hold none)"
            )
            fix = f"set {names['api_key']} to a long random key"
        else:
            where = "keys= and keys_file hold no key"
            fix = "pass at least one key"
        return (
            f"{where}, and {names['environment']}={self._environment} refuses to start that way "
            f"(without keys it would run in development mode or refuse everything): {fix} "
            "('python -m asgi_apikey keygen' makes one)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and copy: an authenticator holds locks, counters and a live source's
        # connection, which a copy would split or share behind the original's back.
        raise TypeError(
            "an APIKeyAuth cannot be pickled or copied: build one in each process "
            "(APIKeyAuth.from_env(), or keys= with digests) and share its key file or store"
        )

    def __repr__(self) -> str:
        # getattr: a reporter may repr a half-built instance whose __init__ raised.
        snapshot = getattr(self, "_snapshot", None)
        if snapshot is None:
            return "APIKeyAuth(<not built>)"
        return f"APIKeyAuth(mode={snapshot.anonymous.mode!r}, key_count={len(snapshot.by_id)})"


class _LiveSink:
    """The :class:`~asgi_apikey.sources.KeySink` a live source reports to."""

    __slots__ = ("_auth",)

    def __init__(self, auth: APIKeyAuth) -> None:
        self._auth = auth

    def replace(self, keys: Sequence[APIKey]) -> None:
        self._auth._live_replace(keys)

    def change(self, added: Sequence[APIKey], removed: Sequence[str]) -> None:
        self._auth._live_change(added, removed)

    def unavailable(self, detail: str) -> None:
        self._auth._live_unavailable(detail)


def _admitted_live(key: APIKey, by_digest: dict[bytes, KeyEntry], by_id: dict[str, bytes]) -> bool:
    """Whether a live source's key fits beside the others; a clash is logged and skipped.

    A live store checks uniqueness itself, so a clash is with a key given in
    code: that key stays, and the store's is refused until the clash is fixed.
    """
    clash = by_digest.get(key._digest)
    if clash is None and key.key_id not in by_id:
        return True
    emit(
        "error",
        "key_source_conflict",
        {
            "key_id": key.key_id,
            "detail": "a key from the key source is the same key, or has the same key_id, as "
            "a key given in code; the key given in code is kept and the other refused",
        },
    )
    return False


# -- construction helpers -----------------------------------------------------------------


def _overrides(
    mode: object, environment: object, user_tracking: object, request_logging: object
) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if mode is not None:
        if mode not in ("simple", "advanced"):
            raise ConfigurationError(
                f"mode must be 'simple' or 'advanced'{not_shown_unless_word(mode)}",
                setting="mode",
            )
        overrides["auth_mode"] = mode
    if isinstance(environment, str):
        environment = environment.strip().lower()
    if environment is not None:
        if environment not in ENVIRONMENTS:
            raise ConfigurationError(
                f"environment must be one of {', '.join(ENVIRONMENTS)}"
                f"{not_shown_unless_word(environment)}",
                setting="environment",
            )
        overrides["environment"] = environment
    for setting, field, value in (
        ("user_tracking", "enable_user_tracking", user_tracking),
        ("request_logging", "enable_request_logging", request_logging),
    ):
        if value is not None:
            if not isinstance(value, bool):
                shown = f", not {type(value).__name__}" if not isinstance(value, str) else ""
                raise ConfigurationError(
                    f"{setting} must be True or False{shown or not_shown_unless_word(value)}",
                    setting=setting,
                )
            overrides[field] = value
    return overrides


def _without_keys(config: AuthSettings) -> AuthSettings:
    """``config`` without the plain keys of ``API_KEY`` and ``ADDITIONAL_API_KEYS``."""
    return config.model_copy(update={"api_key": None, "additional_api_keys": None})


def _as_key(item: object, where: str) -> APIKey:
    if isinstance(item, APIKey):
        return item
    if not isinstance(item, str):
        raise ConfigurationError(
            f"{where}: a key must be a str or an APIKey, not {type(item).__name__}", where=where
        )
    try:
        return APIKey(item)
    except ConfigurationError as error:
        message, context = f"{where}: {error}", error.context
    # Raised outside the except block: its __context__ would keep the frames
    # that hold the plain key alive, for error reporters that record locals.
    raise ConfigurationError(message, where=where, **context)


def _explicit_keys(keys: object, setting: str = "keys") -> list[tuple[str, APIKey]]:
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise ConfigurationError(
            f"{setting} must be a list of keys such as ['sk-...'], not a single "
            f"{type(keys).__name__}",
            setting=setting,
        )
    return [
        (f"{setting}[{number}]", _as_key(item, f"{setting}[{number}]"))
        for number, item in enumerate(keys)
    ]


def _check_verifiers(verifiers: object) -> tuple[Verifier, ...]:
    if isinstance(verifiers, (str, bytes)) or not isinstance(verifiers, Iterable):
        raise ConfigurationError(
            "verifiers must be a list of callables, such as [check_jwt]", setting="verifiers"
        )
    checked = tuple(verifiers)
    for number, verifier in enumerate(checked):
        if not callable(verifier):
            raise ConfigurationError(
                f"verifiers[{number}] is a {type(verifier).__name__}, not a callable that takes "
                "the token and returns an AuthContext, a Rejected or None",
                setting="verifiers",
            )
        call = getattr(verifier, "__call__", None)  # noqa: B004 - an async __call__ too
        if inspect.iscoroutinefunction(verifier) or inspect.iscoroutinefunction(call):
            raise ConfigurationError(
                f"verifiers[{number}] is async: verifiers run inline on the event loop and "
                "must be plain functions (a signature check, not a network call)",
                setting="verifiers",
            )
    return checked


def _ids(these: dict[bytes, KeyEntry], not_in: dict[bytes, KeyEntry]) -> tuple[str, ...]:
    return tuple(sorted(e.key.key_id for d, e in these.items() if d not in not_in))


def _set_but_empty(names: Sequence[str]) -> str:
    if not names:
        return ""
    verb = "is" if len(names) == 1 else "are"
    return f"{' and '.join(names)} {verb} set but empty (a missing secret?): "


def _check_source(source: object, keys: object, keys_file: object) -> KeySource | None:
    """The authenticator's source: ``source``, else a key file, else the environment."""
    if source is None:
        if keys_file is not None:
            return KeyFileSource(keys_file)  # type: ignore[arg-type]  # it checks the type
        return EnvironmentSource() if keys is None else None
    if keys_file is not None:
        raise ConfigurationError(
            "give keys_file= or source=, not both: source=KeyFileSource(path) is the same "
            "as keys_file=path",
            setting="source",
        )
    if not isinstance(source, KeySource):
        raise ConfigurationError(
            f"source must be a KeySource (EnvironmentSource, KeyFileSource, RedisKeySource, "
            f"...), not {type(source).__name__}",
            setting="source",
        )
    return source


# What a 503 says (to clients, so nothing about the deployment); status() has more.
_NOT_STARTED = "The API key store has not been read yet; try again later"
_STOPPED = "The API key store was stopped with the app"


def _check_clock(clock: object) -> Callable[[], float]:
    if clock is None:
        return time.time
    now = clock() if callable(clock) else None
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not now > 1e9:
        raise ConfigurationError(
            "clock must be a callable returning seconds since the epoch, like time.time "
            "(time.monotonic is not one)",
            setting="clock",
        )
    return clock  # type: ignore[return-value]


def _find(snapshot: KeySnapshot, key_or_name: str | APIKey) -> bytes | None:
    if isinstance(key_or_name, APIKey):
        return key_or_name._digest if key_or_name._digest in snapshot.by_digest else None
    if not isinstance(key_or_name, str):
        return None
    by_name = snapshot.by_id.get(key_or_name)
    if by_name is not None:
        return by_name
    if not key_or_name.isascii():
        return None
    digest = hashlib.sha256(key_or_name.encode("ascii")).digest()
    return digest if digest in snapshot.by_digest else None


# -- the process default, for code migrating from module-level functions ------------------

_default: APIKeyAuth | None = None
_default_lock = threading.Lock()


def set_default(auth: APIKeyAuth) -> None:
    """Make ``auth`` the one :func:`verify_api_key_string` and :func:`get_auth_status` ask."""
    global _default
    with _default_lock:
        _default = auth


def _get_default() -> APIKeyAuth:
    with _default_lock:
        current = _default
    return current if current is not None else APIKeyAuth.from_env()


def verify_api_key_string(token: str, auth: APIKeyAuth | None = None) -> bool:
    """Whether ``token`` is an accepted key right now.

    Without ``auth`` it asks the authenticator of the ``APIKeyMiddleware``
    built last (however it was configured) or the last one
    :meth:`APIKeyAuth.from_env` returned, whichever came last; with neither,
    it builds one with :meth:`APIKeyAuth.from_env`. In development mode no token
    is a key, so this is ``False``.

    >>> verify_api_key_string("sk-x", APIKeyAuth(keys=["sk-test-0123456789abcdef"]))
    False
    """
    return (auth or _get_default()).verify(token) is not None


def get_auth_status(auth: APIKeyAuth | None = None) -> dict[str, Any]:
    """The starter template's status shape, from :meth:`APIKeyAuth.status`.

    ``{"auth_config": {"mode", "features"}, "api_keys_configured", "development_mode"}``;
    ``auth`` defaults as in :func:`verify_api_key_string`.
    """
    current = auth or _get_default()
    features = current.features()
    return {
        "auth_config": {
            "mode": current._mode,
            "features": {
                name: features[name]
                for name in (
                    "user_context",
                    "permissions",
                    "rate_limiting",
                    "user_tracking",
                    "request_logging",
                )
            },
        },
        "api_keys_configured": len(current.key_ids),
        "development_mode": current.is_development_mode,
    }
