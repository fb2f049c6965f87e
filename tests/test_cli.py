"""The command line: keygen, hash and check, their output and their exit codes.

``demo`` and the top-level ``--help`` are in test_demo.py. Every ``check`` run
here goes through :func:`_check`, which also asserts that no configured key
appears in what the command printed.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import asgi_apikey
import asgi_apikey.auth
from asgi_apikey import APIKey, APIKeyAuth
from asgi_apikey.cli import main
from asgi_apikey.cli_app import route_paths
from asgi_apikey.headers import DOCS_CONTENT_SECURITY_POLICY, STRICT_CONTENT_SECURITY_POLICY
from asgi_apikey.settings import load_key_file
from tests.asgi import AUTH_VARIABLES, CANARY, OTHER_KEY

#: Too short for production (under 16 characters), fine elsewhere.
SHORT = "sk-Zq9xW2vT"
#: Not a valid key (a space, a comma): its text must not be echoed either.
BAD_SPACE = "sk-canary bad-9e8d7c6b5a4f"
BAD_COMMA = f"{CANARY},{OTHER_KEY}"
#: A valid key that only the --app modules hold.
APP_KEY = "sk-appkey-7c1d2e3f4a5b6c7d8e9f"
#: Everything that must never appear in check's output.
SECRETS = (CANARY, OTHER_KEY, SHORT, BAD_SPACE, APP_KEY)

PROJECT_ROOT = Path(asgi_apikey.__file__).resolve().parent.parent


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _keep_default_authenticator(monkeypatch: pytest.MonkeyPatch) -> None:
    # check builds APIKeyAuth.from_env(), which becomes the process default.
    monkeypatch.setattr(asgi_apikey.auth, "_default", asgi_apikey.auth._default)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = main(list(argv))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    run = _run(capsys, "check", *argv)
    for secret in SECRETS:
        assert secret not in run.out + run.err
    return run


def _check_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    run = _check(capsys, "--json", *argv)
    assert run.code == 0, run.err
    assert run.err == ""
    return json.loads(run.out)


def _set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _sha256(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _stamp(moment: datetime) -> str:
    """A UTC instant as a TOML date-time, the form check prints it in."""
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- keygen -------------------------------------------------------------------------------

_KEYGEN_OUTPUT = re.compile(r"key:    (?P<key>\S+)\ndigest: (?P<digest>sha256:[0-9a-f]{64})\n")


def _keygen(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    run = _run(capsys, "keygen", *argv)
    assert run.code == 0, run.err
    assert run.err == ""
    match = _KEYGEN_OUTPUT.fullmatch(run.out)
    assert match is not None, run.out
    return match["key"], match["digest"]


@pytest.mark.parametrize(
    ("argv", "size"),
    [([], 32), (["--bytes", "16"], 16), (["--bytes", "256"], 256)],
    ids=["default-256-bits", "bytes-16", "bytes-256"],
)
def test_keygen_prints_a_random_key_and_its_digest(
    capsys: pytest.CaptureFixture[str], argv: list[str], size: int
) -> None:
    key, digest = _keygen(capsys, *argv)
    assert key.startswith("sk-")
    random_part = key.removeprefix("sk-")
    assert len(random_part) == len(base64.urlsafe_b64encode(bytes(size)).rstrip(b"="))
    assert len(base64.urlsafe_b64decode(random_part + "=" * (-len(random_part) % 4))) == size
    assert digest == _sha256(key)
    auth = APIKeyAuth(keys=[APIKey(digest=digest, name="new")])
    verified = auth.verify(key)
    assert verified is not None
    assert verified.key_id == "new"


def test_keygen_is_different_each_run(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [_keygen(capsys) for _ in range(5)]
    assert len({key for key, _ in runs}) == 5
    assert len({digest for _, digest in runs}) == 5


@pytest.mark.parametrize(
    "prefix", ["", "live_", "a.b~+/-", "sk-billing-"], ids=["empty", "underscore", "all", "long"]
)
def test_keygen_prefix(capsys: pytest.CaptureFixture[str], prefix: str) -> None:
    key, digest = _keygen(capsys, "--prefix", prefix)
    assert key.startswith(prefix)
    assert len(key) == len(prefix) + 43
    assert APIKeyAuth(keys=[APIKey(digest=digest)]).verify(key) is not None


@pytest.mark.parametrize(
    "prefix",
    ["sk:", "s k-", "sk=", "sk-=", "ключ-", "sk\t", 'sk"', "sk,"],
    ids=["colon", "space", "equals", "equals-inside", "non-ascii", "tab", "quote", "comma"],
)
def test_keygen_refuses_a_prefix_a_bearer_token_cannot_carry(
    capsys: pytest.CaptureFixture[str], prefix: str
) -> None:
    run = _run(capsys, "keygen", "--prefix", prefix)
    assert run.code == 1
    assert run.out == ""
    assert run.err == "error: --prefix may hold only letters, digits and - . _ ~ + /\n"


@pytest.mark.parametrize("size", ["8", "15", "257", "0", "-32"], ids=str)
def test_keygen_refuses_sizes_outside_16_to_256(
    capsys: pytest.CaptureFixture[str], size: str
) -> None:
    run = _run(capsys, "keygen", "--bytes", size)
    assert run.code == 1
    assert run.out == ""
    assert run.err == "error: --bytes must be from 16 to 256\n"


def test_keygen_bytes_must_be_a_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["keygen", "--bytes", "many"])
    assert caught.value.code == 2
    assert "--bytes" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--name", " padded "], "error: a key name must be printable text"),
        (["--name", "tab\there"], "error: a key name must be printable text"),
        (["--scopes", "read,bad scope"], "error: scopes of key"),
    ],
    ids=["padded-name", "unprintable-name", "bad-scope"],
)
def test_keygen_refuses_bad_names_and_scopes(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    run = _run(capsys, "keygen", "--toml", *argv)
    assert run.code == 1
    assert run.out == ""
    assert run.err.startswith(message)
    assert run.err.count("\n") == 1


_TOML_KEY = re.compile(
    r"key \(give it to the client; the file holds only its digest\): (?P<key>\S+)\n"
)


def _keygen_toml(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    """stdout (the table) and the key (from stderr)."""
    run = _run(capsys, "keygen", "--toml", *argv)
    assert run.code == 0, run.err
    match = _TOML_KEY.fullmatch(run.err)
    assert match is not None, run.err
    key = match["key"]
    assert key.startswith("sk-")
    assert key not in run.out
    assert key.removeprefix("sk-") not in run.out
    return run.out, key


def test_keygen_toml_prints_a_key_file_table_and_the_key_on_stderr(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, key = _keygen_toml(capsys, "--name", "billing", "--scopes", "write, read,,")
    assert out == (
        f'[[keys]]\ndigest = "{_sha256(key)}"\nname = "billing"\nscopes = ["read", "write"]\n'
    )
    assert tomllib.loads(out) == {
        "keys": [{"digest": _sha256(key), "name": "billing", "scopes": ["read", "write"]}]
    }
    path = tmp_path / "keys.toml"
    path.write_text(out, encoding="utf-8")
    [(label, loaded)] = load_key_file(path)
    assert label == f"API_KEYS_FILE ({path}) keys[0]"
    assert (loaded.name, loaded.scopes, loaded.digest) == (
        "billing",
        frozenset({"read", "write"}),
        _sha256(key),
    )
    verified = APIKeyAuth(keys_file=path).verify(key)
    assert verified is not None
    assert verified.key_id == "billing"
    assert verified.scopes == {"read", "write", "authenticated"}


def test_keygen_toml_without_name_or_scopes(capsys: pytest.CaptureFixture[str]) -> None:
    out, key = _keygen_toml(capsys)
    assert out == f'[[keys]]\ndigest = "{_sha256(key)}"\n'


@pytest.mark.parametrize(
    "name",
    [
        'say "hi"',
        "back\\slash",
        "it's",
        '"""',
        'x", scopes = ["admin"], y = "',
        "[[keys]]",
        "café ☕",
        "🔑 billing",
    ],
    ids=[
        "quotes",
        "backslash",
        "apostrophe",
        "triple-quotes",
        "injection",
        "table-header",
        "non-ascii",
        "outside-bmp",
    ],
)
def test_keygen_toml_escapes_the_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    out, key = _keygen_toml(capsys, "--name", name, "--scopes", "read")
    assert tomllib.loads(out) == {
        "keys": [{"digest": _sha256(key), "name": name, "scopes": ["read"]}]
    }
    path = tmp_path / "keys.toml"
    path.write_text(out, encoding="utf-8")
    [(_, loaded)] = load_key_file(path)
    assert loaded.name == name
    assert loaded.scopes == {"read"}


@pytest.mark.parametrize(
    "name",
    ["🔑", "billing 🔑 team", "\U0001d518\U0001d52b\U0001d526", "キー 🗝️", "😀" * 10],
    ids=["key-emoji", "emoji-inside", "math-letters", "cjk-and-variation", "many"],
)
def test_keygen_toml_writes_names_outside_the_bmp_literally(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    out, key = _keygen_toml(capsys, "--name", name, "--scopes", "read,write")
    assert out == (
        f'[[keys]]\ndigest = "{_sha256(key)}"\nname = "{name}"\nscopes = ["read", "write"]\n'
    )
    assert "\\u" not in out  # no escapes, least of all surrogate pairs (TOML refuses them)
    assert tomllib.loads(out)["keys"][0]["name"] == name
    path = tmp_path / "keys.toml"
    path.write_text(out, encoding="utf-8")
    [(label, loaded)] = load_key_file(path)
    assert label == f"API_KEYS_FILE ({path}) keys[0]"
    assert (loaded.name, loaded.key_id, loaded.digest) == (name, name, _sha256(key))
    verified = APIKeyAuth(keys_file=path).verify(key)
    assert verified is not None
    assert verified.key_id == name
    assert verified.scopes == {"read", "write", "authenticated"}


# -- hash ---------------------------------------------------------------------------------


def _hash(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stdin: str) -> Run:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin, newline=""))
    return _run(capsys, "hash")


@pytest.mark.parametrize(
    ("stdin", "keys"),
    [
        (f"{CANARY}\n", [CANARY]),
        (CANARY, [CANARY]),
        (f"{CANARY}\n{OTHER_KEY}\n{SHORT}\n", [CANARY, OTHER_KEY, SHORT]),
        (f"{OTHER_KEY}\n{CANARY}", [OTHER_KEY, CANARY]),
        (f"\n\n{CANARY}\n\n{OTHER_KEY}\n\n", [CANARY, OTHER_KEY]),
        (f"{CANARY}\r\n{OTHER_KEY}\r\n", [CANARY, OTHER_KEY]),
        (f"{CANARY}\r\n\r\n", [CANARY]),
    ],
    ids=["one", "no-newline", "several", "in-order", "blank-lines", "crlf", "crlf-blank"],
)
def test_hash_prints_one_digest_per_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stdin: str, keys: list[str]
) -> None:
    run = _hash(monkeypatch, capsys, stdin)
    assert run.code == 0, run.err
    assert run.err == ""
    assert run.out == "".join(_sha256(key) + "\n" for key in keys)
    for key in keys:
        assert key not in run.out


@pytest.mark.parametrize("stdin", ["", "\n", "\n\n\r\n"], ids=["empty", "newline", "blank-lines"])
def test_hash_without_a_key_says_how_to_use_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stdin: str
) -> None:
    run = _hash(monkeypatch, capsys, stdin)
    assert run.code == 1
    assert run.out == ""
    assert run.err == "error: no key on standard input: python -m asgi_apikey hash < key.txt\n"


@pytest.mark.parametrize(
    ("stdin", "bad", "line"),
    [
        (f"{BAD_SPACE}\n", BAD_SPACE, 1),
        (f"{CANARY}\n{BAD_SPACE}\n{OTHER_KEY}\n", BAD_SPACE, 2),
        (f"\n{CANARY}\n\n{BAD_SPACE}\n", BAD_SPACE, 4),
        (f"{CANARY}\n {OTHER_KEY}\n", f" {OTHER_KEY}", 2),
        (f"{CANARY}\nключ-секрет-0123456789\n", "ключ-секрет-0123456789", 2),
        ("sha256:" + "ab" * 32 + "\n", "ab" * 32, 1),
        (f"{CANARY}\n{BAD_COMMA}\n", BAD_COMMA, 2),
    ],
    ids=[
        "space",
        "second-line",
        "counts-blank-lines",
        "leading-space",
        "non-ascii",
        "digest",
        "comma",
    ],
)
def test_hash_names_the_bad_line_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stdin: str,
    bad: str,
    line: int,
) -> None:
    run = _hash(monkeypatch, capsys, stdin)
    assert run.code == 1
    assert run.out == ""  # nothing, not even the digests of the good lines before it
    assert run.err.startswith(f"error: line {line}: an API key ")
    assert run.err.count("\n") == 1
    assert bad not in run.err
    assert bad.strip() not in run.err
    for secret in SECRETS:
        assert secret not in run.err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("typed", "code", "out"),
    [
        (CANARY, 0, _sha256(CANARY) + "\n"),
        ("", 1, ""),
        (BAD_SPACE, 1, ""),
    ],
    ids=["key", "nothing-typed", "bad-key"],
)
def test_hash_on_a_terminal_prompts_with_getpass(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    typed: str,
    code: int,
    out: str,
) -> None:
    prompts: list[str] = []

    def getpass(prompt: str = "Password: ", stream: object = None) -> str:
        prompts.append(prompt)
        return typed

    monkeypatch.setattr("asgi_apikey.cli.getpass.getpass", getpass)
    monkeypatch.setattr("sys.stdin", _Terminal(f"{OTHER_KEY}\n"))
    run = _run(capsys, "hash")
    assert prompts == ["key (hidden): "]
    assert (run.code, run.out) == (code, out)
    assert OTHER_KEY not in run.out  # what the terminal holds is not read
    for secret in SECRETS:
        assert secret not in run.out + run.err


# -- check: reports -----------------------------------------------------------------------

_DEVELOPMENT_WARNING = (
    "no API keys are configured and ENVIRONMENT is not set: development mode serves only "
    "this machine (loopback clients that name it as the host, through no proxy) and "
    "refuses every other client with 401. Set API_KEY (or pass keys=[...]) to serve them, "
    "or ENVIRONMENT=development to open development mode to every client; "
    "ENVIRONMENT=staging or production refuses to start like this."
)
_ENVIRONMENT_WARNING = (
    "ENVIRONMENT is not set, so it counts as development: set it, and to production "
    "in production, so the production rules apply"
)
_DEFAULT_OPTIONAL_WARNING = (
    "paths that no rule names are optional: default='protected' denies them unless a rule "
    "opens them"
)
_QUERY_WARNING = "allow_query_token is on: keys in URLs reach access logs and browser history"


def test_check_without_configuration_reports_development_mode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _check(capsys)
    assert run.code == 0
    assert run.err == ""
    # The whole output is the report: the development-mode log line is suppressed.
    assert run.out == (
        "environment: development\n"
        "mode:        test (development: this machine only)\n"
        "keys:        0\n"
        "features:    expiry, metadata, permissions, rotation, scopes\n"
        "warnings:\n"
        f"  - {_DEVELOPMENT_WARNING}\n"
        f"  - {_ENVIRONMENT_WARNING}\n"
    )


def test_check_in_production_with_a_key_has_no_warnings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _set_env(monkeypatch, {"API_KEY": CANARY, "ENVIRONMENT": "production"})
    run = _check(capsys)
    assert run.code == 0
    assert run.err == ""
    assert run.out == (
        "environment: production\n"
        "mode:        simple\n"
        f"keys:        1 ({APIKey(CANARY).key_id})\n"
        "features:    expiry, metadata, permissions, rotation, scopes\n"
        "no warnings\n"
    )


def test_check_json_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _check_json(capsys)
    assert set(report) == {"status", "rules", "warnings"}
    assert report["rules"] == []
    assert report["warnings"] == [_DEVELOPMENT_WARNING, _ENVIRONMENT_WARNING]
    assert report["status"]["mode"] == "test"
    assert report["status"]["development_mode"] is True
    assert report["status"]["key_count"] == 0

    _set_env(monkeypatch, {"API_KEY": CANARY, "ENVIRONMENT": "production"})
    report = _check_json(capsys)
    status = APIKeyAuth(keys=[CANARY], environment="production").status()
    del status["counters"]  # nothing served yet: check leaves them out
    assert status["source"] is None  # keys= alone; check reads the environment
    status["source"] = {"kind": "environment"}
    assert report == {"status": status, "rules": [], "warnings": []}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"mode": "test", "environment": "development", "development_mode": True}),
        ({"ENVIRONMENT": "testing"}, {"mode": "test", "environment": "testing", "key_count": 0}),
        (
            {"API_KEY": CANARY, "ADDITIONAL_API_KEYS": f" {OTHER_KEY} ,, {SHORT}"},
            {
                "mode": "simple",
                "key_count": 3,
                "key_ids": sorted(APIKey(k).key_id for k in (CANARY, OTHER_KEY, SHORT)),
            },
        ),
        (
            {"API_KEY": CANARY, "AUTH_MODE": "Advanced"},
            {"mode": "advanced", "user_tracking": True, "metadata": True, "user_context": True},
        ),
        (
            {
                "API_KEY": CANARY,
                "AUTH_MODE": "advanced",
                "ENABLE_USER_TRACKING": "false",
                "ENABLE_REQUEST_LOGGING": "1",
            },
            {"mode": "advanced", "user_tracking": False, "request_logging": True},
        ),
        (
            {"API_KEY": CANARY, "ENABLE_USER_TRACKING": "yes", "ENVIRONMENT": "STAGING"},
            {"mode": "simple", "user_tracking": True, "environment": "staging"},
        ),
    ],
    ids=["nothing", "testing", "additional-keys", "advanced", "flags", "simple-tracking"],
)
def test_check_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    expected: dict[str, Any],
) -> None:
    _set_env(monkeypatch, env)
    status = _check_json(capsys)["status"]
    flat = {**status, **status["features"]}
    assert {name: flat[name] for name in expected} == expected


def test_check_text_lists_features_and_key_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(
        f'[[keys]]\ndigest = "{_sha256(CANARY)}"\nname = "billing"\n'
        f'[[keys]]\ndigest = "{_sha256(OTHER_KEY)}"\nname = "admin"\nscopes = ["admin"]\n',
        encoding="utf-8",
    )
    _set_env(
        monkeypatch,
        {"API_KEYS_FILE": str(path), "AUTH_MODE": "advanced", "ENVIRONMENT": "staging"},
    )
    run = _check(capsys)
    assert run.code == 0
    assert run.out.splitlines()[:4] == [
        "environment: staging",
        "mode:        advanced",
        "keys:        2 (admin, billing)",
        "features:    expiry, key_file, metadata, permissions, rotation, scopes, user_context, "
        "user_tracking",
    ]


def test_check_warns_about_a_short_key_outside_production(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _set_env(monkeypatch, {"API_KEY": SHORT, "ENVIRONMENT": "testing"})
    report = _check_json(capsys)
    assert report["warnings"] == [
        f"key {APIKey(SHORT).key_id!r} is shorter than 16 characters, which "
        "ENVIRONMENT=staging and production refuse"
    ]


def test_check_warns_about_expired_expiring_and_not_yet_valid_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    expired, soon, later, far = (
        now - timedelta(days=1),
        now + timedelta(days=2),
        now + timedelta(days=1),
        now + timedelta(days=30),
    )
    path = tmp_path / "keys.toml"
    path.write_text(
        f'[[keys]]\ndigest = "{_sha256(CANARY)}"\nname = "old"\nexpires_at = {_stamp(expired)}\n'
        f'[[keys]]\ndigest = "{_sha256(OTHER_KEY)}"\nname = "soon"\nexpires_at = {_stamp(soon)}\n'
        f'[[keys]]\ndigest = "{_sha256(APP_KEY)}"\nname = "later"\nnot_before = {_stamp(later)}\n'
        f'[[keys]]\ndigest = "{_sha256(SHORT)}"\nname = "fine"\nexpires_at = {_stamp(far)}\n'
        f"not_before = {_stamp(expired)}\n",
        encoding="utf-8",
    )
    _set_env(monkeypatch, {"API_KEYS_FILE": str(path), "ENVIRONMENT": "staging"})
    report = _check_json(capsys)
    assert sorted(report["warnings"]) == sorted(
        [
            f"key 'old' has expired ({_stamp(expired)})",
            f"key 'soon' expires soon ({_stamp(soon)})",
            f"key 'later' is not valid yet ({_stamp(later)})",
        ]
    )
    assert report["status"]["inactive_key_ids"] == ["later", "old"]
    assert report["status"]["key_count"] == 4
    assert _check(capsys, "--strict").code == 1


def test_check_reports_a_key_source_without_keys_as_enforcing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A configured source with no key refuses every request: not development mode.
    path = tmp_path / "keys.toml"
    path.write_text("# no keys yet\n", encoding="utf-8")
    for env in ({"ADDITIONAL_API_KEYS": ", ,"}, {"API_KEYS_FILE": str(path)}):
        with monkeypatch.context() as mp:
            _set_env(mp, {"ENVIRONMENT": "testing", **env})
            report = _check_json(capsys)
        assert report["status"]["development_mode"] is False
        assert report["status"]["mode"] == "simple"
        assert report["status"]["key_count"] == 0
        assert _DEVELOPMENT_WARNING not in report["warnings"]


@pytest.mark.parametrize(
    ("env", "argv", "code"),
    [
        ({}, [], 1),
        ({}, ["--json"], 1),
        ({"API_KEY": CANARY}, [], 1),
        ({"API_KEY": SHORT, "ENVIRONMENT": "testing"}, [], 1),
        ({"API_KEY": CANARY, "ENVIRONMENT": "production"}, [], 0),
        ({"API_KEY": CANARY, "ENVIRONMENT": "staging"}, ["--json"], 0),
    ],
    ids=[
        "development-mode",
        "development-mode-json",
        "environment-unset",
        "short-key",
        "clean",
        "clean-json",
    ],
)
def test_check_strict_fails_on_warnings(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    argv: list[str],
    code: int,
) -> None:
    _set_env(monkeypatch, env)
    assert _check(capsys, *argv).code == 0  # warnings alone do not fail
    strict = _check(capsys, "--strict", *argv)
    assert strict.code == code
    assert strict.err == ""
    assert ("warnings:" in strict.out or '"warnings": [\n' in strict.out) == (code == 1)


# -- check: bad configuration -------------------------------------------------------------

#: {file} in a value is replaced by the path of a key file holding ``key_file``
#: (or of a file that does not exist, when ``key_file`` is None).
_BAD_CONFIGURATIONS: list[tuple[dict[str, str], str | None, list[str]]] = [
    ({"AUTH_MODE": "fancy"}, None, ["error: AUTH_MODE must be 'simple' or 'advanced'", "fancy"]),
    (
        {"ENVIRONMENT": "prod", "API_KEY": CANARY},
        None,
        ["error: ENVIRONMENT must be one of development, testing, staging, production"],
    ),
    (
        {"ENABLE_REQUEST_LOGGING": "sometimes", "API_KEY": CANARY},
        None,
        ["error: ENABLE_REQUEST_LOGGING must be true or false"],
    ),
    (
        {"ENVIRONMENT": "production"},
        None,
        [
            "error: no API key is configured (API_KEY, ",
            "ENVIRONMENT=production refuses to start that way",
            "set API_KEY",
        ],
    ),
    (
        {"ENVIRONMENT": "production", "API_KEY": SHORT},
        None,
        ["error: API_KEY is shorter than 16 characters", "ENVIRONMENT=production"],
    ),
    (
        {"ENVIRONMENT": "production", "API_KEY": CANARY, "ADDITIONAL_API_KEYS": SHORT},
        None,
        ["error: ADDITIONAL_API_KEYS (key 1) is shorter than 16 characters"],
    ),
    (
        {"API_KEY": CANARY, "ADDITIONAL_API_KEYS": f"{OTHER_KEY},{CANARY}"},
        None,
        ["error: ADDITIONAL_API_KEYS (key 2) is the same key as API_KEY"],
    ),
    (
        {"API_KEY": BAD_SPACE},
        None,
        ["error: API_KEY: an API key has characters a Bearer token cannot carry"],
    ),
    (
        {"API_KEY": BAD_COMMA},
        None,
        ["error: API_KEY: ", "list the others, comma-separated, in ADDITIONAL_API_KEYS"],
    ),
    (
        {"API_KEYS_FILE": "{file}"},
        None,
        ["error: API_KEYS_FILE ({file}) does not exist", "unset API_KEYS_FILE"],
    ),
    (
        {"API_KEYS_FILE": "{file}"},
        f'[[keys]]\nkey = "{CANARY}"\n',
        ["error: API_KEYS_FILE ({file}) keys[0] holds a plain key"],
    ),
    (
        {"API_KEYS_FILE": "{file}"},
        f'[[keys]]\ndigest = "{CANARY}\n',
        ["error: API_KEYS_FILE ({file}) is not valid TOML"],
    ),
    (
        {"API_KEYS_FILE": "{file}", "API_KEY": CANARY},
        f'[[keys]]\ndigest = "{_sha256(CANARY)}"\n',
        ["error: API_KEYS_FILE ({file}) keys[0] is the same key as API_KEY"],
    ),
    (
        {"API_KEYS_FILE": "{file}", "ENVIRONMENT": "production"},
        "# no keys yet\n",
        ["error: no API key is configured (", "hold none", "ENVIRONMENT=production refuses"],
    ),
    (
        {"ADDITIONAL_API_KEYS": " , ,", "ENVIRONMENT": "production"},
        None,
        ["error: no API key is configured (", "ENVIRONMENT=production refuses"],
    ),
    (
        {"API_KEY": CANARY, "ENVIRONMENT": "staging", "environment": "production"},
        None,
        ["error: ENVIRONMENT is set more than once, as ENVIRONMENT, environment: keep one"],
    ),
    (
        {"API_KEY": CANARY, "AUTH_MODE": OTHER_KEY},
        None,
        ["error: AUTH_MODE must be 'simple' or 'advanced'\n"],
    ),
    (
        {"API_KEYS_FILE": "{file}"},
        f"[{CANARY}]\n[{CANARY}]\n",
        ["error: API_KEYS_FILE ({file}) is not valid TOML (at line 2, column 32): fix the syntax"],
    ),
    (
        {"API_KEYS_FILE": "{file}"},
        f'[[keys]]\ndigest = "{_sha256(CANARY)}"\n"{OTHER_KEY}" = 1\n',
        ["error: API_KEYS_FILE ({file}) keys[0] has unknown field 1 other not shown: use ["],
    ),
]


@pytest.mark.parametrize(
    ("env", "key_file", "expected"),
    _BAD_CONFIGURATIONS,
    ids=[
        "auth-mode",
        "environment",
        "flag",
        "production-without-key",
        "production-short-key",
        "production-short-additional-key",
        "duplicate-key",
        "key-with-space",
        "several-keys-in-api-key",
        "key-file-missing",
        "key-file-plain-key",
        "key-file-not-toml",
        "key-file-duplicate",
        "production-key-file-without-keys",
        "production-only-empty-items",
        "set-twice",
        "key-in-auth-mode",
        "key-file-duplicated-table-key",
        "key-file-key-as-field-name",
    ],
)
@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_check_bad_configuration_exits_1_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    env: dict[str, str],
    key_file: str | None,
    expected: list[str],
    json_output: bool,
) -> None:
    path = tmp_path / "keys.toml"
    if key_file is not None:
        path.write_text(key_file, encoding="utf-8")
    _set_env(monkeypatch, {name: value.format(file=path) for name, value in env.items()})
    run = _check(capsys, *(["--json"] if json_output else []))
    assert run.code == 1
    assert run.out == ""
    assert run.err.count("\n") == 1
    assert run.err.endswith("\n")
    for text in expected:
        assert text.format(file=path) in run.err


# -- check --app --------------------------------------------------------------------------


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Write a module into tmp_path (the working directory) and return its name."""
    monkeypatch.syspath_prepend(str(tmp_path))  # restores sys.path, which load_app may change
    monkeypatch.chdir(tmp_path)
    written: list[str] = []

    def write(source: str) -> str:
        name = f"cli_check_app_{tmp_path.name.replace('-', '_')}_{len(written)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        written.append(name)
        importlib.invalidate_caches()
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


_STARLETTE_APP = f"""
    from starlette.applications import Starlette
    from starlette.middleware.gzip import GZipMiddleware

    from asgi_apikey import APIKey, APIKeyMiddleware

    app = Starlette()
    app.add_middleware(GZipMiddleware)
    app.add_middleware(
        APIKeyMiddleware,
        keys=[APIKey({APP_KEY!r}, name="admin", scopes={{"admin"}}), {CANARY!r}],
        public=["/health"],
        protected={{"/admin": {{"admin"}}}},
        default="optional",
        allow_query_token=True,
    )
"""

_STARLETTE_RULES = [
    {"path": "/health", "access": "public", "scopes": []},
    {"path": "/admin", "access": "protected", "scopes": ["admin"]},
    {"path": "/", "access": "optional", "scopes": []},
]


def test_check_app_lists_a_starlette_apps_rules_and_warnings(
    capsys: pytest.CaptureFixture[str], app_module: Callable[[str], str]
) -> None:
    module = app_module(_STARLETTE_APP)
    run = _check(capsys, "--app", f"{module}:app")
    assert run.code == 0
    assert run.err == ""
    assert run.out == (
        "environment: development\n"
        "mode:        simple\n"
        f"keys:        2 (admin, {APIKey(CANARY).key_id})\n"
        "features:    expiry, metadata, permissions, rotation, scopes\n"
        "rules:\n"
        "  /health                      public\n"
        "  /admin                       protected  needs admin\n"
        "  /                            optional\n"
        "headers per path (the ones that differ; check --json has the values):\n"
        "  /docs/oauth2-redirect        Content-Security-Policy\n"
        "  /redoc                       Content-Security-Policy\n"
        "  /docs                        Content-Security-Policy\n"
        "warnings:\n"
        f"  - {_ENVIRONMENT_WARNING}\n"
        f"  - {_DEFAULT_OPTIONAL_WARNING}\n"
        f"  - {_QUERY_WARNING}\n"
    )
    assert _check(capsys, "--app", f"{module}:app", "--strict").code == 1


def test_check_app_json(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app_module: Callable[[str], str],
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    module = app_module(_STARLETTE_APP)
    [report] = _check_json(capsys, "--app", f"{module}:app")
    assert set(report) == {"status", "rules", "warnings", "middleware"}
    assert report["rules"] == _STARLETTE_RULES
    assert report["warnings"] == [_DEFAULT_OPTIONAL_WARNING, _QUERY_WARNING]
    headers = report["middleware"].pop("path_security_headers")
    # Longest first, then the rest.
    assert list(headers) == ["/docs/oauth2-redirect", "/redoc", "/docs", "/"]
    assert headers["/docs"]["Content-Security-Policy"] == DOCS_CONTENT_SECURITY_POLICY
    assert headers["/"]["Content-Security-Policy"] == STRICT_CONTENT_SECURITY_POLICY
    assert report["middleware"] == {
        "default": "optional",
        "realm": "api",
        "header_name": None,
        "allow_query_token": True,
        "allow_cors_preflight": False,
        "security_headers": True,
        "default_scopes": [],
        "max_path_length": 8192,
        "rate_limits": None,
    }
    assert report["status"]["key_ids"] == sorted(["admin", APIKey(CANARY).key_id])


def test_check_app_finds_the_middleware_of_a_started_starlette_app(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app_module: Callable[[str], str],
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    module = app_module(
        _STARLETTE_APP + "\n    app.middleware_stack = app.build_middleware_stack()\n"
    )
    [report] = _check_json(capsys, "--app", f"{module}:app")  # found once, not twice
    assert report["rules"] == _STARLETTE_RULES


def test_check_app_wrapped_directly(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app_module: Callable[[str], str],
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "staging")
    module = app_module(
        f"""
        from asgi_apikey import APIKeyMiddleware


        async def inner(scope, receive, send):
            raise AssertionError("check must not call the app")


        class holder:
            app = APIKeyMiddleware(
                inner,
                keys=[{APP_KEY!r}],
                public=["/ping"],
                optional=["/docs"],
                security_headers=False,
                header_name="X-API-Key",
            )
        """
    )
    [report] = _check_json(capsys, "--app", f"{module}:holder.app")
    assert report["rules"] == [
        {"path": "/docs", "access": "optional", "scopes": []},
        {"path": "/ping", "access": "public", "scopes": []},
        {"path": "/", "access": "protected", "scopes": []},
    ]
    assert report["warnings"] == ["security headers are switched off"]
    assert report["middleware"]["header_name"] == "X-API-Key"
    assert report["status"]["key_ids"] == [APIKey(APP_KEY).key_id]
    text = _check(capsys, "--app", f"{module}:holder.app")
    assert "  /ping                        public\n" in text.out
    assert "  /                            protected\n" in text.out


def test_check_app_reports_each_middleware(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app_module: Callable[[str], str],
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    module = app_module(
        f"""
        from starlette.applications import Starlette

        from asgi_apikey import APIKeyMiddleware

        app = APIKeyMiddleware(
            APIKeyMiddleware(Starlette(), keys=[{CANARY!r}], public=["/inner"]),
            keys=[{APP_KEY!r}],
            public=["/outer"],
        )
        """
    )
    reports = _check_json(capsys, "--app", f"{module}:app")
    assert sorted(report["rules"][0]["path"] for report in reports) == ["/inner", "/outer"]


_MOUNTED_APPS = {
    "starlette-sub-app": f"""
        from starlette.applications import Starlette
        from starlette.routing import Mount

        from asgi_apikey import APIKeyMiddleware

        sub_app = Starlette()
        sub_app.add_middleware(APIKeyMiddleware, keys=[{APP_KEY!r}], public=["/ping"])
        app = Starlette(routes=[Mount("/api", app=sub_app)])
        """,
    "started-sub-app": f"""
        from starlette.applications import Starlette
        from starlette.routing import Mount

        from asgi_apikey import APIKeyMiddleware

        sub_app = Starlette()
        sub_app.add_middleware(APIKeyMiddleware, keys=[{APP_KEY!r}], public=["/ping"])
        sub_app.middleware_stack = sub_app.build_middleware_stack()
        app = Starlette(routes=[Mount("/api", app=sub_app)])
        """,
    "middleware-mounted": f"""
        from starlette.applications import Starlette
        from starlette.routing import Mount

        from asgi_apikey import APIKeyMiddleware

        app = Starlette(
            routes=[Mount("/api", app=APIKeyMiddleware(Starlette(), keys=[{APP_KEY!r}],
                                                      public=["/ping"]))]
        )
        """,
    "nested-mounts": f"""
        from starlette.applications import Starlette
        from starlette.routing import Mount, Route
        from starlette.responses import PlainTextResponse

        from asgi_apikey import APIKeyMiddleware

        sub_app = Starlette()
        sub_app.add_middleware(APIKeyMiddleware, keys=[{APP_KEY!r}], public=["/ping"])
        app = Starlette(
            routes=[
                Route("/", PlainTextResponse("home")),
                Mount("/v1", routes=[Mount("/api", app=sub_app)]),
            ]
        )
        """,
    "router-host": f"""
        from starlette.applications import Starlette
        from starlette.routing import Host, Router

        from asgi_apikey import APIKeyMiddleware

        sub_app = Starlette()
        sub_app.add_middleware(APIKeyMiddleware, keys=[{APP_KEY!r}], public=["/ping"])
        app = Router(routes=[Host("api.example.com", app=sub_app)])
        """,
}


@pytest.mark.parametrize("source", list(_MOUNTED_APPS.values()), ids=list(_MOUNTED_APPS))
def test_check_app_finds_the_middleware_of_a_mounted_sub_application(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app_module: Callable[[str], str],
    source: str,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    module = app_module(source)
    [report] = _check_json(capsys, "--app", f"{module}:app")  # found once
    assert report["status"]["key_ids"] == [APIKey(APP_KEY).key_id]
    assert report["rules"] == [
        {"path": "/ping", "access": "public", "scopes": []},
        {"path": "/", "access": "protected", "scopes": []},
    ]
    assert report["warnings"] == []


def test_check_app_finds_both_the_outer_and_a_mounted_middleware(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app_module: Callable[[str], str],
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    module = app_module(
        f"""
        from starlette.applications import Starlette
        from starlette.routing import Mount

        from asgi_apikey import APIKeyMiddleware

        sub_app = Starlette()
        sub_app.add_middleware(APIKeyMiddleware, keys=[{APP_KEY!r}], public=["/inner"])
        app = Starlette(routes=[Mount("/api", app=sub_app)])
        app.add_middleware(APIKeyMiddleware, keys=[{CANARY!r}], public=["/outer"])
        """
    )
    reports = _check_json(capsys, "--app", f"{module}:app")
    assert sorted(report["rules"][0]["path"] for report in reports) == ["/inner", "/outer"]


def test_check_app_without_middleware_in_a_mounted_sub_application(
    capsys: pytest.CaptureFixture[str], app_module: Callable[[str], str]
) -> None:
    module = app_module(
        """
        from starlette.applications import Starlette
        from starlette.routing import Mount

        app = Starlette(routes=[Mount("/api", app=Starlette())])
        """
    )
    run = _check(capsys, "--app", f"{module}:app")
    assert run.code == 1
    assert run.err.startswith(f"error: no APIKeyMiddleware found in {module}:app")


def test_check_app_imports_from_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # As uvicorn does: a module in the working directory, with no sys.path entry for it.
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    name = f"cli_check_cwd_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(_STARLETTE_APP), encoding="utf-8")
    importlib.invalidate_caches()
    try:
        assert str(tmp_path) not in sys.path
        [report] = _check_json(capsys, "--app", f"{name}:app")
    finally:
        sys.modules.pop(name, None)
    assert report["rules"] == _STARLETTE_RULES


def test_check_app_survives_a_cycle(tmp_path: Path) -> None:
    # In a subprocess, so that a loop that never ends fails the test by its timeout.
    (tmp_path / "cyclic_app.py").write_text(
        textwrap.dedent(
            f"""
            from asgi_apikey import APIKeyMiddleware


            class Loop:
                async def __call__(self, scope, receive, send):
                    pass


            inner = Loop()
            app = APIKeyMiddleware(inner, keys=[{APP_KEY!r}])
            inner.app = app
            """
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "asgi_apikey", "check", "--json", "--app", "cyclic_app:app"],
        env=_command_env({"ENVIRONMENT": "production"}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert report["status"]["key_ids"] == [APIKey(APP_KEY).key_id]
    assert APP_KEY not in done.stdout + done.stderr


_NOT_LOADED = [
    # (source, target, message): each exits 2 with one line on stderr.
    ("app = None\n", "{module}", "error: --app must look like module:attribute, as uvicorn"),
    ("app = None\n", "{module}:", "error: --app must look like module:attribute, as uvicorn"),
    (
        "app = None\n",
        ":app",
        "error: --app must look like module:attribute, as uvicorn takes it, not ':app'\n",
    ),
    (
        "app = None\n",
        "no_such_module_for_check:app",
        "error: there is no module 'no_such_module_for_check' in ",
    ),
    (
        "app = None\n",
        "no_such_module_for_check.inner:app",
        "error: there is no module 'no_such_module_for_check.inner' in ",
    ),
    (
        "app = None\n",
        "{module}:application",
        "error: '{module}' has no attribute 'application': name the ASGI app object, such as "
        "{module}:app\n",
    ),
    ("app = None\n", "{module}:app.inner", "error: '{module}' has no attribute 'app.inner'"),
    (
        f"import os\nraise RuntimeError('bad key ' + {CANARY!r})\n",
        "{module}:app",
        "error: importing '{module}' raised RuntimeError at {module}.py, line 2: fix the module "
        "(--traceback shows",
    ),
    (
        f"raise SystemExit('set API_KEY, not ' + {CANARY!r})\n",
        "{module}:app",
        "error: importing '{module}' raised SystemExit at {module}.py, line 1",
    ),
    (
        "import no_such_dependency_for_check\n",
        "{module}:app",
        "error: importing '{module}' failed: it imports 'no_such_dependency_for_check', which "
        "is not installed: install it in this environment\n",
    ),
    (
        "from json import no_such_name_for_check\n",
        "{module}:app",
        "error: importing '{module}' failed (cannot import name 'no_such_name_for_check' from "
        "'json'",
    ),
    (
        f"def __getattr__(name):\n    raise RuntimeError({CANARY!r})\n",
        "{module}:app",
        "error: reading 'app' of '{module}' raised RuntimeError at {module}.py, line 2",
    ),
    (
        "app = None\n",
        "{module}:app",
        "error: '{module}:app' is a NoneType, not an ASGI "
        "application (a callable taking scope, receive and send): name the app object, such as "
        "{module}:app\n",
    ),
    (
        "def create_app():\n    return None\n",
        "{module}:create_app",
        "error: '{module}:create_app' is a callable that does not take (scope, receive, send) "
        "(an app factory?), not an ASGI application",
    ),
    (
        "from starlette.applications import Starlette\n"
        "from asgi_apikey import APIKeyMiddleware\n"
        f"app = Starlette()\napp.add_middleware(APIKeyMiddleware, kees=[{CANARY!r}])\n",
        "{module}:app",
        "error: building the APIKeyMiddleware declared on '{module}:app' raised TypeError at ",
    ),
]
_NOT_LOADED_IDS = [
    "no-colon",
    "no-attribute",
    "no-module",
    "missing-module",
    "missing-package",
    "missing-attribute",
    "missing-dotted-attribute",
    "raises-at-import",
    "exits-at-import",
    "missing-dependency",
    "bad-import",
    "attribute-raises",
    "not-callable",
    "factory",
    "bad-middleware-keyword",
]
_NOT_CONFIGURED = [
    # (source, target, message): bad configuration, exit 1.
    (
        "from starlette.applications import Starlette\napp = Starlette()\n",
        "{module}:app",
        "error: no APIKeyMiddleware found in {module}:app: add it with "
        "app.add_middleware(APIKeyMiddleware, ...)\n",
    ),
    (
        "async def app(scope, receive, send):\n    pass\n",
        "{module}:app",
        "error: no APIKeyMiddleware found in {module}:app",
    ),
    (
        "from starlette.applications import Starlette\n"
        "from asgi_apikey import APIKeyMiddleware\n"
        f"app = Starlette()\napp.add_middleware(APIKeyMiddleware, keys=[{CANARY!r}], "
        "default='open')\n",
        "{module}:app",
        "error: default must be 'protected', 'optional' or 'public', not 'open'\n",
    ),
    (
        "from asgi_apikey import APIKeyMiddleware\n"
        f"app = APIKeyMiddleware(None, keys=[{CANARY!r}], default='open')\n",
        "{module}:app",
        "error: default must be 'protected', 'optional' or 'public', not 'open'\n",
    ),
]
_NOT_CONFIGURED_IDS = [
    "starlette-without-middleware",
    "raw-app-without-middleware",
    "bad-middleware-argument",
    "bad-middleware-at-import",
]


@pytest.mark.parametrize(
    ("source", "target", "message", "code"),
    [(*case, 2) for case in _NOT_LOADED] + [(*case, 1) for case in _NOT_CONFIGURED],
    ids=_NOT_LOADED_IDS + _NOT_CONFIGURED_IDS,
)
def test_check_app_errors(
    capsys: pytest.CaptureFixture[str],
    app_module: Callable[[str], str],
    source: str,
    target: str,
    message: str,
    code: int,
) -> None:
    module = app_module(source)
    run = _check(capsys, "--app", target.format(module=module))
    assert run.code == code
    assert run.out == ""
    assert run.err.startswith(message.format(module=module))
    assert run.err.count("\n") == 1  # one line: no traceback


def test_check_traceback_shows_what_the_one_line_error_leaves_out(
    capsys: pytest.CaptureFixture[str], app_module: Callable[[str], str]
) -> None:
    module = app_module("import os\nraise RuntimeError('the app is broken')\n")
    run = _run(capsys, "check", "--app", f"{module}:app", "--traceback")
    assert run.code == 2
    first, rest = run.err.split("\n", 1)
    assert first.startswith(f"error: importing '{module}' raised RuntimeError at {module}.py")
    assert rest.startswith("Traceback (most recent call last):")
    assert rest.endswith("RuntimeError: the app is broken\n")


def test_python_m_asgi_apikey_check_app_that_raises_prints_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text(f"raise ValueError({CANARY!r})\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "asgi_apikey", "check", "--app", "broken_app:app"],
        env=_command_env({}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "error: importing 'broken_app' raised ValueError at broken_app.py, line 1: fix the "
        "module (--traceback shows the traceback and the message, left out here as it may "
        "quote a key)\n"
    )


# -- help and the real command ------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        ("keygen", ["new random key", "sha256 digest", "--prefix", "--bytes", "--toml"]),
        ("hash", ["standard input", "digest", "hash < key.txt"]),
        (
            "check",
            [
                "API_KEY",
                "API_KEYS_FILE",
                "--app",
                "MODULE:ATTR",
                "--json",
                "--strict",
                "--traceback",
            ],
        ),
    ],
    ids=["keygen", "hash", "check"],
)
def test_command_help(
    capsys: pytest.CaptureFixture[str], command: str, mentions: list[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert out.startswith(f"usage: python -m asgi_apikey {command}")
    for text in mentions:
        assert text in out


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for command in ("keygen", "hash", "check"):
        assert re.search(rf"^    {command} ", out, re.MULTILINE), command


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"asgi_apikey {asgi_apikey.__version__}\n"


def _command_env(env: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k.upper() not in AUTH_VARIABLES}
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), clean.get("PYTHONPATH")]))
    return {**clean, "PYTHONPATH": path, **env}


@pytest.mark.parametrize(
    ("env", "argv", "code", "stdout", "stderr"),
    [
        (
            {"ENVIRONMENT": "production"},
            [],
            1,
            "",
            "error: no API key is configured (API_KEY, ADDITIONAL_API_KEYS and API_KEYS_FILE "
            "hold none), and ENVIRONMENT=production refuses to start that way (without keys it "
            "would run in development mode or refuse everything): set API_KEY to a long random "
            "key ('python -m asgi_apikey keygen' makes one)\n",
        ),
        (
            {"ENVIRONMENT": "production", "API_KEY": CANARY, "ADDITIONAL_API_KEYS": CANARY},
            ["--json"],
            1,
            "",
            "error: ADDITIONAL_API_KEYS (key 1) is the same key as API_KEY",
        ),
        ({"AUTH_MODE": "fancy", "API_KEY": CANARY}, [], 1, "", "error: AUTH_MODE must be"),
        ({"ENVIRONMENT": "production", "API_KEY": CANARY}, ["--strict"], 0, "no warnings\n", ""),
        ({"API_KEY": CANARY}, ["--strict"], 1, "warnings:\n", ""),
    ],
    ids=["production-without-key", "duplicate-key", "auth-mode", "clean", "strict-warnings"],
)
def test_python_m_asgi_apikey_check(
    tmp_path: Path,
    env: dict[str, str],
    argv: list[str],
    code: int,
    stdout: str,
    stderr: str,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asgi_apikey", "check", *argv],
        env=_command_env(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert stdout in done.stdout if stdout else done.stdout == ""
    assert done.stderr.startswith(stderr) if stderr else done.stderr == ""
    assert "Traceback" not in done.stderr
    for secret in SECRETS:
        assert secret not in done.stdout + done.stderr


def test_hash_without_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", None)
    run = _run(capsys, "hash")
    assert (run.code, run.out) == (1, "")
    assert run.err == "error: no standard input: python -m asgi_apikey hash < key.txt\n"


def test_hash_refuses_more_than_a_mebibyte(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _hash(monkeypatch, capsys, (CANARY + "\n") * (1024 * 1024 // len(CANARY)))
    assert (run.code, run.out) == (1, "")
    assert run.err == "error: more than 1 MiB on standard input: give one key per line\n"


def test_check_warns_when_the_key_sources_hold_no_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ADDITIONAL_API_KEYS", ", ,")
    monkeypatch.setenv("ENVIRONMENT", "testing")
    report = _check_json(capsys)
    assert report["warnings"] == [
        "the configured key sources hold no key, so every protected request is refused; "
        "add keys, or leave every key source unset for development mode"
    ]


def test_check_names_the_key_variables_that_are_set_but_empty(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # API_KEY=${API_KEY} with the secret missing: say which variable to fill.
    monkeypatch.setenv("API_KEY", "")
    monkeypatch.setenv("API_KEYS_FILE", "")
    monkeypatch.setenv("ENVIRONMENT", "testing")
    report = _check_json(capsys)
    assert report["warnings"] == [
        "API_KEY and API_KEYS_FILE are set but empty (a missing secret?): the configured "
        "key sources hold no key, so every protected request is refused; add keys, or leave "
        "every key source unset for development mode"
    ]


_OPENING_APP = f"""
    from fastapi import FastAPI
    from starlette.routing import Mount, Route

    from asgi_apikey import APIKeyMiddleware

    async def nothing(request):
        return None

    app = FastAPI()
    for path in ("/v1", "/v1/models", "/v1/admin/{{name}}", "/health", "/ops/x"):
        app.router.routes.append(Route(path, nothing))
    app.router.routes.append(Mount("/tools", routes=[Route("/run", nothing)]))
    app.add_middleware(
        APIKeyMiddleware,
        keys=[{CANARY!r}],
        public=["/v1", "/health", "/docs", "/openapi.json"],
        optional=["/tools"],
    )
"""


def test_check_app_warns_about_rules_that_open_routes_they_do_not_name(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app_module: Callable[[str], str],
) -> None:
    """Issue 15: a rule opens every path below it; check names the routes it opens."""
    monkeypatch.setenv("ENVIRONMENT", "production")
    module = app_module(_OPENING_APP)
    [report] = _check_json(capsys, "--app", f"{module}:app")
    opened = [warning for warning in report["warnings"] if "also opens" in warning]
    assert opened == [
        "public rule '/v1' also opens /v1/admin/{name}, /v1/models, which it does not name: "
        "list them in protected= to keep them closed, or name the route itself",
        "optional rule '/tools' also opens /tools/run, which it does not name: "
        "list them in protected= to keep them closed, or name the route itself",
    ]
    # FastAPI's own /docs/oauth2-redirect under the public /docs is expected: no warning.
    assert not any("/docs" in warning for warning in report["warnings"])
    assert _check(capsys, "--app", f"{module}:app", "--strict").code == 1


_PREFIXED_APP = """
    from pydantic_settings import SettingsConfigDict
    from starlette.applications import Starlette

    from asgi_apikey import APIKeyAuth, APIKeyMiddleware
    from asgi_apikey.settings import AuthSettings

    class MyAppSettings(AuthSettings):
        model_config = SettingsConfigDict(env_prefix="MYAPP_")

    app = Starlette()
    app.add_middleware(APIKeyMiddleware, auth=APIKeyAuth(settings=MyAppSettings))
"""


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {},
            [
                "no API keys are configured and MYAPP_ENVIRONMENT is not set: development mode "
                "serves only this machine",
                "Set MYAPP_API_KEY (or pass keys=[...]) to serve them, or "
                "MYAPP_ENVIRONMENT=development to open development mode to every client; "
                "MYAPP_ENVIRONMENT=staging or production refuses to start like this.",
                "MYAPP_ENVIRONMENT is not set, so it counts as development",
            ],
            id="development",
        ),
        pytest.param(
            {"MYAPP_API_KEY": "", "MYAPP_ENVIRONMENT": "testing"},
            ["MYAPP_API_KEY is set but empty (a missing secret?): the configured key sources"],
            id="empty",
        ),
        pytest.param(
            {"MYAPP_API_KEY": SHORT, "MYAPP_ENVIRONMENT": "testing"},
            [
                f"key {APIKey(SHORT).key_id!r} is shorter than 16 characters, which "
                "MYAPP_ENVIRONMENT=staging and production refuse"
            ],
            id="short",
        ),
    ],
)
def test_check_app_names_the_variables_of_a_prefixed_settings_class(
    env: dict[str, str],
    expected: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app_module: Callable[[str], str],
) -> None:
    """An app whose AuthSettings subclass reads MYAPP_*: check names those variables."""
    for name in ("API_KEY", "ENVIRONMENT", "ADDITIONAL_API_KEYS", "API_KEYS_FILE"):
        monkeypatch.delenv(f"MYAPP_{name}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    module = app_module(_PREFIXED_APP)
    [report] = _check_json(capsys, "--app", f"{module}:app")
    text = "\n".join(report["warnings"])
    for part in expected:
        assert part in text
    # Every variable named is one the app reads.
    assert re.findall(r"\b(?<!MYAPP_)(?:API_KEY|ENVIRONMENT)\b", text) == []


def test_route_paths_of_something_that_is_not_starlette_is_empty() -> None:
    assert route_paths(object()) == (None, [])


_LIMITED_APP = f"""
from starlette.applications import Starlette
from asgi_apikey import APIKeyMiddleware, RateLimits

app = APIKeyMiddleware(
    Starlette(),
    keys=[{CANARY!r}],
    rate_limits=RateLimits(
        "100/minute",
        scopes={{"pro": {{"rate": "1000/minute", "quota": "1000000/month"}}}},
        paths={{"/v1/chat": "10/minute"}},
        anonymous="5/minute",
    ),
)
"""


def test_check_app_lists_the_rate_limits_in_text_and_json(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app_module: Callable[[str], str],
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    module = app_module(_LIMITED_APP)
    run = _check(capsys, "--app", f"{module}:app")
    assert run.code == 0, run.err
    block = run.out[run.out.index("rate limits:") :].splitlines()[:6]
    assert [line.split() for line in block] == [
        ["rate", "limits:"],
        ["keys", "without", "their", "own", "100/minute"],
        ["scope", "pro", "rate", "1000/minute,", "quota", "1000000/month"],
        ["/v1/chat", "10/minute", "per", "caller"],
        ["anonymous", "clients", "5/minute", "per", "address"],
        ["counted", "in", "each", "process"],
    ]
    [report] = _check_json(capsys, "--app", f"{module}:app")
    assert report["middleware"]["rate_limits"] == {
        "default": "100/minute",
        "scopes": {"pro": {"rate": "1000/minute", "quota": "1000000/month"}},
        "paths": {"/v1/chat": "10/minute"},
        "anonymous": "5/minute",
        "headers": False,
        "shared": None,
    }
