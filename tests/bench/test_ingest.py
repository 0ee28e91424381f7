"""``bench.ingest``'s latency figures, read from a real ``ticker_data``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from bench.ingest import HOP_FIGURES, WARMUP_FIGURE, latency_figures

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def _insert(url: str, rows: list[tuple[datetime, timedelta, timedelta]]) -> None:
    """Rows made at ``t``, appended by Kafka ``kafka`` later, written ``worker`` after that."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ticker_data (timestamp, pair, last, kafka_time, ingest_time) "
            "VALUES (%s, 'BTC/USD', 1, %s, %s)",
            [(t, t + kafka, t + kafka + worker) for t, kafka, worker in rows],
        )


@pytest.mark.integration
def test_the_measured_rows_are_split_at_the_append_and_the_warmup_is_apart(fresh_db: str) -> None:
    # Warm-up: 10 rows, one 900 ms late at the broker. Measured: 100 rows, the broker
    # 1 ms and the worker i ms (1..100) each.
    warmup = [(T0 + i * MS, (900 if i == 0 else 1) * MS, 5 * MS) for i in range(10)]
    start = T0 + timedelta(seconds=1)
    measured = [(start + i * MS, 1 * MS, (i + 1) * MS) for i in range(100)]
    _insert(fresh_db, warmup + measured)

    figures = latency_figures(fresh_db, start.timestamp())

    assert (figures["rows"], figures["warmup_rows"]) == (100, 10)
    assert set(HOP_FIGURES) | {WARMUP_FIGURE} <= figures.keys()
    # percentile_cont interpolates: the median of 1..100 is 50.5.
    assert figures["latency_worker_p50_ms"] == pytest.approx(50.5, abs=0.01)
    assert figures["latency_worker_p99_ms"] == pytest.approx(99.01, abs=0.01)
    assert figures["latency_kafka_p99_ms"] == pytest.approx(1.0, abs=0.01)
    assert figures["latency_p50_ms"] == pytest.approx(51.5, abs=0.01)
    # The slow warm-up row shows only in the warm-up figure.
    assert figures["latency_p999_ms"] < 102
    assert figures[WARMUP_FIGURE] > 800


@pytest.mark.integration
def test_no_warmup_rows_leave_the_warmup_figure_out(fresh_db: str) -> None:
    _insert(fresh_db, [(T0 + i * MS, 2 * MS, 3 * MS) for i in range(20)])

    figures = latency_figures(fresh_db, T0.timestamp())

    assert (figures["rows"], figures["warmup_rows"]) == (20, 0)
    assert WARMUP_FIGURE not in figures
    assert figures["latency_p99_ms"] == pytest.approx(5.0, abs=0.01)
