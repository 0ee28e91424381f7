"""Tracing (OpenTelemetry) and metrics (Prometheus) of requests, queries and live relays.

One :class:`Telemetry` per app: its own ``TracerProvider`` (exporting by OTLP/HTTP
only when an endpoint is configured, so a bare run is silent) and its own
Prometheus registry (so several apps in one process, as in tests, never clash on
metric names). :class:`TelemetryMiddleware` wraps every routed HTTP request in a
server span named after the route template (``GET /api/v1/ticker/{base}/{quote}/
historique``), continuing an incoming W3C ``traceparent``, and records rate,
errors and latency per route.

Several uvicorn workers (``python -m api --workers N``) share one metrics
directory (prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``):
every worker writes its values there, and ``/metrics``, whichever worker answers
it, serves the sum over all of them. Counters of a worker that died stay in the
sum (totals never go back); gauges (WebSocket clients, pool) count live workers
only.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.errors import ApiError
from api.settings import ApiSettings
from infra._procs import pid_alive

PROPAGATOR = TraceContextTextMapPropagator()
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def build_tracer_provider(settings: ApiSettings, otlp_endpoint: str | None) -> TracerProvider:
    """The provider used when the caller passes none: OTLP export iff an endpoint is set
    (``Settings.otlp_endpoint``, shared by every program)."""
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if otlp_endpoint:
        # Imported only when configured: the exporter pulls in protobuf and requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


POOL_GAUGES: tuple[tuple[str, str], ...] = (
    ("pool_size", "Connections currently managed by the pool"),
    ("pool_available", "Idle connections ready in the pool"),
    ("requests_waiting", "Requests waiting for a connection"),
)
"""``cryptoviz_api_db_<key>``: the pool's own counters, by key of its ``get_stats()``."""


class _PoolCollector(Collector):
    """Pool gauges read at scrape time (the pool keeps its own counters)."""

    def __init__(self, stats: Callable[[], Mapping[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        for key, help_text in POOL_GAUGES:
            family = GaugeMetricFamily(f"cryptoviz_api_db_{key}", help_text)
            family.add_metric([], float(stats.get(key, 0)))
            yield family


_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


class _WorkersCollector(Collector):
    """Every worker's metrics from the shared directory, summed; dead workers' gauges dropped.

    prometheus_client forgets a dead process's live gauges only when told
    (``mark_process_dead``); uvicorn, which restarts a dead worker, does not tell
    it, so each scrape does it for the pids no longer running.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._summed = multiprocess.MultiProcessCollector(None, path=str(directory))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        for entry in os.scandir(self._directory):
            match = _LIVE_GAUGE_FILE.match(entry.name)
            if match is not None and not pid_alive(pid := int(match.group(1))):
                multiprocess.mark_process_dead(pid, str(self._directory))  # type: ignore[no-untyped-call]
        yield from self._summed.collect()  # type: ignore[no-untyped-call]


def multiprocess_values_enabled() -> bool:
    """Whether prometheus_client writes values to files (``PROMETHEUS_MULTIPROC_DIR`` was
    set when it was imported: it decides once, at import)."""
    return values.ValueClass is not values.MutexValue


class Telemetry:
    """The tracer and the metrics of one app.

    ``metrics_dir``: the directory the API's worker processes share
    (multiprocess mode); :attr:`registry`, what ``/metrics`` serves, then sums
    every worker's values.
    """

    def __init__(self, tracer_provider: TracerProvider, metrics_dir: Path | None = None) -> None:
        self.provider = tracer_provider
        self.tracer: Tracer = tracer_provider.get_tracer("api")
        self.registry = CollectorRegistry(auto_describe=True)
        self.metrics_dir = metrics_dir
        self._pool_stats: Callable[[], Mapping[str, int]] | None = None
        self._pool_gauges: dict[str, Gauge] = {}
        # Where the metric objects are registered: the served registry itself, or (with
        # a metrics directory) a private one whose values are this worker's files,
        # which the served registry reads back with every other worker's.
        self._own = self.registry if metrics_dir is None else CollectorRegistry()
        if metrics_dir is not None:
            if not multiprocess_values_enabled():
                raise RuntimeError(
                    f"metrics directory {metrics_dir} given, but PROMETHEUS_MULTIPROC_DIR was "
                    "not set when prometheus_client was imported"
                )
            self.registry.register(_WorkersCollector(metrics_dir))
        r = self._own
        self.requests = Counter(
            "cryptoviz_api_requests_total",
            "HTTP requests, by route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.errors = Counter(
            "cryptoviz_api_request_errors_total",
            "HTTP requests answered with a 4xx or 5xx status, by route and status class",
            ["method", "route", "status_class"],
            registry=r,
        )
        self.latency = Histogram(
            "cryptoviz_api_request_duration_seconds",
            "HTTP request latency, by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.db_queries = Histogram(
            "cryptoviz_api_db_query_duration_seconds",
            "Database query latency, by query name",
            ["query"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.db_errors = Counter(
            "cryptoviz_api_db_errors_total",
            "Database calls that failed, by kind (unavailable, timeout, error)",
            ["kind"],
            registry=r,
        )
        self.row_cache_rows = Counter(
            "cryptoviz_api_row_cache_rows_total",
            "History rows served from the encoded-row cache (hit) or read and encoded (miss)",
            ["result"],
            registry=r,
        )
        self.ws_clients = Gauge(
            "cryptoviz_api_ws_clients",
            "Connected WebSocket clients, by route template",
            ["route"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ws_sent = Counter(
            "cryptoviz_api_ws_messages_sent_total",
            "Messages sent to WebSocket clients, by route template",
            ["route"],
            registry=r,
        )
        self.ws_dropped = Counter(
            "cryptoviz_api_ws_dropped_messages_total",
            "Messages dropped from a slow WebSocket client's full backlog (oldest first)",
            ["route"],
            registry=r,
        )
        self.live_relayed = Counter(
            "cryptoviz_api_live_messages_total",
            "Kafka messages relayed to live channels, by channel type",
            ["type"],
            registry=r,
        )
        self.live_skipped = Counter(
            "cryptoviz_api_live_skipped_total",
            "Kafka messages not relayed (unparsable or without a known symbol), by topic",
            ["topic"],
            registry=r,
        )

    def watch_pool(self, stats: Callable[[], Mapping[str, int]]) -> None:
        if self.metrics_dir is None:
            self.registry.register(_PoolCollector(stats))
            return
        # Another worker cannot read this pool at scrape time: each worker keeps
        # gauges of its own pool fresh (:meth:`refresh_pool`), and the scrape sums them.
        self._pool_stats = stats
        self._pool_gauges = {
            key: Gauge(
                f"cryptoviz_api_db_{key}", text, registry=self._own, multiprocess_mode="livesum"
            )
            for key, text in POOL_GAUGES
        }
        self.refresh_pool()

    def refresh_pool(self) -> None:
        """Copy the pool's counters into the shared gauges (multiprocess mode only)."""
        if self._pool_stats is None:
            return
        stats = self._pool_stats()
        for key, gauge in self._pool_gauges.items():
            gauge.set(float(stats.get(key, 0)))

    def shutdown(self) -> None:
        self.provider.shutdown()


class _HeaderGetter(Getter[list[tuple[bytes, bytes]]]):
    """Reads W3C trace headers from raw ASGI headers."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode()
        values = [v.decode("latin-1") for k, v in carrier if k.lower() == wanted]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_ASGI_GETTER = _HeaderGetter()


def context_from_asgi_headers(headers: list[tuple[bytes, bytes]]) -> Context:
    return PROPAGATOR.extract(headers, getter=_ASGI_GETTER)


class _KafkaGetter(Getter[Mapping[str, bytes]]):
    def get(self, carrier: Mapping[str, bytes], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value.decode("latin-1")]

    def keys(self, carrier: Mapping[str, bytes]) -> list[str]:
        return list(carrier)


_KAFKA_GETTER = _KafkaGetter()


KafkaHeaders = Mapping[str, str | bytes | None] | Sequence[tuple[str, str | bytes | None]] | None


def context_from_kafka_headers(headers: KafkaHeaders) -> Context:
    """The trace context a producer put in a Kafka message's headers (empty if none)."""
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    carrier = {
        k.lower(): v.encode("latin-1") if isinstance(v, str) else v
        for k, v in items
        if v is not None
    }
    return PROPAGATOR.extract(carrier, getter=_KAFKA_GETTER)


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` naming ``span``, for a client to continue the trace."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def route_of(scope: Scope) -> str:
    """The route template of a routed request (its path for unrouted ones)."""
    template = scope.get("path_template")
    return str(template) if template else "unmatched"


class TelemetryMiddleware:
    """One server span and one metrics observation per HTTP request."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        t = self.telemetry
        method = str(scope.get("method", "GET"))
        route = route_of(scope)
        status = 500
        started = time.perf_counter()
        parent = context_from_asgi_headers(list(scope.get("headers", [])))
        with t.tracer.start_as_current_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            record_exception=False,
            set_status_on_exception=False,
            attributes={
                "http.request.method": method,
                "http.route": route,
                "url.path": str(scope.get("path", "")),
                "url.scheme": str(scope.get("scheme", "http")),
            },
        ) as span:

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_wrapper)
            except (ApiError, HTTPException) as exc:
                # Raised by an outer middleware (e.g. the rate limiter's 429) and
                # turned into a response by the app-level handler after us.
                status = exc.status_code
                raise
            finally:
                elapsed = time.perf_counter() - started
                _finish_span(span, status)
                t.requests.labels(method, route, str(status)).inc()
                if status >= 400:
                    t.errors.labels(method, route, f"{status // 100}xx").inc()
                t.latency.labels(method, route).observe(elapsed)
                t.refresh_pool()


def _finish_span(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    # Semantic conventions: only 5xx marks a server span as an error.
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
