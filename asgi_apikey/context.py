"""What the middleware stores in the ASGI scope: ``scope["auth"]`` and ``scope["user"]``.

Both are immutable and built once per key at configuration time, so an
authenticated request allocates nothing here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from starlette.authentication import BaseUser, UnauthenticatedUser

from .errors import ConfigurationError, not_shown_unless_word

__all__ = [
    "ANONYMOUS",
    "ANONYMOUS_USER",
    "DEVELOPMENT_MODES",
    "MAX_KEY_NAME_LENGTH",
    "MAX_METADATA_DEPTH",
    "MIN_PRODUCTION_KEY_LENGTH",
    "APIKeyUser",
    "AuthContext",
    "FrozenMapping",
    "MetadataTooDeep",
    "check_scopes",
    "freeze",
    "is_scope_token",
]


#: ``ENVIRONMENT=staging`` and ``production`` refuse plain keys shorter than this;
#: a text sharing this many characters with a token quotes it.
MIN_PRODUCTION_KEY_LENGTH = 16
#: The longest key name, and so the longest key_id a verifier may return.
MAX_KEY_NAME_LENGTH = 128


class FrozenMapping(dict[str, Any]):
    """A read-only ``dict``: key metadata, shared by every request of that key.

    A ``dict`` subclass rather than ``MappingProxyType`` so that ``json.dumps``,
    pydantic, ``copy.deepcopy`` and ``dataclasses.asdict`` (which FastAPI runs
    on a returned ``AuthContext``) all take it as a plain dict.

    >>> FrozenMapping({"tier": "pro"})["tier"]
    'pro'
    """

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("key metadata is read-only; configure it on the APIKey")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[type[FrozenMapping], tuple[dict[str, Any]]]:
        return (FrozenMapping, (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenMapping({dict(self)!r})"


_EMPTY: Mapping[str, Any] = FrozenMapping()


#: Metadata nested deeper than this is refused (a cycle is infinitely deep).
MAX_METADATA_DEPTH = 32


class MetadataTooDeep(ValueError):
    """Metadata nested more than :data:`MAX_METADATA_DEPTH` levels, or a cycle."""


def freeze(value: Any, depth: int = MAX_METADATA_DEPTH) -> Any:
    """A read-only deep copy of metadata: mappings become FrozenMapping, lists tuples.

    Every request of a key shares its metadata, so no level of it may change.
    More than ``depth`` levels (a cycle, say) raise :class:`MetadataTooDeep`
    long before the interpreter's recursion limit.

    >>> freeze({"limits": {"rpm": 60}, "teams": ["a"]})
    FrozenMapping({'limits': FrozenMapping({'rpm': 60}), 'teams': ('a',)})
    """
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        if depth <= 0:
            raise MetadataTooDeep(f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep")
        depth -= 1
        if isinstance(value, Mapping):
            return FrozenMapping({key: freeze(item, depth) for key, item in value.items()})
        if isinstance(value, (list, tuple)):
            return tuple(freeze(item, depth) for item in value)
        return frozenset(freeze(item, depth) for item in value)
    return value


# RFC 6749 §3.3 scope-token, so that a scope fits in a WWW-Authenticate header.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def is_scope_token(scope: object) -> bool:
    """Whether ``scope`` is an RFC 6749 scope-token (it fits in a ``WWW-Authenticate``).

    >>> is_scope_token("read:billing"), is_scope_token("two words"), is_scope_token("")
    (True, False, False)
    """
    return isinstance(scope, str) and _SCOPE_TOKEN.fullmatch(scope) is not None


def check_scopes(scopes: object, where: str, **context: object) -> frozenset[str]:
    """Validate configured scopes; ``where`` names them in the error ("scopes of key 'ci'").

    >>> sorted(check_scopes(["read", "write"], "scopes"))
    ['read', 'write']
    """
    # A mapping would grant its keys whatever their values say ({"admin": False}).
    if isinstance(scopes, (str, bytes, Mapping)) or not isinstance(scopes, Iterable):
        raise ConfigurationError(
            f"{where} must be a collection of strings such as {{'admin'}}, "
            f"not {type(scopes).__name__}",
            **context,
        )
    items = list(scopes)
    for scope in items:
        if not isinstance(scope, str) or _SCOPE_TOKEN.fullmatch(scope) is None:
            # Quoted only when a word: anything else may be a key pasted in the wrong place.
            shown = not_shown_unless_word(scope).removeprefix(", not ") or "a scope"
            raise ConfigurationError(
                f"{where}: {shown} is not an RFC 6749 scope token: use printable ASCII "
                "without spaces, quotes or backslashes",
                **context,
            )
    return frozenset(items)


#: Added to the scopes of every authenticated context so that Starlette's
#: ``@requires("authenticated")`` works unchanged.
AUTHENTICATED = "authenticated"


@dataclass(frozen=True, slots=True)
class AuthContext:
    """The outcome of authentication, as ``scope["auth"]``.

    ``key_id`` is the key's configured name, else a fingerprint of its digest;
    the key itself is never stored here.

    >>> ctx = AuthContext(authenticated=True, key_id="billing", scopes=frozenset({"read"}))
    >>> "read" in ctx.scopes, ctx.key_id
    (True, 'billing')
    """

    authenticated: bool
    key_id: str | None = None
    scopes: frozenset[str] = frozenset()
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    mode: str = "simple"


class APIKeyUser(BaseUser):
    """The ``scope["user"]`` of an authenticated request (Starlette's ``BaseUser``).

    >>> APIKeyUser("billing").display_name
    'billing'
    """

    __slots__ = ("_key_id",)

    def __init__(self, key_id: str) -> None:
        self._key_id = key_id

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self._key_id

    @property
    def identity(self) -> str:
        return self._key_id

    def __repr__(self) -> str:
        return f"APIKeyUser({self._key_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, APIKeyUser) and other._key_id == self._key_id

    def __hash__(self) -> int:
        return hash((APIKeyUser, self._key_id))


#: The modes of an authenticator built without keys, where every request passes.
DEVELOPMENT_MODES = frozenset({"development", "test"})

#: The context of a request that presented no (accepted) credentials.
ANONYMOUS = AuthContext(authenticated=False)
ANONYMOUS_USER: BaseUser = UnauthenticatedUser()
