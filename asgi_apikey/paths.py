"""The compiled rule table: which access a request path gets.

Rules are path prefixes on segment boundaries (``/docs`` covers ``/docs`` and
``/docs/...``, never ``/docs-admin``); the longest matching rule wins; a path
that no rule names gets the ``default`` access (protected unless told
otherwise). Matching walks up the path's segments with one dict lookup each.

A request path that is not canonical (dot segments, repeated slashes, a
target not in origin form, control characters) is judged in every reading a
router may make of it (``readings.py``), and the stricter answer wins, so no
spelling reaches a protected route as public.

Two kinds of path are refused outright wherever a key could matter (any
decision but public): a path with a control character (Starlette's route
patterns end in ``$``, which also matches before a final newline, so
``/admin\n`` runs the ``/admin`` handler), and a path longer than the
table's ``max_path_length`` (414). Deciding costs time linear in the path:
no rule is deeper than the deepest rule, so no deeper prefix is looked up.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from .context import check_scopes
from .errors import ConfigurationError, not_shown_unless_word
from .readings import (
    CONTROL,
    fixed_part,
    merge_slashes,
    mount_readings,
    normalize_path,
    root_readings,
    route_path,
    strip_root,
)
from .readings import url_readings as _url_readings  # looked up here at each call

__all__ = [
    "DEFAULT_MAX_PATH_LENGTH",
    "Access",
    "Rule",
    "RuleTable",
    "normalize_path",
    "route_path",
]

# The decision cache: at most this many paths, each at most this long.
_MAX_DECIDED = 4096
_MAX_DECIDED_PATH = 256
#: Longer paths are refused (414) unless a public rule covers them.
DEFAULT_MAX_PATH_LENGTH = 8192


class Access(enum.IntEnum):
    """What a path asks of a request, ordered from lenient to strict."""

    PUBLIC = 0  # the app always runs; a valid key still authenticates
    OPTIONAL = 1  # anonymous or a valid key; a bad key is refused
    PROTECTED = 2  # a valid key (with the rule's scopes) or nothing
    REFUSED = 3  # the path itself is refused, whatever the credentials (see Rule.problem)


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule: a canonical path prefix, its access and required scopes.

    A ``REFUSED`` decision names its ``problem``: ``"control_character"`` or
    ``"too_long"``.
    """

    path: str
    access: Access
    scopes: frozenset[str] = frozenset()
    problem: str | None = None


#: The decision for a path with a control character that no public rule covers.
CONTROL_CHARACTER = Rule("", Access.REFUSED, problem="control_character")
#: The decision for a path over ``max_path_length`` that no public rule covers.
TOO_LONG = Rule("", Access.REFUSED, problem="too_long")


def _described(rule: object) -> str:
    # Quoted only when it cannot be a key pasted in the wrong place.
    if not isinstance(rule, str):
        return f"a rule of type {type(rule).__name__}"
    shown = not_shown_unless_word(rule).removeprefix(", not ")
    return f"rule {shown}" if shown else "a rule"


def _check_rule_path(path: object, setting: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigurationError(
            f"{setting}: {_described(path)} is not an absolute path: write each rule with a "
            "leading '/', such as '/docs'",
            setting=setting,
        )
    if any(char in path for char in "?#*") or any(not char.isprintable() for char in path):
        raise ConfigurationError(
            f"{setting}: rule {path!r} must be a plain path prefix (no query, fragment, "
            "wildcard or control character); '/docs' already covers '/docs/...'",
            setting=setting,
        )
    if "{" in path or "}" in path:
        raise ConfigurationError(
            f"{setting}: rule {path!r} looks like a route template, but rules are literal "
            f"path prefixes (it would match only that exact text): a rule for "
            f"{fixed_part(path)!r} covers every value of the parameter; check what differs "
            "per value in the route itself",
            setting=setting,
        )
    if "%" in path:
        # Rules match the decoded path the app routes on, never the raw target.
        raise ConfigurationError(
            f"{setting}: rule {path!r} has a percent-escape, but rules match the decoded "
            f"path: write it as {unquote(path)!r}",
            setting=setting,
        )
    canonical = normalize_path(path)
    if path != canonical and path != canonical.rstrip("/") + "/":
        raise ConfigurationError(
            f"{setting}: rule {path!r} has dot segments or repeated slashes; "
            f"write it as {canonical!r}",
            setting=setting,
        )
    return canonical


def _paths(rules: object, setting: str) -> Iterable[object]:
    if isinstance(rules, (str, bytes)) or not isinstance(rules, Iterable):
        raise ConfigurationError(
            f"{setting} must be a list of paths such as ['/health'], not {type(rules).__name__}",
            setting=setting,
        )
    return rules


class RuleTable:
    """The compiled rules of one middleware.

    >>> table = RuleTable(public=["/v1"], protected={"/v1/admin": {"admin"}})
    >>> table.decide("/v1/models").access.name, table.decide("/v1/admin/x").scopes
    ('PUBLIC', frozenset({'admin'}))
    >>> table.decide("/v1/../v1/admin").access.name, table.decide("/v1-beta").access.name
    ('PROTECTED', 'PROTECTED')
    >>> table.decide("/v1/admin\\n").problem
    'control_character'

    Parameters:
        public, optional, protected: the rules (``protected`` may map a path
            to the scopes it requires). A rule covers its path and every path
            below it. ``/`` is not a rule: say ``default=`` instead.
        default: the access of paths no rule covers.
        max_path_length: paths longer than this (in characters, after the
            mount point) are refused with 414 unless a public rule covers them
            as spelled (no dot segments, repeated slashes or control characters).
        refuse: ``False`` for a table that judges without refusing (the path
            limits of :mod:`asgi_apikey.ratelimit.policy`): a path with a
            control character gets the strictest of its readings, and a long
            path in plain spelling its rule, where the rules would refuse them
            unless public.
    """

    __slots__ = ("_decided", "_default", "_depth", "_max_path", "_refuse", "_rules")

    def __init__(
        self,
        *,
        public: Iterable[str] = (),
        optional: Iterable[str] = (),
        protected: Iterable[str] | Mapping[str, Iterable[str]] = (),
        default: str = "protected",
        max_path_length: int = DEFAULT_MAX_PATH_LENGTH,
        refuse: bool = True,
    ) -> None:
        # False for a table that only judges (rate limits by path): a path the rules
        # would refuse unless public gets its strictest reading instead of the refusal.
        self._refuse = refuse
        if (
            isinstance(max_path_length, bool)
            or not isinstance(max_path_length, int)
            or not 256 <= max_path_length <= 65536
        ):
            raise ConfigurationError(
                "max_path_length must be an int from 256 to 65536"
                f"{not_shown_unless_word(max_path_length)}",
                setting="max_path_length",
            )
        self._max_path = max_path_length
        try:
            default_access = Access[default.upper()] if isinstance(default, str) else None
        except KeyError:
            default_access = None
        if default_access is None:
            raise ConfigurationError(
                "default must be 'protected', 'optional' or 'public'"
                f"{not_shown_unless_word(default)}",
                setting="default",
            )
        self._default = Rule("/", default_access)

        compiled: dict[str, Rule] = {}
        where: dict[str, str] = {}

        def add(raw: object, setting: str, access: Access, scopes: frozenset[str]) -> None:
            path = _check_rule_path(raw, setting)
            if path == "/":
                _check_root_rule(setting, access, default_access)
            if path in compiled:
                raise ConfigurationError(
                    f"{setting}: rule {raw!r} is already given in {where[path]}; "
                    "name each path in one rule only",
                    setting=setting,
                )
            compiled[path] = Rule(path, access, scopes)
            where[path] = setting

        for raw in _paths(public, "public"):
            add(raw, "public", Access.PUBLIC, frozenset())
        for raw in _paths(optional, "optional"):
            add(raw, "optional", Access.OPTIONAL, frozenset())
        if isinstance(protected, Mapping):
            for raw, scopes in protected.items():
                required = check_scopes(
                    scopes, f"protected: the scopes of {raw!r}", setting="protected"
                )
                add(raw, "protected", Access.PROTECTED, required)
        else:
            for raw in _paths(protected, "protected"):
                add(raw, "protected", Access.PROTECTED, frozenset())
        self._rules = _inherit_scopes(compiled)
        # No rule names a path of more segments than this: deeper prefixes need no look-up.
        self._depth = max((path.count("/") for path in compiled if path != "/"), default=0)
        # Decisions by exact path: a service has few routes, and a dict lookup is a
        # tenth of a decision. Bounded: paths come from clients (see decide()).
        self._decided: dict[str, Rule] = {}

    def match(self, path: str) -> Rule:
        """The longest rule that covers ``path`` as spelled (segment boundaries).

        Linear in the path: only its first ``depth`` segments (the deepest
        rule's) are looked up, each once.
        """
        rules = self._rules
        prefix = _first_segments(path, self._depth)
        while True:
            rule = rules.get(prefix)
            if rule is not None:
                return rule
            cut = prefix.rfind("/")
            if cut <= 0:
                return rules.get("/", self._default)
            prefix = prefix[:cut]

    def decide(self, path: str) -> Rule:
        """The rule for a request path: the strictest of every reading a router may make."""
        rule = self._decided.get(path)
        if rule is not None:
            return rule
        canonical = path[:1] == "/" and "//" not in path and "/." not in path
        if len(path) > self._max_path:
            # Over the limit only a public path in plain spelling is served, judged in
            # one linear pass; any other reading of it is not worth deciding.
            if canonical and path.isprintable():
                rule = self.match(path)
                if rule.access is Access.PUBLIC or not self._refuse:
                    return rule
            return TOO_LONG  # never cached: the cache holds short paths only
        # The first is what nearly every request takes.
        rule = self.match(path) if canonical and path.isprintable() else self._decide_unusual(path)
        if len(path) <= _MAX_DECIDED_PATH:
            if len(self._decided) >= _MAX_DECIDED:
                self._decided.clear()  # a flood of distinct paths: start afresh, stay bounded
            self._decided[path] = rule
        return rule

    def decide_under(self, path: str, root_path: str) -> Rule:
        """The rule for ``path`` (``scope["path"]``) under the mount point ``root_path``.

        Starlette takes ``root_path`` off only at a segment boundary (``/api``
        from ``/api/x``, never from ``/apix``); Quart and a2wsgi take it off as
        a plain prefix, so there ``/apiadmin`` routes as ``/admin``; Litestar
        takes off everything up to its first occurrence, so ``/health/api/admin``
        routes as ``/admin`` (see ``readings.root_readings``). Every reading is
        judged, and the strictest wins.
        """
        rule = self._under(path, root_path)
        if len(path) > self._max_path:
            return rule  # over the limit only a plain, public spelling passes: no URL to read
        # A target that is not in origin form: Quart routes the path of it as a URL,
        # then takes root_path off that.
        for reading in _url_readings(path):
            rule = _stricter(rule, self._under(reading, root_path))
        return rule

    def under_mounts(self, rule: Rule, path: str, root_path: str, mounts: tuple[str, ...]) -> Rule:
        """``rule`` made as strict as ``path`` read under ``mounts`` taken as plain prefixes.

        Litestar sends ``/metricsx`` to the app mounted at ``/metrics`` (as
        ``/x``): judged as ``/metrics/x`` too (see ``readings.mount_readings``),
        in every reading Litestar makes first: ``root_path`` taken off (at a
        segment boundary, or up to its first occurrence) and slashes merged.
        """
        bases = (
            [strip_root(path, root_path), *root_readings(path, root_path)] if root_path else [path]
        )
        for base in bases:
            for reading in {base, merge_slashes(base)}:
                for mounted in mount_readings(reading, mounts):
                    rule = _stricter(rule, self.decide(mounted))
        return rule

    def _under(self, path: str, root_path: str) -> Rule:
        rule = self.decide(strip_root(path, root_path))
        for reading in root_readings(path, root_path):  # Quart's, Django's, Litestar's
            rule = _stricter(rule, self.decide(reading))
        return rule

    def _decide_unusual(self, path: str) -> Rule:
        # Judge the path as spelled, resolved and with its slashes merged (Litestar's
        # and werkzeug's reading), and, when it is not in origin form, also as the
        # path of a URL (see _url_readings). The strictest wins.
        texts = [path]
        control = CONTROL.search(path) is not None
        if control:
            # Also as a router that ignores them would read it (and as Starlette's `$`
            # reads a final newline): the strictest reading decides.
            texts.append(CONTROL.sub("", path))
        readings = [reading for text in texts for reading in (text, *_url_readings(text))]
        candidates: list[str] = []
        for reading in readings:
            spelled = reading if reading[:1] == "/" else "/" + reading
            candidates += (spelled, normalize_path(spelled), merge_slashes(spelled))
        rule = self.match(candidates[0])
        for candidate in candidates[1:]:
            rule = _stricter(rule, self.match(candidate))
        if control and rule.access is not Access.PUBLIC and self._refuse:
            return CONTROL_CHARACTER
        return rule

    @property
    def default(self) -> Rule:
        """What a path no other rule covers gets: ``default``, or a protected ``/`` rule."""
        return self._rules.get("/", self._default)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The compiled rules, longest first, then the default as ``Rule('/', ...)``."""
        ordered = sorted(self._rules.values(), key=lambda rule: (-len(rule.path), rule.path))
        return (*ordered, self._default)


def _first_segments(path: str, depth: int) -> str:
    """``path`` cut before the slash that ends its ``depth``-th segment.

    No rule of ``depth`` segments names anything longer.

    >>> _first_segments("/v1/admin/users/7", 2)
    '/v1/admin'
    """
    end = 0
    for _ in range(depth):
        end = path.find("/", end + 1)
        if end < 0:
            return path
    return path[:end]


def _check_root_rule(setting: str, access: Access, default: Access) -> None:
    # A "/" rule covers every path: it would replace `default` without saying so.
    if access is not Access.PROTECTED:
        raise ConfigurationError(
            f"{setting}: a rule for '/' would cover every path and silently replace the "
            f"default; write default={access.name.lower()!r} instead (rules then name the "
            "exceptions)",
            setting=setting,
        )
    if default is not Access.PROTECTED:
        raise ConfigurationError(
            f"protected: a rule for '/' covers every path and contradicts "
            f"default={default.name.lower()!r}; drop one of them",
            setting=setting,
        )


def _inherit_scopes(rules: dict[str, Rule]) -> dict[str, Rule]:
    # A protected rule inside a scoped protected rule needs the outer scopes too:
    # protected={"/v1": {"admin"}, "/v1/jobs": set()} must not open /v1/jobs to
    # any key. Public and optional rules still carve out exceptions on purpose.
    inherited: dict[str, Rule] = {}
    for path, rule in rules.items():
        scopes = rule.scopes
        if rule.access is Access.PROTECTED:
            for other in rules.values():
                if other.access is Access.PROTECTED and path.startswith(
                    other.path.rstrip("/") + "/"
                ):
                    scopes = scopes | other.scopes
        inherited[path] = Rule(path, rule.access, scopes) if scopes != rule.scopes else rule
    return inherited


def _stricter(first: Rule, second: Rule) -> Rule:
    if first is second or first.access is Access.REFUSED:
        return first
    if second.access is Access.REFUSED:
        return second
    return Rule(first.path, max(first.access, second.access), first.scopes | second.scopes)
