"""Golden counts on the real Kraken captures in ../shared/fixtures/real/kraken (see SOURCES.md).

Skipped with a reason when ../shared is absent (a bare clone); the own fixtures in
tests/fixtures/handlers cover the same code paths.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from handlers import (
    HandlerContext,
    KrakenEvent,
    KrakenHeartbeat,
    KrakenStatus,
    KrakenSubscription,
    TickerMessage,
    TickerRecord,
    TradeMessage,
    TradeRecord,
    encode_message,
    parse_kraken_v1,
    parse_kraken_v2,
    parse_ticker,
    parse_trade,
)
from tests.handlers._support import SHARED_KRAKEN, ctx

_RECEIVED = re.compile(rb"(\d+(?:\.\d+)?): (.*)")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real capture {path} not available (../shared is not beside this clone)")
    return path


def received_frames(path: Path) -> Iterator[tuple[datetime, bytes]]:
    """The ``<epoch>: <json>`` lines of a cryptofeed capture (frames the client received)."""
    for line in path.read_bytes().splitlines():
        match = _RECEIVED.fullmatch(line)
        if match:
            yield datetime.fromtimestamp(float(match[1]), UTC), match[2]


def replay(path: Path, parse: Callable[[bytes, HandlerContext], KrakenEvent]) -> list[KrakenEvent]:
    return [parse(frame, ctx(now)) for now, frame in received_frames(path)]


def _kinds(events: list[KrakenEvent]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for event in events:
        counts.update(type(item).__name__ for item in (*event.messages, *event.control))
        counts["rejection"] += len(event.rejections)
        counts["ignored"] += event.ignored is not None
    return counts


def _parse_back(events: list[KrakenEvent], now: datetime) -> None:
    for event in events:
        for message in event.messages:
            handler = parse_ticker if isinstance(message, TickerMessage) else parse_trade
            assert isinstance(
                handler(encode_message(message), ctx(now)), TickerRecord | TradeRecord
            )


def test_v1_ticker_capture_golden_count() -> None:
    path = _require(SHARED_KRAKEN / "v1" / "cryptofeed_KRAKEN.ws.49.0_ticker.txt")
    events = replay(path, parse_kraken_v1)
    counts = _kinds(events)
    assert counts["TickerMessage"] == 18
    assert counts["KrakenSubscription"] == 10
    assert counts["KrakenStatus"] == 1
    assert counts["KrakenHeartbeat"] == 31
    assert counts["rejection"] == counts["ignored"] == counts["TradeMessage"] == 0
    tickers = [m for e in events for m in e.messages if isinstance(m, TickerMessage)]
    assert {t.pair for t in tickers} == {
        "WAVES/EUR", "XMR/USD", "KSM/BTC", "GRT/ETH", "SC/EUR",
        "ETH/CHF", "OCEAN/BTC", "OMG/USD", "BTC/CHF", "ADA/BTC",
    }  # fmt: skip
    xmr = next(t for t in tickers if t.pair == "XMR/USD")
    assert (xmr.last, xmr.ask, xmr.bid_qty) == (
        Decimal("355.23000000"),
        Decimal("355.24000000"),
        Decimal("6.87748868"),
    )
    assert any(t.last == Decimal("354.11000000") for t in tickers)  # SOURCES.md cross-check
    _parse_back(events, datetime(2021, 4, 17, 17, tzinfo=UTC))


def test_v1_trade_capture_golden_count() -> None:
    path = _require(SHARED_KRAKEN / "v1" / "cryptofeed_KRAKEN.ws.48.0_trade.txt")
    events = replay(path, parse_kraken_v1)
    counts = _kinds(events)
    assert counts["TradeMessage"] == 10
    assert counts["KrakenSubscription"] == 10
    assert counts["KrakenHeartbeat"] == 30
    assert counts["rejection"] == counts["ignored"] == counts["TickerMessage"] == 0
    trades = [m for e in events for m in e.messages if isinstance(m, TradeMessage)]
    assert Counter(t.pair for t in trades) == {"XMR/USD": 4, "SC/EUR": 6}
    first = trades[0]
    assert (first.price, first.volume, first.side, first.ord_type, first.timestamp) == (
        Decimal("354.11000000"),
        Decimal("0.89594024"),
        "s",
        "l",
        1618678142.557535,
    )
    _parse_back(events, datetime(2021, 4, 17, 17, tzinfo=UTC))


def test_v2_tomlin256_real_frames() -> None:
    path = _require(SHARED_KRAKEN / "v2" / "tomlin256_krakenapi_real_frames_2026-03-15.jsonl")
    events = [parse_kraken_v2(line, ctx()) for line in path.read_bytes().splitlines()]
    assert all(not e.rejections for e in events)
    assert events[0].control == (
        KrakenStatus(
            system="online",
            version="2.0.10",
            api_version="v2",
            connection_id=8869243459854524911,
        ),
    )
    assert events[1].control == (KrakenHeartbeat(),)
    assert events[2].control == (
        KrakenSubscription(method="subscribe", success=True, channel="ticker", symbol="BTC/USD"),
    )
    (snapshot,) = events[3].messages
    assert isinstance(snapshot, TickerMessage)
    assert (snapshot.pair, snapshot.last, snapshot.bid, snapshot.change_24h_pct) == (
        "BTC/USD",
        Decimal("71770.4"),
        Decimal("71770.3"),
        Decimal("1.54"),
    )
    assert snapshot.exchange_ts == "2026-03-15T11:25:19.200068Z"
    assert events[4].ignored == "channel 'book' not handled"
    (trade,) = events[5].messages
    assert trade == TradeMessage(
        pair="BTC/USD",
        price=Decimal("71749.0"),
        volume=Decimal("0.00220616"),
        timestamp=1773573983.023215,
        side="s",
        trade_id=97184416,
        ord_type="l",
        receive_ts=trade.receive_ts,
    )
    assert str(trade.price) == "71749.0"
    assert events[6].ignored == "channel 'ohlc' not handled"
    _parse_back(events, ctx().now)


def test_v2_ark_wire_reference() -> None:
    path = _require(SHARED_KRAKEN / "v2" / "ark_kraken_readme_wire_reference_2026-09-24.jsonl")
    events = [parse_kraken_v2(line, ctx()) for line in path.read_bytes().splitlines()]
    assert all(not e.rejections for e in events)
    assert events[0].ignored is not None  # the client's own subscribe request
    assert events[1].control[0] == KrakenStatus(
        system="online", version="2.0.10", api_version="v2", connection_id=9471984923908980762
    )
    assert events[2].control == (
        KrakenSubscription(method="subscribe", success=True, channel="ticker", symbol="USDT/USD"),
    )
    assert events[3].control == (
        KrakenSubscription(
            method="subscribe",
            success=False,
            symbol="NOPE/USD",
            error="Currency pair not supported NOPE/USD",
        ),
    )
    (snapshot,) = events[4].messages
    assert isinstance(snapshot, TickerMessage)
    assert (str(snapshot.bid), str(snapshot.high)) == ("0.99980", "1.00000")
    assert b'"bid":0.99980,' in encode_message(snapshot)
    assert events[5].control == (KrakenHeartbeat(),)
    _parse_back(events, ctx().now)
