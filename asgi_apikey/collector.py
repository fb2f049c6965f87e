"""Bulk key loads and CPython's garbage collector.

A key costs about ten objects the cyclic collector tracks (the key, its
entry, context, user, scopes, metadata). Loading a million of them makes the
collector run its full collection again and again as the heap grows, each a
pass over every tracked object with the GIL held: seconds during which no
other thread, the event loop included, runs (``benchmarks/results/scale.md``
measured 1.4 s stalls loading a million keys from Redis and 14 s reading a
key file). Once loaded, the same keys make every later full collection long.

So a bulk load (construction, :meth:`~asgi_apikey.APIKeyAuth.reload`,
:meth:`~asgi_apikey.APIKeyAuth.replace_keys`, a live store's full load) runs
inside :func:`bulk_load`: the automatic collector is paused while it
allocates, and if the load left at least :data:`FREEZE_AFTER` new tracked
objects, they are moved out of the collector's way with :func:`gc.freeze`
(what CPython's documentation advises for large, long-lived data) before the
collector is resumed. Frozen objects are still freed by reference counting
when a key is removed; only cyclic garbage that exists at that moment is
never collected. An application that manages the collector itself (it
disabled it, or sets ``asgi_apikey.collector.PAUSE = False``) is left
alone.

Freeing is the other long call: when the last reference to a dict of a
million records goes, CPython frees all of them in one C call, with the GIL
held for tens of milliseconds. :func:`release` empties such a container a
slice at a time on the loading thread instead.

>>> with bulk_load():
...     keys = [object() for _ in range(3)]
>>> import gc
>>> gc.isenabled()
True
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

__all__ = ["FREEZE_AFTER", "PAUSE", "bulk_load", "release"]

#: Whether bulk loads pause the collector (and freeze what a large one loaded).
PAUSE = True
#: New tracked objects a load must leave to be frozen: a first load of about
#: 10,000 keys. A smaller load, or a reload of keys that did not change (whose
#: new tables lend the old parts: next to nothing new), is left to the collector.
FREEZE_AFTER = 100_000

_lock = threading.Lock()
_loads = 0  # bulk loads running now, on any thread
_paused = False  # whether the first of them paused the collector


@contextmanager
def bulk_load() -> Iterator[None]:
    """Pause the automatic collector for a bulk load; freeze what a large one left.

    Loads on several threads share one pause: the collector resumes when the
    last ends.
    """
    global _loads, _paused
    with _lock:
        if _loads == 0:
            _paused = PAUSE and gc.isenabled()
            if _paused:
                gc.disable()
        _loads += 1
    try:
        yield
    finally:
        with _lock:
            _loads -= 1
            if _loads == 0 and _paused:
                _paused = False
                if _young() >= FREEZE_AFTER:
                    gc.freeze()
                gc.enable()


def _young() -> int:
    """How many tracked objects the youngest generation holds now.

    Not ``gc.get_count()[0]``: that counts allocations less deallocations, and
    a reload that frees a million old keys while it makes a million new ones
    counts nothing, though the new ones are all there to be collected.
    """
    count = gc.get_count()[0]
    if count >= FREEZE_AFTER:
        return count
    return len(gc.get_objects(generation=0))


#: Items freed at a time by :func:`release`: well under a millisecond each.
RELEASE_STEP = 5_000


def release(items: list[Any] | dict[Any, Any], step: int = RELEASE_STEP) -> None:
    """Empty ``items`` ``step`` at a time, so that freeing them never holds the GIL long.

    Between slices other threads (the event loop) get their turn; one
    ``clear()`` of a million records would hold it for the whole of them.
    Items that each hold many objects (a row of a key table) go a few at a time.

    >>> records = {n: str(n) for n in range(12_345)}
    >>> release(records)
    >>> records
    {}
    """
    if isinstance(items, list):
        while items:
            del items[-step:]
        return
    while items:
        for key in list(islice(items, step)):
            del items[key]
