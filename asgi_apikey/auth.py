"""APIKeyAuth: the authenticator. It owns the key set, the mode and the settings.

Built from explicit keys or from the environment (``settings.py``), it decides
the mode once, at construction:

- keys (or verifiers) configured: keys are enforced, under pytest too;
- none: development mode, where every request passes anonymous
  (``mode="development"``, ``"test"`` under pytest), with one warning; and
  ``ENVIRONMENT=production`` refuses to start that way.

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

import structlog

from .audit import Audit, Counters
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
    entry_for,
    index,
)
from .settings import (
    ENVIRONMENTS,
    AuthSettings,
    environment_keys,
    given_variables,
    load_key_file,
    read_settings,
    variable,
)

__all__ = ["FEATURES", "APIKeyAuth", "KeyChanges", "get_auth_status", "verify_api_key_string"]

_log = structlog.get_logger("asgi_apikey")

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
        keys_file: a TOML key file (digests only) read now and on :meth:`reload`.
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

        self._from_env = keys is None and keys_file is None
        self._keys_file = Path(keys_file) if keys_file is not None else None
        explicit = [] if keys is None else _explicit_keys(keys)
        sourced = environment_keys(config) if self._from_env else self._file_keys()
        self._has_file = (
            self._keys_file is not None if not self._from_env else config.api_keys_file is not None
        )
        entries, labels = self._prepare([*explicit, *sourced])
        # The digests that came from a source reload() re-reads (the environment,
        # a key file); reload() replaces these and leaves the others as they are.
        self._sourced = frozenset(key._digest for _, key in sourced)

        # Development mode only when no key source is configured at all. A source
        # that yields no key (keys=[], an empty file) refuses every request instead.
        self._empty = _empty_key_variables(config) if self._from_env else ()
        development = (
            not self._verifiers and self._from_env and not _names_a_key_source(config, self._empty)
        )
        if self._environment == "production" and not entries and not self._verifiers:
            raise ConfigurationError(self._no_keys_in_production())
        label = "test" if _under_test() or self._environment == "testing" else "development"
        self._anonymous = {
            False: ANONYMOUS if self._mode == "simple" else AuthContext(False, mode=self._mode),
            True: AuthContext(authenticated=False, mode=label),
        }
        self._snapshot = self._snapshot_of(entries, labels, development)
        if development:
            _log.warning(
                "development_mode",
                mode=label,
                detail="no API keys are configured, so every request passes unauthenticated; "
                f"set {self._vars['api_key']} (or pass keys=[...]) before you deploy. "
                f"{self._vars['environment']}=production refuses to start like this.",
            )
        elif not entries and not self._verifiers:
            _log.warning(
                "no_keys",
                detail=f"{_set_but_empty(self._empty)}the configured key sources hold no key, so "
                "every protected request is refused; add keys, or leave every key source "
                "unset for development mode",
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

    def _file_keys(self) -> list[tuple[str, APIKey]]:
        if self._keys_file is None:
            return []
        return load_key_file(self._keys_file, "keys_file")

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
        if self._environment == "production" and key._short:
            raise ConfigurationError(
                f"{label} is shorter than {MIN_PRODUCTION_KEY_LENGTH} characters, which "
                f"{self._vars['environment']}=production refuses: use a long random key "
                "('python -m asgi_apikey keygen' makes one)",
                where=label,
                key_id=key.key_id,
            )

    def _snapshot_of(
        self, entries: Sequence[KeyEntry], labels: Sequence[str], development: bool
    ) -> KeySnapshot:
        by_digest, by_id = index(entries, labels)
        return KeySnapshot(
            by_digest=by_digest,
            by_id=by_id,
            anonymous=self._anonymous[development],
            development=development,
            verifiers=self._verifiers,
            clock=self._clock,
            report_verifier_failure=self._audit.verifier_failed,
        )

    def _swap(
        self, entries: Sequence[KeyEntry], labels: Sequence[str], *, unconfigured: bool = False
    ) -> KeyChanges:
        # Called with the lock held: build first (it may raise), then one assignment.
        # Development mode only ever ends: once keys were enforced, none means
        # every request is refused, never that every request passes.
        old = self._snapshot
        development = old.development and not entries and unconfigured
        new = self._snapshot_of(entries, labels, development)
        self._snapshot = new
        if not entries and not development and not self._verifiers and old.by_digest:
            _log.warning(
                "no_keys",
                detail="the last key was removed, so every protected request is refused",
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
        (built from ``keys=`` without ``keys_file``): use :meth:`replace_keys`.
        """
        if not self._from_env and self._keys_file is None:
            raise ConfigurationError(
                "reload() re-reads the environment or keys_file, and this APIKeyAuth was "
                "built from keys= alone: use replace_keys() to change its keys",
                setting="reload",
            )
        with self._lock:
            unconfigured = False
            if self._from_env:
                config = read_settings(self._settings_class, **self._overrides)
                sourced = environment_keys(config)
                self._empty = _empty_key_variables(config)
                unconfigured = not _names_a_key_source(config, self._empty)
            else:
                sourced = self._file_keys()
            fresh, fresh_labels = self._prepare(sourced)
            kept = [e for e in self._snapshot.by_digest.values() if e.digest not in self._sourced]
            changes = self._swap(
                [*kept, *fresh],
                [*(e.key.key_id for e in kept), *fresh_labels],
                unconfigured=unconfigured,
            )
            self._sourced = frozenset(entry.digest for entry in fresh)
            return changes

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
        """True when built without keys: every request passes anonymous."""
        return self._snapshot.development

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
            "key_count": len(snapshot.by_id),
            "key_ids": sorted(snapshot.by_id),
            "inactive_key_ids": inactive,
            "features": self.features(),
            "counters": self._audit.counters().as_dict(),
        }

    def _no_keys_in_production(self) -> str:
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
            f"{where}, and {names['environment']}=production refuses to start that way "
            f"(without keys it would run in development mode or refuse everything): {fix} "
            "('python -m asgi_apikey keygen' makes one)"
        )

    def __repr__(self) -> str:
        # getattr: a reporter may repr a half-built instance whose __init__ raised.
        snapshot = getattr(self, "_snapshot", None)
        if snapshot is None:
            return "APIKeyAuth(<not built>)"
        return f"APIKeyAuth(mode={snapshot.anonymous.mode!r}, key_count={len(snapshot.by_id)})"


# -- construction helpers -----------------------------------------------------------------


def _overrides(
    mode: object, environment: object, user_tracking: object, request_logging: object
) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if mode is not None:
        if mode not in ("simple", "advanced"):
            raise ConfigurationError(
                f"mode must be 'simple' or 'advanced', not {mode!r}", setting="mode"
            )
        overrides["auth_mode"] = mode
    if isinstance(environment, str):
        environment = environment.strip().lower()
    if environment is not None:
        if environment not in ENVIRONMENTS:
            raise ConfigurationError(
                f"environment must be one of {', '.join(ENVIRONMENTS)}, not {environment!r}",
                setting="environment",
            )
        overrides["environment"] = environment
    for setting, field, value in (
        ("user_tracking", "enable_user_tracking", user_tracking),
        ("request_logging", "enable_request_logging", request_logging),
    ):
        if value is not None:
            if not isinstance(value, bool):
                raise ConfigurationError(
                    f"{setting} must be True or False, not {value!r}", setting=setting
                )
            overrides[field] = value
    return overrides


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


_KEY_SOURCES = ("api_key", "additional_api_keys", "api_keys_file")


def _set_but_empty(names: Sequence[str]) -> str:
    if not names:
        return ""
    verb = "is" if len(names) == 1 else "are"
    return f"{' and '.join(names)} {verb} set but empty (a missing secret?): "


def _names_a_key_source(config: AuthSettings, empty: Sequence[str]) -> bool:
    """Whether a key variable is set: to keys, or to nothing (``empty``, which holds none)."""
    return bool(empty) or any(getattr(config, field) is not None for field in _KEY_SOURCES)


def _empty_key_variables(config: AuthSettings) -> tuple[str, ...]:
    """The key variables that are set, but to nothing (``API_KEY=``).

    An empty value counts as unset, but a key variable that is set and empty
    (``API_KEY=${API_KEY}`` with the secret missing), in the environment, a
    ``.env`` file or a secrets directory, still names a key source: it holds no
    key, so every protected request is refused, never let through.
    """
    given = given_variables(type(config))
    names = (
        variable(type(config), field) for field in _KEY_SOURCES if getattr(config, field) is None
    )
    return tuple(name for name in names if name in given)


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
