"""Finding the app ``check --app`` names, and the APIKeyMiddleware in front of it.

:func:`load_app` imports ``"module:attr"`` the way uvicorn does;
:func:`find_middlewares` walks the app (built middleware, Starlette's declared
middleware, mounted sub-applications) the way Starlette will build it;
:func:`route_paths` lists the routes the app serves. An app that cannot be
loaded raises :class:`AppNotLoaded`, whose message never quotes what the
app's code raised (it may hold a key).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from .audit import loggable
from .errors import ConfigurationError
from .middleware import APIKeyMiddleware

__all__ = ["AppNotLoaded", "find_middlewares", "load_app", "middlewares_of", "route_paths"]


class AppNotLoaded(Exception):
    """``check --app`` could not load the app; the message says why and what to do.

    The message never quotes what the app's code raised (it may hold a key):
    it names the exception's type and where it was raised. The original is
    the ``__cause__``, which ``check --traceback`` prints.
    """


def middlewares_of(target: str) -> list[tuple[APIKeyMiddleware, object]]:
    """Every APIKeyMiddleware of the app ``target`` names, each with the app it guards."""
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


async def _nothing(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise RuntimeError("asgi_apikey check builds middleware only to inspect it")
