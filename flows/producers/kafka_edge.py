"""The Kafka edge of every producer: wire message -> keyed, traced, acknowledged record.

* ``acks=all`` + ``enable.idempotence``: librdkafka retries transient errors itself
  without duplicating or reordering within a partition.
* A delivery report with an error is counted and the message produced again, up to
  ``OutputSettings.retries`` times; after that the worker fails loudly
  (:class:`DeliveryFailed`) instead of dropping anything. (Such a re-sent message
  can land after later messages of its key; consumers are idempotent on content.)
* The sink is a Bytewax *stateful* sink so that :meth:`snapshot` runs at every epoch
  boundary: it waits until every message of the epoch is acknowledged, so a source
  state committed by recovery (RSS dedup keys, replay positions, trade ids) never
  claims a message that Kafka does not have.
* Key = canonical pair (ticker, trade, alert) or first coin mentioned (article), so
  one symbol's messages stay in one partition, in order.
* Each message carries a W3C ``traceparent`` header: the ``publish`` span starts at
  the message's receive time and ends at its acknowledgement, and downstream
  consumers continue the trace.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import KafkaError, Message, Producer
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import Counter, Histogram

from flows.producers import _metrics as m
from flows.producers.settings import OutputSettings
from handlers import (
    ArticleMessage,
    CryptoVizError,
    WireMessage,
    encode_message,
    message_topic,
)
from infra.settings import Topics

log = logging.getLogger(__name__)

PARTITION = "kafka"


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One message ready for Kafka."""

    topic: str
    key: bytes | None
    value: bytes
    created_ns: int
    """When the data was received (epoch ns): the start of the publish span."""
    parent: str | None = None
    """``traceparent`` of the message this one derives from (alerts from tickers)."""


Keyed = tuple[str, OutRecord]
Headers = list[tuple[str, str | bytes | None]]
"""What the Kafka sink consumes: Bytewax routes on the first element."""


def message_key(msg: WireMessage) -> bytes | None:
    if isinstance(msg, ArticleMessage):
        # Articles are not about one pair: the first coin named keeps one coin's news
        # in order; articles naming none go by site (none: any partition).
        first = msg.cryptocurrencies_mentioned[0] if msg.cryptocurrencies_mentioned else None
        key = first or msg.website
        return None if key is None else key.encode()
    return msg.pair.encode()


def to_record(msg: WireMessage, topics: Topics, parent: str | None = None) -> Keyed:
    """``msg`` as a keyed :class:`OutRecord` for :class:`KafkaProducerSink`, on its topic
    of the topic map (``Settings.kafka.topics``)."""
    seconds = msg.receive_ts if msg.receive_ts is not None else msg.timestamp
    if seconds is None:  # an article with neither (producers always set receive_ts)
        seconds = time.time()
    record = OutRecord(
        topic=topics.of(message_topic(msg)),
        key=message_key(msg),
        value=encode_message(msg),
        created_ns=int(seconds * 1e9),
        parent=parent,
    )
    return PARTITION, record


_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})")


class ProduceTracer:
    """The ``traceparent`` of each message, and its PRODUCER span when spans are exported.

    With an OTLP endpoint, every sampled message gets a real SDK span (receive ->
    acknowledgement) and its context goes on the wire. Without one, a span would be
    built only to be dropped, at ~70 us a message: the header is then rendered
    directly from the SDK's random id generator and ratio sampler, which is exactly
    what the SDK propagator would write for a span nobody records. Either way each
    message starts its own trace (or continues ``record.parent``).
    """

    def __init__(self, service: str, sample_ratio: float, otlp_endpoint: str | None) -> None:
        self._ids = RandomIdGenerator()
        self._bound = TraceIdRatioBased.get_bound_for_rate(sample_ratio)
        self._provider: TracerProvider | None = None
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self._provider = TracerProvider(
                resource=Resource.create({"service.name": service}),
                sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
            )
            exporter = OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")
            self._provider.add_span_processor(BatchSpanProcessor(exporter))
            self._tracer = self._provider.get_tracer("cryptoviz.producers")
            self._propagator = TraceContextTextMapPropagator()

    def start(self, record: OutRecord) -> tuple[Span | None, Headers]:
        if self._provider is not None:
            return self._start_span(record)
        parent = _TRACEPARENT.fullmatch(record.parent) if record.parent else None
        if parent is not None:
            trace_id, flags = int(parent[1], 16), int(parent[2], 16) & 1
        else:
            trace_id = self._ids.generate_trace_id()
            # The SDK's TraceIdRatioBased rule, so downstream samplers agree with it.
            flags = 1 if trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self._bound else 0
        header = f"00-{trace_id:032x}-{self._ids.generate_span_id():016x}-{flags:02x}"
        return None, [("traceparent", header.encode())]

    def _start_span(self, record: OutRecord) -> tuple[Span, Headers]:
        parent: Context | None = None
        if record.parent is not None:
            parent = self._propagator.extract({"traceparent": record.parent})
        span = self._tracer.start_span(
            f"publish {record.topic}",
            context=parent,
            kind=SpanKind.PRODUCER,
            start_time=record.created_ns,
            attributes={"messaging.system": "kafka", "messaging.destination.name": record.topic},
        )
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=set_span_in_context(span))
        headers: Headers = [(k, v.encode()) for k, v in carrier.items()]
        return span, headers

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()


class DeliveryFailed(CryptoVizError, RuntimeError):
    """Kafka did not acknowledge a message after every retry: the worker must stop."""


class KafkaProducerSink(FixedPartitionedSink[OutRecord, None]):
    """Writes :class:`OutRecord` items to Kafka; one partition, one producer per worker."""

    def __init__(
        self,
        bootstrap: str,
        output: OutputSettings,
        *,
        service: str = "cryptoviz-producer",
        otlp_endpoint: str | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._output = output
        self._service = service
        self._otlp_endpoint = otlp_endpoint
        """OTLP/HTTP base URL (``Settings.otlp_endpoint``); spans are only built when set."""

    def list_parts(self) -> list[str]:
        return [PARTITION]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> StatefulSinkPartition[OutRecord, None]:
        return _KafkaPartition(self._bootstrap, self._output, self._service, self._otlp_endpoint)


class _KafkaPartition(StatefulSinkPartition[OutRecord, None]):
    def __init__(
        self, bootstrap: str, output: OutputSettings, service: str, otlp_endpoint: str | None
    ) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": output.linger_ms,
            "compression.type": "lz4",
            "client.id": service,
            **output.config,
        }
        self._producer = Producer(config)
        self._output = output
        self._tracer = ProduceTracer(service, output.trace_sample_ratio, otlp_endpoint)
        self._retry: list[tuple[OutRecord, int, Span | None, Headers]] = []
        self._fatal: str | None = None
        self._failed = False
        self._children: dict[str, tuple[Counter, Histogram]] = {}

    def _metrics(self, topic: str) -> tuple[Counter, Histogram]:
        # Labelled children looked up once per topic, not once per message.
        children = self._children.get(topic)
        if children is None:
            children = (m.PRODUCED.labels(topic), m.DELIVERY_SECONDS.labels(topic))
            self._children[topic] = children
        return children

    def _produce(
        self, record: OutRecord, attempt: int, span: Span | None, headers: Headers
    ) -> None:
        callback = partial(self._delivered, record, attempt, span, headers)
        while True:
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=headers,
                    on_delivery=callback,
                )
                return
            except BufferError:
                # Local queue full: serve delivery reports until there is room again.
                self._producer.poll(0.05)

    def _delivered(
        self,
        record: OutRecord,
        attempt: int,
        span: Span | None,
        headers: Headers,
        err: KafkaError | None,
        _msg: Message,
    ) -> None:
        if err is None:
            produced, seconds = self._metrics(record.topic)
            produced.inc()
            seconds.observe(max(0.0, time.time() - record.created_ns / 1e9))
            if span is not None:
                span.end()
            return
        m.DELIVERY_FAILURES.labels(record.topic).inc()
        reason = f"delivery to {record.topic} failed (attempt {attempt + 1}): {err}"
        if attempt < self._output.retries and not err.fatal():
            log.warning("%s; producing it again", reason)
            self._retry.append((record, attempt + 1, span, headers))
            return
        log.error("%s; giving up", reason)
        if span is not None:
            span.set_status(Status(StatusCode.ERROR, str(err)))
            span.end()
        if self._fatal is None:
            self._fatal = reason

    def _service_reports(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)
        while self._retry:
            record, attempt, span, headers = self._retry.pop(0)
            m.DELIVERY_RETRIES.labels(record.topic).inc()
            self._produce(record, attempt, span, headers)
        if self._fatal is not None:
            self._failed = True
            raise DeliveryFailed(self._fatal)

    def write_batch(self, values: list[OutRecord]) -> None:
        for record in values:
            span, headers = self._tracer.start(record)
            self._produce(record, 0, span, headers)
        self._service_reports()

    def _drain(self) -> None:
        deadline = time.monotonic() + self._output.flush_timeout_s
        while True:
            remaining = self._producer.flush(max(0.0, min(1.0, deadline - time.monotonic())))
            self._service_reports()
            if remaining == 0 and not self._retry and len(self._producer) == 0:
                return
            if time.monotonic() >= deadline:
                self._failed = True
                raise DeliveryFailed(
                    f"{len(self._producer)} messages not acknowledged by Kafka within "
                    f"{self._output.flush_timeout_s:g} s"
                )

    def snapshot(self) -> None:
        # Epoch boundary: everything written in this epoch must be acknowledged before
        # Bytewax commits the sources' state for it.
        self._drain()

    def close(self) -> None:
        try:
            # Bytewax also calls close() while unwinding from an error raised here: a
            # second exception then would abort the process instead of reporting the
            # first one, which already said everything.
            if not self._failed:
                self._drain()
        finally:
            self._tracer.shutdown()
