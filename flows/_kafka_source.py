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
from collections.abc import Iterable
from dataclasses import dataclass
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


EPOCH_MARGIN_S = 0.002
"""How early before the epoch's end an activation counts as the one that ends it: our
clock reads the epoch's start a little after Bytewax's does."""
TOLERANCE_S = 0.002
"""A resume later than the wait asked by more than this (and a tenth) means the epoch's
close outlasted the wait: the input spun for the difference."""
SHRINK = 0.8


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
    epoch's end (:meth:`ended`, from ``snapshot``) and the next read (:meth:`read`). The
    pacer asks Bytewax to wake the partition that much later when the epoch is about to
    end (:meth:`extra_wait`), so the worker parks instead of spinning. It learns the wait
    from the last close (jumping to a longer close at once, shrinking by a fifth after a
    close that ended within it): the input reads nothing during a close either way, so the
    wait costs only the part of it that outlasts the close.
    """

    epoch_s: float
    started: float
    """``time.monotonic()`` at the start of the current epoch (the last snapshot)."""
    wait_s: float = 0.0
    asked_s: float = 0.0
    """The wait asked at the last epoch's end."""
    ended_at: float | None = None

    def extra_wait(self, now: float) -> float:
        """Seconds to add to the partition's next wake-up (``next_awake``)."""
        if now - self.started < self.epoch_s - EPOCH_MARGIN_S:
            return 0.0
        self.asked_s = self.wait_s
        return self.wait_s

    def ended(self, now: float) -> None:
        """The epoch ended (Bytewax takes a snapshot at each epoch's end)."""
        self.started = self.ended_at = now

    def read(self, now: float) -> None:
        """The partition is read again: after an epoch's end, its close is over."""
        if self.ended_at is None:
            return
        close = now - self.ended_at
        self.ended_at = None
        if close > self.asked_s * 1.1 + TOLERANCE_S:
            self.wait_s = min(close, self.epoch_s / 2)
        else:
            self.wait_s = self.wait_s * SHRINK if self.wait_s * SHRINK > TOLERANCE_S else 0.0


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
        if self._pacer is not None and (extra := self._pacer.extra_wait(time.monotonic())):
            return datetime.now(UTC) + timedelta(seconds=max(self._idle_s, extra))
        return self._awake

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
