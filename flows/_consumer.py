"""Kafka consumer settings shared by every Bytewax Kafka input, and reading a topic to its end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

CONSUMER_CONFIG: dict[str, str] = {
    # Bytewax opens one consumer per partition, and librdkafka prefetches up to 64 MB
    # into each: a worker behind its topic held that much per partition (the soak run
    # showed memory rising with lag). 16 MB still holds thousands of batches.
    "queued.max.messages.kbytes": "16384",
}
SMALL_MESSAGES_CONSUMER_CONFIG: dict[str, str] = {
    **CONSUMER_CONFIG,
    # The byte cap above counts payload only, and librdkafka also prefetches until a
    # partition holds ``queued.min.messages`` (100,000 by default). For ~150-byte
    # tickers the count binds first, and each queued message costs ~500 bytes more
    # (its op and its share of the decompressed fetch buffer): a worker behind its
    # topic held ~200 MB of prefetch over three partitions, and its RSS kept creeping
    # up while that queue churned (docs/RELIABILITY.md, "The alert worker's memory").
    # 5,000 per partition is still five of Bytewax's 1,000-message reads ahead.
    "queued.min.messages": "5000",
}


def committing_to(group: str) -> dict[str, str]:
    """Consumer settings that leave a flow's position in the consumer group ``group``.

    Bytewax resumes from its own recovery snapshots, never from a group, so the group
    is only where the position is shown: librdkafka commits the offset after the last
    message handed to the flow every 5 s and when the consumer closes, and
    the monitor (:mod:`infra.kafka_offsets`), ``kafka-consumer-groups.sh`` or the
    compose file's kafka-exporter compute the lag from it, the flow running or not.
    Each Bytewax process commits the partitions it reads, so a flow split over several
    processes still has one complete group.
    """
    return {"group.id": group, "enable.auto.commit": "true", "auto.commit.interval.ms": "5000"}


NOT_LED_YET: frozenset[int] = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)
"""Errors of a partition that has no leader the asked broker knows of yet.

A topic created a moment ago (its leaders not yet in every broker's metadata) or a
partition whose leader just failed over answers with one of these for a while: CI
once failed on ``NOT_LEADER_FOR_PARTITION`` from a topic created the line before.
"""


def when_led(query: Callable[[], tuple[int, int]], deadline: float) -> tuple[int, int]:
    """``query()`` (a partition's watermarks), asked again every 0.1 s while the partition
    answers one of :data:`NOT_LED_YET`, until the monotonic ``deadline``; any other error,
    or one of these past the deadline, is raised."""
    while True:
        try:
            return query()
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() not in NOT_LED_YET or time.monotonic() >= deadline:
                raise
        time.sleep(0.1)


def read_to_end(
    bootstrap: str,
    topic: str,
    *,
    per_partition: int | None = None,
    group: str = "cryptoviz-reader",
    timeout_s: float = 30.0,
) -> Iterator[Message]:
    """Every message of ``topic`` up to its end now (the newest ``per_partition`` of each
    partition when given), partition by partition in offset order; none if no topic.

    Assigned partitions, no group membership and no commits: a read-only look.
    Raises :class:`TimeoutError` when a partition does not reach its end in time; a
    partition without a leader yet is asked again until then (:func:`when_led`).
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "log_level": 3})  # fmt: skip
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            return
        ends: dict[int, int] = {}
        assign: list[TopicPartition] = []
        led_by = time.monotonic() + timeout_s
        for partition in meta.partitions:
            watermarks = partial(
                consumer.get_watermark_offsets, TopicPartition(topic, partition), timeout=timeout_s
            )
            low, high = when_led(watermarks, led_by)
            if high > low:
                ends[partition] = high
                start = low if per_partition is None else max(low, high - per_partition)
                assign.append(TopicPartition(topic, partition, start))
        if not assign:
            return
        consumer.assign(assign)
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(ends)} timed out")
            # A short wait: consume() blocks until it has all 1000 or the timeout passes.
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is not None:
                    continue
                yield msg
                partition, offset = msg.partition(), msg.offset()
                if (
                    partition is not None
                    and offset is not None
                    and offset + 1 >= ends.get(partition, 0)
                ):
                    ends.pop(partition, None)
    finally:
        consumer.close()
