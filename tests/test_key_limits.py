"""A key's own rate limit, from all three key sources and the command line (issue 18).

Each source carries every form of a limit (a rate, with a burst, a quota, both,
``unlimited``, none) to the authenticator unchanged: keys in code
(``APIKey(limit=...)``), the key file (``limit = ...`` in a ``[[keys]]``
table), and the Redis store (the record's ``limit``, through
``RedisKeyStore.add`` or ``keys add --limit``, to every ``RedisKeySource``).
A bad limit is a ``ConfigurationError`` (or, in Redis, a skipped record) whose
text never holds a key planted in the bad value. The Redis tests run against a
real redis-server on 127.0.0.1 (tests/redis_server.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis as SyncRedis
from structlog.testing import capture_logs

from asgi_apikey import APIKey, APIKeyAuth, ConfigurationError
from asgi_apikey.cli import main
from asgi_apikey.keyfile import load_key_file
from asgi_apikey.ratelimit.gcra import MAX_COUNT, MAX_PERIOD, Rate
from asgi_apikey.ratelimit.limits import UNLIMITED, RateLimit
from asgi_apikey.ratelimit.quota import WINDOWS, Quota
from asgi_apikey.redis_store import RedisKeySource, RedisKeyStore, StoredKey, add_key, list_keys
from asgi_apikey.redis_store.records import decode, record
from tests.asgi import CANARY, OTHER_KEY, chain, error_texts, plain_digest
from tests.cli import run_cli
from tests.redis_server import RedisServer, running_redis

#: A key that is also a Python identifier: the shape a field name of a table can have.
IDENTIFIER_CANARY = "sk_canary_5f3c9a1e7b2d4c6f8a0e"
SECRETS = (CANARY, OTHER_KEY, IDENTIFIER_CANARY)

#: Every form of a limit: (id, the data form a source holds, the limit it names).
FORMS: list[tuple[str, Any, RateLimit | None]] = [
    ("rate", "100/minute", RateLimit("100/minute")),
    ("burst", {"rate": "100/minute", "burst": 20}, RateLimit("100/minute", burst=20)),
    ("quota", {"quota": "10000/day"}, RateLimit(quota="10000/day")),
    (
        "both",
        {"rate": "10/second", "burst": 5, "quota": "1000/month"},
        RateLimit("10/s", burst=5, quota="1000/month"),
    ),
    ("unlimited", "unlimited", UNLIMITED),
    ("none", None, None),
]
FORM_IDS = [form[0] for form in FORMS]

#: Bad limits, each holding CANARY where it can (a key pasted into the wrong field).
BAD_LIMITS: list[tuple[str, Any]] = [
    ("key-as-rate", CANARY),
    ("key-in-rate", {"rate": CANARY}),
    ("key-as-burst", {"rate": "10/minute", "burst": CANARY}),
    ("key-as-quota", {"quota": CANARY}),
    ("key-in-list", [CANARY]),
    ("number", 5),
    ("zero-burst", {"rate": "10/minute", "burst": 0}),
    ("burst-alone", {"burst": 5}),
    ("empty-table", {}),
    ("unknown-field", {"rate": "10/minute", "per": "minute"}),
    ("week-quota", {"quota": "5/week"}),
    ("zero-rate", "0/minute"),
]
BAD_IDS = [bad[0] for bad in BAD_LIMITS]


def secret_for(name: str) -> str:
    """A distinct plain key per name (the digest is all a source keeps)."""
    return "sk-limits-" + hashlib.sha256(name.encode()).hexdigest()[:24]


def raw_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def assert_no_secret_in(texts: str) -> None:
    for secret in SECRETS:
        assert secret not in texts, f"{secret!r} in {texts!r}"


def assert_clean_error(error: ConfigurationError, *, frames_too: bool = False) -> None:
    """No key in the error, its chain or its context; raised outside any except block.

    ``frames_too``: nor in any local of the traceback's frames, which error reporters
    record (the key file's promise; keys in code hold what the caller gave them).
    """
    assert_no_secret_in(repr(list(error_texts(error))))
    assert list(chain(error)) == [error]
    if frames_too:
        shown = traceback.TracebackException.from_exception(error, capture_locals=True)
        text = "".join(shown.format())
        assert "raise ConfigurationError" in text  # the frames are there
        assert_no_secret_in(text)


def raised(action: Callable[[], object]) -> ConfigurationError:
    try:
        action()
    except ConfigurationError as error:
        return error
    raise AssertionError("no ConfigurationError was raised")


# ======================================================== keys in code


@pytest.mark.parametrize(("given_as", "expected"), [f[1:] for f in FORMS], ids=FORM_IDS)
def test_a_key_in_code_takes_every_form_of_a_limit(given_as: Any, expected: RateLimit) -> None:
    key = APIKey(CANARY, name="billing", limit=given_as)
    assert key.limit == expected
    if expected is not None:
        assert APIKey(CANARY, name="billing", limit=expected).limit is expected
        assert APIKey(CANARY, name="billing", limit=expected.as_data()).limit == expected
    assert_no_secret_in(repr(key))


def test_the_limit_is_part_of_a_keys_equality_and_repr() -> None:
    plain = APIKey(CANARY, name="billing")
    limited = APIKey(CANARY, name="billing", limit="100/minute")
    assert plain.limit is None
    assert plain != limited
    assert limited == APIKey(CANARY, name="billing", limit={"rate": "100/minute"})
    assert limited != APIKey(CANARY, name="billing", limit="101/minute")
    assert limited != APIKey(CANARY, name="billing", limit=UNLIMITED)
    assert hash(plain) == hash(limited)  # the digest alone, as before
    assert repr(plain) == "APIKey(key_id='billing', scopes=[])"
    assert repr(limited) == "APIKey(key_id='billing', scopes=[], limit=RateLimit('100/minute'))"
    both = APIKey(CANARY, name="b", limit=RateLimit("10/s", burst=5, quota="1000/month"))
    assert repr(both) == (
        "APIKey(key_id='b', scopes=[], limit=RateLimit('10/second', burst=5, quota='1000/month'))"
    )
    assert repr(APIKey(CANARY, name="u", limit="unlimited")).endswith("limit=UNLIMITED)")
    with pytest.raises(AttributeError):
        limited.limit = None


def test_the_authenticator_holds_each_keys_limit() -> None:
    keys = [APIKey(secret_for(name), name=name, limit=data) for name, data, _ in FORMS]
    auth = APIKeyAuth(keys=keys)
    for name, _, expected in FORMS:
        assert auth.snapshot.by_digest[raw_digest(secret_for(name))].key.limit == expected


@pytest.mark.parametrize("bad", [b[1] for b in BAD_LIMITS], ids=BAD_IDS)
def test_a_bad_limit_in_code_names_the_key_and_never_a_secret(bad: Any) -> None:
    error = raised(lambda: APIKey(OTHER_KEY, name="billing", limit=bad))
    assert str(error).startswith("limit of key 'billing' ")
    assert error.context == {"key_id": "billing", "setting": "limit"}
    assert_clean_error(error)


def test_a_bad_limit_of_an_unnamed_key_names_its_fingerprint() -> None:
    key_id = APIKey(OTHER_KEY).key_id
    error = raised(lambda: APIKey(OTHER_KEY, limit=CANARY))
    assert str(error).startswith(f"limit of key {key_id!r} a rate is")
    assert_clean_error(error)


# ======================================================== the key file


def key_file(directory: Path, *tables: str) -> Path:
    path = directory / "keys.toml"
    path.write_text("\n".join(tables), encoding="utf-8")
    return path


def table(name: str, *lines: str) -> str:
    return "\n".join(
        ["[[keys]]", f'digest = "{plain_digest(secret_for(name))}"', f'name = "{name}"', *lines]
    )


#: The same forms as a person writes them in a key file.
FILE_FORMS: list[tuple[str, str, RateLimit | None]] = [
    ("rate", 'limit = "100/minute"', RateLimit("100/minute")),
    ("burst", 'limit = { rate = "100/minute", burst = 20 }', RateLimit("100/minute", burst=20)),
    ("quota", 'limit = { quota = "10000/day" }', RateLimit(quota="10000/day")),
    (
        "both",
        'limit = { rate = "10/s", burst = 5, quota = "1000/month" }',
        RateLimit("10/s", burst=5, quota="1000/month"),
    ),
    ("unlimited", 'limit = "unlimited"', UNLIMITED),
    ("none", "", None),
    (
        "sub-table",
        '[keys.limit]\nrate = "5/15m"\nquota = "100/hour"',
        RateLimit("5/15m", quota="100/hour"),
    ),
]


@pytest.mark.parametrize(
    ("line", "expected"), [f[1:] for f in FILE_FORMS], ids=[f[0] for f in FILE_FORMS]
)
def test_the_key_file_takes_every_form_of_a_limit(
    tmp_path: Path, line: str, expected: RateLimit | None
) -> None:
    path = key_file(tmp_path, table("first"), table("second", line))
    [(_, first), (label, second)] = load_key_file(path)
    assert first.limit is None
    assert label.endswith("keys[1]")
    assert second.limit == expected
    auth = APIKeyAuth(keys_file=path)
    assert auth.snapshot.by_digest[raw_digest(secret_for("second"))].key.limit == expected


@pytest.mark.parametrize(("given_as", "expected"), [f[1:] for f in FORMS], ids=FORM_IDS)
def test_what_keygen_writes_for_a_limit_the_key_file_reads_back(
    tmp_path: Path, given_as: Any, expected: RateLimit | None
) -> None:
    from asgi_apikey.cli_keys import limit_toml

    line = limit_toml(expected) if expected is not None else ""
    path = key_file(tmp_path, table("one", line))
    assert load_key_file(path)[0][1].limit == expected


def toml_value(value: Any) -> str:
    """A value as TOML (what a person might paste into the limit field)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


@pytest.mark.parametrize("bad", [b[1] for b in BAD_LIMITS], ids=BAD_IDS)
def test_a_bad_limit_in_the_key_file_is_labelled_and_never_quoted(tmp_path: Path, bad: Any) -> None:
    path = key_file(tmp_path, table("first"), table("second", f"limit = {toml_value(bad)}"))
    error = raised(lambda: load_key_file(path))
    assert str(error).startswith(f"API_KEYS_FILE ({path}) keys[1] limit "), str(error)
    assert error.context == {"setting": "API_KEYS_FILE"}
    assert_clean_error(error, frames_too=True)


@pytest.mark.parametrize(
    "line",
    ["limit = 2027-01-01T00:00:00Z", "limit = true", 'limit = "  "', 'limit = ""'],
    ids=["date-time", "boolean", "blank", "empty"],
)
def test_other_bad_limit_values_in_the_key_file(tmp_path: Path, line: str) -> None:
    path = key_file(tmp_path, table("first", line))
    error = raised(lambda: load_key_file(path))
    assert str(error).startswith(f"API_KEYS_FILE ({path}) keys[0] limit ")
    assert_clean_error(error, frames_too=True)


# ======================================================== Redis records (no server)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def field_of(key: APIKey) -> bytes:
    return key.digest.removeprefix("sha256:").encode()


@pytest.mark.parametrize(("given_as", "expected"), [f[1:] for f in FORMS], ids=FORM_IDS)
def test_a_record_carries_every_form_of_a_limit(given_as: Any, expected: RateLimit | None) -> None:
    key = APIKey(CANARY, name="billing", limit=given_as)
    encoded = record(key, NOW)
    assert json.loads(encoded)["limit"] == (expected.as_data() if expected is not None else None)
    decoded = decode(field_of(key), encoded.encode())
    assert decoded is not None
    assert decoded[0] == key
    assert decoded[0].limit == expected


def test_a_record_written_before_limits_is_a_key_without_one() -> None:
    key = APIKey(CANARY, name="billing", scopes={"read"})
    old = json.loads(record(key, NOW))
    del old["limit"]
    decoded = decode(field_of(key), json.dumps(old).encode())
    assert decoded is not None
    assert decoded[0].limit is None
    assert decoded[0].scopes == frozenset({"read"})


@pytest.mark.parametrize("bad", [b[1] for b in BAD_LIMITS], ids=BAD_IDS)
def test_a_record_with_a_bad_limit_is_skipped_and_logged_without_a_secret(bad: Any) -> None:
    key = APIKey(OTHER_KEY, name="billing")
    data = json.loads(record(key, NOW))
    data["limit"] = bad
    with capture_logs() as logs:
        assert decode(field_of(key), json.dumps(data).encode()) is None
    assert [event["event"] for event in logs] == ["key_record_invalid"]
    assert "limit of key 'billing'" in logs[0]["problem"]
    assert_no_secret_in(repr(logs))


def test_a_rate_whose_period_no_record_can_hold_is_refused_by_the_store() -> None:
    # A Rate built in code may last half a second; its text form cannot say so, and a
    # follower would refuse the record: the key is refused when it is added instead.
    key = APIKey(CANARY, name="fast", limit=RateLimit(Rate(1, 0.5)))
    error = raised(lambda: record(key, NOW))
    assert str(error).startswith("limit of key 'fast' has a period that a record cannot hold")
    assert error.context == {"key_id": "fast", "setting": "limit"}
    assert_clean_error(error)


def test_stored_key_shows_the_limit_in_its_data_form() -> None:
    from asgi_apikey.redis_store.records import stored

    for _, _, expected in FORMS:
        key = APIKey(CANARY, name="billing", limit=expected)
        shown = stored(key, json.loads(record(key, NOW)))
        assert shown.limit == expected
        assert shown.as_dict()["limit"] == (expected.as_data() if expected else None)


# ======================================================== the round trip, generated

_UNITS = {
    1: ["s", "sec", "second", "seconds"],
    60: ["m", "min", "minute", "minutes"],
    3600: ["h", "hour", "hours"],
    86400: ["d", "day", "days"],
}
counts = st.integers(1, MAX_COUNT)
bursts = st.none() | counts
quotas = st.builds(Quota, counts, st.sampled_from(sorted(WINDOWS)))


@st.composite
def rate_texts(draw: st.DrawFn) -> str:
    """A rate as a person writes it: ``100/minute``, ``5 / 15m``, ``1/366days``."""
    unit = draw(st.sampled_from(sorted(_UNITS)))
    multiple = draw(st.none() | st.integers(1, MAX_PERIOD // unit))
    word = draw(st.sampled_from(_UNITS[unit]))
    space = draw(st.sampled_from(["", " "]))
    return f"{draw(counts)}{space}/{space}{multiple or ''}{word}"


rates = st.builds(Rate, counts, st.integers(1, MAX_PERIOD), bursts) | st.builds(
    lambda text, burst: RateLimit(text, burst=burst).rate, rate_texts(), bursts
)
limits = st.one_of(
    st.just(UNLIMITED),
    st.builds(lambda rate, quota: RateLimit(rate, quota=quota), rates, st.none() | quotas),
    st.builds(lambda quota: RateLimit(quota=quota), quotas),
)


@given(limits)
def test_every_valid_limit_round_trips_through_its_data_form(limit: RateLimit) -> None:
    assert RateLimit.from_data(limit.as_data()) == limit
    assert RateLimit.from_data(json.loads(json.dumps(limit.as_data()))) == limit


@given(limits)
def test_every_valid_limit_round_trips_through_key_file_text(limit: RateLimit) -> None:
    from asgi_apikey.cli_keys import limit_toml

    text = table("one", limit_toml(limit))
    assert tomllib.loads(text)["keys"][0].get("limit") == limit.as_data()
    with tempfile.TemporaryDirectory() as directory:
        [(_, key)] = load_key_file(key_file(Path(directory), text))
    assert key.limit == limit


@given(limits)
def test_every_valid_limit_round_trips_through_a_redis_record(limit: RateLimit) -> None:
    key = APIKey(CANARY, name="one", limit=limit)
    encoded = record(key, NOW)
    assert json.loads(encoded)["limit"] == limit.as_data()
    decoded = decode(field_of(key), encoded.encode())
    assert decoded is not None
    assert decoded[0].limit == limit


# ======================================================== a field name that is a key

SOURCES_OF_A_BAD_FIELD = ["code", "key-file", "record"]


@pytest.mark.parametrize("source", SOURCES_OF_A_BAD_FIELD)
def test_a_key_pasted_as_a_field_name_of_a_limit_is_never_quoted(
    tmp_path: Path, source: str
) -> None:
    bad = {"rate": "10/minute", IDENTIFIER_CANARY: 1}
    if source == "code":
        shown = str(raised(lambda: APIKey(OTHER_KEY, name="billing", limit=bad)))
    elif source == "key-file":
        path = key_file(tmp_path, table("first", f"limit = {toml_value(bad)}"))
        shown = str(raised(lambda: load_key_file(path)))
    else:
        key = APIKey(OTHER_KEY, name="billing")
        data = {**json.loads(record(key, NOW)), "limit": bad}
        with capture_logs() as logs:
            assert decode(field_of(key), json.dumps(data).encode()) is None
        shown = repr(logs)
    assert IDENTIFIER_CANARY not in shown


# ======================================================== a real Redis store


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def raw(server: RedisServer) -> SyncRedis:
    return SyncRedis(host="127.0.0.1", port=server.port, password=server.password)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.005)


def limit_in(auth: APIKeyAuth, name: str) -> RateLimit | None:
    entry = auth.snapshot.by_digest.get(raw_digest(secret_for(name)))
    assert entry is not None, f"{name} is not in the snapshot"
    return entry.key.limit


def test_a_follower_hands_the_authenticator_each_key_with_its_limit(redis: RedisServer) -> None:
    # Loaded whole at start, and one added later (through the published change alone).
    for name, data, _ in FORMS:
        add_key(redis.url, APIKey(secret_for(name), name=name, limit=data))
    source = RedisKeySource(redis.url, heartbeat=60, max_staleness=120)
    auth = APIKeyAuth(source=source)
    late = RateLimit("7/hour", burst=2, quota="50/day")

    async def scenario() -> None:
        await auth.start()
        try:
            for name, _, expected in FORMS:
                assert limit_in(auth, name) == expected
            async with RedisKeyStore(redis.url) as store:
                added = await store.add(APIKey(secret_for("late"), name="late", limit=late))
            assert added.limit == late
            deadline = time.monotonic() + 5
            while raw_digest(secret_for("late")) not in auth.snapshot.by_digest:
                assert time.monotonic() < deadline, "the added key did not arrive"
                await asyncio.sleep(0.005)
            assert limit_in(auth, "late") == late
            assert source.full_loads == 1  # it came as a change, not by a reload
        finally:
            await auth.stop()

    asyncio.run(scenario())


def test_a_follower_reads_old_records_and_skips_bad_limits(redis: RedisServer) -> None:
    add_key(redis.url, APIKey(secret_for("good"), name="good", limit="5/second"))
    old = APIKey(secret_for("old"), name="old", scopes={"read"})
    data = json.loads(record(old, NOW))
    del data["limit"]
    raw(redis).hset("{asgi_apikey}:keys", field_of(old), json.dumps(data))
    bad = APIKey(secret_for("bad"), name="bad")
    raw(redis).hset(
        "{asgi_apikey}:keys",
        field_of(bad),
        json.dumps({**json.loads(record(bad, NOW)), "limit": {"rate": CANARY}}),
    )
    auth = APIKeyAuth(source=RedisKeySource(redis.url))

    async def scenario() -> None:
        await auth.start()
        try:
            assert limit_in(auth, "good") == RateLimit("5/second")
            assert limit_in(auth, "old") is None
            assert raw_digest(secret_for("bad")) not in auth.snapshot.by_digest
        finally:
            await auth.stop()

    with capture_logs() as logs:
        asyncio.run(scenario())
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["key_record_invalid"]
    assert_no_secret_in(repr(logs))
    with capture_logs():
        listed = {key.key_id: key.limit for key in list_keys(redis.url)}
    assert listed == {"good": RateLimit("5/second"), "old": None}


def test_the_store_refuses_a_limit_no_record_can_hold(redis: RedisServer) -> None:
    error = raised(
        lambda: add_key(redis.url, APIKey(CANARY, name="fast", limit=RateLimit(Rate(3, 1.5))))
    )
    assert "has a period that a record cannot hold" in str(error)
    assert list_keys(redis.url) == []


# ======================================================== the command line


#: Every form, as the options of keys add and keygen give it, and its text in keys list.
CLI_FORMS: list[tuple[str, list[str], RateLimit | None, str]] = [
    ("rate", ["--limit", "100/minute"], RateLimit("100/minute"), "100/minute"),
    (
        "burst",
        ["--limit", "100/minute", "--burst", "20"],
        RateLimit("100/minute", burst=20),
        "100/minute,burst=20",
    ),
    ("quota", ["--quota", "10000/day"], RateLimit(quota="10000/day"), "quota=10000/day"),
    (
        "both",
        ["--limit", "10/s", "--burst", "5", "--quota", "1000/month"],
        RateLimit("10/s", burst=5, quota="1000/month"),
        "10/second,burst=5,quota=1000/month",
    ),
    ("unlimited", ["--unlimited"], UNLIMITED, "unlimited"),
    ("none", [], None, "-"),
]
CLI_IDS = [form[0] for form in CLI_FORMS]


def test_keys_add_stores_every_form_and_list_shows_it(redis: RedisServer) -> None:
    for name, options, expected, text in CLI_FORMS:
        code, out, err = run_cli(
            "keys", "add", "--redis", redis.url, "--digest", plain_digest(secret_for(name)),
            "--name", name, *options,
        )  # fmt: skip
        assert (code, err) == (0, ""), err
        shown = f"key_id: {name}\n" + (f"limit:  {text}\n" if expected is not None else "")
        assert out == shown
    stored = {key.key_id: key.limit for key in list_keys(redis.url)}
    assert stored == {name: expected for name, _, expected, _ in CLI_FORMS}

    code, out, _ = run_cli("keys", "list", "--redis", redis.url)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["key_id", "state", "expires_at", "limit", "scopes"]
    assert {row.split()[0]: row.split()[3] for row in rows} == {
        name: text for name, _, _, text in CLI_FORMS
    }
    code, out, _ = run_cli("keys", "list", "--redis", redis.url, "--json")
    assert code == 0
    assert {key["key_id"]: key["limit"] for key in json.loads(out)} == {
        name: expected.as_data() if expected is not None else None
        for name, _, expected, _ in CLI_FORMS
    }


def test_keys_add_json_and_a_new_key_with_a_limit(redis: RedisServer) -> None:
    code, out, err = run_cli(
        "keys", "add", "--redis", redis.url, "--name", "made", "--limit", "5/15m", "--json"
    )
    assert code == 0, err
    added = json.loads(out)
    assert added["limit"] == "5/15m"
    assert added["key"].startswith("sk-")
    code, out, err = run_cli("keys", "add", "--redis", redis.url, "--limit", "1/s", "--stdin",
                             stdin=CANARY + "\n")  # fmt: skip
    assert code == 0, err
    assert out == f"key_id: {APIKey(CANARY).key_id}\nlimit:  1/second\n"
    assert_no_secret_in(out + err)
    [stored] = [key for key in list_keys(redis.url) if key.key_id == "made"]
    assert stored.limit == RateLimit("5/15m")
    assert isinstance(stored, StoredKey)


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (["--unlimited", "--limit", "5/s"], 2, "--unlimited goes alone: drop --limit\n"),
        (["--unlimited", "--quota", "5/day"], 2, "--unlimited goes alone: drop --quota\n"),
        (["--unlimited", "--burst", "5"], 2, "--unlimited goes alone: drop --burst\n"),
        (["--burst", "5"], 2, "--burst goes with --limit, such as --limit 100/minute --burst 20\n"),
        (["--burst", "5", "--quota", "5/day"], 2, "--burst goes with --limit"),
        (["--limit", CANARY], 1, "--limit: a rate is '<count>/<period>'"),
        (["--limit", "5/s", "--burst", CANARY], 1, "--limit and --burst: burst must be a whole"),
        (["--limit", "5/s", "--burst", "0"], 1, "burst must be a whole number of requests"),
        (["--limit", "5/s", "--burst", "-3"], 1, "burst must be a whole number of requests"),
        (["--quota", CANARY], 1, "--quota: a quota is '<count>/<window>'"),
        (["--quota", "5/week"], 1, "(windows: hour, day, month)"),
        (["--limit", "5/fortnight"], 1, "(periods: second, minute, hour, day)"),
    ],
    ids=[
        "unlimited-limit", "unlimited-quota", "unlimited-burst", "burst-alone",
        "burst-quota", "key-as-limit", "key-as-burst", "zero-burst", "negative-burst",
        "key-as-quota", "week", "fortnight",
    ],
)  # fmt: skip
def test_keys_add_refuses_bad_limits_in_one_line(
    redis: RedisServer, options: list[str], code: int, message: str
) -> None:
    ran = run_cli("keys", "add", "--redis", redis.url, "--name", "x", *options)
    assert ran[:2] == (code, "")
    assert ran[2].startswith("error: ")
    assert message in ran[2]
    assert ran[2].count("\n") == 1
    assert_no_secret_in(ran[2])
    assert list_keys(redis.url) == []


@pytest.mark.parametrize(("options", "expected"), [(f[1], f[2]) for f in CLI_FORMS], ids=CLI_IDS)
def test_keygen_toml_writes_the_limit_line_a_key_file_reads(
    tmp_path: Path, options: list[str], expected: RateLimit | None
) -> None:
    code, out, err = run_cli("keygen", "--toml", "--name", "gen", *options)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("limit = ")]
    assert len(lines) == (0 if expected is None else 1)
    key = re.search(r": (\S+)\n$", err)
    assert key is not None
    path = key_file(tmp_path, out)
    auth = APIKeyAuth(keys_file=path)
    context = auth.verify(key.group(1))
    assert context is not None
    assert context.key_id == "gen"
    assert auth.snapshot.by_digest[raw_digest(key.group(1))].key.limit == expected


def test_keygen_writes_a_table_for_the_inline_forms() -> None:
    code, out, _ = run_cli("keygen", "--toml", "--limit", "100/minute", "--burst", "20",
                           "--quota", "10000/day")  # fmt: skip
    assert code == 0
    assert out.splitlines()[-1] == (
        'limit = { rate = "100/minute", burst = 20, quota = "10000/day" }'
    )
    assert run_cli("keygen", "--toml", "--quota", "5/hour")[1].splitlines()[-1] == (
        'limit = { quota = "5/hour" }'
    )


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (["--limit", "5/s"], 2, "error: the limit options go into the [[keys]] table that "
         "--toml prints: add --toml\n"),
        (["--unlimited"], 2, "error: the limit options go into the [[keys]] table"),
        (["--toml", "--unlimited", "--limit", "5/s"], 2, "error: --unlimited goes alone"),
        (["--toml", "--burst", "2"], 2, "error: --burst goes with --limit"),
        (["--toml", "--limit", CANARY], 1, "error: --limit: a rate is"),
        (["--toml", "--quota", "1/year"], 1, "error: --quota: a quota is"),
    ],
    ids=["no-toml", "unlimited-no-toml", "unlimited-limit", "burst-alone", "key", "year"],
)  # fmt: skip
def test_keygen_refuses_bad_limit_options(options: list[str], code: int, message: str) -> None:
    ran = run_cli("keygen", *options)
    assert ran[:2] == (code, "")
    assert ran[2].startswith(message)
    assert ran[2].count("\n") == 1
    assert_no_secret_in(ran[2])


@pytest.mark.parametrize("command", [["keygen"], ["keys", "add"]], ids=["keygen", "keys-add"])
def test_the_limit_options_are_in_the_help(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    shown = capsys.readouterr().out
    for option in ("--limit RATE", "--burst N", "--quota QUOTA", "--unlimited"):
        assert option in shown


def test_a_password_protected_store_keeps_limits_too(tmp_path: Path) -> None:
    with running_redis(tmp_path, password="redis-pass-4d2c1b0a") as server:
        code, _, err = run_cli("keys", "add", "--redis", server.url, "--name", "p",
                               "--quota", "3/month")  # fmt: skip
        assert code == 0, err
        assert [key.limit for key in list_keys(server.url)] == [RateLimit(quota="3/month")]
