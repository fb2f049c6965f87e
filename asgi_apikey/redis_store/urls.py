"""Redis URLs: refused unless redis-py reads them as they look, and never shown with a secret.

A URL carries the store's password: :func:`redacted` is how a URL reaches a
log, an error, a ``repr`` or the status, and :func:`why` is how an error
text that may quote it does.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus, urlsplit

from redis.asyncio.connection import parse_url

from ..audit import loggable
from ..errors import ConfigurationError

_SCHEMES = ("redis", "rediss", "unix")

_URL_HELP = (
    "the Redis URL cannot be read: it must look like redis://[user:password@]host:port/db "
    "(rediss:// for TLS, unix:///path/redis.sock), with any / ? # @ : % in the user name "
    "or password percent-encoded (%2F %3F %23 %40 %3A %25)"
)


def check_url(url: object) -> str:
    """``url`` if redis-py reads it as it looks; else a ConfigurationError quoting none of it."""
    if not isinstance(url, str) or not url.startswith(tuple(f"{s}://" for s in _SCHEMES)):
        raise ConfigurationError(
            "the Redis URL must start with redis://, rediss:// (TLS) or unix://, such as "
            "redis://127.0.0.1:6379/0",
            setting="url",
        )
    netloc = None
    try:  # urlsplit's errors quote the URL: none of them may escape
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number (a password cut at a '/')
        parse_url(url)
        netloc = parts.netloc
    except (ValueError, TypeError, UnicodeError):
        pass
    # A '@' outside the host part: the password held a '/', '?' or '#' and was cut there.
    if netloc is None or (not url.startswith("unix:") and "@" in url and "@" not in netloc):
        raise ConfigurationError(_URL_HELP, setting="url")
    return url


# Query parameters redis-py reads that hold nothing secret. A query that names only
# these, with plain values, is shown; any other query is masked whole, whatever the
# spelling of its names (redis-py decodes ``pass%77ord`` to ``password``).
_PLAIN_QUERY_NAMES = frozenset(
    {
        "db",
        "protocol",
        "timeout",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "health_check_interval",
        "max_connections",
        "ssl_check_hostname",
        "ssl_cert_reqs",
    }
)
_PLAIN_QUERY = re.compile(r"([a-z_]+)=[A-Za-z0-9_.-]*")
# A host, port and path (or socket path) with nothing that could start a query or
# encode one: anything else after the credentials is masked.
_PLAIN_PLACE = re.compile(r"[^?#&=%;@\x00-\x20\x7f]*")


def _plain_query(query: str) -> bool:
    for piece in query.split("&"):
        match = _PLAIN_QUERY.fullmatch(piece)
        if match is None or match.group(1) not in _PLAIN_QUERY_NAMES:
            return False
    return True


def redacted(url: str) -> str:
    """``url`` without its password (for logs, errors and status).

    Everything between ``://`` and the last ``@`` is credentials, however the
    URL is spelled, so a password is masked even where it would not parse. A
    query is shown only when it names nothing but known settings with plain
    values (``?db=2``): any other (``password``, ``ssl_password``, or a name in
    percent-encoding or capitals) is masked whole.

    >>> redacted("redis://app:s3cret@cache:6379/0")
    'redis://app:***@cache:6379/0'
    >>> redacted("redis://cache:6379/0?pass%77ord=s3cret")
    'redis://cache:6379/0?***'
    """
    scheme, separator, rest = url.partition("://")
    shown_credentials = ""
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        user, colon, _ = credentials.partition(":")
        # A user name that holds what may be a query (the '@' came after one) is not shown.
        plain_user = colon and _PLAIN_PLACE.fullmatch(user)
        shown_credentials = f"{user}:***@" if plain_user else "***@"
    place, question, query = rest.partition("?")
    if not _PLAIN_PLACE.fullmatch(place):
        place, question, query = "***", "", ""
    elif question and not _plain_query(query):
        query = "***"
    return f"{scheme}{separator}{shown_credentials}{place}{question}{query}"


def _secrets(url: str) -> list[str]:
    """Every part of ``url`` that may be a credential, as written and decoded, longest first."""
    try:
        parts = urlsplit(url)
        found = [parts.password, parts.username if parts.password is None else None]
    except ValueError:
        return []
    for piece in parts.query.split("&"):
        name, _, value = piece.partition("=")
        if unquote_plus(name) not in _PLAIN_QUERY_NAMES:
            found += [name, value]
    decoded = [form(text) for text in found if text for form in (unquote, unquote_plus)]
    return sorted({text for text in found + decoded if text}, key=len, reverse=True)


def why(error: BaseException, url: str) -> str:
    """What went wrong, for one log line: without the URL's credentials even if an
    error quoted them, and with any control character (from Redis) escaped.

    >>> why(ValueError("no auth for s3cret"), "redis://:s3cret@cache:6379/0")
    'ValueError: no auth for ***'
    """
    text = f"{type(error).__name__}: {str(error)[:300]}"
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return loggable(text)
