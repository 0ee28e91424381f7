"""The ingestion span continues the producer's trace, for sampled messages only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from flows._tracing import CommitTracer, otlp_commit_tracer

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
