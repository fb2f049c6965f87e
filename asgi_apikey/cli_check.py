"""The ``check`` command: what the configuration (and an app's rules) amount to, and warnings.

:func:`report` reads an authenticator's status and, with ``--app``, the
middleware's rules against the app's routes, and lists what deserves a
warning (development mode, keys that expire soon or are too short for
production, rules that open more routes than they name). It holds no secret.
"""

from __future__ import annotations

import argparse
import json
import traceback
from typing import Any, TextIO

from structlog.testing import capture_logs

from .audit import loggable
from .auth import APIKeyAuth
from .cli_app import AppNotLoaded, middlewares_of, route_paths
from .cli_keys import iso_instant
from .errors import ConfigurationError
from .middleware import APIKeyMiddleware
from .paths import Access, Rule

__all__ = ["opened_routes", "report", "run_check"]

_SOON = 7 * 24 * 3600  # keys expiring within a week get a warning


def run_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``check``: print the report of the environment's (or ``--app``'s) configuration."""
    pairs: list[tuple[APIKeyAuth, APIKeyMiddleware | None]]
    try:
        with capture_logs():  # the report says what the startup warning would
            if args.app:
                found = middlewares_of(args.app)
                pairs = [(m.auth, m) for m, _ in found]
                guarded = [guards for _, guards in found]
                if not pairs:
                    raise ConfigurationError(
                        f"no APIKeyMiddleware found in {loggable(args.app, 200)}: add it with "
                        "app.add_middleware(APIKeyMiddleware, ...)"
                    )
            else:
                pairs, guarded = [(APIKeyAuth.from_env(), None)], [None]
    except AppNotLoaded as error:
        err.write(f"error: {error}\n")
        if args.traceback and error.__cause__ is not None:
            traceback.print_exception(error.__cause__, file=err)
        return 2
    except ConfigurationError as error:
        err.write(f"error: {error}\n")
        return 1
    reports = [
        report(auth, middleware, guards)
        for (auth, middleware), guards in zip(pairs, guarded, strict=True)
    ]
    warnings = [warning for one in reports for warning in one["warnings"]]
    if args.json:
        out.write(json.dumps(reports if args.app else reports[0], indent=2) + "\n")
    else:
        out.write("\n".join(_text(one) for one in reports))
    return 1 if args.strict and warnings else 0


def opened_routes(middleware: APIKeyMiddleware, app: object) -> list[str]:
    """Warnings for public and optional rules that cover routes they do not name.

    ``public=["/v1"]`` opens ``/v1/admin`` too: say so, route by route. The
    companion routes of FastAPI's docs page (under its ``docs_url``) are expected.
    """
    router, paths = route_paths(app)
    docs = getattr(router, "docs_url", None)
    opened: dict[Rule, list[str]] = {}
    for path in paths:
        rule = middleware.rules.decide(path)
        if (
            rule.access in (Access.PUBLIC, Access.OPTIONAL)
            and rule.path not in ("", "/", docs)
            and path.rstrip("/") != rule.path
        ):
            opened.setdefault(rule, []).append(path)
    return [
        f"{rule.access.name.lower()} rule {rule.path!r} also opens "
        f"{', '.join(sorted(routes)[:10])}{' ...' if len(routes) > 10 else ''}, which it "
        f"does not name: list them in protected= to keep them closed, or name the route itself"
        for rule, routes in opened.items()
    ]


def report(
    auth: APIKeyAuth, middleware: APIKeyMiddleware | None = None, guards: object = None
) -> dict[str, Any]:
    """What ``check`` prints: the status, the rules, and warnings. Holds no secret.

    ``guards`` is the app behind ``middleware``, whose routes are compared with
    the rules.
    """
    status = auth.status()
    del status["counters"]  # always zero here: nothing has been served yet
    configuration = auth.configuration
    warnings: list[str] = []
    # The warning the authenticator logged when it was built, if any.
    if auth.is_development_mode:
        warnings.append(configuration.development_detail())
    elif auth.unguarded:
        warnings.append(configuration.no_keys_detail(auth.empty_key_variables()))
    if not configuration.environment_set:
        warnings.append(configuration.environment_unset_detail())
    now = auth.clock()
    for entry in auth.snapshot.by_digest.values():
        key_id = entry.key.key_id
        if entry.key._short and not configuration.strict:
            warnings.append(configuration.short_key_detail(key_id))
        if entry.expires_at is not None and now >= entry.expires_at:
            warnings.append(f"key {key_id!r} has expired ({iso_instant(entry.key.expires_at)})")
        elif entry.expires_at is not None and entry.expires_at - now < _SOON:
            warnings.append(f"key {key_id!r} expires soon ({iso_instant(entry.key.expires_at)})")
        if entry.not_before is not None and now < entry.not_before:
            warnings.append(
                f"key {key_id!r} is not valid yet ({iso_instant(entry.key.not_before)})"
            )
    result: dict[str, Any] = {"status": status, "rules": [], "warnings": warnings}
    if middleware is not None:
        described = middleware.describe()
        result["rules"] = described["rules"]
        result["middleware"] = {k: v for k, v in described.items() if k != "rules"}
        if described["default"] != "protected":
            warnings.append(
                f"paths that no rule names are {described['default']}: "
                "default='protected' denies them unless a rule opens them"
            )
        if described["allow_query_token"]:
            warnings.append(
                "allow_query_token is on: keys in URLs reach access logs and browser history"
            )
        if not described["security_headers"]:
            warnings.append("security headers are switched off")
        warnings.extend(opened_routes(middleware, guards))
    return result


_ACCESS = {"local": " (development: this machine only)", "open": " (development: every client)"}


def _text(one: dict[str, Any]) -> str:
    status = one["status"]
    lines = [
        f"environment: {status['environment']}",
        f"mode:        {status['mode']}" + _ACCESS.get(status.get("development_access"), ""),
        f"keys:        {status['key_count']}"
        + (f" ({', '.join(status['key_ids'])})" if status["key_ids"] else ""),
        "features:    " + ", ".join(name for name, on in status["features"].items() if on),
    ]
    source = status.get("source") or {}
    if source.get("kind") == "redis":
        lines.insert(
            3, f"source:      redis at {source['url']} (its keys are read when the app starts)"
        )
    if one["rules"]:
        lines.append("rules:")
        for rule in one["rules"]:
            scopes = f"  needs {' '.join(rule['scopes'])}" if rule["scopes"] else ""
            lines.append(f"  {rule['path']:<28} {rule['access']}{scopes}")
    by_path = one.get("middleware", {}).get("path_security_headers") or {}
    base = by_path.get("/", {})
    differing = {
        prefix: sorted(name for name in {*fields, *base} if fields.get(name) != base.get(name))
        for prefix, fields in by_path.items()
        if prefix != "/"
    }
    if differing:
        lines.append("headers per path (the ones that differ; check --json has the values):")
        for prefix, names in differing.items():
            lines.append(f"  {prefix:<28} {', '.join(names) or 'the same as elsewhere'}")
    limits = one.get("middleware", {}).get("rate_limits")
    if limits:
        lines.extend(_limit_lines(limits))
    if one["warnings"]:
        lines.append("warnings:")
        lines.extend(f"  - {warning}" for warning in one["warnings"])
    else:
        lines.append("no warnings")
    return "\n".join(lines) + "\n"


def _limit_lines(limits: dict[str, Any]) -> list[str]:
    """The rate limits of ``check``'s text: what is limited, and where the counts live."""

    def text(limit: object) -> str:
        if isinstance(limit, dict):
            return ", ".join(f"{name} {value}" for name, value in limit.items())
        return str(limit)

    lines = ["rate limits:"]
    if limits.get("default") is not None:
        lines.append(f"  {'keys without their own':<28} {text(limits['default'])}")
    for scope, limit in limits.get("scopes", {}).items():
        lines.append(f"  {'scope ' + scope:<28} {text(limit)}")
    for path, limit in limits.get("paths", {}).items():
        lines.append(f"  {path:<28} {text(limit)} per caller")
    if limits.get("anonymous") is not None:
        lines.append(f"  {'anonymous clients':<28} {text(limits['anonymous'])} per address")
    shared = limits.get("shared")
    where = f"in {shared.get('url', 'a shared store')}" if shared else "in each process"
    lines.append(f"  counted {where}")
    return lines
