"""benchmarks/scale.py: it runs end to end, its ticker sees a stall, its sampler names the cause.

The smoke run uses a real redis-server (``tests/redis_server.py``) and a real
uvicorn on 127.0.0.1, with small sizes: it checks every answer (the keys
loaded, the follower caught up with the churn) and times nothing worth reading.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from asgi_apikey import APIKeyAuth
from asgi_apikey import keyfile as keyfile_module
from benchmarks import scale
from benchmarks.changes import secret
from tests.redis_server import running_redis


@pytest.mark.usefixtures("uncached_structlog")
def test_the_scale_benchmark_runs_and_checks_every_answer(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_redis(tmp_path) as server:
        assert scale.main(["--smoke", "--redis", server.url, "--out", str(out)]) == 0
    data = json.loads((out / "scale.json").read_text())
    assert data["smoke"]
    assert [row["keys"] for row in data["memory"]] == [300]
    assert data["key_file"]["keys"] == 2_000
    assert data["key_file"]["reload"]["ticks"] > 0
    assert data["redis"]["after_start"] == {"state": "live", "key_count": 2_000, "verified": True}
    assert data["redis"]["after_resync"]["full_loads"] >= 2
    assert data["redis"]["after_resync"]["verified"]
    (churn,) = data["churn"]
    assert [phase["churn"] for phase in churn["phases"]] == [False, True, False]
    for phase in churn["phases"]:
        assert phase["latency_ms"]["samples"] == 200
        assert phase["end"]["store_version"] > 0
        assert phase["propagation_ms"]["add"]["samples"] > 0
    writer = churn["phases"][1]["writer"]
    assert writer["changes"] == 400  # 2 s of 10 ms ticks, two changes a tick
    assert {t["verdict"] for t in data["targets"]} == {"not measured (smoke)"}
    page = (out / "scale.md").read_text()
    assert "| target | measured | limit | verdict |\n|---|---|---|---|\n" in page
    assert "## Churn: 200 changes a second at 1,000 keys" in page
    assert "sk-" not in page  # no key in the results


def _one_big_call() -> None:
    frozenset(range(3_000_000))  # one C call: it holds the GIL throughout
    # Python code after it, still in this function: the GIL is let go here, so the
    # sampler wakes while this frame is on the stack (not after it has returned).
    until = time.perf_counter() + 0.05
    while time.perf_counter() < until:
        pass


def test_the_ticker_sees_a_stall_and_the_sampler_names_its_cause() -> None:
    found = asyncio.run(scale.watched(lambda: asyncio.to_thread(_one_big_call), explain=True))
    assert found["max_ms"] > scale.STALL_TARGET_MS
    assert found["over_target"] >= 1
    stacks = [stack for cause in found["causes"] for stack in cause["stacks"]]
    assert any("_one_big_call" in stack for stack in stacks), stacks


def test_a_quiet_loop_has_no_stall() -> None:
    found = asyncio.run(scale.watched(lambda: asyncio.sleep(0.2)))
    assert found["max_ms"] < scale.STALL_TARGET_MS
    assert found["ticks"] > 20


def test_the_key_file_is_read_by_the_package_and_its_limit_restored(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    size = scale.write_key_file(path, 10)
    auth = APIKeyAuth(keys_file=path, environment="production")
    assert len(auth.key_ids) == 10
    assert auth.verify(secret(7)) is not None
    before = keyfile_module._MAX_KEY_FILE_BYTES
    with scale.file_limit(before + 1) as raised:
        assert raised
        assert before + 1 == keyfile_module._MAX_KEY_FILE_BYTES
    with scale.file_limit(size) as raised:
        assert not raised
    assert before == keyfile_module._MAX_KEY_FILE_BYTES
