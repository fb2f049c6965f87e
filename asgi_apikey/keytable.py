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
from typing import Any, ClassVar, Generic, TypeVar, overload

__all__ = ["DigestTable", "KeyTable", "NameTable"]

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
    def build(cls, items: Iterable[tuple[K, V]]) -> KeyTable[K, V]:
        """A table of ``items`` (key, value); a later value for the same key wins."""
        slot = cls.slot
        shards: dict[tuple[int, int], dict[K, V]] = {}
        for key, value in items:
            where = slot(key)
            shard = shards.get(where)
            if shard is None:
                shard = shards[where] = {}
            shard[key] = value
        # Only the rows that hold a key are made: a few keys cost a few rows.
        rows: dict[int, list[dict[K, V]]] = {}
        size = 0
        for (i, j), shard in shards.items():
            row = rows.get(i)
            if row is None:
                row = rows[i] = list(_EMPTY_ROW)
            row[j] = shard
            size += len(shard)
        outer: list[tuple[dict[K, V], ...]] = [_EMPTY_ROW] * WIDTH
        for i, row in rows.items():
            outer[i] = tuple(row)
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
