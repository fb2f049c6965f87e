"""The command line at a terminal: Ctrl-D and Ctrl-C at the hidden prompt, and keygen's options.

The prompt runs for real in a child process whose controlling terminal is a
pseudo-terminal, so what a user sees (a line on stderr, no traceback) is what
the test reads.
"""

from __future__ import annotations

import errno
import io
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asgi_apikey.cli import main

ROOT = Path(__file__).resolve().parent.parent

# A session leader that opens a terminal makes it its controlling terminal, so
# getpass reads /dev/tty and Ctrl-C there interrupts the command.
_ON_A_TERMINAL = """
import os, sys
os.setsid()
fd = os.open(sys.argv[1], os.O_RDWR)
for target in (0, 1, 2):
    os.dup2(fd, target)
os.execv(sys.executable, [sys.executable, "-m", "asgi_apikey", *sys.argv[2:]])
"""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _at_the_prompt(keys: bytes, *argv: str) -> tuple[int, str]:
    """Run ``python -m asgi_apikey argv`` on a terminal, type ``keys`` at its prompt."""
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-c", _ON_A_TERMINAL, os.ttyname(slave), *argv],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while b"key (hidden): " not in seen:
            chunk = _read(master, deadline, seen)
            if not chunk:  # no terminal open at the other end: not yet, or no longer
                assert child.poll() is None, f"the command ended before its prompt: {seen!r}"
                time.sleep(0.01)
            seen += chunk
        os.write(master, keys)
        while chunk := _read(master, deadline, seen):
            seen += chunk
        code = child.wait(timeout=max(deadline - time.monotonic(), 0.1))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
    return code, seen.decode(errors="replace").replace("\r\n", "\n")


def _read(master: int, deadline: float, seen: bytes) -> bytes:
    """What the terminal shows next; fails the test when nothing comes by ``deadline``."""
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not select.select([master], [], [], remaining)[0]:
        pytest.fail(f"the command showed nothing more in 30 s; it showed {seen!r}")
    try:
        return os.read(master, 4096)
    except OSError as error:  # the terminal's other end closed: the command ended
        if error.errno == errno.EIO:
            return b""
        raise


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_ctrl_d_at_the_hash_prompt_is_an_error_line_not_a_traceback() -> None:
    code, shown = _at_the_prompt(b"\x04", "hash")
    assert code == 1, shown
    assert "error: no key on standard input" in shown
    assert "Traceback" not in shown
    assert "EOFError" not in shown


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_ctrl_c_at_the_hash_prompt_exits_130_without_a_traceback() -> None:
    code, shown = _at_the_prompt(b"\x03", "hash")
    assert code == 130, shown
    assert shown.rstrip().endswith("interrupted")
    assert "Traceback" not in shown
    assert "KeyboardInterrupt" not in shown


@pytest.mark.parametrize("error", [EOFError, KeyboardInterrupt])
def test_the_prompt_of_keys_add_stdin_ends_like_the_hash_prompt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: type[Exception]
) -> None:
    pytest.importorskip("redis")

    def getpass(prompt: str = "Password: ", stream: object = None) -> str:
        raise error

    monkeypatch.setattr("getpass.getpass", getpass)
    monkeypatch.setattr("sys.stdin", _Terminal(""))
    argv = ["keys", "add", "--stdin", "--redis", "redis://127.0.0.1:9/0"]  # never reached
    if error is EOFError:
        assert main(argv) == 1
        assert capsys.readouterr().err == "\nerror: no key on standard input\n"
    else:
        with pytest.raises(KeyboardInterrupt):  # main lets it go; run() turns it into 130
            main(argv)


def test_ctrl_d_at_the_hash_prompt_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def getpass(prompt: str = "Password: ", stream: object = None) -> str:
        raise EOFError

    monkeypatch.setattr("getpass.getpass", getpass)
    monkeypatch.setattr("sys.stdin", _Terminal(""))
    assert main(["hash"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("\nerror: no key on standard input")


@pytest.mark.parametrize(
    "argv",
    [["--name", "billing"], ["--scopes", "read,write"], ["--name", "billing", "--scopes", "read"]],
    ids=["name", "scopes", "both"],
)
def test_keygen_name_or_scopes_without_toml_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(["keygen", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no key made that the user would think is named
    assert "--toml" in captured.err
    assert captured.err.startswith("error: --name and --scopes")


def test_keygen_name_with_toml_is_written_to_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "--toml", "--name", "billing"]) == 0
    assert 'name = "billing"' in capsys.readouterr().out
