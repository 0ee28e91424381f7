"""Prometheus metrics of the analytics job, read from each query's last progress report."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge

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
