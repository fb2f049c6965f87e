"""How routers read a request path: the readings a path decision must judge.

A path rule is judged against every reading a router may make of the path,
and the strictest wins (``paths.RuleTable``). The readings are: as spelled
(Starlette matches the raw spelling), resolved (:func:`normalize_path`: dot
segments and repeated slashes, as proxies and other routers see it), with its
slashes merged but its dot segments kept (:func:`merge_slashes`: Litestar routes
``//admin/..`` as ``/admin/..``, a path parameter ``..`` under ``/admin``), as a URL
for a target not in origin form (:func:`url_readings`, as Quart routes it), with
the mount point taken off at a segment boundary (:func:`strip_root`, as
Starlette does) and in the other ways routers take it off (:func:`root_readings`:
a plain prefix, as Quart, Django and a2wsgi do; up to its first occurrence
anywhere in the path, as Litestar does), under a mount that a router matches as
a plain prefix (:func:`mount_readings`: Litestar sends ``/metricsx`` to the app
mounted at ``/metrics``, as ``/x``), and without its control characters
(:data:`CONTROL`: Starlette's ``$`` matches before a final newline). A new
router to support changes this module.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from urllib.parse import urlparse, urlsplit

from starlette.routing import Host, Mount
from starlette.types import Scope

__all__ = [
    "CONTROL",
    "fixed_part",
    "merge_slashes",
    "mount_readings",
    "normalize_path",
    "plain_prefix_mounts",
    "root_readings",
    "route_path",
    "strip_root",
    "url_readings",
]

#: C0 controls and DEL: no router agrees on them (a final newline matches `$`).
CONTROL = re.compile("[\x00-\x1f\x7f]")


def normalize_path(path: str) -> str:
    """Resolve dot segments and repeated slashes (RFC 3986 §5.2.4), drop a trailing slash.

    Never climbs above the root.

    >>> normalize_path("/health/../admin//users/./")
    '/admin/users'
    >>> normalize_path("/../../etc")
    '/etc'
    """
    if "/." not in path and path[:1] != ".":  # no dot segment: only empty ones to drop
        return "/" + "/".join(filter(None, path.split("/")))
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == ".." and segments:
            segments.pop()
        elif segment not in ("", ".", ".."):
            segments.append(segment)
    return "/" + "/".join(segments)


def merge_slashes(path: str) -> str:
    """Repeated slashes merged, a leading and a trailing one dropped; dot segments kept.

    Litestar routes this reading of a path, and werkzeug (Quart) matches it after
    dropping leading slashes, so ``//admin/..`` runs ``/admin/{id}`` with ``id``
    ``..``: resolving the dot segments (:func:`normalize_path`) gives ``/``, and
    the spelling matches no rule.

    >>> merge_slashes("//admin/.."), merge_slashes("/v1//admin/./x/")
    ('/admin/..', '/v1/admin/./x')
    """
    return "/" + "/".join(filter(None, path.split("/")))


def route_path(scope: Scope) -> str:
    """The path the app routes on: ``scope["path"]`` less the mount point.

    Mirrors Starlette's ``get_route_path`` so that rules are relative to
    ``root_path`` exactly as routes are (``RuleTable.decide_under`` also
    judges the readings of other routers).

    >>> route_path({"path": "/api/v1/x", "root_path": "/api"})
    '/v1/x'
    """
    return strip_root(scope["path"], scope.get("root_path", ""))


def strip_root(path: str, root_path: str) -> str:
    """``path`` less ``root_path``, as Starlette takes it off: at a segment boundary only.

    >>> strip_root("/api/x", "/api"), strip_root("/apix", "/api"), strip_root("/api", "/api")
    ('/x', '/apix', '/')
    """
    if not root_path or not path.startswith(root_path):
        return path
    if len(path) == len(root_path):
        return "/"
    if path[len(root_path)] == "/":
        return path[len(root_path) :]
    return path


def root_readings(path: str, root_path: str) -> list[str]:
    """The paths other routers route on for ``path`` under ``root_path``, beyond :func:`strip_root`.

    Quart, Django and a2wsgi take ``root_path`` off as a plain prefix, so
    ``/apiadmin`` under ``/api`` routes as ``admin``, which Quart reads as
    ``/admin``. Litestar takes off everything up to the first occurrence of
    ``root_path`` anywhere in the path (``path.split(root_path, 1)[-1]``), so
    ``/health/api/admin`` routes as ``/admin`` where the server does not put
    ``root_path`` in front of ``path`` (hypercorn, and Litestar's test client).
    Each reading is given as a path from the root, as those routers route it.

    >>> root_readings("/apiadmin", "/api"), root_readings("/health/api/admin", "/api")
    (['/admin'], ['/admin'])
    >>> root_readings("/api/admin", "/api"), root_readings("/admin", "/api")
    ([], [])
    """
    at = path.find(root_path) if root_path else -1
    if at < 0:
        return []
    rest = path[at + len(root_path) :]
    if at == 0 and (not rest or rest[0] == "/"):
        return []  # what strip_root() takes off: no other reading
    return [rest if rest[:1] == "/" else "/" + rest]


def url_readings(path: str) -> list[str]:
    """The paths a router may take from ``path`` read as a URL; none for origin form.

    An absolute-form target the server passed through (``http://host/admin``),
    a network-path reference (``//host/admin``) or any path not starting with
    ``/`` (``http:/admin``, ``x:admin``): Quart routes ``urlparse(path).path``,
    which also drops ``;params`` from the last segment; ``urlsplit`` keeps them.
    """
    if path[:1] == "/" and path[:2] != "//" and "://" not in path:
        return []
    readings: list[str] = []
    # A string that is not a URL (a broken IPv6 host, say) cannot be routed as one.
    with contextlib.suppress(ValueError):
        for reading in (urlsplit(path).path, urlparse(path).path):
            if reading not in readings:
                readings.append(reading)
    return readings


def plain_prefix_mounts(app: object) -> tuple[str, ...]:
    """The mount paths of the Litestar apps in ``app``, relative to ``app``.

    Litestar matches an ASGI mount (``@asgi(path, is_mount=True)``) as a plain
    prefix: ``/metricsx`` reaches the app mounted at ``/metrics``. Litestar apps
    (subclasses too) are found behind ``.app`` wrappers and below Starlette
    ``Mount`` and ``Host`` routes (with the mount path as prefix). Read once, when
    the middleware is built; mounts with path parameters are left out (their
    prefix is not a fixed string).

    >>> plain_prefix_mounts(object())
    ()
    """
    return tuple(sorted(set(_mounts_in(app, "", set()))))


def _mounts_in(app: object, prefix: str, seen: set[int]) -> Iterator[str]:
    litestar = sys.modules.get("litestar")  # no Litestar imported, no Litestar app to find
    for _ in range(16):
        if app is None or id(app) in seen:
            return
        seen.add(id(app))
        routes = getattr(app, "routes", None)
        if litestar is not None and isinstance(app, litestar.Litestar):
            for route in routes or ():
                path = getattr(route, "path", None)
                handler = getattr(route, "route_handler", None)
                if getattr(handler, "is_mount", False) and isinstance(path, str):
                    mount = prefix + path.rstrip("/")
                    if "{" not in mount and mount:
                        yield mount
            return
        if isinstance(routes, list):  # a Starlette app or router: its mounts hold sub-apps
            for route in routes:
                if isinstance(route, Mount) and "{" not in route.path:
                    yield from _mounts_in(route.app, prefix + route.path, seen)
                elif isinstance(route, Host):
                    yield from _mounts_in(route.app, prefix, seen)
            return
        app = getattr(app, "app", None)


def mount_readings(path: str, mounts: tuple[str, ...]) -> list[str]:
    """``path`` as a router that matches ``mounts`` as plain prefixes reads it.

    >>> mount_readings("/metricsx", ("/metrics",))
    ['/metrics/x']
    >>> mount_readings("/metrics/x", ("/metrics",))
    []
    """
    return [
        f"{mount}/{path[len(mount) :]}"
        for mount in mounts
        if path.startswith(mount) and path[len(mount) : len(mount) + 1] not in ("/", "")
    ]


def fixed_part(template: str) -> str:
    """The segments of ``template`` before its first parameter, as a rule can name them.

    >>> fixed_part("/items/{item_id}/tags")
    '/items'
    """
    head = template.split("{", 1)[0]
    return head.rsplit("/", 1)[0] or "/"
