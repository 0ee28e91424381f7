"""High watermarks of a few topics, for the harnesses that watch a running pipeline."""

from __future__ import annotations

import time
from functools import partial

from confluent_kafka import Consumer, TopicPartition

from flows._consumer import when_led


class Kafka:
    """High watermarks of the topics, through one idle consumer (no group, no commits)."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "cryptoviz-watermarks"}
        )
        meta = self._consumer.list_topics(timeout=10)
        self.partitions = {t: sorted(meta.topics[t].partitions) for t in topics}

    def high(self) -> dict[str, dict[int, int]]:
        # A cluster's partition fails over while a broker is down: asked again meanwhile.
        led_by = time.monotonic() + 10
        return {
            topic: {p: when_led(partial(self._ask, topic, p), led_by)[1] for p in parts}
            for topic, parts in self.partitions.items()
        }

    def _ask(self, topic: str, partition: int) -> tuple[int, int]:
        where = TopicPartition(topic, partition)
        low, high = self._consumer.get_watermark_offsets(where, 10, False)
        return int(low), int(high)

    def close(self) -> None:
        self._consumer.close()
