"""RateLimits: which limits apply to which request, configured once, looked up in O(1).

A request made with a key is limited by the first of these that exists:

1. the key's own ``limit`` (``APIKey(..., limit=...)``, the key file, the
   Redis record; ``UNLIMITED`` exempts the key);
2. the limit of the first scope in ``scopes`` (in the order given) the key holds;
3. ``default``.

An anonymous request (a public or optional path without a key) is limited
per client address by ``anonymous``, when set. A path in ``paths`` adds its
own limit on that path, for each caller apart (each key, or each client
address): a request there must pass both. A path limit covers its path and
every path below it, like the rules, and judges every reading of a path as
the rules do (:class:`~asgi_apikey.paths.RuleTable`).

:class:`LimitPlan` is what one middleware compiles from a :class:`RateLimits`:
the request path asks it for a request's checks.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from ..arguments import check_flag
from ..context import check_scopes
from ..errors import ConfigurationError, not_shown_unless_word
from ..paths import DEFAULT_MAX_PATH_LENGTH, Access, RuleTable
from .limits import RateLimit, as_rate_limit
from .local import Check, LocalLimiter
from .shared import SharedLimiter

__all__ = ["LimitPlan", "RateLimits"]

LimitValue = RateLimit | str | Mapping[str, Any]


class RateLimits:
    """The rate limits of a middleware: defaults, tiers by scope, paths, anonymous clients.

    >>> limits = RateLimits("60/minute", scopes={"pro": "600/minute"}, anonymous="10/minute")
    >>> limits.default, limits.anonymous
    (RateLimit('60/minute'), RateLimit('10/minute'))

    Parameters:
        default: the limit of keys without their own (``None``: those keys are
            not limited).
        scopes: scope -> limit, for keys without their own limit: the first
            scope (in this order) that a key holds gives its limit.
        paths: path -> limit on that path (and below), for each caller apart,
            on top of the caller's own limit.
        anonymous: the limit of each client address on public and optional
            paths, for requests without a key (``None``: not limited). Behind
            a proxy the address is what the server puts in the scope: run
            uvicorn with ``--proxy-headers --forwarded-allow-ips`` set to the
            proxy, or every client shares the proxy's address.
        headers: also send ``RateLimit`` and ``RateLimit-Policy`` on admitted
            responses (refusals always carry them); never over the app's own.
        shared: a limiter many instances share, such as
            :class:`~asgi_apikey.redis_store.RedisRateLimiter`; ``None``
            limits each process alone.
        clock: integer nanoseconds, for tests (drives rates and quota windows).
    """

    __slots__ = ("anonymous", "clock", "default", "headers", "paths", "scopes", "shared")

    def __init__(
        self,
        default: LimitValue | None = None,
        *,
        scopes: Mapping[str, LimitValue] | None = None,
        paths: Mapping[str, LimitValue] | None = None,
        anonymous: LimitValue | None = None,
        headers: bool = False,
        shared: SharedLimiter | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.default = _limit(default, "rate_limits default")
        self.anonymous = _limit(anonymous, "rate_limits anonymous")
        by_scope = _limits_by_name(scopes, "scopes", "a scope", "{'pro': '600/minute'}")
        check_scopes(list(by_scope), "rate_limits scopes", setting="scopes")
        self.scopes: tuple[tuple[str, RateLimit], ...] = tuple(by_scope.items())
        self.paths = _limits_by_name(paths, "paths", "a path", "{'/v1/chat': '10/minute'}")
        check_flag(headers, "headers")
        self.headers = headers
        if shared is not None and not isinstance(shared, SharedLimiter):
            raise ConfigurationError(
                "rate_limits shared must be a shared limiter such as "
                f"RedisRateLimiter(url), not {type(shared).__name__}",
                setting="shared",
            )
        self.shared = shared
        if clock is not None and not callable(clock):
            raise ConfigurationError("rate_limits clock must be callable", setting="clock")
        self.clock = clock

    def describe(self) -> dict[str, Any]:
        """The configuration as data (for ``check`` and logs); no secret."""
        return {
            "default": None if self.default is None else self.default.as_data(),
            "scopes": {scope: limit.as_data() for scope, limit in self.scopes},
            "paths": {path: limit.as_data() for path, limit in self.paths.items()},
            "anonymous": None if self.anonymous is None else self.anonymous.as_data(),
            "headers": self.headers,
            "shared": None if self.shared is None else self.shared.describe(),
        }

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.describe().items() if v not in (None, {}, False)}
        return f"RateLimits({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _limits_by_name(
    given: Mapping[str, LimitValue] | None, setting: str, what: str, example: str
) -> dict[str, RateLimit]:
    """``scopes=`` or ``paths=``: each name with its limit, checked (in the order given)."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise ConfigurationError(
            f"rate_limits {setting} must map {what} to its limit, such as {example}",
            setting=setting,
        )
    return {
        name: _required(limit, _entry(setting, name, index))
        for index, (name, limit) in enumerate(given.items())
    }


def _entry(table: str, name: object, index: int) -> str:
    # A scope or a path is quoted only when it cannot be a key pasted in the wrong
    # place (a short word); otherwise the entry is named by its position.
    shown = not_shown_unless_word(name).removeprefix(", not ")
    if shown.startswith("'"):
        return f"rate_limits {table}[{shown}]"
    return f"rate_limits {table} (entry {index + 1})"


def _limit(value: object, where: str) -> RateLimit | None:
    limit = as_rate_limit(value, where)
    return None if limit is None or limit.unlimited else limit


def _required(value: object, where: str) -> RateLimit:
    limit = as_rate_limit(value, where)
    if limit is None:
        raise ConfigurationError(f"{where} needs a limit, such as '10/minute'", setting="limit")
    return limit


#: Tag sets whose longest path is remembered (see LimitPlan.path_limit).
_MAX_TAG_SETS = 256


def _check(fields: tuple[Hashable, RateLimit, str]) -> Check:
    # A Check without NamedTuple's Python-level __new__: this runs once per request.
    return tuple.__new__(Check, fields)


class LimitPlan:
    """The limits of one middleware, compiled: asked once per request for its checks.

    With no :class:`RateLimits` only the keys' own limits apply.
    """

    __slots__ = (
        "__weakref__",
        "_by_tags",
        "anonymous",
        "configured",
        "default",
        "headers",
        "local",
        "path_limits",
        "path_table",
        "path_tags",
        "scopes",
        "shared",
    )

    def __init__(
        self, config: RateLimits | None, max_path_length: int = DEFAULT_MAX_PATH_LENGTH
    ) -> None:
        if config is not None and not isinstance(config, RateLimits):
            raise ConfigurationError(
                f"rate_limits must be a RateLimits, not {type(config).__name__}",
                setting="rate_limits",
            )
        self.configured = config is not None and bool(
            config.default or config.scopes or config.paths or config.anonymous
        )
        config = config or RateLimits()
        self.default = config.default
        self.scopes = config.scopes
        self.anonymous = config.anonymous
        self.headers = config.headers
        self.shared = config.shared
        self.local = LocalLimiter(config.clock)
        self.path_limits = config.paths
        # The same reading of paths as the rules: a path limit applies when any reading
        # of the request path is under it (the strictest, as for protected rules). Each
        # path's rule requires a tag of its own as a scope, because the strictest reading
        # unites the scopes of every rule its readings fall under (inner rules inherit
        # outer ones), while its path is only the first reading's ('/' for '//v1/chat')
        # in canonical form ('/v1/chat' for a configured '/v1/chat/').
        self.path_tags = {
            f"rate-limit-path-{index}": (path, limit)
            for index, (path, limit) in enumerate(config.paths.items())
        }
        self._by_tags: dict[frozenset[str], tuple[str, RateLimit]] = {}
        self.path_table = None
        problem = None
        if config.paths:
            try:
                self.path_table = RuleTable(
                    protected={path: {tag} for tag, (path, _) in self.path_tags.items()},
                    default="public",
                    max_path_length=max_path_length,
                    refuse=False,  # a path the rules serve (public) still meets its limit
                )
            except ConfigurationError as error:  # it says "protected:", the rules' setting
                problem = str(error).removeprefix("protected: ")
        if problem is not None:  # raised outside the except block: no chained error
            raise ConfigurationError(f"rate_limits paths: {problem}", setting="paths")

    def limit_of_key(self, own: RateLimit | None, scopes: frozenset[str]) -> RateLimit | None:
        """The limit of a key whose own is ``own`` and which holds ``scopes``."""
        if own is not None:
            return None if own.unlimited else own
        for scope, limit in self.scopes:
            if scope in scopes:
                return limit
        return self.default

    def path_limit(
        self, path: str, root: str, mounts: tuple[str, ...] = ()
    ) -> tuple[str, RateLimit] | None:
        """The path limit over ``path`` (below the mount point ``root``): (its path, limit).

        ``mounts`` are a wrapped Litestar app's mounts, which match as plain
        prefixes (``/chatx`` reaches the app mounted at ``/chat``), read as the
        rules read them.
        """
        table = self.path_table
        if table is None:
            return None
        rule = table.decide_under(path, root) if root else table.decide(path)
        if mounts:
            rule = table.under_mounts(rule, path, root, mounts)
        if rule.access is not Access.PROTECTED or not rule.scopes:
            return None
        found = self._by_tags.get(rule.scopes)
        if found is None:
            # The longest path any reading is under wins, as for the rules. Tag sets come
            # from the configured paths (a few), so this cache stays small; bounded anyway.
            tags = self.path_tags
            found = max((tags[tag] for tag in rule.scopes), key=lambda it: (len(it[0]), it[0]))
            if len(self._by_tags) >= _MAX_TAG_SETS:
                self._by_tags.clear()
            self._by_tags[rule.scopes] = found
        return found

    def checks(
        self,
        who: Hashable,
        limit: RateLimit | None,
        path: str,
        root: str,
        mounts: tuple[str, ...] = (),
    ) -> tuple[Check, ...]:
        """The checks of a request by ``who`` (a key_id, or ``("client", host)``)."""
        on_path = self.path_limit(path, root, mounts) if self.path_table is not None else None
        if on_path is None:
            return () if limit is None else (_check((who, limit, "")),)
        where, path_limit = on_path
        extra = _check((("path", where, who), path_limit, "path-"))
        return (extra,) if limit is None else (_check((who, limit, "")), extra)
