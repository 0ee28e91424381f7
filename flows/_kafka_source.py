"""The ingestion flows' Kafka input: one :class:`~flows._parse.RawBatch` per poll of a partition.

Bytewax's own Kafka source turns every consumed message into a
``KafkaSourceMessage`` dataclass (about 3.5 µs each, a fifth of the worker's time
on the peers' workload) and then hands the flow one item per message. The
ingestion flows parse whole polls anyway, so this source hands over each poll's
``confluent_kafka.Message`` objects as they are, in one item; the parse step reads
their value and timestamp, and builds a ``KafkaSourceMessage`` only for the rare
message that becomes a dead letter.

Everything else is Bytewax's ``KafkaSource``, kept compatible on purpose: one
consumer per partition (assigned, no group), the same partition names
(``"<partition>-<topic>"``), the same resume state (the next offset to read), the
same step id under :func:`kafka_batches` (``<flow>.kafka_in.kafka_input``), so a
worker upgraded from Bytewax's source resumes from its recovery snapshots, and the
same consumer-lag gauge (``bytewax_kafka_consumer_lag``, which the alerts watch).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from flows._parse import RawBatch

POLL_TIMEOUT_S = 0.001
"""How long one poll waits for messages (Bytewax's KafkaSource waits as long): a low
rate is written message by message, with no batching delay."""
IDLE_BACKOFF_MAX_S = 0.02
"""The longest wait between polls of a partition that keeps coming back empty.

Bytewax polls again 1 ms after an empty poll: about 500 polls a second of every idle
partition (measured on an idle 3-partition topic: 1.9 % of a core per process, against
1.2 % with this backoff; docs/BENCHMARKS.md), paid by every flow process of every quiet
topic. After each empty poll the wait doubles from 1 ms up to this; the first message
after a quiet spell waits at most this long, and a busy partition (whose polls are not
empty) is polled as before."""


EPOCH_MARGIN_S = 0.005
"""How long after the epoch's end, by our clock, a read must start for Bytewax to end the
epoch in that same activation. Bytewax counts an epoch from the start of the activation
that began it (our clock starts later, at the snapshot) to the start of the current one,
which comes before our read by the time it takes to get the GIL: at most a switch
interval (5 ms) while another thread holds it. Asking for a wait in an activation that
does not end the epoch would only stall the input."""
EPOCH_LEAD_S = 0.010
"""A read due this close before the epoch's end (by our clock) may or may not end the
epoch in Bytewax's: it is put off until the end is sure (at most this plus the margin,
once per epoch), so the read that ends the epoch is one that asks for the wait."""
TOLERANCE_S = 0.002
"""A resume later than the wait asked by more than this (and a tenth) means the epoch's
close outlasted the wait: the input spun for the difference."""
RECENT_CLOSES = 8
"""How many epochs' closes the wait is the shortest of."""
SHRINK = 0.8
"""A close that ended within the wait is remembered as this much of the wait: it may have
been shorter, and only a shorter wait finds out."""


@dataclass(slots=True)
class EpochPacer:
    """Waits out the close of each epoch instead of letting Bytewax spin through it.

    When an input partition ends an epoch, Bytewax 0.21 stops reading it until the whole
    dataflow has finished that epoch (the sink's commit, the recovery snapshot, and in a
    cluster every other process ending the same epoch on its own clock). Until then it
    re-activates the input at once, over and over, whenever the partition's
    ``next_awake`` is past: a busy loop in Rust that took 30-50 % of a core per process
    of the clustered stack (``perf`` on ``timely:work-0``: ``partitioned_input``
    re-scheduling itself), and on two cores starved the brokers and producers it waited
    for. The close cannot be seen from here, but its length can: the pause between the
    epoch's end (:meth:`ended`, from ``snapshot``) and the next read (:meth:`read`). When
    a read's activation surely ends the epoch, the pacer asks Bytewax to wake the
    partition that much later (:meth:`wake`), so the worker parks instead of spinning; a
    read due just before the end is put off until the end is sure
    (:data:`EPOCH_LEAD_S`).

    The wait is the shortest of the last :data:`RECENT_CLOSES` closes, never the last or
    the longest: a wait longer than the close delays the messages that arrive meanwhile,
    while a wait shorter than the close only spins for the rest of it, as before. A close
    that ended within the wait counts as :data:`SHRINK` of it, so the wait follows closes
    that get shorter.
    """

    epoch_s: float
    started: float
    """``time.monotonic()`` at the start of the current epoch (the last snapshot)."""
    closes: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_CLOSES))
    asked_s: float = 0.0
    """The wait asked by the read that ended the last epoch (0: none, or not known)."""
    ended_at: float | None = None
    read_at: float = 0.0
    """``time.monotonic()`` at the start of the last read."""

    @property
    def wait_s(self) -> float:
        """The wait asked at the next epoch's end: never half an epoch or more."""
        return min(min(self.closes, default=0.0), self.epoch_s / 2)

    def wake(self, natural: float) -> float:
        """When to read next (``time.monotonic()``), after the read that started at
        ``read_at``, for a partition that would be read at ``natural``."""
        end = self.started + self.epoch_s + EPOCH_MARGIN_S
        if self.read_at >= end:  # this activation ends the epoch: wait out its close
            self.asked_s = self.wait_s
            return max(natural, self.read_at + self.asked_s)
        self.asked_s = 0.0
        return end if end - EPOCH_MARGIN_S - EPOCH_LEAD_S <= natural < end else natural

    def ended(self, now: float) -> None:
        """The epoch ended (Bytewax takes a snapshot at each epoch's end)."""
        self.started = self.ended_at = now

    def read(self, now: float) -> None:
        """A read of the partition starts: after an epoch's end, its close is over."""
        self.read_at = now
        if self.ended_at is None:
            return
        close = now - self.ended_at
        self.ended_at = None
        within = close <= self.asked_s * 1.1 + TOLERANCE_S
        self.closes.append(self.asked_s * SHRINK if within else close)


class _Partition(StatefulSourcePartition[RawBatch, int]):
    def __init__(
        self, config: dict[str, str | int], topic: str, index: int, *, offset: int,
        batch_size: int, step_id: str, epoch_s: float | None = None,
    ) -> None:  # fmt: skip
        self._offset = offset
        self._topic = topic
        self._index = index
        self._key = str(index)
        self._batch_size = batch_size
        self._labels = {"step_id": step_id, "topic": topic, "partition": str(index)}
        consumer = Consumer({**config, "stats_cb": self._stats})
        consumer.assign([TopicPartition(topic, index, offset)])
        self._consumer = consumer
        self._idle_s = 0.0
        """The wait after the last poll: 0 after a poll that brought messages."""
        self._awake: datetime | None = None
        self._pacer = None if epoch_s is None else EpochPacer(epoch_s, time.monotonic())

    def _stats(self, payload: str) -> None:
        """librdkafka's statistics (every second): the lag behind the partition's end."""
        stats = json.loads(payload)["topics"][self._topic]["partitions"][str(self._index)]
        if self._offset > 0:  # OFFSET_BEGINNING and friends are negative: no lag known yet
            BYTEWAX_CONSUMER_LAG_GAUGE.labels(**self._labels).set(stats["ls_offset"] - self._offset)

    def next_batch(self) -> list[RawBatch]:
        if self._pacer is not None:
            self._pacer.read(time.monotonic())
        messages = self._consumer.consume(self._batch_size, POLL_TIMEOUT_S)
        if not messages:
            self._idle_s = min(IDLE_BACKOFF_MAX_S, max(POLL_TIMEOUT_S, 2 * self._idle_s))
            self._awake = datetime.now(UTC) + timedelta(seconds=self._idle_s)
            return []
        self._idle_s, self._awake = 0.0, None
        for msg in reversed(messages):  # the last one with an offset (an error may have none)
            offset = msg.offset()
            if offset is not None and offset >= 0:
                self._offset = offset + 1
                break
        return [RawBatch(self._key, messages)]

    def next_awake(self) -> datetime | None:
        if self._pacer is None:
            return self._awake
        now = time.monotonic()
        natural = now + self._idle_s  # when the poll's own backoff would read again
        wake = self._pacer.wake(natural)
        return self._awake if wake == natural else datetime.now(UTC) + timedelta(seconds=wake - now)

    def snapshot(self) -> int:
        if self._pacer is not None:
            self._pacer.ended(time.monotonic())
        return self._offset

    def close(self) -> None:
        self._consumer.close()


class KafkaBatchSource(FixedPartitionedSource[RawBatch, int]):
    """Every partition of ``topic``, read from its resume offset (else ``starting_offset``)."""

    def __init__(
        self,
        brokers: Iterable[str],
        topic: str,
        *,
        batch_size: int,
        add_config: dict[str, str] | None = None,
        starting_offset: int = OFFSET_BEGINNING,
        epoch_s: float | None = None,
    ) -> None:
        self._brokers = ",".join(brokers)
        self._epoch_s = epoch_s
        """The flow's epoch (snapshot) interval: its partitions pace themselves by it
        (:class:`EpochPacer`); None reads as Bytewax does."""
        self._topic = topic
        self._batch_size = batch_size
        self._add_config = dict(add_config or {})
        self._starting_offset = starting_offset

    def list_parts(self) -> list[str]:
        client = AdminClient({"bootstrap.servers": self._brokers, **self._add_config})
        meta = client.list_topics(self._topic).topics[self._topic]
        if meta.error is not None:
            raise RuntimeError(f"cannot list the partitions of {self._topic!r}: {meta.error}")
        return [f"{index}-{self._topic}" for index in meta.partitions]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        index, topic = for_part.split("-", 1)
        config: dict[str, str | int] = {
            # Offsets live in Bytewax's recovery snapshots; a group named in add_config
            # only shows the position (flows._consumer.committing_to), never resumes it.
            "group.id": "BYTEWAX_IGNORED",
            "enable.auto.commit": "false",
            "bootstrap.servers": self._brokers,
            "enable.partition.eof": "false",
            "statistics.interval.ms": 1000,
            **self._add_config,
        }
        offset = self._starting_offset if resume_state is None else resume_state
        return _Partition(
            config, topic, int(index), offset=offset, batch_size=self._batch_size,
            step_id=step_id, epoch_s=self._epoch_s,
        )  # fmt: skip


@operator
def kafka_batches(step_id: str, flow: Dataflow, source: KafkaBatchSource) -> Stream[RawBatch]:
    """The source as a stream, under the step id Bytewax's ``kop.input`` used."""
    return op.input("kafka_input", flow, source)
