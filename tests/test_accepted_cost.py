"""The accepted path's shortcuts add the same headers as the long way does.

An accepted request is what every request of a service is, so its cost is cut
with shortcuts (issue 19, item 3): ``__call__`` chooses the security headers
itself for plain http without a key in the URL (``_sender`` keeps every other
case), and its send wrapper appends them without calling ``merge_headers``
when the app's header list has only lowercase names, none of them ours. Each
is held here to the long way: ``merge_headers`` over the headers the path and
scheme get, whatever the app sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from asgi_apikey import APIKeyMiddleware
from asgi_apikey.headers import AddedHeaders, PathHeaders, SecurityHeaders, merge_headers
from tests.asgi import CANARY, bearer, call, http_scope

Headers = list[tuple[bytes, bytes]]

# Names an app may send: its own, ours in any case, and names lower() leaves alone.
_NAMES = st.sampled_from(
    [
        b"content-type",
        b"content-length",
        b"x-frame-options",
        b"X-Frame-Options",
        b"REFERRER-POLICY",
        b"Content-Security-Policy",
        b"x-content-type-options",
        b"set-cookie",
        b"X-Request-Id",
        b"x-1",
        b"123",
        b"",
    ]
)
_HEADERS = st.lists(st.tuples(_NAMES, st.sampled_from([b"a", b"DENY", b""])), max_size=6)


class App:
    """Answers 200 with the given headers, as a list or a tuple, once or reusing the message."""

    def __init__(self, headers: Headers, *, as_tuple: bool, twice: bool) -> None:
        self.headers, self.as_tuple, self.twice = headers, as_tuple, twice

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = tuple(self.headers) if self.as_tuple else list(self.headers)
        start: Message = {"type": "http.response.start", "status": 200, "headers": given}
        await send(start)
        if self.twice:  # a message sent again (what a retrying wrapper might do)
            await send(start)
        await send({"type": "http.response.body", "body": b"ok"})


def _starts(messages: Sequence[Message]) -> list[Headers]:
    return [
        [(bytes(name), bytes(value)) for name, value in message["headers"]]
        for message in messages
        if message["type"] == "http.response.start"
    ]


def _long_way(headers: Headers, scheme: str, path: str, times: int) -> list[Headers]:
    """What merge_headers gives, merged again into its own result for a reused message."""
    added: AddedHeaders = PathHeaders(SecurityHeaders(True), None).choose(path, "")
    pairs, names = added.pick(scheme, False)
    expected, merged = [], list(headers)
    for _ in range(times):
        merged = merge_headers(merged, pairs, names)
        expected.append(list(merged))
    return expected


@settings(max_examples=300, deadline=None)
@given(
    headers=_HEADERS,
    as_tuple=st.booleans(),
    twice=st.booleans(),
    scheme=st.sampled_from(["http", "https"]),
    path=st.sampled_from(["/v1/chat", "/docs"]),
)
def test_the_accepted_responses_headers_are_what_merge_headers_gives(
    headers: Headers, as_tuple: bool, twice: bool, scheme: str, path: str
) -> None:
    middleware = APIKeyMiddleware(
        App(headers, as_tuple=as_tuple, twice=twice), keys=[CANARY], public=["/docs"]
    )
    result = call(middleware, http_scope(path, headers=[bearer(CANARY)], scheme=scheme))
    assert result.status == 200
    assert _starts(result.messages) == _long_way(headers, scheme, path, 2 if twice else 1)


def test_the_app_keeps_a_header_it_set_in_capitals() -> None:
    app = App([(b"X-Frame-Options", b"SAMEORIGIN")], as_tuple=False, twice=False)
    middleware = APIKeyMiddleware(app, keys=[CANARY])
    result = call(middleware, http_scope("/v1/x", headers=[bearer(CANARY)]))
    assert [value for name, value in result.headers if name.lower() == b"x-frame-options"] == [
        b"SAMEORIGIN"
    ]


def test_the_wrapper_passes_the_body_untouched() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    middleware = APIKeyMiddleware(App([], as_tuple=False, twice=False), keys=[CANARY])
    asyncio.run(middleware(http_scope("/v1/x", headers=[bearer(CANARY)]), receive, send))
    assert sent[-1] == {"type": "http.response.body", "body": b"ok"}
    assert sent[0]["headers"] == list(SecurityHeaders(True).for_scheme("http"))
