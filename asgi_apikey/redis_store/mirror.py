"""The follower's copy of the store's records, and what a full load or a change makes of it.

Pure bookkeeping with no I/O: the records read, by field (the digest in
hex), each with the key decoded from it. A record that did not change keeps
its :class:`~asgi_apikey.APIKey`, so a full reload rebuilds only the entries
that changed.
"""

from __future__ import annotations

from ..collector import release
from ..keys import APIKey
from .records import decode


class Mirror:
    """The records a follower holds: by field, the record's bytes and its key."""

    def __init__(self, entries: dict[bytes, tuple[bytes, APIKey]] | None = None) -> None:
        self._entries = entries if entries is not None else {}

    def __len__(self) -> int:
        return len(self._entries)

    def release(self) -> None:
        """Empty this copy a slice at a time (:func:`~asgi_apikey.collector.release`)."""
        release(self._entries)

    def keys(self) -> list[APIKey]:
        return [key for _, key in self._entries.values()]

    def reloaded(self, records: dict[bytes, bytes]) -> Mirror:
        """A new copy holding exactly ``records`` (every field of the keys hash)."""
        before, loaded = self._entries, {}
        for field, value in records.items():
            had = before.get(field)
            if had is not None and had[0] == value:
                loaded[field] = had  # unchanged: the same APIKey, so the same entry
                continue
            decoded = decode(field, value)
            if decoded is not None:
                loaded[field] = (value, decoded[0])
        return Mirror(loaded)

    def change(
        self, fields: list[bytes], records: list[bytes | None]
    ) -> tuple[list[APIKey], list[str]]:
        """Take in the records of ``fields`` as the store has them now (None: gone).

        Returns the keys added or changed, and the digests of those removed.
        """
        added, removed = [], []
        for field, record in zip(fields, records, strict=True):
            if record is not None and (decoded := decode(field, record)) is not None:
                added.append(decoded[0])
                self._entries[field] = (record, decoded[0])
            elif self._entries.pop(field, None) is not None:
                removed.append("sha256:" + field.decode("ascii"))
        return added, removed
