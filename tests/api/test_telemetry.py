"""Spans (in-memory exporter) and Prometheus metrics of requests and queries."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from api.settings import ApiSettings, load_api_settings
from api.telemetry import build_tracer_provider
from infra.settings import Settings, load_settings
from tests.api.conftest import AppFactory

ROUTE = "/api/v1/ticker/{base}/{quote}/historique"


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_request_and_query_spans(app_factory: AppFactory) -> None:
    provider, exporter = _provider()
    parent = "00-0000000000000000000000000000abcd-00000000000000ef-01"
    with TestClient(app_factory(tracer_provider=provider)) as client:
        exporter.clear()  # startup queries (flavour detection) are not part of the request
        r = client.get(
            "/api/v1/ticker/XBT/USD/historique/?periode=1h", headers={"traceparent": parent}
        )
        assert r.status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server = spans[f"GET {ROUTE}"]
    assert server.kind == SpanKind.SERVER
    assert server.attributes is not None
    assert dict(server.attributes) == {
        "http.request.method": "GET",
        "http.route": ROUTE,
        "url.path": "/api/v1/ticker/XBT/USD/historique",
        "url.scheme": "http",
        "http.response.status_code": 200,
    }
    # The incoming W3C trace context is continued.
    assert server.context.trace_id == 0xABCD
    assert server.parent is not None
    assert server.parent.span_id == 0xEF
    query = spans["SELECT ticker_data"]
    assert query.kind == SpanKind.CLIENT
    assert query.parent is not None
    assert query.parent.span_id == server.context.span_id
    assert query.attributes is not None
    assert query.attributes["db.system.name"] == "postgresql"
    assert query.attributes["db.collection.name"] == "ticker_data"
    assert query.attributes["db.query.summary"] == "ticker_page_stamps"  # the row cache's read
    assert query.attributes["db.response.returned_rows"] == 0
    text = str(query.attributes["db.query.text"])
    assert "FROM ticker_data" in text
    assert "%(key)s" in text
    assert "BTC/USD" not in text  # values never reach spans


def test_error_statuses_on_spans(app_factory: AppFactory, stack: Settings) -> None:
    provider, exporter = _provider()
    with TestClient(app_factory(tracer_provider=provider)) as client:
        client.get("/api/v1/sentiment/NOPE/historique/")
    server = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 404
    assert server.status.status_code == StatusCode.UNSET  # a client error is not a server fault
    provider, exporter = _provider()
    down = stack.with_servers(database="postgresql://postgres@127.0.0.1:1/x")
    with TestClient(app_factory(settings=down, tracer_provider=provider)) as client:
        assert client.get("/api/v1/cryptos/").status_code == 503
    server = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert server.name == "GET /api/v1/cryptos"
    assert server.status.status_code == StatusCode.ERROR


def test_prometheus_metrics(app_factory: AppFactory) -> None:
    with TestClient(app_factory()) as client:
        client.get("/api/v1/ticker/BTC/USD/historique/")
        client.get("/api/v1/ticker/ETH/USD/historique/")
        client.get("/api/v1/ticker/FOO/USD/historique/")
        with client.websocket_connect("/ws/alert/"):
            text = client.get("/metrics").text
    assert f'cryptoviz_api_requests_total{{method="GET",route="{ROUTE}",status="200"}} 2.0' in text
    assert f'cryptoviz_api_requests_total{{method="GET",route="{ROUTE}",status="404"}} 1.0' in text
    assert (
        f'cryptoviz_api_request_errors_total{{method="GET",route="{ROUTE}",status_class="4xx"}} 1.0'
        in text
    )
    assert (
        f'cryptoviz_api_request_duration_seconds_count{{method="GET",route="{ROUTE}"}} 3.0' in text
    )
    assert 'cryptoviz_api_db_query_duration_seconds_count{query="ticker_page_stamps"} 2.0' in text
    assert 'cryptoviz_api_ws_clients{route="/ws/alert"} 1.0' in text
    for gauge in ("pool_size", "pool_available", "requests_waiting"):
        assert f"cryptoviz_api_db_{gauge} " in text


def test_tracer_provider_exports_only_when_configured() -> None:
    silent = build_tracer_provider(ApiSettings(), load_settings({}).otlp_endpoint)
    assert silent._active_span_processor._span_processors == ()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    shared = load_settings(env)  # the endpoint is shared by every program
    exporting = build_tracer_provider(
        load_api_settings(env, topics=shared.kafka.topics), shared.otlp_endpoint
    )
    processors: tuple[Any, ...] = exporting._active_span_processor._span_processors
    assert len(processors) == 1
    assert processors[0].span_exporter._endpoint == "http://127.0.0.1:4318/v1/traces"
    exporting.shutdown()
    assert load_settings({}).otlp_endpoint is None
