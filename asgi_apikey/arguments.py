"""Checks of what code passes to APIKeyAuth: each bad value is a ConfigurationError that names it.

Pure functions over the arguments, with no environment and no logging.

>>> explicit_keys(["sk-test-0123456789abcdef"])[0][0]
'keys[0]'
>>> explicit_keys("sk-test-0123456789abcdef")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
asgi_apikey.errors.ConfigurationError: keys must be a list of keys ..., not a single str
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from typing import Any

from .errors import ConfigurationError, not_shown_unless_word
from .keys import APIKey, Verifier
from .settings import ENVIRONMENTS
from .sources import EnvironmentSource, KeyFileSource, KeySource

__all__ = [
    "as_key",
    "check_clock",
    "check_source",
    "check_verifiers",
    "explicit_keys",
    "overrides",
]


def overrides(
    mode: object, environment: object, user_tracking: object, request_logging: object
) -> dict[str, Any]:
    """The settings fields that the arguments set, checked, to win over the environment."""
    given: dict[str, Any] = {}
    if mode is not None:
        if mode not in ("simple", "advanced"):
            raise ConfigurationError(
                f"mode must be 'simple' or 'advanced'{not_shown_unless_word(mode)}",
                setting="mode",
            )
        given["auth_mode"] = mode
    if isinstance(environment, str):
        environment = environment.strip().lower()
    if environment is not None:
        if environment not in ENVIRONMENTS:
            raise ConfigurationError(
                f"environment must be one of {', '.join(ENVIRONMENTS)}"
                f"{not_shown_unless_word(environment)}",
                setting="environment",
            )
        given["environment"] = environment
    for setting, field, value in (
        ("user_tracking", "enable_user_tracking", user_tracking),
        ("request_logging", "enable_request_logging", request_logging),
    ):
        if value is not None:
            check_flag(value, setting)
            given[field] = value
    return given


def check_flag(value: object, setting: str) -> None:
    """``value`` must be a bool; the error never quotes what may be a key."""
    if not isinstance(value, bool):
        raise ConfigurationError(
            f"{setting} must be True or False{not_shown_unless_word(value)}", setting=setting
        )


def as_key(item: object, where: str) -> APIKey:
    """``item`` as an :class:`APIKey`; errors are prefixed with ``where``."""
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


def explicit_keys(keys: object, setting: str = "keys") -> list[tuple[str, APIKey]]:
    """Each key of ``keys`` with its label (``keys[0]``, ...)."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise ConfigurationError(
            f"{setting} must be a list of keys such as ['sk-...'], not a single "
            f"{type(keys).__name__}",
            setting=setting,
        )
    return [
        (f"{setting}[{number}]", as_key(item, f"{setting}[{number}]"))
        for number, item in enumerate(keys)
    ]


def check_verifiers(verifiers: object) -> tuple[Verifier, ...]:
    """The verifiers, each a plain (not async) callable."""
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


def check_source(source: object, keys: object, keys_file: object) -> KeySource | None:
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


def check_clock(clock: object) -> Callable[[], float]:
    """``clock``, a callable returning seconds since the epoch; ``None`` is ``time.time``."""
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
