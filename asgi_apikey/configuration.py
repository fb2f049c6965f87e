"""Configuration: an authenticator's options, its arguments settled over the environment.

Read once, at construction: the mode, the environment and the flags, the
names of the variables behind them, which keys that configuration admits,
the key ring it starts, and what it warns about (no keys, no ``ENVIRONMENT``,
a key a strict environment refuses), in the variable names of its settings.

>>> config, _ = configure(AuthSettings, mode="advanced", environment="production")
>>> config.mode, config.environment, config.user_tracking, config.local_only
('advanced', 'production', True, False)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import arguments
from .audit import emit
from .context import ANONYMOUS, AuthContext
from .errors import ConfigurationError
from .keyring import KeyRing
from .keys import MIN_PRODUCTION_KEY_LENGTH, APIKey, KeyEntry, Verifier, entry_for
from .settings import STRICT_ENVIRONMENTS, AuthSettings, read_settings, variable
from .sources import KeySource, SourceKeys

__all__ = ["Configuration", "configure", "read_source", "set_but_empty", "without_keys"]


@dataclass(frozen=True, slots=True)
class Configuration:
    """The settled options of one authenticator; see :func:`configure`."""

    settings_class: type[AuthSettings]
    overrides: Mapping[str, Any]
    mode: str
    environment: str
    #: ``ENVIRONMENT`` was given (by variable or argument): development mode is open.
    environment_set: bool
    user_tracking: bool
    request_logging: bool
    #: ``ENFORCE_AUTH=true``: the production rules whatever the environment.
    enforced: bool
    #: ``"test"`` under pytest or ``ENVIRONMENT=testing``, else ``"development"``.
    development_label: str
    #: The variable behind each settings field, as this settings class spells it.
    names: Mapping[str, str]

    @property
    def local_only(self) -> bool:
        """Development mode nobody asked for (no ``ENVIRONMENT``) serves this machine only."""
        return not self.environment_set

    @property
    def strict(self) -> bool:
        """``staging`` or ``production`` (or ``ENFORCE_AUTH``): no development mode, no
        short keys."""
        return self.enforced or self.environment in STRICT_ENVIRONMENTS

    @property
    def strict_because(self) -> str:
        """What makes this configuration strict, as the variable that says so."""
        if self.environment in STRICT_ENVIRONMENTS:
            return f"{self.names['environment']}={self.environment}"
        return f"{self.names['enforce_auth']}=true"

    def read(self) -> AuthSettings:
        """The settings read again from the environment, with the same overrides."""
        return read_settings(self.settings_class, **self.overrides)

    def prepare(
        self,
        labelled: Sequence[tuple[str, APIKey]],
        current: Mapping[bytes, KeyEntry] | None = None,
    ) -> tuple[list[KeyEntry], list[str]]:
        """The entries of keys this configuration admits (:meth:`admit`), and their labels.

        An entry in ``current`` (the keys in use) whose key equals the one given
        is reused: a reload of a million keys of which a few changed builds a
        few entries, not a million.
        """
        for label, key in labelled:
            self.admit(key, label)
        entries = []
        for _, key in labelled:
            entry = current.get(key._digest) if current is not None else None
            entries.append(
                entry if entry is not None and entry.key == key else entry_for(key, self.mode)
            )
        return entries, [label for label, _ in labelled]

    def admit(self, key: APIKey, label: str) -> None:
        """Raise :class:`ConfigurationError` if this configuration refuses ``key``.

        Only a strict environment refuses a key (a short one); a key's metadata
        is carried in every mode.
        """
        if self.strict and key._short:
            raise ConfigurationError(
                f"{label} is shorter than {MIN_PRODUCTION_KEY_LENGTH} characters, which "
                f"{self.strict_because} refuses: use a long random "
                "key ('python -m asgi_apikey keygen' makes one)",
                where=label,
                key_id=key.key_id,
            )

    def key_ring(
        self,
        *,
        verifiers: tuple[Verifier, ...],
        clock: Callable[[], float],
        report_verifier_failure: Callable[[str, str], None],
        warn_when_emptied: bool,
    ) -> KeyRing:
        """An empty key ring whose anonymous contexts carry this configuration's modes."""
        mode = self.mode
        return KeyRing(
            mode=mode,
            anonymous=ANONYMOUS if mode == "simple" else AuthContext(False, mode=mode),
            development_anonymous=AuthContext(False, mode=self.development_label),
            local_only=self.local_only,
            verifiers=verifiers,
            clock=clock,
            report_verifier_failure=report_verifier_failure,
            warn_when_emptied=warn_when_emptied,
        )

    def warn_without_keys(
        self, *, development: bool, unguarded: bool, empty: Sequence[str]
    ) -> None:
        """Log the one warning of an authenticator built without keys, if it was.

        ``unguarded``: no key, no verifier and no live source; ``empty``: the
        key variables set to nothing.
        """
        if development:
            access = "local" if self.local_only else "open"
            detail = self.development_detail()
            emit(
                "warning",
                "development_mode",
                {"mode": self.development_label, "access": access, "detail": detail},
            )
        elif unguarded:
            emit("warning", "no_keys", {"detail": self.no_keys_detail(empty)})

    def development_detail(self) -> str:
        """The ``development_mode`` warning: who is served, and how to change it."""
        api_key, environment = self.names["api_key"], self.names["environment"]
        refused = f"{environment}=staging or production refuses to start like this"
        if self.local_only:
            return (
                "no API keys are configured and "
                f"{environment} is not set: development mode serves only this machine "
                "(loopback clients that name it as the host, through no proxy) and refuses every "
                f"other client with 401. Set {api_key} (or pass keys=[...]) to serve them, or "
                f"{environment}=development to open development mode to every client; "
                f"{refused}."
            )
        return (
            f"no API keys are configured and {environment}={self.environment}: development "
            "mode lets every request through, from every client, unauthenticated. Set "
            f"{api_key} (or pass keys=[...]) before you deploy; {refused}."
        )

    def no_keys_detail(self, empty: Sequence[str]) -> str:
        """The ``no_keys`` warning: key sources that hold no key, ``empty`` the variables
        set to nothing (see :func:`set_but_empty`)."""
        return (
            f"{set_but_empty(empty)}the configured key sources hold no key, so every "
            "protected request is refused; add keys, or leave every key source unset for "
            "development mode"
        )

    def environment_unset_detail(self) -> str:
        """What to do when ``ENVIRONMENT`` is not set (it counts as development)."""
        environment = self.names["environment"]
        return (
            f"{environment} is not set, so it counts as development: set it, and to "
            "production in production, so the production rules apply"
        )

    def short_key_detail(self, key_id: str) -> str:
        """The warning for a key a strict environment (:attr:`strict`) would refuse."""
        return (
            f"key {key_id!r} is shorter than {MIN_PRODUCTION_KEY_LENGTH} characters, which "
            f"{self.names['environment']}={' and '.join(STRICT_ENVIRONMENTS)} refuse"
        )

    def no_keys_refused(self, from_env: bool) -> str:
        """Why a strict environment without keys refuses to start, and the fix."""
        names = self.names
        if from_env:
            where = (
                f"no API key is configured ({names['api_key']}, {names['additional_api_keys']} "
                f"and {names['api_keys_file']} hold none)"
            )
            fix = f"set {names['api_key']} to a long random key"
        else:
            where = "keys= and keys_file hold no key"
            fix = "pass at least one key"
        return (
            f"{where}, and {self.strict_because} refuses to start that way "
            f"(without keys it would run in development mode or refuse everything): {fix} "
            "('python -m asgi_apikey keygen' makes one)"
        )


def configure(
    settings: object,
    *,
    mode: object = None,
    environment: object = None,
    user_tracking: object = None,
    request_logging: object = None,
) -> tuple[Configuration, AuthSettings]:
    """The configuration of these arguments over ``settings``, and the settings as read."""
    if not (isinstance(settings, type) and issubclass(settings, AuthSettings)):
        raise ConfigurationError(
            "settings must be AuthSettings or a subclass of it (the class, not an instance)",
            setting="settings",
        )
    given = arguments.overrides(mode, environment, user_tracking, request_logging)
    config = read_settings(settings, **given)
    environment_name = config.environment or "development"
    configuration = Configuration(
        settings_class=settings,
        overrides=given,
        mode=config.auth_mode,
        environment=environment_name,
        environment_set=config.environment is not None,
        user_tracking=config.user_tracking,
        request_logging=config.enable_request_logging,
        enforced=config.enforce_auth,
        development_label="test"
        if _under_test() or environment_name == "testing"
        else "development",
        names={field: variable(settings, field) for field in AuthSettings.model_fields},
    )
    return configuration, config


def read_source(source: KeySource | None, config: AuthSettings) -> SourceKeys:
    """The keys ``source`` holds under ``config`` (none without a source), checked."""
    if source is None:
        return SourceKeys(())
    read = source.read(config)
    if not isinstance(read, SourceKeys):
        raise ConfigurationError(
            f"{type(source).__name__}.read() must return SourceKeys, not {type(read).__name__}",
            setting="source",
        )
    return read


def without_keys(config: AuthSettings) -> AuthSettings:
    """``config`` without the plain keys of ``API_KEY`` and ``ADDITIONAL_API_KEYS``."""
    return config.model_copy(update={"api_key": None, "additional_api_keys": None})


def set_but_empty(names: Sequence[str]) -> str:
    """The start of a message naming key variables that are set but empty, or ``""``."""
    if not names:
        return ""
    verb = "is" if len(names) == 1 else "are"
    return f"{' and '.join(names)} {verb} set but empty (a missing secret?): "


def _under_test() -> bool:
    return "pytest" in sys.modules or "PYTEST_CURRENT_TEST" in os.environ
