"""Key sources: where an authenticator's keys come from, and how they stay current.

An :class:`~asgi_apikey.APIKeyAuth` holds its keys in an immutable local
snapshot (``keys.py``); a source only ever hands it whole key lists or
changes, and the authenticator builds and swaps the new snapshot itself, so
the request path is the same dict lookup whatever the source.

- :class:`EnvironmentSource`: ``API_KEY``, ``ADDITIONAL_API_KEYS`` and the
  file ``API_KEYS_FILE`` names (the default);
- :class:`KeyFileSource`: one TOML key file of digests;
- :class:`LiveKeySource`: the base of sources that keep themselves current
  from a shared store while the app runs, such as
  :class:`asgi_apikey.redis_store.RedisKeySource` (the ``redis`` extra).

The local sources are read when the authenticator is built and again on
:meth:`~asgi_apikey.APIKeyAuth.reload`. A live source is started and stopped
with the app's lifespan (the middleware does it) and pushes every change it
sees to a :class:`KeySink`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .errors import ConfigurationError
from .keys import APIKey
from .settings import AuthSettings, environment_keys, given_variables, load_key_file, variable

__all__ = [
    "EnvironmentSource",
    "KeyFileSource",
    "KeySink",
    "KeySource",
    "LiveKeySource",
    "SourceKeys",
]

#: The fields of :class:`AuthSettings` that name keys.
KEY_FIELDS = ("api_key", "additional_api_keys", "api_keys_file")

Labelled = tuple[str, APIKey]  # a key and where it came from, for error messages


@dataclass(frozen=True, slots=True)
class SourceKeys:
    """What reading a local source found.

    ``configured`` is false only when the source names no key at all (no key
    variable is set): the one case in which an authenticator may run in
    development mode. ``empty`` lists the key variables set to nothing.
    ``keys`` is a tuple or a list of (label, key) pairs, which the
    authenticator reads and never changes.
    """

    keys: Sequence[Labelled]
    configured: bool = True
    empty: tuple[str, ...] = ()


class KeySource:
    """Where an authenticator's keys come from: subclass it, or use one of the sources here.

    A local source implements :meth:`read`; the authenticator calls it with the
    settings it read from the environment, at construction and on ``reload()``.
    """

    #: A short name for ``status()`` and errors.
    kind: ClassVar[str] = "source"
    #: Whether the source keeps itself current while the app runs (see LiveKeySource).
    live: ClassVar[bool] = False

    def read(self, config: AuthSettings) -> SourceKeys:
        """The keys the source holds now, each labelled with where it came from."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What ``APIKeyAuth.status()`` reports of the source: never a secret."""
        return {"kind": self.kind}


class EnvironmentSource(KeySource):
    """``API_KEY``, ``ADDITIONAL_API_KEYS`` and the key file ``API_KEYS_FILE`` names.

    The variables are those of the authenticator's ``settings`` class (a
    prefix, a ``.env`` file). A key variable set to nothing (``API_KEY=``, a
    missing secret) still names a key source: it holds no key, so every
    protected request is refused rather than let through.

    >>> EnvironmentSource().read(AuthSettings()).configured
    False
    """

    kind = "environment"

    def read(self, config: AuthSettings) -> SourceKeys:
        empty = empty_key_variables(config)
        configured = bool(empty) or any(getattr(config, field) is not None for field in KEY_FIELDS)
        return SourceKeys(environment_keys(config), configured=configured, empty=empty)

    def __repr__(self) -> str:
        return "EnvironmentSource()"


class KeyFileSource(KeySource):
    """One TOML key file of digests (the format ``keyfile.py`` describes).

    >>> KeyFileSource("keys.toml")
    KeyFileSource('keys.toml')
    """

    kind = "key_file"

    def __init__(self, path: str | Path) -> None:
        if not isinstance(path, (str, Path)) or not str(path):
            raise ConfigurationError(
                "KeyFileSource takes the path of a TOML key file", setting="keys_file"
            )
        self.path = Path(path)

    def read(self, config: AuthSettings) -> SourceKeys:
        return SourceKeys(load_key_file(self.path, "keys_file"))

    def __repr__(self) -> str:
        return f"KeyFileSource({str(self.path)!r})"


class KeySink(Protocol):
    """What a live source reports to: its authenticator, which swaps in each new snapshot.

    Every call builds a whole new immutable snapshot; a request sees the key
    set before a call or after it, never a mix.
    """

    def replace(self, keys: Sequence[APIKey]) -> None:
        """The source's whole key set, read afresh; it also ends :meth:`unavailable`."""

    def change(self, added: Sequence[APIKey], removed: Sequence[str]) -> None:
        """Keys added (or changed), and the digests (``APIKey.digest``) of keys removed."""

    def unavailable(self, detail: str) -> None:
        """The source's keys can no longer be trusted: refuse them (503) until replace()."""


class LiveKeySource(KeySource):
    """A source that keeps an authenticator current from a store shared by many processes.

    The middleware awaits :meth:`start` when the app's lifespan starts (so a
    store that cannot be reached stops the app from starting, with the
    source's message) and :meth:`stop` when it ends. Between the two the
    source pushes changes to the sink; it never makes a request wait for the
    store. Until it has started, its keys are unavailable: requests that
    present an unknown key get ``503``.
    """

    live = True

    def read(self, config: AuthSettings) -> SourceKeys:
        raise ConfigurationError(
            f"a {type(self).__name__} keeps itself current while the app runs: "
            "it is started with the app's lifespan, not read",
            setting="source",
        )

    async def start(self, sink: KeySink) -> None:
        """Connect, load the whole key set into ``sink``, and follow changes until stop()."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop following changes and close connections. Safe to call twice."""
        raise NotImplementedError


def empty_key_variables(config: AuthSettings) -> tuple[str, ...]:
    """The key variables that are set, but to nothing (``API_KEY=``).

    An empty value counts as unset, but a key variable that is set and empty
    (``API_KEY=${API_KEY}`` with the secret missing), in the environment, a
    ``.env`` file or a secrets directory, still names a key source: it holds no
    key, so every protected request is refused, never let through.
    """
    given = given_variables(type(config))
    names = (
        variable(type(config), field) for field in KEY_FIELDS if getattr(config, field) is None
    )
    return tuple(name for name in names if name in given)
