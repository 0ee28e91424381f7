"""The ingestion hop of a market event's trace: Kafka append -> database commit.

Producers put a W3C ``traceparent`` in every message's headers. For each message
whose trace is *sampled* (the sampled bit, ``0x01``, of the header's trace flags:
the producers' SDK sends ``03``, sampled plus W3C's random-trace-id bit), the sink
records one CONSUMER span named ``ingest <topic>``, child of the producer's span,
from the message's Kafka append time to the commit of the batch that stored it.
With no exporter configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` unset) nothing is
built at all: the hot path pays one ``is None`` check per batch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from flows._parse import SourceMsg, kafka_time

_PROPAGATOR = TraceContextTextMapPropagator()


_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_SAMPLED = 0x01
"""W3C trace-context: the only flag that says "record"; the others (``0x02``, random
trace id, and bits not defined yet) must be ignored, not compared."""


def sampled(traceparent: bytes) -> bool:
    """Whether a W3C ``traceparent`` is valid and has the sampled bit of its flags set.

    Invalid: not ``version-trace_id-parent_id-flags`` in lowercase hex, version ``ff``,
    an all-zero trace or parent id, or version ``00`` with anything after the flags.
    """
    match = _TRACEPARENT.fullmatch(traceparent)
    if match is None:
        return False
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return False
    if trace_id.count(b"0") == 32 or parent_id.count(b"0") == 16:
        return False
    return bool(int(flags, 16) & _SAMPLED)


def _sampled_parent(msg: SourceMsg) -> str | None:
    for key, value in msg.headers or ():
        if key == "traceparent" and isinstance(value, bytes) and sampled(value):
            return value.decode("ascii")
    return None


class CommitTracer:
    """Records ``ingest <topic>`` spans for the sampled messages of a committed batch."""

    def __init__(self, topic: str, tracer: Tracer) -> None:
        self._name = f"ingest {topic}"
        self._topic = topic
        self._tracer = tracer

    def record(self, origins: Sequence[SourceMsg], started: datetime, committed: datetime) -> int:
        """One span per sampled message; returns how many were recorded."""
        end_ns = int(committed.timestamp() * 1e9)
        count = 0
        for msg in origins:
            parent = _sampled_parent(msg)
            if parent is None:
                continue
            appended = kafka_time(msg) or started
            span = self._tracer.start_span(
                self._name,
                context=_PROPAGATOR.extract({"traceparent": parent}),
                kind=SpanKind.CONSUMER,
                start_time=int(appended.timestamp() * 1e9),
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": str(msg.topic),
                    "messaging.kafka.partition": int(msg.partition or 0),
                    "messaging.kafka.offset": int(msg.offset or 0),
                    "cryptoviz.raw_topic": self._topic,
                },
            )
            span.end(end_time=end_ns)
            count += 1
        return count


def otlp_commit_tracer(topic: str, endpoint: str | None) -> CommitTracer | None:
    """A tracer exporting over OTLP/HTTP to ``endpoint``, or ``None`` when unset."""
    if not endpoint:
        return None
    # Imported only when configured: the exporter pulls in protobuf and requests.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": f"ingest-{topic}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    return CommitTracer(topic, provider.get_tracer("cryptoviz.flows"))
