"""Bytewax sink writing parsed batches to PostgreSQL, riding out database outages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows import _metrics as m
from flows._dead_letter import DeadLetterPublisher, dead_letter, reason_code
from flows._parse import ParsedBatch, kafka_time
from flows._pg_writer import BatchWriter, DatabaseUnavailable, WriteResult
from flows._tables import TableSpec
from flows._tracing import CommitTracer
from infra.settings import IngestSettings

log = logging.getLogger(__name__)


class _PostgresPartition(StatelessSinkPartition[ParsedBatch]):
    def __init__(
        self,
        *,
        writer: BatchWriter,
        topic: str,
        retry: IngestSettings,
        publisher: Callable[[], DeadLetterPublisher | None],
        dead_letter_topic: str,
        sleep: Callable[[float], None],
        tracer: CommitTracer | None = None,
    ) -> None:
        self._tracer = tracer
        self._writer = writer
        self._topic = topic
        self._retry = retry
        self._publisher_factory = publisher
        self._publisher: DeadLetterPublisher | None = None
        self._dlq = dead_letter_topic
        self._sleep = sleep

    def write_batch(self, items: list[ParsedBatch]) -> None:
        records = [r for batch in items for r in batch.records]
        if not records:
            return
        origins = [o for batch in items for o in batch.origins]
        started = time.perf_counter()
        started_at = datetime.now(UTC)
        result = self._write_until_done(records, [kafka_time(o) for o in origins])
        m.COMMIT_SECONDS.labels(self._topic).observe(time.perf_counter() - started)
        if self._tracer is not None:
            self._tracer.record(origins, started_at, datetime.now(UTC))
        m.BATCH_SIZE.labels(self._topic).observe(len(records))
        m.ROWS.labels(self._topic).inc(result.inserted)
        m.DUPLICATES.labels(self._topic).inc(result.duplicates)
        if result.refused:
            letters = [
                dead_letter(origins[i], reason=reason, stage="database", topic=self._dlq)
                for i, reason in result.refused
            ]
            if self._publisher is None:
                self._publisher = self._publisher_factory()
            if self._publisher is not None:
                self._publisher.publish(letters)
            code = reason_code("database", "")
            m.DEAD_LETTERS.labels(self._topic, "database", code).inc(len(letters))
            log.warning("%s: database refused %d rows (dead-lettered)", self._topic, len(letters))

    def _write_until_done(
        self, records: list[Any], kafka_times: list[datetime | None]
    ) -> WriteResult:
        """Retry with capped exponential backoff while the database is unavailable.

        Blocking here is deliberate: the messages stay in Kafka, the source stops
        advancing, and the flow resumes where it was when the database returns. Each
        wait is the backoff's, or the error's ``retry_after`` when that is longer (the
        server said it cannot take work yet), like a quix-streams backpressure error.
        """
        delay = self._retry.retry_initial_s
        outage_started: float | None = None
        while True:
            try:
                result = self._writer.write(records, kafka_times)
            except DatabaseUnavailable as exc:
                if outage_started is None:
                    outage_started = time.monotonic()
                    log.warning("%s: %s; retrying with backoff", self._topic, exc.detail)
                m.DB_RETRIES.labels(self._topic).inc()
                self._sleep(max(delay, exc.retry_after))
                delay = min(delay * 2, self._retry.retry_max_s)
                continue
            if outage_started is not None:
                log.warning(
                    "%s: database back after %.1f s", self._topic, time.monotonic() - outage_started
                )
            return result

    def close(self) -> None:
        self._writer.close()
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None


class PostgresSink(DynamicSink[ParsedBatch]):
    """One connection per worker; see :mod:`flows._pg_writer` for the write path."""

    def __init__(
        self,
        conninfo: str,
        spec: TableSpec,
        topic: str,
        retry: IngestSettings,
        *,
        dead_letter_topic: str,
        bootstrap: str | None,
        sleep: Callable[[float], None] = time.sleep,
        tracer: CommitTracer | None = None,
    ) -> None:
        self._tracer = tracer
        self._conninfo = conninfo
        self._spec = spec
        self._topic = topic
        self._retry = retry
        self._dlq = dead_letter_topic
        self._bootstrap = bootstrap
        self._sleep = sleep

    def _publisher(self) -> DeadLetterPublisher | None:
        return DeadLetterPublisher(self._bootstrap) if self._bootstrap else None

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PostgresPartition:
        return _PostgresPartition(
            writer=BatchWriter(self._conninfo, self._spec),
            topic=self._topic,
            retry=self._retry,
            publisher=self._publisher,
            dead_letter_topic=self._dlq,
            sleep=self._sleep,
            tracer=self._tracer,
        )
