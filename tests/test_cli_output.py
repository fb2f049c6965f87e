"""What ``python -m asgi_apikey`` prints (review 15, findings 1 and 4).

- No output (stdout, stderr, a traceback) ever holds a key given as an
  argument or on stdin, on the error paths too: an unknown key, a malformed
  one, a duplicate, a store that cannot be reached.
- Log events go to stderr as plain lines: ``--json`` output on stdout is pure
  JSON even when the command logs.

Each case runs the real command in a subprocess, against a real redis-server
(tests/redis_server.py) or a closed port on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from redis import Redis as SyncRedis

from asgi_apikey import APIKey
from asgi_apikey.cli import configure_logging
from asgi_apikey.redis_store import add_key
from tests.asgi import AUTH_VARIABLES, CANARY, OTHER_KEY
from tests.redis_server import RedisServer, running_redis

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Stores:
    live: str  # a redis-server holding CANARY as "present"
    closed: str  # a port on 127.0.0.1 that refuses connections


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def stores(redis: RedisServer) -> Iterator[Stores]:
    add_key(redis.url, APIKey(CANARY, name="present"))
    # Bound and never listening: a connection is refused, and no other process can
    # take the port while the tests run.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        yield Stores(redis.url, f"redis://127.0.0.1:{closed.getsockname()[1]}/0")


def command(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m asgi_apikey *argv`` with a clean environment."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in AUTH_VARIABLES}
    env.pop("REDIS_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "asgi_apikey", *argv],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_holds_no_piece_of(text: str, key: str) -> None:
    """Neither the key nor any 12 characters of it."""
    for start in range(len(key) - 11):
        assert key[start : start + 12] not in text, f"{key[start : start + 12]!r} in {text!r}"


#: (argv with {live} / {closed} for the store, stdin, exit code, what stderr says)
KEY_MATERIAL = [
    pytest.param(
        ["keys", "revoke", "--redis", "{live}", CANARY],
        "",
        1,
        "error: the store holds no key with that key_id or digest",
        id="revoke-plain-key",
    ),
    pytest.param(
        ["keys", "revoke", "--redis", "{live}", f"sha256:{CANARY}"],
        "",
        1,
        "error: a key digest must be",
        id="revoke-plain-key-as-digest",
    ),
    pytest.param(
        ["keys", "revoke", "--redis", "{closed}", CANARY],
        "",
        1,
        "error: the Redis key store at redis://127.0.0.1:",
        id="revoke-unreachable",
    ),
    pytest.param(
        ["keys", "add", "--redis", "{live}", "--stdin"],
        CANARY + "\n",
        1,
        "error: the store already holds this key, as key_id 'present'",
        id="add-duplicate",
    ),
    pytest.param(
        ["keys", "add", "--redis", "{closed}", "--stdin"],
        CANARY + "\n",
        1,
        "error: the Redis key store at redis://127.0.0.1:",
        id="add-unreachable",
    ),
    pytest.param(
        ["keys", "add", "--redis", "{live}", "--digest", CANARY],
        "",
        1,
        "error: a key digest must be",
        id="add-plain-key-as-digest",
    ),
    pytest.param(
        ["keys", "add", "--redis", "{live}", "--stdin"],
        f"{CANARY} {OTHER_KEY}\n",
        1,
        "error: an API key has characters a Bearer token cannot carry",
        id="add-two-keys-on-a-line",
    ),
    pytest.param(
        ["keys", "add", "--redis", "{live}", "--stdin", "--name", CANARY[:20]],
        CANARY + "\n",
        1,
        "error: ",
        id="add-named-after-itself",
    ),
    pytest.param(
        ["keys", "add", "--redis", "{live}", "--stdin", "--json"],
        OTHER_KEY + "\n",
        0,
        "",
        id="add-accepted",
    ),
    pytest.param(["hash"], CANARY + "\n", 0, "", id="hash"),
    pytest.param(
        ["hash"],
        f"{CANARY}\n{CANARY} x\n",
        1,
        "error: line 2: an API key has characters a Bearer token cannot carry",
        id="hash-bad-line",
    ),
]


@pytest.mark.parametrize(("argv", "stdin", "code", "message"), KEY_MATERIAL)
def test_no_output_holds_a_key_given_as_an_argument_or_on_stdin(
    stores: Stores, argv: list[str], stdin: str, code: int, message: str
) -> None:
    done = command(
        *(part.format(live=stores.live, closed=stores.closed) for part in argv), stdin=stdin
    )
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith(message)
    assert "Traceback" not in done.stderr
    for key in (CANARY, OTHER_KEY):
        assert_holds_no_piece_of(done.stdout + done.stderr, key)


def test_revoke_echoes_a_key_id_the_store_matched(stores: Stores) -> None:
    add_key(stores.live, APIKey(OTHER_KEY + "-revocable", name="revocable"))
    done = command("keys", "revoke", "--redis", stores.live, "revocable")
    assert (done.returncode, done.stdout, done.stderr) == (0, "revoked revocable\n", "")
    digest = APIKey(CANARY).digest
    done = command("keys", "revoke", "--redis", stores.live, digest)
    assert (done.returncode, done.stdout) == (0, "revoked the key with that digest\n")
    add_key(stores.live, APIKey(CANARY, name="present"))  # as the other tests expect


# -- logging goes to stderr -----------------------------------------------------------------


def test_keys_list_json_is_pure_json_while_the_command_logs(
    stores: Stores, redis: RedisServer
) -> None:
    # A record that is not a key: listing it logs key_record_invalid.
    connection = SyncRedis(host="127.0.0.1", port=redis.port)
    try:
        connection.hset("{asgi_apikey}:keys", "not-a-digest", "{}")
    finally:
        connection.close()
    done = command("keys", "list", "--redis", stores.live, "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert "present" in [entry["key_id"] for entry in listed]
    [line] = [line for line in done.stderr.splitlines() if "key_record_invalid" in line]
    assert "[error" in line  # plain, human-readable: the level, the event, its fields
    assert "field=not-a-digest" in line


def test_configure_logging_writes_plain_lines_to_its_stream_and_nothing_to_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = io.StringIO()
    configure_logging(stream)
    try:
        structlog.get_logger("asgi_apikey").warning("key_store_unreachable", url="redis://x")
    finally:
        structlog.reset_defaults()
    assert capsys.readouterr() == ("", "")
    [line] = stream.getvalue().splitlines()
    assert "[warning  ] key_store_unreachable" in line
    assert line.endswith("url=redis://x")
