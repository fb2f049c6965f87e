"""Smoke tests of the end-to-end benchmark: real uvicorn servers, a short load, nothing left."""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import apps, e2e, encoding
from benchmarks.driver import answer, scope_for
from benchmarks.e2e_report import e2e_page, explanation
from benchmarks.report import environment, targets

# httpx always; wrk only where it is installed (the fallback is what CI without wrk runs).
TOOLS = ["httpx", *(["wrk"] if shutil.which("wrk") else [])]


def uvicorn_cmdlines(port: int) -> list[str]:
    """Command lines of live processes serving a benchmarks.apps factory on ``port``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if any(arg.startswith(b"benchmarks.apps:") for arg in argv) and (
            b"--port" in argv and str(port).encode() in argv
        ):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def assert_all_stopped(result: dict[str, Any]) -> None:
    assert result["servers"], "no server was started"
    for server in result["servers"]:
        assert server["pid"] is not None
        assert server["returncode"] is not None, server
        if Path("/proc").is_dir():
            assert uvicorn_cmdlines(server["port"]) == []


# Every server with httpx; with wrk (where installed) hypercorn only, to keep CI short.
RUNS = [("httpx", e2e.HTTP), *([("wrk", ("hypercorn",))] if "wrk" in TOOLS else [])]


@pytest.mark.parametrize(("tool", "servers"), RUNS, ids=[tool for tool, _ in RUNS])
def test_run_measures_every_app_on_every_server_and_stops_them(
    tool: str, servers: tuple[str, ...]
) -> None:
    lines: list[str] = []
    result = e2e.run(
        http=servers,
        duration=0.5,
        rounds=1,
        connections=4,
        tool=tool,
        encoding_rounds=1,
        log=lines.append,
    )

    assert result["error"] is None, result["error"]
    assert result["tool"] == tool
    assert result["caveat"] == e2e.CAVEATS[tool]
    assert result["settings"]["connections"] == 4
    assert result["settings"]["http"] == list(servers)
    assert result["settings"]["apps"] == ["bare", "headers", "asgi_apikey"]
    assert result["machine"]["cpu_count"] >= 1
    assert set(result["results"]) == set(servers)
    assert set(result["encoding"]["results"]) == set(servers)
    for entry in result["results"].values():
        assert entry["error"] is None
        assert len(entry["rounds"]) == 1
        this_round = entry["rounds"][0]
        assert sorted(this_round["order"]) == ["asgi_apikey", "bare", "headers"]
        for app in ("bare", "headers", "asgi_apikey"):
            assert this_round[app]["rps"] > 0
            assert this_round[app]["requests"] > 0
            assert entry[f"{app}_rps"] == [this_round[app]["rps"]]
            assert entry[f"{app}_us"] == [pytest.approx(1e6 / this_round[app]["rps"])]
        for name, (top, bottom) in e2e.RATIOS.items():
            (ratio,) = entry[name]
            assert math.isfinite(ratio)
            assert ratio > 0
            assert ratio == pytest.approx(this_round[top]["rps"] / this_round[bottom]["rps"])
            assert entry["summary"][name]["median"] == ratio
        (check_cost,) = entry["asgi_apikey_minus_headers_us"]
        assert check_cost == pytest.approx(entry["asgi_apikey_us"][0] - entry["headers_us"][0])
    # One fresh server per timed run: servers x 3 apps x 1 round.
    assert len(result["servers"]) == 3 * len(servers)
    assert_all_stopped(result)
    assert any("req/s" in line for line in lines)
    assert "caveat" in e2e.table(result)


def test_hypercorn_serves_on_loopback_in_one_process() -> None:
    argv = e2e.server_command("benchmarks.apps:bare", "hypercorn", 40123)
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:40123"
    assert argv[argv.index("--workers") + 1] == "0"
    assert argv[-1] == "benchmarks.apps:bare()"
    uvicorn = e2e.server_command("benchmarks.apps:bare", "h11", 40123)
    assert uvicorn[uvicorn.index("--host") + 1] == "127.0.0.1"


def test_the_headers_only_variant_answers_with_asgi_apikeys_headers() -> None:
    """Same names, values and order: so the two apps differ by the check alone."""
    variant = next(v for v in apps.variants((1,)) if v.name == "asgi_apikey")
    scope = scope_for(variant)
    with_check = asyncio.run(answer(apps.apikey_named(), dict(scope)))
    headers_only = asyncio.run(answer(apps.headers_only(), dict(scope)))
    assert with_check.status == headers_only.status == 200
    assert with_check.headers == headers_only.headers
    assert e2e.security_headers(with_check.headers) == list(apps.SECURITY_HEADERS)
    assert e2e.security_headers(asyncio.run(answer(apps.bare(), dict(scope))).headers) == []


def small_run(**factories: Any) -> dict[str, Any]:
    """One short round on h11 with two connections, some app swapped for a wrong one."""
    return e2e.run(
        http=("h11",),
        duration=0.5,
        rounds=1,
        connections=2,
        tool="httpx",
        warmup=0,
        log=lambda line: None,
        **factories,
    )


def test_a_headers_variant_without_the_headers_is_an_error() -> None:
    result = small_run(headers_factory="benchmarks.apps:bare", encoding_rounds=0)
    error = result["results"]["h11"]["error"]
    assert error is not None
    assert "security headers [], not" in error
    assert result["encoding"] is None
    assert_all_stopped(result)


def test_the_encoding_measure_times_each_servers_own_code() -> None:
    found = encoding.measure(rounds=2, seconds=0.002, seed=1)
    assert set(found["results"]) == set(encoding.SERVERS)
    assert found["settings"]["headers"] == len(apps.SECURITY_HEADERS)
    for entry in found["results"].values():
        assert entry["us_without"]["median"] > 0
        assert entry["us_with"]["median"] > 0
        assert entry["repeats"] >= 20


def test_the_encoding_check_refuses_a_server_that_drops_a_header() -> None:
    async def drops_one(headers: list[tuple[bytes, bytes]]) -> bytes:
        return b"HTTP/1.1 200 OK\r\n" + b"".join(
            name + b": " + value + b"\r\n" for name, value in headers[:-1]
        )

    with pytest.raises(RuntimeError, match="missing"):
        encoding.check(drops_one)
    for server in encoding.SERVERS:
        encoding.check(encoding.ANSWERS[server]())


def test_a_factory_that_does_not_load_fails_fast_and_leaves_nothing() -> None:
    started = time.monotonic()
    result = e2e.run(
        http=("h11",),
        duration=0.5,
        rounds=2,
        connections=2,
        tool="httpx",
        bare_factory="benchmarks.apps:does_not_exist",
        headers_factory="benchmarks.apps:does_not_exist",
        apikey_factory="benchmarks.apps:does_not_exist",
        log=lambda line: None,
    )
    assert time.monotonic() - started < e2e.START_TIMEOUT
    error = result["results"]["h11"]["error"]
    assert error is not None
    assert "exited with status" in error
    assert "does_not_exist" in error  # uvicorn's own message comes along
    assert result["error"] == f"h11: {error}"
    # The failure ends the implementation's rounds: one server, not one per round.
    assert len(result["servers"]) == 1
    assert result["results"]["h11"]["rounds"] == []
    assert result["results"]["h11"]["summary"]["ratio"]["median"] is None
    assert_all_stopped(result)


def test_an_apikey_server_that_does_not_refuse_is_an_error_not_a_fast_result() -> None:
    result = small_run(apikey_factory="benchmarks.apps:bare")
    error = result["results"]["h11"]["error"]
    assert error is not None
    assert "not 401" in error
    assert result["results"]["h11"]["rounds"] == []
    assert_all_stopped(result)


WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:40000/v1/chat/completions
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.00us  101.00us   2.10ms   90.00%
    Req/Sec     6.50k   200.00     6.90k    70.00%
  Latency Distribution
     50%  590.00us
     75%  640.00us
     90%  710.00us
     99%    1.20ms
  6512 requests in 1.00s, 1.01MB read
  Socket errors: connect 0, read 2, write 0, timeout 0
  Non-2xx or 3xx responses: 7
Requests/sec:   6498.71
Transfer/sec:      1.01MB
"""


def test_parse_wrk_reads_rate_latency_and_errors() -> None:
    found = e2e.parse_wrk(WRK_OUTPUT)
    assert found["rps"] == 6498.71
    assert found["requests"] == 6512
    assert found["elapsed"] == 1.0
    assert found["latency_ms"] == {"p50": 0.59, "p75": 0.64, "p90": 0.71, "p99": 1.2}
    assert found["non_2xx"] == 7
    assert found["socket_errors"] == {"connect": 0, "read": 2, "write": 0, "timeout": 0}
    clean = "\n".join(
        line for line in WRK_OUTPUT.splitlines() if "Non-2xx" not in line and "Socket" not in line
    )
    assert e2e.parse_wrk(clean)["non_2xx"] == 0
    assert not any(e2e.parse_wrk(clean)["socket_errors"].values())
    with pytest.raises(e2e.BenchError, match="Requests/sec"):
        e2e.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrong_arguments_are_refused_before_any_server_starts() -> None:
    with pytest.raises(ValueError, match="tool"):
        e2e.run(tool="ab", log=lambda line: None)
    with pytest.raises(ValueError, match="duration"):
        e2e.run(duration=0, log=lambda line: None)
    assert e2e.wrk_seconds(0.5) == 1
    assert e2e.wrk_seconds(5.0) == 5


def synthetic(bare: float, headers: float, apikey: float, encoded: float) -> dict[str, Any]:
    """An e2e result of two rounds with these requests/s, as run() would summarise it."""
    rps = {"bare": [bare, bare * 1.01], "headers": [headers, headers], "asgi_apikey": [apikey] * 2}
    entry: dict[str, Any] = {"error": None}
    for app, values in rps.items():
        entry[f"{app}_rps"] = values
        entry[f"{app}_us"] = [1e6 / value for value in values]
    for name, (top, bottom) in e2e.RATIOS.items():
        entry[name] = [a / b for a, b in zip(rps[top], rps[bottom], strict=True)]
        entry[f"{top}_minus_{bottom}_us"] = [
            a - b for a, b in zip(entry[f"{top}_us"], entry[f"{bottom}_us"], strict=True)
        ]
    added = {"median": encoded, "q1": encoded, "q3": encoded}
    return {
        "settings": {"security_headers": ["a", "b", "c", "d"]},
        "encoding": {"results": {"h11": {"added_us": added, "added_us_per_header": encoded / 4}}},
        "results": {"h11": entry},
    }


def test_targets_hold_asgi_apikey_to_097_of_the_headers_only_variant() -> None:
    rows = {row["target"]: row for row in targets({}, synthetic(5_000, 4_800, 4_700, 4.0))}
    against_headers = rows["end to end, uvicorn + h11: requests/s / the headers-only variant's"]
    assert against_headers["limit"] == 0.97
    assert against_headers["measured"]["median"] == pytest.approx(4_700 / 4_800)
    assert against_headers["verdict"] == "met"
    assert rows["end to end, uvicorn + h11: requests/s / the bare app's"]["met"] is False
    missed = {row["target"]: row for row in targets({}, synthetic(5_000, 4_800, 4_500, 4.0))}
    assert missed["end to end, uvicorn + h11: requests/s / the headers-only variant's"]["met"] is (
        False
    )
    unmeasured = rows["end to end, hypercorn: requests/s / the headers-only variant's"]
    assert unmeasured["verdict"] == "not measured"


def test_the_explanation_says_when_the_servers_encoding_dominates() -> None:
    # 200 µs bare, 208.3 µs with the headers: the headers cost about 8 µs end to end.
    dominated = explanation(synthetic(5_000, 4_800, 4_750, encoded=6.0))
    (line,) = dominated
    assert "uvicorn + h11" in line
    assert "6.0 µs encoding the 4 headers (1.50 µs a header)" in line
    assert "dominates" in line
    elsewhere = explanation(synthetic(5_000, 4_800, 4_750, encoded=1.0))[0]
    assert "dominates" not in elsewhere
    assert "most of it is elsewhere" in elsewhere
    noise = explanation(synthetic(5_000, 5_050, 5_000, encoded=6.0))[0]
    assert "within this run's noise" in noise
    page = e2e_page({"environment": environment(), "e2e": synthetic(5_000, 4_800, 4_750, 6.0)})
    assert "## Where the time goes" in page
    assert "| uvicorn + h11 | 5,025 | 4,800 | 4,750 |" in page
