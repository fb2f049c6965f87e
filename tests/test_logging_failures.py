"""Logging can never change an answer or stop a task (review 15, finding 6).

Every log line goes through ``audit.emit``: a processor that raises, a logger
whose attribute lookup raises, a stream that is closed, leave the answer and
the counters as they were. Ctrl-C, ``SystemExit`` and cancellation are not
swallowed. The fields of an event cannot raise either, whatever the server put
in the scope.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from structlog.typing import EventDict, WrappedLogger

import asgi_apikey
from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware
from asgi_apikey.audit import emit
from tests.asgi import CANARY, call, http_scope

UNKNOWN = "sk-unknown-but-well-formed-key-0002"
PACKAGE = Path(asgi_apikey.__file__).resolve().parent


class Boom(Exception):
    pass


def raising_processor(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    raise Boom("the log pipeline is down")


class NoAttributes:
    """A logger on which every attribute lookup raises."""

    def __getattr__(self, name: str) -> Any:
        raise Boom(f"no {name}")


class ClosedStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.close()


BROKEN = [
    pytest.param({"processors": [raising_processor]}, id="processor-raises"),
    pytest.param({"logger_factory": lambda *args: NoAttributes()}, id="logger-getattr-raises"),
    pytest.param(
        {"wrapper_class": type("Wrapper", (NoAttributes,), {})}, id="wrapper-getattr-raises"
    ),
    pytest.param(
        {"logger_factory": structlog.PrintLoggerFactory(file=ClosedStream())},
        id="closed-stream",
    ),
]


@pytest.fixture
def broken_logging(request: pytest.FixtureRequest) -> Iterator[None]:
    structlog.configure(**request.param, cache_logger_on_first_use=False)
    try:
        yield
    finally:
        structlog.reset_defaults()


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def starlette_app(**options: Any) -> tuple[Starlette, APIKeyAuth]:
    auth = APIKeyAuth(
        [APIKey(CANARY, name="svc", scopes={"read"})],
        request_logging=True,
        failure_log_limit=2,
        **options,
    )
    app = Starlette(routes=[Route("/v1/x", hello), Route("/admin/x", hello)])
    app.add_middleware(APIKeyMiddleware, auth=auth, protected={"/admin": {"admin"}})
    return app, auth


@pytest.mark.parametrize("broken_logging", BROKEN, indirect=True)
@pytest.mark.usefixtures("broken_logging")
def test_a_broken_log_pipeline_changes_no_answer_and_no_counter() -> None:
    app, auth = starlette_app()
    bearer = {"Authorization": f"Bearer {CANARY}"}
    with TestClient(app) as client:  # the lifespan's shutdown reports the throttle: no error
        for _ in range(5):  # past the client's budget: held back, reported at shutdown
            assert client.get("/v1/x").status_code == 401
            assert (
                client.get("/v1/x", headers={"Authorization": f"Bearer {UNKNOWN}"}).status_code
                == 401
            )
        assert client.get("/v1/x", headers={"Authorization": "Bearer a b"}).status_code == 400
        assert client.get("/admin/x", headers=bearer).status_code == 403
        assert client.get("/v1/x", headers=bearer).text == "hello"
    counters = auth.counters()
    assert counters.requests == 13
    assert counters.refused["missing"] == counters.refused["invalid"] == 5
    assert counters.refused["malformed"] == counters.refused["insufficient_scope"] == 1
    assert counters.authenticated == 1
    assert counters.suppressed_events == 8  # one client: one event per reason, 4 + 4 held back


@pytest.mark.parametrize(
    "error",
    [KeyboardInterrupt, SystemExit, asyncio.CancelledError],
    ids=["ctrl-c", "system-exit", "cancelled"],
)
def test_emit_lets_interrupts_and_cancellation_through(error: type[BaseException]) -> None:
    def interrupting(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        raise error

    structlog.configure(processors=[interrupting], cache_logger_on_first_use=False)
    try:
        with pytest.raises(error):
            emit("warning", "authentication_failed", {"reason": "missing"})
    finally:
        structlog.reset_defaults()


class Unprintable:
    def __str__(self) -> str:
        raise Boom("no text")


@pytest.mark.parametrize(
    ("field", "logged"),
    [
        pytest.param({"client": (Unprintable(), 1)}, "client", id="client-host"),
        pytest.param({"method": Unprintable()}, "method", id="method"),
    ],
)
def test_a_scope_value_that_cannot_be_text_changes_no_answer(
    field: dict[str, Any], logged: str
) -> None:
    # A server (or a proxy-headers middleware) put something odd in the scope: the
    # event names its type instead, and the refusal is answered and counted.
    auth = APIKeyAuth([APIKey(CANARY)], failure_log_limit=1)
    app = APIKeyMiddleware(PlainTextResponse("never reached"), auth=auth)
    scope = http_scope("/v1/x")
    scope.update(field)
    with structlog.testing.capture_logs() as logs:
        statuses = [call(app, dict(scope)).status for _ in range(3)]
    assert statuses == [401, 401, 401]
    assert auth.counters().refused["missing"] == 3
    assert auth.counters().suppressed_events == 2
    assert [entry[logged] for entry in logs] == ["<Unprintable>"]


def test_every_log_call_of_audit_cli_and_demo_goes_through_emit() -> None:
    # emit() is the one error-proof way out; the logger itself is used only there.
    # Every module of the package is read, the redis_store subpackage's too.
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20
    for module in modules:
        name = str(module.relative_to(PACKAGE))
        source = module.read_text(encoding="utf-8")
        calls = re.findall(r"\b_log\.\w+\(|get_logger\(\)\.\w+\(", source)
        if name == "audit.py":
            assert calls == [], calls
            assert source.count("getattr(_log, level)") == 1
        else:
            # self._log is an object of ours (FollowerLog), which logs through emit.
            assert not re.search(r"(?<![.\w])_log\b", source), name
            assert "get_logger(" not in source, name
            assert not re.search(r"\blogging\.getLogger\b|\bstructlog\.get_logger\b", source), name
