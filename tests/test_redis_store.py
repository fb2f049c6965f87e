"""The Redis key store against a real redis-server on 127.0.0.1 (tests/redis_server.py).

Instances are whole apps (Starlette + APIKeyMiddleware + RedisKeySource) run by
TestClient, each with its own event loop and Redis connections, as two worker
processes would have them; the admin side writes through RedisKeyStore or the
command line, as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import string
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, MutableMapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
import structlog
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from redis import Redis as SyncRedis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Message
from starlette.websockets import WebSocket
from structlog.testing import capture_logs

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware, ConfigurationError, KeySourceError
from asgi_apikey.redis_store import (
    UNAVAILABLE,
    RedisKeySource,
    RedisKeyStore,
    StoredKey,
    _why,
    add_key,
    list_keys,
    redacted,
    revoke_key,
)
from tests.asgi import CANARY, OTHER_KEY, bearer, call, http_scope
from tests.cli import run_cli
from tests.redis_server import RedisServer, running_redis

#: How long a change may take to reach another instance in these tests. The
#: benchmark measures the real figure (about a millisecond); this bound only
#: has to hold on a loaded CI machine, and the heartbeat is set far above it,
#: so only the published message can deliver a change in time.
PROPAGATION_BOUND = 2.0
SLOW_HEARTBEAT = 60.0


def slow_source(url: str) -> RedisKeySource:
    """A source whose heartbeat never comes during a test: only messages reach it."""
    return RedisKeySource(url, heartbeat=SLOW_HEARTBEAT, max_staleness=2 * SLOW_HEARTBEAT)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def raw(server: RedisServer) -> SyncRedis:
    return SyncRedis(host="127.0.0.1", port=server.port, password=server.password)


async def endpoint(request: Request) -> JSONResponse:
    auth = request.scope["auth"]
    return JSONResponse({"key_id": auth.key_id, "metadata": dict(auth.metadata)})


async def socket_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def instance(source: RedisKeySource, **options: Any) -> tuple[Starlette, APIKeyAuth]:
    """One app instance following the store."""
    auth = APIKeyAuth(source=source, **options)
    app = Starlette(
        routes=[
            Route("/v1/models", endpoint),
            Route("/health", endpoint),
            WebSocketRoute("/ws", socket_endpoint),
        ]
    )
    app.add_middleware(APIKeyMiddleware, auth=auth, public=["/health"])
    return app, auth


def status_with(client: TestClient, key: str | None, path: str = "/v1/models") -> int:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return client.get(path, headers=headers).status_code


def ws_close_code(auth: APIKeyAuth) -> int:
    """The close code a websocket handshake with CANARY gets from a server without denials."""
    sent: list[Message] = []

    async def handshake() -> None:
        async def receive() -> Message:
            return {"type": "websocket.connect"}

        async def send(message: Message) -> None:
            sent.append(message)

        await APIKeyMiddleware(Recorder(), auth=auth)(ws_scope, receive, send)

    ws_scope = http_scope("/ws", headers=[bearer(CANARY)], kind="websocket")
    asyncio.run(handshake())
    assert [m["type"] for m in sent] == ["websocket.close"]
    code: int = sent[0]["code"]
    return code


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``condition()`` held; fails the test past ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.002)
    return time.monotonic() - start


# ======================================================== many instances, one store


def test_two_instances_share_a_store_and_a_revocation_reaches_the_other(
    redis: RedisServer,
) -> None:
    store_key = APIKey(CANARY, name="billing", scopes={"read"})
    add_key(redis.url, store_key)
    app_a, auth_a = instance(slow_source(redis.url))
    app_b, auth_b = instance(slow_source(redis.url))
    with TestClient(app_a) as a, TestClient(app_b) as b:
        # Both loaded the store when their lifespan started.
        assert status_with(a, CANARY) == status_with(b, CANARY) == 200
        assert a.get("/v1/models", headers={"Authorization": f"Bearer {CANARY}"}).json() == {
            "key_id": "billing",
            "metadata": {},
        }
        assert status_with(b, OTHER_KEY) == 401

        # A key added through one store connection reaches both instances.
        add_key(redis.url, APIKey(OTHER_KEY, name="new"))
        wait_until(lambda: status_with(b, OTHER_KEY) == 200, PROPAGATION_BOUND, "add seen by B")
        assert status_with(a, OTHER_KEY) == 200

        # Instance A revokes (its app holds a RedisKeyStore); B refuses within the bound.
        async def revoke_from_a() -> bool:
            async with RedisKeyStore(redis.url) as store:
                return await store.revoke("billing")

        assert a.portal is not None
        assert a.portal.call(revoke_from_a) is True
        took = wait_until(
            lambda: status_with(b, CANARY) == 401, PROPAGATION_BOUND, "revocation seen by B"
        )
        assert took < PROPAGATION_BOUND
        assert status_with(a, CANARY) == 401
        response = b.get("/v1/models", headers={"Authorization": f"Bearer {CANARY}"})
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        for auth in (auth_a, auth_b):
            assert auth.key_ids == ("new",)
            source = auth.status()["source"]
            assert source["state"] == "live"
            assert source["version"] == 3
            assert source["full_loads"] == 1  # every change came as a message
            assert source["repairs"] == 0
    # The lifespan stopped both sources: their keys are unavailable afterwards.
    assert auth_a.status()["unavailable"] == "The API key store was stopped with the app"
    assert auth_b.snapshot.by_digest == {}


def test_a_change_is_applied_as_a_whole_new_snapshot(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="one"))
    app, auth = instance(slow_source(redis.url))
    with TestClient(app):
        before = auth.snapshot
        add_key(redis.url, APIKey(OTHER_KEY, name="two"))
        wait_until(lambda: auth.snapshot is not before, PROPAGATION_BOUND, "a new snapshot")
        after = auth.snapshot
        # The old snapshot is untouched: a request that read it keeps a consistent view.
        assert sorted(before.by_id) == ["one"]
        assert sorted(after.by_id) == ["one", "two"]
        assert after.by_digest[before.by_id["one"]] is before.by_digest[before.by_id["one"]]


def test_keys_in_code_stay_beside_the_store_and_win_a_clash(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(OTHER_KEY, name="stored"))
    add_key(redis.url, APIKey("sk-clash-0123456789abcdef", name="local"))
    source = slow_source(redis.url)
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="local")], source=source)
    app = Starlette(routes=[Route("/v1/models", endpoint)])
    app.add_middleware(APIKeyMiddleware, auth=auth)
    with capture_logs() as logs, TestClient(app) as client:
        assert status_with(client, CANARY) == 200  # the key given in code
        assert status_with(client, OTHER_KEY) == 200  # the store's
        assert status_with(client, "sk-clash-0123456789abcdef") == 401  # its id is taken
        assert sorted(auth.key_ids) == ["local", "stored"]
    assert [e["key_id"] for e in logs if e["event"] == "key_source_conflict"] == ["local"]
    # With the source stopped, the key given in code still works.
    assert auth.verify(CANARY) is not None
    assert auth.verify(OTHER_KEY) is None


def test_metadata_and_validity_travel_with_the_key(redis: RedisServer) -> None:
    now = datetime.now(UTC)
    add_key(redis.url, APIKey(CANARY, name="pro", metadata={"tier": "pro", "rpm": [60]}))
    add_key(redis.url, APIKey(OTHER_KEY, name="late", expires_at=now - timedelta(seconds=1)))
    app, _ = instance(RedisKeySource(redis.url), mode="advanced")
    with TestClient(app) as client:
        response = client.get("/v1/models", headers={"Authorization": f"Bearer {CANARY}"})
        assert response.json() == {"key_id": "pro", "metadata": {"tier": "pro", "rpm": [60]}}
        expired = client.get("/v1/models", headers={"Authorization": f"Bearer {OTHER_KEY}"})
        assert expired.status_code == 401
        assert "expired" in expired.json()["detail"]


# ======================================================== failure behaviour


def test_redis_unreachable_at_startup_fails_clearly(redis: RedisServer) -> None:
    url = redis.url
    redis.stop()
    app, _ = instance(RedisKeySource(url, timeout=0.5))
    sent: list[Message] = []

    async def lifespan() -> None:
        messages: asyncio.Queue[Message] = asyncio.Queue()
        messages.put_nowait({"type": "lifespan.startup"})

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        await app(scope, messages.get, send)

    with pytest.raises(KeySourceError) as failed:
        asyncio.run(lifespan())
    # The server is told the startup failed, and nothing else: the app is never
    # told it started, and ran its own shutdown.
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    message = sent[0]["message"]
    assert message == str(failed.value)
    assert f"the Redis key store at {url} cannot be read" in message
    assert "start Redis there" in message


def test_a_failed_startup_runs_the_apps_own_shutdown(redis: RedisServer) -> None:
    url = redis.url
    redis.stop()
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")  # a database pool closed, say

    app = Starlette(lifespan=lifespan)
    app.add_middleware(APIKeyMiddleware, auth=APIKeyAuth(source=RedisKeySource(url, timeout=0.5)))
    with pytest.raises(KeySourceError, match="cannot be read"), TestClient(app):
        pass
    assert events == ["startup", "shutdown"]


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_a_server_refuses_to_start_without_the_store_and_the_app_shuts_down(
    redis: RedisServer, tmp_path: Path, server: str
) -> None:
    url = redis.url
    redis.stop()
    (tmp_path / "down_app.py").write_text(
        "import contextlib, pathlib\n"
        "from starlette.applications import Starlette\n"
        "from asgi_apikey import APIKeyAuth, APIKeyMiddleware\n"
        "from asgi_apikey.redis_store import RedisKeySource\n"
        "events = pathlib.Path('events.txt')\n"
        "@contextlib.asynccontextmanager\n"
        "async def lifespan(app):\n"
        "    events.write_text('startup\\n')\n"
        "    yield\n"
        "    events.write_text(events.read_text() + 'shutdown\\n')\n"
        "app = Starlette(lifespan=lifespan)\n"
        f"auth = APIKeyAuth(source=RedisKeySource({url!r}, timeout=0.5))\n"
        "app.add_middleware(APIKeyMiddleware, auth=auth)\n"
    )
    if server == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "down_app:app", "--host", "127.0.0.1"]
        command += ["--port", "0", "--lifespan", "on"]
    else:
        command = [sys.executable, "-m", "hypercorn", "down_app:app", "--bind", "127.0.0.1:0"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    if server == "uvicorn":  # hypercorn's parent exits 0 when its worker fails to start
        assert done.returncode != 0
    assert "the Redis key store at" in done.stderr
    assert (tmp_path / "events.txt").read_text() == "startup\nshutdown\n"


def test_a_lost_store_keeps_the_last_keys_for_a_while_then_fails_closed_and_recovers(
    redis: RedisServer,
) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(
        redis.url, max_staleness=0.6, heartbeat=0.05, timeout=0.3, max_reconnect_delay=0.1
    )
    app, auth = instance(source)
    with capture_logs() as logs, TestClient(app) as client:
        assert status_with(client, CANARY) == 200
        redis.kill()
        lost = time.monotonic()
        wait_until(lambda: source.state == "reconnecting", 5, "the loss noticed")
        # Within max_staleness the last good keys still work.
        if time.monotonic() - lost < 0.4:
            assert status_with(client, CANARY) == 200
        wait_until(lambda: status_with(client, CANARY) == 503, 5, "fail closed")
        assert time.monotonic() - lost >= 0.6 - 0.1  # not before max_staleness (less the heartbeat)
        response = client.get("/v1/models", headers={"Authorization": f"Bearer {CANARY}"})
        assert response.status_code == 503
        assert response.json() == {"detail": UNAVAILABLE}
        assert response.headers["retry-after"] == "5"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "www-authenticate" not in response.headers
        assert status_with(client, OTHER_KEY) == 503  # it might be a valid key of the store
        assert status_with(client, None) == 401  # no key: that is the client's problem
        assert status_with(client, None, "/health") == 200  # public paths still serve
        assert status_with(client, CANARY, "/health") == 200  # ... anonymous
        with (
            pytest.raises(WebSocketDenialResponse) as refused,
            client.websocket_connect("/ws", headers={"Authorization": f"Bearer {CANARY}"}),
        ):
            pass
        assert refused.value.status_code == 503  # the denial-response extension
        assert ws_close_code(auth) == 1013  # without it: close, try again later
        status = auth.status()
        assert status["unavailable"] == UNAVAILABLE
        assert status["source"]["state"] == "unavailable"
        assert status["counters"]["refused"]["unavailable"] >= 3

        redis.start()  # the same port, the same data (append-only file)
        wait_until(lambda: status_with(client, CANARY) == 200, 10, "recovery")
        assert source.state == "live"
        assert auth.status()["unavailable"] is None
        # Changes flow again after the recovery.
        revoke_key(redis.url, "billing")
        wait_until(lambda: status_with(client, CANARY) == 401, PROPAGATION_BOUND, "revoked")
    events = [e["event"] for e in logs if e["event"].startswith("key_store_")]
    assert events[:4] == [
        "key_store_started",
        "key_store_lost",
        "key_store_unavailable",
        "key_store_recovered",
    ]


def test_a_short_outage_is_invisible_to_clients(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(redis.url, max_staleness=30, heartbeat=0.05, timeout=0.3)
    app, _ = instance(source)
    with TestClient(app) as client:
        redis.kill()
        wait_until(lambda: source.state == "reconnecting", 5, "the loss noticed")
        assert status_with(client, CANARY) == 200
        assert status_with(client, OTHER_KEY) == 401  # still an unknown key, not a 503
        redis.start()
        wait_until(lambda: source.state == "live", 10, "reconnected")
        assert status_with(client, CANARY) == 200
        assert source.losses == 1


def test_without_a_lifespan_the_store_keys_are_unavailable_not_open(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    auth = APIKeyAuth(keys=[OTHER_KEY], source=RedisKeySource(redis.url))
    app = APIKeyMiddleware(Recorder(), auth=auth)
    with capture_logs() as logs:
        for _ in range(3):
            result = call(app, http_scope("/v1/models", headers=[bearer(CANARY)]))
            assert result.status == 503
    assert result.json() == {"detail": "The API key store has not been read yet; try again later"}
    told = [e for e in logs if e["event"] == "key_store_not_started"]
    assert len(told) == 1  # once, not per request
    assert "--lifespan on" in told[0]["detail"]
    assert call(app, http_scope("/v1/models", headers=[bearer(OTHER_KEY)])).status == 200
    assert call(app, http_scope("/v1/models")).status == 401
    assert auth.status()["source"]["state"] == "not_started"


class Recorder:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def test_start_and_stop_by_hand_where_no_lifespan_runs(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    auth = APIKeyAuth(source=RedisKeySource(redis.url))

    async def scenario() -> None:
        assert auth.verify(CANARY) is None
        await auth.start()
        await auth.start()  # a second start does nothing
        assert isinstance(auth.source, RedisKeySource)
        await auth.source.start(auth._sink)  # nor does the source's own, started twice
        assert auth.verify(CANARY) is not None
        await auth.stop()
        await auth.stop()
        assert auth.verify(CANARY) is None

    asyncio.run(scenario())
    assert auth.status()["source"]["state"] == "stopped"


# ======================================================== repairs


def test_missed_messages_are_repaired_by_the_version_check(redis: RedisServer) -> None:
    source = RedisKeySource(redis.url, heartbeat=0.05)
    app, auth = instance(source)
    with TestClient(app) as client:
        # A change written without its message, as one lost in a network blip.
        digest = hashlib.sha256(CANARY.encode()).hexdigest()
        record = {"key_id": "quiet", "name": "quiet", "scopes": [], "metadata": {}}
        connection = raw(redis)
        connection.hset("{asgi_apikey}:keys", digest, json.dumps(record))
        connection.hset("{asgi_apikey}:ids", "quiet", digest)
        connection.incr("{asgi_apikey}:version")
        wait_until(lambda: status_with(client, CANARY) == 200, 5, "repaired")
        assert source.repairs >= 1
        assert auth.key_ids == ("quiet",)


def epoch_of(server: RedisServer) -> str:
    epoch = raw(server).get("{asgi_apikey}:epoch")
    assert isinstance(epoch, bytes)
    return epoch.decode()


def publish(server: RedisServer, **change: Any) -> None:
    raw(server).publish("{asgi_apikey}:changes", json.dumps(change))


def test_a_gap_in_the_versions_triggers_a_full_reload(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(OTHER_KEY, name="first"))  # version 1, and the epoch
    source = slow_source(redis.url)
    app, _ = instance(source)
    with TestClient(app) as client:
        digest = hashlib.sha256(CANARY.encode()).hexdigest()
        connection = raw(redis)
        connection.hset("{asgi_apikey}:keys", digest, json.dumps({"name": "gap"}))
        connection.set("{asgi_apikey}:version", 5)
        # The message of version 5 arrives, but 2 to 4 never did.
        publish(redis, v=5, e=epoch_of(redis), op="revoke", digest="0" * 64)
        wait_until(lambda: status_with(client, CANARY) == 200, PROPAGATION_BOUND, "reloaded")
        assert (source.repairs, source.version) == (1, 5)


def test_a_reset_store_is_followed(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(redis.url, heartbeat=0.05)
    app, _ = instance(source)
    with TestClient(app) as client:
        assert status_with(client, CANARY) == 200
        raw(redis).flushall()
        wait_until(lambda: status_with(client, CANARY) == 401, 5, "the reset followed")
        assert source.version == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"not-a-digest", b"{}"),
        (hashlib.sha256(b"x").hexdigest().encode(), b"not json"),
        (hashlib.sha256(b"y").hexdigest().encode(), b"[1, 2]"),
        (hashlib.sha256(b"z").hexdigest().encode(), b'{"scopes": "read"}'),
        (hashlib.sha256(b"w").hexdigest().encode(), b'{"expires_at": "tomorrow"}'),
        (hashlib.sha256(b"v").hexdigest().encode(), b'{"name": " padded "}'),
        (hashlib.sha256(b"u").hexdigest().encode(), b'{"not_before": 5}'),
        (hashlib.sha256(b"t").hexdigest().encode(), b'{"expires_at": "2030-01-01T00:00:00"}'),
    ],
    ids=["field", "json", "array", "scopes", "instant", "name", "instant-int", "naive"],
)
def test_a_bad_record_is_skipped_and_logged_and_the_rest_load(
    redis: RedisServer, field: bytes, value: bytes
) -> None:
    add_key(redis.url, APIKey(CANARY, name="good"))
    raw(redis).hset("{asgi_apikey}:keys", field, value)
    auth = APIKeyAuth(source=RedisKeySource(redis.url))

    async def scenario() -> None:
        await auth.start()
        await auth.stop()

    with capture_logs() as logs:
        asyncio.run(scenario())
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["key_record_invalid"]
    assert auth.status()["source"]["key_count"] == 1


def test_a_bad_message_triggers_a_full_reload(redis: RedisServer) -> None:
    source = slow_source(redis.url)
    app, _ = instance(source)
    with capture_logs() as logs, TestClient(app):
        raw(redis).publish("{asgi_apikey}:changes", b"\xff not json")
        wait_until(lambda: source.full_loads == 2, PROPAGATION_BOUND, "reloaded")
    assert "key_store_message_invalid" in [e["event"] for e in logs]


# ======================================================== the admin side


def test_the_store_refuses_the_same_key_or_id_twice(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    with pytest.raises(ConfigurationError, match="already holds this key, as key_id 'billing'"):
        add_key(redis.url, APIKey(digest=APIKey(CANARY).digest, name="other"))
    with pytest.raises(ConfigurationError, match="another key with key_id 'billing'"):
        add_key(redis.url, APIKey(OTHER_KEY, name="billing"))
    assert [key.key_id for key in list_keys(redis.url)] == ["billing"]
    assert raw(redis).get("{asgi_apikey}:version") == b"1"


def test_revoke_by_id_digest_or_key_and_report_what_matched(redis: RedisServer) -> None:
    first, second, third = (
        APIKey(CANARY, name="a"),
        APIKey(OTHER_KEY),
        APIKey("sk-third-0123456789abcdef"),
    )
    for key in (first, second, third):
        add_key(redis.url, key)
    assert revoke_key(redis.url, "a") is True
    assert revoke_key(redis.url, "a") is False
    assert revoke_key(redis.url, second.digest) is True
    assert revoke_key(redis.url, third) is True
    assert revoke_key(redis.url, "nobody") is False
    assert list_keys(redis.url) == []
    connection = raw(redis)
    assert connection.hlen("{asgi_apikey}:ids") == 0
    assert connection.get("{asgi_apikey}:version") == b"6"
    with pytest.raises(ConfigurationError, match="revoke takes"):
        revoke_key(redis.url, "")


def test_list_shows_ids_scopes_and_validity_never_a_secret(redis: RedisServer) -> None:
    later = datetime(2031, 1, 1, tzinfo=UTC)
    add_key(redis.url, APIKey(CANARY, name="billing", scopes={"write", "read"}, expires_at=later))
    add_key(redis.url, APIKey(OTHER_KEY))
    stored = list_keys(redis.url)
    assert [key.key_id for key in stored] == sorted(["billing", APIKey(OTHER_KEY).key_id])
    billing = stored[0] if stored[0].key_id == "billing" else stored[1]
    assert billing.scopes == ("read", "write")
    assert billing.expires_at == later
    assert billing.state() == "active"
    assert billing.state(later) == "expired"
    assert isinstance(billing.created_at, datetime)
    text = repr(stored) + json.dumps([key.as_dict() for key in stored])
    for secret in (CANARY, OTHER_KEY):
        assert secret not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text


def test_no_plain_key_ever_reaches_redis(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing", metadata={"team": "x"}))
    add_key(redis.url, OTHER_KEY)
    connection = raw(redis)
    everything = b""
    for name in connection.keys("*"):
        dumped = connection.dump(name)
        assert isinstance(name, bytes)
        assert isinstance(dumped, bytes)
        everything += name + dumped
    assert b"{asgi_apikey}:keys" in everything
    assert CANARY.encode() not in everything
    assert OTHER_KEY.encode() not in everything


def test_metadata_that_is_not_json_is_refused(redis: RedisServer) -> None:
    key = APIKey(CANARY, metadata={"when": datetime(2030, 1, 1, tzinfo=UTC)})
    with pytest.raises(ConfigurationError, match="must be JSON"):
        add_key(redis.url, key)


def test_the_sync_helpers_refuse_a_running_loop(redis: RedisServer) -> None:
    async def inside() -> None:
        with pytest.raises(RuntimeError, match="use RedisKeyStore's async methods"):
            list_keys(redis.url)

    asyncio.run(inside())


def test_prefixes_keep_key_sets_apart(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="a"), prefix="tenant-a")
    add_key(redis.url, APIKey(CANARY, name="b"), prefix="tenant-b")
    assert [k.key_id for k in list_keys(redis.url, prefix="tenant-a")] == ["a"]
    auth = APIKeyAuth(source=RedisKeySource(redis.url, prefix="tenant-b"))

    async def scenario() -> None:
        await auth.start()
        context = auth.verify(CANARY)
        assert context is not None
        assert context.key_id == "b"
        await auth.stop()

    asyncio.run(scenario())


# ======================================================== the command line


def test_cli_add_list_revoke(redis: RedisServer) -> None:
    code, out, err = run_cli(
        "keys", "add", "--redis", redis.url, "--name", "ci", "--scopes", "read, write",
        "--expires-at", "2031-01-01T00:00:00Z",
    )  # fmt: skip
    assert code == 0, err
    made = out.splitlines()[0].removeprefix("key:    ")
    assert made.startswith("sk-")
    assert out.splitlines()[1] == "key_id: ci"
    assert "shown this once" in err
    stored = list_keys(redis.url)
    assert [(k.key_id, k.scopes) for k in stored] == [("ci", ("read", "write"))]

    code, out, err = run_cli("keys", "add", "--redis", redis.url, "--stdin", stdin=CANARY + "\n")
    assert (code, out) == (0, f"key_id: {APIKey(CANARY).key_id}\n")
    code, out, _ = run_cli(
        "keys", "add", "--redis", redis.url, "--digest", APIKey(OTHER_KEY).digest,
        "--name", "by-digest", "--metadata", '{"team": "x"}', "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["key_id"] == "by-digest"
    assert json.loads(out)["key"] is None

    code, out, _ = run_cli("keys", "list", "--redis", redis.url)
    assert code == 0
    assert out.splitlines()[0].split() == ["key_id", "state", "expires_at", "limit", "scopes"]
    assert "ci" in out
    assert "2031-01-01T00:00:00Z" in out
    code, out, _ = run_cli("keys", "list", "--redis", redis.url, "--json")
    assert sorted(k["key_id"] for k in json.loads(out)) == sorted(
        ["ci", "by-digest", APIKey(CANARY).key_id]
    )
    for text in (out, repr(list_keys(redis.url))):
        assert made not in text
        assert CANARY not in text

    assert run_cli("keys", "revoke", "--redis", redis.url, "ci") == (0, "revoked ci\n", "")
    code, _, err = run_cli("keys", "revoke", "--redis", redis.url, "ci")
    assert code == 1
    assert "holds no key with that key_id or digest" in err  # never echoed: it may be a key


def test_cli_reads_the_url_from_the_environment(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("keys", "list")[0] == 2
    monkeypatch.setenv("REDIS_URL", redis.url)
    assert run_cli("keys", "list") == (0, "the store holds no key\n", "")


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["--metadata", "[1"], "", "--metadata must be a JSON object"),
        (["--metadata", "[1]"], "", "metadata of key"),
        (["--expires-at", "soon"], "", "--expires-at must be a date-time with an offset"),
        (["--not-before", "2030-01-01T00:00:00"], "", "--not-before must be"),
        (["--stdin"], "", "no key on standard input"),
        (["--stdin"], "sk bad key", "characters a Bearer token cannot carry"),
        (["--digest", "sha256:abc"], "", "a key digest must be"),
        (["--name", " x"], "", "a key name must be printable"),
    ],
    ids=["json", "not-object", "instant", "no-offset", "empty-stdin", "bad-key", "digest", "name"],
)
def test_cli_add_explains_bad_input(
    redis: RedisServer, argv: list[str], stdin: str, message: str
) -> None:
    code, out, err = run_cli("keys", "add", "--redis", redis.url, *argv, stdin=stdin)
    assert (code, out) == (1, "")
    assert message in err
    assert "sk bad key" not in err
    assert list_keys(redis.url) == []


def test_cli_says_when_the_store_is_unreachable(redis: RedisServer) -> None:
    url = redis.url
    redis.stop()
    code, out, err = run_cli("keys", "list", "--redis", url)
    assert (code, out) == (1, "")
    assert f"the Redis key store at {url} cannot be used" in err


# ======================================================== secrets and configuration


def test_a_password_never_reaches_a_repr_status_log_or_error(tmp_path: Path) -> None:
    password = "redis-pass-7c1f0e9a"
    with running_redis(tmp_path, password=password) as server:
        add_key(server.url, APIKey(CANARY, name="billing"))
        source = RedisKeySource(server.url)
        auth = APIKeyAuth(source=source)
        wrong = RedisKeySource(server.url.replace(password, "wrong-pass-000"))
        texts = [repr(source), repr(RedisKeyStore(server.url))]

        async def scenario() -> None:
            await auth.start()
            texts.append(json.dumps(auth.status()))
            await auth.stop()
            with pytest.raises(KeySourceError) as failed:
                await APIKeyAuth(source=wrong).start()
            assert failed.value.__context__ is None
            texts.extend([str(failed.value), repr(failed.value.context)])

        with capture_logs() as logs:
            asyncio.run(scenario())
        texts.append(repr(logs))
    assert "AuthenticationError" in texts[-3]
    for text in texts:
        assert password not in text
        assert "wrong-pass-000" not in text
        assert CANARY not in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@host:6379/1", "redis://:***@host:6379/1"),
        ("redis://user:pw@host", "redis://user:***@host"),
        ("redis://token@host", "redis://***@host"),
        ("rediss://host:6380/0?password=pw&x=1", "rediss://host:6380/0?***"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
        ("redis://cache:6379/0?pass%77ord=pw", "redis://cache:6379/0?***"),
        ("redis://cache/0?PASSWORD=pw&db=1", "redis://cache/0?***"),
        ("rediss://cache/0?ssl_password=pw", "rediss://cache/0?***"),
        ("redis://cache/0?db=2&socket_timeout=1.5", "redis://cache/0?db=2&socket_timeout=1.5"),
        ("redis://cache/0?x=@&password=pw", "redis://***@***"),
        ("redis://u:pw@cache/0#pw", "redis://u:***@***"),
    ],
)
def test_redacted(url: str, shown: str) -> None:
    assert redacted(url) == shown


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "http://127.0.0.1"}, "must start with redis://"),
        ({"url": 6379}, "must start with redis://"),
        ({"prefix": "has space"}, "prefix must be"),
        ({"prefix": "{tag}"}, "prefix must be"),
        ({"max_staleness": 0}, "max_staleness must be a number of seconds above 0"),
        ({"heartbeat": -1}, "heartbeat must be"),
        ({"resync_interval": True}, "resync_interval must be"),
        ({"timeout": "2"}, "timeout must be"),
        ({"heartbeat": 29}, r"heartbeat \(29 s\) \+ timeout \(2 s\) must be below max_staleness"),
        ({"max_staleness": 2.5, "timeout": 2}, "must be below max_staleness"),
    ],
)
def test_bad_source_configuration_fails_at_construction(
    options: dict[str, Any], message: str
) -> None:
    arguments = {"url": "redis://127.0.0.1:6379/0", **options}
    with pytest.raises(ConfigurationError, match=message):
        RedisKeySource(**arguments)


def test_a_live_source_is_never_development_mode_nor_reloaded() -> None:
    auth = APIKeyAuth(source=RedisKeySource("redis://127.0.0.1:1/0"), environment="production")
    assert auth.is_development_mode is False
    assert auth.mode == "simple"
    with pytest.raises(ConfigurationError, match="keeps itself current"):
        auth.reload()
    with pytest.raises(ConfigurationError, match="started with the app's lifespan"):
        RedisKeySource("redis://127.0.0.1:1/0").read(auth._config)


def test_stored_key_state_defaults_to_now() -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    stored = StoredKey("k", None, (), {}, None, past, None)
    assert stored.state() == "expired"
    assert StoredKey("k", None, (), {}, past + timedelta(days=2), None, None).state() == (
        "not_yet_valid"
    )


def test_a_load_that_ends_after_stop_does_not_reopen_the_keys(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    auth = APIKeyAuth(source=RedisKeySource(redis.url))

    async def scenario() -> None:
        await auth.start()
        await auth.stop()
        # What a full load running in a thread would deliver after the stop:
        auth._sink.replace([APIKey(CANARY, name="billing")])
        auth._sink.change([APIKey(OTHER_KEY)], [])

    asyncio.run(scenario())
    assert auth.verify(CANARY) is None
    assert auth.verify(OTHER_KEY) is None
    assert auth.status()["unavailable"] == "The API key store was stopped with the app"


def test_many_keys_load_and_change_without_stalling(redis: RedisServer) -> None:
    store = RedisKeyStore(redis.url)
    count = 5_000

    async def fill() -> None:
        connection = store._connection()
        pipe = connection.pipeline(transaction=False)
        for number in range(count):
            key = APIKey(f"sk-many-{number:08d}-0123456789")
            record: dict[str, Any] = {"key_id": key.key_id, "scopes": [], "metadata": {}}
            digest = key.digest.removeprefix("sha256:")
            pipe.hset("{asgi_apikey}:keys", digest, json.dumps(record))
            pipe.hset("{asgi_apikey}:ids", key.key_id, digest)
        await pipe.execute()
        await store.aclose()

    asyncio.run(fill())
    app, auth = instance(slow_source(redis.url))
    with ExitStack() as stack:
        client = stack.enter_context(TestClient(app))
        assert len(auth.key_ids) == count
        assert status_with(client, "sk-many-00004999-0123456789") == 200
        revoke_key(redis.url, APIKey("sk-many-00004999-0123456789").key_id)
        wait_until(
            lambda: status_with(client, "sk-many-00004999-0123456789") == 401,
            PROPAGATION_BOUND,
            "revoked among many",
        )
        assert len(auth.key_ids) == count - 1


def test_an_old_or_repeated_message_changes_nothing(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = slow_source(redis.url)
    app, _ = instance(source)
    with TestClient(app) as client:
        digest = hashlib.sha256(CANARY.encode()).hexdigest()
        # Version 1 is the add the full load had: a revoke replayed under its number
        # is checked against the store, which still holds the key.
        publish(redis, v=1, e=epoch_of(redis), op="revoke", digest=digest)
        wait_until(lambda: source.messages == 1, PROPAGATION_BOUND, "the message read")
        assert status_with(client, CANARY) == 200
        assert (source.full_loads, source.version) == (1, 1)


def test_a_forged_message_adds_no_key(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(OTHER_KEY, name="real"))
    source = slow_source(redis.url)
    app, auth = instance(source)
    with capture_logs(), TestClient(app) as client:
        digest = hashlib.sha256(CANARY.encode()).hexdigest()
        # Someone who may publish on the channel but not write the store.
        publish(redis, v=2, e=epoch_of(redis), op="add", digest=digest)
        wait_until(lambda: source.messages == 1, PROPAGATION_BOUND, "the message read")
        wait_until(lambda: source.full_loads == 2, PROPAGATION_BOUND, "the store consulted")
        assert status_with(client, CANARY) == 401
        assert auth.key_ids == ("real",)
        # A forged message under the current version is checked against the store too.
        publish(redis, v=1, e=epoch_of(redis), op="add", digest=digest)
        wait_until(lambda: source.messages == 2, PROPAGATION_BOUND, "the message read")
        assert status_with(client, CANARY) == 401
        # The real next change is still applied by its message.
        add_key(redis.url, APIKey(CANARY, name="later"))
        wait_until(lambda: status_with(client, CANARY) == 200, PROPAGATION_BOUND, "real add")


def test_a_store_reset_and_refilled_to_the_same_version_is_reloaded(redis: RedisServer) -> None:
    old = [f"sk-old-{n}-0123456789abcdef" for n in range(3)]
    new = [f"sk-new-{n}-0123456789abcdef" for n in range(3)]
    for secret in old:
        add_key(redis.url, secret)
    source = RedisKeySource(redis.url, heartbeat=0.05)
    app, _ = instance(source)
    with TestClient(app) as client:
        assert source.version == 3
        raw(redis).flushall()
        for secret in new:  # versions 1 to 3 again, under a new epoch
            add_key(redis.url, secret)

        def follows() -> bool:
            return all(status_with(client, s) == 401 for s in old) and all(
                status_with(client, s) == 200 for s in new
            )

        wait_until(follows, 5, "the reset store followed")
        assert source.version == 3
        assert source.epoch == epoch_of(redis).encode()


def test_every_key_is_reloaded_each_resync_interval(redis: RedisServer) -> None:
    source = RedisKeySource(redis.url, heartbeat=0.02, resync_interval=0.1)
    app, _ = instance(source)
    with TestClient(app):
        wait_until(lambda: source.full_loads >= 3, 5, "periodic full reloads")
        assert source.repairs == 0  # nothing was missing: these were scheduled


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b'{"v": "1", "e": "a", "op": "add", "digest": "%s"}',
        b'{"v": true, "e": "a", "op": "revoke", "digest": "%s"}',
        b'{"v": 0, "e": "a", "op": "revoke", "digest": "%s"}',
        b'{"v": 2, "op": "revoke", "digest": "%s"}',
        b'{"v": 2, "e": 7, "op": "revoke", "digest": "%s"}',
        b'{"v": 2, "e": "\\u00e9", "op": "revoke", "digest": "%s"}',
        b'{"v": 2, "e": "a", "op": "delete", "digest": "%s"}',
        b'{"v": 2, "e": "a", "op": "revoke", "digest": "XYZ"}',
        b'{"v": 2, "e": "a", "op": "revoke", "digest": 7}',
        b'{"v": 2, "e": "a", "op": "revoke", "digest": "\\u00e9%s"}',
        b"\xff",
        b"[" * 100_000,
    ],
    ids=["array", "v-text", "v-bool", "v-zero", "no-epoch", "epoch-int", "epoch-unicode",
         "op", "digest", "digest-int", "digest-unicode", "bytes", "deep"],
)  # fmt: skip
def test_a_message_that_is_not_a_change_is_not_applied(data: bytes) -> None:
    digest = hashlib.sha256(b"x").hexdigest().encode()
    message = data.replace(b"%s", digest) if b"%s" in data else data
    assert redis_store_change(message) is None


def redis_store_change(data: bytes) -> object:
    from asgi_apikey import redis_store

    return redis_store._change(data)


def test_a_well_formed_change_is_read() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    added = json.dumps({"v": 3, "e": "ab12", "op": "add", "digest": digest}).encode()
    assert redis_store_change(added) == (3, b"ab12", digest.encode())
    revoked = json.dumps({"v": 4, "e": "ab12", "op": "revoke", "digest": digest}).encode()
    assert redis_store_change(revoked) == (4, b"ab12", digest.encode())


def test_the_store_says_when_redis_is_unreachable(redis: RedisServer) -> None:
    url = redis.url
    redis.stop()
    for action in (
        lambda: add_key(url, APIKey(CANARY)),
        lambda: revoke_key(url, "billing"),
        lambda: list_keys(url),
    ):
        with pytest.raises(KeySourceError, match="cannot be used") as failed:
            action()
        assert failed.value.__context__ is None
        assert failed.value.__cause__ is None
        assert failed.value.context == {"source": "redis", "url": url}


def test_a_full_reload_keeps_the_entries_of_unchanged_records(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="same"))
    add_key(redis.url, APIKey(OTHER_KEY, name="edited"))
    source = slow_source(redis.url)
    auth = APIKeyAuth(source=source)

    async def scenario() -> None:
        await auth.start()
        before = auth.snapshot
        # Edit one record in place (its scopes), without a message, then reload.
        digest = hashlib.sha256(OTHER_KEY.encode()).hexdigest()
        record = {"key_id": "edited", "name": "edited", "scopes": ["admin"], "metadata": {}}
        raw(redis).hset("{asgi_apikey}:keys", digest, json.dumps(record))
        await source._full_load(repair=True)
        after = auth.snapshot
        same, edited = (before.by_id[name] for name in ("same", "edited"))
        assert after is not before
        assert after.by_digest[same] is before.by_digest[same]  # reused, not rebuilt
        assert after.by_digest[edited] is not before.by_digest[edited]
        assert "admin" in after.by_digest[edited].context.scopes
        await auth.stop()

    asyncio.run(scenario())


def test_check_describes_an_app_that_follows_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "store_app.py").write_text(
        "from starlette.applications import Starlette\n"
        "from asgi_apikey import APIKeyAuth, APIKeyMiddleware\n"
        "from asgi_apikey.redis_store import RedisKeySource\n"
        "app = Starlette()\n"
        "source = RedisKeySource('redis://:pw-9f8e7d@127.0.0.1:1/0')\n"
        "app.add_middleware(APIKeyMiddleware, auth=APIKeyAuth(source=source))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENVIRONMENT", "production")
    code, out, err = run_cli("check", "--app", "store_app:app", "--strict")
    assert (code, err) == (0, "")
    assert "source:      redis at redis://:***@127.0.0.1:1/0" in out
    assert "no warnings" in out
    assert "pw-9f8e7d" not in out


def test_the_redis_example(redis: RedisServer) -> None:
    from examples import redis_app

    add_key(redis.url, APIKey(CANARY, name="demo", scopes={"read"}))
    add_key(redis.url, APIKey(OTHER_KEY, name="no-read"))
    app = redis_app.create_app(redis.url, max_staleness=0.3, heartbeat=0.05, timeout=0.2)
    assert TestClient(app).get("/health").status_code == 503  # no lifespan: not started
    with TestClient(app) as client:
        assert client.get("/health").json() == {"store": "live", "keys": 2}
        models = client.get("/v1/models", headers={"Authorization": f"Bearer {CANARY}"})
        assert models.json() == {"models": ["small", "large"], "key_id": "demo"}
        assert status_with(client, OTHER_KEY) == 403
        revoke_key(redis.url, "demo")
        wait_until(lambda: status_with(client, CANARY) == 401, PROPAGATION_BOUND, "revoked")
        redis.kill()
        wait_until(lambda: client.get("/health").status_code == 503, 5, "health follows")
        assert client.get("/health").json()["store"] == "unavailable"


def test_a_stalled_event_loop_fails_closed_then_recovers_without_a_reconnect(
    redis: RedisServer,
) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(redis.url, max_staleness=0.4, heartbeat=0.05, timeout=0.2)
    app, _ = instance(source)
    with capture_logs() as logs, TestClient(app) as client:
        assert client.portal is not None
        client.portal.call(time.sleep, 0.6)  # the loop stalls past max_staleness
        # The watchdog fired: the keys were refused until Redis answered again, and
        # trust comes back by itself, with Redis connected all along.
        wait_until(lambda: any(e["event"] == "key_store_recovered" for e in logs), 5, "again")
        assert source.state == "live"
        assert status_with(client, CANARY) == 200
        assert source.losses == 0
        assert source.repairs >= 1
        # And the staleness bound still holds for a real loss afterwards.
        redis.kill()
        lost = time.monotonic()
        wait_until(lambda: status_with(client, CANARY) == 503, 5, "fail closed")
        assert time.monotonic() - lost < 0.4 + 0.05 + 0.2 + 1.5
    events = [e["event"] for e in logs if e["event"].startswith("key_store_")]
    assert events[:3] == ["key_store_started", "key_store_unavailable", "key_store_recovered"]
    assert "key_store_lost" in events[3:]


def test_a_stream_of_messages_does_not_hold_off_the_heartbeat(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(OTHER_KEY, name="first"))
    source = RedisKeySource(redis.url, heartbeat=0.1, max_staleness=5)
    app, _ = instance(source)
    with TestClient(app) as client:
        epoch = epoch_of(redis)
        first = hashlib.sha256(OTHER_KEY.encode()).hexdigest()
        done = threading.Event()

        def stream() -> None:  # old messages, without a pause, all along
            connection = raw(redis)
            while not done.is_set():
                connection.publish("{asgi_apikey}:changes", json.dumps(
                    {"v": 1, "e": epoch, "op": "add", "digest": first}
                ))  # fmt: skip

        publisher = threading.Thread(target=stream)
        publisher.start()
        try:
            wait_until(lambda: source.messages > 50, 5, "the stream flowing")
            # A change whose message was lost, while the stream goes on.
            digest = hashlib.sha256(CANARY.encode()).hexdigest()
            connection = raw(redis)
            connection.hset("{asgi_apikey}:keys", digest, json.dumps({"name": "quiet"}))
            connection.incr("{asgi_apikey}:version")
            wait_until(lambda: status_with(client, CANARY) == 200, 3, "the heartbeat repaired it")
        finally:
            done.set()
            publisher.join(timeout=10)
        assert source.repairs >= 1


def count_connects(source: RedisKeySource, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When ``source`` (re)connects, from now on: a list that fills as it happens."""
    attempts: list[float] = []
    connect = source._connect

    async def counted() -> None:
        attempts.append(time.monotonic())
        await connect()

    monkeypatch.setattr(source, "_connect", counted)
    return attempts


def test_reconnect_attempts_back_off(redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    source = RedisKeySource(
        redis.url, heartbeat=0.05, timeout=0.2, reconnect_delay=0.05, max_reconnect_delay=0.4
    )
    app, _ = instance(source)
    attempts = count_connects(source, monkeypatch)
    with TestClient(app):
        redis.kill()
        time.sleep(1.5)
    # 0.05, 0.1, 0.2, 0.4, 0.4, ...: about six attempts in 1.5 s, never thirty.
    assert 2 <= len(attempts) <= 8
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps == sorted(gaps) or max(gaps) >= 0.3


def test_a_failed_start_leaves_no_connection_open(redis: RedisServer) -> None:
    url = redis.url
    redis.stop()
    source = RedisKeySource(url, timeout=0.3)

    async def scenario() -> None:
        with pytest.raises(KeySourceError):
            await APIKeyAuth(source=source).start()

    asyncio.run(scenario())
    assert source._redis is None
    assert source.state == "not_started"


@pytest.mark.parametrize(
    "url",
    [
        "redis://:Zm9v/YmFy+cXV4@127.0.0.1:6379/0",
        "redis://:qX7?zKw@127.0.0.1:6379/0",
        "redis://:qX7#zKw@127.0.0.1:6379/0",
        "redis://127.0.0.1:pOrTx/0",
        "redis://:qX7\uff03zKw@127.0.0.1:6379/0",
        "redis://:qX7[zKw@127.0.0.1:6379/0",
    ],
    ids=["slash", "question", "hash", "port", "normalises-to-hash", "bracket"],
)
def test_a_url_redis_would_misread_is_refused_without_quoting_it(url: str) -> None:
    for build in (RedisKeySource, RedisKeyStore):
        with pytest.raises(ConfigurationError) as failed:
            build(url)
        message = str(failed.value)
        assert "percent-encoded (%2F %3F %23 %40 %3A %25)" in message
        for piece in ("Zm9v", "YmFy", "qX7", "zKw", "pOrTx", "127.0.0.1"):
            assert piece not in message
    assert "YmFy" not in redacted("redis://:Zm9v/YmFy+cXV4@127.0.0.1:6379/0")
    # An unencoded '@' in a password is read as meant (up to the last '@'), and masked.
    assert redacted("redis://user:qX7@zKw@127.0.0.1:6379/0") == "redis://user:***@127.0.0.1:6379/0"
    assert RedisKeySource("redis://user:qX7@zKw@127.0.0.1:6379/0") is not None


def test_an_error_that_quotes_the_password_is_masked() -> None:
    from asgi_apikey.redis_store import _why

    url = "redis://app:pw-3c2b1a@127.0.0.1:6379/0"
    assert _why(ValueError("wrong pw-3c2b1a given"), url) == "ValueError: wrong *** given"
    assert _why(ValueError("wrong"), "redis://127.0.0.1:6379/0") == "ValueError: wrong"


def test_instances_need_only_read_and_subscribe_rights(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    # The ACL SECURITY.md advises for instances: reads on the prefix, the channel.
    raw(redis).execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", "reader", "on", ">reader-pw-5e4d", "resetkeys", "~{asgi_apikey}:*",
        "resetchannels", "&{asgi_apikey}:changes", "-@all", "+get", "+mget", "+hscan",
        "+hmget", "+subscribe", "+multi", "+exec", "+ping", "+client|setname",
    )  # fmt: skip
    reader = f"redis://reader:reader-pw-5e4d@127.0.0.1:{redis.port}/0"
    app, _ = instance(RedisKeySource(reader, heartbeat=0.05))
    with TestClient(app) as client:
        assert status_with(client, CANARY) == 200
        revoke_key(redis.url, "billing")
        wait_until(lambda: status_with(client, CANARY) == 401, PROPAGATION_BOUND, "revoked")
    # And such a user cannot change the store.
    with pytest.raises(KeySourceError, match="NoPermissionError"):
        add_key(reader, APIKey(OTHER_KEY))


def test_keys_applied_after_an_expiry_are_withdrawn_by_the_next_one(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(redis.url, max_staleness=0.6, heartbeat=0.05, timeout=0.2)
    app, _ = instance(source)
    with TestClient(app) as client:
        assert client.portal is not None

        def expire_now() -> None:  # as a watchdog firing while connected would
            source._trusted_until = 0.0
            source._expired()

        client.portal.call(expire_now)
        add_key(redis.url, APIKey(OTHER_KEY, name="late"))  # its message comes while untrusted
        wait_until(lambda: status_with(client, OTHER_KEY) == 200, 5, "trusted again")
        redis.kill()
        lost = time.monotonic()
        wait_until(
            lambda: status_with(client, OTHER_KEY) == status_with(client, CANARY) == 503,
            5,
            "every store key refused",
        )
        assert time.monotonic() - lost < 0.6 + 0.05 + 0.2 + 1.5


def test_a_slow_load_never_leaves_a_trusted_source_refusing(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(redis.url, max_staleness=0.4, heartbeat=0.05, timeout=0.2)
    app, auth = instance(source)
    replace = source._replace
    slow = threading.Event()

    def slowly(records: list[dict[bytes, bytes]], generation: int, asked: float) -> bool:
        if slow.is_set():
            time.sleep(0.3)  # the watchdog fires while the thread decodes
        return replace(records, generation, asked)

    monkeypatch.setattr(source, "_replace", slowly)
    with TestClient(app) as client:
        slow.set()
        assert client.portal is not None
        client.portal.call(time.sleep, 0.45)  # the loop stalls: the keys expire
        wait_until(lambda: source.full_loads >= 2, 10, "a slow reload")
        slow.clear()
        wait_until(lambda: source.state == "live", 5, "live")
        time.sleep(0.3)
        assert source.repairs >= 1
        # The state and the snapshot agree: trusted means served.
        assert source.state == "live"
        assert auth.status()["unavailable"] is None
        assert status_with(client, CANARY) == 200


class RecordingSink:
    """A KeySink that records what it is told."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def replace(self, keys: Any) -> None:
        self.calls.append("replace")

    def change(self, added: Any, removed: Any) -> None:
        self.calls.append("change")

    def unavailable(self, detail: str) -> None:
        self.calls.append("unavailable")


def test_stop_during_start_leaves_it_stopped(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(redis.url)
    replace = source._replace

    def slowly(records: list[dict[bytes, bytes]], generation: int, asked: float) -> bool:
        time.sleep(0.3)
        return replace(records, generation, asked)

    monkeypatch.setattr(source, "_replace", slowly)
    sink = RecordingSink()

    async def scenario() -> None:
        starting = asyncio.create_task(source.start(sink))
        await asyncio.sleep(0.1)  # the first load is decoding in its thread
        await source.stop()
        await starting  # returns, stopped: not an error, and nothing applied
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert sink.calls == []
    assert source.state == "stopped"
    assert source._task is None
    assert source._redis is None


def test_a_cancelled_start_leaves_no_connection_open(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = RedisKeySource(redis.url)
    connect = source._connect

    async def hanging() -> None:
        await connect()
        await asyncio.sleep(3600)

    monkeypatch.setattr(source, "_connect", hanging)

    async def scenario() -> None:
        starting = asyncio.create_task(source.start(RecordingSink()))
        await asyncio.sleep(0.2)
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting

    asyncio.run(scenario())
    assert source._redis is None
    assert source.state == "not_started"


def test_a_connection_that_drops_at_once_still_backs_off(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = RedisKeySource(
        redis.url, heartbeat=0.2, timeout=0.2, reconnect_delay=0.05, max_reconnect_delay=0.4
    )
    app, _ = instance(source)
    attempts = count_connects(source, monkeypatch)
    done = threading.Event()

    def kill_subscribers() -> None:  # every subscription dies right after it is made
        connection = raw(redis)
        while not done.is_set():
            connection.client_kill_filter(_type="pubsub")
            time.sleep(0.005)

    with TestClient(app):
        killer = threading.Thread(target=kill_subscribers)
        killer.start()
        try:
            time.sleep(1.5)
        finally:
            done.set()
            killer.join(timeout=10)
    # Reconnecting works each time but never holds a heartbeat: the waits still
    # double (0.05, 0.1, 0.2, 0.4, 0.4, ...), about six attempts, never thirty.
    assert 2 <= len(attempts) <= 9


def test_a_check_waits_for_messages_on_their_way_instead_of_reloading(
    redis: RedisServer,
) -> None:
    source = RedisKeySource(redis.url, heartbeat=0.05)
    app, _ = instance(source)
    with TestClient(app) as client:
        for number in range(60):  # steady writes, faster than the heartbeat
            add_key(redis.url, f"sk-steady-{number:03d}-0123456789abc")
            time.sleep(0.02)
        wait_until(lambda: status_with(client, "sk-steady-059-0123456789abc") == 200, 5, "all")
        assert source.repairs <= 1
        assert source.full_loads <= 2


def test_stop_is_bounded_even_if_the_follower_does_not_end(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = RedisKeySource(redis.url, heartbeat=0.05, timeout=0.3)

    async def stubborn(*args: Any, **kwargs: Any) -> None:  # cancelling does not reach it
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    monkeypatch.setattr(source, "_run", stubborn)

    async def scenario() -> float:
        await source.start(RecordingSink())
        await asyncio.sleep(0.05)  # the follower is running, and ignores cancelling
        started = time.monotonic()
        await source.stop()
        took = time.monotonic() - started
        assert source._task is None
        return took

    with capture_logs() as logs:
        loop = asyncio.new_event_loop()
        try:
            took = loop.run_until_complete(scenario())
        finally:
            for task in asyncio.all_tasks(loop):  # the stubborn one, left to the loop's end
                task.cancel()
                task.get_coro().close()
            loop.close()
    assert took < 2.0
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["key_store_stop_timeout"]


def test_a_load_slower_than_max_staleness_is_not_trusted_and_says_why(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(redis.url, max_staleness=0.3, heartbeat=0.05, timeout=0.2)
    replace = source._replace

    def slowly(records: list[dict[bytes, bytes]], generation: int, asked: float) -> bool:
        time.sleep(0.35)
        return replace(records, generation, asked)

    monkeypatch.setattr(source, "_replace", slowly)
    auth = APIKeyAuth(source=source)

    async def scenario() -> None:
        await auth.start()
        assert auth.verify(CANARY) is None  # never trusted: refused
        assert source.state == "unavailable"
        await auth.stop()

    with capture_logs() as logs:
        asyncio.run(scenario())
    slow = [e for e in logs if e["event"] == "key_store_load_too_slow"]
    assert slow
    assert "raise max_staleness" in slow[0]["detail"]


# ======================================================== the follower's life (review of issue 15)


def store_connections(server: RedisServer) -> int:
    """How many connections the server has from this package's clients (CLIENT LIST)."""
    with raw(server) as connection:
        clients = connection.client_list()
    return sum(1 for client in clients if client.get("name") == "asgi_apikey")


def run_bounded(scenario: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``scenario`` on a new loop; whatever it leaves running is ended, never waited for."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(scenario(), 30))
    finally:
        for task in asyncio.all_tasks(loop):  # with a bug: a follower that loops forever
            task.cancel()
            task.get_coro().close()
        loop.close()


def test_a_cancellation_redis_py_absorbs_still_ends_the_follower(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(redis.url, heartbeat=SLOW_HEARTBEAT, max_staleness=2 * SLOW_HEARTBEAT)
    get_message = PubSub.get_message

    async def absorbing(self: PubSub, *args: Any, **kwargs: Any) -> Any:
        try:
            return await get_message(self, *args, **kwargs)
        except asyncio.CancelledError:
            # What redis-py can do when the connection it reads is closed under it.
            raise RedisConnectionError("Connection closed by server.") from None

    monkeypatch.setattr(PubSub, "get_message", absorbing)

    async def scenario() -> tuple[float, bool]:
        await source.start(RecordingSink())
        follower = source._task
        assert follower is not None
        await asyncio.sleep(0.1)  # the follower waits for a message in get_message
        started = time.monotonic()
        await source.stop()
        took = time.monotonic() - started
        await asyncio.sleep(0.3)  # a follower that went on would reconnect by now
        return took, follower.done()

    with capture_logs() as logs:
        took, ended = run_bounded(scenario)
    assert ended
    assert source._task is None
    assert took < 1.0  # not the 2 s (timeout) stop() waits for a follower that goes on
    assert source._redis is None
    assert source._pubsub is None
    assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] == []
    wait_until(lambda: store_connections(redis) == 0, 5, "every connection closed")


def test_stop_closes_every_connection(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(redis.url, heartbeat=0.05)
    app, _ = instance(source)
    with TestClient(app) as client:
        add_key(redis.url, APIKey(OTHER_KEY, name="two"))  # read through a pipeline
        wait_until(lambda: status_with(client, OTHER_KEY) == 200, PROPAGATION_BOUND, "applied")
        time.sleep(0.1)  # heartbeats
        assert store_connections(redis) >= 2  # the subscription and the client
        follower = source._task
    assert follower is not None
    assert follower.done()
    assert source._redis is None
    assert source._pubsub is None
    wait_until(lambda: store_connections(redis) == 0, 5, "every connection closed")


@pytest.fixture
def failing_log() -> Iterator[threading.Event]:
    """structlog raising on every event while the flag it returns is set (a full disk);
    the configuration is undone afterwards."""
    failing = threading.Event()

    def processor(logger: Any, method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        if failing.is_set():
            raise OSError(28, "No space left on device")
        return event

    saved = structlog.get_config()
    structlog.configure(
        processors=[processor, *saved["processors"]], cache_logger_on_first_use=False
    )
    try:
        yield failing
    finally:
        failing.clear()
        structlog.configure(**saved)


def test_a_logger_that_raises_during_a_reconnect_does_not_end_the_follower(
    redis: RedisServer, failing_log: threading.Event
) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(
        redis.url, max_staleness=0.6, heartbeat=0.05, timeout=0.3, max_reconnect_delay=0.1
    )
    app, _ = instance(source)
    with TestClient(app) as client:
        follower = source._task
        failing_log.set()  # key_store_lost, key_store_unavailable, ... all raise
        redis.kill()
        wait_until(lambda: source.state == "unavailable", 5, "fail closed")
        redis.start()
        wait_until(lambda: source.state == "live", 10, "recovered")
        failing_log.clear()
        assert status_with(client, CANARY) == 200
        assert source._task is follower  # the same follower: it never ended
        assert source.restarts == 0
        assert source.losses == 1


def test_a_follower_killed_by_an_unexpected_error_is_restarted_and_logged_once(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(redis.url, heartbeat=0.05, timeout=0.3)
    app, auth = instance(source)
    follow, lost = source._follow, source._lost
    trouble = threading.Event()

    async def dropping() -> bool:
        if trouble.is_set():
            raise RedisConnectionError("Connection closed by server.")
        return await follow()

    def buggy(error: BaseException) -> None:  # a bug where the follower handles a loss
        if trouble.is_set():
            trouble.clear()
            raise RuntimeError("a bug, holding sk-bug-0f9e8d7c6b5a")
        lost(error)

    monkeypatch.setattr(source, "_follow", dropping)
    monkeypatch.setattr(source, "_lost", buggy)
    with capture_logs() as logs, TestClient(app) as client:
        first = source._task
        trouble.set()
        wait_until(lambda: source._task not in (None, first), 5, "a new follower")
        assert source.restarts == 1
        wait_until(lambda: source.state == "live", 5, "live again")
        # The new follower follows: a change reaches this instance by its message.
        add_key(redis.url, APIKey(OTHER_KEY, name="after"))
        wait_until(lambda: status_with(client, OTHER_KEY) == 200, PROPAGATION_BOUND, "followed")
        assert status_with(client, CANARY) == 200
        assert auth.status()["source"]["restarts"] == 1
    died = [e for e in logs if e["event"] == "key_store_follower_died"]
    assert len(died) == 1
    assert died[0]["log_level"] == "error"
    assert died[0]["error"] == "RuntimeError"
    assert "sk-bug-0f9e8d7c6b5a" not in repr(logs)


def test_text_from_redis_reaches_the_log_escaped(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_key(redis.url, APIKey(CANARY, name="billing"))
    with raw(redis) as connection:
        connection.hset("{asgi_apikey}:keys", b"evil\x1b[31m\nkey_store_recovered forged", b"{}")
    source = RedisKeySource(redis.url, heartbeat=0.05, timeout=0.3)
    app, _ = instance(source)
    follow = source._follow
    dropped = threading.Event()

    async def dropping() -> bool:  # redis-py's error texts quote what the server sent
        if not dropped.is_set():
            dropped.set()
            raise RedisConnectionError("closed\x1b[31m\nkey_store_recovered forged")
        return await follow()

    with capture_logs() as logs, TestClient(app) as client:
        monkeypatch.setattr(source, "_follow", dropping)
        wait_until(lambda: source.losses == 1 and source.state == "live", 5, "reconnected")
        assert status_with(client, CANARY) == 200  # the other records load
    invalid = [e for e in logs if e["event"] == "key_record_invalid"]
    lost = [e for e in logs if e["event"] == "key_store_lost"]
    assert invalid
    assert lost
    assert invalid[0]["field"] == "evil\\x1b[31m\\x0akey_store_recovered forged"
    assert lost[0]["error"] == "ConnectionError: closed\\x1b[31m\\x0akey_store_recovered forged"
    for logged in logs:
        for value in logged.values():
            assert "\x1b" not in str(value)
            assert "\n" not in str(value)


def test_an_error_from_redis_is_escaped_and_masked() -> None:
    url = "redis://app:pw-3c2b1a@127.0.0.1:6379/0"
    error = ValueError("wrong pw-3c2b1a\r\n\x1b[2J\u202e")
    assert _why(error, url) == "ValueError: wrong ***\\x0d\\x0a\\x1b[2J\\u202e"


def record_connects(
    source: RedisKeySource, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[float, str | None]]:
    """When ``source`` (re)connects from now on, and how it failed (None: it did not)."""
    attempts: list[tuple[float, str | None]] = []
    connect = source._connect

    async def recorded() -> None:
        started = time.monotonic()
        try:
            await connect()
        except Exception as error:
            attempts.append((started, f"{type(error).__name__}: {error}"))
            raise
        attempts.append((started, None))

    monkeypatch.setattr(source, "_connect", recorded)
    return attempts


def test_after_redis_restarts_the_first_reconnect_succeeds(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py 5 hands out a pooled connection whose server has closed it (it does not
    # see the close); later versions check. The pool here trusts as redis-py 5 does.
    async def trusting(self: ConnectionPool, connection: Any) -> None:
        await connection.connect()

    monkeypatch.setattr(ConnectionPool, "ensure_connection", trusting)
    add_key(redis.url, APIKey(CANARY, name="billing"))
    source = RedisKeySource(
        redis.url,
        heartbeat=SLOW_HEARTBEAT,  # only the subscription sees the loss
        max_staleness=2 * SLOW_HEARTBEAT,
        timeout=0.5,
        reconnect_delay=0.05,
        max_reconnect_delay=1.0,
    )
    app, _ = instance(source)
    attempts = record_connects(source, monkeypatch)
    with TestClient(app) as client:
        # Applied from its message: the client's connection goes back to the pool.
        add_key(redis.url, APIKey(OTHER_KEY, name="two"))
        wait_until(lambda: status_with(client, OTHER_KEY) == 200, PROPAGATION_BOUND, "applied")
        redis.kill()
        wait_until(lambda: source.losses == 1, 5, "the loss noticed")
        time.sleep(1.2)  # the back-off reaches max_reconnect_delay
        redis.start()
        answering = time.monotonic()
        took = wait_until(lambda: source.state == "live", 10, "reconnected")
        assert status_with(client, OTHER_KEY) == 200
    failures = [failure for _, failure in attempts if failure is not None]
    # While the server was down, attempts were refused; none failed on a stale connection.
    assert all("connecting to" in failure for failure in failures), failures
    assert [failure for started, failure in attempts[1:] if started >= answering] in ([], [None])
    assert took < 1.0 + 0.5  # one back-off and a connect, not two back-offs


# ======================================================== passwords in the URL's query

# What redis-py reads as a credential from a URL's query, after decoding the name.
QUERY_CREDENTIALS = ("password", "ssl_password")
PASSWORDS = st.text(string.ascii_letters + string.digits + "-_.~", min_size=6, max_size=20).map(
    lambda text: "Pw" + text
)


@st.composite
def spelled(draw: st.DrawFn, text: str, capitals: bool = True) -> str:
    """``text`` with any character percent-encoded (and any letter in capitals)."""
    out = []
    capitals = capitals and draw(st.booleans())
    for char in text:
        if capitals:
            char = draw(st.sampled_from(sorted({char, char.upper()})))
        how = draw(st.sampled_from(["plain", "%XX", "%xx"]))
        escaped = f"%{ord(char):02X}"
        out.append(char if how == "plain" else escaped if how == "%XX" else escaped.lower())
    return "".join(out)


@dataclass(frozen=True)
class PasswordURL:
    template: str  # PORT stands for the port
    password: str
    written: str  # the password as the URL spells it
    sent: bool  # whether redis-py authenticates with it

    def url(self, port: int) -> str:
        return self.template.replace("PORT", str(port))


@st.composite
def password_urls(draw: st.DrawFn) -> PasswordURL:
    password = draw(PASSWORDS)
    written = draw(spelled(password, capitals=False))
    if draw(st.booleans()):  # in the query, under a name spelled any way
        name = draw(st.sampled_from(QUERY_CREDENTIALS).flatmap(spelled))
        before = draw(st.sampled_from(["", "db=0&", "protocol=2&"]))
        after = draw(st.sampled_from(["", "&db=0", "&socket_timeout=2"]))
        template = f"redis://127.0.0.1:PORT/0?{before}{name}={written}{after}"
        return PasswordURL(template, password, written, unquote_plus(name) == "password")
    user = draw(st.sampled_from(["", "default"]))
    return PasswordURL(f"redis://{user}:{written}@127.0.0.1:PORT/0", password, written, True)


# The review's case: redis-py decodes the name and authenticates with the password.
ENCODED_NAME = PasswordURL(
    "redis://127.0.0.1:PORT/0?pass%77ord=Pw-7d6c5b", "Pw-7d6c5b", "Pw-7d6c5b", True
)


@given(case=password_urls())
@example(case=ENCODED_NAME)
def test_a_password_spelled_any_way_is_masked(case: PasswordURL) -> None:
    url, password = case.url(6379), case.password
    source, store = RedisKeySource(url), RedisKeyStore(url)
    texts = [
        repr(source),
        json.dumps(source.describe()),
        repr(store),
        redacted(url),
        _why(ValueError(f"AUTH {password} refused"), url),
        str(store._unreachable(OSError(f"no {password}"))),
        repr(store._unreachable(OSError(password)).context),
    ]
    for text in texts:
        assert password not in text
        assert case.written not in text


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=password_urls())
@example(case=ENCODED_NAME)
def test_a_password_spelled_any_way_never_reaches_status_events_or_errors(
    redis: RedisServer, case: PasswordURL
) -> None:
    url, password, sent = case.url(redis.port), case.password, case.sent
    event("redis-py sends it" if sent else "redis-py does not read it")
    texts: list[str] = []
    admin = raw(redis)
    try:
        admin.config_set("requirepass", password)
        source = RedisKeySource(url, timeout=1.0)

        async def scenario() -> None:
            if sent:  # redis-py authenticates with it: the source starts
                await source.start(RecordingSink())
                texts.append(json.dumps(source.describe()))
                await source.stop()
            else:  # a name redis-py does not read as the password: refused
                with pytest.raises(KeySourceError) as failed:
                    await source.start(RecordingSink())
                texts.extend([str(failed.value), repr(failed.value.context)])

        with capture_logs() as logs:
            run_bounded(scenario)
        assert ("key_store_started" in [e["event"] for e in logs]) is sent
        texts.extend([repr(source), repr(logs)])
    finally:
        admin.config_set("requirepass", "")
        admin.close()
    for text in texts:
        assert password not in text
        assert case.written not in text


def test_a_full_load_runs_with_the_collector_paused(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The decode and the swap of a full load are a bulk load (collector.py): a
    # million keys must not run the full collection again and again meanwhile.
    import gc

    from asgi_apikey.redis_store import mirror

    add_key(redis.url, APIKey(CANARY, name="one"))
    seen: list[bool] = []
    real = mirror.Mirror.reloaded

    def reloaded(self: mirror.Mirror, records: list[dict[bytes, bytes]]) -> mirror.Mirror:
        seen.append(gc.isenabled())
        return real(self, records)

    monkeypatch.setattr(mirror.Mirror, "reloaded", reloaded)
    app, _ = instance(slow_source(redis.url))
    with TestClient(app) as client:
        assert status_with(client, CANARY) == 200
    assert seen
    assert not any(seen)
    assert gc.isenabled()


def test_a_full_load_is_fresh_from_the_end_of_its_scan_unless_the_store_moved(
    redis: RedisServer,
) -> None:
    # The trust window of a full load starts when the version was last seen
    # unchanged: after the scan when nothing changed during it, else before it.
    from redis.asyncio import Redis as AsyncRedis

    from asgi_apikey.redis_store import reads
    from asgi_apikey.redis_store.records import DEFAULT_PREFIX, Names

    names = Names.of(DEFAULT_PREFIX)
    for n in range(3):
        add_key(redis.url, APIKey(f"sk-scan-{n}-0123456789abcdef", name=f"k{n}"))

    async def scan(change_meanwhile: bool) -> tuple[float, float | None, int]:
        client = AsyncRedis(host="127.0.0.1", port=redis.port, password=redis.password)
        real_hscan = client.hscan

        async def hscan(*args: Any, **kwargs: Any) -> Any:
            if change_meanwhile:
                await asyncio.to_thread(
                    add_key, redis.url, APIKey("sk-scan-late-0123456789abcdef", name="late")
                )
            return await real_hscan(*args, **kwargs)

        client.hscan = hscan  # type: ignore[method-assign]
        before = time.monotonic()
        try:
            _, _, records, confirmed = await reads.everything(client, names)
        finally:
            await client.aclose()
        return before, confirmed, sum(map(len, records))  # the scan's chunks

    before, confirmed, count = asyncio.run(scan(change_meanwhile=False))
    assert count == 3
    assert confirmed is not None
    assert before < confirmed <= time.monotonic()
    _, moved, _ = asyncio.run(scan(change_meanwhile=True))
    assert moved is None
