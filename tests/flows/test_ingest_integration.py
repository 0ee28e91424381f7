"""Ingestion workers against the real broker and real PostgreSQL servers.

Each test runs ``python -m flows.run ingest-<topic>`` as a subprocess, exactly as
``make up`` deploys it, on fresh topics and a fresh database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from flows._tables import TABLES
from infra.migrate import migrate
from infra.postgres_server import EmbeddedPostgres
from tests._wait import wait_for
from tests.flows._payloads import INVALID, VALID
from tests.flows.conftest import Worker, count_rows, produce, read_all

pytestmark = pytest.mark.integration

N_VALID = 200


def _distinct_dead_letters(bootstrap: str, dlq: str) -> set[tuple[str, str, str]]:
    return {
        (h["dlq.source.topic"], h["dlq.source.partition"], h["dlq.source.offset"])
        for _value, h in read_all(bootstrap, dlq)
    }


def _distinct_tickers(url: str) -> int:
    """Ticker rows with distinct idempotency keys (pair, exchange time)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(DISTINCT (pair, timestamp)) FROM ticker_data").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("topic", sorted(TABLES))
def test_valid_rows_land_invalid_ones_are_dead_lettered_and_replays_add_nothing(
    topic: str,
    kafka_bootstrap: str,
    fresh_db: str,
    new_topic: Callable[..., str],
    worker_env: Callable[..., dict[str, str]],
    workers: Callable[..., Worker],
) -> None:
    source, dlq = new_topic(topic), new_topic("deadletter")
    table = TABLES[topic].table
    valid = [VALID[topic](i) for i in range(N_VALID)]
    messages = [*valid, *INVALID]
    produce(kafka_bootstrap, source, messages)
    worker = workers(f"ingest-{topic}", source, worker_env(fresh_db, dlq))

    wait_for(lambda: count_rows(fresh_db, table) == N_VALID, 60, f"{N_VALID} rows in {table}")
    wait_for(lambda: len(read_all(kafka_bootstrap, dlq)) == len(INVALID), 30, "dead letters")
    letters = read_all(kafka_bootstrap, dlq)
    assert {value for value, _h in letters} == set(INVALID)
    assert all(h["dlq.reason"] and h["dlq.source.topic"] == source for _v, h in letters)

    # Every row records when Kafka appended its message (broker append time).
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute(
            f"SELECT count(*), bool_and(kafka_time <= ingest_time + interval '1 s') "
            f"FROM {table} WHERE kafka_time IS NOT NULL"
        ).fetchone()
    assert row == (N_VALID, True)

    # The same messages again: no new rows, every one counted as a duplicate or dead letter.
    produce(kafka_bootstrap, source, messages)
    total = 2 * len(messages)
    wait_for(
        lambda: worker.metric("cryptoviz_ingest_messages_total") == total, 60, "second delivery"
    )
    wait_for(lambda: worker.metric("cryptoviz_ingest_duplicates_total") == N_VALID, 30, "dups")
    assert count_rows(fresh_db, table) == N_VALID
    rows = worker.metric("cryptoviz_ingest_rows_total")
    dead = worker.metric("cryptoviz_dead_letters_total")
    dups = worker.metric("cryptoviz_ingest_duplicates_total")
    # messages in = rows + dead letters + duplicates
    assert (rows, dead, dups) == (N_VALID, 2 * len(INVALID), N_VALID)
    assert rows + dead + dups == total


def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    kafka_bootstrap: str,
    fresh_db: str,
    new_topic: Callable[..., str],
    worker_env: Callable[..., dict[str, str]],
    workers: Callable[..., Worker],
) -> None:
    n = 60_000
    source, dlq = new_topic("rawticker"), new_topic("deadletter")
    bad_every = 1000  # one invalid message per thousand
    payloads = [INVALID[2] if i % bad_every == 0 else VALID["rawticker"](i) for i in range(n)]
    n_bad = sum(1 for i in range(n) if i % bad_every == 0)
    produce(kafka_bootstrap, source, payloads)
    env = worker_env(fresh_db, dlq)

    first = workers("ingest-rawticker", source, env)
    wait_for(lambda: count_rows(fresh_db, "ticker_data") > 5_000, 60, "first rows")
    first.kill()
    killed_at = count_rows(fresh_db, "ticker_data")
    assert killed_at < n - n_bad, "the worker finished before the kill; raise n"

    second = workers("ingest-rawticker", source, env)
    wait_for(lambda: count_rows(fresh_db, "ticker_data") == n - n_bad, 120, "all rows")
    wait_for(lambda: second.metric("cryptoviz_ingest_messages_total") > 0, 30, "metrics")
    assert _distinct_tickers(fresh_db) == n - n_bad
    # Dead letters may be re-sent after a crash (at-least-once on the DLQ topic), but each
    # one names its source offset, so the set of rejected messages is exact.
    wait_for(lambda: len(_distinct_dead_letters(kafka_bootstrap, dlq)) == n_bad, 30, "DLQ")


def test_sigkill_while_the_writer_waits_on_the_database_loses_nothing(
    kafka_bootstrap: str,
    fresh_db: str,
    new_topic: Callable[..., str],
    worker_env: Callable[..., dict[str, str]],
    workers: Callable[..., Worker],
) -> None:
    """The sink writes behind the flow, and recovery snapshots (every second here) must
    not get ahead of its commits. The table is locked, so the writer waits on its first
    batch while the flow has read on and several epochs have ended; a worker killed then
    must resume from offsets whose rows are committed: all of them land, once."""
    n = 3000
    source, dlq = new_topic("rawticker"), new_topic("deadletter")
    produce(kafka_bootstrap, source, [VALID["rawticker"](i) for i in range(n)])
    env = worker_env(fresh_db, dlq)
    with psycopg.connect(fresh_db) as locker:
        locker.execute("LOCK TABLE ticker_data IN ACCESS EXCLUSIVE MODE")
        first = workers("ingest-rawticker", source, env)
        wait_for(lambda: first.metric("cryptoviz_ingest_messages_total") > 0, 60, "a first poll")
        time.sleep(4)  # epochs of 1 s go by while the writer waits
        assert first.alive()
        first.kill()
        locker.rollback()
    assert count_rows(fresh_db, "ticker_data") == 0, "nothing could have been committed"
    workers("ingest-rawticker", source, env)
    wait_for(lambda: count_rows(fresh_db, "ticker_data") == n, 120, "every row after restart")
    assert _distinct_tickers(fresh_db) == n


def test_two_worker_threads_split_the_partitions_and_write_each_row_once(
    kafka_bootstrap: str,
    fresh_db: str,
    new_topic: Callable[..., str],
    worker_env: Callable[..., dict[str, str]],
    workers: Callable[..., Worker],
) -> None:
    source, dlq = new_topic("rawalert", partitions=3), new_topic("deadletter")
    produce(kafka_bootstrap, source, [VALID["rawalert"](i) for i in range(3000)])
    worker = workers("ingest-rawalert", source, worker_env(fresh_db, dlq), "-w", "2")
    wait_for(lambda: count_rows(fresh_db, "alert_data") == 3000, 60, "all alerts")
    wait_for(lambda: worker.metric("cryptoviz_ingest_messages_total") == 3000, 30, "metrics")
    assert worker.metric("cryptoviz_ingest_duplicates_total") == 0


def test_database_outage_mid_stream_delays_but_loses_nothing(
    kafka_bootstrap: str,
    server_dir: Path,
    new_topic: Callable[..., str],
    worker_env: Callable[..., dict[str, str]],
    workers: Callable[..., Worker],
) -> None:
    server = EmbeddedPostgres(server_dir / "outage-pg")
    url = server.start()
    try:
        migrate(url)
        source, dlq = new_topic("rawtrade"), new_topic("deadletter")
        produce(kafka_bootstrap, source, [VALID["rawtrade"](i) for i in range(500)])
        worker = workers("ingest-rawtrade", source, worker_env(url, dlq))
        wait_for(lambda: count_rows(url, "trade_data") == 500, 60, "rows before the outage")

        server.stop()
        produce(kafka_bootstrap, source, [VALID["rawtrade"](i) for i in range(500, 1500)])
        wait_for(lambda: worker.metric("cryptoviz_ingest_db_retries_total") >= 2, 30, "retries")
        assert worker.alive(), "the worker must wait for the database, not crash"

        server.start()
        wait_for(lambda: count_rows(url, "trade_data") == 1500, 90, "rows after the outage")
        assert worker.metric("cryptoviz_ingest_duplicates_total") == 0
    finally:
        server.stop()
