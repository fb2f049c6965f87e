"""The exporter example: the Prometheus text and the OpenTelemetry callbacks read counters()."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from starlette.testclient import TestClient

from asgi_apikey import APIKey, APIKeyAuth, APIKeyMiddleware
from asgi_apikey.audit import REASONS
from examples import metrics_app
from tests.asgi import CANARY, OTHER_KEY, Recorder, bearer, call, http_scope

SCRAPER = {"Authorization": f"Bearer {CANARY}"}
USER = {"Authorization": f"Bearer {OTHER_KEY}"}
# One sample line of the text format: name, optional labels, integer value.
SAMPLE = re.compile(r'([a-z_]+)(\{(?:[a-z_]+="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\d+)')


def samples(text: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            assert re.fullmatch(r"# (HELP [a-z_]+ .+|TYPE [a-z_]+ counter)", line), line
            continue
        match = SAMPLE.fullmatch(line)
        assert match is not None, line
        found[match[1] + (match[2] or "")] = int(match[3])
    return found


def test_metrics_route_is_scoped_and_counts_every_decision() -> None:
    keys: list[str | APIKey] = [
        APIKey(CANARY, name="scraper", scopes={"metrics"}),
        APIKey(OTHER_KEY, name="user"),
    ]
    client = TestClient(metrics_app.create_app(keys))
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=USER).status_code == 403
    assert client.get("/v1/hello", headers=USER).json() == {"hello": "user"}
    assert client.get("/v1/hello", headers={"Authorization": "Bearer sk-nope"}).status_code == 401
    response = client.get("/metrics", headers=SCRAPER)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert samples(response.text) == {
        # The scrape itself was accepted before the route rendered the counters.
        "asgi_apikey_requests_total": 5,
        'asgi_apikey_authenticated_total{key_id="scraper"}': 1,
        'asgi_apikey_authenticated_total{key_id="user"}': 1,
        "asgi_apikey_authenticated_other_key_ids_total": 0,
        "asgi_apikey_anonymous_total": 0,
        **{f'asgi_apikey_refused_total{{reason="{reason}"}}': 0 for reason in REASONS},
        'asgi_apikey_refused_total{reason="missing"}': 1,
        'asgi_apikey_refused_total{reason="invalid"}': 1,
        'asgi_apikey_refused_total{reason="insufficient_scope"}': 1,
    }
    assert CANARY not in response.text
    assert OTHER_KEY not in response.text


@pytest.mark.parametrize("path", ["/metrics%0A", "/metrics%0D", "/metrics%00"])
def test_a_user_key_cannot_reach_the_metrics_route_through_a_control_character(path: str) -> None:
    """Issue 15: Starlette routed "/metrics\\n" to /metrics, which the rule did not name."""
    keys: list[str | APIKey] = [
        APIKey(CANARY, name="scraper", scopes={"metrics"}),
        APIKey(OTHER_KEY, name="user"),
    ]
    client = TestClient(metrics_app.create_app(keys))
    response = client.get(path, headers=USER)
    assert response.status_code == 400
    assert "asgi_apikey_requests_total" not in response.text


@pytest.mark.parametrize(
    ("name", "label"),
    [
        pytest.param("plain", 'key_id="plain"', id="plain"),
        pytest.param('a"b', 'key_id="a\\"b"', id="quote"),
        pytest.param("a\\b", 'key_id="a\\\\b"', id="backslash"),
    ],
)
def test_prometheus_label_values_are_escaped(name: str, label: str) -> None:
    auth = APIKeyAuth(keys=[APIKey(CANARY, name=name)])
    app = APIKeyMiddleware(Recorder(), auth=auth)
    assert call(app, http_scope("/x", headers=[bearer(CANARY)]), Recorder()).status == 200
    text = metrics_app.prometheus_text(auth.counters())
    assert samples(text)[f"asgi_apikey_authenticated_total{{{label}}}"] == 1


def test_prometheus_label_escapes_line_feeds() -> None:
    assert metrics_app._labels(key_id="a\nb") == '{key_id="a\\nb"}'


class FakeMeter:
    """Records create_observable_counter calls the way an OpenTelemetry Meter receives them."""

    def __init__(self) -> None:
        self.callbacks: dict[str, Callable[[CallbackOptions], Iterable[Observation]]] = {}
        self.units: dict[str, str] = {}

    def create_observable_counter(
        self,
        name: str,
        callbacks: list[Callable[[CallbackOptions], Iterable[Observation]]],
        unit: str = "",
        **_: Any,
    ) -> None:
        (self.callbacks[name],) = callbacks
        self.units[name] = unit

    def observe(self, name: str) -> dict[tuple[tuple[str, Any], ...], int | float]:
        return {
            tuple(sorted((observation.attributes or {}).items())): observation.value
            for observation in self.callbacks[name](CallbackOptions())
        }


def test_opentelemetry_callbacks_read_the_counters_at_collection_time() -> None:
    auth = APIKeyAuth(keys=[APIKey(CANARY, name="scraper"), APIKey(OTHER_KEY, name="user")])
    meter = FakeMeter()
    metrics_app.register_opentelemetry(auth, meter)
    assert set(meter.units.values()) == {"{request}"}
    assert meter.observe("asgi_apikey.requests") == {(): 0}

    app = APIKeyMiddleware(Recorder(), auth=auth, public=["/health"])
    for headers in ([bearer(OTHER_KEY)], [bearer(OTHER_KEY)], [bearer("sk-nope")], []):
        call(app, http_scope("/v1/x", headers=headers), Recorder())
    call(app, http_scope("/health"), Recorder())

    # Read at collection time: the same callbacks now see the new numbers.
    assert meter.observe("asgi_apikey.requests") == {(): 5}
    assert meter.observe("asgi_apikey.anonymous") == {(): 1}
    assert meter.observe("asgi_apikey.authenticated") == {(("key_id", "user"),): 2}
    assert meter.observe("asgi_apikey.authenticated.other_key_ids") == {(): 0}
    refused = meter.observe("asgi_apikey.refused")
    assert refused[(("reason", "invalid"),)] == 1
    assert refused[(("reason", "missing"),)] == 1
    assert sum(refused.values()) == 2
    assert len(refused) == len(REASONS)
