"""Fixtures for the producer tests: settings with local URLs, Kafka read-back helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Consumer, TopicPartition

from flows.producers.settings import ProducerSettings
from handlers import CoinTable
from infra.settings import RAW_TOPICS, Settings, Topics, load_coin_table, load_settings

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def coins() -> CoinTable:
    return load_coin_table(load_settings().coins_file)


@pytest.fixture
def offline_settings(tmp_path: Path) -> Settings:
    """Shared settings for flows run on TestingSource/TestingSink (no servers)."""
    return msgspec.structs.replace(load_settings({}), state_dir=tmp_path / "state")


@pytest.fixture
def fresh_topics(new_topic: Callable[..., str]) -> Callable[[], Topics]:
    """A topic map whose raw topics are fresh, uniquely named topics."""

    def make() -> Topics:
        return msgspec.structs.replace(Topics(), **{t: new_topic(t) for t in RAW_TOPICS})

    return make


Record = tuple[bytes | None, bytes | None, dict[str, str]]


def read_records(
    bootstrap: str, topic: str, timeout: float = 10.0, at_least: int = 0
) -> list[Record]:
    """Every message now in ``topic`` as (key, value, headers), partition by partition.

    ``at_least``: wait (up to ``timeout``) until the topic holds that many messages.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = _read_once(bootstrap, topic, timeout)
        if len(records) >= at_least or time.monotonic() >= deadline:
            return records
        time.sleep(0.2)


def _read_once(bootstrap: str, topic: str, timeout: float) -> list[Record]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"producer-test-{time.time_ns()}",
         "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )  # fmt: skip
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[Record] = []
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            headers = {h[0]: h[1].decode() for h in msg.headers() or [] if isinstance(h[1], bytes)}
            key, value = msg.key(), msg.value()
            out.append(
                (key if isinstance(key, bytes) else None,
                 value if isinstance(value, bytes) else None, headers)
            )  # fmt: skip
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None
            assert offset is not None
            if offset + 1 >= ends[partition]:
                remaining.discard(partition)
        assert not remaining, f"could not read all of {topic}"
        return out
    finally:
        consumer.close()


def producer_settings(**parts: object) -> ProducerSettings:
    return ProducerSettings(**parts)  # type: ignore[arg-type]
