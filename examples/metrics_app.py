"""Exporting the counters to Prometheus and OpenTelemetry, with neither as a dependency.

``APIKeyAuth.counters()`` is the hook: an immutable snapshot, cheap to take,
meant to be read by your metrics library's own callback at collection time,
so exporting costs nothing per request.

- ``prometheus_text`` renders the Prometheus text format for a ``/metrics``
  route (shown below, protected by a ``metrics`` scope for the scraper's key);
  with ``prometheus_client``, yield the same numbers from a custom collector.
- ``register_opentelemetry`` creates observable counters on an OpenTelemetry
  ``Meter``; their callbacks read the counters when the SDK collects.

One series per key id suits a few hundred keys. With thousands (or a verifier
that mints ids), drop the ``key_id`` label or keep only the ids you watch:
metrics backends and the OpenTelemetry SDK limit how many series one
instrument may have.

    API_KEY=sk-... python -m examples.metrics_app
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware, Counters
from examples._serve import serve


def prometheus_text(counters: Counters) -> str:
    """The counters in the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def family(name: str, help_text: str, samples: Iterable[tuple[str, int]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} counter")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    family(
        "asgi_apikey_requests_total",
        "Requests and websocket handshakes the middleware decided.",
        [("", counters.requests)],
    )
    family(
        "asgi_apikey_authenticated_total",
        "Requests accepted with an API key, by key id.",
        [(_labels(key_id=key_id), n) for key_id, n in sorted(counters.by_key_id.items())],
    )
    family(
        "asgi_apikey_authenticated_other_key_ids_total",
        "Requests accepted for key ids beyond those counted one by one.",
        [("", counters.other_key_ids)],
    )
    family(
        "asgi_apikey_anonymous_total",
        "Requests that ran unauthenticated (optional paths without credentials, public "
        "paths without valid ones, CORS preflights, development mode).",
        [("", counters.anonymous)],
    )
    family(
        "asgi_apikey_refused_total",
        "Requests refused, by reason.",
        [(_labels(reason=reason), n) for reason, n in counters.refused.items()],
    )
    return "\n".join(lines) + "\n"


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items()) + "}"


def _escape(value: str) -> str:
    # The text format escapes backslash, double quote and line feed in label values.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def register_opentelemetry(auth: APIKeyAuth, meter: Any) -> None:
    """Observable counters on an OpenTelemetry ``Meter``, read when the SDK collects."""
    from opentelemetry.metrics import CallbackOptions, Observation

    def requests(options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(auth.counters().requests)

    def authenticated(options: CallbackOptions) -> Iterable[Observation]:
        for key_id, n in auth.counters().by_key_id.items():
            yield Observation(n, {"key_id": key_id})

    def other_key_ids(options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(auth.counters().other_key_ids)

    def anonymous(options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(auth.counters().anonymous)

    def refused(options: CallbackOptions) -> Iterable[Observation]:
        for reason, n in auth.counters().refused.items():
            yield Observation(n, {"reason": reason})

    for name, callback in (
        ("asgi_apikey.requests", requests),
        ("asgi_apikey.authenticated", authenticated),
        ("asgi_apikey.authenticated.other_key_ids", other_key_ids),
        ("asgi_apikey.anonymous", anonymous),
        ("asgi_apikey.refused", refused),
    ):
        meter.create_observable_counter(name, callbacks=[callback], unit="{request}")


def create_app(keys: Sequence[str | APIKey]) -> Starlette:
    auth = APIKeyAuth(keys)

    async def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(
            prometheus_text(auth.counters()), media_type="text/plain; version=0.0.4"
        )

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"hello": request.auth.key_id})

    return Starlette(
        routes=[Route("/metrics", metrics), Route("/v1/hello", hello)],
        middleware=[Middleware(APIKeyMiddleware, auth=auth, protected={"/metrics": {"metrics"}})],
    )


if __name__ == "__main__":
    serve(create_app)
