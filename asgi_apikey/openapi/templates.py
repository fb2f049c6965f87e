"""Which rule a document path such as ``/items/{id}`` gets from a rule table.

A document names its paths by template, the middleware decides concrete
paths: a parameter stands for any segment, so the values of one template may
fall under different rules. :func:`decide_template` gives the strictest.
"""

from __future__ import annotations

import re

from ..paths import Access, Rule, RuleTable, normalize_path

_CONVERTER = re.compile(r":\w+}")  # Starlette's `{id:int}` is `{id}` in a document


def decide_template(rules: RuleTable, template: str) -> tuple[Rule, bool, Access]:
    """The rule for ``template``, whether it varies, and the least strict access of its values.

    The work behind :meth:`~asgi_apikey.openapi.OpenAPISecurity.decide` (see there
    for how a parameter is read); the third value is the least strict access any
    value of the template gets: below protected, some requests come without a key.

    >>> rules = RuleTable(public=["/files"], protected={"/files/secret": {"admin"}})
    >>> rule, varies, lenient = decide_template(rules, "/files/{name}")
    >>> rule.access.name, varies, lenient.name
    ('PROTECTED', True, 'PUBLIC')
    """
    path = normalize_path(_CONVERTER.sub("}", template))
    rule = rules.match(path)
    segments = path.split("/")[1:]
    # Rules that some values reach through a parameter, and that differ from the rule
    # for the rest ("/" covers every path: it is the rule or an ancestor of it).
    differing = [
        other
        for other in rules.rules
        if other.path != "/"
        and (other.access, other.scopes) != (rule.access, rule.scopes)
        and _below_parameter(other.path.split("/")[1:], segments)
    ]
    if not differing:
        return rule, False, rule.access
    access = max(other.access for other in (rule, *differing))
    lenient = min(other.access for other in (rule, *differing))
    scopes = frozenset().union(
        *(other.scopes for other in (rule, *differing) if other.access is Access.PROTECTED)
    )
    return Rule(rule.path, access, scopes), True, lenient


def _below_parameter(rule: list[str], template: list[str]) -> bool:
    """Whether some values of the template's parameters put a path under ``rule``.

    Only through a parameter: a rule the template names as spelled is its
    match or an ancestor of it. The template's last parameter may stand for
    several segments (a ``path`` converter), so rules deeper than it count.
    """
    through_parameter = False
    for wanted, segment in zip(rule, template, strict=False):
        if "{" in segment:
            through_parameter = True
        elif wanted != segment:
            return False
    if len(rule) > len(template):
        return bool(template) and "{" in template[-1]
    return through_parameter
