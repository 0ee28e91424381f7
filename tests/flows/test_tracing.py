"""The ingestion span continues the producer's trace, for sampled messages only."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
from litestar.testing import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from api import create_app
from api.settings import LiveTopics
from api.telemetry import build_tracer_provider
from flows._tracing import CommitTracer, otlp_commit_tracer, sampled
from flows.producers.settings import SyntheticSettings
from flows.producers.synthetic import record_capture
from infra.settings import RAW_TOPICS, Settings
from tests._wait import wait_for
from tests.api.conftest import test_api_settings
from tests.flows.conftest import REPO, Worker, count_rows
from tests.flows.producers._servers import HttpServer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
APPENDED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _msg(flags: str, offset: int) -> KafkaSourceMessage[Any, Any]:
    header = f"00-{TRACE}-{PARENT}-{flags}".encode()
    return KafkaSourceMessage(
        key=b"BTC/USD", value=b"{}", topic="rawticker", partition=2, offset=offset,
        headers=[("traceparent", header)],
        timestamp=(TIMESTAMP_LOG_APPEND_TIME, int(APPENDED.timestamp() * 1000)),
    )  # fmt: skip


def test_sampled_messages_get_a_child_span_from_append_to_commit() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = CommitTracer("rawticker", provider.get_tracer("test"))
    committed = APPENDED + timedelta(milliseconds=40)
    plain: KafkaSourceMessage[Any, Any] = KafkaSourceMessage(
        key=None, value=b"{}", topic="rawticker", partition=0, offset=9
    )
    recorded = tracer.record(
        [_msg("01", 7), _msg("00", 8), plain], APPENDED + timedelta(milliseconds=30), committed
    )
    assert recorded == 1
    (span,) = exporter.get_finished_spans()
    assert span.name == "ingest rawticker"
    assert span.kind == SpanKind.CONSUMER
    assert span.context is not None
    assert span.parent is not None
    assert format(span.context.trace_id, "032x") == TRACE
    assert format(span.parent.span_id, "016x") == PARENT
    assert span.end_time is not None
    assert span.start_time is not None
    assert (span.end_time - span.start_time) / 1e6 == 40.0
    assert span.attributes is not None
    assert span.attributes["messaging.kafka.offset"] == 7
    assert span.attributes["messaging.kafka.partition"] == 2


def test_no_endpoint_means_no_tracer() -> None:
    assert otlp_commit_tracer("rawticker", None) is None
    assert isinstance(otlp_commit_tracer("rawticker", "http://127.0.0.1:4318"), CommitTracer)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-{PARENT}-00", False),
        (f"00-{TRACE}-{PARENT}-01", True),
        (f"00-{TRACE}-{PARENT}-02", False),  # random trace id only
        (f"00-{TRACE}-{PARENT}-03", True),  # what the producers' SDK sends
        (f"00-{TRACE}-{PARENT}-ff", True),  # unknown bits are ignored, not compared
        (f"00-{TRACE}-{PARENT}-fe", False),
        (f"01-{TRACE}-{PARENT}-01-future", True),  # a later version may add fields
        (f"00-{TRACE}-{PARENT}-01-extra", False),  # version 00 may not
        (f"ff-{TRACE}-{PARENT}-01", False),  # version ff is invalid
        (f"00-{'0' * 32}-{PARENT}-01", False),
        (f"00-{TRACE}-{'0' * 16}-01", False),
        (f"00-{TRACE.upper()}-{PARENT}-01", False),
        (f"00-{TRACE}-{PARENT}-1", False),
        (f"00-{TRACE}-{PARENT}-0x", False),
        (f"00-{TRACE}-{PARENT}01", False),
        ("", False),
        ("garbage-01", False),
    ],
)
def test_sampled_reads_the_sampled_bit_of_valid_headers(header: str, expected: bool) -> None:
    assert sampled(header.encode()) is expected


def test_messages_flagged_03_get_their_ingest_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = CommitTracer("rawticker", provider.get_tracer("test"))
    messages = [_msg(flags, offset) for offset, flags in enumerate(("03", "02", "01", "00"))]
    assert tracer.record(messages, APPENDED, APPENDED + timedelta(milliseconds=5)) == 2
    spans = exporter.get_finished_spans()
    offsets = {s.attributes["messaging.kafka.offset"] for s in spans if s.attributes}
    assert offsets == {0, 2}


# -- end to end: producer -> Kafka -> ingestion and live relay, one trace -----------------


@dataclass(frozen=True)
class Exported:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str


def exported_spans(posts: list[tuple[str, bytes]]) -> list[Exported]:
    """Spans of the OTLP/HTTP protobuf requests a receiver got (what a collector decodes)."""
    spans: list[Exported] = []
    for path, raw in posts:
        assert path == "/v1/traces", path
        body = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                spans += [
                    Exported(attributes["service.name"], s.name, s.kind, s.trace_id.hex(),
                             s.span_id.hex(), s.parent_span_id.hex())
                    for s in scope_spans.spans
                ]  # fmt: skip
    return spans


@pytest.mark.integration
def test_one_sampled_event_is_traced_through_producer_ingestion_and_live_relay(
    stack: Settings,
    fresh_db: str,
    new_topic: Callable[..., str],
    worker_env: Callable[..., dict[str, str]],
    workers: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    """Real processes on the real broker and database, exporting to an OTLP/HTTP receiver:
    ``producer-replay`` (publish span), ``ingest-rawticker`` (ingest span) and the API's
    live relay (process span) all join the trace each message carries."""
    topics = {raw: new_topic(raw, 1) for raw in RAW_TOPICS}
    ticker_topic, dlq = topics["rawticker"], new_topic("deadletter")
    capture = record_capture(
        SyntheticSettings(pairs=1, rate=5.0, trade_share=0.0, seed=7),
        stack.coin_table(), datetime.now(UTC), 20, tmp_path / "ticks.txt",
    )  # fmt: skip
    with HttpServer() as collector:
        env = {
            **worker_env(fresh_db, dlq),
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.base,
            **{f"CRYPTOVIZ_TOPIC_{raw.upper()}": topic for raw, topic in topics.items()},
        }
        workers("ingest-rawticker", ticker_topic, env)
        api = test_api_settings(
            live_enabled=True,
            live_topics=LiveTopics(
                **{**dict.fromkeys(LiveTopics.__struct_fields__), "ticker": ticker_topic}
            ),
            service_name="api",
        )
        provider = build_tracer_provider(api, collector.base)  # Settings.otlp_endpoint
        app = create_app(stack.with_servers(database=fresh_db), api, tracer_provider=provider)
        with TestClient(app) as client, client.websocket_connect("/ws/ticker/BTC/USD/") as ws:
            wait_for(
                lambda: client.get("/api/v1/health/").json()["live"]["assigned_partitions"] >= 1,
                30, "the live relay's partition",
            )  # fmt: skip
            replay = subprocess.run(
                [sys.executable, "-m", "flows.run", "producer-replay"],
                env={**env, "CRYPTOVIZ_REPLAY_FILES": str(capture), "CRYPTOVIZ_REPLAY_EXIT": "1",
                     "CRYPTOVIZ_REPLAY_SPEED": "1", "CRYPTOVIZ_TRACE_SAMPLE_RATIO": "1"},
                cwd=REPO, capture_output=True, timeout=120, check=False,
            )  # fmt: skip
            assert replay.returncode == 0, replay.stdout.decode()[-2000:]
            message = ws.receive_json(timeout=30)
            wait_for(lambda: count_rows(fresh_db, "ticker_data") == 20, 60, "20 ticker rows")
        provider.shutdown()  # flushes the API's spans
        trace_id = message["traceparent"].split("-")[1]

        def trace() -> dict[str, Exported]:
            return {s.name: s for s in exported_spans(list(collector.posts))
                    if s.trace_id == trace_id}  # fmt: skip

        # The ingestion worker exports in the background, every 5 s.
        wait_for(lambda: len(trace()) == 3, 30, f"three spans of trace {trace_id}")
    spans = trace()
    publish = spans[f"publish {ticker_topic}"]
    ingest = spans["ingest rawticker"]  # named by the raw topic, like its worker
    relay = spans[f"process {ticker_topic}"]
    assert (publish.service, ingest.service, relay.service) == (
        "producer-replay", "ingest-rawticker", "api"
    )  # fmt: skip
    assert (publish.kind, ingest.kind, relay.kind) == (
        Span.SPAN_KIND_PRODUCER, Span.SPAN_KIND_CONSUMER, Span.SPAN_KIND_CONSUMER
    )  # fmt: skip
    assert publish.parent_id == ""
    assert ingest.parent_id == publish.span_id
    assert relay.parent_id == publish.span_id
    assert message["traceparent"] == f"00-{trace_id}-{relay.span_id}-03"
