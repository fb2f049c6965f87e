"""The suite's output: the targets, a markdown table, a PNG chart, the environment."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.driver import BenchmarkError, Summary, paired
from benchmarks.e2e_report import LABELS as E2E_SERVERS
from benchmarks.e2e_report import e2e_table

APIKEY = "asgi_apikey"
STARLETTE_AUTH = "starlette AuthenticationMiddleware"
HTTP_BEARER = "fastapi HTTPBearer"
HEADERS_ONLY = "noop + headers"  # a no-op middleware adding asgi_apikey's security headers
#: Each refusal's target (issue 19): its time over a canned 401's.
REFUSALS = {
    "asgi_apikey: no credentials": 1.5,
    "asgi_apikey: unknown key": 2.0,
    "asgi_apikey: malformed header": 2.0,
}
#: asgi_apikey's requests/s over the headers-only variant's: what the check alone costs.
E2E_HEADERS_TARGET = ("vs_headers", "the headers-only variant's", 0.97)
ONE_KEY, MANY_KEYS = "asgi_apikey, 1 key", "asgi_apikey, 100,000 keys"
PACKAGES = (
    "asgi_apikey",
    "starlette",
    "fastapi",
    "uvicorn",
    "httptools",
    "structlog",
    "fastapi-key-auth",
)


#: Known limits of the method, printed with every result.
CAVEATS = (
    "Refusals are timed in a sustained flood from one client: after the first few in each "
    "minute the failure log throttles them, so no `authentication_failed` line is rendered. "
    "A refusal that is logged costs the structlog pipeline on top (several times a canned 401).",
    "Every accepted request presents the same key; with many distinct keys in use the lookup "
    "touches more memory (the key-count rows are a best case).",
    "In process, response headers are not serialised; a server pays for the security headers "
    "again when it encodes them, which is part of why the end-to-end cost is larger.",
    "The apps are moved out of the garbage collector's way (gc.freeze) once built; a server "
    "that does not do so pays for traversing a large key table in full collections.",
    "Quartiles show how rounds vary, not a confidence interval; a median within a few per "
    "cent of its limit is a coin toss on this machine.",
)


def write_results(out: Path, name: str, data: object, page: str) -> None:
    """Write ``<name>.json`` and ``<name>.md`` into ``out`` and print the page."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / f"{name}.md").write_text(page)
    print(page)


def measured_on(data: dict[str, Any]) -> str:
    """A results page's first line: when, on what, at which commit, and whether a smoke run."""
    env = data["environment"]
    load = ", ".join(f"{x:.2f}" for x in env["load_average"] or [])
    smoke = " **Smoke run: these numbers mean nothing.**" if data.get("smoke") else ""
    return (
        f"Measured {env['date']} on {env['platform']}, {env['cpu_count']} CPUs, "
        f"{env['implementation']} {env['python']}, commit {env['commit']}; load average "
        f"before: {load}.{smoke}"
    )


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    commit: str | None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, fixed argv
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except OSError:
        commit = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        # fastapi-key-auth scans the whole environment on every request.
        "environment_variables": len(os.environ),
        "commit": commit or None,
        "versions": versions,
    }


def targets(times: dict[str, list[float]], e2e: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each target of the suite with its measured ratio and whether it is met."""
    found: list[dict[str, Any]] = []

    def add(
        name: str,
        summary: Summary | None,
        dropped: int = 0,
        *,
        limit: float,
        at_most: bool,
        unit: str = "x",
    ) -> None:
        met = None
        if summary is not None:
            met = summary.median <= limit if at_most else summary.median >= limit
        found.append(
            {
                "target": name,
                "measured": None if summary is None else summary.as_dict(),
                "limit": limit,
                "at_most": at_most,
                "unit": unit,
                "met": met,
                "verdict": verdict(summary, limit, at_most=at_most),
                "dropped_rounds": dropped,
            }
        )

    def ratio_of(a: tuple[str, str], b: tuple[str, str]) -> tuple[Summary | None, int]:
        """The paired ratio, and how many rounds it left out (see :func:`paired`)."""
        if not all(name in times for name in (*a, *b)):
            return None, 0
        try:
            return paired(times, a, b)
        except BenchmarkError:
            return None, len(times[a[0]])

    add(
        "accepted: asgi_apikey's added cost / Starlette AuthenticationMiddleware's",
        *ratio_of((APIKEY, "bare"), (STARLETTE_AUTH, "bare")),
        limit=1.0,
        at_most=True,
    )
    add(
        "accepted: FastAPI HTTPBearer's added cost / asgi_apikey's",
        *ratio_of((HTTP_BEARER, "fastapi"), (APIKEY, "bare")),
        limit=15.0,
        at_most=False,
    )

    def time_ratio(variant: str, baseline: str) -> Summary | None:
        """The round-by-round ratio of two variants' whole times per request."""
        if variant not in times or baseline not in times:
            return None
        return Summary.of([t / b for t, b in zip(times[variant], times[baseline], strict=True)])

    add(
        "accepted: asgi_apikey's time / the no-op middleware adding the same headers",
        time_ratio(APIKEY, HEADERS_ONLY),
        limit=1.15,
        at_most=True,
    )
    for refusal, limit in REFUSALS.items():
        add(
            f"refused ({refusal.split(': ')[1]}): time / a canned 401's",
            time_ratio(refusal, "canned 401"),
            limit=limit,
            at_most=True,
        )
    add(
        "100,000 keys: added cost / 1 key's",
        *ratio_of((MANY_KEYS, "bare"), (ONE_KEY, "bare")),
        limit=1.10,
        at_most=True,
    )
    for http, label in E2E_SERVERS.items():
        result = (e2e or {}).get("results", {}).get(http) or {}
        for key, against, limit in (("ratio", "the bare app's", 0.95), E2E_HEADERS_TARGET):
            add(
                f"end to end, {label}: requests/s / {against}",
                Summary.of(result[key]) if result.get(key) else None,
                limit=limit,
                at_most=False,
            )
    return found


def verdict(summary: Summary | None, limit: float, *, at_most: bool) -> str:
    """``met`` or ``missed`` when the middle half of the rounds is on one side of the limit.

    When the limit falls between the quartiles, the median's side of it is
    not a finding on a machine this noisy: ``unclear``.
    """
    if summary is None:
        return "not measured"
    if summary.low < limit < summary.high:
        return "unclear"
    below = summary.median <= limit
    return "met" if below == at_most or summary.median == limit else "missed"


def _us(summary: dict[str, float]) -> str:
    return f"{summary['median']:.2f} ({summary['q1']:.2f} to {summary['q3']:.2f})"


def _ratio(summary: dict[str, float]) -> str:
    return f"{summary['median']:.2f} ({summary['q1']:.2f} to {summary['q3']:.2f})"


def markdown(data: dict[str, Any]) -> str:
    """The results as a markdown page."""
    env = data["environment"]
    lines = [
        "# asgi_apikey benchmark results",
        "",
        f"Measured {env['date']} on {env['platform']}, {env['cpu_count']} CPUs, "
        f"{env['implementation']} {env['python']}, commit {env['commit']}; "
        f"load average before: {', '.join(f'{x:.2f}' for x in env['load_average'] or [])}.",
        f"In process: {data['settings']['rounds']} rounds of {data['settings']['requests']:,} "
        "requests per variant, shuffled each round; medians of per-round values, "
        "quartiles in parentheses.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v) + ".",
        "",
        "## Targets",
        "",
        "| target | measured | limit | met |",
        "|---|---|---|---|",
    ]
    for target in data["targets"]:
        measured = "not measured" if target["measured"] is None else _ratio(target["measured"])
        bound = ("≤ " if target["at_most"] else "≥ ") + f"{target['limit']:g}"
        met = {True: "yes", False: "**no**", None: "—"}[target["met"]]
        if target["verdict"] == "unclear":
            met += " (unclear: the limit is within the quartiles)"
        if target["dropped_rounds"]:
            measured += f"; {target['dropped_rounds']} round(s) with no added cost left out"
        lines.append(f"| {target['target']} | {measured} | {bound} | {met} |")
    lines += ["", "## What these numbers do not show", ""]
    lines += [f"- {caveat}" for caveat in CAVEATS]
    titles = {
        "accepted": "Accepted request (µs per request; added = over its baseline's)",
        "refused": "Refused request (ratio = time / a canned 401's)",
        "keys": "Key count (accepted request)",
    }
    for group, title in titles.items():
        lines += ["", f"## {title}", ""]
        lines += ["| variant | µs per request | added µs | ratio | baseline | note |"]
        lines += ["|---|---|---|---|---|---|"]
        for row in data["rows"]:
            if row["group"] != group:
                continue
            lines.append(
                f"| {row['name']} | {_us(row['us_per_request'])} | {_us(row['added_us'])} "
                f"| {_ratio(row['ratio'])} | {row['baseline']} | {row['note']} |"
            )
    e2e = data.get("e2e")
    if e2e:
        lines += ["", "## End to end (real servers on 127.0.0.1)", "", *e2e_table(e2e)]
    lines.append("")
    return "\n".join(lines)


def chart(data: dict[str, Any], path: Path) -> None:
    """A PNG: added cost of each accepted-path variant, refusals, key counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [
        ("accepted", "added_us", "Accepted request: µs added over the bare app (log scale)", True),
        ("refused", "us_per_request", "Refused request: µs per request", False),
        ("keys", "added_us", "Key count: µs added over the bare app", False),
    ]
    figure, axes = plt.subplots(3, 1, figsize=(9, 10), height_ratios=[3, 1.4, 1.4])
    for axis, (group, field, title, log) in zip(axes, groups, strict=True):
        rows = [
            row
            for row in data["rows"]
            if row["group"] == group and not (field == "added_us" and row["name"] == "bare")
        ]
        names = [
            row["name"]
            if row["baseline"] in ("bare", group, "canned 401")
            else f"{row['name']} (over {row['baseline']})"
            for row in rows
        ]
        medians = [max(row[field]["median"], 0.01) for row in rows]
        low = [max(0.0, row[field]["median"] - row[field]["q1"]) for row in rows]
        high = [max(0.0, row[field]["q3"] - row[field]["median"]) for row in rows]
        colours = ["#d62728" if name.startswith("asgi_apikey") else "#7f7f7f" for name in names]
        axis.barh(names, medians, xerr=[low, high], color=colours, capsize=3)
        axis.invert_yaxis()
        axis.set_title(title, fontsize=10, loc="left")
        if log:
            axis.set_xscale("log")
        for y, value in enumerate(medians):  # the label clear of the error bar
            axis.text(value + high[y], y, f"  {value:.2f}", va="center", fontsize=8)
        axis.tick_params(axis="y", labelsize=8)
    env = data["environment"]
    figure.suptitle(
        f"asgi_apikey {env['versions'].get('asgi_apikey')} — Python {env['python']}, "
        f"{env['cpu_count']} CPUs; medians with quartiles",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
