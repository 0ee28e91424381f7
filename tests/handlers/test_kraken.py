"""Kraken frames -> wire messages and control events (own fixtures, always available)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from handlers import (
    KrakenEvent,
    KrakenHeartbeat,
    KrakenPong,
    KrakenStatus,
    KrakenSubscription,
    Rejection,
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
from tests.handlers._support import FIXTURES, ctx

D = Decimal
NOW_V2 = datetime(2026, 5, 1, 10, 0, 5, tzinfo=UTC)
NOW_V1 = datetime(2021, 4, 17, 16, 49, tzinfo=UTC)
V2 = (FIXTURES / "kraken_v2.jsonl").read_bytes().splitlines()
V1 = (FIXTURES / "kraken_v1.jsonl").read_bytes().splitlines()


def v2(index: int) -> KrakenEvent:
    return parse_kraken_v2(V2[index], ctx(NOW_V2))


def v1(index: int) -> KrakenEvent:
    return parse_kraken_v1(V1[index], ctx(NOW_V1))


def test_v2_control_frames() -> None:
    assert v2(0) == KrakenEvent(
        control=(
            KrakenStatus(
                system="online",
                version="2.0.10",
                api_version="v2",
                connection_id=12345678901234567890,
            ),
        )
    )
    assert v2(1) == KrakenEvent(control=(KrakenHeartbeat(),))
    assert v2(2) == KrakenEvent(
        control=(
            KrakenSubscription(
                method="subscribe", success=True, channel="ticker", symbol="ETH/USD", req_id=11
            ),
        )
    )
    assert v2(3) == KrakenEvent(
        control=(
            KrakenSubscription(
                method="subscribe",
                success=False,
                symbol="FOO/USD",
                error="Currency pair not supported FOO/USD",
                req_id=12,
            ),
        )
    )
    assert v2(4) == KrakenEvent(control=(KrakenPong(req_id=7),))
    assert v2(9) == KrakenEvent(ignored="channel 'book' not handled")
    assert v2(10) == KrakenEvent(ignored="subscribe request (no 'success'): not a server response")


def test_v2_ticker_snapshot_keeps_wire_precision() -> None:
    event = v2(5)
    assert event.rejections == ()
    ada, usdc = event.messages
    assert ada == TickerMessage(
        pair="ADA/USD",
        last=D("0.10035"),
        bid=D("0.10035"),
        ask=D("0.10036"),
        volume_24h=D("12345678.90123456"),
        timestamp=1777629602.123456,
        bid_qty=D("15000.00000000"),
        ask_qty=D("2500.5"),
        vwap=D("0.10100"),
        low=D("0.09980"),
        high=D("0.10250"),
        change_24h_pct=D("-1.18"),
        exchange_ts="2026-05-01T10:00:02.123456Z",
        receive_ts=1777629605.0,
    )
    assert isinstance(usdc, TickerMessage)
    assert str(usdc.bid) == "0.99980"
    assert str(usdc.high) == "1.00000"
    assert usdc.exchange_ts == "2026-05-01T10:00:02.500000Z"  # nanoseconds truncated
    raw = encode_message(usdc)
    assert b'"bid":0.99980,' in raw
    record = parse_ticker(raw, ctx(NOW_V2))
    assert isinstance(record, TickerRecord)
    assert str(record.bid) == "0.99980"
    assert str(record.low) == "0.99959"


def test_v2_ticker_without_exchange_time_uses_receive_time() -> None:
    (message,) = v2(6).messages
    assert isinstance(message, TickerMessage)
    assert message.exchange_ts is None
    assert message.timestamp == message.receive_ts == NOW_V2.timestamp()


def test_v2_trades() -> None:
    assert v2(7).messages == (
        TradeMessage(
            pair="BTC/USD",
            price=D("95000.1"),
            volume=D("0.015"),
            timestamp=1777629598.0001,
            side="b",
            trade_id=4000001,
            ord_type="m",
            receive_ts=1777629605.0,
        ),
        TradeMessage(
            pair="BTC/USD",
            price=D("94999.9"),
            volume=D("0.5"),
            timestamp=1777629599.5,
            side="s",
            trade_id=4000002,
            ord_type="l",
            receive_ts=1777629605.0,
        ),
    )
    (update,) = v2(8).messages
    assert isinstance(update, TradeMessage)
    assert (update.price, update.volume, update.side) == (D("3001.0"), D("0.00220616"), "s")


def test_v2_bad_entry_is_rejected_alone() -> None:
    event = v2(11)
    assert len(event.messages) == 1
    assert event.rejections == (
        Rejection(
            reason="ticker data[0]: field 'last': must be a finite positive number, got -1",
            field="last",
        ),
    )


def test_v1_control_frames() -> None:
    assert v1(0) == KrakenEvent(
        control=(KrakenStatus(system="online", version="1.8.3", connection_id=1111222233334444),)
    )
    assert v1(1) == KrakenEvent(
        control=(
            KrakenSubscription(
                method="subscribe",
                success=True,
                channel="ticker",
                symbol="XBT/USD",
                channel_id=468,
            ),
        )
    )
    assert v1(2) == KrakenEvent(
        control=(
            KrakenSubscription(
                method="subscribe",
                success=False,
                channel="ticker",
                symbol="FOO/USD",
                error="Currency pair not supported",
                req_id=5,
            ),
        )
    )
    assert v1(3) == KrakenEvent(control=(KrakenHeartbeat(),))
    assert v1(4) == KrakenEvent(control=(KrakenPong(req_id=42),))
    assert v1(7) == KrakenEvent(ignored="channel 'book-10' not handled")


def test_v1_ticker() -> None:
    now = NOW_V1.timestamp()
    assert v1(5) == KrakenEvent(
        messages=(
            TickerMessage(
                pair="BTC/USD",
                last=D("52000.00000"),
                bid=D("51999.90000"),
                ask=D("52000.10000"),
                volume_24h=D("250.75"),
                timestamp=now,
                bid_qty=D("2.500"),
                ask_qty=D("1.000"),
                vwap=D("51750.5"),
                low=D("50500.0"),
                high=D("52600.0"),
                change_24h_pct=D("4.00"),
                receive_ts=now,
            ),
        )
    )


def test_v1_trades() -> None:
    now = NOW_V1.timestamp()
    assert v1(6) == KrakenEvent(
        messages=(
            TradeMessage(
                pair="XMR/USD",
                price=D("354.11000000"),
                volume=D("0.89594024"),
                timestamp=1618678130.557535,
                side="s",
                ord_type="l",
                receive_ts=now,
            ),
            TradeMessage(
                pair="XMR/USD",
                price=D("354.55000000"),
                volume=D("1.25690315"),
                timestamp=1618678131.715785,
                side="b",
                ord_type="m",
                receive_ts=now,
            ),
        )
    )


@pytest.mark.parametrize(("parse", "lines", "now"), [
    (parse_kraken_v2, V2, NOW_V2),
    (parse_kraken_v1, V1, NOW_V1),
])  # fmt: skip
def test_every_emitted_message_parses_downstream(
    parse: object, lines: list[bytes], now: datetime
) -> None:
    assert callable(parse)
    count = 0
    for line in lines:
        event = parse(line, ctx(now))
        assert isinstance(event, KrakenEvent)
        for message in event.messages:
            handler = parse_ticker if isinstance(message, TickerMessage) else parse_trade
            record = handler(encode_message(message), ctx(now))
            assert isinstance(record, TickerRecord | TradeRecord), record
            count += 1
    assert count > 0


def rej(reason: str, field: str | None = None) -> KrakenEvent:
    return KrakenEvent(rejections=(Rejection(reason=reason, field=field),))


V1_SHAPE = "a Kraken v1 frame must be an object or [channelID, data..., name, pair]"
V1_TRADE_SHAPE = "trade XBT/USD[0]: must be [price, volume, time, side, ordType, misc]"
V1_BAD_SIDE = "trade XBT/USD[0]: field 'side': must be one of 'b', 'buy', 's', 'sell', got 'x'"

V2_ODD: list[tuple[bytes, KrakenEvent]] = [
    (b"[]", rej("a Kraken v2 frame must be a JSON object")),
    (b"{}", rej("a Kraken v2 frame needs a 'channel' or 'method'")),
    (b'{"error":"boom"}', rej("kraken error: boom")),
    (b"", rej("empty payload")),
    (
        b'{"channel":"ticker","data":{}}',
        rej("ticker frame: field 'data' must be an array", "data"),
    ),
    (b'{"channel":"trade","data":[1]}', rej("trade data[0]: must be an object")),
    (b'{"channel":"ticker","data":["x"]}', rej("ticker data[0]: must be an object")),
    (
        b'{"channel":"trade","data":[{"symbol":"BTC/USD","side":"buy","price":1,"qty":1}]}',
        rej("trade data[0]: missing field 'timestamp'", "timestamp"),
    ),
    (
        b'{"channel":"status","data":[{"system":1}]}',
        rej("status data entry must be an object with a 'system' string"),
    ),
    (
        b'{"method":"add_order","success":true}',
        KrakenEvent(ignored="method 'add_order' not handled"),
    ),
    (
        b'{"method":"unsubscribe","success":true,"result":{"channel":"trade","symbol":"BTC/USD"}}',
        KrakenEvent(
            control=(
                KrakenSubscription(
                    method="unsubscribe", success=True, channel="trade", symbol="BTC/USD"
                ),
            )
        ),
    ),
    (b'{"method":"pong"}', KrakenEvent(control=(KrakenPong(),))),
    (b'{"channel":"ticker","data":[]}', KrakenEvent()),
]


@pytest.mark.parametrize(("frame", "expected"), V2_ODD)
def test_v2_odd_frames(frame: bytes, expected: KrakenEvent) -> None:
    assert parse_kraken_v2(frame, ctx()) == expected


V1_ODD: list[tuple[bytes, KrakenEvent]] = [
    (b"{}", rej("a Kraken v1 object frame needs a string 'event'")),
    (
        b'{"event":"error","errorMessage":"Malformed request"}',
        rej("kraken error: Malformed request"),
    ),
    (b'{"event":"error"}', rej("kraken error: no errorMessage")),
    (b'{"event":"systemStatus"}', KrakenEvent(ignored="event 'systemStatus' not handled")),
    (b'{"event":"addOrderStatus"}', KrakenEvent(ignored="event 'addOrderStatus' not handled")),
    (b"[1,2]", rej(V1_SHAPE)),
    (b'"x"', rej(V1_SHAPE)),
    (b'[1,{},"ticker","XBT/USD"]', rej("ticker XBT/USD: missing field 'last'", "last")),
    (b'[1,"x","ticker","XBT/USD"]', rej("ticker XBT/USD: ticker payload must be an object")),
    (b'[1,{},"trade","XBT/USD"]', rej("trade payload must be an array")),
    (b'[1,[["1"]],"trade","XBT/USD"]', rej(V1_TRADE_SHAPE)),
    (b'[1,[["1","1","1618678130","x","l",""]],"trade","XBT/USD"]', rej(V1_BAD_SIDE, "side")),
    (
        b'[1,{"as":[]},{"bs":[]},"book-10","XBT/USD"]',
        KrakenEvent(ignored="channel 'book-10' not handled"),
    ),
    (
        b'{"event":"subscriptionStatus","status":"unsubscribed","pair":"XBT/USD",'
        b'"subscription":{"name":"trade"},"channelID":3}',
        KrakenEvent(
            control=(
                KrakenSubscription(
                    method="unsubscribe",
                    success=True,
                    channel="trade",
                    symbol="XBT/USD",
                    channel_id=3,
                ),
            )
        ),
    ),
]


@pytest.mark.parametrize(("frame", "expected"), V1_ODD)
def test_v1_odd_frames(frame: bytes, expected: KrakenEvent) -> None:
    assert parse_kraken_v1(frame, ctx(NOW_V1)) == expected


def test_v1_ticker_without_open_or_with_zero_open_has_no_change() -> None:
    base = b'[1,{"c":["10.0","1"],"o":["%s","%s"]},"ticker","XBT/USD"]'
    for opening in (b"0", b"x"):
        event = parse_kraken_v1(base % (opening, opening), ctx(NOW_V1))
        if opening == b"x":
            assert event.rejections[0].reason.startswith("ticker XBT/USD: field 'open'")
            continue
        (message,) = event.messages
        assert isinstance(message, TickerMessage)
        assert message.change_24h_pct is None
    huge = b'[1,{"c":["1000000000000","1"],"o":["1e-18","1e-18"]},"ticker","XBT/USD"]'
    (message,) = parse_kraken_v1(huge, ctx(NOW_V1)).messages
    assert isinstance(message, TickerMessage)
    assert message.change_24h_pct is None  # beyond the signed bound: dropped, not an error


def test_unexpected_errors_become_rejections(monkeypatch: pytest.MonkeyPatch) -> None:
    import handlers._kraken as kraken

    def boom(*_: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(kraken, "_v1_event", boom)
    event = kraken.parse_kraken_v1(b'{"event":"heartbeat"}', ctx(NOW_V1))
    assert event == KrakenEvent(rejections=(Rejection(reason="internal error: RuntimeError: bug"),))
