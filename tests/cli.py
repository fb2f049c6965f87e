"""Running the command line in-process, with its own stdin, stdout and stderr."""

from __future__ import annotations

import io
import sys

from asgi_apikey.cli import main

__all__ = ["run_cli"]


def run_cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    """``python -m asgi_apikey *argv`` fed ``stdin``: the exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
    try:
        code = main(list(argv))
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return code, out.getvalue(), err.getvalue()
