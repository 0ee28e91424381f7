"""Prometheus metrics of the ingestion flows (served by ``flows.run``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES = Counter(
    "cryptoviz_ingest_messages_total", "Messages consumed from a raw topic", ["topic"]
)
ROWS = Counter("cryptoviz_ingest_rows_total", "Rows committed to the database", ["topic"])
DUPLICATES = Counter(
    "cryptoviz_ingest_duplicates_total",
    "Valid messages already in the database (redelivery or replay)",
    ["topic"],
)
DEAD_LETTERS = Counter(
    "cryptoviz_dead_letters_total",
    "Messages sent to the dead-letter topic, by stage (kafka, parse, database) and reason "
    "(flows._dead_letter.reason_code: 'missing pair', 'malformed payload'...)",
    ["topic", "stage", "reason"],
)
DB_RETRIES = Counter(
    "cryptoviz_ingest_db_retries_total", "Batch writes retried because the database was down",
    ["topic"],
)  # fmt: skip
BATCH_SIZE = Histogram(
    "cryptoviz_ingest_batch_rows",
    "Rows per database write",
    ["topic"],
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000),
)
COMMIT_SECONDS = Histogram(
    "cryptoviz_ingest_commit_seconds",
    "Time to write and commit one batch",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
