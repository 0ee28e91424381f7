"""Reading back the alerts already on the topic, from a real broker."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from confluent_kafka import Producer

from flows.producers.alert_log import published_alert_keys

pytestmark = pytest.mark.integration


def _alert(pair: str, t: float, kind: str) -> bytes:
    return msgspec.json.encode({"pair": pair, "timestamp": t, "alert_type": kind, "last": 1.5})


def test_reads_the_newest_alerts_of_every_partition(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("alertlog", partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(30):
        producer.produce(topic, _alert("BTC/USD", 1000.0 + i, "up"), partition=0)
    producer.produce(topic, _alert("ETH/USD", 5.25, "down"), partition=1)
    producer.produce(topic, b"junk", partition=1)
    assert producer.flush(30) == 0

    everything = published_alert_keys(kafka_bootstrap, topic)
    assert len(everything) == 31
    assert ("ETH/USD", 5.25, "down") in everything

    newest = published_alert_keys(kafka_bootstrap, topic, per_partition=5)
    assert {k for k in newest if k[0] == "BTC/USD"} == {
        ("BTC/USD", 1000.0 + i, "up") for i in range(25, 30)
    }
    assert ("ETH/USD", 5.25, "down") in newest  # partition 1 holds only two messages


def test_a_missing_or_empty_topic_means_nothing_was_sent(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    assert published_alert_keys(kafka_bootstrap, new_topic("alertlog-empty")) == set()
