"""Kafka clients still open in this process, for the session's guard (tests/conftest.py).

A librdkafka client (producer, consumer or admin client, whoever created it: a test,
a fixture, the code under test) runs one thread named ``rdk:main`` until it is
closed or destroyed. One still running when the session's broker stops prints
"Connection refused" lines for the rest of the run, which a newcomer reads as a
failure. confluent-kafka's client objects take no weak references, so the guard
counts those threads instead: it is exact and sees every client, even ones a
library creates.
"""

from __future__ import annotations

import gc
from pathlib import Path

from tests._wait import wait_for

TASKS = Path("/proc/self/task")


def open_kafka_clients() -> int:
    """How many librdkafka clients this process runs now (0 where /proc is missing)."""
    count = 0
    for task in TASKS.glob("*/comm") if TASKS.is_dir() else ():
        try:
            if task.read_text().strip() == "rdk:main":
                count += 1
        except OSError:
            continue  # the thread ended while we looked
    return count


def assert_kafka_clients_closed(timeout_s: float = 10.0) -> None:
    """Fail unless every Kafka client is closed (after collecting garbage: a client only
    an unreachable cycle holds is destroyed then, which is closed enough)."""

    def closed() -> bool:
        gc.collect()
        return open_kafka_clients() == 0

    wait_for(
        closed,
        timeout_s,
        "every Kafka client to close before the broker stops: close (consumers) or flush "
        "and drop (producers) what the tests and fixtures open",
        interval=0.2,
        explain=lambda: f"{open_kafka_clients()} Kafka client(s) still open",
    )
