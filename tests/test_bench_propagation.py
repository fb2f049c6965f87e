"""benchmarks/propagation.py: it runs, its samples are what it says, its report (not timings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog
import structlog.testing

from benchmarks import propagation
from tests.redis_server import redis_server_binary

# The benchmark configures structlog as production would: uncached here, and undone.
pytestmark = pytest.mark.usefixtures("uncached_structlog")


def test_the_smoke_run_measures_both_changes_and_the_cost(tmp_path: Path) -> None:
    redis_server_binary()  # skips (or fails under ASGI_APIKEY_REQUIRE_REDIS=1) without it
    assert propagation.main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "propagation.json").read_text())
    assert set(data["samples"]) == {"add", "revoke"}
    for op in ("add", "revoke"):
        samples = data["samples"][op]
        assert len(samples) == 5
        assert all(0 < sample < 10 for sample in samples)
        assert data["propagation_ms"][op]["samples"] == 5
        assert data["propagation_ms"][op]["max"] == pytest.approx(max(samples) * 1e3)
    assert set(data["accepted_us"]) == {"bare", "asgi_apikey", "asgi_apikey, Redis source"}
    page = (tmp_path / "propagation.md").read_text()
    assert "| revoke |" in page
    assert "Target: revocation p99 under 50 ms" in page


def _data(p99: float) -> dict[str, Any]:
    row = {"median": 1.0, "p99": p99, "max": p99, "samples": 3}
    summary = {"median": 2.0, "q1": 1.0, "q3": 3.0}
    return {
        "environment": {"python": "3.11", "cpu_count": 2},
        "settings": {"rounds": 3, "cost_rounds": 2, "requests": 10},
        "poll_ms": 0.1,
        "propagation_ms": {"add": row, "revoke": row},
        "target_p99_ms": 50.0,
        "accepted_us": {"bare": summary, "asgi_apikey": summary},
        "added_us": {"asgi_apikey": summary},
        "redis_over_code": None,
        "rounds_left_out": 0,
    }


@pytest.mark.parametrize(("p99", "verdict"), [(12.0, "met"), (50.0, "missed"), (80.0, "missed")])
def test_the_verdict_follows_the_p99(p99: float, verdict: str) -> None:
    assert f"**{verdict}** ({p99:.2f} ms)" in propagation.markdown(_data(p99))


def test_p99_is_a_real_percentile() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1 ms to 100 ms
    summary = propagation._ms(values)
    assert summary["median"] == pytest.approx(50.5)
    assert summary["p99"] == pytest.approx(99.0)
    assert summary["max"] == pytest.approx(100.0)


def test_without_redis_server_it_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert propagation.main(["--smoke", "--out", str(tmp_path)]) == 2
    assert "redis-server is not installed" in capsys.readouterr().err


def test_the_run_leaves_the_package_logger_uncached_for_later_tests(tmp_path: Path) -> None:
    redis_server_binary()
    assert propagation.main(["--smoke", "--out", str(tmp_path)]) == 0
    structlog.reset_defaults()
    with structlog.testing.capture_logs() as logs:
        structlog.get_logger("asgi_apikey").warning("probe")
    assert [e["event"] for e in logs] == ["probe"]
