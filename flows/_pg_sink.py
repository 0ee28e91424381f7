"""Bytewax sink writing parsed batches to PostgreSQL behind the flow, riding out outages.

The write overlaps the next poll and parse: each worker process has one writer
thread (:class:`_WriteBehind`) with its own connection, and the sink hands it the
parsed batches instead of writing them itself. psycopg releases the GIL while COPY
data travels and while the server commits, which is when the flow's thread polls
Kafka and parses the next batch. The writer takes every hand-over waiting behind
its current write into its next transaction (up to the batch size in rows), so a
low rate of small polls costs one commit per write, not one per poll. At most
:data:`QUEUED` hand-overs wait; past that the flow blocks, so an outage stops the
flow from reading on (the messages stay in Kafka) instead of filling memory.

Ordering with Bytewax recovery: the sink is a :class:`FixedPartitionedSink`, so
Bytewax calls :meth:`_PostgresPartition.snapshot` at the end of every epoch in which
it wrote, before that epoch counts as done, and the snapshot waits until everything
handed over is committed (or raises the writer's failure). A recovery snapshot
therefore never records a Kafka offset whose rows are not committed: a worker killed
at any point resumes from offsets whose rows are all in the table, and the replay of
what follows is absorbed by the idempotent write.

Partitions: one per Kafka partition index (up to :data:`PARTITIONS`), routed by the
index of the partition a batch was read from. Bytewax assigns both the source's and
the sink's partitions to workers in the same order, so a batch is normally written
by the worker that read it. All partitions of a process share its writer thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from flows import _metrics as m
from flows._dead_letter import DeadLetterPublisher, dead_letter, reason_code
from flows._parse import Origin, ParsedBatch, SourceMsg, as_source_message
from flows._pg_writer import BatchWriter, DatabaseUnavailable, IngestError, WriteResult
from flows._tables import TableSpec
from flows._tracing import CommitTracer
from infra.settings import IngestSettings

log = logging.getLogger(__name__)

PARTITIONS = 8
"""Sink partitions, named ``"0"`` ... ``"7"``. Never change it: recovery snapshots are
stored per partition name, and a worker resumes only with the names it wrote."""
QUEUED = 3
"""Hand-overs that may wait behind the write in progress before the flow blocks. The
writer takes all that wait (up to the batch size in rows) in its next transaction: at a
low rate each partition's poll is a hand-over of a few messages, and one commit (one
WAL flush) for all of them is what keeps up. So at most ``2 * QUEUED`` hand-overs (each
at most one poll, at most the batch size in rows) are held in memory by the writer,
and the flow reads no further while a write is retried."""


class WriterFailed(IngestError):
    """The writer thread stopped on an error other than an outage; nothing after the
    failed batch was written (the cause is chained)."""


def _with_headers(origins: Sequence[Origin]) -> list[SourceMsg]:
    """The messages that carry headers (the only ones a trace can continue)."""
    return [
        as_source_message(o)
        for o in origins
        if (o.headers if isinstance(o, KafkaSourceMessage) else o.headers())
    ]


class _Committer:
    """Writes one unit (the batches of one ``write_batch`` call) and accounts for it."""

    def __init__(self, sink: PostgresSink) -> None:
        self._sink = sink
        self._writer = BatchWriter(sink.conninfo, sink.spec)
        self._publisher: DeadLetterPublisher | None = None

    def commit(self, unit: list[ParsedBatch]) -> None:
        sink = self._sink
        topic = sink.topic
        if len(unit) == 1:
            records, origins, stamps = unit[0].records, unit[0].origins, unit[0].kafka_ms
        else:
            records = [r for batch in unit for r in batch.records]
            origins = [o for batch in unit for o in batch.origins]
            stamps = [t for batch in unit for t in batch.kafka_ms]
        started = time.perf_counter()
        started_at = datetime.now(UTC)
        result = self._write_until_done(records, stamps)
        m.COMMIT_SECONDS.labels(topic).observe(time.perf_counter() - started)
        if sink.tracer is not None:
            sink.tracer.record(_with_headers(origins), started_at, datetime.now(UTC))
        m.BATCH_SIZE.labels(topic).observe(len(records))
        m.ROWS.labels(topic).inc(result.inserted)
        m.DUPLICATES.labels(topic).inc(result.duplicates)
        if result.refused:
            letters = [
                dead_letter(as_source_message(origins[i]), reason=reason, stage="database",
                            topic=sink.dead_letter_topic)
                for i, reason in result.refused
            ]  # fmt: skip
            if self._publisher is None:
                self._publisher = sink.publisher()
            if self._publisher is not None:
                self._publisher.publish(letters)
            code = reason_code("database", "")
            m.DEAD_LETTERS.labels(topic, "database", code).inc(len(letters))
            log.warning("%s: database refused %d rows (dead-lettered)", topic, len(letters))

    def _write_until_done(self, records: list[Any], kafka_ms: list[int | None]) -> WriteResult:
        """Retry with capped exponential backoff while the database is unavailable.

        Blocking here is deliberate: the flow blocks too once a batch waits behind
        this one, the messages stay in Kafka, and the flow resumes where it was when
        the database returns. Each wait is the backoff's, or the error's
        ``retry_after`` when that is longer (the server said it cannot take work
        yet), like a quix-streams backpressure error.
        """
        sink = self._sink
        delay = sink.retry.retry_initial_s
        outage_started: float | None = None
        while True:
            try:
                result = self._writer.write(records, kafka_ms)
            except DatabaseUnavailable as exc:
                if outage_started is None:
                    outage_started = time.monotonic()
                    log.warning("%s: %s; retrying with backoff", sink.topic, exc.detail)
                m.DB_RETRIES.labels(sink.topic).inc()
                sink.sleep(max(delay, exc.retry_after))
                delay = min(delay * 2, sink.retry.retry_max_s)
                continue
            if outage_started is not None:
                log.warning(
                    "%s: database back after %.1f s", sink.topic, time.monotonic() - outage_started
                )
            return result

    def close(self) -> None:
        self._writer.close()
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None


class _WriteBehind:
    """A writer thread taking units in order; :meth:`drain` waits for all handed over."""

    def __init__(self, committer: _Committer, name: str, max_rows: int) -> None:
        self._committer = committer
        self._max_rows = max_rows
        self._cond = threading.Condition()
        self._queue: deque[list[ParsedBatch]] = deque()
        self._submitted = 0
        self._done = 0
        self._failure: BaseException | None = None
        self._reported = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _check(self) -> None:
        if self._failure is not None:
            self._reported = True
            raise WriterFailed(f"the database writer stopped: {self._failure!r}") from (
                self._failure
            )

    def submit(self, unit: list[ParsedBatch]) -> None:
        """Hand ``unit`` over; blocks while :data:`QUEUED` hand-overs already wait."""
        with self._cond:
            while len(self._queue) >= QUEUED and self._failure is None:
                self._cond.wait()
            self._check()
            self._queue.append(unit)
            self._submitted += 1
            self._cond.notify_all()

    def drain(self) -> None:
        """Return once every unit handed over so far is committed; raise if the writer failed."""
        with self._cond:
            target = self._submitted
            while self._done < target and self._failure is None:
                self._cond.wait()
            self._check()

    def close(self) -> None:
        """Drain, stop the thread, close the connection; raises the writer's failure
        unless the flow was already told (Bytewax closes sinks while it unwinds from
        that error, and an error raised there aborts the process)."""
        try:
            with self._cond:
                reported = self._reported
            if not reported:
                self.drain()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join()
            self._committer.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                unit = self._queue.popleft()  # the flow may queue more meanwhile
                taken, rows = 1, self._rows(unit)
                while self._queue and rows + self._rows(self._queue[0]) <= self._max_rows:
                    more = self._queue.popleft()
                    unit = [*unit, *more]
                    taken, rows = taken + 1, rows + self._rows(more)
                self._cond.notify_all()
            try:
                self._committer.commit(unit)
            except BaseException as exc:  # surfaced by the flow's next submit, drain or close
                log.exception("the database writer stopped")
                with self._cond:
                    self._failure = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._done += taken
                self._cond.notify_all()

    @staticmethod
    def _rows(unit: list[ParsedBatch]) -> int:
        return sum(len(batch.records) for batch in unit)


class _PostgresPartition(StatefulSinkPartition[ParsedBatch, None]):
    def __init__(self, sink: PostgresSink, writer: _WriteBehind) -> None:
        self._sink = sink
        self._writer = writer

    def write_batch(self, values: list[ParsedBatch]) -> None:
        unit = [batch for batch in values if batch.records]
        if unit:
            self._writer.submit(unit)

    def snapshot(self) -> None:
        """Nothing to resume from; returns once this epoch's rows are committed."""
        self._writer.drain()

    def close(self) -> None:
        self._sink.release()


class PostgresSink(FixedPartitionedSink[ParsedBatch, None]):
    """Items are ``(partition index, ParsedBatch)``; one writer thread and connection per
    process; see :mod:`flows._pg_writer` for the write path."""

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
        self.tracer = tracer
        self.conninfo = conninfo
        self.spec = spec
        self.topic = topic
        self.retry = retry
        self.dead_letter_topic = dead_letter_topic
        self._bootstrap = bootstrap
        self.sleep = sleep
        names = [str(i) for i in range(PARTITIONS)]
        self._order = {name: sorted(names).index(name) for name in names}
        self._lock = threading.Lock()
        self._writer: _WriteBehind | None = None
        self._open_parts = 0

    def publisher(self) -> DeadLetterPublisher | None:
        return DeadLetterPublisher(self._bootstrap) if self._bootstrap else None

    def list_parts(self) -> list[str]:
        return list(self._order)

    def part_fn(self, item_key: str) -> int:
        """Partition index -> position of its sink partition among the sorted names."""
        try:
            name = str(int(item_key) % PARTITIONS)
        except ValueError:
            name = "0"
        return self._order[name]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PostgresPartition:
        with self._lock:
            if self._writer is None:
                self._writer = _WriteBehind(
                    _Committer(self), f"{step_id}-writer", self.retry.batch_size
                )
            self._open_parts += 1
            return _PostgresPartition(self, self._writer)

    def release(self) -> None:
        """A partition closed; the last one drains and stops the writer."""
        with self._lock:
            self._open_parts -= 1
            if self._open_parts > 0 or self._writer is None:
                return
            writer, self._writer = self._writer, None
        writer.close()
