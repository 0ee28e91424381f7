"""`python -m flows.import_prices`: real candles into ticker_data, idempotently, as replayed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.testing import TestingSink, run_main

from flows._tables import TICKER, rows_for
from flows.import_prices import main
from flows.producers.kafka_edge import Keyed
from flows.producers.replay import ReplaySource
from flows.producers.settings import ProducerSettings, ReplaySettings
from flows.producers.workers import build_producer_flow
from handlers import HandlerContext, TickerRecord, parse_ticker
from infra.postgres_server import EmbeddedPostgres
from infra.settings import load_settings

pytestmark = pytest.mark.integration

MarketSlice = Callable[[int], tuple[Path, ...]]
COLUMNS = ", ".join(TICKER.columns)


def stored(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"SELECT {COLUMNS} FROM ticker_data ORDER BY timestamp, pair"
        ).fetchall()


def test_a_real_slice_imports_once_and_a_second_import_adds_nothing(
    market_slice: MarketSlice, fresh_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    files = market_slice(120)  # two hours of BTC/USDT and ETH/USDT, 2024-01-01
    assert main([*map(str, files), "--database-url", fresh_db]) == 0
    out = capsys.readouterr().out
    for path in files:
        assert f"import {path.name}: 120/120 candles (100 %), 480 ticks added" in out
        assert (
            f"imported {path.name} as {'BTC' if 'BTC' in path.name else 'ETH'}/USD "
            f"(source history:{path.stem}): 120 candles -> 480 ticks, "
            "2024-01-01 00:00 .. 2024-01-01 01:59 UTC; 480 added, 0 already there, "
            "0 rows refused"
        ) in out
    rows = stored(fresh_db)
    assert len(rows) == 2 * 120 * 4
    first = dict(zip(TICKER.columns, rows[0], strict=True))
    assert first["timestamp"] == datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert (first["pair"], first["last"]) == ("BTC/USD", Decimal("42283.58"))
    assert first["source"] == f"history:{files[0].stem}"
    assert first["receive_time"] is None

    assert main([*map(str, files), "--database-url", fresh_db]) == 0
    again = capsys.readouterr().out
    assert "0 added, 480 already there" in again
    assert again.count("(100 %)") == 2
    assert stored(fresh_db) == rows


def test_the_import_writes_the_rows_the_replay_plays_on_its_original_clock(
    market_slice: MarketSlice, fresh_db: str
) -> None:
    files = market_slice(15)
    assert main([*map(str, files), "--database-url", fresh_db]) == 0
    settings = load_settings({})
    replay = ReplaySettings(files=files, speed=0.0, clock="original", exit_at_end=True)
    out: list[Keyed] = []
    run_main(
        build_producer_flow(
            "producer-replay", settings, ProducerSettings(replay=replay),
            source=ReplaySource(replay, settings.coin_table()), sink=TestingSink(out),
        ),
        epoch_interval=timedelta(milliseconds=100),
    )  # fmt: skip
    ctx = HandlerContext(coins=settings.coin_table(), now=datetime.now(UTC))
    parsed = [parse_ticker(r.value, ctx) for _k, r in out]
    records = [r for r in parsed if isinstance(r, TickerRecord)]
    assert len(records) == len(out) == 2 * 15 * 4
    replayed = rows_for(TICKER, records)  # what ingestion writes for them
    imported = stored(fresh_db)
    assert sorted(replayed, key=lambda r: (r[0], r[1])) == imported


def test_rows_that_are_no_candles_are_reported_and_the_rest_imported(
    fresh_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "binance_SOLUSDT_1m_test.csv"
    path.write_text(
        "datetime,open,high,low,close,volume\n"
        "2024-01-01 00:00:00,100,101,99,100.5,1\n"
        "2024-01-01 00:01:00,100,101,99,oops,1\n"
        "2024-01-01 00:02:00,100,101,99,100.5,1\n"
    )
    assert main([str(path), "--database-url", fresh_db]) == 1
    captured = capsys.readouterr()
    assert "2 candles -> 8 ticks" in captured.out
    assert "8 added, 0 already there, 1 rows refused" in captured.out
    assert f"{path.name}:3: refused: close 'oops' is not a number" in captured.err
    assert len(stored(fresh_db)) == 8


def test_a_file_that_is_no_candle_file_stops_before_anything(
    fresh_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nameless = tmp_path / "prices.csv"
    nameless.write_text("datetime,open,high,low,close\n")
    assert main([str(nameless), "--database-url", fresh_db]) == 2
    assert "no pair in the name of prices.csv" in capsys.readouterr().err
    wrong = tmp_path / "binance_BTCUSDT_trades.csv"
    wrong.write_text("time,price,qty\n1,2,3\n")
    assert main([str(wrong), "--database-url", fresh_db]) == 2
    assert "not a candle file: header" in capsys.readouterr().err
    assert stored(fresh_db) == []


def test_no_embedded_server_runs_for_a_fresh_state(tmp_path: Path) -> None:
    # The import only borrows a running server of make up's state; none here.
    assert EmbeddedPostgres(tmp_path / "postgres").running_url() is None
