"""The latency report on rows whose hop times are known."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from infra.latency import history_rows, latency_report, main

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _seed(url: str) -> None:
    # Ten ticks: exchange -> receive i ms, receive -> kafka 2 ms, kafka -> ingest 10*i ms.
    with psycopg.connect(url) as conn:
        for i in range(1, 11):
            exchange = T0 + timedelta(seconds=i)
            receive = exchange + timedelta(milliseconds=i)
            kafka = receive + timedelta(milliseconds=2)
            ingest = kafka + timedelta(milliseconds=10 * i)
            conn.execute(
                "INSERT INTO ticker_data (timestamp, pair, last, exchange_time, receive_time, "
                "kafka_time, ingest_time) VALUES (%s, 'BTC/USD', 1, %s, %s, %s, %s)",
                (exchange, exchange, receive, kafka, ingest),
            )
        # A trade: its timestamp is the exchange's time.
        conn.execute(
            "INSERT INTO trade_data (timestamp, pair, price, volume, side, trade_key, "
            "receive_time, kafka_time, ingest_time) "
            "VALUES (%s, 'BTC/USD', 1, 1, 'b', 'k', %s, %s, %s)",
            (T0, T0, T0 + timedelta(milliseconds=1), T0 + timedelta(milliseconds=5)),
        )


def _seed_replayed(url: str) -> None:
    """What `make up REPLAY=1` adds: ticks of a candle file re-timed to the replay clock
    (5 ms to the database), ticks of January 2024 at their own time (imported or replayed
    on their original clock) and a replayed Kraken capture of 2026-05, ingested now."""
    with psycopg.connect(url) as conn:
        for i in range(1, 5):
            played = T0 + timedelta(seconds=30 + i)
            conn.execute(
                "INSERT INTO ticker_data (timestamp, pair, last, receive_time, kafka_time, "
                "ingest_time, source) VALUES (%s, 'ETH/USD', 1, %s, %s, %s, %s)",
                (played, played, played + timedelta(milliseconds=1),
                 played + timedelta(milliseconds=5), "replay:binance_ETHUSDT_1m_2024-01"),
            )  # fmt: skip
            old = datetime(2024, 1, 1, 0, 0, i, tzinfo=UTC)
            conn.execute(
                "INSERT INTO ticker_data (timestamp, pair, last, ingest_time, source) "
                "VALUES (%s, 'SOL/USD', 1, %s, 'history:binance_SOLUSDT_1m_2024-01')",
                (old, T0 + timedelta(seconds=i)),
            )
        recorded = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
        conn.execute(
            "INSERT INTO trade_data (timestamp, pair, price, volume, side, trade_key, "
            "receive_time, kafka_time, ingest_time, source) "
            "VALUES (%s, 'ADA/USD', 1, 1, 'b', 'k2', %s, %s, %s, %s)",
            (
                recorded,
                recorded,
                T0,
                T0 + timedelta(milliseconds=3),
                "history:kraken_v2_session.jsonl",
            ),
        )


def test_hops_and_end_to_end_percentiles_are_exact(fresh_db: str) -> None:
    _seed(fresh_db)
    _seed_replayed(fresh_db)  # none of it counts among the live figures
    report = {(r.table, r.hop): r for r in latency_report(fresh_db, T0, T0 + timedelta(minutes=1))}
    hop = report[("ticker_data", "source -> producer")]
    assert hop.rows == 10
    assert hop.p50_ms == pytest.approx(5.5)
    assert hop.p99_ms == pytest.approx(9.91)
    assert report[("ticker_data", "producer -> kafka")].p95_ms == pytest.approx(2.0)
    assert report[("ticker_data", "kafka -> database")].p50_ms == pytest.approx(55.0)
    # end to end = i + 2 + 10 i ms
    assert report[("ticker_data", "end to end")].p50_ms == pytest.approx(11 * 5.5 + 2)
    trade = report[("trade_data", "end to end")]
    assert trade.rows == 1
    assert trade.p50_ms == pytest.approx(5.0)
    assert report[("trade_data", "source -> producer")].p50_ms == pytest.approx(0.0)
    assert report[("article_data", "end to end")].rows == 0


def test_range_selects_by_ingest_time(fresh_db: str) -> None:
    _seed(fresh_db)
    later = latency_report(fresh_db, T0 + timedelta(minutes=5), T0 + timedelta(minutes=6))
    assert all(r.rows == 0 for r in later)


def test_replayed_rows_are_apart_and_recorded_history_left_out(fresh_db: str) -> None:
    _seed(fresh_db)
    _seed_replayed(fresh_db)
    window = (T0, T0 + timedelta(minutes=1))
    replay = {(r.table, r.hop): r for r in latency_report(fresh_db, *window, "replay")}
    end_to_end = replay[("ticker_data", "end to end")]
    assert end_to_end.rows == 4
    assert end_to_end.p99_ms == pytest.approx(5.0)
    assert replay[("trade_data", "end to end")].rows == 0
    assert history_rows(fresh_db, *window) == {
        "ticker_data": 4, "trade_data": 1, "article_data": 0, "alert_data": 0,
    }  # fmt: skip


def test_cli_prints_a_table_and_json(fresh_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(fresh_db)
    _seed_replayed(fresh_db)
    window = ["--from", T0.isoformat(), "--to", (T0 + timedelta(minutes=1)).isoformat()]
    assert main(["--database-url", fresh_db, *window]) == 0
    text = capsys.readouterr().out
    live, _, rest = text.partition("replayed rows, reported apart (source replay:*")
    assert "live rows (the exchange feed, the synthetic market):" in live
    assert "ticker_data   end to end                    10" in live
    assert "ticker_data   end to end                     4" in rest
    assert (
        "left out: 5 rows of recorded history (source history:*: imported candles, candles "
        "replayed on their original clock, replayed captures), whose event times are no delays"
    ) in rest
    assert main(["--database-url", fresh_db, "--json", *window]) == 0
    body = json.loads(capsys.readouterr().out)
    assert {r["hop"] for r in body["live"]} == {
        "source -> producer",
        "producer -> kafka",
        "kafka -> database",
        "end to end",
    }
    assert [r["rows"] for r in body["replay"] if r["table"] == "ticker_data"] == [0, 4, 4, 4]
    assert body["history_rows_left_out"]["trade_data"] == 1
    assert main(["--database-url", fresh_db, "--from", window[3], "--to", window[1]]) == 2


def test_grafana_panel_shows_the_same_figures(fresh_db: str) -> None:
    import json
    from pathlib import Path

    from infra.latency import grafana_panel_sql

    dashboard = Path(__file__).resolve().parents[2] / "infra/grafana/dashboards/latency.json"
    text = json.loads(dashboard.read_text())
    panels = [p for p in text["panels"] if "infra.latency" in p.get("title", "")]
    assert [t["rawSql"] for t in panels[0]["targets"]] == [grafana_panel_sql()]
    _seed(fresh_db)
    _seed_replayed(fresh_db)
    window = "ingest_time >= '2026-11-01T12:00:00Z' AND ingest_time < '2026-11-01T12:01:00Z'"
    query = grafana_panel_sql().replace("$__timeFilter(ingest_time)", window)
    with psycopg.connect(fresh_db) as conn:
        rows = {(r[0], r[1]): r[2:] for r in conn.execute(query).fetchall()}
    for hop in latency_report(fresh_db, T0, T0 + timedelta(minutes=1)):
        count, p50, p95, p99 = rows[(hop.table, hop.hop)]
        assert (count, p50, p95, p99) == (hop.rows, hop.p50_ms, hop.p95_ms, hop.p99_ms)
