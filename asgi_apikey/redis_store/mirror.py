"""The follower's copy of the store's records, and what a full load or a change makes of it.

Pure bookkeeping with no I/O: the records read, by field (the digest in
hex), each with the key decoded from it. A record that did not change keeps
its :class:`~asgi_apikey.APIKey`, so a full reload rebuilds only the entries
that changed.
"""

from __future__ import annotations

from ..collector import release
from ..keys import APIKey
from ..keytable import same_items
from .records import decode

#: Shards of a mirror: a million records are some 250 a shard.
_SHARDS = 4096


class Mirror:
    """The records a follower holds: by field, the record's bytes and its key.

    Kept in :data:`_SHARDS` small dicts by the field's hash, not one dict:
    growing a dict of a million records copies it whole and freeing it frees
    it whole, each a call that holds the GIL (and so the event loop) for tens
    of milliseconds. A shard is a fraction of a millisecond.

    :meth:`reloaded` lends the new copy the shards it did not change, and
    :meth:`change` writes shards in place: once a copy is reloaded, only the
    new one is changed (the follower swaps it in and releases the old one).
    """

    __slots__ = ("_shards", "_size")

    def __init__(self) -> None:
        self._shards: dict[int, dict[bytes, tuple[bytes, APIKey]]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _shard(self, field: bytes) -> dict[bytes, tuple[bytes, APIKey]]:
        where = hash(field) % _SHARDS
        shard = self._shards.get(where)
        if shard is None:
            shard = self._shards[where] = {}
        return shard

    def release(self) -> None:
        """Empty this copy a shard at a time (:func:`~asgi_apikey.collector.release`)."""
        shards = list(self._shards.values())
        self._shards.clear()
        self._size = 0
        release(shards, step=1)

    def all_keys(self) -> list[APIKey]:
        return [key for shard in self._shards.values() for _, key in shard.values()]

    def reloaded(self, chunks: list[dict[bytes, bytes]]) -> Mirror:
        """A new copy holding exactly the records of ``chunks`` (the keys hash, as scanned)."""
        loaded = Mirror()
        for records in chunks:
            for field, value in records.items():
                had = self._shard(field).get(field)
                if had is None or had[0] != value:
                    decoded = decode(field, value)
                    if decoded is None:
                        continue
                    had = (value, decoded[0])
                # unchanged: the same APIKey, so the same entry
                shard = loaded._shard(field)
                loaded._size += field not in shard
                shard[field] = had
        # A shard equal to one held now is that one: a resync of a million
        # unchanged records leaves no new dicts for the collector to traverse.
        mine = self._shards
        for where, shard in loaded._shards.items():
            old = mine.get(where)
            if old is not None and same_items(old, shard):
                loaded._shards[where] = old
        return loaded

    def change(
        self, fields: list[bytes], records: list[bytes | None]
    ) -> tuple[list[APIKey], list[str]]:
        """Take in the records of ``fields`` as the store has them now (None: gone).

        Returns the keys added or changed, and the digests of those removed.
        """
        added, removed = [], []
        for field, record in zip(fields, records, strict=True):
            shard = self._shard(field)
            if record is not None and (decoded := decode(field, record)) is not None:
                added.append(decoded[0])
                self._size += field not in shard
                shard[field] = (record, decoded[0])
            elif shard.pop(field, None) is not None:
                self._size -= 1
                removed.append("sha256:" + field.decode("ascii"))
        return added, removed
