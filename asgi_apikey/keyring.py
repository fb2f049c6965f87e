"""KeyRing: the current key snapshot, and copy-on-write changes to it.

Every change (add, remove, replace) builds a new immutable
:class:`~asgi_apikey.keys.KeySnapshot` under the one writer lock and swaps it
in with one assignment; requests read :attr:`KeyRing.snapshot` and never take
the lock, so each sees the set before a change or after it, never a mix.
Adding or removing one key copies a few small parts of the snapshot's
tables (:mod:`asgi_apikey.keytable`), about 15 µs among a million keys;
replacing the whole set builds new tables, which share with the old ones
every part that holds the same entries: a reload of a million keys of which
a few changed makes a few new parts. What a replacement leaves behind is
freed a row at a time, never in one long call that would hold the event
loop (:func:`~asgi_apikey.collector.release`).

The ring tells the keys given in code from the *sourced* ones, which a reload
or a live source replaces, but knows nothing of where those come from, nor of
the environment.

>>> from asgi_apikey.context import ANONYMOUS
>>> from asgi_apikey.keys import APIKey
>>> ring = KeyRing(mode="simple", anonymous=ANONYMOUS, development_anonymous=ANONYMOUS)
>>> ring.add(ring.entry(APIKey("sk-test-0123456789abcdef", name="ci")))
>>> sorted(ring.snapshot.by_id), ring.remove("nobody")
(['ci'], False)
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from .audit import emit
from .collector import release
from .context import AuthContext
from .errors import ConfigurationError
from .keys import APIKey, KeyEntry, KeySnapshot, Verifier, entry_for, index, log_verifier_failure
from .keytable import DigestTable, KeyTable, NameTable

__all__ = ["KeyChanges", "KeyRing"]


class KeyChanges(NamedTuple):
    """What a :meth:`~APIKeyAuth.replace_keys` or :meth:`~APIKeyAuth.reload` changed."""

    added: tuple[str, ...]
    removed: tuple[str, ...]


class KeyRing:
    """The current :class:`~asgi_apikey.keys.KeySnapshot` and the writer lock.

    Parameters:
        mode: ``"simple"`` or ``"advanced"``, for the entries the ring builds.
        anonymous, development_anonymous: the context of a request without a
            key, outside and in development mode.
        local_only: development mode serves this machine only.
        verifiers, clock, report_verifier_failure: passed to each snapshot.
        warn_when_emptied: log ``no_keys`` when a change removes the last key.
    """

    __slots__ = (
        "_anonymous",
        "_clock",
        "_development_anonymous",
        "_local_only",
        "_report",
        "_sourced",
        "_verifiers",
        "_warn_when_emptied",
        "lock",
        "mode",
        "snapshot",
    )

    def __init__(
        self,
        *,
        mode: str,
        anonymous: AuthContext,
        development_anonymous: AuthContext,
        local_only: bool = False,
        verifiers: tuple[Verifier, ...] = (),
        clock: Callable[[], float] = time.time,
        report_verifier_failure: Callable[[str, str], None] = log_verifier_failure,
        warn_when_emptied: bool = True,
    ) -> None:
        self.mode = mode
        self._anonymous = anonymous
        self._development_anonymous = development_anonymous
        self._local_only = local_only
        self._verifiers = verifiers
        self._clock = clock
        self._report = report_verifier_failure
        self._warn_when_emptied = warn_when_emptied
        # One lock for writers: a rotation reads its sources, builds and swaps while
        # holding it, so two reloads cannot land in the opposite order. Requests
        # never take it; they read the current snapshot.
        self.lock = threading.Lock()
        #: The digests that came from a source; reloads replace these, not the others.
        self._sourced: KeyTable[bytes, bool] = DigestTable.EMPTY
        self.snapshot: KeySnapshot = self.build(DigestTable.EMPTY, NameTable.EMPTY)

    # -- building ------------------------------------------------------------------------

    def entry(self, key: APIKey) -> KeyEntry:
        """The prepared entry of ``key`` in this ring's mode."""
        return entry_for(key, self.mode)

    def build(
        self,
        by_digest: KeyTable[bytes, KeyEntry],
        by_id: KeyTable[str, bytes],
        development: bool = False,
        unavailable: str | None = None,
    ) -> KeySnapshot:
        """A snapshot of these two tables (not swapped in)."""
        return KeySnapshot(
            by_digest=by_digest,
            by_id=by_id,
            anonymous=self._development_anonymous if development else self._anonymous,
            development=development,
            local_only=development and self._local_only,
            verifiers=self._verifiers,
            clock=self._clock,
            report_verifier_failure=self._report,
            unavailable=unavailable,
        )

    def fill(
        self,
        entries: Sequence[KeyEntry],
        labels: Sequence[str],
        *,
        sourced: Iterable[bytes],
        development: bool,
        unavailable: str | None = None,
    ) -> None:
        """Swap in a first key set; ``labels`` name each entry in errors."""
        by_digest, by_id = index(entries, labels)
        with self.lock:
            self.snapshot = self.build(by_digest, by_id, development, unavailable)
            self._sourced = digest_set(sourced)

    # -- changes -------------------------------------------------------------------------

    def add(self, entry: KeyEntry) -> None:
        """Add one entry; :class:`ConfigurationError` if its key or key_id is present."""
        key_id = entry.key.key_id
        with self.lock:
            current = self.snapshot
            present = current.by_digest.get(entry.digest)
            if present is not None:
                raise ConfigurationError(
                    f"add_key: the same key is already present, as key_id {present.key.key_id!r}",
                    key_id=present.key.key_id,
                )
            if key_id in current.by_id:
                raise ConfigurationError(
                    f"add_key: the new key reuses the key_id {key_id!r}: give it another name",
                    key_id=key_id,
                )
            self.snapshot = self.build(
                current.by_digest.set(entry.digest, entry),
                current.by_id.set(key_id, entry.digest),
                False,  # keys are enforced from now on
                current.unavailable,
            )

    def remove(self, key_or_name: str | APIKey) -> bool:
        """Remove a key given as the plain key, an :class:`APIKey` or its key_id."""
        with self.lock:
            current = self.snapshot
            digest = _find(current, key_or_name)
            if digest is None:
                return False
            key_id = current.by_digest[digest].key.key_id
            self.snapshot = self.build(
                current.by_digest.delete(digest),
                current.by_id.delete(key_id),
                current.development,
                current.unavailable,
            )
            self._sourced = self._sourced.delete(digest)
            if not self.snapshot.by_digest:
                self._warn_emptied()
            return True

    def replace(self, entries: Sequence[KeyEntry], labels: Sequence[str]) -> KeyChanges:
        """Swap in a whole new key set, every key of it counted as given in code."""
        with self.lock:
            changes = self.swap(entries, labels)
            self._sourced = DigestTable.EMPTY
            return changes

    def kept(self) -> list[KeyEntry]:
        """The current entries that did not come from a source."""
        sourced = self._sourced
        return [e for e in self.snapshot.by_digest.iter_values() if e.digest not in sourced]

    @property
    def sourced(self) -> KeyTable[bytes, bool]:
        """The digests of the current keys that came from a source (as a table's keys)."""
        return self._sourced

    def replace_sourced(
        self, fresh: Sequence[KeyEntry], labels: Sequence[str], *, unconfigured: bool
    ) -> KeyChanges:
        """Replace the sourced keys with ``fresh``; keep the others. Call with :attr:`lock` held."""
        kept = self.kept()
        sourced = digest_set((entry.digest for entry in fresh), like=self._sourced)
        if kept:  # keys given in code too: one list of all (a million: a 15 ms copy)
            entries = [*kept, *fresh]
            names = [*(entry.key.key_id for entry in kept), *labels]
            changes = self.swap(entries, names, unconfigured=unconfigured)
            for done in (entries, names):
                release(done)
        else:
            changes = self.swap(fresh, labels, unconfigured=unconfigured)
        rows = rows_of(self._sourced)
        self._sourced = sourced
        release(rows, step=1)
        return changes

    def commit(
        self,
        by_digest: KeyTable[bytes, KeyEntry],
        by_id: KeyTable[str, bytes],
        sourced: KeyTable[bytes, bool],
        unavailable: str | None = None,
    ) -> None:
        """Swap in a snapshot of these tables. Call with :attr:`lock` held."""
        self.snapshot = self.build(by_digest, by_id, False, unavailable)
        self._sourced = sourced

    def swap(
        self, entries: Sequence[KeyEntry], labels: Sequence[str], *, unconfigured: bool = False
    ) -> KeyChanges:
        """Build a snapshot of ``entries`` and swap it in. Call with :attr:`lock` held."""
        # Build first (it may raise), then one assignment. Development mode only
        # ever ends: once keys were enforced, none means every request is refused,
        # never that every request passes.
        old = self.snapshot
        development = old.development and not entries and unconfigured
        by_digest, by_id = index(entries, labels, like=(old.by_digest, old.by_id))
        new = self.build(by_digest, by_id, development, old.unavailable)
        self.snapshot = new
        if not entries and not development and old.by_digest:
            self._warn_emptied()
        changes = KeyChanges(
            added=_ids(new.by_digest, old.by_digest), removed=_ids(old.by_digest, new.by_digest)
        )
        # What the old tables do not share with the new ones goes a row at a
        # time, here: see rows_of().
        rows = rows_of(old.by_digest, old.by_id)
        del old
        release(rows, step=1)
        return changes

    def _warn_emptied(self) -> None:
        """The last key went (and no verifier answers instead): say so, once per change."""
        if not self._verifiers and self._warn_when_emptied:
            emit(
                "warning",
                "no_keys",
                {"detail": "the last key was removed, so every protected request is refused"},
            )


def rows_of(*tables: KeyTable[Any, Any]) -> list[tuple[dict[Any, Any], ...]]:
    """The rows of ``tables``, just swapped out, to :func:`release` one at a time.

    A million keys replaced by others are millions of objects, freed in one
    call when the last reference to the old tables goes (on the event loop,
    if a request held them). The caller drops its references to the tables
    and releases the rows instead: what the new tables do not share is then
    freed a row at a time, in the writer's thread.
    """
    return [row for table in tables for row in table.rows]


def digest_set(
    digests: Iterable[bytes], like: KeyTable[bytes, bool] | None = None
) -> KeyTable[bytes, bool]:
    """A table whose keys are ``digests``: the ring's set of sourced keys."""
    return DigestTable.build(((digest, True) for digest in digests), like=like)


def _ids(these: KeyTable[bytes, KeyEntry], not_in: KeyTable[bytes, KeyEntry]) -> tuple[str, ...]:
    return tuple(sorted(entry.key.key_id for _, entry in these.missing_from(not_in)))


def _find(snapshot: KeySnapshot, key_or_name: str | APIKey) -> bytes | None:
    if isinstance(key_or_name, APIKey):
        return key_or_name._digest if key_or_name._digest in snapshot.by_digest else None
    if not isinstance(key_or_name, str):
        return None
    by_name = snapshot.by_id.get(key_or_name)
    if by_name is not None:
        return by_name
    if not key_or_name.isascii():
        return None
    digest = hashlib.sha256(key_or_name.encode("ascii")).digest()
    return digest if digest in snapshot.by_digest else None
