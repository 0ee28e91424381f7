"""Prometheus metrics of the analytics job, read from each query's last progress report,
and each query's Kafka position, committed to its consumer group for the lag."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge

from handlers import CryptoVizError
from infra.kafka_offsets import KafkaOffsets, TopicPartitionKey
from infra.programs import consumer_group

log = logging.getLogger(__name__)
PROGRAM = "spark-analytics"
"""The job's name in :data:`infra.programs.PROGRAMS`."""

BATCH_SECONDS = Gauge(
    "cryptoviz_spark_batch_duration_seconds",
    "Wall time of the query's last micro-batch (Spark's triggerExecution)",
    ["query"],
)
INPUT_ROWS = Gauge(
    "cryptoviz_spark_batch_input_rows", "Kafka records read by the last micro-batch", ["query"]
)
INPUT_RATE = Gauge(
    "cryptoviz_spark_input_rows_per_second",
    "Rate at which records arrived for the last micro-batch",
    ["query"],
)
PROCESSED_RATE = Gauge(
    "cryptoviz_spark_processed_rows_per_second",
    "Rate at which the last micro-batch processed its records",
    ["query"],
)
LAST_BATCH = Gauge(
    "cryptoviz_spark_last_batch_timestamp_seconds",
    "When the query's last micro-batch started (Unix time): staleness = time() - this",
    ["query"],
)
RESTARTS = Counter(
    "cryptoviz_spark_query_restarts_total",
    "Queries restarted from their checkpoint after a failure",
    ["query"],
)


def observe(query: str, progress: Mapping[str, Any]) -> None:
    """Update the gauges from one ``StreamingQuery.lastProgress`` dictionary."""
    duration_ms = (progress.get("durationMs") or {}).get("triggerExecution")
    if duration_ms is not None:
        BATCH_SECONDS.labels(query).set(float(duration_ms) / 1000)
    INPUT_ROWS.labels(query).set(float(progress.get("numInputRows") or 0))
    INPUT_RATE.labels(query).set(float(progress.get("inputRowsPerSecond") or 0))
    PROCESSED_RATE.labels(query).set(float(progress.get("processedRowsPerSecond") or 0))
    stamp = progress.get("timestamp")
    if isinstance(stamp, str):
        LAST_BATCH.labels(query).set(datetime.fromisoformat(stamp).timestamp())


def kafka_positions(progress: Mapping[str, Any]) -> dict[TopicPartitionKey, int]:
    """Where the query's last micro-batch ended in each Kafka partition it reads.

    A Kafka source's ``endOffset`` is ``{"topic": {"partition": offset}}``, each offset
    the next one to read: exactly a committed position. PySpark 4's progress objects
    hold it as ``str()`` of a dict, so their own JSON (``.json``) is read when they have it.
    """
    text = getattr(progress, "json", None)
    if isinstance(text, str):
        progress = json.loads(text)
    out: dict[TopicPartitionKey, int] = {}
    for source in progress.get("sources") or []:
        end = source.get("endOffset")
        if isinstance(end, str):
            try:
                end = json.loads(end)
            except ValueError:
                continue
        if not isinstance(end, Mapping):
            continue
        for topic, partitions in end.items():
            if isinstance(partitions, Mapping):
                out.update({(topic, int(p)): int(offset) for p, offset in partitions.items()})
    return out


class Positions:
    """Commits each query's finished micro-batches to its consumer group
    (``cryptoviz-spark-analytics-<query>``), so the lag is known with the job running or
    not. Spark resumes from its checkpoint, never from the group; a failed commit is
    logged and retried with the next progress report, never fatal."""

    def __init__(self, offsets: KafkaOffsets) -> None:
        self._offsets = offsets
        self._committed: dict[str, dict[TopicPartitionKey, int]] = {}

    def update(self, query: str, progress: Mapping[str, Any]) -> None:
        positions = kafka_positions(progress)
        if not positions or positions == self._committed.get(query):
            return
        try:
            self._offsets.commit(consumer_group(PROGRAM, query), positions)
        except CryptoVizError as exc:
            log.warning("query %s: position not committed (%s)", query, exc.detail)
            return
        self._committed[query] = positions
