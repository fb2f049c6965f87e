"""Per-key rate limits and quotas (issue 18): what a key, a client or a path rule may spend.

- :mod:`~asgi_apikey.ratelimit.limits`: :class:`RateLimit`, the value users
  write (``"100/minute"``, a burst, a quota), in code, key files and records;
- :mod:`~asgi_apikey.ratelimit.gcra` and :mod:`~asgi_apikey.ratelimit.quota`:
  the algorithms, one integer pair per active caller, on injectable clocks;
- :mod:`~asgi_apikey.ratelimit.local`: one all-or-nothing decision over a
  request's limits in this process;
- :mod:`~asgi_apikey.ratelimit.policy`: :class:`RateLimits`, which limits
  apply to which request (a key's own, its scopes', the default, a path
  rule's, anonymous clients');
- :mod:`~asgi_apikey.ratelimit.fields`: the ``429`` response and the
  ``RateLimit`` / ``RateLimit-Policy`` fields.

Limits shared by many instances live in :mod:`asgi_apikey.redis_store.limits`.
"""

from __future__ import annotations

from .limits import UNLIMITED, RateLimit

__all__ = ["UNLIMITED", "RateLimit"]
