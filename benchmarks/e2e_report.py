"""The end-to-end results as markdown: the table of each server, and what the numbers say.

:func:`e2e_table` is the end-to-end section of ``results.md``; :func:`e2e_page`
is the page of its own (``e2e.md``) that ``python -m benchmarks.e2e --out DIR``
writes, with :func:`explanation`: where the time between the bare app and
asgi_apikey goes, server by server.
"""

from __future__ import annotations

from typing import Any

from benchmarks.driver import Summary

LABELS = {"h11": "uvicorn + h11", "httptools": "uvicorn + httptools", "hypercorn": "hypercorn"}
#: The server's encoding is said to dominate the headers' cost from this share of it on.
DOMINATES = 0.5


def _ratio(values: list[float] | None) -> str:
    if not values:
        return "—"
    s = Summary.of(values)
    return f"{s.median:.3f} ({s.low:.3f} to {s.high:.3f})"


def _rps(values: list[float] | None) -> str:
    return f"{Summary.of(values).median:,.0f}" if values else "—"


def _us(values: list[float] | None) -> str:
    if not values:
        return "—"
    s = Summary.of(values)
    return f"{s.median:.1f} µs ({s.low:.1f} to {s.high:.1f})"


def e2e_table(e2e: dict[str, Any]) -> list[str]:
    """The load, its caveat, and one row per server: requests/s and the round-by-round ratios."""
    settings = e2e.get("settings", {})
    lines = [
        f"Load: {e2e.get('tool')} ({e2e.get('tool_version')}) with "
        f"{settings.get('connections')} connections, {settings.get('effective_duration')} s "
        f"a run, {settings.get('rounds')} rounds; a fresh server process per run (one worker, "
        "asyncio loop), the apps in a shuffled order in each round. Ratios are medians of the "
        "rounds' ratios, quartiles in parentheses. The headers-only variant is a no-op "
        "middleware that adds the same security headers as asgi_apikey "
        f"({', '.join(settings.get('security_headers', []))}).",
    ]
    if e2e.get("caveat"):
        lines.append(f"Caveat: {e2e['caveat']}")
    lines += [
        "",
        "| server | bare req/s | headers-only req/s | asgi_apikey req/s "
        "| asgi_apikey / bare | asgi_apikey / headers-only (target ≥ 0.97) "
        "| headers-only / bare (the headers' cost) |",
        "|---|---|---|---|---|---|---|",
    ]
    for http, result in e2e.get("results", {}).items():
        label = LABELS.get(http, http)
        if not result.get("ratio"):
            lines.append(f"| {label} | — | — | — | {result.get('error') or 'no result'} | — | — |")
            continue
        lines.append(
            f"| {label} | {_rps(result.get('bare_rps'))} | {_rps(result.get('headers_rps'))} "
            f"| {_rps(result.get('asgi_apikey_rps'))} | {_ratio(result.get('ratio'))} "
            f"| {_ratio(result.get('vs_headers'))} | {_ratio(result.get('headers_ratio'))} |"
        )
    return lines


def explanation(e2e: dict[str, Any]) -> list[str]:
    """Per server: the headers' cost end to end, the server's share of it, the check's cost.

    A server process on one CPU serves 1/rps seconds of work a request, so the
    differences of 1e6/rps between apps (paired in each round) are microseconds
    a request. The server's own encoding of the headers comes from
    :mod:`benchmarks.encoding`, timed in process without the network.
    """
    encoding = (e2e.get("encoding") or {}).get("results", {})
    count = len(e2e.get("settings", {}).get("security_headers", [])) or None
    lines: list[str] = []
    for http, result in e2e.get("results", {}).items():
        headers_cost = result.get("headers_minus_bare_us")
        check_cost = result.get("asgi_apikey_minus_headers_us")
        if not headers_cost or not check_cost:
            continue
        label = LABELS.get(http, http)
        bare = Summary.of(result["bare_us"]).median
        headers = Summary.of(headers_cost)
        text = (
            f"- **{label}**: a request takes {bare:.0f} µs of the server's CPU bare; "
            f"the headers add {_us(headers_cost)} and asgi_apikey's check "
            f"{_us(check_cost)} on top of them."
        )
        encoded = encoding.get(http)
        if encoded is not None:
            spent = encoded["added_us"]["median"]
            text += (
                f" In process, the server's own code spends {spent:.1f} µs encoding the "
                f"{count} headers ({encoded['added_us_per_header']:.2f} µs a header)"
            )
            if headers.low > 0 and spent >= DOMINATES * headers.median:
                text += (
                    f": {spent / headers.median:.0%} of the headers' end-to-end cost, so the "
                    "server's per-header cost dominates it."
                )
            elif headers.low > 0:
                text += (
                    f": {spent / headers.median:.0%} of the headers' end-to-end cost; "
                    "most of it is elsewhere (the middleware layer, the larger response)."
                )
            else:
                text += (
                    "; end to end the headers' cost is within this run's noise (its "
                    "quartiles reach zero), so the in-process figure is the better measure."
                )
        lines.append(text)
    return lines


def e2e_page(data: dict[str, Any]) -> str:
    """The end-to-end results as a page of their own (``e2e.md``)."""
    env, e2e = data["environment"], data["e2e"]
    machine = e2e.get("machine", {})
    versions = ", ".join(
        f"{name} {machine[name]}"
        for name in ("uvicorn", "hypercorn", "h11", "httptools")
        if machine.get(name)
    )
    lines = [
        "# End to end: real servers",
        "",
        f"Measured {env['date']} on {env['platform']}, {env['cpu_count']} CPUs, "
        f"{env['implementation']} {env['python']}, commit {env['commit']}; {versions}; "
        f"load average before/after: {machine.get('loadavg_before')} / "
        f"{machine.get('loadavg_after')}. Rerun with "
        "`python -m benchmarks.e2e --out benchmarks/results` (see its `--help`).",
        "",
        *e2e_table(e2e),
    ]
    explained = explanation(e2e)
    if explained:
        encoding = e2e.get("encoding") or {}
        lines += [
            "",
            "## Where the time goes",
            "",
            "Microseconds a request are 1e6 / requests per second of one server process on "
            "one CPU, differences paired within each round (medians, quartiles in "
            "parentheses). The encoding figures time each server's own response-head code "
            "with and without the security headers, in process "
            f"({(encoding.get('settings') or {}).get('rounds')} interleaved rounds; "
            "uvicorn's `RequestResponseCycle.send` of each implementation, and for "
            "hypercorn its validation of the headers, then h11's encoding).",
            "",
            *explained,
        ]
    if e2e.get("error"):
        lines += ["", f"Errors: {e2e['error']}"]
    lines.append("")
    return "\n".join(lines)
