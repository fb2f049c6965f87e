"""Smoke tests of the end-to-end benchmark: real uvicorn servers, a short load, nothing left."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import e2e

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


@pytest.mark.parametrize("tool", TOOLS)
def test_run_measures_both_apps_and_stops_every_server(tool: str) -> None:
    lines: list[str] = []
    result = e2e.run(duration=0.5, rounds=1, connections=4, tool=tool, log=lines.append)

    assert result["error"] is None, result["error"]
    assert result["tool"] == tool
    assert result["caveat"] == e2e.CAVEATS[tool]
    assert result["settings"]["connections"] == 4
    assert result["settings"]["http"] == ["h11", "httptools"]
    assert result["machine"]["cpu_count"] >= 1
    assert set(result["results"]) == {"h11", "httptools"}
    for entry in result["results"].values():
        assert entry["error"] is None
        assert len(entry["rounds"]) == 1
        this_round = entry["rounds"][0]
        assert sorted(this_round["order"]) == ["asgi_apikey", "bare"]
        for app in ("bare", "asgi_apikey"):
            assert this_round[app]["rps"] > 0
            assert this_round[app]["requests"] > 0
        assert entry["bare_rps"] == [this_round["bare"]["rps"]]
        assert entry["asgi_apikey_rps"] == [this_round["asgi_apikey"]["rps"]]
        (ratio,) = entry["ratio"]
        assert math.isfinite(ratio)
        assert ratio > 0
        assert ratio == pytest.approx(this_round["asgi_apikey"]["rps"] / this_round["bare"]["rps"])
        assert entry["summary"]["ratio"]["median"] == ratio
    # One fresh server per timed run: 2 implementations x 2 apps x 1 round.
    assert len(result["servers"]) == 4
    assert_all_stopped(result)
    assert any("req/s" in line for line in lines)
    assert "caveat" in e2e.table(result)


def test_a_factory_that_does_not_load_fails_fast_and_leaves_nothing() -> None:
    started = time.monotonic()
    result = e2e.run(
        http=("h11",),
        duration=0.5,
        rounds=2,
        connections=2,
        tool="httpx",
        bare_factory="benchmarks.apps:does_not_exist",
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
    result = e2e.run(
        http=("h11",),
        duration=0.5,
        rounds=1,
        connections=2,
        tool="httpx",
        warmup=0,
        apikey_factory="benchmarks.apps:bare",
        log=lambda line: None,
    )
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
