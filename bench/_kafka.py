"""High watermarks of a few topics, for the harnesses that watch a running pipeline."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition


class Kafka:
    """High watermarks of the topics, through one idle consumer (no group, no commits)."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "cryptoviz-watermarks"}
        )
        meta = self._consumer.list_topics(timeout=10)
        self.partitions = {t: sorted(meta.topics[t].partitions) for t in topics}

    def high(self) -> dict[str, dict[int, int]]:
        return {
            topic: {
                p: int(self._consumer.get_watermark_offsets(TopicPartition(topic, p), 10, False)[1])
                for p in parts
            }
            for topic, parts in self.partitions.items()
        }

    def close(self) -> None:
        self._consumer.close()
