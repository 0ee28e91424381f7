"""Kafka -> PostgreSQL ingestion dataflow, one per raw topic.

``build_ingest_flow("rawticker", settings)`` wires::

    kafka_in (bytewax.connectors.kafka) --oks--> parse (handler per batch) --> db (PostgresSink)
            \\--errs--> kafka_errors --\\                  \\--> dead_letters --> dlq (Kafka)

Run one as its own worker with ``python -m flows.run ingest-rawticker`` (see
:mod:`flows.run` for scaling and recovery). ``topic`` picks the handler and the
table; ``kafka_topic`` (default: that topic in the topic map, ``Settings.kafka.topics``)
is the topic actually consumed, and the flow's position in it is committed to the
consumer group ``cryptoviz-ingest-<topic>`` (for the lag; the flow itself resumes from
its recovery snapshots). Dead letters go to the map's ``deadletter`` topic. Tests
pass ``source``/sinks to run the same flow on ``TestingSource``/``TestingSink``
without a broker.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink
from confluent_kafka import OFFSET_BEGINNING

from flows._consumer import CONSUMER_CONFIG, committing_to
from flows._dead_letter import PRODUCER_CONFIG
from flows._parse import BatchParser, ParsedBatch, SinkMsg, SourceMsg, kafka_error_letter
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
    source: Source[SourceMsg] | None = None,
    db_sink: Sink[ParsedBatch] | None = None,
    dlq_sink: Sink[SinkMsg] | None = None,
) -> Dataflow:
    handler = handler_for(topic)
    spec = TABLES[topic]
    kafka = settings.kafka
    bootstrap = kafka.bootstrap_servers
    flow = Dataflow(f"ingest_{topic}")
    errors: Stream[Any] | None = None
    if source is None:
        if bootstrap is None:
            raise SettingsError("KAFKA_BOOTSTRAP_SERVERS is not set and no source was given")
        consumed = kop.input(
            "kafka_in",
            flow,
            brokers=[bootstrap],
            topics=[kafka_topic or kafka.topics.of(topic)],
            tail=True,
            starting_offset=OFFSET_BEGINNING,
            batch_size=settings.ingest.batch_size,
            add_config={**CONSUMER_CONFIG, **committing_to(consumer_group(ingest_program(topic)))},
        )
        messages: Stream[SourceMsg] = consumed.oks
        errors = op.map(
            "kafka_errors", consumed.errs, kafka_error_letter(topic, kafka.topics.deadletter)
        )
    else:
        messages = op.input("kafka_in", flow, source)
    parsed = op.flat_map_batch(
        "parse",
        messages,
        BatchParser(
            topic,
            handler,
            settings.coin_table(),
            kafka.topics.deadletter,
            stamped=topic in STAMPED_TOPICS,
        ),
    )
    letters: Stream[SinkMsg] = op.flat_map("dead_letters", parsed, lambda b: b.dead_letters)
    if errors is not None:
        letters = op.merge("all_dead_letters", letters, errors)
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
