"""A canary key never appears in a response, a header, a repr, an error or a log line."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware, ConfigurationError
from asgi_apikey.credentials import CredentialReader
from asgi_apikey.keys import KeyEntry
from tests.asgi import CANARY, CANARY_QUERIES, CANARY_SHAPES, OTHER_KEY, Recorder, call, http_scope

RAW = CANARY.encode()

SHAPES = CANARY_SHAPES
QUERIES = CANARY_QUERIES


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog
    assert CANARY not in caplog.text


def middleware(keys: list[str | APIKey]) -> tuple[APIKeyMiddleware, Recorder]:
    inner = Recorder()
    app = APIKeyMiddleware(
        inner,
        keys=keys,
        header_name="X-API-Key",
        allow_query_token=True,
        optional=["/optional"],
    )
    return app, inner


@pytest.mark.parametrize("path", ["/protected", "/optional"])
@pytest.mark.parametrize("registered", [True, False], ids=["key registered", "key unknown"])
@pytest.mark.parametrize("shape", list(SHAPES) + list(QUERIES))
def test_no_response_echoes_the_key(
    shape: str, registered: bool, path: str, logs: pytest.LogCaptureFixture
) -> None:
    app, inner = middleware([CANARY] if registered else [OTHER_KEY])
    headers = SHAPES.get(shape, [])
    query = QUERIES.get(shape, b"")
    result = call(app, http_scope(path, headers=headers, query_string=query), inner)
    assert RAW not in result.everything()
    assert RAW[:12] not in result.everything()


def test_no_repr_shows_the_key() -> None:
    key = APIKey(CANARY, name="svc", scopes={"read"})
    auth = APIKeyAuth(keys=[key, APIKey(OTHER_KEY)])
    app = APIKeyMiddleware(Recorder(), auth=auth)
    entry = auth.resolve(RAW)
    assert isinstance(entry, KeyEntry)
    shown = " ".join(
        repr(thing)
        for thing in (key, auth, app, entry, entry.context, entry.user, auth.status(), auth.key_ids)
    )
    assert CANARY not in shown
    assert key.digest.removeprefix("sha256:") not in shown


def test_no_repr_of_an_anonymous_key_shows_it() -> None:
    key = APIKey(CANARY)
    assert CANARY not in repr(key)
    assert CANARY not in key.key_id
    assert key.digest.removeprefix("sha256:")[:16] not in key.key_id


@pytest.mark.parametrize(
    "build",
    [
        lambda: APIKeyAuth(keys=[CANARY, CANARY]),
        lambda: APIKeyAuth(keys=[CANARY, APIKey(digest=APIKey(CANARY).digest)]),
        lambda: APIKeyAuth(keys=[CANARY + " "]),
        lambda: APIKeyAuth(keys=[CANARY + "!"]),
        lambda: APIKeyAuth(keys=["sha256:" + CANARY]),
        lambda: APIKey(CANARY, digest=APIKey(CANARY).digest),
        lambda: APIKey(digest=CANARY),
        lambda: APIKey(CANARY, name=CANARY + "\n"),
        lambda: APIKeyMiddleware(Recorder(), keys=[CANARY * 200]),
        lambda: APIKeyMiddleware(Recorder(), keys=CANARY),
    ],
    ids=[
        "duplicate",
        "plain and digest",
        "whitespace",
        "bad character",
        "looks like a digest",
        "secret and digest",
        "bad digest",
        "bad name",
        "too long",
        "a single string",
    ],
)
def test_no_configuration_error_shows_the_key(build: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        build()  # type: ignore[operator]
    error = caught.value
    text = "".join(traceback.format_exception(error)) + repr(error.context) + repr(error)
    assert CANARY not in text
    assert error.__cause__ is None


def test_credential_reader_results_never_hold_more_than_the_token() -> None:
    reader = CredentialReader(header_name="X-API-Key", allow_query_token=True)
    for headers in SHAPES.values():
        result = reader.read(headers, b"")
        if isinstance(result, tuple):
            assert result[0] in (RAW, RAW + b"x")
        else:
            assert CANARY not in repr(result)


def test_websocket_denial_does_not_echo_the_key() -> None:
    app, inner = middleware([OTHER_KEY])
    for headers in SHAPES.values():
        options: list[dict[str, Any]] = [{}, {"websocket.http.response": {}}]
        for extensions in options:
            scope = http_scope("/ws", headers=headers, kind="websocket", extensions=extensions)
            result = call(app, scope, inner)
            assert RAW not in result.everything()
