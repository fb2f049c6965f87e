"""Where a middleware's rate limits can refuse a request, and their 429 response.

:class:`OpenAPILimits` reads a middleware's limits (never a key: of the keys
it asks only whether any has a limit of its own) and says which operations
get a 429; :func:`_rate_limited` is that 429 component.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..keys import KeySnapshot
from ..paths import Access, RuleTable
from ..ratelimit.fields import DRAFT
from .templates import decide_template

if TYPE_CHECKING:
    from ..middleware import APIKeyMiddleware


@dataclass(frozen=True, slots=True)
class OpenAPILimits:
    """Where one middleware's rate limits can refuse a request: the operations with a 429.

    >>> limits = OpenAPILimits(paths=RuleTable(protected=["/v1/chat"], default="public"))
    >>> limits.applies("/v1/chat/{model}", Access.PROTECTED, "post")
    True
    >>> limits.applies("/v1/models", Access.PUBLIC, "get")
    False

    Parameters:
        keys: a request with a key may be limited (a default or scope limit, a
            key with a limit of its own, or a live source whose keys may bring
            one): every operation, public ones too, since a key sent there counts.
        anonymous: requests without a key are limited per client address: the
            public and optional operations.
        paths: the path limits, as the protected rules of a table (every caller
            on those paths, with a key or without).
        preflight: CORS preflight requests pass without a key, so an ``options``
            operation on a protected path has anonymous callers too.
        refuses: the limiter is shared and answers 503 when it cannot decide.
    """

    keys: bool = False
    anonymous: bool = False
    paths: RuleTable | None = None
    preflight: bool = False
    refuses: bool = False

    @classmethod
    def of(cls, middleware: APIKeyMiddleware) -> OpenAPILimits | None:
        """Where ``middleware``'s limits apply now, or ``None`` where none can refuse."""
        plan = middleware.limits
        auth = middleware.auth
        snapshot = auth.snapshot
        if snapshot.development:  # development mode limits nothing
            return None
        shared = plan.shared
        described = shared.describe() if shared is not None else {}
        limits = cls(
            keys=bool(plan.default or plan.scopes)
            or auth.source_is_live
            or _keys_have_limits(snapshot),
            anonymous=plan.anonymous is not None,
            paths=plan.path_table,
            preflight=bool(middleware.describe()["allow_cors_preflight"]),
            refuses=described.get("on_unavailable") == "refuse",
        )
        if not (limits.keys or limits.anonymous or limits.paths is not None):
            return None
        return limits

    def applies(self, template: str, lenient: Access, method: str) -> bool:
        """Whether a request to the operation can be limited.

        ``lenient`` is the least strict access any value of the template gets:
        below protected, some requests come without a key.
        """
        if self.keys:
            return True
        anonymous = lenient < Access.PROTECTED or (self.preflight and method == "options")
        if self.anonymous and anonymous:
            return True
        if self.paths is None:
            return False
        rule, _, _ = decide_template(self.paths, template)  # the strictest of its values
        return rule.access is Access.PROTECTED


#: The last key set asked and its answer: keys change far less often than documents are read.
_KEYS_ASKED: list[tuple[KeySnapshot, bool]] = []


def _keys_have_limits(snapshot: KeySnapshot) -> bool:
    """Whether any key of ``snapshot`` has a limit of its own (not ``UNLIMITED``)."""
    if _KEYS_ASKED and _KEYS_ASKED[0][0] is snapshot:
        return _KEYS_ASKED[0][1]
    found = False
    for entry in snapshot.by_digest.values():
        limit = entry.key.limit
        if limit is not None and not limit.unlimited:
            found = True
            break
    _KEYS_ASKED[:] = [(snapshot, found)]  # holds the snapshot: its id is never reused
    return found


def _rate_limited(response: Callable[[str, str, dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """The 429 component: the same for every configuration (it names no limit)."""
    return response(
        "Too many requests: the API key (or, without a key, the client address) is over a "
        "rate limit or quota; the request was not counted. Retry after `Retry-After` seconds.",
        "Too many requests: this API key is over its rate limit (rate); retry after 12 seconds",
        {
            "Retry-After": {
                "description": "Whole seconds until the request would be admitted.",
                "schema": {"type": "integer", "minimum": 1},
            },
            "RateLimit-Policy": {
                "description": f"The limits that apply ({DRAFT}): for each named policy, "
                "`q` requests per `w` seconds. `rate` and `quota` are the caller's own "
                "limit, `path-rate` and `path-quota` a path's.",
                "schema": {"type": "string"},
                "example": '"rate";q=100;w=60, "quota";q=10000;w=86400',
            },
            "RateLimit": {
                "description": f"Where the caller stands ({DRAFT}): for each policy, `r` "
                "requests left and `t` seconds until it is whole again.",
                "schema": {"type": "string"},
                "example": '"rate";r=0;t=12, "quota";r=9000;t=3600',
            },
        },
    )
