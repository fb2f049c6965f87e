"""Key sources: the environment and key file as sources, custom sources, and a live source.

The live source here is an in-memory fake that drives the sink by hand, so the
authenticator's and the middleware's side of a live source (snapshots, 503s,
the lifespan) is pinned without Redis; test_redis_store.py runs the real one.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message

from asgi_apikey import (
    APIKey,
    APIKeyAuth,
    APIKeyMiddleware,
    AuthSettings,
    ConfigurationError,
    EnvironmentSource,
    KeyChanges,
    KeyFileSource,
    KeySink,
    KeySource,
    KeySourceError,
    LiveKeySource,
    SourceKeys,
)
from tests.asgi import CANARY, OTHER_KEY, Recorder, bearer, call, http_scope, plain_digest

THIRD = "sk-third-0a1b2c3d4e5f6a7b8c"


def write_keys(path: Path, *secrets: str) -> Path:
    tables = "".join(f'[[keys]]\ndigest = "{plain_digest(s)}"\n' for s in secrets)
    path.write_text(tables)
    return path


# ======================================================== local sources


def test_a_key_file_source_is_keys_file(tmp_path: Path) -> None:
    path = write_keys(tmp_path / "keys.toml", CANARY)
    by_source = APIKeyAuth(source=KeyFileSource(path))
    by_argument = APIKeyAuth(keys_file=path)
    assert by_source.key_ids == by_argument.key_ids
    assert by_source.verify(CANARY) is not None
    assert by_source.supports("key_file")
    write_keys(path, OTHER_KEY)
    changes = by_source.reload()
    assert changes.added == (APIKey(OTHER_KEY).key_id,)
    assert by_source.verify(CANARY) is None
    assert repr(KeyFileSource(path)) == f"KeyFileSource({str(path)!r})"
    assert by_source.status()["source"] == {"kind": "key_file"}


def test_areload_reads_the_key_file_in_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_keys(tmp_path / "keys.toml", CANARY)
    auth = APIKeyAuth(keys_file=path)
    write_keys(path, OTHER_KEY)
    readers: list[int] = []
    real_read = KeyFileSource.read

    def read(self: KeyFileSource, config: AuthSettings) -> SourceKeys:
        readers.append(threading.get_ident())
        return real_read(self, config)

    monkeypatch.setattr(KeyFileSource, "read", read)

    async def reload_on_the_loop() -> tuple[int, KeyChanges]:
        return threading.get_ident(), await auth.areload()

    loop_thread, changes = asyncio.run(reload_on_the_loop())
    assert changes == KeyChanges(
        added=(APIKey(OTHER_KEY).key_id,), removed=(APIKey(CANARY).key_id,)
    )
    assert len(readers) == 1
    assert readers[0] != loop_thread
    assert auth.verify(OTHER_KEY) is not None
    assert auth.verify(CANARY) is None
    path.write_text("[[keys]]\nnot = 'a key'\n")
    with pytest.raises(ConfigurationError):
        asyncio.run(auth.areload())  # the same errors as reload(), and the keys stay
    assert auth.verify(OTHER_KEY) is not None


def test_the_environment_source_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(APIKeyAuth().source, EnvironmentSource)
    assert APIKeyAuth(source=EnvironmentSource()).is_development_mode
    monkeypatch.setenv("API_KEY", CANARY)
    auth = APIKeyAuth(source=EnvironmentSource())
    assert not auth.is_development_mode
    assert auth.verify(CANARY) is not None
    assert auth.status()["source"] == {"kind": "environment"}
    assert repr(EnvironmentSource()) == "EnvironmentSource()"


def test_keys_given_in_code_keep_an_unset_environment_out_of_development_mode() -> None:
    auth = APIKeyAuth(keys=[CANARY], source=EnvironmentSource())
    assert not auth.is_development_mode
    assert auth.verify(CANARY) is not None
    assert APIKeyAuth(keys=[CANARY]).source is None


def test_an_empty_key_variable_is_reported_by_the_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_KEY", "")
    read = EnvironmentSource().read(AuthSettings())
    assert read == SourceKeys([], configured=True, empty=("API_KEY",))  # a list: see reload()


class DictSource(KeySource):
    """A custom source: keys kept by the application itself."""

    kind = "dict"

    def __init__(self, *secrets: str) -> None:
        self.secrets = list(secrets)

    def read(self, config: AuthSettings) -> SourceKeys:
        return SourceKeys(tuple((f"dict[{i}]", APIKey(s)) for i, s in enumerate(self.secrets)))


def test_a_custom_source_is_read_at_construction_and_on_reload() -> None:
    source = DictSource(CANARY)
    auth = APIKeyAuth(keys=[THIRD], source=source)
    assert auth.verify(CANARY) is not None
    source.secrets = [OTHER_KEY]
    auth.reload()
    assert auth.verify(CANARY) is None
    assert auth.verify(OTHER_KEY) is not None
    assert auth.verify(THIRD) is not None  # given in code: kept
    assert auth.status()["source"] == {"kind": "dict"}


def test_a_custom_source_duplicating_a_key_in_code_fails_with_both_places() -> None:
    with pytest.raises(ConfigurationError, match=r"dict\[0\] is the same key as keys\[0\]"):
        APIKeyAuth(keys=[CANARY], source=DictSource(CANARY))


def test_a_source_that_reads_something_else_fails_clearly() -> None:
    class Broken(KeySource):
        def read(self, config: AuthSettings) -> SourceKeys:
            return [CANARY]  # type: ignore[return-value]

    with pytest.raises(ConfigurationError, match=r"Broken\.read\(\) must return SourceKeys"):
        APIKeyAuth(source=Broken())
    with pytest.raises(NotImplementedError):
        KeySource().read(AuthSettings())
    assert KeySource().describe() == {"kind": "source"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"source": "keys.toml"}, "source must be a KeySource"),
        ({"source": KeyFileSource("a.toml"), "keys_file": "b.toml"}, "give keys_file= or source="),
    ],
    ids=["not-a-source", "both"],
)
def test_bad_sources_fail_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        APIKeyAuth(**options)


@pytest.mark.parametrize("path", [None, "", 7])
def test_a_key_file_source_needs_a_path(path: Any) -> None:
    with pytest.raises(ConfigurationError, match="takes the path of a TOML key file"):
        KeyFileSource(path)


# ======================================================== a live source (in memory)


class FakeLive(LiveKeySource):
    """A live source that starts (or fails) on command and is driven through its sink."""

    kind = "fake"

    def __init__(self, *keys: APIKey, fail: bool = False) -> None:
        self.keys = list(keys)
        self.fail = fail
        self.sink: KeySink | None = None
        self.starts = self.stops = 0

    async def start(self, sink: KeySink) -> None:
        self.starts += 1
        if self.fail:
            raise KeySourceError("the fake store is down: start it", source="fake")
        self.sink = sink
        sink.replace(self.keys)

    async def stop(self) -> None:
        self.stops += 1


def started(source: FakeLive, **options: Any) -> APIKeyAuth:
    auth = APIKeyAuth(source=source, **options)
    asyncio.run(auth.start())
    return auth


def test_a_live_source_is_unavailable_until_started() -> None:
    auth = APIKeyAuth(source=FakeLive(APIKey(CANARY)), environment="production")
    assert auth.source_is_live
    assert not auth.is_development_mode
    assert "has not been read yet" in (auth.status()["unavailable"] or "")
    app = APIKeyMiddleware(Recorder(), auth=auth)
    assert call(app, http_scope("/x", headers=[bearer(CANARY)])).status == 503
    asyncio.run(auth.start())
    assert call(app, http_scope("/x", headers=[bearer(CANARY)])).status == 200
    assert auth.status()["unavailable"] is None


def test_changes_and_unavailability_through_the_sink() -> None:
    source = FakeLive(APIKey(CANARY, name="a"))
    auth = started(source, keys=[APIKey(THIRD, name="local")])
    app = APIKeyMiddleware(Recorder(), auth=auth, public=["/health"], optional=["/maybe"])
    assert source.sink is not None
    source.sink.change([APIKey(OTHER_KEY, name="b")], [APIKey(CANARY).digest])
    assert sorted(auth.key_ids) == ["b", "local"]
    # A newer record of a key replaces the old one.
    source.sink.change([APIKey(OTHER_KEY, name="b", scopes={"admin"})], [])
    context = auth.verify(OTHER_KEY)
    assert context is not None
    assert "admin" in context.scopes

    source.sink.unavailable("The API key store is unavailable; try again later")
    unknown = call(app, http_scope("/x", headers=[bearer(CANARY)]))
    assert unknown.status == 503
    assert unknown.header("retry-after") == "5"
    assert unknown.header("www-authenticate") is None
    assert call(app, http_scope("/maybe", headers=[bearer(CANARY)])).status == 503
    assert call(app, http_scope("/maybe")).status == 200  # anonymous, as ever
    assert call(app, http_scope("/health", headers=[bearer(CANARY)])).status == 200
    assert call(app, http_scope("/x", headers=[bearer(THIRD)])).status == 200  # given in code
    assert call(app, http_scope("/x")).status == 401
    assert call(app, http_scope("/x", headers=[bearer("sk bad")])).status == 400
    assert auth.counters().refused["unavailable"] == 2
    # add_key and replace_keys while unavailable keep it unavailable.
    auth.add_key(APIKey("sk-added-0123456789abcdef"))
    assert auth.status()["unavailable"] is not None

    source.sink.replace([APIKey(CANARY, name="a")])
    assert auth.status()["unavailable"] is None
    assert sorted(auth.key_ids) == sorted(
        ["a", "local", APIKey("sk-added-0123456789abcdef").key_id]
    )


def test_a_key_removed_by_hand_then_revoked_by_the_source() -> None:
    source = FakeLive(APIKey(CANARY, name="a"))
    auth = started(source)
    assert auth.remove_key("a") is True
    assert source.sink is not None
    source.sink.change([], [APIKey(CANARY).digest])  # no error: already gone
    assert auth.key_ids == ()


def test_a_source_key_that_clashes_with_a_key_in_code_is_refused() -> None:
    source = FakeLive()
    auth = started(source, keys=[APIKey(CANARY, name="mine")])
    assert source.sink is not None
    source.sink.change([APIKey(CANARY, name="theirs"), APIKey(OTHER_KEY, name="mine")], [])
    assert auth.key_ids == ("mine",)
    context = auth.verify(CANARY)
    assert context is not None
    assert context.key_id == "mine"


def test_a_live_key_carries_its_metadata_in_every_mode() -> None:
    key = APIKey(CANARY, metadata={"tier": "pro"})
    simple = started(FakeLive(key)).verify(CANARY)
    advanced = started(FakeLive(key), mode="advanced").verify(CANARY)
    assert simple is not None
    assert advanced is not None
    assert (simple.mode, dict(simple.metadata)) == ("simple", {"tier": "pro"})
    assert (advanced.mode, dict(advanced.metadata)) == ("advanced", {"tier": "pro"})


def run_lifespan(app: APIKeyMiddleware) -> list[Message]:
    """Drive a whole lifespan: startup, then shutdown; what the server was sent."""
    sent: list[Message] = []

    async def scenario() -> None:
        incoming: asyncio.Queue[Message] = asyncio.Queue()
        incoming.put_nowait({"type": "lifespan.startup"})

        async def send(message: Message) -> None:
            sent.append(message)
            if message["type"] == "lifespan.startup.complete":
                incoming.put_nowait({"type": "lifespan.shutdown"})

        task = asyncio.create_task(app({"type": "lifespan"}, incoming.get, send))
        for _ in range(200):
            if task.done() or any(m["type"] == "lifespan.startup.failed" for m in sent):
                break
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    return sent


class LifespanApp:
    """A minimal app that speaks the lifespan protocol (and serves nothing)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                await asyncio.sleep(3600)  # the server ends the task


def test_the_lifespan_starts_and_stops_the_source() -> None:
    source = FakeLive(APIKey(CANARY))
    auth = APIKeyAuth(source=source)
    sent = run_lifespan(APIKeyMiddleware(LifespanApp(), auth=auth))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert (source.starts, source.stops) == (1, 1)
    assert auth.verify(CANARY) is None  # stopped: unavailable
    assert auth.status()["unavailable"] == "The API key store was stopped with the app"


def test_a_source_that_cannot_start_fails_the_startup() -> None:
    source = FakeLive(fail=True)
    auth = APIKeyAuth(source=source)
    sent = run_lifespan(APIKeyMiddleware(LifespanApp(), auth=auth))
    assert sent == [
        {"type": "lifespan.startup.failed", "message": "the fake store is down: start it"}
    ]
    assert source.starts == 1
    asyncio.run(auth.stop())  # never started: nothing to stop
    assert source.stops == 0


def test_a_local_source_leaves_the_lifespan_alone() -> None:
    auth = APIKeyAuth(keys=[CANARY])
    sent = run_lifespan(APIKeyMiddleware(LifespanApp(), auth=auth))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    asyncio.run(auth.start())  # nothing to start
    assert auth.verify(CANARY) is not None


def test_the_base_live_source_must_be_subclassed() -> None:
    class Half(LiveKeySource):
        pass

    with pytest.raises(NotImplementedError):
        asyncio.run(Half().start(APIKeyAuth(keys=[CANARY])._sink))
    with pytest.raises(NotImplementedError):
        asyncio.run(Half().stop())
