"""The key commands: ``keygen``, ``hash``, and ``keys add | revoke | list`` on a Redis store.

``keygen --toml`` and ``keys add`` take a key's own rate limit as ``--limit``
(with ``--burst``), ``--quota`` and ``--unlimited`` (:func:`add_limit_options`).
Each command takes its parsed arguments and the streams it may use, and
returns the exit code; the hidden prompt of a terminal is passed in as
``prompt`` (:mod:`asgi_apikey.cli` owns the terminal). No output holds a key
given as an argument or on stdin; a key that ``keygen`` or ``keys add`` makes
is printed once, on purpose.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

from .credentials import is_b64token
from .errors import ConfigurationError, KeySourceError
from .keys import APIKey
from .ratelimit.limits import UNLIMITED, RateLimit, as_rate_limit

__all__ = [
    "Prompt",
    "add_limit_options",
    "iso_instant",
    "limit_text",
    "limit_toml",
    "run_hash",
    "run_keygen",
    "run_keys",
    "store_url",
]

#: Reads a key at a terminal without echoing it (``getpass``); Ctrl-D raises EOFError.
Prompt = Callable[[], str]

_MAX_HASH_INPUT = 1024 * 1024


def run_keygen(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``keygen``: a new random key and its digest, or a ``[[keys]]`` table with ``--toml``."""
    prefix: str = args.prefix
    if prefix and (
        not prefix.isascii() or not is_b64token(prefix.encode("ascii")) or "=" in prefix
    ):
        err.write("error: --prefix may hold only letters, digits and - . _ ~ + /\n")
        return 1
    if not 16 <= args.size <= 256:
        err.write("error: --bytes must be from 16 to 256\n")
        return 1
    if not args.toml and (args.name is not None or args.scopes):
        # The plain output is the key and its digest: a name or scopes would be lost.
        err.write(
            "error: --name and --scopes go into the [[keys]] table that --toml prints: add --toml\n"
        )
        return 2
    code, limit = _limit_of(args, err)
    if code:
        return code
    if not args.toml and limit is not None:
        err.write(
            "error: the limit options go into the [[keys]] table that --toml prints: add --toml\n"
        )
        return 2
    key = prefix + secrets.token_urlsafe(args.size)
    scopes = [scope.strip() for scope in args.scopes.split(",") if scope.strip()]
    try:
        entry = APIKey(key, name=args.name, scopes=scopes, limit=limit)
    except ConfigurationError as error:
        err.write(f"error: {error}\n")
        return 1
    if not args.toml:
        out.write(f"key:    {key}\ndigest: {entry.digest}\n")
        return 0
    lines = ["[[keys]]", f'digest = "{entry.digest}"']
    if entry.name is not None:
        lines.append(f"name = {_toml_string(entry.name)}")
    if scopes:
        lines.append(f"scopes = [{', '.join(_toml_string(s) for s in sorted(entry.scopes))}]")
    if entry.limit is not None:
        lines.append(limit_toml(entry.limit))
    out.write("\n".join(lines) + "\n")
    err.write(f"key (give it to the client; the file holds only its digest): {key}\n")
    return 0


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's, except that JSON writes characters outside the
    # Basic Multilingual Plane as surrogate pairs, which TOML forbids: keep them.
    return json.dumps(text, ensure_ascii=False)


# -- a key's own limit: --limit, --burst, --quota, --unlimited -----------------------------


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--limit``, ``--burst``, ``--quota`` and ``--unlimited`` to ``parser``.

    >>> parser = argparse.ArgumentParser()
    >>> add_limit_options(parser)
    >>> parser.parse_args(["--limit", "100/minute", "--burst", "20"]).burst
    '20'
    """
    parser.add_argument(
        "--limit",
        metavar="RATE",
        help="the key's own rate limit, such as 100/minute, 10/s or 5/15m (default: the "
        "limit the app configures)",
    )
    parser.add_argument(
        "--burst",
        metavar="N",
        help="with --limit: at most N requests at once (default: the rate's count)",
    )
    parser.add_argument(
        "--quota",
        metavar="QUOTA",
        help="a quota per calendar window in UTC, such as 10000/day (hour, day, month); "
        "alone or with --limit",
    )
    parser.add_argument(
        "--unlimited",
        action="store_true",
        help="exempt the key from the app's default limit (not with --limit or --quota)",
    )


def _limit_of(args: argparse.Namespace, err: TextIO) -> tuple[int, RateLimit | None]:
    """(0, the limit the options name, or None), else (the exit code, None) with the error."""
    given = {
        option: value
        for option, value in (
            ("--limit", args.limit),
            ("--burst", args.burst),
            ("--quota", args.quota),
        )
        if value is not None
    }
    if args.unlimited:
        if given:
            err.write(f"error: --unlimited goes alone: drop {' and '.join(given)}\n")
            return 2, None
        return 0, UNLIMITED
    if not given:
        return 0, None
    if args.limit is None and args.burst is not None:
        err.write("error: --burst goes with --limit, such as --limit 100/minute --burst 20\n")
        return 2, None
    burst: object = args.burst
    if isinstance(burst, str) and burst.isascii() and burst.isdigit():
        burst = int(burst)  # anything else is left for the limit's own check to name
    data = {"rate": args.limit, "burst": burst, "quota": args.quota}
    try:
        limit = as_rate_limit(
            {k: v for k, v in data.items() if v is not None}, " and ".join(given) + ":"
        )
    except ConfigurationError as error:
        message = str(error)  # never quotes a value that could be a key
    else:
        return 0, limit
    err.write(f"error: {message}\n")
    return 1, None


def limit_toml(limit: RateLimit) -> str:
    """The ``limit = ...`` line of a ``[[keys]]`` table.

    >>> limit_toml(RateLimit("100/minute", burst=20, quota="10000/day"))
    'limit = { rate = "100/minute", burst = 20, quota = "10000/day" }'
    >>> limit_toml(UNLIMITED)
    'limit = "unlimited"'
    """
    data = limit.as_data()
    if isinstance(data, str):
        return f"limit = {_toml_string(data)}"
    fields = (f"{name} = {_toml_value(value)}" for name, value in data.items())
    return f"limit = {{ {', '.join(fields)} }}"


def _toml_value(value: object) -> str:
    return _toml_string(value) if isinstance(value, str) else str(value)


def limit_text(limit: RateLimit | None) -> str:
    """A limit in one word for a table: ``100/minute,burst=20,quota=10000/day``; ``-`` for none.

    >>> limit_text(RateLimit("10/s")), limit_text(RateLimit(quota="5/day")), limit_text(None)
    ('10/second', 'quota=5/day', '-')
    """
    if limit is None:
        return "-"
    data = limit.as_data()
    if isinstance(data, str):
        return data
    return ",".join(
        str(value) if name == "rate" else f"{name}={value}" for name, value in data.items()
    )


def run_hash(stdin: TextIO, prompt: Prompt, out: TextIO, err: TextIO) -> int:
    """``hash``: the digest of each key on ``stdin``, or of the one typed at ``prompt``."""
    if stdin is None or stdin.closed:
        err.write("error: no standard input: python -m asgi_apikey hash < key.txt\n")
        return 1
    if stdin.isatty():
        lines = [_typed(prompt, err)]
    else:
        text = stdin.read(_MAX_HASH_INPUT + 1)
        if len(text) > _MAX_HASH_INPUT:
            err.write("error: more than 1 MiB on standard input: give one key per line\n")
            return 1
        lines = text.splitlines()
    digests = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            digests.append(APIKey(line).digest)
        except ConfigurationError as error:
            err.write(f"error: line {number}: {error}\n")
            return 1
    if not digests:
        err.write("error: no key on standard input: python -m asgi_apikey hash < key.txt\n")
        return 1
    out.write("\n".join(digests) + "\n")
    return 0


# -- keys (a Redis key store) -------------------------------------------------------------


def run_keys(
    args: argparse.Namespace, stdin: TextIO, prompt: Prompt, out: TextIO, err: TextIO
) -> int:
    """``keys add | revoke | list``: change or list the keys of a Redis key store."""
    url = store_url(args, err)
    if isinstance(url, int):
        return url
    from . import redis_store

    try:
        if args.action == "list":
            stored = redis_store.list_keys(url, prefix=args.redis_prefix)
            if args.json:
                out.write(json.dumps([key.as_dict() for key in stored], indent=2) + "\n")
            else:
                out.write(_key_table(stored))
            return 0
        if args.action == "revoke":
            return _revoke(redis_store, url, args, out, err)
        code, limit = _limit_of(args, err)
        if code:
            return code
        made, key = _key_to_add(args, stdin, prompt, err, limit)
        if key is None:
            return 1
        added = redis_store.add_key(url, key, prefix=args.redis_prefix)
    except (ConfigurationError, KeySourceError) as error:
        err.write(f"error: {error}\n")
        return 1
    if args.json:
        out.write(json.dumps({**added.as_dict(), "key": made}, indent=2) + "\n")
    else:
        if made is not None:
            out.write(f"key:    {made}\n")
        out.write(f"key_id: {added.key_id}\n")
        if added.limit is not None:
            out.write(f"limit:  {limit_text(added.limit)}\n")
        if made is not None:
            err.write("the key is shown this once: the store keeps only its digest\n")
    return 0


def store_url(args: argparse.Namespace, err: TextIO) -> str | int:
    """The Redis URL of a ``keys`` command, or its exit code once the problem is said.

    2 without a URL (``--redis`` or ``REDIS_URL``); 1 without the ``redis`` extra.
    """
    url: str | None = args.redis or os.environ.get("REDIS_URL")
    if not url:
        err.write("error: give --redis URL, or set REDIS_URL\n")
        return 2
    try:
        from . import redis_store  # noqa: F401 - says what is missing without the extra
    except ImportError as error:
        err.write(f"error: {error}\n")
        return 1
    return url


def _revoke(redis_store: Any, url: str, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    # The argument is echoed only once the store has matched it as a key_id: until
    # then it may be the plain key itself, typed where its key_id belongs.
    given: str = args.key
    if not redis_store.revoke_key(url, given, prefix=args.redis_prefix):
        err.write(
            "error: the store holds no key with that key_id or digest: 'keys list' shows "
            "the key_ids (to revoke a key you hold, give its digest: "
            "python -m asgi_apikey hash < key.txt)\n"
        )
        return 1
    out.write(
        "revoked the key with that digest\n"
        if given.startswith("sha256:")
        else f"revoked {given}\n"
    )
    return 0


def _key_to_add(
    args: argparse.Namespace, stdin: TextIO, prompt: Prompt, err: TextIO, limit: RateLimit | None
) -> tuple[str | None, APIKey | None]:
    """The key ``keys add`` adds, and the plain key when it made one (else None)."""
    scopes = [scope.strip() for scope in args.scopes.split(",") if scope.strip()]
    try:
        metadata = json.loads(args.metadata) if args.metadata is not None else None
    except ValueError:
        err.write('error: --metadata must be a JSON object, such as \'{"team": "x"}\'\n')
        return None, None
    made = secret = None
    if args.stdin:
        line = _read_key(stdin, prompt, err)
        if line is None:
            err.write("error: no key on standard input\n")
            return None, None
        secret = line
    elif args.digest is None:
        made = secret = "sk-" + secrets.token_urlsafe(32)
    try:
        options: dict[str, Any] = {
            "name": args.name,
            "scopes": scopes,
            "metadata": metadata,
            "not_before": _instant(args.not_before, "--not-before"),
            "expires_at": _instant(args.expires_at, "--expires-at"),
            "limit": limit,
        }
        if secret is not None:
            return made, APIKey(secret, **options)
        return None, APIKey(digest=args.digest, **options)
    except ConfigurationError as error:
        message = str(error)
    err.write(f"error: {message}\n")
    return None, None


def _read_key(stdin: TextIO, prompt: Prompt, err: TextIO) -> str | None:
    if stdin is None or stdin.closed:
        return None
    if stdin.isatty():
        return _typed(prompt, err) or None
    return stdin.read(_MAX_HASH_INPUT).strip() or None


def _typed(prompt: Prompt, err: TextIO) -> str:
    """The key typed at the hidden prompt; Ctrl-D there is no key typed (Ctrl-C goes on)."""
    try:
        return prompt()
    except EOFError:
        err.write("\n")  # end the prompt's line before the error that follows
        return ""


def _instant(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise ConfigurationError(
            f"{option} must be a date-time with an offset, such as 2027-01-01T00:00:00Z"
        )
    return moment


def _key_table(stored: Sequence[Any]) -> str:
    if not stored:
        return "the store holds no key\n"
    lines = [f"{'key_id':<28} {'state':<14} {'expires_at':<26} {'limit':<24} scopes"]
    lines += [
        f"{key.key_id:<28} {key.state():<14} "
        f"{iso_instant(key.expires_at) if key.expires_at else 'never':<26} "
        f"{limit_text(key.limit):<24} " + " ".join(key.scopes)
        for key in stored
    ]
    return "\n".join(lines) + "\n"


def iso_instant(moment: datetime | None) -> str:
    """``moment`` as ISO 8601, UTC written ``Z``; ``?`` for None."""
    # As configured: converting year 1 or 9999 to UTC could leave the calendar.
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else "?"
