"""What the alert worker already published: the tail of ``rawalert``, read at start-up.

The alert worker is at-least-once like every Bytewax flow: killed between
publishing an alert and committing the epoch's snapshot, it restarts from the
previous snapshot, re-reads the same tickers and would raise the same alert again.
Alert keys ``(pair, timestamp, alert_type)`` are deterministic (ticker times, not
the wall clock), so before the flow starts it reads the newest ``per_partition``
alerts of every partition and :class:`~flows.producers.alerts.AlertDetector` treats
those keys as already fired: it updates its state as if it had fired them but
publishes nothing. An epoch (``--snapshot-s``, 5 s) holds far fewer alerts than
``per_partition``, so every alert a crash could repeat is in that tail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import msgspec
from confluent_kafka import Consumer, KafkaException, TopicPartition

log = logging.getLogger(__name__)

AlertKey = tuple[str, float, str]
"""(pair, timestamp in epoch seconds, alert_type): the ``alert_data`` primary key."""


class _Key(msgspec.Struct):
    pair: str
    timestamp: float
    alert_type: str


_DECODER = msgspec.json.Decoder(_Key)


def alert_keys(values: Iterable[bytes | None]) -> set[AlertKey]:
    """Keys of the alert messages among ``values``; anything unreadable is skipped."""
    keys: set[AlertKey] = set()
    for value in values:
        if value is None:
            continue
        try:
            key = _DECODER.decode(value)
        except msgspec.DecodeError:
            continue  # not ours to judge: the ingestion worker dead-letters it
        keys.add((key.pair, key.timestamp, key.alert_type))
    return keys


def published_alert_keys(
    bootstrap: str, topic: str, per_partition: int = 10_000, timeout_s: float = 30.0
) -> set[AlertKey]:
    """Keys of the newest ``per_partition`` messages of each partition of ``topic``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "cryptoviz-alert-log",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "log_level": 3,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            return set()  # no topic yet: nothing was published
        wanted: list[TopicPartition] = []
        ends: dict[int, int] = {}
        for partition in meta.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout_s
            )
            if high > low:
                ends[partition] = high
                wanted.append(TopicPartition(topic, partition, max(low, high - per_partition)))
        values: list[bytes | None] = []
        if wanted:
            consumer.assign(wanted)
            deadline = time.monotonic() + timeout_s
            while ends and time.monotonic() < deadline:
                for msg in consumer.consume(1000, timeout=0.2):
                    if msg.error() is not None:
                        continue
                    values.append(msg.value())
                    partition, offset = msg.partition(), msg.offset()
                    if (
                        partition is not None
                        and offset is not None
                        and offset + 1 >= ends.get(partition, 0)
                    ):
                        ends.pop(partition, None)
            if ends:
                raise KafkaException(f"reading back {topic}: partitions {sorted(ends)} timed out")
        keys = alert_keys(values)
        log.info("alerts: %d alerts already on %s will not be sent again", len(keys), topic)
        return keys
    finally:
        consumer.close()
