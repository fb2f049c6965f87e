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


# ------------------------------------------- the authenticator keeps no plain key


def _reachable(root: object) -> Iterator[object]:
    """Every object ``root`` holds, through attributes and containers (gc referents).

    Modules, classes and functions are not followed (a function's globals reach
    the whole process, ``os.environ`` included), nor is ``os.environ`` itself:
    what is checked is what the authenticator keeps, not what the process holds.
    """
    import gc
    import os
    import sys
    import types

    namespaces = {id(vars(module)) for module in list(sys.modules.values())}
    stop = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType)
    seen: set[int] = set()
    todo = [root]
    while todo:
        current = todo.pop()
        if id(current) in seen or current is os.environ or id(current) in namespaces:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, stop):
            continue
        if isinstance(current, types.MethodType):
            todo.append(current.__self__)
            continue
        todo.extend(gc.get_referents(current))


def _assert_no_plain_key(root: object, *secrets: str) -> None:
    from pydantic import SecretStr

    count = 0
    for found in _reachable(root):
        count += 1
        if isinstance(found, SecretStr):
            found = found.get_secret_value()
        if isinstance(found, (str, bytes, bytearray)):
            text = found if isinstance(found, str) else bytes(found).decode("latin-1")
            for secret in secrets:
                assert secret not in text, f"a plain key is reachable from {type(root).__name__}"
    assert count > 20  # the walk did look inside


def test_an_authenticator_keeps_no_plain_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", CANARY)
    monkeypatch.setenv("ADDITIONAL_API_KEYS", OTHER_KEY)
    auth = APIKeyAuth.from_env()
    assert auth.verify(CANARY) is not None
    _assert_no_plain_key(auth, CANARY, OTHER_KEY)
    assert auth.remove_key(OTHER_KEY)
    _assert_no_plain_key(auth, CANARY, OTHER_KEY)
    auth.reload()  # re-reads the environment: both keys are back, and still only as digests
    assert auth.verify(OTHER_KEY) is not None
    _assert_no_plain_key(auth, CANARY, OTHER_KEY)
    app = APIKeyMiddleware(Recorder())
    assert app.auth.verify(CANARY) is not None
    _assert_no_plain_key(app, CANARY, OTHER_KEY)


def test_the_walk_finds_a_plain_key_where_one_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # The control: the same walk over what the environment was read into.
    from asgi_apikey.settings import read_settings

    monkeypatch.setenv("API_KEY", CANARY)
    with pytest.raises(AssertionError, match="a plain key is reachable"):
        _assert_no_plain_key({"settings": read_settings(), "padding": list(range(30))}, CANARY)


def test_an_authenticator_refuses_to_be_pickled_or_copied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import copy
    import pickle

    monkeypatch.setenv("API_KEY", CANARY)
    auth = APIKeyAuth.from_env()
    app = APIKeyMiddleware(Recorder(), auth=auth)
    for attempt in (
        lambda: pickle.dumps(auth),
        lambda: pickle.dumps(auth, protocol=0),
        lambda: pickle.dumps(app),
        lambda: copy.copy(auth),
        lambda: copy.deepcopy(auth),
    ):
        with pytest.raises(TypeError, match="an APIKeyAuth cannot be pickled or copied") as caught:
            attempt()
        assert CANARY not in str(caught.value)
