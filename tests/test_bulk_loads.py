"""Reloads and full loads share what did not change, and free the rest off the event loop.

A reload of many unchanged keys must make no new table parts (nothing for
the collector to traverse, nothing to free), and a key set replaced by
another must be freed by the thread that replaced it, a row at a time, not
by the request that happened to hold it last (see ``keyring.rows_of``).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware
from asgi_apikey.keyring import KeyChanges
from asgi_apikey.keys import KeyEntry
from asgi_apikey.keytable import KeyTable
from asgi_apikey.redis_store.mirror import Mirror
from asgi_apikey.redis_store.records import record
from asgi_apikey.sources import KeySource, SourceKeys
from tests.asgi import bearer, client_messages, http_scope, plain_digest
from tests.test_sources import FakeLive, started

N = 3_000  # enough keys to fill many rows and shards
ADDED = datetime(2026, 12, 5, tzinfo=UTC)


def secret(n: int) -> str:
    return f"sk-bulk-{n:06d}-0123456789abcdef"


def write_file(path: Path, names: dict[int, str]) -> None:
    path.write_text(
        "".join(
            f'[[keys]]\ndigest = "{plain_digest(secret(n))}"\nname = "{name}"\n'
            for n, name in names.items()
        )
    )


def parts(table: KeyTable[Any, Any]) -> tuple[set[int], set[int]]:
    """The ids of a table's rows and shards that hold keys."""
    rows = {id(row) for row in table.rows if any(row)}
    shards = {id(shard) for row in table.rows for shard in row if shard}
    return rows, shards


def new_parts(after: KeyTable[Any, Any], before: KeyTable[Any, Any]) -> tuple[int, int]:
    """How many rows and shards ``after`` holds that ``before`` did not."""
    rows, shards = parts(after)
    old_rows, old_shards = parts(before)
    return len(rows - old_rows), len(shards - old_shards)


@pytest.fixture
def collector_off() -> Iterator[None]:
    # Only reference counting frees here: what is alive is what something holds.
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def test_a_reload_of_unchanged_keys_makes_no_new_table_parts(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    write_file(path, {n: f"k{n}" for n in range(N)})
    auth = APIKeyAuth(keys_file=path, environment="production")
    ring = auth._ring
    before, sourced = ring.snapshot, ring.sourced
    assert auth.reload() == KeyChanges(added=(), removed=())
    after = ring.snapshot
    assert after is not before
    assert new_parts(after.by_digest, before.by_digest) == (0, 0)
    assert new_parts(after.by_id, before.by_id) == (0, 0)
    assert new_parts(ring.sourced, sourced) == (0, 0)
    assert auth.verify(secret(N - 1)) is not None


def test_a_reload_that_renames_one_key_makes_only_its_parts_new(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    names = {n: f"k{n}" for n in range(N)}
    write_file(path, names)
    auth = APIKeyAuth(keys_file=path, environment="production")
    before = auth._ring.snapshot
    write_file(path, {**names, 7: "renamed"})
    assert auth.reload() == KeyChanges(added=(), removed=())  # the same keys, by digest
    after = auth._ring.snapshot
    assert new_parts(after.by_digest, before.by_digest) == (1, 1)  # the entry's shard
    rows, shards = new_parts(after.by_id, before.by_id)  # the old name's and the new one's
    assert 1 <= rows <= 2
    assert 1 <= shards <= 2
    context = auth.verify(secret(7))
    assert context is not None
    assert context.key_id == "renamed"


def entries_named(prefix: str) -> list[KeyEntry]:
    return [o for o in gc.get_objects() if type(o) is KeyEntry and o.key.key_id.startswith(prefix)]


def test_a_request_does_not_hold_the_key_set_while_the_app_runs(collector_off: None) -> None:
    # A stream may last minutes: a key set replaced meanwhile must not live on
    # in it, to be freed all at once on the event loop when it ends.
    auth = APIKeyAuth(keys=[APIKey(secret(n), name=f"old{n}") for n in range(200)])
    inside, finish = asyncio.Event(), asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        inside.set()
        await finish.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = APIKeyMiddleware(app, auth=auth)
    scope = http_scope("/", headers=[bearer(secret(1))])
    incoming, gone = client_messages(scope)
    sent: list[Any] = []

    async def receive() -> Any:
        return incoming.pop(0) if incoming else gone

    async def send(message: Any) -> None:
        sent.append(message)

    async def main() -> list[KeyEntry]:
        request = asyncio.create_task(middleware(scope, receive, send))
        await inside.wait()
        auth.replace_keys([APIKey(secret(n + 1_000), name=f"new{n}") for n in range(200)])
        alive = [e for e in entries_named("old") if e.key.key_id != "old1"]  # not its own
        finish.set()
        await request
        return alive

    alive = asyncio.run(main())
    assert sent[0]["status"] == 200  # the request was served by the old set
    assert alive == []  # and nothing of that set outlived the replacement


class HeldSource(KeySource):
    """A source that keeps the list it hands over (as a cache would)."""

    kind = "held"

    def __init__(self) -> None:
        self.held = [(f"held[{n}]", APIKey(secret(n))) for n in range(50)]

    def read(self, config: Any) -> SourceKeys:
        return SourceKeys(self.held)


def test_a_reload_leaves_a_list_a_source_keeps_as_it_was() -> None:
    # The authenticator empties the lists its own sources hand over (to free a
    # million keys a slice at a time), never one another source still holds.
    source = HeldSource()
    auth = APIKeyAuth(source=source, environment="production")
    auth.reload()
    assert len(source.held) == 50
    assert auth.verify(secret(49)) is not None


def test_a_live_whole_set_of_the_same_keys_makes_no_new_table_parts() -> None:
    keys = [APIKey(secret(n), name=f"k{n}") for n in range(N)]
    source = FakeLive(*keys)
    auth = started(source, environment="production")
    ring = auth._ring
    before, sourced = ring.snapshot, ring.sourced
    assert source.sink is not None
    source.sink.replace(keys)  # a resync: the same APIKey objects for unchanged records
    after = ring.snapshot
    assert after is not before
    assert new_parts(after.by_digest, before.by_digest) == (0, 0)
    assert new_parts(after.by_id, before.by_id) == (0, 0)
    assert new_parts(ring.sourced, sourced) == (0, 0)


def records(numbers: range, name: str = "k") -> dict[bytes, bytes]:
    out = {}
    for n in numbers:
        key = APIKey(secret(n), name=f"{name}{n}")
        out[key.digest.removeprefix("sha256:").encode()] = record(key, ADDED).encode()
    return out


def test_a_mirror_reloaded_with_the_same_records_lends_every_shard() -> None:
    first = Mirror().reloaded([records(range(N))])
    # The scan's chunks may repeat a field (HSCAN does): it counts once.
    again = first.reloaded([records(range(0, N // 2)), records(range(N // 3, N))])
    assert len(again) == len(first) == N
    assert {id(s) for s in again._shards.values()} == {id(s) for s in first._shards.values()}
    assert {id(k) for k in again.all_keys()} == {id(k) for k in first.all_keys()}
    renamed = again.reloaded([{**records(range(N)), **records(range(5, 6), "x")}])
    assert len(renamed) == N
    shards = again._shards
    assert sum(shard is not shards[where] for where, shard in renamed._shards.items()) == 1
    assert sorted(k.key_id for k in renamed.all_keys()) == sorted(
        [f"k{n}" for n in range(N) if n != 5] + ["x5"]
    )


def test_index_wants_a_label_for_each_entry() -> None:
    from asgi_apikey.keys import entry_for, index

    entry = entry_for(APIKey(secret(1)), "simple")
    with pytest.raises(ValueError, match="1 entries and 0 labels"):
        index([entry], [])
