"""The command line: ``python -m asgi_apikey demo | keygen | hash | check | keys``.

- ``keygen`` prints a new random key and its digest (``--toml`` prints a
  ``[[keys]]`` table for a key file, with the key itself on stderr).
- ``hash`` reads keys from stdin, one per line (a hidden prompt on a
  terminal), and prints their digests, so keys stay out of shell history.
- ``check`` reads the environment and key file as the middleware would and
  prints the mode, key ids, path rules (with ``--app``) and warnings; bad
  configuration exits 1 with the message that says what to fix.
- ``keys add | revoke | list --redis URL`` changes and lists the keys of a
  Redis key store (the ``redis`` extra); ``list`` shows ids, never secrets;
  ``keys usage KEY_ID`` shows what a key has left under limits shared
  through that Redis (``RedisRateLimiter``).

No output ever holds a key given as an argument or on stdin (a key that
``keygen`` or ``keys add`` makes is printed once, on purpose). Log events go
to stderr as plain lines, so ``--json`` output on stdout is pure JSON.

Exit codes: 0 fine, 1 bad configuration or input (or warnings with
``--strict``), 2 bad usage, or an ``--app`` that cannot be loaded, 130
Ctrl-C.

This module parses the arguments and owns the process (its streams, the
terminal's prompt, logging); the commands live in :mod:`~asgi_apikey.cli_keys`
(``keygen``, ``hash``, ``keys``) and :mod:`~asgi_apikey.cli_check` (``check``,
with :mod:`~asgi_apikey.cli_app` to load an app), the demo in
:mod:`~asgi_apikey.demo`.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import structlog

from . import __version__
from .cli_check import run_check
from .cli_keys import add_limit_options, run_hash, run_keygen, run_keys
from .cli_usage import run_usage

__all__ = ["configure_logging", "main", "run"]


def run(argv: Sequence[str] | None = None) -> int:
    """The process entry point (``python -m asgi_apikey``): logging set up, then :func:`main`.

    Ctrl-C (at the ``hash`` prompt, say) ends the command with exit code 130
    and one line on stderr, not a traceback.
    """
    configure_logging()
    try:
        return main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130


def configure_logging(stream: TextIO | None = None) -> None:
    """Send the package's structlog events to ``stream`` (stderr) as plain lines.

    The command line owns its process, so it configures structlog (the
    library never does): events go to stderr, never to stdout, where
    ``--json`` output must stay pure JSON.
    """
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see :func:`run` for the process)."""
    args = _parser().parse_args(argv)
    command: str = args.command
    if command == "demo":
        from .demo import serve

        return serve(args.host, args.port)
    if command == "keygen":
        return run_keygen(args, sys.stdout, sys.stderr)
    if command == "hash":
        return run_hash(sys.stdin, _hidden_prompt, sys.stdout, sys.stderr)
    if command == "keys" and args.action == "usage":
        return run_usage(args, sys.stdout, sys.stderr)
    if command == "keys":
        return run_keys(args, sys.stdin, _hidden_prompt, sys.stdout, sys.stderr)
    return run_check(args, sys.stdout, sys.stderr)


def _hidden_prompt() -> str:
    # The terminal is the process's: the commands get this rather than call getpass.
    return getpass.getpass("key (hidden): ")


def _parser() -> argparse.ArgumentParser:
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

    keygen = commands.add_parser(
        "keygen",
        help="print a new random key and its digest",
        description="Print a new random key (256 bits from the secrets module unless --bytes "
        "says otherwise) and its sha256 digest, the form for API_KEYS_FILE.",
    )
    keygen.add_argument("--prefix", default="sk-", help="text before the random part (sk-)")
    keygen.add_argument(
        "--bytes", type=int, default=32, dest="size", help="random bytes, 16 to 256 (32)"
    )
    keygen.add_argument("--name", help="the key's name (with --toml)")
    keygen.add_argument(
        "--scopes", default="", help="comma-separated scopes (with --toml), e.g. read,write"
    )
    keygen.add_argument(
        "--toml",
        action="store_true",
        help="print a [[keys]] table for a key file on stdout, the key itself on stderr",
    )
    add_limit_options(keygen)  # with --toml: the table's limit = ... line

    commands.add_parser(
        "hash",
        help="print the digest of keys read from stdin",
        description="Read keys from standard input, one per line (or from a hidden prompt on "
        "a terminal), and print each one's sha256 digest, so keys stay out of shell history: "
        "python -m asgi_apikey hash < key.txt",
    )

    check = commands.add_parser(
        "check",
        help="check the configuration from the environment (and an app's rules)",
        description="Read API_KEY, ADDITIONAL_API_KEYS, API_KEYS_FILE, AUTH_MODE, "
        "ENVIRONMENT and the feature flags as the middleware would, and print the mode, "
        "key ids, path rules and warnings. Exits 1 with a message on bad configuration.",
    )
    check.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="also import this ASGI app and check its APIKeyMiddleware (as uvicorn names it)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    check.add_argument(
        "--traceback",
        action="store_true",
        help="when the --app cannot be loaded (exit 2), also print the traceback, which "
        "the one-line error leaves out: it may show values, keys among them",
    )
    _keys_parser(commands)
    return parser


def _keys_parser(commands: Any) -> None:
    keys = commands.add_parser(
        "keys",
        help="add, revoke or list the keys of a Redis key store, or show a key's usage",
        description="Change or list the keys of a Redis key store that RedisKeySource "
        "follows; every instance sees a change within milliseconds. Needs the redis extra.",
    )
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="the store, such as redis://127.0.0.1:6379/0 (default: $REDIS_URL, which keeps "
        "a password out of the process list)",
    )
    store.add_argument(
        "--redis-prefix", default="asgi_apikey", help="the names' prefix in Redis (asgi_apikey)"
    )
    add = actions.add_parser(
        "add",
        parents=[store],
        help="add a key: a new random one (printed once), --digest, or --stdin",
        description="Add a key to the store. Without --digest or --stdin a new random key "
        "is made and printed once: the store keeps only its digest.",
    )
    given = add.add_mutually_exclusive_group()
    given.add_argument("--digest", help="add the key with this sha256: digest")
    given.add_argument(
        "--stdin", action="store_true", help="read the plain key from standard input"
    )
    add.add_argument("--name", help="the key's name, its key_id (unique in the store)")
    add.add_argument("--scopes", default="", help="comma-separated scopes, e.g. read,write")
    add.add_argument("--metadata", help="a JSON object carried into the AuthContext")
    add.add_argument("--not-before", help="valid from, e.g. 2027-01-01T00:00:00Z")
    add.add_argument("--expires-at", help="valid until (exclusive), e.g. 2027-07-01T00:00:00Z")
    add_limit_options(add)
    add.add_argument("--json", action="store_true", help="print the result as JSON")
    revoke = actions.add_parser(
        "revoke",
        parents=[store],
        help="revoke a key by key_id or sha256: digest",
        description="Remove a key from the store; every instance refuses it within "
        "milliseconds. Exits 1 when the store does not hold it.",
    )
    revoke.add_argument("key", metavar="KEY_ID", help="the key's key_id, or its sha256: digest")
    listing = actions.add_parser(
        "list",
        parents=[store],
        help="list the keys: ids, names, scopes, validity (never secrets)",
        description="List the store's keys by key_id, with scopes and validity; never a "
        "key or its digest.",
    )
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    usage = actions.add_parser(
        "usage",
        parents=[store],
        help="show a key's remaining rate and quota under shared limits (spends nothing)",
        description="Print where a key stands under its rate limit and quota as the "
        "instances sharing limits through this Redis (RedisRateLimiter) count them: what "
        "is left and when it comes back. The limit is the key's own, from its record; "
        "give --limit for a key under the app's default limit. Never prints a key.",
    )
    usage.add_argument("key", metavar="KEY_ID", help="the key's key_id")
    usage.add_argument(
        "--limit",
        metavar="TEXT",
        help="the limit the app applies to a key without its own, such as 60/minute",
    )
    usage.add_argument("--json", action="store_true", help="print the usage as JSON")
