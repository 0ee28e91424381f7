"""Kraken producer pieces without servers: precision, sequencing, backoff, budget, REST rows."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from flows.producers._util import Backoff
from flows.producers.kafka_edge import to_record
from flows.producers.kraken import ConnectBudget
from flows.producers.trades import Gap, TradeSequencer, rest_pair, rest_rows_to_trades
from handlers import (
    CoinTable,
    HandlerContext,
    TickerMessage,
    TickerRecord,
    TradeMessage,
    parse_kraken_v2,
    parse_ticker,
)
from infra.settings import Topics

NOW = datetime(2026, 5, 1, 10, 0, 5, tzinfo=UTC)
ADA_FRAME = (
    b'{"channel":"ticker","type":"snapshot","data":[{"symbol":"ADA/USD","bid":0.10034,'
    b'"bid_qty":15000.00000000,"ask":0.10036,"ask_qty":2500.5,"last":0.10035,'
    b'"volume":12345678.90123456,"vwap":0.10100,"low":0.09980,"high":0.10250,'
    b'"change":-0.00120,"change_pct":-1.18,"timestamp":"2026-05-01T10:00:02.123456Z"}]}'
)


def test_price_0_10035_survives_from_v2_frame_to_rawticker_bytes(coins: CoinTable) -> None:
    event = parse_kraken_v2(ADA_FRAME, HandlerContext(coins=coins, now=NOW))
    (msg,) = event.messages
    assert isinstance(msg, TickerMessage)
    assert msg.last == Decimal("0.10035")
    _key, record = to_record(msg, Topics())
    assert record.topic == "rawticker"
    assert record.key == b"ADA/USD"
    assert b'"last":0.10035,' in record.value
    assert b'"vwap":0.10100,' in record.value, "trailing zeros are kept as sent"
    assert b'"volume_24h":12345678.90123456,' in record.value
    back = msgspec.json.Decoder(dict[str, object], float_hook=Decimal).decode(record.value)
    assert back["last"] == Decimal("0.10035")
    assert back["bid"] == Decimal("0.10034")
    record_back = parse_ticker(record.value, HandlerContext(coins=coins, now=NOW))
    assert isinstance(record_back, TickerRecord)
    assert record_back.last == Decimal("0.10035")
    assert back["exchange_ts"] == "2026-05-01T10:00:02.123456Z"
    assert back["receive_ts"] == NOW.timestamp()


def trade(tid: int | None, pair: str = "BTC/USD", ts: float = 1.7e9) -> TradeMessage:
    return TradeMessage(
        pair=pair, price=Decimal("1"), volume=Decimal("1"), timestamp=ts, side="b", trade_id=tid
    )


def test_sequencer_detects_gaps_drops_duplicates_and_accepts_fills() -> None:
    seq = TradeSequencer()
    assert seq.accept(trade(10)) == (True, None)
    assert seq.accept(trade(11)) == (True, None)
    assert seq.accept(trade(11)) == (False, None), "duplicate"
    emit, gap = seq.accept(trade(15, ts=1.8e9))
    assert emit
    assert gap == Gap("BTC/USD", 12, 14, 1.7e9)
    assert seq.accept(trade(9)) == (False, None), "older than the first: a snapshot overlap"
    assert seq.fill(trade(13))
    assert not seq.fill(trade(13))
    assert seq.accept(trade(12)) == (True, None), "a hole may also be filled by the feed"
    assert seq.still_missing(gap) == 1
    assert seq.abandon(gap) == 1
    assert seq.open_gaps() == []
    assert seq.accept(trade(None)) == (True, None), "v1 trades have no id"
    assert seq.accept(trade(1, pair="ETH/USD")) == (True, None), "pairs are independent"


def test_sequencer_state_survives_pickling_with_open_gaps() -> None:
    seq = TradeSequencer()
    seq.accept(trade(1))
    seq.accept(trade(5))
    state = pickle.loads(pickle.dumps(seq.snapshot()))
    resumed = TradeSequencer(state)
    assert resumed.open_gaps() == [Gap("BTC/USD", 2, 4, 1.7e9)]
    assert resumed.accept(trade(5)) == (False, None)
    assert resumed.fill(trade(3))


def test_sequencer_caps_a_huge_gap_to_the_most_recent_trades() -> None:
    seq = TradeSequencer(max_fill=100)
    seq.accept(trade(1))
    _emit, gap = seq.accept(trade(10_002))
    assert gap is not None
    assert (gap.first, gap.last) == (9_902, 10_001)


def test_backoff_grows_with_equal_jitter_up_to_the_cap() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(3))
    delays = [backoff.next() for _ in range(6)]
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


def test_connect_budget_spaces_connects_inside_the_window() -> None:
    budget = ConnectBudget(limit=3, window_s=600.0)
    for now in (0.0, 1.0, 2.0):
        assert budget.wait_time(now) == 0.0
        budget.record(now)
    assert budget.wait_time(3.0) == pytest.approx(597.0)
    assert budget.wait_time(600.5) == 0.0


def test_rest_rows_go_through_the_v2_parser_exactly(coins: CoinTable) -> None:
    rows: list[list[object]] = [
        ["30243.40000", "0.34507674", Decimal("1688669597.8277369"), "b", "m", "", 61044952],
        ["30243.30000", "0.00376960", Decimal("1688669598.2804112"), "s", "l", "", 61044953],
        ["bad", "1", Decimal("1688669599"), "s", "l", "", 61044954],
    ]
    trades = rest_rows_to_trades(rows, "BTC/USD", coins, NOW)
    assert [(t.trade_id, t.price, t.side, t.ord_type) for t in trades] == [
        (61044952, Decimal("30243.40000"), "b", "m"),
        (61044953, Decimal("30243.30000"), "s", "l"),
    ]
    assert trades[0].timestamp == pytest.approx(1688669597.827737)
    assert rest_pair("BTC/USD", {"BTC": "XBT"}) == "XBTUSD"
    assert rest_pair("ADA/EUR", {"BTC": "XBT"}) == "ADAEUR"
