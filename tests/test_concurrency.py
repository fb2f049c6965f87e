"""Concurrency: thousands of requests in flight while another thread rotates the keys.

A request reads the key set once (``APIKeyAuth.snapshot``), and a rotation swaps
in a whole new set with one assignment, so each request must be judged by one
consistent key set: the one before or the one after any change that overlaps it.

A rotation thread keeps adding, removing and replacing keys while requests run
(in-process: 1,000 at once on one event loop; through uvicorn: 100 connections),
with threads switching every 0.5 ms so that rotations land inside requests.
It stamps each change with ``time.perf_counter()`` before and after it; each
request stamps its own start and end. Then, per request:

- the always-valid key is always 200, the never-valid key always 401, a request
  without credentials always 401;
- a toggled key whose presence no change altered during the request's whole span
  gets exactly the answer that presence implies; across a change, either answer;
- the app sees the very key that was presented (it echoes ``scope["auth"].key_id``);
- nothing raises, nothing is 500, every request is answered exactly once.

One toggled key, ``quiet``, only changes between waves of requests (the rotation
thread waits for two waves to end before it flips it again), so some waves run
entirely with it present and some entirely with it absent: those requests are
checked exactly, and the tests assert that both kinds happened.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx2
import pytest
import uvicorn
from starlette.types import Message, Receive, Scope, Send

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware

#: The plain keys by name; "always" is never removed, the others are toggled.
SECRET = {
    "always": "sk-always-0123456789abcdef0123",
    **{f"fast-{n}": f"sk-fast-{n}-0123456789abcdef0123" for n in range(4)},
    "quiet": "sk-quiet-0123456789abcdef01234",
}
BY_NAME = {name: APIKey(secret, name=name) for name, secret in SECRET.items()}
ALWAYS, QUIET = BY_NAME["always"], BY_NAME["quiet"]
FAST = [BY_NAME[f"fast-{n}"] for n in range(4)]
NEVER = "sk-never-0123456789abcdef01234"  # never added
#: The toggled keys present at the start (with "always").
INITIAL = frozenset({"fast-0", "fast-2"})
#: What request n presents: PRESENTED[n % len(PRESENTED)], a key's name, "never" or None
#: (no credentials).
PRESENTED: list[str | None] = [
    "always",
    "quiet",
    "fast-0",
    "never",
    "fast-1",
    "quiet",
    None,
    "fast-2",
    "always",
    "fast-3",
    "quiet",
    "never",
]

START_TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _frequent_thread_switches() -> Iterator[None]:
    """Switch threads every 0.5 ms instead of 5: more rotations land inside requests."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


# --- the rotation thread --------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One rotation: stamped just before and just after it; the toggled keys present after."""

    before: float
    after: float
    present: frozenset[str]


@dataclass
class Rotator:
    """Adds, removes and replaces keys from its own thread until stopped.

    The fast keys change all the time, by ``add_key``, ``remove_key`` (by name, by
    plain key or by ``APIKey``) and ``replace_keys``; ``quiet`` flips only when two
    more waves of requests have ended since its last flip.
    """

    auth: APIKeyAuth
    seed: int
    initial: frozenset[str] = INITIAL
    changes: list[Change] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    waves_done: int = 0  # written by the requests' thread, read here
    quiet_flips: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _afters: list[float] = field(default_factory=list)

    def __enter__(self) -> Rotator:
        self._thread = threading.Thread(target=self._run, name="rotator", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the rotation thread did not stop"

    def _run(self) -> None:
        try:
            self._rotate()
        except BaseException as error:  # reported by the test, not lost in the thread
            self.errors.append(f"the rotation thread raised {error!r}")

    def _rotate(self) -> None:
        rng = random.Random(self.seed)
        present = set(self.initial)
        quiet_next = 0  # flip quiet once this many waves have ended
        auth = self.auth
        while not self._stop.is_set():
            if self.waves_done >= quiet_next:
                before = time.perf_counter()
                if "quiet" in present:
                    removed = auth.remove_key("quiet")
                    present.discard("quiet")
                    if not removed:
                        self.errors.append("remove_key('quiet') found nothing")
                else:
                    auth.add_key(QUIET)
                    present.add("quiet")
                after = time.perf_counter()
                self.quiet_flips += 1
                # Read after the flip: the wave after next starts after it and ends before
                # the next flip, so it runs with quiet's presence unchanged throughout.
                quiet_next = self.waves_done + 2
            else:
                fast = [key.key_id for key in FAST]
                absent = [name for name in fast if name not in present]
                there = [name for name in fast if name in present]
                action = rng.choice(["add", "remove", "replace"])
                before = time.perf_counter()
                if action == "add" and absent:
                    name = rng.choice(absent)
                    auth.add_key(BY_NAME[name])
                    present.add(name)
                elif action == "remove" and there:
                    name = rng.choice(there)
                    ways: list[str | APIKey] = [name, SECRET[name], BY_NAME[name]]
                    how = rng.choice(ways)  # by name, by plain key, by APIKey
                    if not auth.remove_key(how):
                        self.errors.append(f"remove_key found no {name}")
                    present.discard(name)
                else:
                    chosen = {name for name in fast if rng.random() < 0.5}
                    chosen |= present & {"quiet"}
                    auth.replace_keys([ALWAYS, *(BY_NAME[name] for name in sorted(chosen))])
                    present = chosen
                after = time.perf_counter()
            self.changes.append(Change(before, after, frozenset(present)))
            if set(auth.key_ids) != present | {"always"}:
                self.errors.append(f"key_ids {sorted(auth.key_ids)} after a change to {present}")
            time.sleep(rng.choice([0.0, 0.0002, 0.001, 0.003]))

    def overlapping(self, start: float, end: float) -> int:
        """How many changes overlap a request from ``start`` to ``end``."""
        if len(self._afters) != len(self.changes):
            self._afters = [change.after for change in self.changes]
        first = bisect.bisect_left(self._afters, start)
        count = 0
        for change in self.changes[first:]:
            if change.before > end:
                break
            count += 1
        return count

    def possible(self, name: str, start: float, end: float) -> set[bool]:
        """Whether ``name`` may have been present for a request from ``start`` to ``end``.

        The state left by the last change that ended before the request started, and
        the state after every change that overlaps the request. Call it once the
        thread has stopped.
        """
        if len(self._afters) != len(self.changes):
            self._afters = [change.after for change in self.changes]
        first = bisect.bisect_left(self._afters, start)
        base = self.changes[first - 1].present if first else self.initial
        states = [base]
        for change in self.changes[first:]:
            if change.before > end:
                break
            states.append(change.present)
        return {name in state for state in states}


# --- judging the answers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    presented: str | None
    status: int
    body: str
    start: float
    end: float


@dataclass
class Verdict:
    wrong: list[str] = field(default_factory=list)
    exact: Counter[str] = field(default_factory=Counter)  # toggled answers checked exactly
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)  # 200s by the key presented
    anonymous: int = 0  # requests without credentials
    raced: int = 0  # requests during which the key set changed


def judge(answers: list[Answer], rotator: Rotator) -> Verdict:
    verdict = Verdict()
    for answer in answers:
        verdict.statuses[answer.status] += 1
        name = answer.presented
        if answer.status == 200 and name is not None:
            verdict.accepted[name] += 1
        if name is None:
            verdict.anonymous += 1
        if rotator.overlapping(answer.start, answer.end):
            verdict.raced += 1
        if name == "always":
            allowed = {200}
        elif name is None or name == "never":
            allowed = {401}
        else:
            possible = rotator.possible(name, answer.start, answer.end)
            allowed = {200 if present else 401 for present in possible}
            if len(possible) == 1:
                verdict.exact[f"{name} {'present' if True in possible else 'absent'}"] += 1
        if answer.status not in allowed:
            verdict.wrong.append(
                f"{name!r} from {answer.start:.6f} to {answer.end:.6f}: {answer.status}, "
                f"expected one of {sorted(allowed)}"
            )
        elif answer.status == 200 and answer.body != f"{name}|{name}":
            verdict.wrong.append(f"{name!r} reached the app as {answer.body!r}")
    return verdict


def check(verdict: Verdict, rotator: Rotator, auth: APIKeyAuth, requests: int) -> None:
    assert rotator.errors == []
    assert verdict.wrong == [], f"{len(verdict.wrong)} wrong answers: {verdict.wrong[:10]}"
    assert set(verdict.statuses) <= {200, 401}, verdict.statuses
    assert sum(verdict.statuses.values()) == requests
    # Not a vacuous check: the key set changed during most requests, and quiet was
    # still judged exactly, both present and absent.
    assert verdict.raced >= requests // 2, f"{verdict.raced} requests raced a change"
    assert verdict.exact["quiet present"] > 0, verdict.exact
    assert verdict.exact["quiet absent"] > 0, verdict.exact
    assert rotator.quiet_flips >= 3
    # The counters add up: every request once, each accepted one under its key.
    counters = auth.counters()
    assert counters.requests == requests
    assert counters.authenticated == verdict.statuses[200]
    assert dict(counters.by_key_id) == dict(verdict.accepted)
    assert counters.refused["missing"] == verdict.anonymous
    assert counters.refused["invalid"] == verdict.statuses[401] - verdict.anonymous
    assert sum(counters.refused.values()) == verdict.statuses[401]


# --- the app ------------------------------------------------------------------------------


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the key_id and user the middleware set, yielding between messages."""
    assert scope["type"] == "http"
    await asyncio.sleep(0)
    who = f"{scope['auth'].key_id}|{scope['user'].display_name}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": who[:3], "more_body": True})
    await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": who[3:], "more_body": False})


def authenticator() -> APIKeyAuth:
    return APIKeyAuth([ALWAYS, *(BY_NAME[name] for name in sorted(INITIAL))])


def headers_for(name: str | None) -> list[tuple[bytes, bytes]]:
    if name is None:
        return []
    secret = NEVER if name == "never" else SECRET[name]
    return [(b"authorization", b"Bearer " + secret.encode())]


# --- in-process ---------------------------------------------------------------------------

IN_PROCESS_WAVES = 8
IN_PROCESS_AT_ONCE = 1_000


async def one_in_process(app: APIKeyMiddleware, n: int) -> Answer:
    name = PRESENTED[n % len(PRESENTED)]
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/v1/items/{n}",
        "raw_path": f"/v1/items/{n}".encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers_for(name)],
        "client": ("127.0.0.1", 10_000 + n % 50_000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.sleep(0)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)
        await asyncio.sleep(0)

    start = time.perf_counter()
    await app(scope, receive, send)
    end = time.perf_counter()

    kinds = [message["type"] for message in sent]
    assert kinds.count("http.response.start") == 1, kinds
    assert kinds[0] == "http.response.start", kinds
    finals = [m for m in sent if m["type"] == "http.response.body" and not m.get("more_body")]
    assert len(finals) == 1, kinds
    assert sent[-1] is finals[0], "a message after the final body"
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(name, sent[0]["status"], body.decode(), start, end)


def test_a_thousand_requests_at_once_while_keys_rotate_in_another_thread() -> None:
    auth = authenticator()
    app = APIKeyMiddleware(echo, auth=auth)

    async def waves(rotator: Rotator) -> list[Answer]:
        answers: list[Answer] = []
        for wave in range(IN_PROCESS_WAVES):
            base = wave * IN_PROCESS_AT_ONCE
            batch = await asyncio.gather(
                *(one_in_process(app, base + n) for n in range(IN_PROCESS_AT_ONCE)),
                return_exceptions=True,
            )
            errors = [result for result in batch if isinstance(result, BaseException)]
            assert errors == [], f"{len(errors)} requests raised, first: {errors[0]!r}"
            answers += [result for result in batch if isinstance(result, Answer)]
            rotator.waves_done += 1
        return answers

    with Rotator(auth, seed=7) as rotator:
        answers = asyncio.run(waves(rotator))
    requests = IN_PROCESS_WAVES * IN_PROCESS_AT_ONCE
    assert len(answers) == requests
    check(judge(answers, rotator), rotator, auth, requests)


# --- through a real server ------------------------------------------------------------------

SERVER_WAVES = 6
SERVER_WAVE = 250
CONNECTIONS = 100


@contextlib.contextmanager
def uvicorn_serving(app: APIKeyMiddleware) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1, on a pre-bound free port, in a thread; its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
        )
        thread.start()
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not server.started:
                assert thread.is_alive(), "uvicorn stopped before it started"
                assert time.monotonic() < deadline, f"uvicorn did not start in {START_TIMEOUT} s"
                time.sleep(0.01)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=START_TIMEOUT)
            assert not thread.is_alive(), "uvicorn did not stop"
    finally:
        sock.close()


def test_a_real_server_under_load_while_keys_rotate_in_another_thread() -> None:
    auth = authenticator()
    app = APIKeyMiddleware(echo, auth=auth)

    async def one(client: httpx2.AsyncClient, n: int) -> Answer:
        name = PRESENTED[n % len(PRESENTED)]
        start = time.perf_counter()
        response = await client.get(f"/v1/items/{n}", headers=dict(headers_for(name)))
        end = time.perf_counter()
        return Answer(name, response.status_code, response.text, start, end)

    async def waves(url: str, rotator: Rotator) -> list[Answer]:
        limits = httpx2.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        answers: list[Answer] = []
        async with httpx2.AsyncClient(
            base_url=url, limits=limits, timeout=30.0, trust_env=False
        ) as client:
            for wave in range(SERVER_WAVES):
                base = wave * SERVER_WAVE
                batch = await asyncio.gather(
                    *(one(client, base + n) for n in range(SERVER_WAVE)), return_exceptions=True
                )
                errors = [result for result in batch if isinstance(result, BaseException)]
                assert errors == [], f"{len(errors)} requests failed, first: {errors[0]!r}"
                answers += [result for result in batch if isinstance(result, Answer)]
                rotator.waves_done += 1
        return answers

    with uvicorn_serving(app) as url, Rotator(auth, seed=11) as rotator:
        answers = asyncio.run(waves(url, rotator))
    requests = SERVER_WAVES * SERVER_WAVE
    assert len(answers) == requests
    check(judge(answers, rotator), rotator, auth, requests)
