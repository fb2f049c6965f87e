"""The in-process benchmark driver: it checks answers before timing, and reports honestly."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from benchmarks import apps
from benchmarks.__main__ import main
from benchmarks.driver import BenchmarkError, Summary, measure, paired, summarise, verify
from benchmarks.report import chart, markdown, targets, verdict


@pytest.fixture(autouse=True)
def _restore(uncached_structlog: None) -> Iterator[None]:
    # The suite configures structlog (undone by uncached_structlog) and the peer
    # reads a variable: undo that too.
    yield
    os.environ.pop(apps.PEER_ENV, None)


def test_the_suite_leaves_the_package_logger_uncached_for_later_tests(tmp_path: Path) -> None:
    options = ["--rounds", "1", "--requests", "3", "--no-e2e", "--only", "asgi_apikey"]
    assert main([*options, "--out", str(tmp_path)]) == 0
    structlog.reset_defaults()
    with structlog.testing.capture_logs() as logs:
        from asgi_apikey.audit import emit

        emit("warning", "probe", {})
    assert [entry["event"] for entry in logs] == ["probe"]


def by_name() -> dict[str, apps.Variant]:
    return {variant.name: variant for variant in apps.variants((1, 1_000))}


@pytest.mark.parametrize("name", list(by_name()))
def test_every_variant_answers_its_request_as_declared(name: str) -> None:
    variant = by_name()[name]
    got = asyncio.run(verify(variant, variant.build()))
    assert got.status == variant.status


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"status": 401}, "status 200, expected 401", id="status"),
        pytest.param({"body": b"nope"}, "body b'{\"ok\":true}', expected b'nope'", id="body"),
        pytest.param({"must_have": (b"x-missing",)}, "missing headers x-missing", id="header"),
        pytest.param(
            {"status": 200, "body": None}, "should have been refused", id="refusal-that-ran"
        ),
    ],
)
def test_a_wrong_answer_stops_the_benchmark(changes: dict[str, object], message: str) -> None:
    variant = by_name()["asgi_apikey"]
    wrong = apps.Variant(**{**variant.__dict__, **changes})
    with pytest.raises(BenchmarkError, match="asgi_apikey: ") as caught:
        asyncio.run(verify(wrong, wrong.build()))
    assert message in str(caught.value)


def test_a_variant_that_refuses_the_key_it_should_accept_is_caught() -> None:
    variant = by_name()["asgi_apikey"]
    unknown = apps.Variant(
        "asgi_apikey", "accepted", apps.apikey, [(b"authorization", b"Bearer sk-other-key-0000")]
    )
    with pytest.raises(BenchmarkError, match="status 401, expected 200"):
        asyncio.run(verify(unknown, variant.build()))


def test_measure_pairs_every_variant_with_its_baseline_in_each_round() -> None:
    chosen = [v for v in apps.variants((1,)) if v.name in ("bare", "noop", "asgi_apikey")]
    times = measure(chosen, rounds=3, requests=5, seed=1, log=lambda _: None)
    assert {name: len(values) for name, values in times.items()} == {
        "bare": 3,
        "noop": 3,
        "asgi_apikey": 3,
    }
    assert all(value > 0 for values in times.values() for value in values)
    rows = {row["name"]: row for row in summarise(chosen, times)}
    assert rows["bare"]["ratio"] == {"median": 1.0, "q1": 1.0, "q3": 1.0}
    assert rows["bare"]["added_us"]["median"] == 0.0


def test_summaries_and_paired_ratios() -> None:
    assert Summary.of([3.0]).as_dict() == {"median": 3.0, "q1": 3.0, "q3": 3.0}
    assert Summary.of([1.0, 2.0, 3.0, 4.0, 5.0]).as_dict() == {
        "median": 3.0,
        "q1": 2.0,
        "q3": 4.0,
    }
    times = {"a": [3.0, 5.0], "base": [1.0, 1.0], "b": [2.0, 3.0]}
    # (3-1)/(2-1) = 2 and (5-1)/(3-1) = 2
    summary, dropped = paired(times, ("a", "base"), ("b", "base"))
    assert (summary.median, dropped) == (2.0, 0)
    # A round where b costs nothing over its baseline has no ratio: left out, and counted.
    times = {"a": [3.0, 5.0, 9.0], "base": [1.0, 1.0, 1.0], "b": [2.0, 3.0, 1.0]}
    summary, dropped = paired(times, ("a", "base"), ("b", "base"))
    assert (summary.median, dropped) == (2.0, 1)
    with pytest.raises(BenchmarkError, match="cost nothing"):
        paired({"a": [2.0], "base": [1.0], "b": [1.0]}, ("a", "base"), ("b", "base"))


def synthetic_times() -> dict[str, list[float]]:
    us = 1e-6
    return {
        "bare": [10 * us] * 3,
        "fastapi": [40 * us] * 3,
        "asgi_apikey": [12 * us] * 3,
        "starlette AuthenticationMiddleware": [13 * us] * 3,
        "fastapi HTTPBearer": [100 * us] * 3,
        "canned 401": [2 * us] * 3,
        "asgi_apikey: no credentials": [3.2 * us] * 3,
        "noop + headers": [11 * us] * 3,
        "asgi_apikey: unknown key": [5 * us] * 3,
        "asgi_apikey: malformed header": [3.5 * us] * 3,
        "asgi_apikey, 1 key": [12 * us] * 3,
        "asgi_apikey, 100,000 keys": [12.1 * us] * 3,
    }


def test_targets_compare_the_right_pairs() -> None:
    e2e = {"results": {"httptools": {"ratio": [0.97, 0.96]}, "h11": {"ratio": [0.9]}}}
    found = {target["target"]: target for target in targets(synthetic_times(), e2e)}
    measured = {
        name: target["measured"]["median"]
        for name, target in found.items()
        if target["measured"] is not None
    }
    met = {name: target["met"] for name, target in found.items()}
    starlette = "accepted: asgi_apikey's added cost / Starlette AuthenticationMiddleware's"
    bearer = "accepted: FastAPI HTTPBearer's added cost / asgi_apikey's"
    assert measured[starlette] == pytest.approx(2 / 3)
    assert met[starlette] is True
    assert measured[bearer] == pytest.approx(60 / 2)
    assert met[bearer] is True
    headers_only = "accepted: asgi_apikey's time / the no-op middleware adding the same headers"
    assert measured[headers_only] == pytest.approx(12 / 11)
    assert met[headers_only] is True
    # No credentials has its own limit, 1.5: 1.6 misses it (the others' 2.0 would pass).
    assert measured["refused (no credentials): time / a canned 401's"] == pytest.approx(1.6)
    assert met["refused (no credentials): time / a canned 401's"] is False
    assert measured["refused (unknown key): time / a canned 401's"] == pytest.approx(2.5)
    assert met["refused (unknown key): time / a canned 401's"] is False
    assert measured["100,000 keys: added cost / 1 key's"] == pytest.approx(2.1 / 2)
    assert measured["end to end, uvicorn + httptools: requests/s / the bare app's"] == 0.965
    assert met["end to end, uvicorn + h11: requests/s / the bare app's"] is False


def test_a_target_without_its_variants_is_reported_as_not_measured() -> None:
    found = targets({"bare": [1.0], "asgi_apikey": [2.0]}, None)
    assert all(target["met"] is None for target in found)
    assert all(target["measured"] is None for target in found)
    assert {target["verdict"] for target in found} == {"not measured"}


@pytest.mark.parametrize(
    ("values", "at_most", "expected"),
    [
        ([0.8, 0.9, 0.95], True, "met"),
        ([1.05, 1.1, 1.2], True, "missed"),
        ([0.9, 1.0, 1.1], True, "unclear"),  # the limit between the quartiles
        ([0.9, 1.0, 1.1], False, "unclear"),
        ([1.05, 1.1, 1.2], False, "met"),
        ([0.8, 0.9, 0.95], False, "missed"),
        ([1.0, 1.0, 1.0], True, "met"),  # exactly at the limit meets it either way
        ([1.0, 1.0, 1.0], False, "met"),
    ],
)
def test_a_verdict_is_unclear_when_the_limit_is_within_the_quartiles(
    values: list[float], at_most: bool, expected: str
) -> None:
    assert verdict(Summary.of(values), 1.0, at_most=at_most) == expected


def test_the_table_says_when_a_verdict_is_unclear_and_when_rounds_were_left_out() -> None:
    times = synthetic_times()
    # Starlette's middleware costs less than bare in one round: no ratio for that round.
    times["starlette AuthenticationMiddleware"] = [13e-6, 9e-6, 13e-6]
    e2e = {"results": {"httptools": {"ratio": [0.9, 0.95, 1.0]}}}
    found = {target["target"]: target for target in targets(times, e2e)}
    starlette = found["accepted: asgi_apikey's added cost / Starlette AuthenticationMiddleware's"]
    assert starlette["dropped_rounds"] == 1
    assert found["accepted: FastAPI HTTPBearer's added cost / asgi_apikey's"]["dropped_rounds"] == 0
    httptools = found["end to end, uvicorn + httptools: requests/s / the bare app's"]
    assert httptools["verdict"] == "unclear"
    data = {
        "environment": {
            "date": "d",
            "platform": "p",
            "cpu_count": 2,
            "implementation": "CPython",
            "python": "3",
            "commit": "c",
            "load_average": None,
            "versions": {},
        },
        "settings": {"rounds": 3, "requests": 1},
        "targets": list(found.values()),
        "rows": [],
    }
    page = markdown(data)
    assert "1 round(s) with no added cost left out" in page
    assert page.count("unclear") == 1


def test_the_suite_writes_its_table_chart_and_data(tmp_path: Path) -> None:
    options = ["--rounds", "1", "--requests", "3", "--no-e2e", "--seed", "2"]
    only = ["--only", "asgi_apikey", "--only", "canned"]
    status = main([*options, *only, "--out", str(tmp_path)])
    assert status == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert {row["name"] for row in data["rows"]} >= {"bare", "asgi_apikey", "canned 401"}
    page = (tmp_path / "results.md").read_text()
    assert page == markdown(data)
    assert "| asgi_apikey |" in page
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    chart(data, tmp_path / "again.png")
    assert (tmp_path / "again.png").stat().st_size > 10_000


def test_a_rival_that_waves_bad_keys_through_is_never_timed() -> None:
    noop = by_name()["noop"]
    lax = apps.Variant(**{**noop.__dict__, "name": "lax", "probes": apps.REFUSES})
    with pytest.raises(BenchmarkError, match=r"lax: answered 200 to a request it must refuse"):
        asyncio.run(verify(lax, lax.build()))


def test_starlettes_variant_refuses_like_asgi_apikey() -> None:
    # Deny by default on both sides: the comparison is like for like.
    variant = by_name()["starlette AuthenticationMiddleware"]
    assert variant.probes == apps.REFUSES
    asyncio.run(verify(variant, variant.build()))


def test_the_suite_keeps_matplotlib_out_of_the_home_directory() -> None:
    """Issue 16: the suite wrote matplotlib's cache into ~/.cache and ~/.config."""
    import matplotlib

    here = Path(matplotlib.get_cachedir()).resolve()
    assert Path.home().resolve() not in here.parents
    assert here == Path(os.environ["MPLCONFIGDIR"]).resolve()
