"""KeyTable: an immutable mapping of many keys that a change copies a small part of.

A key set is read by every request and changed by a few writers. Copying a
dict of a million keys for each change costs a third of a second; a
:class:`KeyTable` spreads its keys over 256 x 256 small dicts (a *shard* each)
kept in nested tuples, so a change copies one shard (a million keys: about 15
of them), the row of 256 shards that holds it, and the outer tuple of 256
rows: some 15 µs whatever the size, and the table it came from stays as it
was for the requests still reading it. A lookup indexes the two tuples and
calls ``dict.get``: 20 to 100 ns more than one big dict.
``benchmarks/results/change_designs.md`` compares this with an overlay of
recent changes and a hash array mapped trie, and says why this one.

Empty shards are one shared empty dict and empty rows one shared tuple, so a
table of a few keys holds a few rows, not 65,536 dicts. No dict that a
table holds is ever written once the table is made: every change builds new
ones. :class:`DigestTable` places a key by its first two bytes (SHA-256
digests, evenly spread by construction); :class:`NameTable` by its hash.

>>> table = NameTable.build([("ci", 1), ("web", 2)])
>>> newer = table.changed(put=[("batch", 3)], drop=["ci"])
>>> sorted(table.items()), sorted(newer.items()), len(newer)
([('ci', 1), ('web', 2)], [('batch', 3), ('web', 2)], 2)
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from itertools import chain
from operator import is_
from typing import Any, ClassVar, Generic, TypeVar, overload

__all__ = ["DigestTable", "KeyTable", "NameTable", "TableBuilder"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

WIDTH = 256  # shards in a row, and rows in a table
_EMPTY: dict[Any, Any] = {}  # every empty shard: shared, so never written
_EMPTY_ROW: tuple[dict[Any, Any], ...] = (_EMPTY,) * WIDTH
_MISSING = object()


class KeyTable(Mapping[K, V], Generic[K, V]):
    """A read-only mapping of up to millions of keys, changed by :meth:`changed` in O(1).

    Build one with :meth:`build`; :meth:`changed` (and :meth:`set`,
    :meth:`delete`) return a new table and leave this one as it is. Requests
    on the hot path read :attr:`rows` directly: ``rows[i][j].get(key)``.
    """

    __slots__ = ("_size", "rows")

    #: The table with no keys (set on each subclass).
    EMPTY: ClassVar[KeyTable[Any, Any]]

    rows: tuple[tuple[dict[K, V], ...], ...]

    def __init__(self, rows: tuple[tuple[dict[K, V], ...], ...], size: int) -> None:
        # Internal: use build() or changed(). The dicts in rows must never be written.
        self.rows = rows
        self._size = size

    @staticmethod
    def slot(key: Any) -> tuple[int, int]:
        """The row and the shard within it that hold ``key``."""
        raise NotImplementedError

    # -- making tables -------------------------------------------------------------------

    @classmethod
    def build(
        cls, items: Iterable[tuple[K, V]], *, like: KeyTable[K, V] | None = None
    ) -> KeyTable[K, V]:
        """A table of ``items`` (key, value); a later value for the same key wins.

        ``like`` is the table this one replaces: where a shard of it holds the
        same keys with the same values (the same objects), the new table holds
        that shard instead of an equal copy, and a row of such shards is that
        row. A reload of a million keys of which a few changed then makes a
        few new shards, not 65,536 that would all replace equal ones.
        """
        slot = cls.slot
        shards: dict[tuple[int, int], dict[K, V]] = {}
        for key, value in items:
            where = slot(key)
            shard = shards.get(where)
            if shard is None:
                shard = shards[where] = {}
            shard[key] = value
        return cls._assemble(shards, like)

    @classmethod
    def builder(cls) -> TableBuilder[K, V]:
        """An empty :class:`TableBuilder` for a table of this kind."""
        return TableBuilder(cls)

    @classmethod
    def _assemble(
        cls, shards: dict[tuple[int, int], dict[K, V]], like: KeyTable[K, V] | None
    ) -> KeyTable[K, V]:
        # Takes the shards out of ``shards`` one at a time, so that a new shard
        # equal to one of ``like`` is freed at once, not all of them at the end
        # in one long call.
        old = like.rows if like is not None and type(like) is cls else None
        rows: dict[int, list[dict[K, V]]] = {}
        size = 0
        for where in list(shards):
            shard = shards.pop(where)
            i, j = where
            size += len(shard)
            if old is not None and same_items(old[i][j], shard):
                shard = old[i][j]
            row = rows.get(i)
            if row is None:
                row = rows[i] = list(_EMPTY_ROW)
            row[j] = shard
        # Only the rows that hold a key are made: a few keys cost a few rows.
        outer: list[tuple[dict[K, V], ...]] = [_EMPTY_ROW] * WIDTH
        for i, row in rows.items():
            outer[i] = old[i] if old is not None and all(map(is_, row, old[i])) else tuple(row)
        return cls(tuple(outer), size)

    def changed(self, put: Iterable[tuple[K, V]] = (), drop: Iterable[K] = ()) -> KeyTable[K, V]:
        """A new table: this one without the keys in ``drop``, then with ``put`` (key, value).

        Copies each shard and row it touches once, so a burst of changes costs
        about one change per shard it touches. A key to drop that is absent is
        no error.
        """
        slot, rows = self.slot, self.rows
        shards: dict[tuple[int, int], dict[K, V]] = {}
        size = self._size
        for key in drop:
            where = slot(key)
            shard = shards.get(where)
            if shard is None:
                if key not in rows[where[0]][where[1]]:
                    continue  # absent: nothing to copy
                shard = shards[where] = dict(rows[where[0]][where[1]])
            if shard.pop(key, _MISSING) is not _MISSING:
                size -= 1
        for key, value in put:
            where = slot(key)
            shard = shards.get(where)
            if shard is None:
                shard = shards[where] = dict(rows[where[0]][where[1]])
            size += key not in shard
            shard[key] = value
        if not shards:
            return self
        new_rows: dict[int, list[dict[K, V]]] = {}
        for (i, j), shard in shards.items():
            row = new_rows.get(i)
            if row is None:
                row = new_rows[i] = list(rows[i])
            row[j] = shard if shard else _EMPTY
        outer = list(rows)
        for i, row in new_rows.items():
            outer[i] = _EMPTY_ROW if all(shard is _EMPTY for shard in row) else tuple(row)
        return type(self)(tuple(outer), size)

    def set(self, key: K, value: V) -> KeyTable[K, V]:
        """A new table with ``key`` set to ``value``."""
        return self.changed(put=((key, value),))

    def delete(self, key: K) -> KeyTable[K, V]:
        """A new table without ``key`` (the same table if it is absent)."""
        return self.changed(drop=(key,))

    # -- reading -------------------------------------------------------------------------

    def __getitem__(self, key: K) -> V:
        i, j = self.slot(key)
        return self.rows[i][j][key]

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, /, default: V | T) -> V | T: ...
    def get(self, key: K, /, default: Any = None) -> Any:
        i, j = self.slot(key)
        return self.rows[i][j].get(key, default)

    def __contains__(self, key: object) -> bool:
        i, j = self.slot(key)
        return key in self.rows[i][j]

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[K]:
        return chain.from_iterable(self._shards())

    def _shards(self) -> Iterator[dict[K, V]]:
        # Loops in C (chain, filter): a table has 65,536 shards, most of a small one empty.
        rows = (row for row in self.rows if row is not _EMPTY_ROW)
        return filter(None, chain.from_iterable(rows))

    def iter_values(self) -> Iterator[V]:
        """The values, shard by shard (faster than ``values()`` on a large table)."""
        return chain.from_iterable(map(dict.values, self._shards()))

    def iter_items(self) -> Iterator[tuple[K, V]]:
        """The (key, value) pairs, shard by shard (faster than ``items()``)."""
        return chain.from_iterable(map(dict.items, self._shards()))

    def missing_from(self, other: KeyTable[K, V]) -> Iterator[tuple[K, V]]:
        """The (key, value) pairs of this table whose key ``other`` lacks.

        Shard by shard (both tables place keys alike), skipping the shards the
        two share: the difference of two tables one change apart costs one shard.
        """
        if type(other) is not type(self):
            raise TypeError(f"missing_from compares two {type(self).__name__}s")
        for mine_row, their_row in zip(self.rows, other.rows, strict=True):
            if mine_row is their_row:
                continue
            for mine, theirs in zip(mine_row, their_row, strict=True):
                if mine is not theirs and mine:
                    for key in mine.keys() - theirs.keys():
                        yield key, mine[key]

    def __reduce__(self) -> tuple[Any, ...]:
        # A NameTable places keys by hash(), which differs between processes:
        # a copy is rebuilt from its items, never from the rows.
        return (type(self).build, (list(self.iter_items()),))

    def __repr__(self) -> str:
        # The size only: the values may be entries, and a repr is for logs.
        return f"{type(self).__name__}(size={self._size})"


def same_items(old: dict[Any, Any], new: dict[Any, Any]) -> bool:
    """Whether two shards hold the same keys, each with the same value object."""
    return (
        len(old) == len(new)
        and old.keys() == new.keys()
        and all(map(is_, map(old.__getitem__, new), new.values()))
    )


class TableBuilder(Generic[K, V]):
    """A new :class:`KeyTable` gathered an item at a time, with no dict of all its items.

    A dict of a million items is a long call twice: when it grows (CPython
    copies it whole, with the GIL held) and when it is freed. A builder holds
    the items in their shards (at most 65,536 small dicts), which become the
    table's own.

    >>> names = NameTable.builder()
    >>> names.add("ci", 1), names.add("web", 2), names.add("ci", 3)
    (True, True, False)
    >>> "web" in names, sorted(names.table().items())
    (True, [('ci', 1), ('web', 2)])
    """

    __slots__ = ("_kind", "_shards")

    def __init__(self, kind: type[KeyTable[K, V]]) -> None:
        self._kind = kind
        self._shards: dict[tuple[int, int], dict[K, V]] = {}

    def __contains__(self, key: object) -> bool:
        shard = self._shards.get(self._kind.slot(key))
        return shard is not None and key in shard

    def add(self, key: K, value: V) -> bool:
        """Add ``key`` unless it is present already; whether it was added (the first wins)."""
        where = self._kind.slot(key)
        shard = self._shards.get(where)
        if shard is None:
            self._shards[where] = {key: value}
            return True
        if key in shard:
            return False
        shard[key] = value
        return True

    def table(self, like: KeyTable[K, V] | None = None) -> KeyTable[K, V]:
        """The table of the items added (see :meth:`KeyTable.build` for ``like``).

        The builder is empty afterwards: its shards are the table's now.
        """
        return self._kind._assemble(self._shards, like)


class DigestTable(KeyTable[bytes, V]):
    """A :class:`KeyTable` keyed by SHA-256 digests, placed by their first two bytes."""

    __slots__ = ()

    @staticmethod
    def slot(key: Any) -> tuple[int, int]:
        # Digests are uniform by construction. Anything else goes to the first
        # shard: found there again if it was put there, never an error.
        if type(key) is bytes and len(key) > 1:
            return key[0], key[1]
        return 0, 0


class NameTable(KeyTable[str, V]):
    """A :class:`KeyTable` keyed by names (key_ids), placed by their hash."""

    __slots__ = ()

    @staticmethod
    def slot(key: Any) -> tuple[int, int]:
        h = hash(key)
        return (h >> 8) & 0xFF, h & 0xFF


DigestTable.EMPTY = DigestTable(tuple(_EMPTY_ROW for _ in range(WIDTH)), 0)
NameTable.EMPTY = NameTable(tuple(_EMPTY_ROW for _ in range(WIDTH)), 0)
