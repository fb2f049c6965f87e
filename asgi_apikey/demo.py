"""The demo: a protected Starlette app on 127.0.0.1 with freshly generated keys.

``python -m asgi_apikey demo`` prints two keys and ready-to-paste ``curl``
commands that show 200, 401, 400 and 403, then serves until Ctrl-C.
uvicorn comes from the ``demo`` extra; it is not a runtime dependency.
"""

from __future__ import annotations

import contextlib
import errno
import secrets
import socket
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .context import AuthContext
from .keys import APIKey
from .middleware import APIKeyMiddleware

__all__ = ["build_app", "instructions", "new_key", "serve"]


def new_key(prefix: str = "sk-") -> str:
    """A random key: ``prefix`` + 43 URL-safe characters (256 bits)."""
    return prefix + secrets.token_urlsafe(32)


async def _hello(request: Request) -> JSONResponse:
    auth: AuthContext = request.scope["auth"]
    return JSONResponse(
        {"hello": request.user.display_name or "anonymous", "scopes": sorted(auth.scopes)}
    )


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def build_app(admin_key: str, reader_key: str) -> APIKeyMiddleware:
    """The demo app: ``/health`` public, ``/v1/...`` protected, ``/v1/admin`` needs ``admin``."""
    routes = [
        Route("/health", _health),
        Route("/v1/hello", _hello),
        Route("/v1/admin", _hello),
    ]
    return APIKeyMiddleware(
        Starlette(routes=routes),
        keys=[
            APIKey(admin_key, name="demo-admin", scopes={"read", "admin"}),
            APIKey(reader_key, name="demo-reader", scopes={"read"}),
        ],
        public=["/health"],
        protected={"/v1/admin": {"admin"}},
    )


def instructions(base: str, admin_key: str, reader_key: str) -> str:
    """What the demo prints: the keys and one request per outcome."""
    return f"""\
asgi_apikey demo on {base}   (Ctrl-C stops it)

keys generated for this run (never reuse them):
  demo-admin   scopes admin, read   {admin_key}
  demo-reader  scopes read          {reader_key}

try:
  200  curl -i {base}/v1/hello -H 'Authorization: Bearer {reader_key}'
  200  curl -i {base}/health
  401  curl -i {base}/v1/hello
  401  curl -i {base}/v1/hello -H 'Authorization: Bearer sk-not-a-real-key'
  400  curl -i {base}/v1/hello -H 'Authorization: Bearer not=valid'
  403  curl -i {base}/v1/admin -H 'Authorization: Bearer {reader_key}'
  200  curl -i {base}/v1/admin -H 'Authorization: Bearer {admin_key}'
"""


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE and port != 0:
            return _bind(host, 0)  # the port is taken: any free port will do for a demo
        raise
    return sock


def serve(host: str = "127.0.0.1", port: int = 8000, argv: Sequence[str] = ()) -> int:
    """Run the demo until Ctrl-C. Returns the process exit code."""
    try:
        import uvicorn
    except ImportError:
        print("the demo needs uvicorn: pip install 'asgi_apikey[demo]'")
        return 2
    admin_key, reader_key = new_key("sk-admin-"), new_key("sk-read-")
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    print(instructions(f"http://{host}:{bound_port}", admin_key, reader_key), flush=True)
    config = uvicorn.Config(build_app(admin_key, reader_key), log_level="info")
    # uvicorn shuts down gracefully, then re-raises the Ctrl-C it caught.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])
    print("demo stopped", flush=True)
    return 0
