"""KeyTable against a dict: every change, every read, and old tables left as they were."""

from __future__ import annotations

import hashlib
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from asgi_apikey.keytable import WIDTH, DigestTable, KeyTable, NameTable, same_items

# Digests crowded into few shards (same first bytes) as well as spread ones, so that
# shards and rows are shared, emptied and refilled.
crowded = st.builds(
    lambda a, b, rest: bytes([a, b]) + rest,
    st.sampled_from([0, 1, 255]),
    st.sampled_from([0, 7]),
    st.binary(min_size=0, max_size=3),
)
spread = st.binary(min_size=32, max_size=32)
digests = st.one_of(crowded, spread, st.binary(max_size=1))
names = st.text(max_size=6)
values = st.integers()


def same(table: KeyTable[Any, Any], model: dict[Any, Any]) -> None:
    """Every way of reading ``table`` gives what ``model`` has."""
    assert len(table) == len(model)
    assert dict(table.iter_items()) == model
    assert sorted(table, key=repr) == sorted(model, key=repr)
    assert sorted(table.iter_values()) == sorted(model.values())
    assert table == model
    for key, value in model.items():
        assert key in table
        assert table[key] == value
        assert table.get(key) == value
        i, j = table.slot(key)
        assert table.rows[i][j].get(key) == value  # the hot path's own read


def shares_exactly_what_is_unchanged(new: KeyTable[Any, Any], old: KeyTable[Any, Any]) -> None:
    """``new``, built ``like=old``, holds old's shard wherever the items are the same objects."""
    for i, (new_row, old_row) in enumerate(zip(new.rows, old.rows, strict=True)):
        for j, (mine, theirs) in enumerate(zip(new_row, old_row, strict=True)):
            if mine:
                assert (mine is theirs) == same_items(theirs, mine), (i, j)
        if any(new_row) and all(a is b for a, b in zip(new_row, old_row, strict=True)):
            assert new_row is old_row  # a row of unchanged shards is the old row


class TableMachine(RuleBasedStateMachine):
    """Random changes to a DigestTable and a NameTable, each beside a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[KeyTable[Any, Any], dict[Any, Any]]] = [
            (DigestTable.EMPTY, {}),
            (NameTable.EMPTY, {}),
        ]
        self.history: list[tuple[KeyTable[Any, Any], dict[Any, Any]]] = []

    def _change(self, which: int, put: list[tuple[Any, int]], drop: list[Any]) -> None:
        table, model = self.tables[which]
        self.history.append((table, dict(model)))
        new_model = dict(model)
        for key in drop:
            new_model.pop(key, None)
        new_model.update(put)
        self.tables[which] = (table.changed(put=put, drop=drop), new_model)

    @rule(put=st.lists(st.tuples(digests, values), max_size=8), drop=st.lists(digests, max_size=8))
    def change_digests(self, put: list[tuple[bytes, int]], drop: list[bytes]) -> None:
        self._change(0, put, drop)

    @rule(put=st.lists(st.tuples(names, values), max_size=8), drop=st.lists(names, max_size=8))
    def change_names(self, put: list[tuple[str, int]], drop: list[str]) -> None:
        self._change(1, put, drop)

    @precondition(lambda self: bool(self.tables[0][1]))
    @rule(data=st.data())
    def delete_a_present_digest(self, data: st.DataObject) -> None:
        table, model = self.tables[0]
        key = data.draw(st.sampled_from(sorted(model)))
        self.history.append((table, dict(model)))
        del model[key]
        self.tables[0] = (table.delete(key), model)

    @rule(key=digests, value=values)
    def set_one(self, key: bytes, value: int) -> None:
        table, model = self.tables[0]
        self.history.append((table, dict(model)))
        self.tables[0] = (table.set(key, value), {**model, key: value})

    @rule(which=st.sampled_from([0, 1]))
    def rebuild(self, which: int) -> None:
        table, model = self.tables[which]
        rebuilt = type(table).build(model.items())
        same(rebuilt, model)
        self.tables[which] = (rebuilt, model)

    @rule(
        which=st.sampled_from([0, 1]),
        put=st.lists(st.tuples(st.one_of(digests, names), values), max_size=8),
        drop=st.lists(st.one_of(digests, names), max_size=8),
    )
    def rebuild_like_the_current_one(
        self, which: int, put: list[tuple[Any, int]], drop: list[Any]
    ) -> None:
        # What a reload does: the whole new set, built with the table in use lent.
        table, model = self.tables[which]
        wanted = str if which else bytes
        new_model = {k: v for k, v in model.items() if k not in drop}
        new_model.update((k, v) for k, v in put if type(k) is wanted)
        rebuilt = type(table).build(new_model.items(), like=table)
        same(rebuilt, new_model)
        shares_exactly_what_is_unchanged(rebuilt, table)
        self.history.append((table, dict(model)))
        self.tables[which] = (rebuilt, new_model)

    @rule(which=st.sampled_from([0, 1]), data=st.data())
    def gather_with_a_builder(self, which: int, data: st.DataObject) -> None:
        table, model = self.tables[which]
        extra = data.draw(st.lists(st.tuples(digests if which == 0 else names, values)))
        builder = type(table).builder()
        first: dict[Any, int] = {}
        for key, value in [*model.items(), *extra]:
            added = builder.add(key, value)
            assert added == (key not in first)
            first.setdefault(key, value)
            assert key in builder
        gathered = builder.table(like=table)
        same(gathered, first)
        shares_exactly_what_is_unchanged(gathered, table)
        self.tables[which] = (gathered, first)

    @invariant()
    def tables_read_as_their_models(self) -> None:
        for table, model in self.tables:
            same(table, model)

    @invariant()
    def older_tables_never_change(self) -> None:
        for table, model in self.history[-5:]:
            same(table, model)

    @invariant()
    def empty_parts_are_shared(self) -> None:
        # A table of n keys holds at most n rows of its own: the rest are the one
        # shared empty row (memory stays proportional to the keys, not 65,536 dicts).
        for table, model in self.tables:
            own_rows = {id(row) for row in table.rows if any(row)}
            assert len(own_rows) <= len(model)
            assert sum(1 for row in table.rows if any(row)) <= len(model)


TableMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
test_tables_behave_as_dicts = TableMachine.TestCase


@given(st.lists(st.tuples(digests, values), max_size=40))
def test_build_keeps_the_last_value_of_a_key(items: list[tuple[bytes, int]]) -> None:
    same(DigestTable.build(items), dict(items))


@given(st.dictionaries(names, values, max_size=30))
def test_a_copy_is_rebuilt_from_its_items(model: dict[str, int]) -> None:
    # NameTable places keys by hash(), which another process salts differently:
    # a pickled table must not carry its rows across.
    table = NameTable.build(model.items())
    copy = pickle.loads(pickle.dumps(table))  # noqa: S301 (our own bytes)
    assert type(copy) is NameTable
    same(copy, model)


def test_a_change_copies_one_path_and_shares_the_rest() -> None:
    keys = [hashlib.sha256(str(n).encode()).digest() for n in range(5_000)]
    table = DigestTable.build((key, n) for n, key in enumerate(keys))
    new = hashlib.sha256(b"new").digest()
    changed = table.set(new, -1)
    i, _ = DigestTable.slot(new)
    shared_rows = sum(a is b for a, b in zip(table.rows, changed.rows, strict=True))
    assert shared_rows == WIDTH - 1
    assert changed.rows[i] is not table.rows[i]
    shared_shards = sum(a is b for a, b in zip(table.rows[i], changed.rows[i], strict=True))
    assert shared_shards == WIDTH - 1
    assert new not in table
    assert changed[new] == -1
    assert table.delete(new) is table  # absent: nothing to copy
    assert changed.delete(new) == table


def test_emptied_tables_return_to_the_shared_empty_parts() -> None:
    keys = [bytes([n % 256, n // 256]) + b"x" * 30 for n in range(600)]
    table = DigestTable.build((key, None) for key in keys)
    emptied = table.changed(drop=keys)
    assert len(emptied) == 0
    assert emptied == {}
    assert all(row is DigestTable.EMPTY.rows[0] for row in emptied.rows)


def test_odd_keys_are_missing_not_errors() -> None:
    table: KeyTable[Any, int] = DigestTable.build([(b"\x01\x02" + b"z" * 30, 1)])
    for odd in (b"", b"\x01", "text", 12, None):
        assert odd not in table
        assert table.get(odd) is None
        with pytest.raises(KeyError):
            table[odd]


def test_repr_shows_only_the_size() -> None:
    secretish = "sk-live-" + "q" * 30
    table = NameTable.build([(secretish, secretish)])
    assert repr(table) == "NameTable(size=1)"


@given(
    st.dictionaries(digests, values, max_size=30),
    st.lists(st.tuples(digests, values), max_size=10),
    st.lists(digests, max_size=10),
    st.booleans(),
)
def test_missing_from_is_the_difference_of_the_keys(
    model: dict[bytes, int], put: list[tuple[bytes, int]], drop: list[bytes], rebuild: bool
) -> None:
    table = DigestTable.build(model.items())
    other = table.changed(put=put, drop=drop)  # shares every shard it did not touch
    if rebuild:
        other = DigestTable.build(other.iter_items())  # shares nothing
    other_model = dict(other.iter_items())
    assert dict(table.missing_from(other)) == {
        k: v for k, v in model.items() if k not in other_model
    }
    assert dict(other.missing_from(table)) == {
        k: v for k, v in other_model.items() if k not in model
    }
    with pytest.raises(TypeError, match="compares two DigestTables"):
        list(table.missing_from(NameTable.EMPTY))


def test_a_rebuild_of_the_same_items_is_the_same_parts() -> None:
    # A reload of a million unchanged keys: no new shard, no new row.
    items = [(hashlib.sha256(str(n).encode()).digest(), object()) for n in range(20_000)]
    table = DigestTable.build(items)
    again = DigestTable.build(items, like=table)
    assert again is not table
    assert all(a is b for a, b in zip(again.rows, table.rows, strict=True))
    # One value replaced by another object: its shard alone is new, and its row.
    key, _ = items[0]
    changed = DigestTable.build([(key, object()), *items[1:]], like=table)
    i, j = DigestTable.slot(key)
    assert differ(changed.rows, table.rows) == [i]
    assert differ(changed.rows[i], table.rows[i]) == [j]


def differ(these: tuple[Any, ...], those: tuple[Any, ...]) -> list[int]:
    """Where two rows (or two tables' rows) hold different objects."""
    return [n for n, (a, b) in enumerate(zip(these, those, strict=True)) if a is not b]
