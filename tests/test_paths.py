"""Path normalisation, root_path stripping and the rule table (DESIGN.md "Path rules")."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from asgi_apikey import APIKeyMiddleware
from asgi_apikey.errors import ConfigurationError
from asgi_apikey.paths import Access, Rule, RuleTable, normalize_path, route_path
from tests.asgi import CANARY, Recorder, bearer, call, http_scope

PUBLIC, OPTIONAL, PROTECTED = Access.PUBLIC, Access.OPTIONAL, Access.PROTECTED

# ---------------------------------------------------------------------------
# normalize_path
# ---------------------------------------------------------------------------

NORMALIZE_CASES = [
    ("", "/", "empty"),
    ("/", "/", "root"),
    ("/a", "/a", "plain"),
    ("/a/b/c", "/a/b/c", "plain-deep"),
    ("/a/", "/a", "trailing-slash"),
    ("/a/b//", "/a/b", "trailing-slashes"),
    ("//a", "/a", "leading-double-slash"),
    ("/a//b///c", "/a/b/c", "repeated-slashes"),
    ("///", "/", "only-slashes"),
    ("/./a", "/a", "dot-leading"),
    ("/a/./b", "/a/b", "dot-middle"),
    ("/a/.", "/a", "dot-trailing"),
    ("/.", "/", "dot-only"),
    ("/a/../b", "/b", "dotdot-middle"),
    ("/a/b/..", "/a", "dotdot-trailing"),
    ("/a/b/../../c", "/c", "dotdot-twice"),
    ("/..", "/", "dotdot-at-root"),
    ("/../../etc", "/etc", "dotdot-above-root"),
    ("/a/../../../b", "/b", "dotdot-far-above-root"),
    ("/health/../admin//users/./", "/admin/users", "docstring-example"),
    ("/a..b", "/a..b", "name-with-two-dots"),
    ("/.well-known", "/.well-known", "dot-prefixed-name"),
    ("/.well-known/x", "/.well-known/x", "dot-prefixed-name-deep"),
    ("/v1.2", "/v1.2", "version-with-dot"),
    ("/...", "/...", "three-dots-is-a-name"),
    ("/a/..b/c", "/a/..b/c", "dotdot-prefixed-name"),
    ("/a/b../c", "/a/b../c", "dotdot-suffixed-name"),
    ("/a/%2e%2e/b", "/a/%2e%2e/b", "percent-encoded-dots-are-a-name"),
]


@pytest.mark.parametrize(
    ("path", "expected"),
    [(p, e) for p, e, _ in NORMALIZE_CASES],
    ids=[i for _, _, i in NORMALIZE_CASES],
)
def test_normalize_path(path: str, expected: str) -> None:
    assert normalize_path(path) == expected


# Names repeat to weight them; 'xx' and 'adminx' have a rule name as a raw string prefix.
_SEGMENT = st.sampled_from(
    ["", ".", "..", "..", "public", "public", "admin", "admin", "x", "xx", "adminx", ".x", "..."]
)


@st.composite
def spelled_paths(draw: st.DrawFn, segments: st.SearchStrategy[str] = _SEGMENT) -> str:
    """An ASGI-style path (always starting with '/') built from a small segment alphabet."""
    parts = draw(st.lists(segments, max_size=7))
    return "/" + "/".join(parts)


_ANY_PATH = st.one_of(
    spelled_paths(),
    st.text(alphabet="/.ab", max_size=20),
    st.text(max_size=30),
)


def resolved(path: str) -> str:
    """An independent normaliser: POSIX normpath on the path made absolute with one slash."""
    return posixpath.normpath("/" + path.lstrip("/"))


@given(_ANY_PATH)
def test_normalize_path_matches_posix_normpath(path: str) -> None:
    assert normalize_path(path) == resolved(path)


@given(_ANY_PATH)
def test_normalize_path_is_canonical(path: str) -> None:
    once = normalize_path(path)
    assert once.startswith("/")
    assert "//" not in once
    assert once == "/" or not once.endswith("/")
    segments = once.split("/")[1:]
    assert "." not in segments
    assert ".." not in segments
    assert normalize_path(once) == once


@given(_ANY_PATH)
def test_normalize_path_keeps_ordinary_names(path: str) -> None:
    """Every output segment is an input segment; names are never split, merged or rewritten."""
    inputs = [s for s in path.split("/") if s not in ("", ".", "..")]
    outputs = [s for s in normalize_path(path).split("/") if s]
    remaining = iter(inputs)
    assert all(any(s == t for t in remaining) for s in outputs)  # outputs is a subsequence


@given(st.lists(st.sampled_from(["a", "b.c", ".d", "e..", "..."]), max_size=6))
def test_normalize_path_is_identity_without_dot_segments(names: list[str]) -> None:
    path = "/" + "/".join(names)
    assert normalize_path(path) == path


# ---------------------------------------------------------------------------
# route_path
# ---------------------------------------------------------------------------

ROUTE_CASES = [
    ("/x/y", None, "/x/y", "no-root-path-key"),
    ("/x/y", "", "/x/y", "empty-root-path"),
    ("/api/v1/x", "/api", "/v1/x", "prefix-stripped"),
    ("/api/", "/api", "/", "prefix-stripped-to-slash"),
    ("/api", "/api", "/", "path-equals-root-path"),
    ("/apix/y", "/api", "/apix/y", "string-prefix-not-segment-prefix"),
    ("/apix", "/api", "/apix", "string-prefix-exact"),
    ("/other/y", "/api", "/other/y", "not-under-root-path"),
    ("/", "/api", "/", "root-not-under-root-path"),
    ("/a/b/c", "/a/b", "/c", "deep-root-path"),
    ("/api/../admin", "/api", "/../admin", "dot-segments-kept-for-decide"),
]


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [(p, r, e) for p, r, e, _ in ROUTE_CASES],
    ids=[i for *_, i in ROUTE_CASES],
)
def test_route_path(path: str, root_path: str | None, expected: str) -> None:
    scope: dict[str, Any] = {"type": "http", "path": path}
    if root_path is not None:
        scope["root_path"] = root_path
    assert route_path(scope) == expected


_NAME = st.sampled_from(["api", "apix", "v1", "x", "a.b"])


@given(st.lists(_NAME, min_size=1, max_size=3), st.lists(_NAME, max_size=3))
def test_route_path_strips_a_segment_prefix(root: list[str], rest: list[str]) -> None:
    root_path = "/" + "/".join(root)
    suffix = "/" + "/".join(rest) if rest else ""
    got = route_path({"type": "http", "path": root_path + suffix, "root_path": root_path})
    assert got == (suffix or "/")


@given(st.lists(_NAME, min_size=1, max_size=3), st.lists(_NAME, min_size=1, max_size=3))
def test_route_path_leaves_foreign_paths(root: list[str], other: list[str]) -> None:
    root_path = "/" + "/".join(root)
    path = "/" + "/".join(other)
    assume(path != root_path and not path.startswith(root_path + "/"))
    assert route_path({"type": "http", "path": path, "root_path": root_path}) == path


# ---------------------------------------------------------------------------
# RuleTable construction errors
# ---------------------------------------------------------------------------

# (kwargs, setting, fragments that the message must contain, id)
ERROR_CASES: list[tuple[dict[str, Any], str, list[str], str]] = [
    (
        {"default": "private"},
        "default",
        ["'private'", "'protected', 'optional' or 'public'"],
        "default-unknown",
    ),
    ({"default": ""}, "default", ["'protected'"], "default-empty"),
    ({"default": None}, "default", ["None", "'protected'"], "default-none"),
    ({"default": 2}, "default", ["2", "'protected'"], "default-int"),
    ({"default": Access.PUBLIC}, "default", ["'protected'"], "default-enum-not-str"),
    ({"public": ["docs"]}, "public", ["'docs'", "'/docs'"], "relative-rule"),
    ({"optional": [""]}, "optional", ["a rule is not", "leading '/'"], "empty-rule"),
    ({"public": [3]}, "public", ["a rule of type int", "'/docs'"], "non-str-rule"),
    ({"protected": [b"/admin"]}, "protected", ["a rule of type bytes", "'/docs'"], "bytes-rule"),
    ({"public": ["/docs?x=1"]}, "public", ["'/docs?x=1'", "plain path prefix"], "query"),
    ({"public": ["/docs#top"]}, "public", ["'/docs#top'", "plain path prefix"], "fragment"),
    ({"public": ["/docs/*"]}, "public", ["'/docs/*'", "'/docs' already covers"], "wildcard"),
    ({"public": ["/docs\n"]}, "public", [repr("/docs\n"), "control character"], "newline"),
    ({"optional": ["/a\x00b"]}, "optional", [repr("/a\x00b"), "control"], "nul"),
    ({"protected": ["/a\tb"]}, "protected", [repr("/a\tb"), "control"], "tab"),
    ({"public": ["/a\x7f"]}, "public", [repr("/a\x7f"), "control"], "del"),
    ({"public": ["/a/../b"]}, "public", ["'/a/../b'", "write it as '/b'"], "dotdot-rule"),
    ({"public": ["/a/./b"]}, "public", ["'/a/./b'", "write it as '/a/b'"], "dot-rule"),
    ({"optional": ["/a/.."]}, "optional", ["'/a/..'", "write it as '/'"], "dotdot-end-rule"),
    ({"protected": ["//admin"]}, "protected", ["'//admin'", "write it as '/admin'"], "lead-//"),
    ({"public": ["/a//b"]}, "public", ["'/a//b'", "write it as '/a/b'"], "inner-//"),
    ({"public": ["//"]}, "public", ["'//'", "write it as '/'"], "only-//"),
    ({"public": ["/docs//"]}, "public", ["'/docs//'", "write it as '/docs'"], "trailing-//"),
    ({"public": ["/."]}, "public", ["'/.'", "write it as '/'"], "root-dot"),
    (
        {"public": ["/docs"], "protected": ["/docs"]},
        "protected",
        ["'/docs'", "already given in public", "one rule only"],
        "public-and-protected",
    ),
    (
        {"public": ["/docs"], "optional": ["/docs/"]},
        "optional",
        ["'/docs/'", "already given in public"],
        "docs-vs-docs-slash",
    ),
    (
        {"optional": ["/a"], "protected": {"/a": {"admin"}}},
        "protected",
        ["'/a'", "already given in optional"],
        "optional-and-protected-mapping",
    ),
    (
        {"public": ["/x", "/x"]},
        "public",
        ["'/x'", "already given in public"],
        "twice-in-one-list",
    ),
    ({"public": "/health"}, "public", ["not str", "['/health']"], "public-as-str"),
    ({"optional": "/health"}, "optional", ["not str", "['/health']"], "optional-as-str"),
    ({"protected": "/admin"}, "protected", ["not str", "['/health']"], "protected-as-str"),
    ({"public": b"/health"}, "public", ["not bytes"], "public-as-bytes"),
    ({"public": None}, "public", ["not NoneType"], "public-none"),
    (
        {"protected": {"/a": "admin"}},
        "protected",
        ["'/a'", "collection of strings such as {'admin'}", "not str"],
        "scopes-as-str",
    ),
    ({"protected": {"/a": None}}, "protected", ["'/a'", "not NoneType"], "scopes-none"),
    (
        {"protected": {"/a": {"has space"}}},
        "protected",
        ["a scope is not", "'/a'", "RFC 6749 scope token"],
        "scope-space",
    ),
    (
        {"protected": {"/a": ['say"hi']}},
        "protected",
        ["a scope is not", "quotes"],
        "scope-quote",
    ),
    (
        {"protected": {"/a": ["back\\slash"]}},
        "protected",
        ["a scope is not", "backslashes"],
        "scope-backslash",
    ),
    ({"protected": {"/a": [""]}}, "protected", ["a scope is not", "scope token"], "scope-empty"),
    ({"protected": {"/a": ["caf\u00e9"]}}, "protected", ["a scope is not"], "scope-non-ascii"),
    ({"protected": {"/a": ["x\x01"]}}, "protected", ["a scope is not"], "scope-control"),
    ({"protected": {"/a": [7]}}, "protected", ["7", "scope token"], "scope-non-str"),
    ({"protected": {"/a": [["admin"]]}}, "protected", ["a list is not"], "scope-unhashable"),
    ({"protected": {"admin": {"x"}}}, "protected", ["'admin'", "leading '/'"], "mapping-relative"),
]


@pytest.mark.parametrize(
    ("kwargs", "setting", "fragments"),
    [(k, s, f) for k, s, f, _ in ERROR_CASES],
    ids=[i for *_, i in ERROR_CASES],
)
def test_rule_table_rejects(kwargs: dict[str, Any], setting: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RuleTable(**kwargs)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    assert caught.value.context == {"setting": setting}


def test_rule_table_errors_reach_the_middleware() -> None:
    with pytest.raises(ConfigurationError, match="write it as '/admin'"):
        APIKeyMiddleware(Recorder(), keys=[CANARY], protected=["/x/../admin"])


ACCEPTED_CASES: list[tuple[dict[str, Any], str]] = [
    ({"default": "public"}, "default-public"),
    ({"default": "optional"}, "default-optional"),
    ({"default": "protected"}, "default-protected"),
    ({"public": ("/a",), "optional": iter(["/b"]), "protected": {"/c"}}, "any-iterables"),
    ({"public": ["/docs/"]}, "trailing-slash-rule"),
    ({"protected": {"/": {"root"}}}, "protected-root-rule-adds-scopes"),
    ({"public": ["/.well-known", "/v1.2", "/a..b"]}, "names-with-dots"),
    ({"protected": {"/a": set()}}, "no-scopes"),
    ({"protected": {"/a": ("x:read", "y.write", "!#$%&'()*+,-./:;<=>?@[]^_`{|}~")}}, "scope-chars"),
]


@pytest.mark.parametrize(
    "kwargs", [k for k, _ in ACCEPTED_CASES], ids=[i for _, i in ACCEPTED_CASES]
)
def test_rule_table_accepts(kwargs: dict[str, Any]) -> None:
    RuleTable(**kwargs)


def test_trailing_slash_rule_is_stored_canonically() -> None:
    table = RuleTable(public=["/docs/"])
    assert table.rules[0] == Rule("/docs", PUBLIC)
    assert table.decide("/docs").access is PUBLIC


# ---------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------

DOCS = RuleTable(public=["/docs"])
NESTED = RuleTable(
    public=["/v1"],
    optional=["/v1/admin/status"],
    protected={"/v1/admin": {"admin"}, "/v1/admin/keys": {"admin", "keys:write"}},
)

# (table, path, access, scopes, id)
MATCH_CASES: list[tuple[RuleTable, str, Access, frozenset[str], str]] = [
    (DOCS, "/docs", PUBLIC, frozenset(), "docs-exact"),
    (DOCS, "/docs/", PUBLIC, frozenset(), "docs-slash"),
    (DOCS, "/docs/x/y", PUBLIC, frozenset(), "docs-deep"),
    (DOCS, "/docs/oauth2-redirect", PUBLIC, frozenset(), "docs-child"),
    (DOCS, "/docs-admin", PROTECTED, frozenset(), "docs-dash-not-covered"),
    (DOCS, "/docsx", PROTECTED, frozenset(), "docsx-not-covered"),
    (DOCS, "/docs.json", PROTECTED, frozenset(), "docs-dot-not-covered"),
    (DOCS, "/doc", PROTECTED, frozenset(), "shorter-not-covered"),
    (DOCS, "/Docs", PROTECTED, frozenset(), "case-sensitive"),
    (DOCS, "/api/docs", PROTECTED, frozenset(), "not-a-suffix-match"),
    (DOCS, "/", PROTECTED, frozenset(), "root-default"),
    (NESTED, "/v1", PUBLIC, frozenset(), "v1"),
    (NESTED, "/v1/models", PUBLIC, frozenset(), "v1-child"),
    (NESTED, "/v1/admin", PROTECTED, frozenset({"admin"}), "longer-protected-wins"),
    (NESTED, "/v1/admin/", PROTECTED, frozenset({"admin"}), "longer-protected-slash"),
    (NESTED, "/v1/admin/users", PROTECTED, frozenset({"admin"}), "longer-protected-deep"),
    (NESTED, "/v1/administrator", PUBLIC, frozenset(), "admin-string-prefix-is-public"),
    (NESTED, "/v1/admin/keys/9", PROTECTED, frozenset({"admin", "keys:write"}), "longest-scopes"),
    (NESTED, "/v1/admin/status", OPTIONAL, frozenset(), "longest-optional-inside-protected"),
    (NESTED, "/v1/admin/statusx", PROTECTED, frozenset({"admin"}), "optional-string-prefix"),
    (NESTED, "/v2", PROTECTED, frozenset(), "unnamed-default"),
    (NESTED, "/v1-beta", PROTECTED, frozenset(), "v1-dash-default"),
]


@pytest.mark.parametrize(
    ("table", "path", "access", "scopes"),
    [(t, p, a, s) for t, p, a, s, _ in MATCH_CASES],
    ids=[i for *_, i in MATCH_CASES],
)
def test_decide(table: RuleTable, path: str, access: Access, scopes: frozenset[str]) -> None:
    rule = table.decide(path)
    assert (rule.access, rule.scopes) == (access, scopes)
    if normalize_path(path) == path or path.endswith("/"):
        assert table.match(path) == rule


@pytest.mark.parametrize("default", ["protected", "optional", "public"])
@pytest.mark.parametrize("path", ["/", "/unnamed", "/unnamed/deep", "/docsx"])
def test_default_applies_to_unnamed_paths(default: str, path: str) -> None:
    table = RuleTable(public=["/docs"], protected=["/admin"], default=default)
    assert table.decide(path) == Rule("/", Access[default.upper()])
    assert table.decide("/docs/x").access is PUBLIC
    assert table.decide("/admin/x").access is PROTECTED


@pytest.mark.parametrize("default", ["Public", "OPTIONAL"])
def test_default_is_case_insensitive(default: str) -> None:
    assert RuleTable(default=default).decide("/x").access is Access[default.upper()]


@pytest.mark.parametrize("setting", ["public", "optional"])
def test_a_root_rule_that_opens_is_refused_and_points_to_default(setting: str) -> None:
    """A '/' rule would silently replace the default (issue 15: public=["/"] opened every
    path while describe() still said default: protected)."""
    with pytest.raises(ConfigurationError, match=f"default='{setting}'") as caught:
        RuleTable(**{setting: ["/"], "protected": ["/admin"]})  # type: ignore[arg-type]
    assert caught.value.context == {"setting": setting}


def test_a_protected_root_rule_must_agree_with_the_default() -> None:
    with pytest.raises(ConfigurationError, match="contradicts default='public'"):
        RuleTable(protected=["/"], default="public")
    table = RuleTable(protected={"/": {"root"}}, public=["/health"])
    assert table.decide("/x") == Rule("/", PROTECTED, frozenset({"root"}))
    assert table.decide("/health").access is PUBLIC


@pytest.mark.parametrize(
    ("rule", "fixed"),
    [("/items/{item_id}", "/items"), ("/v1/{tenant}/admin", "/v1"), ("/{path:path}", "/")],
)
@pytest.mark.parametrize("setting", ["public", "optional", "protected"])
def test_a_rule_written_as_a_route_template_is_refused(rule: str, fixed: str, setting: str) -> None:
    """'/items/{item_id}' matched only that text while the OpenAPI document and the
    reader took it for the route: refused, naming the fixed part (issue 17 review)."""
    with pytest.raises(ConfigurationError, match="route template") as caught:
        RuleTable(**{setting: [rule]})  # type: ignore[arg-type]  # one of the three rule sets
    assert f"a rule for {fixed!r} covers every value" in str(caught.value)


@pytest.mark.parametrize("rule", ["/v1/my%20report", "/%2e%2e/admin", "/a%2Fb", "/100%"])
def test_rules_with_percent_escapes_are_refused(rule: str) -> None:
    """Rules match the decoded path: '/v1/my%20report' could never match (issue 15)."""
    with pytest.raises(ConfigurationError, match="percent-escape"):
        RuleTable(public=[rule])


INHERIT = RuleTable(
    public=["/v1/docs"],
    optional=["/v1/ops"],
    protected={
        "/": {"root"},
        "/v1": {"admin"},
        "/v1/jobs": set(),
        "/v1/jobs/run": {"run"},
        "/v1beta": {"beta"},
        "/v1/ops/kill": set(),
    },
)

# (path, access, scopes, id)
INHERIT_CASES: list[tuple[str, Access, frozenset[str], str]] = [
    ("/v1", PROTECTED, frozenset({"root", "admin"}), "outer"),
    ("/v1/jobs/7", PROTECTED, frozenset({"root", "admin"}), "inner-inherits"),
    ("/v1/jobs/run", PROTECTED, frozenset({"root", "admin", "run"}), "two-levels"),
    ("/v1beta", PROTECTED, frozenset({"root", "beta"}), "string-prefix-inherits-nothing"),
    ("/v1/docs", PUBLIC, frozenset(), "public-carve-out"),
    ("/v1/ops", OPTIONAL, frozenset(), "optional-carve-out"),
    ("/v1/ops/kill", PROTECTED, frozenset({"root", "admin"}), "protected-inside-carve-out"),
    ("/elsewhere", PROTECTED, frozenset({"root"}), "root-rule"),
]


@pytest.mark.parametrize(
    ("path", "access", "scopes"),
    [(p, a, s) for p, a, s, _ in INHERIT_CASES],
    ids=[i for *_, i in INHERIT_CASES],
)
def test_nested_protected_rules_inherit_outer_scopes(
    path: str, access: Access, scopes: frozenset[str]
) -> None:
    rule = INHERIT.decide(path)
    assert (rule.access, rule.scopes) == (access, scopes)


def test_rules_lists_longest_first_then_default() -> None:
    table = RuleTable(
        public=["/b", "/health"],
        optional=["/a/b/c"],
        protected={"/a": {"s"}, "/a/bb": set()},
        default="optional",
    )
    assert table.rules == (
        Rule("/health", PUBLIC),
        Rule("/a/b/c", OPTIONAL),
        Rule("/a/bb", PROTECTED, frozenset({"s"})),  # inherits the scopes of /a
        Rule("/a", PROTECTED, frozenset({"s"})),
        Rule("/b", PUBLIC),
        Rule("/", OPTIONAL),
    )
    assert RuleTable().rules == (Rule("/", PROTECTED),)


# ---------------------------------------------------------------------------
# decide: the stricter of the spelled and the resolved path
# ---------------------------------------------------------------------------

HEALTH = RuleTable(public=["/health", "/public"], protected=["/admin"], default="public")
SCOPED = RuleTable(
    public=["/public"],
    protected={"/admin": {"admin"}, "/billing": {"billing"}},
    default="public",
)

# (table, path, access, scopes, id)
STRICT_CASES: list[tuple[RuleTable, str, Access, frozenset[str], str]] = [
    (HEALTH, "/health/../admin", PROTECTED, frozenset(), "public-spelling-resolves-to-admin"),
    (HEALTH, "/admin/../health", PROTECTED, frozenset(), "admin-spelling-resolves-to-public"),
    (HEALTH, "/public/../admin/x", PROTECTED, frozenset(), "public-dotdot-admin-deep"),
    (HEALTH, "/public/./../admin", PROTECTED, frozenset(), "dot-then-dotdot"),
    (HEALTH, "/public/x/../../admin", PROTECTED, frozenset(), "two-levels-up"),
    (HEALTH, "/../admin", PROTECTED, frozenset(), "dotdot-above-root"),
    (HEALTH, "//admin", PROTECTED, frozenset(), "double-slash"),
    (HEALTH, "///admin//x", PROTECTED, frozenset(), "many-slashes"),
    (HEALTH, "/./admin", PROTECTED, frozenset(), "dot-segment"),
    (HEALTH, "/admin/.", PROTECTED, frozenset(), "trailing-dot"),
    (HEALTH, "/admin/..", PROTECTED, frozenset(), "admin-dotdot-to-root"),
    (HEALTH, "/health//", PUBLIC, frozenset(), "public-both-ways"),
    (HEALTH, "/health/./x", PUBLIC, frozenset(), "public-dot-both-ways"),
    (HEALTH, "//health", PUBLIC, frozenset(), "double-slash-public"),
    (HEALTH, "/.well-known/../health", PUBLIC, frozenset(), "default-public-both-ways"),
    (HEALTH, "/public/%2e%2e/admin", PUBLIC, frozenset(), "percent-dots-are-a-name"),
    (HEALTH, "//public/admin", PROTECTED, frozenset(), "network-path-reference"),
    (HEALTH, "//admin/x", PROTECTED, frozenset(), "network-path-resolved-protected"),
    (HEALTH, "/public//admin", PUBLIC, frozenset(), "inner-double-slash-is-no-authority"),
    (
        SCOPED,
        "/admin/../billing",
        PROTECTED,
        frozenset({"admin", "billing"}),
        "union-admin-billing",
    ),
    (
        SCOPED,
        "/billing/../admin/x",
        PROTECTED,
        frozenset({"admin", "billing"}),
        "union-billing-admin",
    ),
    (SCOPED, "/public/../admin", PROTECTED, frozenset({"admin"}), "public-to-scoped"),
    (SCOPED, "/admin/../public", PROTECTED, frozenset({"admin"}), "scoped-to-public"),
    (SCOPED, "/admin/./x", PROTECTED, frozenset({"admin"}), "same-rule-both-ways"),
]


@pytest.mark.parametrize(
    ("table", "path", "access", "scopes"),
    [(t, p, a, s) for t, p, a, s, _ in STRICT_CASES],
    ids=[i for *_, i in STRICT_CASES],
)
def test_decide_takes_the_stricter_spelling(
    table: RuleTable, path: str, access: Access, scopes: frozenset[str]
) -> None:
    rule = table.decide(path)
    assert (rule.access, rule.scopes) == (access, scopes)


ORIGIN_ROOT_PUBLIC = RuleTable(default="public", protected={"/admin": {"admin"}})

# Targets a server may pass through as scope["path"] without a leading '/'
# (absolute form, asterisk form, empty): every reading a router may make is judged.
NON_ORIGIN_CASES: list[tuple[str, Access, str]] = [
    ("http://host/admin", PROTECTED, "absolute-form"),
    ("https://h:8443/admin/x", PROTECTED, "absolute-form-port-deep"),
    ("http://host/public/../admin", PROTECTED, "absolute-form-dotdot"),
    ("admin", PROTECTED, "relative"),
    ("admin/x", PROTECTED, "relative-deep"),
    ("admin/..", PROTECTED, "relative-dotdot"),
    ("public/../admin", PROTECTED, "relative-public-dotdot"),
    ("http://host/public", PUBLIC, "absolute-form-public"),
    ("*", PUBLIC, "asterisk-form"),
    ("", PUBLIC, "empty"),
    ("1http://x/admin", PUBLIC, "scheme-starting-with-digit"),
    ("a b://c", PUBLIC, "scheme-with-space"),
    ("-://x", PUBLIC, "scheme-dash"),
]


@pytest.mark.parametrize(
    ("path", "access"),
    [(p, a) for p, a, _ in NON_ORIGIN_CASES],
    ids=[i for *_, i in NON_ORIGIN_CASES],
)
def test_decide_non_origin_form(path: str, access: Access) -> None:
    assert ORIGIN_ROOT_PUBLIC.decide(path).access is access


_NON_ORIGIN = st.one_of(
    st.text(max_size=30),
    spelled_paths().map(lambda path: path.lstrip("/")),
    st.builds(
        lambda scheme, rest: scheme + "://" + rest,
        st.text(alphabet="ah1 -+.:/", max_size=6),
        st.text(alphabet="ah/.:", max_size=12),
    ),
).filter(lambda path: not path.startswith("/"))


@given(_NON_ORIGIN)
def test_decide_is_total_on_non_origin_paths(path: str) -> None:
    """decide answers for any text a server might put in scope["path"], never raising,
    and never more leniently than the same text read as an origin-form path."""
    table = RuleTable(default="public", protected=["/admin", "/h"], optional=["/a"])
    assert table.decide(path).access >= table.decide("/" + path).access


def test_decide_optional_versus_public() -> None:
    table = RuleTable(public=["/p"], optional=["/o"], default="public")
    assert table.decide("/p/../o").access is OPTIONAL
    assert table.decide("/o/../p").access is OPTIONAL


# ---------------------------------------------------------------------------
# Hypothesis: decide against an independent reference matcher
# ---------------------------------------------------------------------------

_RULE_NAME = st.sampled_from(["public", "admin", "x"])
_RULE_PATH = st.lists(_RULE_NAME, min_size=1, max_size=2).map(lambda parts: "/" + "/".join(parts))
_SCOPES = st.frozensets(st.sampled_from(["a", "b", "c"]), max_size=2)
_ACCESS = st.sampled_from([PUBLIC, OPTIONAL, PROTECTED])

RuleSpec = dict[str, tuple[Access, frozenset[str]]]


@st.composite
def rule_specs(draw: st.DrawFn) -> tuple[RuleSpec, Access]:
    paths = draw(st.lists(_RULE_PATH, unique=True, min_size=1, max_size=8))
    spec: RuleSpec = {}
    for path in paths:
        access = draw(_ACCESS)
        spec[path] = (access, draw(_SCOPES) if access is PROTECTED else frozenset())
    return spec, draw(_ACCESS)


def build(spec: RuleSpec, default: Access) -> RuleTable:
    protected: dict[str, frozenset[str]] = {}
    public: list[str] = []
    optional: list[str] = []
    for path, (access, scopes) in spec.items():
        if access is PUBLIC:
            public.append(path)
        elif access is OPTIONAL:
            optional.append(path)
        else:
            protected[path] = scopes
    return RuleTable(
        public=public, optional=optional, protected=protected, default=default.name.lower()
    )


def reference(
    spec: Mapping[str, tuple[Access, frozenset[str]]], default: Access, path: str
) -> tuple[Access, frozenset[str]]:
    """Longest rule that is the path or a '/'-bounded string prefix of it; '/' covers all.

    A protected result also needs the scopes of every protected rule that covers the path.
    """
    covering = [rule for rule in spec if rule == "/" or path == rule or path.startswith(rule + "/")]
    if not covering:
        return default, frozenset()
    access, scopes = spec[max(covering, key=len)]
    if access is PROTECTED:
        for rule in covering:
            if spec[rule][0] is PROTECTED:
                scopes = scopes | spec[rule][1]
    return access, scopes


def readings(path: str) -> list[str]:
    """Every path a router may route on: as spelled, resolved, and for a network-path
    reference ('//host/rest', which urlsplit-based routers such as Quart route as '/rest')
    the path after the authority, again as spelled and resolved."""
    found = [path, resolved(path)]
    if path.startswith("//"):
        _, slash, rest = path[2:].partition("/")
        found += [slash + rest or "/", resolved(slash + rest)]
    return found


def strictest(
    spec: Mapping[str, tuple[Access, frozenset[str]]], default: Access, path: str
) -> tuple[Access, frozenset[str]]:
    """The reference answer for a request path: the strictest reading, all their scopes."""
    answers = [reference(spec, default, reading) for reading in readings(path)]
    return max(a for a, _ in answers), frozenset().union(*(s for _, s in answers))


def inherited(spec: RuleSpec) -> RuleSpec:
    """The spec with each protected rule's scopes widened by the protected rules around it."""
    return {path: reference(spec, PUBLIC, path) for path in spec}


@given(rule_specs(), spelled_paths())
def test_no_spelling_of_a_protected_path_is_public(
    rules: tuple[RuleSpec, Access], path: str
) -> None:
    spec, default = rules
    table = build(spec, default)
    as_spelled = reference(spec, default, path)[0]
    as_resolved = reference(spec, default, resolved(path))[0]
    if PROTECTED in (as_spelled, as_resolved):
        assert table.decide(path).access is PROTECTED
    if as_spelled is not PUBLIC or as_resolved is not PUBLIC:
        assert table.decide(path).access is not PUBLIC
    assert table.decide(path).access >= max(as_spelled, as_resolved)


@given(rule_specs(), spelled_paths())
def test_decide_matches_the_reference(rules: tuple[RuleSpec, Access], path: str) -> None:
    spec, default = rules
    table = build(spec, default)
    spelled_access, spelled_scopes = reference(spec, default, path)
    resolved_access, resolved_scopes = reference(spec, default, resolved(path))
    rule = table.decide(path)
    assert rule.access >= max(spelled_access, resolved_access)
    assert rule.scopes >= spelled_scopes | resolved_scopes
    # ...and no stricter than its readings: a path is not locked out by a rule that
    # covers none of them.
    assert (rule.access, rule.scopes) == strictest(spec, default, path)


@given(rule_specs(), spelled_paths())
def test_decide_agrees_across_spellings_of_canonical_paths(
    rules: tuple[RuleSpec, Access], path: str
) -> None:
    """On a canonical path, decide is the plain longest-prefix match."""
    spec, default = rules
    table = build(spec, default)
    canonical = resolved(path)
    expected = reference(spec, default, canonical)
    assert (table.decide(canonical).access, table.decide(canonical).scopes) == expected
    assert (table.match(canonical).access, table.match(canonical).scopes) == expected


@given(rule_specs())
def test_rules_property_reflects_the_spec(rules: tuple[RuleSpec, Access]) -> None:
    spec, default = rules
    listed = build(spec, default).rules
    assert listed[-1] == Rule("/", default)
    body = listed[:-1]
    assert {r.path: (r.access, r.scopes) for r in body} == inherited(spec)
    assert [len(r.path) for r in body] == sorted((len(r.path) for r in body), reverse=True)


# ---------------------------------------------------------------------------
# Through the middleware (raw ASGI)
# ---------------------------------------------------------------------------


def guarded(**kwargs: Any) -> tuple[APIKeyMiddleware, Recorder]:
    recorder = Recorder()
    settings: dict[str, Any] = {
        "public": ["/public", "/health"],
        "protected": ["/admin"],
        "default": "public",
    }
    settings.update(kwargs)
    return APIKeyMiddleware(recorder, keys=[CANARY], **settings), recorder


PROTECTED_SPELLINGS = [
    ("/admin", "plain"),
    ("/admin/", "trailing-slash"),
    ("/public/../admin", "public-dotdot"),
    ("/health/../admin/users", "health-dotdot-deep"),
    ("//admin", "double-slash"),
    ("/./admin", "dot"),
    ("/../admin", "above-root"),
    ("/admin/../public", "admin-dotdot-public"),
    # '/public/%2e%2e/admin' on the wire: decoded by the server into the ASGI path
    ("/public/../admin", "decoded-percent-dots"),
    ("/public/.%2e/../../admin", "mixed-literal-then-dots"),
]


@pytest.mark.parametrize(
    "path", [p for p, _ in PROTECTED_SPELLINGS], ids=[i for _, i in PROTECTED_SPELLINGS]
)
def test_middleware_guards_every_spelling(path: str) -> None:
    app, recorder = guarded()
    refused = call(app, http_scope(path), recorder)
    assert refused.status == 401
    assert refused.seen is None
    assert refused.header("www-authenticate") is not None
    allowed = call(app, http_scope(path, headers=[bearer(CANARY)]), recorder)
    assert allowed.status == 200
    assert allowed.seen is not None
    assert allowed.seen["path"] == path  # the app routes on the path as sent


@pytest.mark.parametrize("path", ["/public", "/public/x", "//health", "/health/./", "/elsewhere"])
def test_middleware_lets_public_spellings_through(path: str) -> None:
    app, recorder = guarded()
    result = call(app, http_scope(path), recorder)
    assert result.status == 200
    assert result.seen is not None


PREFLIGHT = [(b"origin", b"https://example.com"), (b"access-control-request-method", b"GET")]


def test_cors_preflight_refused_by_default() -> None:
    app, recorder = guarded()
    result = call(app, http_scope("/admin", method="OPTIONS", headers=PREFLIGHT), recorder)
    assert result.status == 401
    assert result.seen is None


def test_cors_preflight_passes_when_allowed() -> None:
    app, recorder = guarded(allow_cors_preflight=True)
    result = call(app, http_scope("/admin", method="OPTIONS", headers=PREFLIGHT), recorder)
    assert result.status == 200
    assert result.seen is not None


def test_cors_preflight_with_a_bad_key_is_still_refused() -> None:
    app, recorder = guarded(allow_cors_preflight=True)
    headers = [*PREFLIGHT, bearer("sk-not-a-configured-key-000000")]
    result = call(app, http_scope("/admin", method="OPTIONS", headers=headers), recorder)
    assert result.status == 401
    assert result.seen is None


NOT_PREFLIGHT = [
    ("OPTIONS", [], "options-without-headers"),
    ("OPTIONS", PREFLIGHT[:1], "origin-only"),
    ("OPTIONS", PREFLIGHT[1:], "request-method-only"),
    ("GET", PREFLIGHT, "get-with-preflight-headers"),
    ("POST", PREFLIGHT, "post-with-preflight-headers"),
]


@pytest.mark.parametrize(
    ("method", "headers"),
    [(m, h) for m, h, _ in NOT_PREFLIGHT],
    ids=[i for *_, i in NOT_PREFLIGHT],
)
def test_non_preflight_still_refused_when_preflight_allowed(
    method: str, headers: list[tuple[bytes, bytes]]
) -> None:
    app, recorder = guarded(allow_cors_preflight=True)
    result = call(app, http_scope("/admin", method=method, headers=headers), recorder)
    assert result.status == 401
    assert result.seen is None


@pytest.mark.parametrize("path", ["://", "1http://x/admin", "a b://c/admin"])
def test_middleware_answers_any_scope_path(path: str) -> None:
    # A server that passes the request target through may hand over any text;
    # the middleware must answer it (here: no reading names /admin), not raise.
    app, recorder = guarded()
    scope = http_scope("/")
    scope["path"] = path
    assert call(app, scope, recorder).status == 200


def test_rules_are_relative_to_root_path() -> None:
    app, recorder = guarded(default="protected")
    mounted = call(app, http_scope("/api/health", root_path="/api"), recorder)
    assert mounted.status == 200
    assert mounted.seen is not None
    admin = call(app, http_scope("/api/admin", root_path="/api"), recorder)
    assert admin.status == 401
    sneaky = call(app, http_scope("/api/health/../admin", root_path="/api"), recorder)
    assert sneaky.status == 401
    # '/apihealth' is not under '/api': judged whole, and no rule names it.
    outside = call(app, http_scope("/apihealth", root_path="/api"), recorder)
    assert outside.status == 401
    # The rule '/health' does not open '/api/health' when the app is not mounted at '/api'.
    unmounted = call(app, http_scope("/api/health"), recorder)
    assert unmounted.status == 401


def test_root_path_cannot_hide_a_protected_rule() -> None:
    app, recorder = guarded()
    result = call(app, http_scope("/api/admin/x", root_path="/api"), recorder)
    assert result.status == 401
    assert call(app, http_scope("/api/public", root_path="/api"), recorder).status == 200


def _uncached(table: RuleTable, path: str) -> Rule:
    fresh = RuleTable(
        public=[r.path for r in table.rules if r.access is Access.PUBLIC and r.path != "/"],
        protected={r.path: r.scopes for r in table.rules[:-1] if r.access is Access.PROTECTED},
        optional=[r.path for r in table.rules[:-1] if r.access is Access.OPTIONAL],
        default=table.rules[-1].access.name.lower(),
    )
    return fresh.decide(path)


@given(st.lists(st.text(alphabet="/.abdmin%2e", max_size=30), min_size=1, max_size=40))
def test_cached_decisions_are_the_decisions(paths: list[str]) -> None:
    table = RuleTable(public=["/docs"], optional=["/maybe"], protected={"/admin": {"ops"}})
    for path in paths * 2:  # the second time from the cache
        assert table.decide(path) == _uncached(table, path)


def test_the_decision_cache_stays_bounded_and_skips_long_paths() -> None:
    table = RuleTable(public=["/docs"])
    for n in range(10_000):
        assert table.decide(f"/v1/items/{n}").access is Access.PROTECTED
        assert len(table._decided) <= 4096
    long_path = "/docs/" + "a" * 300
    assert table.decide(long_path).access is Access.PUBLIC
    assert long_path not in table._decided
    assert table.decide("/docs/x").access is Access.PUBLIC
    assert table._decided["/docs/x"].access is Access.PUBLIC


# -- decide_under: the mount point taken off in every way a router does ------------------


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/api/admin/users", "/api", Access.PROTECTED),  # Starlette's reading
        ("/api/health", "/api", Access.PUBLIC),
        # Quart and a2wsgi take "/api" off "/apiadmin" too: judged as /admin as well.
        ("/apiadmin/users", "/api", Access.PROTECTED),
        ("/apihealth", "/api", Access.PUBLIC),  # "/apihealth" and "/health": both public
        ("/api/", "/api", Access.PUBLIC),  # the mount point itself is "/"
        ("/api", "/api", Access.PUBLIC),
        ("/api/admin", "/api/", Access.PROTECTED),  # a trailing slash: "admin" -> "/admin"
        ("/other/admin", "/api", Access.PUBLIC),  # not under the mount point: as spelled
    ],
)
def test_decide_under_judges_every_reading_of_the_mount_point(
    path: str, root_path: str, expected: Access
) -> None:
    table = RuleTable(public=["/health"], protected={"/admin": {"admin"}}, default="public")
    assert table.decide_under(path, root_path).access is expected


def test_decide_under_keeps_the_scopes_of_the_stricter_reading() -> None:
    table = RuleTable(public=["/health"], protected={"/admin": {"admin"}})
    assert table.decide_under("/apiadmin/users", "/api").scopes == frozenset({"admin"})
    assert table.decide_under("/api/admin/users", "/api").scopes == frozenset({"admin"})


def test_a_prefix_only_mount_reading_cannot_open_a_protected_path() -> None:
    # A router that strips root_path as a plain prefix routes /apiadmin/users as
    # /admin/users: a key without the admin scope must not get there.
    app = Recorder()
    middleware = APIKeyMiddleware(
        app, keys=[CANARY], default="public", protected={"/admin": {"admin"}}
    )
    scope = http_scope("/apiadmin/users", headers=[bearer(CANARY)], root_path="/api")
    assert call(middleware, scope).status == 403
    assert call(middleware, http_scope("/apiadmin/users", root_path="/api")).status == 401
    assert app.seen == []
    # Under the mount point proper, the public default still applies.
    assert call(middleware, http_scope("/api/docs", root_path="/api")).status == 200


# -- targets that are not in origin form, read as URLs (Quart routes urlparse(path).path) --


@pytest.mark.parametrize(
    "path",
    [
        "http:/admin/users",
        "x:/admin/users",
        "http:admin/users",
        "http://127.0.0.1/admin;x",  # urlparse drops ;params from the last segment
        "http://127.0.0.1/admin/users;x",
        "//127.0.0.1/admin;x",
    ],
)
def test_a_target_read_as_a_url_cannot_open_a_protected_path(path: str) -> None:
    table = RuleTable(default="public", protected={"/admin": {"admin"}})
    rule = table.decide(path)
    assert (rule.access, rule.scopes) == (Access.PROTECTED, frozenset({"admin"}))


@pytest.mark.parametrize(
    "path",
    [
        "http://127.0.0.1/api/admin/users",
        "http://127.0.0.1/apiadmin/users",
        "http:/api/admin/users",
        "http:/apiadmin;x",
    ],
)
def test_a_url_target_under_a_mount_point_is_judged_without_it(path: str) -> None:
    table = RuleTable(default="public", protected={"/admin": {"admin"}})
    rule = table.decide_under(path, "/api")
    assert (rule.access, rule.scopes) == (Access.PROTECTED, frozenset({"admin"}))
