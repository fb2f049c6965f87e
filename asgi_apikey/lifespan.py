"""The lifespan: passed through to the app, starting and stopping a live key source with it.

A shared rate limiter (:mod:`asgi_apikey.ratelimit.shared`) connects on its
first decision and is stopped here at shutdown, after the key source.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import APIKeyAuth
from .errors import KeySourceError
from .ratelimit.shared import SharedLimiter

__all__ = ["run_lifespan"]


async def run_lifespan(
    app: ASGIApp,
    auth: APIKeyAuth,
    scope: Scope,
    receive: Receive,
    send: Send,
    limiter: SharedLimiter | None = None,
) -> None:
    """Pass the lifespan through, starting and stopping a live key source with it.

    The source starts once the app's own startup has completed. A store
    that cannot be read turns that into ``lifespan.startup.failed`` with the
    source's message (the server reports it and does not start); the app
    then runs its own shutdown, since it will serve nothing, and the error
    is raised, as Starlette raises a failed startup. At shutdown the source
    stops and the failure throttle reports what it still holds.
    """
    audit = auth.audit
    failure: KeySourceError | None = None
    # Some servers (hypercorn) raise from send() when told the startup failed:
    # kept until the app has run its shutdown, then raised for the server.
    refused: BaseException | None = None

    async def receive_and_flush() -> Message:
        if failure is not None:
            return {"type": "lifespan.shutdown"}  # the app's own shutdown, after a failure
        message = await receive()
        if message["type"] == "lifespan.shutdown":
            audit.flush(force=True)
            await auth.stop()
            if limiter is not None:
                await limiter.stop()
        return message

    async def send_after_start(message: Message) -> None:
        nonlocal failure, refused
        if failure is not None:
            return  # the app's answer to that shutdown: the server asked for none
        if message["type"] == "lifespan.startup.complete":
            try:
                await auth.start()
            except KeySourceError as error:
                failure = error
            if failure is not None:
                try:
                    await send({"type": "lifespan.startup.failed", "message": str(failure)})
                except Exception as error:  # the server's way of stopping here
                    refused = error
                return
        await send(message)

    live = auth.source_is_live
    await app(scope, receive_and_flush, send_after_start if live else send)
    if refused is not None:
        raise refused
    if failure is not None:
        raise failure
