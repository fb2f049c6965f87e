"""benchmarks/timing.py: its tokens, its statistics and its report (never its timings)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import timing
from benchmarks.timing import (
    KEY,
    Finding,
    bootstrap_slope,
    leaky_equal,
    main,
    slope,
    spearman,
    token_sharing,
)


@given(st.integers(min_value=0, max_value=len(KEY)), st.integers())
def test_a_token_shares_exactly_the_asked_prefix(shared: int, seed: int) -> None:
    token = token_sharing(KEY, shared, random.Random(seed))
    assert len(token) == len(KEY)
    assert token[:shared] == KEY[:shared]
    if shared < len(KEY):
        assert token[shared] != KEY[shared]
        assert token != KEY


def test_a_prefix_longer_than_the_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="shared must be from 0"):
        token_sharing(KEY, len(KEY) + 1, random.Random(0))


def test_the_positive_control_compares_correctly() -> None:
    assert leaky_equal(b"abc", b"abc")
    assert not leaky_equal(b"abc", b"abd")
    assert not leaky_equal(b"abc", b"ab")


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [9, 7, 5, 1]) == pytest.approx(-1.0)
    # Ranks, not values: a monotone but curved relation is still perfect.
    assert spearman([1, 2, 3, 4], [1, 100, 101, 10_000]) == pytest.approx(1.0)
    # Ties share their mean rank; a constant sample correlates with nothing.
    assert spearman([1, 1, 2, 2], [5, 5, 5, 5]) == 0.0
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1])


def test_slope() -> None:
    assert slope([0, 1, 2, 3], [5, 7, 9, 11]) == pytest.approx(2.0)
    assert slope([0, 1, 2], [3, 3, 3]) == 0.0
    with pytest.raises(ValueError, match="different x"):
        slope([1, 1], [2, 3])


def test_the_bootstrap_interval_brackets_a_clear_slope_and_one_of_zero() -> None:
    chooser = random.Random(1)
    rising = {n: [100 + 5 * n + chooser.uniform(-1, 1) for _ in range(30)] for n in range(0, 40, 4)}
    low, high = bootstrap_slope(rising, chooser, resamples=200)
    assert 4.5 < low <= high < 5.5
    flat = {n: [100 + chooser.uniform(-1, 1) for _ in range(30)] for n in range(0, 40, 4)}
    low, high = bootstrap_slope(flat, chooser, resamples=200)
    assert low < 0 < high


@pytest.mark.parametrize(
    ("interval", "correlated"),
    [((0.1, 0.5), True), ((-0.5, -0.1), True), ((-0.1, 0.2), False), ((0.0, 0.3), False)],
)
def test_correlated_means_the_interval_excludes_zero(
    interval: tuple[float, float], correlated: bool
) -> None:
    finding = Finding("x", {0: 1.0}, 0.0, 0.0, interval)
    assert finding.correlated is correlated
    assert finding.as_dict()["correlated"] is correlated


def test_the_smoke_run_writes_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--smoke", "--seed", "3", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "timing.json").read_text())
    assert data["key_length"] == len(KEY)
    assert data["lengths"][0] == 0
    assert data["lengths"][-1] == len(KEY) - 1
    names = [finding["name"] for finding in data["findings"]]
    assert names[0].startswith("asgi_apikey")
    assert names[1].startswith("positive control")
    for finding in data["findings"]:
        assert set(finding["medians_ns"]) == {str(n) for n in data["lengths"]}
        assert all(value > 0 for value in finding["medians_ns"].values())
        low, high = finding["slope_interval"]
        assert low <= high
    page = (tmp_path / "timing.md").read_text()
    assert page.count("| asgi_apikey (KeySnapshot.resolve) |") == 1
    assert page in capsys.readouterr().out


def test_a_check_that_accepts_a_wrong_token_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "leaky_equal", lambda token, secret: True)
    with pytest.raises(AssertionError, match="was accepted"):
        timing.run(rounds=1, calls=1, step=20, seed=0)
