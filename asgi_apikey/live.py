"""LiveFollower: starts and stops a live key source and applies what it reports to a key ring.

It is the :class:`~asgi_apikey.sources.KeySink` a
:class:`~asgi_apikey.sources.LiveKeySource` (such as
:class:`~asgi_apikey.redis_store.RedisKeySource`) pushes to: a whole key set,
a change, or "unavailable". It replaces only the ring's sourced keys; keys
given in code stay, and win a clash.
"""

from __future__ import annotations

from collections.abc import Sequence

from .audit import emit
from .collector import release
from .keyring import KeyRing, rows_of
from .keys import APIKey, KeyEntry, _parse_digest, index
from .keytable import DigestTable, NameTable, TableBuilder
from .sources import KeySource, LiveKeySource

__all__ = ["NOT_STARTED", "STOPPED", "LiveFollower"]

# What a 503 says (to clients, so nothing about the deployment); status() has more.
NOT_STARTED = "The API key store has not been read yet; try again later"
STOPPED = "The API key store was stopped with the app"


class LiveFollower:
    """Follows ``source`` (when it is live) into ``ring``; the authenticator's sink."""

    __slots__ = ("_ring", "_source", "_started", "_told_not_started")

    def __init__(self, ring: KeyRing, source: KeySource | None) -> None:
        self._ring = ring
        self._source = source
        self._started = False
        self._told_not_started = False

    async def start(self) -> None:
        """Start a live source (see :meth:`APIKeyAuth.start`); nothing for a local one."""
        source = self._source
        if not isinstance(source, LiveKeySource) or self._started:
            return
        self._started = True
        try:
            await source.start(self)
        except BaseException:
            self._started = False
            raise

    async def stop(self) -> None:
        """Stop a live source; its keys are unavailable (503) from then on."""
        source = self._source
        if not isinstance(source, LiveKeySource) or not self._started:
            return
        self._started = False
        try:
            await source.stop()
        finally:
            self.unavailable(STOPPED)

    def refused_unavailable(self) -> None:
        """Say once, on a 503, that a live source was never started."""
        live = isinstance(self._source, LiveKeySource)
        if live and not self._started and not self._told_not_started:
            self._told_not_started = True
            emit(
                "warning",
                "key_store_not_started",
                {
                    "detail": "a request was refused with 503 because the key source has not "
                    "been started: run the server with the app's lifespan on (uvicorn "
                    "--lifespan on), or await auth.start() yourself"
                },
            )

    # -- the KeySink ---------------------------------------------------------------------

    def replace(self, keys: Sequence[APIKey]) -> None:
        """The source's whole key set; it also ends :meth:`unavailable`."""
        ring = self._ring
        # The entries are built before the lock is taken (100,000 new ones take a
        # second or more), reusing those of the same APIKey objects as before: a
        # source passes the ones it had for records that did not change, so a
        # periodic reload of 100,000 keys allocates next to nothing.
        current = ring.snapshot.by_digest
        built = []
        for key in keys:
            entry = current.get(key._digest)
            built.append(entry if entry is not None and entry.key is key else ring.entry(key))
        del current  # the old tables go in rows_of() below, not with this frame
        with ring.lock:
            if not self._started:
                release(built)
                return  # a load that finished after stop(): the keys stay unavailable
            # Gathered in shards, not in dicts of a million (collector.py: long calls).
            by_digest: TableBuilder[bytes, KeyEntry] = DigestTable.builder()
            by_id: TableBuilder[str, bytes] = NameTable.builder()
            sourced: TableBuilder[bytes, bool] = DigestTable.builder()
            for entry in ring.kept():
                by_digest.add(entry.digest, entry)
                by_id.add(entry.key.key_id, entry.digest)
            for entry in built:
                digest, key_id = entry.digest, entry.key.key_id
                if _admitted(entry.key, digest in by_digest, key_id in by_id):
                    by_digest.add(digest, entry)
                    by_id.add(key_id, digest)
                    sourced.add(digest, True)
            release(built)
            old = ring.snapshot
            rows = rows_of(old.by_digest, old.by_id, ring.sourced)
            ring.commit(
                by_digest.table(like=old.by_digest),
                by_id.table(like=old.by_id),
                sourced.table(like=ring.sourced),
            )
            del old
            release(rows, step=1)

    def change(self, added: Sequence[APIKey], removed: Sequence[str]) -> None:
        """Keys added (or changed), and the digests of keys removed.

        A burst of changes becomes one change of each table, which copies only
        the parts of it that the burst touches: O(changes), whatever the number
        of keys (about 15 µs a change among a million).
        """
        ring = self._ring
        dropped = [_parse_digest(digest) for digest in removed]
        with ring.lock:
            current = ring.snapshot
            if not self._started or current.unavailable is not None:
                return  # untrusted keys: only a whole new set (replace) ends that
            by_digest, by_id, sourced = current.by_digest, current.by_id, ring.sourced
            # Removed, or about to be replaced by a newer record: the sourced ones go.
            gone: dict[bytes, str] = {}
            for digest in [*dropped, *(key._digest for key in added)]:
                if digest in sourced and digest not in gone:
                    entry = by_digest.get(digest)  # None: remove_key() took it already
                    gone[digest] = entry.key.key_id if entry is not None else ""
            gone_ids = {key_id for key_id in gone.values() if key_id}
            new: dict[bytes, KeyEntry] = {}
            new_ids: dict[str, bytes] = {}
            for key in added:
                digest, key_id = key._digest, key.key_id
                digest_taken = digest in new or (digest in by_digest and digest not in gone)
                id_taken = key_id in new_ids or (key_id in by_id and key_id not in gone_ids)
                if _admitted(key, digest_taken, id_taken):
                    new[digest] = ring.entry(key)
                    new_ids[key_id] = digest
            ring.commit(
                by_digest.changed(put=new.items(), drop=gone),
                by_id.changed(put=new_ids.items(), drop=gone_ids),
                sourced.changed(put=((digest, True) for digest in new), drop=gone),
                current.unavailable,
            )

    def unavailable(self, detail: str) -> None:
        """Refuse the source's keys (503 with ``detail``) until the next :meth:`replace`."""
        ring = self._ring
        with ring.lock:
            kept = ring.kept()
            by_digest, by_id = index(kept, [e.key.key_id for e in kept])
            ring.commit(by_digest, by_id, DigestTable.EMPTY, detail)


def _admitted(key: APIKey, digest_taken: bool, id_taken: bool) -> bool:
    """Whether a live source's key fits beside the others; a clash is logged and skipped.

    A live store checks uniqueness itself, so a clash is with a key given in
    code: that key stays, and the store's is refused until the clash is fixed.
    """
    if not digest_taken and not id_taken:
        return True
    emit(
        "error",
        "key_source_conflict",
        {
            "key_id": key.key_id,
            "detail": "a key from the key source is the same key, or has the same key_id, as "
            "a key given in code; the key given in code is kept and the other refused",
        },
    )
    return False
