"""The command line: ``python -m asgi_apikey demo | keygen | hash | check | keys``.

- ``keygen`` prints a new random key and its digest (``--toml`` prints a
  ``[[keys]]`` table for a key file, with the key itself on stderr).
- ``hash`` reads keys from stdin, one per line (a hidden prompt on a
  terminal), and prints their digests, so keys stay out of shell history.
- ``check`` reads the environment and key file as the middleware would and
  prints the mode, key ids, path rules (with ``--app``) and warnings; bad
  configuration exits 1 with the message that says what to fix.
- ``keys add | revoke | list --redis URL`` changes and lists the keys of a
  Redis key store (the ``redis`` extra); ``list`` shows ids, never secrets.

No output ever holds a key given as an argument or on stdin (a key that
``keygen`` or ``keys add`` makes is printed once, on purpose). Log events go
to stderr as plain lines, so ``--json`` output on stdout is pure JSON.

Exit codes: 0 fine, 1 bad configuration or input (or warnings with
``--strict``), 2 bad usage, or an ``--app`` that cannot be loaded.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import inspect
import json
import os
import secrets
import sys
import traceback
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.testing import capture_logs

from . import __version__
from .audit import loggable
from .auth import APIKeyAuth, _set_but_empty
from .credentials import is_b64token
from .errors import ConfigurationError, KeySourceError
from .keys import MIN_PRODUCTION_KEY_LENGTH, APIKey
from .middleware import APIKeyMiddleware
from .paths import Access, Rule

__all__ = ["AppNotLoaded", "configure_logging", "main", "run"]

_SOON = 7 * 24 * 3600  # keys expiring within a week get a warning
_MAX_HASH_INPUT = 1024 * 1024


def run(argv: Sequence[str] | None = None) -> int:
    """The process entry point (``python -m asgi_apikey``): logging set up, then :func:`main`."""
    configure_logging()
    return main(argv)


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
        return _keygen(args, sys.stdout, sys.stderr)
    if command == "hash":
        return _hash(sys.stdin, sys.stdout, sys.stderr)
    if command == "keys":
        return _keys(args, sys.stdin, sys.stdout, sys.stderr)
    return _check(args, sys.stdout, sys.stderr)


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
        help="add, revoke or list the keys of a Redis key store",
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
    add.add_argument("--metadata", help="a JSON object carried in advanced mode")
    add.add_argument("--not-before", help="valid from, e.g. 2027-01-01T00:00:00Z")
    add.add_argument("--expires-at", help="valid until (exclusive), e.g. 2027-07-01T00:00:00Z")
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


# -- keygen and hash ----------------------------------------------------------------------


def _keygen(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    prefix: str = args.prefix
    if prefix and (
        not prefix.isascii() or not is_b64token(prefix.encode("ascii")) or "=" in prefix
    ):
        err.write("error: --prefix may hold only letters, digits and - . _ ~ + /\n")
        return 1
    if not 16 <= args.size <= 256:
        err.write("error: --bytes must be from 16 to 256\n")
        return 1
    key = prefix + secrets.token_urlsafe(args.size)
    scopes = [scope.strip() for scope in args.scopes.split(",") if scope.strip()]
    try:
        entry = APIKey(key, name=args.name, scopes=scopes)
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
    out.write("\n".join(lines) + "\n")
    err.write(f"key (give it to the client; the file holds only its digest): {key}\n")
    return 0


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's, except that JSON writes characters outside the
    # Basic Multilingual Plane as surrogate pairs, which TOML forbids: keep them.
    return json.dumps(text, ensure_ascii=False)


def _hash(stdin: TextIO, out: TextIO, err: TextIO) -> int:
    if stdin is None or stdin.closed:
        err.write("error: no standard input: python -m asgi_apikey hash < key.txt\n")
        return 1
    if stdin.isatty():
        lines = [getpass.getpass("key (hidden): ")]
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


def _keys(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    url = args.redis or os.environ.get("REDIS_URL")
    if not url:
        err.write("error: give --redis URL, or set REDIS_URL\n")
        return 2
    try:
        from . import redis_store
    except ImportError as error:
        err.write(f"error: {error}\n")
        return 1
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
        made, key = _key_to_add(args, stdin, err)
        if key is None:
            return 1
        added = redis_store.add_key(url, key, prefix=args.redis_prefix)
    except (ConfigurationError, KeySourceError) as error:
        err.write(f"error: {error}\n")
        return 1
    if args.json:
        out.write(json.dumps({**added.as_dict(), "key": made}, indent=2) + "\n")
    elif made is not None:
        out.write(f"key:    {made}\nkey_id: {added.key_id}\n")
        err.write("the key is shown this once: the store keeps only its digest\n")
    else:
        out.write(f"key_id: {added.key_id}\n")
    return 0


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
    args: argparse.Namespace, stdin: TextIO, err: TextIO
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
        line = _read_key(stdin)
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
        }
        if secret is not None:
            return made, APIKey(secret, **options)
        return None, APIKey(digest=args.digest, **options)
    except ConfigurationError as error:
        message = str(error)
    err.write(f"error: {message}\n")
    return None, None


def _read_key(stdin: TextIO) -> str | None:
    if stdin is None or stdin.closed:
        return None
    if stdin.isatty():
        return getpass.getpass("key (hidden): ") or None
    return stdin.read(_MAX_HASH_INPUT).strip() or None


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
    lines = [f"{'key_id':<28} {'state':<14} {'expires_at':<26} scopes"]
    lines += [
        f"{key.key_id:<28} {key.state():<14} "
        f"{_when(key.expires_at) if key.expires_at else 'never':<26} " + " ".join(key.scopes)
        for key in stored
    ]
    return "\n".join(lines) + "\n"


# -- check --------------------------------------------------------------------------------


def _check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    pairs: list[tuple[APIKeyAuth, APIKeyMiddleware | None]]
    try:
        with capture_logs():  # the report says what the startup warning would
            if args.app:
                found = _middlewares_of(args.app)
                pairs = [(m.auth, m) for m, _ in found]
                guarded = [guards for _, guards in found]
                if not pairs:
                    raise ConfigurationError(
                        f"no APIKeyMiddleware found in {loggable(args.app, 200)}: add it with "
                        "app.add_middleware(APIKeyMiddleware, ...)"
                    )
            else:
                pairs, guarded = [(APIKeyAuth.from_env(), None)], [None]
    except AppNotLoaded as error:
        err.write(f"error: {error}\n")
        if args.traceback and error.__cause__ is not None:
            traceback.print_exception(error.__cause__, file=err)
        return 2
    except ConfigurationError as error:
        err.write(f"error: {error}\n")
        return 1
    reports = [
        report(auth, middleware, guards)
        for (auth, middleware), guards in zip(pairs, guarded, strict=True)
    ]
    warnings = [warning for one in reports for warning in one["warnings"]]
    if args.json:
        out.write(json.dumps(reports if args.app else reports[0], indent=2) + "\n")
    else:
        out.write("\n".join(_text(one) for one in reports))
    return 1 if args.strict and warnings else 0


class AppNotLoaded(Exception):
    """``check --app`` could not load the app; the message says why and what to do.

    The message never quotes what the app's code raised (it may hold a key):
    it names the exception's type and where it was raised. The original is
    the ``__cause__``, which ``check --traceback`` prints.
    """


def _middlewares_of(target: str) -> list[tuple[APIKeyMiddleware, object]]:
    app = load_app(target)
    try:
        return find_middlewares(app)
    except ConfigurationError:
        raise  # the package's own message: it names the setting, never a key
    except Exception as error:
        shown = loggable(target, 200)
        raise AppNotLoaded(
            f"building the APIKeyMiddleware declared on '{shown}' raised {_raised(error)}: "
            "fix its arguments (--traceback shows the traceback)"
        ) from error


def load_app(target: str) -> object:
    """Import ``"module:attr"`` (``attr`` may be dotted), as uvicorn does.

    Raises :class:`AppNotLoaded` with one line saying what is wrong and how to
    fix it; a :class:`ConfigurationError` the module raises as it is imported
    passes through (its message names the bad setting).
    """
    shown = loggable(target, 200)
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise AppNotLoaded(
            f"--app must look like module:attribute, as uvicorn takes it, not '{shown}'"
        )
    module_shown, attr_shown = loggable(module_name, 200), loggable(attr, 200)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: object = importlib.import_module(module_name)
    except ConfigurationError:
        raise
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise AppNotLoaded(
                f"there is no module '{module_shown}' in {loggable(os.getcwd(), 200)} or on "
                "sys.path: check the name, run check from the project's directory, or add that "
                "directory to PYTHONPATH"
            ) from error
        raise AppNotLoaded(
            f"importing '{module_shown}' failed: it imports '{loggable(missing, 200)}', which "
            "is not installed: install it in this environment"
        ) from error
    except ImportError as error:
        raise AppNotLoaded(
            f"importing '{module_shown}' failed ({loggable(str(error), 200)}): fix that import"
        ) from error
    except (Exception, SystemExit) as error:  # Ctrl-C still stops it
        raise AppNotLoaded(
            f"importing '{module_shown}' raised {_raised(error)}: fix the module "
            "(--traceback shows the traceback and the message, left out here as it may "
            "quote a key)"
        ) from error
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise AppNotLoaded(
                f"'{module_shown}' has no attribute '{attr_shown}': name the ASGI app object, "
                f"such as {module_shown}:app"
            ) from None
        except Exception as error:
            raise AppNotLoaded(
                f"reading '{attr_shown}' of '{module_shown}' raised {_raised(error)}: "
                "fix it (--traceback shows the traceback)"
            ) from error
    problem = _not_an_app(found)
    if problem is not None:
        raise AppNotLoaded(
            f"'{shown}' is {problem}, not an ASGI application (a callable taking scope, "
            f"receive and send): name the app object, such as {module_shown}:app"
        )
    return found


def _raised(error: BaseException) -> str:
    """``Type`` and where it was raised (the innermost frame): never its message."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return type(error).__name__
    last = frames[-1]
    return (
        f"{type(error).__name__} at {loggable(Path(last.filename).name, 100)}, line {last.lineno}"
    )


def _not_an_app(found: object) -> str | None:
    """What ``found`` is when it cannot be an ASGI application, else None."""
    if not callable(found):
        return f"a {loggable(type(found).__name__, 100)}"
    if inspect.isclass(found):
        return None  # an ASGI 2 class, or one whose instances are built per request
    try:
        inspect.signature(found).bind(None, None, None)
    except TypeError:
        return "a callable that does not take (scope, receive, send) (an app factory?)"
    except ValueError:
        return None  # no signature to read (a builtin): give it the benefit of the doubt
    return None


def find_middlewares(app: object) -> list[tuple[APIKeyMiddleware, object]]:
    """Every APIKeyMiddleware in front of ``app`` (built, or declared on a Starlette
    app), each with the app it guards."""
    found: list[tuple[APIKeyMiddleware, object]] = []
    pending, seen = [app], set[int]()
    while pending and len(seen) < 1000:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, APIKeyMiddleware):
            found.append((node, node.app))
        stack = getattr(node, "middleware_stack", None)
        if stack is None:
            # A Starlette app not yet started: build its APIKeyMiddleware the way
            # Starlette will, which runs the same checks.
            for declared in getattr(node, "user_middleware", None) or ():
                cls = getattr(declared, "cls", None)
                if isinstance(cls, type) and issubclass(cls, APIKeyMiddleware):
                    found.append((cls(_nothing, *declared.args, **declared.kwargs), node))
        else:
            pending.append(stack)
        inner = getattr(node, "app", None)
        if inner is not None:
            pending.append(inner)
        # Mounted sub-applications: Starlette's Mount and Host routes hold an app.
        for route in getattr(node, "routes", None) or ():
            mounted = getattr(route, "app", None)
            if mounted is not None:
                pending.append(mounted)
    return found


def route_paths(app: object) -> tuple[object | None, list[str]]:
    """The Starlette (or FastAPI) app that ``app`` leads to, and its route paths as
    written (``/items/{id}``), mounts expanded; ``(None, [])`` for another kind of app."""
    router: object | None = app
    for _ in range(64):  # through middleware to the first object with routes
        if router is None or getattr(router, "routes", None) is not None:
            break
        router = getattr(router, "app", None)
    if router is None or getattr(router, "routes", None) is None:
        return None, []
    paths: list[str] = []
    pending: list[tuple[str, object]] = [("", router)]
    while pending and len(paths) < 10_000:
        prefix, node = pending.pop()
        for route in getattr(node, "routes", None) or ():
            path = getattr(route, "path", None)
            if not isinstance(path, str):
                continue  # a Host route: matched on the host, not the path
            if isinstance(getattr(route, "routes", None), list) and len(pending) < 1000:
                pending.append((prefix + path, route))  # a Mount
            else:
                paths.append(prefix + path)
    return router, paths


def opened_routes(middleware: APIKeyMiddleware, app: object) -> list[str]:
    """Warnings for public and optional rules that cover routes they do not name.

    ``public=["/v1"]`` opens ``/v1/admin`` too: say so, route by route. The
    companion routes of FastAPI's docs page (under its ``docs_url``) are expected.
    """
    router, paths = route_paths(app)
    docs = getattr(router, "docs_url", None)
    opened: dict[Rule, list[str]] = {}
    for path in paths:
        rule = middleware.rules.decide(path)
        if (
            rule.access in (Access.PUBLIC, Access.OPTIONAL)
            and rule.path not in ("", "/", docs)
            and path.rstrip("/") != rule.path
        ):
            opened.setdefault(rule, []).append(path)
    return [
        f"{rule.access.name.lower()} rule {rule.path!r} also opens "
        f"{', '.join(sorted(routes)[:10])}{' ...' if len(routes) > 10 else ''}, which it "
        f"does not name: list them in protected= to keep them closed, or name the route itself"
        for rule, routes in opened.items()
    ]


async def _nothing(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise RuntimeError("asgi_apikey check builds middleware only to inspect it")


def report(
    auth: APIKeyAuth, middleware: APIKeyMiddleware | None = None, guards: object = None
) -> dict[str, Any]:
    """What ``check`` prints: the status, the rules, and warnings. Holds no secret.

    ``guards`` is the app behind ``middleware``, whose routes are compared with
    the rules.
    """
    status = auth.status()
    del status["counters"]  # always zero here: nothing has been served yet
    warnings: list[str] = []
    if auth.development_access == "local":
        warnings.append(
            "no keys are configured and ENVIRONMENT is not set: development mode serves only "
            "this machine (loopback clients that name it as the host, through no proxy) and "
            "refuses other clients with 401; set API_KEY to serve them, or "
            "ENVIRONMENT=development to open it to every client (ENVIRONMENT=staging or "
            "production refuses to start like this)"
        )
    elif auth.is_development_mode:
        warnings.append(
            "no keys are configured: development mode lets every request through, from every "
            "client (ENVIRONMENT=staging or production refuses to start like this); set API_KEY"
        )
    elif (
        not status["key_count"] and not status["features"]["verifiers"] and not auth.source_is_live
    ):
        empty = auth.empty_key_variables()
        warnings.append(
            f"{_set_but_empty(empty)}the configured key sources hold no key, so every "
            "protected request is refused"
        )
    if not auth._environment_set:
        warnings.append(
            "ENVIRONMENT is not set, so it counts as development: set it, and to production "
            "in production, so the production rules apply"
        )
    now = auth._clock()
    for entry in auth.snapshot.by_digest.values():
        key_id = entry.key.key_id
        if entry.key._short and auth.environment not in ("staging", "production"):
            warnings.append(
                f"key {key_id!r} is shorter than {MIN_PRODUCTION_KEY_LENGTH} characters, "
                "which ENVIRONMENT=staging and production refuse"
            )
        if entry.expires_at is not None and now >= entry.expires_at:
            warnings.append(f"key {key_id!r} has expired ({_when(entry.key.expires_at)})")
        elif entry.expires_at is not None and entry.expires_at - now < _SOON:
            warnings.append(f"key {key_id!r} expires soon ({_when(entry.key.expires_at)})")
        if entry.not_before is not None and now < entry.not_before:
            warnings.append(f"key {key_id!r} is not valid yet ({_when(entry.key.not_before)})")
    result: dict[str, Any] = {"status": status, "rules": [], "warnings": warnings}
    if middleware is not None:
        described = middleware.describe()
        result["rules"] = described["rules"]
        result["middleware"] = {k: v for k, v in described.items() if k != "rules"}
        if described["default"] != "protected":
            warnings.append(
                f"paths that no rule names are {described['default']}: "
                "default='protected' denies them unless a rule opens them"
            )
        if described["allow_query_token"]:
            warnings.append(
                "allow_query_token is on: keys in URLs reach access logs and browser history"
            )
        if not described["security_headers"]:
            warnings.append("security headers are switched off")
        warnings.extend(opened_routes(middleware, guards))
    return result


def _when(moment: datetime | None) -> str:
    # As configured: converting year 1 or 9999 to UTC could leave the calendar.
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else "?"


_ACCESS = {"local": " (development: this machine only)", "open": " (development: every client)"}


def _text(one: dict[str, Any]) -> str:
    status = one["status"]
    lines = [
        f"environment: {status['environment']}",
        f"mode:        {status['mode']}" + _ACCESS.get(status.get("development_access"), ""),
        f"keys:        {status['key_count']}"
        + (f" ({', '.join(status['key_ids'])})" if status["key_ids"] else ""),
        "features:    " + ", ".join(name for name, on in status["features"].items() if on),
    ]
    source = status.get("source") or {}
    if source.get("kind") == "redis":
        lines.insert(
            3, f"source:      redis at {source['url']} (its keys are read when the app starts)"
        )
    if one["rules"]:
        lines.append("rules:")
        for rule in one["rules"]:
            scopes = f"  needs {' '.join(rule['scopes'])}" if rule["scopes"] else ""
            lines.append(f"  {rule['path']:<28} {rule['access']}{scopes}")
    if one["warnings"]:
        lines.append("warnings:")
        lines.extend(f"  - {warning}" for warning in one["warnings"])
    else:
        lines.append("no warnings")
    return "\n".join(lines) + "\n"
