"""The chaos run's yardsticks, on a real database and broker: digests and dead letters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer

from bench._chaos_checks import (
    alert_repeats,
    dead_letters,
    dump_rows,
    row_differences,
    table_counts,
    table_digests,
)

pytestmark = pytest.mark.integration

TICKS = [
    ("2026-03-02 09:30:00+00", "BTC/USD", "95000.10"),
    ("2026-03-02 09:30:01+00", "BTC/USD", "95000.20"),
    ("2026-03-02 09:30:00+00", "ETH/USD", "3000.5"),
]


def _insert(url: str, rows: list[tuple[str, str, str]], ingest_time: str = "now()") -> None:
    with psycopg.connect(url) as conn:
        for t, pair, last in rows:
            conn.execute(
                "INSERT INTO ticker_data (timestamp, pair, last, ingest_time, kafka_time) "
                f"VALUES (%s, %s, %s, {ingest_time}, clock_timestamp())",
                (t, pair, last),
            )


def test_digests_ignore_row_order_and_wall_clock_columns_but_see_any_value(
    fresh_db: str, database_url: str
) -> None:
    _insert(fresh_db, TICKS)
    first = table_digests(fresh_db)
    assert first["ticker_data"].rows == 3
    assert "schema_migrations" not in first  # bookkeeping, not results

    with psycopg.connect(fresh_db) as conn:
        conn.execute("DELETE FROM ticker_data")
    _insert(fresh_db, list(reversed(TICKS)), ingest_time="now() + interval '1 day'")
    assert table_digests(fresh_db) == first  # other order, other ingest and Kafka times

    with psycopg.connect(fresh_db) as conn:
        conn.execute("UPDATE ticker_data SET last = 95000.11 WHERE last = 95000.10")
    changed = table_digests(fresh_db)
    assert changed["ticker_data"].rows == 3
    assert changed["ticker_data"] != first["ticker_data"]
    assert changed["trade_data"] == first["trade_data"]
    assert table_counts(fresh_db, ("ticker_data", "trade_data")) == {
        "ticker_data": 3,
        "trade_data": 0,
    }


def test_a_digest_that_differs_is_shown_by_its_rows(fresh_db: str, tmp_path: Path) -> None:
    _insert(fresh_db, TICKS)
    dump_rows(fresh_db, tmp_path / "reference")
    with psycopg.connect(fresh_db) as conn:
        conn.execute("DELETE FROM ticker_data")
    _insert(fresh_db, list(reversed(TICKS)), ingest_time="now() + interval '1 day'")
    dump_rows(fresh_db, tmp_path / "again")
    assert row_differences(tmp_path / "reference", tmp_path / "again", "ticker_data") == []

    with psycopg.connect(fresh_db) as conn:
        conn.execute("UPDATE ticker_data SET last = 95000.11 WHERE last = 95000.10")
    dump_rows(fresh_db, tmp_path / "faulted")
    header, only_ref, only_faulted = row_differences(
        tmp_path / "reference", tmp_path / "faulted", "ticker_data"
    )
    assert header.startswith("columns: (timestamp,pair,last,")
    assert "ingest_time" not in header  # a wall-clock column, never compared
    assert only_ref.startswith("only in the reference (1): ")
    assert "95000.10" in only_ref
    assert only_faulted.startswith("only in the faulted run (1): ")
    assert "95000.11" in only_faulted
    assert row_differences(tmp_path / "reference", tmp_path / "faulted", "trade_data") == []
    assert row_differences(tmp_path / "reference", tmp_path / "missing", "ticker_data") == []


def test_dead_letters_are_counted_once_per_source_message(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("dlq-check")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def letter(offset: int, reason: str) -> None:
        headers: dict[str, str | bytes | None] = {
            "dlq.reason": reason,
            "dlq.source.topic": "rawticker",
            "dlq.source.partition": "0",
            "dlq.source.offset": str(offset),
        }
        producer.produce(topic, b"junk", headers=headers, partition=0)

    letter(5, "invalid JSON")
    letter(5, "invalid JSON")  # the same dead letter again, after a crash
    letter(6, "invalid JSON")
    letter(7, "last must be > 0")
    assert producer.flush(30) == 0
    found = dead_letters(kafka_bootstrap, topic)
    assert (found.records, found.distinct) == (4, 3)
    assert found.by_reason == {"rawticker: invalid JSON": 2, "rawticker: last must be > 0": 1}


def test_alert_repeats_counts_keys_seen_more_than_once(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("alert-check")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for value in (
        b'{"pair": "BTC/USD", "timestamp": 10.5, "alert_type": "up"}',
        b'{"pair": "BTC/USD", "timestamp": 10.5, "alert_type": "up"}',
        b'{"pair": "BTC/USD", "timestamp": 10.5, "alert_type": "down"}',
        b"{}",
    ):
        producer.produce(topic, value)
    assert producer.flush(30) == 0
    assert alert_repeats(kafka_bootstrap, topic) == (3, 1)
