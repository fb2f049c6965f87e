"""What an APIKeyMiddleware enforces, said in an OpenAPI 3 document.

:func:`add_openapi_security` edits a document in place and returns it: the
security schemes the middleware reads (``HTTPBearer`` always, ``APIKeyHeader``
with ``header_name``, ``APIKeyQuery`` with ``allow_query_token``: FastAPI's
own names), each operation's ``security`` from the rule the middleware applies
to its path, and the 401/400/403 (and, with a live key source, 503) responses
it may send there, with the 429 of its rate limits (and their 503 when a
shared limiter may refuse) where a limit can refuse a request. It works on any
OpenAPI dict: FastAPI's ``app.openapi()``, Starlette's ``SchemaGenerator``, one
written by hand.

The document depends on the rules and the rate limits, read at each call
(``middleware.rules`` may be replaced at run time): never a key, a key id or a
digest, since keys rotate while the document is cached; of the keys it asks
only whether any has a limit of its own. Each operation it decides carries an
``x-asgi-apikey`` extension (its access and scopes, and what the app itself
declared), so that applying again, with the same rules or new ones, gives
the document a fresh application would: never two layers.

:func:`hook_openapi` is how the middleware does this by itself for FastAPI
apps (``openapi=True``): it wraps each app's ``openapi``, FastAPI's documented
customisation point, once. This package sits below ``middleware.py``.

Where things are (each module imports only from those above it here):

- ``templates.py``: which rule a document path such as ``/items/{id}`` gets.
- ``limits.py``: :class:`OpenAPILimits`, where the rate limits can refuse a
  request, and the 429 response component.
- ``components.py``: the security schemes and the 401/400/403/503 response
  components, each added under a name of its own.
- ``apps.py``: walking an app's wrappers, middleware stack and mounts (finding
  the middleware, the FastAPI apps it guards).
- ``document.py``: :class:`OpenAPISecurity` (each operation's security and
  responses, the ``x-asgi-apikey`` mark) and :func:`add_openapi_security`.
- ``hook.py``: :func:`hook_openapi`, the wrapped ``openapi`` of FastAPI apps.
"""

from __future__ import annotations

from .apps import in_stack
from .document import MARK, OpenAPISecurity, add_openapi_security
from .hook import hook_openapi
from .limits import OpenAPILimits

__all__ = [
    "MARK",
    "OpenAPILimits",
    "OpenAPISecurity",
    "add_openapi_security",
    "hook_openapi",
    "in_stack",
]
