#!/usr/bin/env python3
"""Developer commands that need nothing but python3.

    python3 dev.py demo      # serve the demo app on 127.0.0.1 with fresh keys
    python3 dev.py test      # the whole test suite (extra args go to pytest)
    python3 dev.py lint      # ruff (lint + format check) and mypy --strict
    python3 dev.py bench     # the benchmark suite (--smoke: a quick check of it)
    python3 dev.py docs      # serve the documentation site on 127.0.0.1:8000
    python3 dev.py docs build  # build it with --strict into build/site, as CI does

Each creates ./.venv on first use and installs the package with the extras it
needs; it reinstalls when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


# Seconds a child has to stop after SIGTERM is passed on before it is killed.
_GRACE = 10.0


class _Terminated(Exception):
    """This process got SIGTERM."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _run(*args: str | Path) -> int:
    # SIGTERM reaches only this process (a service manager, `kill`): pass it on to
    # the child and wait for it, bounded, so no server is left serving.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        with subprocess.Popen([str(arg) for arg in args], cwd=ROOT) as child:  # noqa: S603
            try:
                return _wait(child)
            except _Terminated:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough
                child.terminate()
                try:
                    child.wait(timeout=_GRACE)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait(child: subprocess.Popen[bytes]) -> int:
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            # Ctrl-C in a terminal reaches the child too, which then stops by
            # itself; pass it on only if the child did not get it.
            try:
                return child.wait(timeout=2)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGINT)


def ensure_venv() -> None:
    """Create .venv and install ``.[dev]`` unless pyproject.toml is unchanged since."""
    stamp = VENV / ".installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PYTHON.exists() and stamp.exists() and stamp.read_text() == want:
        return
    if not PYTHON.exists():
        print(f"creating {VENV.relative_to(ROOT)} ...", flush=True)
        try:
            venv.create(VENV, with_pip=True)
        except Exception as error:  # any failure gets the same advice
            sys.exit(
                f"could not create a virtual environment ({error}); on Debian/Ubuntu "
                "install it with: apt-get install python3-venv"
            )
    print(
        "installing asgi_apikey with its dev extras (demo, redis, test, lint, examples,"
        " bench, docs) ...",
        flush=True,
    )
    quiet = ["--quiet", "--disable-pip-version-check"]
    if _run(PYTHON, "-m", "pip", "install", *quiet, "--upgrade", "pip") != 0:
        sys.exit("pip could not upgrade itself; see the output above")
    if _run(PYTHON, "-m", "pip", "install", *quiet, "-e", ".[dev]") != 0:
        sys.exit("installing the package failed; see the output above")
    stamp.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "lint", "bench", "docs"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_venv()
    if command == "demo":
        return _run(PYTHON, "-m", "asgi_apikey", "demo", *rest)
    if command == "test":
        return _run(PYTHON, "-m", "pytest", *rest)
    if command == "bench":
        return _run(PYTHON, "-m", "benchmarks", *rest)
    if command == "docs":
        if rest[:1] == ["build"]:
            site = ["--site-dir", "build/site"]
            return _run(PYTHON, "-m", "mkdocs", "build", "--strict", *site, *rest[1:])
        return _run(PYTHON, "-m", "mkdocs", "serve", "--dev-addr", "127.0.0.1:8000", *rest)
    status = _run(PYTHON, "-m", "ruff", "check", ".")
    status |= _run(PYTHON, "-m", "ruff", "format", "--check", ".")
    status |= _run(PYTHON, "-m", "mypy")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
