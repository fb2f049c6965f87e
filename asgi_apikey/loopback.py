"""Whether a request comes from this machine: what unrequested development mode serves.

Development mode that nobody asked for (no key source and no ``ENVIRONMENT``)
serves local clients only. "Local" is decided from the scope alone, by
:func:`is_local_client`, a pure function:

- the server's client address is loopback (``127.0.0.0/8``, ``::1``, or
  ``::ffff:127.x.y.z``), or Starlette's ``TestClient`` (host ``"testclient"``,
  which only ever runs in-process);
- and the request carries no ``Forwarded``, ``X-Forwarded-For`` or
  ``X-Real-IP`` header: behind a reverse proxy on the same machine every
  client looks like loopback, and a proxy-headers middleware (uvicorn's)
  rewrites the client from a header the client may have written itself.

No client at all (``None``: a unix socket, often behind nginx) is not local.
A reverse proxy that forwards over TCP loopback without adding any of those
headers still looks local: configure keys before putting a proxy in front.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

__all__ = ["PROXY_HEADERS", "is_local_client"]

#: Headers that say the request was relayed: a request that carries one is never local.
PROXY_HEADERS = frozenset({b"forwarded", b"x-forwarded-for", b"x-real-ip"})

# Starlette's TestClient puts this host in the scope; it never comes from a network.
_TEST_CLIENT = "testclient"


def is_local_client(scope: Mapping[str, Any]) -> bool:
    """Whether the request in ``scope`` comes from this machine, directly.

    >>> is_local_client({"client": ("127.0.0.1", 50000), "headers": []})
    True
    >>> is_local_client({"client": ("127.0.0.1", 50000), "headers": [(b"x-real-ip", b"10.0.0.7")]})
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
    for header in scope.get("headers") or ():
        name = header[0]
        if isinstance(name, str):  # not ASGI, but never a way to pass as local
            name = name.encode("latin-1", "replace")
        if bytes(name).lower() in PROXY_HEADERS:
            return False
    return True


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
