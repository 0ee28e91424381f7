"""Fixtures for the flow tests: produce to and read back from the real broker, run workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from flows._consumer import when_led
from infra._procs import free_port
from infra.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def produce(bootstrap: str, topic: str, payloads: Iterable[bytes], key: bytes | None = None) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    count = 0
    for payload in payloads:
        producer.produce(topic, value=payload, key=key)
        count += 1
        if count % 10000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return count


Record = tuple[bytes | None, bytes | None, dict[str, str]]
"""One message read back: (key, value, headers)."""


def read_keyed(
    bootstrap: str, topic: str, timeout: float = 5.0, *, complete: bool = False
) -> list[Record]:
    """Every message currently in ``topic``, partition by partition.

    ``complete``: fail unless every partition was read to its end within ``timeout``.
    """
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}",
         "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )  # fmt: skip
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        led_by = time.monotonic() + 10
        ends = {
            p.partition: when_led(partial(consumer.get_watermark_offsets, p, timeout=10), led_by)[1]
            for p in parts
        }
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
        assert not (complete and remaining), f"could not read all of {topic}"
        return out
    finally:
        consumer.close()


def read_all(
    bootstrap: str, topic: str, timeout: float = 5.0
) -> list[tuple[bytes | None, dict[str, str]]]:
    """Every message currently in ``topic``: (value, headers)."""
    return [(value, headers) for _key, value, headers in read_keyed(bootstrap, topic, timeout)]


def count_rows(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


class Worker:
    """``python -m flows.run`` as a real subprocess, with its metrics endpoint."""

    def __init__(
        self, name: str, topic: str, env: dict[str, str], log: Path, extra: tuple[str, ...] = ()
    ) -> None:
        self.extra = extra
        self.name = name
        self.topic = topic
        self.env = env
        self.log = log
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flows.run", self.name, "--topic", self.topic,
                 "--metrics-port", str(self.metrics_port), "--snapshot-s", "1", *self.extra],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self

    def metric(self, name: str) -> float:
        """Sum of a counter across label sets (0 when not yet exported)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
            ) as r:
                text = r.read().decode()
        except OSError:
            return -1.0
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def worker_env(stack: Settings, tmp_path: Path) -> Callable[..., dict[str, str]]:
    def make(database_url: str, dead_letter_topic: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=stack.kafka.bootstrap_servers or "",
            DATABASE_URL=database_url,
            CRYPTOVIZ_STATE_DIR=str(tmp_path / "state"),
            CRYPTOVIZ_CACHE_DIR=str(stack.cache_dir),
            CRYPTOVIZ_DEAD_LETTER_TOPIC=dead_letter_topic,
            PYTHONPATH=str(REPO),
        )
        return env

    return make


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def spawn(name: str, topic: str, env: dict[str, str], *extra: str) -> Worker:
        worker = Worker(name, topic, env, tmp_path / f"{name}.log", extra).start()
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.stop()
