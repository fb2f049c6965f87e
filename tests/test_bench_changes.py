"""benchmarks/changes.py and change_designs.py: they run, and the designs they compare are correct.

The smoke runs check every answer (a key added resolves, a removed one does
not, ``replace_keys`` reports the one key it changed) and time nothing worth
reading. The property tests hold each prototype to a plain dict under
generated adds and removes, colliding hashes included, and check that every
earlier version still answers as it did: a snapshot must never change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import change_designs, changes
from benchmarks.change_designs import DESIGNS, CopyMap, HamtMap, OverlayMap, ShardedMap


def test_the_changes_benchmark_runs_and_checks_every_answer(tmp_path: Path) -> None:
    assert changes.main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "changes.json").read_text())
    assert data["smoke"]
    assert [row["keys"] for row in data["rows"]] == [10, 300]
    for row in data["rows"]:
        assert len(row["add_key_s"]) == len(row["remove_key_s"]) == changes.SMOKE_REPEATS[1]
        assert row["auth_bytes_per_key"] > 0
    assert {t["verdict"] for t in data["targets"]} == {"not measured (smoke)"}
    assert "| 1 key |" in (tmp_path / "changes.md").read_text()


def test_the_design_comparison_runs_on_every_design(tmp_path: Path) -> None:
    assert change_designs.main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "change_designs.json").read_text())
    assert sorted({row["design"] for row in data["rows"]}) == sorted(DESIGNS)
    assert all(row["changes"] > 0 and row["max_us"] > 0 for row in data["rows"])


class Colliding:
    """A key whose hash the test chooses: deep trie paths, shared shards, whole collisions."""

    __slots__ = ("hash", "value")

    def __init__(self, value: int, hash_: int) -> None:
        self.value, self.hash = value, hash_

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Colliding):
            return NotImplemented
        return (self.value, self.hash) == (other.value, other.hash)

    def __repr__(self) -> str:
        return f"Colliding({self.value}, {self.hash:#x})"


# Hashes equal in their low bits (one trie path, one shard) or in all 64 of them.
HASHES = [0, 1, 32, 1 << 16, 1 << 35, (1 << 60) + 1, (1 << 63) - 1, -5, -(1 << 40)]
KEYS = st.one_of(
    st.binary(max_size=3),
    st.builds(Colliding, st.integers(0, 3), st.sampled_from(HASHES)),
)
OPERATIONS = st.lists(st.tuples(st.booleans(), KEYS, st.integers()), max_size=80)


def small_overlay(items: dict[Any, Any]) -> OverlayMap[Any, Any]:
    """An overlay that merges after three changes: merges happen in every example."""
    return OverlayMap.of(items, threshold=lambda size: 3)


FACTORIES: dict[str, Any] = {
    "copy": CopyMap.of,
    "overlay": OverlayMap.of,
    "overlay, merging often": small_overlay,
    "hamt": HamtMap.of,
    "sharded": ShardedMap.of,
}


@pytest.mark.parametrize("design", list(FACTORIES))
@settings(max_examples=200, deadline=None)
@given(start=st.dictionaries(KEYS, st.integers(), max_size=20), operations=OPERATIONS)
def test_each_design_answers_as_a_dict_and_never_changes_an_earlier_version(
    design: str, start: dict[Any, int], operations: list[tuple[bool, Any, int]]
) -> None:
    current = FACTORIES[design](dict(start))
    reference = dict(start)
    versions = [(current, dict(reference))]
    for adding, key, value in operations:
        if adding:
            current = current.set(key, value)
            reference[key] = value
        else:
            current = current.delete(key)
            reference.pop(key, None)
        versions.append((current, dict(reference)))
    probes = {key for _, key, _ in operations} | set(start)
    for version, expected in versions:  # every snapshot, as it was when it was made
        assert len(version) == len(expected)
        assert dict(version.items()) == expected
        assert sorted(map(repr, version.items())) == sorted(map(repr, expected.items()))
        for key in probes:
            assert version.get(key) == expected.get(key), key


def test_the_trie_handles_keys_whose_whole_hash_is_the_same() -> None:
    a, b, c = (Colliding(n, 7) for n in range(3))
    table = HamtMap.of({a: 1, b: 2}).set(c, 3).delete(a)
    assert (table.get(a), table.get(b), table.get(c), len(table)) == (None, 2, 3, 2)
    lone = table.delete(b)
    assert (lone.get(c), len(lone), dict(lone.items())) == (3, 1, {c: 3})


def test_the_overlay_merges_past_its_threshold_and_keeps_answering() -> None:
    table = OverlayMap.of({b"k%d" % n: n for n in range(100)})
    limit = change_designs.overlay_threshold(100)
    for n in range(limit):
        table = table.set(b"new%d" % n, n)
    assert len(table.overlay) == limit  # at the threshold: not merged yet
    table = table.delete(b"k0")
    assert table.overlay == {}  # one more: merged into a new base
    assert (len(table.base), table.get(b"k0"), table.get(b"new3")) == (100 + limit - 1, None, 3)
