"""The latency report on rows whose hop times are known."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from infra.latency import latency_report, main

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


def test_hops_and_end_to_end_percentiles_are_exact(fresh_db: str) -> None:
    _seed(fresh_db)
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


def test_cli_prints_a_table_and_json(fresh_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(fresh_db)
    window = ["--from", T0.isoformat(), "--to", (T0 + timedelta(minutes=1)).isoformat()]
    assert main(["--database-url", fresh_db, *window]) == 0
    text = capsys.readouterr().out
    assert "ticker_data   end to end" in text
    assert main(["--database-url", fresh_db, "--json", *window]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["hop"] for r in rows} == {
        "source -> producer",
        "producer -> kafka",
        "kafka -> database",
        "end to end",
    }
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
    window = "ingest_time >= '2026-11-01T12:00:00Z' AND ingest_time < '2026-11-01T12:01:00Z'"
    query = grafana_panel_sql().replace("$__timeFilter(ingest_time)", window)
    with psycopg.connect(fresh_db) as conn:
        rows = {(r[0], r[1]): r[2:] for r in conn.execute(query).fetchall()}
    for hop in latency_report(fresh_db, T0, T0 + timedelta(minutes=1)):
        count, p50, p95, p99 = rows[(hop.table, hop.hop)]
        assert (count, p50, p95, p99) == (hop.rows, hop.p50_ms, hop.p95_ms, hop.p99_ms)
