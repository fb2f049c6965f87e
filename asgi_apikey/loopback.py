"""Whether a request comes from this machine: what unrequested development mode serves.

Development mode that nobody asked for (no key source and no ``ENVIRONMENT``)
serves local clients only. "Local" is decided from the scope alone, by
:func:`is_local_client`, a pure function. All of these must hold:

- the server's client address is loopback (``127.0.0.0/8``, ``::1``, or
  ``::ffff:127.x.y.z``), or Starlette's ``TestClient`` (host ``"testclient"``,
  which only ever runs in-process);
- the request names a loopback host: its ``Host`` is absent, ``localhost``
  (or a name under ``.localhost``), a loopback address, or ``testserver``
  (the TestClient's), with any port; so a web page that rebinds its own name
  to 127.0.0.1 (DNS rebinding) or a sidecar proxy that keeps the service's
  name is not local. An ``Origin`` header, if any, names a loopback host too;
- the request carries no header a relay adds (``Forwarded``, ``Via``,
  ``X-Forwarded-*``, ``X-Real-IP``, ``X-Envoy-*`` and the CDNs' client-IP
  headers): behind a reverse proxy on the same machine every client looks
  like loopback, and a proxy-headers middleware (uvicorn's) rewrites the
  client from a header the client may have written itself.

No client at all (``None``: a unix socket, often behind nginx) is not local.
A reverse proxy that forwards over TCP loopback adding no relay header and
rewriting ``Host`` to a loopback name still looks local: configure keys
before putting a proxy in front.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["PROXY_HEADERS", "is_local_client", "is_local_host"]

#: Headers that say the request was relayed: a request that carries one is never local.
PROXY_HEADERS = frozenset(
    {
        b"forwarded",
        b"via",
        b"x-real-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"x-original-forwarded-for",
        b"true-client-ip",
        b"cf-connecting-ip",
        b"fastly-client-ip",
    }
)
# And every header starting with one of these (X-Forwarded-For, -Host, -Proto, ...).
_PROXY_PREFIXES = (b"x-forwarded-", b"x-envoy-")

# Starlette's TestClient puts these in the scope; they never come from a network.
_TEST_CLIENT = "testclient"
_TEST_SERVER = "testserver"


def is_local_client(scope: Mapping[str, Any]) -> bool:
    """Whether the request in ``scope`` comes from this machine, directly, for it.

    >>> is_local_client({"client": ("127.0.0.1", 50000), "headers": []})
    True
    >>> is_local_client({"client": ("127.0.0.1", 50000), "headers": [(b"x-real-ip", b"10.0.0.7")]})
    False
    >>> is_local_client({"client": ("127.0.0.1", 5), "headers": [(b"host", b"rebound.example")]})
    False
    >>> is_local_client({"client": None, "headers": []})
    False
    """
    client = scope.get("client")
    if not isinstance(client, (tuple, list)) or not client:
        return False
    host = client[0]
    if not isinstance(host, str) or not (host == _TEST_CLIENT or is_loopback(host)):
        return False
    try:
        return _names_only_this_machine(scope.get("headers") or ())
    except Exception:  # a scope no server builds: never a way to pass as local
        return False


def _names_only_this_machine(headers: Any) -> bool:
    for name, value in headers:
        if isinstance(name, str):  # not ASGI, but never a way to pass as local
            name = name.encode("latin-1", "replace")
        name = bytes(name).lower()
        if name in PROXY_HEADERS or name.startswith(_PROXY_PREFIXES):
            return False
        if name == b"host" and not is_local_host(bytes(value).decode("latin-1")):
            return False
        if name == b"origin" and not _is_local_origin(bytes(value).decode("latin-1")):
            return False
    return True


def is_local_host(authority: str) -> bool:
    """Whether a ``Host`` value (``name[:port]``) names this machine.

    >>> [is_local_host(h) for h in ("localhost:8000", "[::1]", "127.0.0.1", "a.localhost")]
    [True, True, True, True]
    >>> [is_local_host(h) for h in ("evil.example", "localhost.evil.example", "127.0.0.1.nip.io")]
    [False, False, False]
    """
    host = authority.strip().lower()
    if host.startswith("["):  # an IPv6 literal, maybe with a port
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    host = host.rstrip(".")
    return host in ("localhost", _TEST_SERVER) or host.endswith(".localhost") or is_loopback(host)


def _is_local_origin(origin: str) -> bool:
    # "null" (a sandboxed frame, a file) and anything unparsable are not local.
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and is_local_host(parts.netloc)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (IPv4-mapped IPv6 included); names are not.

    >>> is_loopback("127.8.9.10"), is_loopback("::ffff:127.0.0.1"), is_loopback("localhost")
    (True, True, False)
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
