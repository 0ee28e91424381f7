"""Fuzzed frames through the real ingestion dataflow: each one is a row or an explained dead letter.

The in-process part runs ``build_ingest_flow`` on TestingSource/TestingSink (no
broker); the integration part produces to the real embedded broker and runs a
real ``python -m flows.run ingest-<topic>`` worker against real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import Producer

from bench import fuzz
from flows._dead_letter import header_map
from flows._parse import ParsedBatch, SourceMsg, as_source_message
from flows._tables import TABLES
from flows.ingest import build_ingest_flow
from handlers import HANDLERS
from infra.settings import Settings, load_settings
from tests._wait import wait_for
from tests.flows.conftest import Worker, count_rows, read_all

FRAMES_PER_TOPIC = 1_500
BIG = 5 * 1024 * 1024


def _frames(topic: str, n: int, seed: int) -> list[bytes]:
    """``n`` fuzzed frames for ``topic`` (the fuzzer's frames for that target, in order)."""
    out: list[bytes] = []
    for target, frame in fuzz.generate(n * len(fuzz.TARGETS), seed):
        if target == topic:
            out.append(frame)
    return out[:n]


def _run(
    topic: str, values: list[bytes], settings: Settings
) -> tuple[list[ParsedBatch], list[KafkaSinkMessage[Any, Any]]]:
    batches: list[ParsedBatch] = []
    letters: list[KafkaSinkMessage[Any, Any]] = []
    source: list[SourceMsg] = [
        KafkaSourceMessage(key=None, value=v, topic=topic, partition=0, offset=i)
        for i, v in enumerate(values)
    ]
    flow = build_ingest_flow(
        topic,
        settings,
        source=TestingSource(source, batch_size=64),
        db_sink=TestingSink(batches),
        dlq_sink=TestingSink(letters),
    )
    run_main(flow)
    return batches, letters


@pytest.mark.parametrize("topic", sorted(HANDLERS))
def test_every_fuzzed_frame_is_a_record_or_an_explained_dead_letter(topic: str) -> None:
    settings = load_settings({})
    values = [*_frames(topic, FRAMES_PER_TOPIC, seed=21), b"x" * BIG, b"\xff" * 100]
    batches, letters = _run(topic, values, settings)
    records = [r for b in batches for r in b.records]
    origins = [o for b in batches for o in b.origins]
    assert len(records) == len(origins)
    assert len(records) + len(letters) == len(values)
    assert len(records) > 0, "no fuzzed frame was accepted: the seeds are not exercised"
    assert len(letters) > len(values) // 2

    offsets = [int(as_source_message(o).offset or 0) for o in origins]
    for letter in letters:
        headers = header_map(letter.headers)
        assert headers["dlq.reason"].strip()
        assert not headers["dlq.reason"].startswith("internal error"), headers["dlq.reason"]
        assert headers["dlq.stage"] == "parse"
        assert headers["dlq.source.topic"] == topic
        assert letter.topic == settings.kafka.topics.deadletter
        offset = int(headers["dlq.source.offset"])
        assert letter.value == values[offset], "a dead letter must keep the original bytes"
        offsets.append(offset)
    # Every input offset is accounted for exactly once.
    assert sorted(offsets) == list(range(len(values)))


# -- real broker, real worker ------------------------------------------------------------------

N_KAFKA = 500


def _produce_big(bootstrap: str, topic: str, payloads: list[bytes]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
         "message.max.bytes": 16 * 1024 * 1024}
    )  # fmt: skip
    for payload in payloads:
        producer.produce(topic, value=payload)
        producer.poll(0)
    assert producer.flush(60) == 0


def _consumed_or_dead(worker: Worker, n: int) -> Callable[[], bool]:
    return lambda: not worker.alive() or worker.metric("cryptoviz_ingest_messages_total") >= n


def _run_worker(
    payloads: list[bytes],
    kafka_bootstrap: str,
    fresh_db: str,
    new_topic: Callable[..., str],
    worker_env: Callable[..., dict[str, str]],
    workers: Callable[..., Worker],
) -> None:
    """Produce ``payloads`` to a fresh rawticker topic, run a real worker, check the accounts."""
    topic = "rawticker"
    source, dlq = new_topic(topic, 1), new_topic("deadletter", 1)
    table = TABLES[topic].table
    # The expected split, from the same flow on TestingSource (rows may then still
    # collapse into duplicates in the database: the same pair and time twice is one row).
    _batches, expected_letters = _run(topic, payloads, load_settings({}))
    _produce_big(kafka_bootstrap, source, payloads)
    worker = workers(f"ingest-{topic}", source, worker_env(fresh_db, dlq))
    n = len(payloads)

    wait_for(_consumed_or_dead(worker, n), 90, "every message consumed")
    assert worker.alive(), f"the worker died on hostile input; see {worker.log}"

    def accounted() -> bool:
        rows = worker.metric("cryptoviz_ingest_rows_total")
        dead = worker.metric("cryptoviz_dead_letters_total")
        return rows + dead + worker.metric("cryptoviz_ingest_duplicates_total") == n

    wait_for(lambda: not worker.alive() or accounted(), 60, "rows + dead letters + dups = in")
    assert worker.alive(), f"the worker died on hostile input; see {worker.log}"
    rows = worker.metric("cryptoviz_ingest_rows_total")
    dead = worker.metric("cryptoviz_dead_letters_total")
    assert worker.metric("cryptoviz_ingest_messages_total") == n
    assert dead == len(expected_letters)
    assert rows > 0
    assert count_rows(fresh_db, table) == rows

    wait_for(lambda: len(read_all(kafka_bootstrap, dlq)) >= dead, 60, "dead letters in the topic")
    letters = read_all(kafka_bootstrap, dlq, timeout=30)
    assert len(letters) == dead
    assert all(h["dlq.reason"].strip() and h["dlq.source.topic"] == source for _v, h in letters)
    assert sorted(len(v or b"") for v, _h in letters) == sorted(
        len(x.value or b"") for x in expected_letters
    ), "every dead letter keeps its original bytes"
    assert worker.alive()


@pytest.mark.integration
def test_real_worker_accounts_for_every_hostile_message_and_survives(
    kafka_bootstrap: str,
    fresh_db: str,
    new_topic: Callable[..., str],
    worker_env: Callable[..., dict[str, str]],
    workers: Callable[..., Worker],
) -> None:
    fuzzed = _frames("rawticker", N_KAFKA - 3, seed=33)
    # Large but under librdkafka's default message.max.bytes (1,000,000).
    near_limit = b'{"pair":"BTC/USD","pad":"' + b"z" * 900_000 + b'"}'
    payloads = [*fuzzed, near_limit, b"", b"\xff" * 1000]
    _run_worker(payloads, kafka_bootstrap, fresh_db, new_topic, worker_env, workers)


@pytest.mark.integration
def test_real_worker_dead_letters_a_5mb_message_and_survives(
    kafka_bootstrap: str,
    fresh_db: str,
    new_topic: Callable[..., str],
    worker_env: Callable[..., dict[str, str]],
    workers: Callable[..., Worker],
) -> None:
    fuzzed = _frames("rawticker", 20, seed=34)
    big = b'{"pair":"BTC/USD","pad":"' + b"z" * BIG + b'"}'
    _run_worker([*fuzzed, big], kafka_bootstrap, fresh_db, new_topic, worker_env, workers)
