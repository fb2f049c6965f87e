"""The command line: ``python -m asgi_apikey demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m asgi_apikey",
        description="API-key authentication for ASGI apps.",
    )
    parser.add_argument("--version", action="version", version=f"asgi_apikey {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="serve a protected example app on 127.0.0.1 with fresh keys",
        description="Serve a protected example app with two fresh keys and print requests "
        "that show 200, 401, 400 and 403. Ctrl-C stops it. Needs the demo extra (uvicorn).",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    demo.add_argument(
        "--port", type=int, default=8000, help="port (default 8000; a free one if taken)"
    )
    args = parser.parse_args(argv)

    from .demo import serve

    return serve(args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
