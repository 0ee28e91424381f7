"""Kafka -> PostgreSQL ingestion dataflow, one per raw topic.

``build_ingest_flow("rawticker", settings)`` wires::

    kafka_in (one RawBatch per poll) --> parse (handler per batch) --> db (PostgresSink)
                                                  \\--> dead_letters --> dlq (Kafka)

Run one as its own worker with ``python -m flows.run ingest-rawticker`` (see
:mod:`flows.run` for scaling and recovery). ``topic`` picks the handler and the
table; ``kafka_topic`` (default: that topic in the topic map, ``Settings.kafka.topics``)
is the topic actually consumed (``epoch_s``, the worker's epoch interval, paces its
partitions: :class:`flows._kafka_source.EpochPacer`), and the flow's position in it is
committed to the consumer group ``cryptoviz-ingest-<topic>`` (for the lag; the flow
itself resumes from its recovery snapshots). Dead letters go to the map's
``deadletter`` topic. The Kafka input is :mod:`flows._kafka_source` (whole polls, no
per-message objects); the database sink writes behind the flow and commits before each
recovery snapshot (:mod:`flows._pg_sink`). Tests pass ``source``/sinks to run the same flow on
``TestingSource``/``TestingSink`` without a broker.
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows._consumer import CONSUMER_CONFIG, committing_to
from flows._dead_letter import PRODUCER_CONFIG
from flows._kafka_source import KafkaBatchSource, kafka_batches
from flows._parse import BatchParser, ParsedBatch, RawBatch, SinkMsg, SourceMsg, raw_batches
from flows._pg_sink import PostgresSink
from flows._tables import TABLES
from flows._tracing import otlp_commit_tracer
from handlers import STAMPED_TOPICS, handler_for
from infra.programs import consumer_group, ingest_program
from infra.settings import Settings, SettingsError


def build_ingest_flow(
    topic: str,
    settings: Settings,
    *,
    kafka_topic: str | None = None,
    epoch_s: float | None = None,
    source: Source[SourceMsg] | None = None,
    db_sink: Sink[ParsedBatch] | PostgresSink | None = None,
    dlq_sink: Sink[SinkMsg] | None = None,
) -> Dataflow:
    handler = handler_for(topic)
    spec = TABLES[topic]
    kafka = settings.kafka
    bootstrap = kafka.bootstrap_servers
    flow = Dataflow(f"ingest_{topic}")
    raw: Stream[RawBatch]
    if source is None:
        if bootstrap is None:
            raise SettingsError("KAFKA_BOOTSTRAP_SERVERS is not set and no source was given")
        kafka_source = KafkaBatchSource(
            [bootstrap],
            kafka_topic or kafka.topics.of(topic),
            batch_size=settings.ingest.batch_size,
            add_config={**CONSUMER_CONFIG, **committing_to(consumer_group(ingest_program(topic)))},
            epoch_s=epoch_s,
        )
        raw = kafka_batches("kafka_in", flow, kafka_source)
    else:
        messages = op.input("kafka_in", flow, source)
        raw = op.flat_map_batch("batch", messages, raw_batches)
    parsed = op.map(
        "parse",
        raw,
        BatchParser(
            topic,
            handler,
            settings.coin_table(),
            kafka.topics.deadletter,
            stamped=topic in STAMPED_TOPICS,
        ),
    )
    letters: Stream[SinkMsg] = op.flat_map("dead_letters", parsed, lambda b: b.dead_letters)
    if db_sink is None:
        if settings.database.url is None:
            raise SettingsError("DATABASE_URL is not set and no database sink was given")
        db_sink = PostgresSink(
            settings.database.url,
            spec,
            topic,
            settings.ingest,
            dead_letter_topic=kafka.topics.deadletter,
            bootstrap=bootstrap,
            tracer=otlp_commit_tracer(topic, settings.otlp_endpoint),
        )
    if isinstance(db_sink, PostgresSink):  # routed by the Kafka partition of each batch
        op.output("db", op.key_on("route", parsed, lambda b: b.key), db_sink)
    else:
        op.output("db", parsed, db_sink)
    if dlq_sink is not None:
        op.output("dlq", letters, dlq_sink)
    else:
        if bootstrap is None:
            raise SettingsError(
                "KAFKA_BOOTSTRAP_SERVERS is not set and no dead-letter sink was given"
            )
        kop.output(
            "dlq",
            letters,
            brokers=[bootstrap],
            topic=kafka.topics.deadletter,
            add_config={"enable.idempotence": "true", "acks": "all", **PRODUCER_CONFIG},
        )
    return flow
