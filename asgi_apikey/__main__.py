"""``python -m asgi_apikey``: see :mod:`asgi_apikey.cli`."""

from __future__ import annotations

import sys

from .cli import main, run

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(run())
