"""APIKeyAuth: the authenticator, built from arguments or settings; it composes the parts.

- :mod:`~asgi_apikey.configuration` settles the arguments (checked by
  :mod:`~asgi_apikey.arguments`) over the environment once, at construction:
  the mode, ``ENVIRONMENT``, the flags, and which keys they admit;
- :class:`~asgi_apikey.keyring.KeyRing` holds the current snapshot: each
  rotation swaps in a whole new :class:`~asgi_apikey.keys.KeySnapshot`;
- the source (:mod:`~asgi_apikey.sources`) gives the keys; a live one is
  followed into the ring by :class:`~asgi_apikey.live.LiveFollower`;
- the verifiers, the :class:`~asgi_apikey.audit.Audit` the middleware reports
  to, and :mod:`~asgi_apikey.status` for features and status.

Without keys it runs in development mode (``"test"`` under pytest), which
serves only this machine unless ``ENVIRONMENT`` asks for it, and which
``staging`` and ``production`` refuse. Once keys were enforced it never falls
back to it: removing every key refuses every request. The starter
template's functions are in :mod:`~asgi_apikey.compat`; the process default
they ask (:func:`set_default`) is here, as :meth:`APIKeyAuth.from_env` sets it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .arguments import as_key, check_clock, check_source, check_verifiers, explicit_keys
from .audit import Audit
from .collector import bulk_load, release
from .configuration import Configuration, configure, read_source, without_keys
from .context import AuthContext
from .credentials import is_b64token
from .errors import ConfigurationError
from .keyring import KeyChanges
from .keys import Accepted, APIKey, KeySnapshot, Rejected, Verifier
from .live import NOT_STARTED, LiveFollower
from .settings import AuthSettings
from .sources import EnvironmentSource, KeyFileSource, KeySource, LiveKeySource, SourceKeys
from .status import FEATURES, Reports

# Sources whose read() returns a list nothing else holds (see reload()).
_OWN_SOURCES = (EnvironmentSource, KeyFileSource)

if TYPE_CHECKING:  # at run time, from compat on first use (__getattr__ below): no cycle
    from .compat import get_auth_status, verify_api_key_string

__all__ = [
    "FEATURES",
    "APIKeyAuth",
    "KeyChanges",
    "get_auth_status",
    "set_default",
    "verify_api_key_string",
]


class APIKeyAuth(Reports):
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
        mode: ``"simple"`` or ``"advanced"`` (user tracking on by default); metadata in both.
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
        options, config = configure(
            settings,
            mode=mode,
            environment=environment,
            user_tracking=user_tracking,
            request_logging=request_logging,
        )
        self._configuration: Configuration = options
        self._limit_plans = []  # the rate limits of each middleware built on this one
        self._audit = Audit(
            log_successes=options.request_logging,
            track_users=options.user_tracking,
            failure_log_limit=failure_log_limit,
            failure_log_interval=failure_log_interval,
            failure_log_per_client=failure_log_per_client,
        )
        self._verifiers = check_verifiers(verifiers)
        self._clock: Callable[[], float] = check_clock(clock)
        # Plain keys are not kept once hashed: reload() reads the environment again.
        self._config = without_keys(config)
        self._source = check_source(source, keys, keys_file)
        self._from_env = isinstance(self._source, EnvironmentSource)
        self._live = isinstance(self._source, LiveKeySource)
        # A bulk load: the collector paused, a large key set frozen (collector.py).
        with bulk_load():
            explicit = [] if keys is None else explicit_keys(keys)
            read = self._read_source(config)
            self._has_file = isinstance(self._source, KeyFileSource) or (
                self._from_env and config.api_keys_file is not None
            )
            entries, labels = options.prepare([*explicit, *read.keys])
            self._empty = read.empty
            # Development mode only when no key source is configured at all. A source
            # that yields no key (keys=[], an empty file) refuses every request instead.
            development = not self._verifiers and keys is None and not read.configured
            unguarded = not entries and not self._verifiers and not self._live
            if options.strict and unguarded:
                # From the environment, the variables to set (the starter template named them).
                fields = ("api_key", "additional_api_keys", "api_keys_file")
                names = [options.names[field] for field in fields] if self._from_env else []
                raise ConfigurationError(
                    options.no_keys_refused(self._from_env),
                    setting="environment",
                    **({"variables": names} if names else {}),
                )
            # The digests from the source: reload() and a live source replace only these.
            # A live source's keys are unavailable until it has started and loaded them.
            self._ring = options.key_ring(
                verifiers=self._verifiers,
                clock=self._clock,
                report_verifier_failure=self._audit.verifier_failed,
                warn_when_emptied=not self._live,
            )
            self._ring.fill(
                entries,
                labels,
                sourced=frozenset(key._digest for _, key in read.keys),
                development=development,
                unavailable=NOT_STARTED if self._live else None,
            )
        self._sink = LiveFollower(self._ring, self._source)
        options.warn_without_keys(development=development, unguarded=unguarded, empty=self._empty)

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

    def _read_source(self, config: AuthSettings) -> SourceKeys:
        # keys= alone, or a live source: nothing to read now
        return SourceKeys(()) if self._live else read_source(self._source, config)

    # -- the request path ---------------------------------------------------------------

    @property
    def snapshot(self) -> KeySnapshot:
        """The current immutable key set. Read it once per request."""
        return self._ring.snapshot

    def resolve(self, token: bytes) -> Accepted | Rejected | None:
        """What a presented token (raw bytes) is: accepted, refused with a reason, or unknown."""
        return self._ring.snapshot.resolve(token)

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
        result = self._ring.snapshot.resolve(raw)
        return result.context if isinstance(result, Accepted) else None

    # -- rotation (the ring does the swapping) ------------------------------------------

    def add_key(self, key: str | APIKey) -> str:
        """Add a key (atomically) and return its ``key_id``.

        Raises :class:`ConfigurationError` if the key or its key_id is already present.
        """
        new = as_key(key, "add_key")
        self._configuration.admit(new, "add_key")
        self._ring.add(self._ring.entry(new))
        return new.key_id

    def remove_key(self, key_or_name: str | APIKey) -> bool:
        """Remove a key given as the plain key, an :class:`APIKey` or its name / key_id.

        Returns ``False`` when nothing matched.
        """
        return self._ring.remove(key_or_name)

    def replace_keys(self, keys: Iterable[str | APIKey]) -> KeyChanges:
        """Swap in a whole new key set at once; requests see the old set or the new one.

        The new keys count as given in code: a later :meth:`reload` adds the
        keys of the sources to them, and never takes them away.
        """
        with bulk_load():
            entries, labels = self._configuration.prepare(
                explicit_keys(keys, "replace_keys"), self._ring.snapshot.by_digest
            )
            return self._ring.replace(entries, labels)

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
        # Read with the writer lock held: two reloads cannot land in the opposite order.
        with self._ring.lock, bulk_load():
            config = self._configuration.read() if self._from_env else self._config
            read = self._read_source(config)
            self._empty, configured = read.empty, read.configured
            # A source of this package hands over a new list, released below a
            # slice at a time; another's sequence may be its own, and is copied.
            keys = read.keys
            del read
            own = type(self._source) in _OWN_SOURCES
            labelled = keys if own and isinstance(keys, list) else list(keys)
            del keys
            fresh, labels = self._configuration.prepare(labelled, self._ring.snapshot.by_digest)
            changes = self._ring.replace_sourced(fresh, labels, unconfigured=not configured)
            # A million keys read again, most of them equal to those in use: the
            # new copies are freed a slice at a time here, not in one long call.
            for done in (labelled, labels, fresh):
                release(done)
            return changes

    async def areload(self) -> KeyChanges:
        """:meth:`reload` in a worker thread, for code on the event loop.

        Reading and indexing a large key file takes a while (a million keys:
        seconds); run there, it leaves the loop serving requests with the
        current keys meanwhile. Same result and errors as :meth:`reload`.

        >>> import asyncio
        >>> auth = APIKeyAuth(keys=["sk-test-0123456789abcdef"])
        >>> try:
        ...     asyncio.run(auth.areload())
        ... except ConfigurationError as error:
        ...     print(error.context)
        {'setting': 'reload'}
        """
        return await asyncio.to_thread(self.reload)

    # -- a live source (the follower applies what it reports) ---------------------------

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
        await self._sink.start()

    async def stop(self) -> None:
        """Stop a live source; its keys are unavailable (503) from then on. Safe to call twice."""
        await self._sink.stop()

    def refused_unavailable(self) -> None:
        """Called by the middleware for each 503: say once if the source was never started."""
        self._sink.refused_unavailable()

    # -- pickling and repr ---------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and copy: an authenticator holds locks, counters and a live source's
        # connection, which a copy would split or share behind the original's back.
        raise TypeError(
            "an APIKeyAuth cannot be pickled or copied: build one in each process "
            "(APIKeyAuth.from_env(), or keys= with digests) and share its key file or store"
        )

    def __repr__(self) -> str:
        # getattr: a reporter may repr a half-built instance whose __init__ raised.
        ring = getattr(self, "_ring", None)
        if ring is None:
            return "APIKeyAuth(<not built>)"
        snapshot = ring.snapshot
        return f"APIKeyAuth(mode={snapshot.anonymous.mode!r}, key_count={len(snapshot.by_id)})"


# -- the process default ------------------------------------------------------------------
# The authenticator that the starter template's functions (compat.py) ask when given
# none: the one from_env() returned or the middleware built last. It lives here
# because from_env() sets it.

_default: APIKeyAuth | None = None
_default_lock = threading.Lock()


def set_default(auth: APIKeyAuth) -> None:
    """Make ``auth`` the one :func:`verify_api_key_string` and :func:`get_auth_status` ask."""
    global _default
    with _default_lock:
        _default = auth


def __getattr__(name: str) -> object:
    # The starter template's functions, still importable from here: compat.py is
    # above this module, so they are looked up there on first use.
    if name in ("get_auth_status", "verify_api_key_string"):
        from . import compat

        return getattr(compat, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
