"""Bulk loads pause the garbage collector and freeze a large key set; they never leave it off."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from asgi_apikey import APIKey, APIKeyAuth, collector
from asgi_apikey.collector import bulk_load
from tests.asgi import plain_digest


@pytest.fixture(autouse=True)
def collector_as_found() -> Iterator[None]:
    """Each test starts and ends with the collector on and nothing frozen by it."""
    gc.enable()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.enable()


def test_a_load_pauses_the_collector_and_resumes_it() -> None:
    with bulk_load():
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0  # a small load is left to the collector


def test_a_large_load_is_frozen_out_of_the_collectors_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector, "FREEZE_AFTER", 1_000)
    with bulk_load():
        kept = [[n] for n in range(5_000)]  # tracked objects, alive after the load
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(kept)


def test_an_error_in_the_load_still_resumes_the_collector() -> None:
    with pytest.raises(RuntimeError, match="boom"), bulk_load():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_the_application_turned_off_stays_off() -> None:
    gc.disable()
    with bulk_load():
        kept = [[n] for n in range(collector.FREEZE_AFTER + 1)]
    assert not gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert len(kept) > collector.FREEZE_AFTER


def test_pause_false_leaves_the_collector_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector, "PAUSE", False)
    with bulk_load():
        assert gc.isenabled()
        kept = [[n] for n in range(collector.FREEZE_AFTER + 1)]
    assert gc.get_freeze_count() == 0
    assert len(kept) > collector.FREEZE_AFTER


def test_loads_on_two_threads_share_one_pause() -> None:
    inside, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other_load() -> None:
        with bulk_load():
            inside.set()
            release.wait(10)
            seen.append(gc.isenabled())

    thread = threading.Thread(target=other_load)
    with bulk_load():
        thread.start()
        assert inside.wait(10)
    # This load ended first: the other is still running, so the collector stays paused.
    assert not gc.isenabled()
    release.set()
    thread.join(10)
    assert seen == [False]
    assert gc.isenabled()


def paused_during(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> list[bool]:
    """Record, on each call of ``target.name``, whether the collector was running."""
    seen: list[bool] = []
    real = getattr(target, name)

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, spy)
    return seen


def test_construction_reload_and_replace_keys_are_bulk_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgi_apikey import keys as keys_module

    path = tmp_path / "keys.toml"
    path.write_text(f'[[keys]]\ndigest = "{plain_digest("sk-one-0123456789abcdef")}"\n')
    seen = paused_during(monkeypatch, keys_module, "entry_for")
    monkeypatch.setattr("asgi_apikey.configuration.entry_for", keys_module.entry_for)
    auth = APIKeyAuth(keys_file=path, keys=[APIKey("sk-code-0123456789abcdef")])
    path.write_text(f'[[keys]]\ndigest = "{plain_digest("sk-two-0123456789abcdef")}"\n')
    auth.reload()
    asyncio.run(auth.areload())
    auth.replace_keys(["sk-three-0123456789abcdef"])
    assert len(seen) >= 4
    assert seen == [False] * len(seen)
    assert gc.isenabled()
    assert auth.verify("sk-three-0123456789abcdef") is not None


@pytest.mark.parametrize("size", [0, 1, 4_999, 5_000, 5_001, 15_007])
def test_release_empties_a_list_and_a_dict_of_any_size(size: int) -> None:
    items = [[n] for n in range(size)]
    records = {str(n).encode(): (n, [n]) for n in range(size)}
    survivor = records.get(b"0")
    collector.release(items)
    collector.release(records)
    assert items == []
    assert records == {}
    if size:
        assert survivor == (0, [0])  # what another reference holds stays whole


def test_a_load_that_frees_as_much_as_it_makes_is_still_frozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # gc.get_count() counts allocations less deallocations: freeing old objects
    # while making as many new ones counts nothing, though the new ones are young.
    monkeypatch.setattr(collector, "FREEZE_AFTER", 1_000)
    old = [[n] for n in range(5_000)]
    gc.collect()  # old is old now
    with bulk_load():
        new = [[n] for n in range(5_000)]
        old.clear()
    assert gc.get_freeze_count() >= len(new)
