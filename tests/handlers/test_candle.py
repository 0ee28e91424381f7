"""Candle rows, the four ticks of a candle, the pair of a candle file, source labels."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from handlers import (
    CANDLE_TICK_OFFSETS_S,
    Candle,
    Rejection,
    candle_header_problem,
    candle_pair,
    candle_ticks,
    history_source,
    origin_of,
    parse_candle,
    replay_source,
)
from tests.handlers._support import COINS

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_a_real_row_parses_with_its_digits() -> None:
    # The first row of the real BTC/USDT file (../shared/fixtures/real/market).
    candle = parse_candle(b"2024-01-01 00:00:00,42283.58,42298.62,42261.02,42298.61,35.92724\n")
    assert candle == Candle(
        start=T0, open=D("42283.58"), high=D("42298.62"), low=D("42261.02"), close=D("42298.61")
    )


def test_a_time_with_a_zone_is_converted_and_volume_is_optional() -> None:
    candle = parse_candle(b"2024-01-01T01:00:00+01:00,1,2,0.5,1.5")
    assert isinstance(candle, Candle)
    assert candle.start == T0


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"2024-01-01 00:00:00,1,2,0.5", "4 columns, expected at least 5"),
        (b"yesterday,1,2,0.5,1", "datetime 'yesterday' is not ISO-8601"),
        (b"2024-01-01 00:00:30,1,2,0.5,1", "is not on the minute"),
        (b"2008-12-31 00:00:00,1,2,0.5,1", "is before 2009-01-03"),
        (b"2024-01-01 00:00:00,1,x,0.5,1", "high 'x' is not a number"),
        (b"2024-01-01 00:00:00,1,2,-0.5,1", "low '-0.5' must be positive"),
        (b"2024-01-01 00:00:00,1,2,0.5,NaN", "close 'NaN' is not a number"),
        (b"2024-01-01 00:00:00,1,2,1.5,1", "do not bracket open 1 and close 1"),
        (b"2024-01-01 00:00:00,3,2,0.5,1", "do not bracket open 3"),
        (b"2024-01-01 00:00:00," + b"1" * 600 + b",2,0.5,1", "line of 628 bytes (at most 512)"),
    ],
)
def test_bad_rows_are_refused_with_the_reason(line: bytes, reason: str) -> None:
    result = parse_candle(line)
    assert isinstance(result, Rejection)
    assert reason in result.reason


def test_the_header_is_checked() -> None:
    assert candle_header_problem(b"datetime,open,high,low,close,volume\n") is None
    assert candle_header_problem(b"Datetime,Open,High,Low,Close\r\n") is None
    problem = candle_header_problem(b"time,price\n")
    assert problem is not None
    assert "must start with datetime,open,high,low,close" in problem


def _candle(o: str, h: str, lo: str, c: str) -> Candle:
    return Candle(start=T0, open=D(o), high=D(h), low=D(lo), close=D(c))


@pytest.mark.parametrize(
    ("candle", "path"),
    [
        # up: open, low, high, close
        (_candle("10", "12", "9", "11"), ["10", "9", "12", "11"]),
        # down: open, high, low, close
        (_candle("11", "12", "9", "10"), ["11", "12", "9", "10"]),
        # flat counts as up
        (_candle("10", "12", "9", "10"), ["10", "9", "12", "10"]),
    ],
)
def test_four_ticks_inside_the_minute_in_the_candles_direction(
    candle: Candle, path: list[str]
) -> None:
    ticks = candle_ticks(candle)
    assert [p for _t, p in ticks] == [D(p) for p in path]
    assert [(t - T0).total_seconds() for t, _p in ticks] == list(CANDLE_TICK_OFFSETS_S)
    assert CANDLE_TICK_OFFSETS_S == (1, 20, 40, 59)
    # The minute's bar of these ticks is the candle: open first, close last, its extremes.
    prices = [p for _t, p in ticks]
    assert (prices[0], max(prices), min(prices), prices[-1]) == (
        candle.open, candle.high, candle.low, candle.close
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "as_usd", "pair"),
    [
        ("binance_BTCUSDT_1m_2024-01_SysTB.csv", True, "BTC/USD"),
        ("binance_BTCUSDT_1m_2024-01_SysTB.csv", False, "BTC/USDT"),
        ("/data/binance_ETHUSDT_1m_2024-01_SysTB.csv", True, "ETH/USD"),
        ("kraken_XBTEUR_1m.csv", True, "BTC/EUR"),
        ("sol-usdc.csv", True, "SOL/USD"),
        ("prices.csv", True, None),
    ],
)
def test_the_pair_comes_from_the_file_name(name: str, as_usd: bool, pair: str | None) -> None:
    assert candle_pair(name, COINS, stablecoin_as_usd=as_usd) == pair


def test_source_labels_say_the_origin() -> None:
    assert origin_of(None) == origin_of("kraken") == origin_of("synthetic") == "live"
    assert (
        replay_source("binance_BTCUSDT_1m_2024-01_SysTB")
        == "replay:binance_BTCUSDT_1m_2024-01_SysTB"
    )
    assert origin_of(replay_source("x")) == "replay"
    assert origin_of(history_source("kraken_v1_session.txt")) == "history"
    assert len(history_source("x" * 100)) == 64  # the handlers' bound on a source label
