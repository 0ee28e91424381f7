"""rawticker: seed, prototype and producer shapes, and every rejection reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from handlers import MAX_SIGNED, Rejection, TickerRecord, parse_ticker, pct_change
from tests.handlers._support import ctx, encode, ok, rejected, seed, utc, variant


def test_seed_ticker() -> None:
    record = ok(parse_ticker(encode(seed("rawticker", "seed")), ctx()), TickerRecord)
    assert record == TickerRecord(
        pair="BTC/USD",
        time=utc(2025, 11, 28, 6, 11, 31),
        last=Decimal("34000.12"),
        bid=Decimal("33990.00"),
        ask=Decimal("34010.00"),
        volume_24h=Decimal("1200.5"),
    )
    assert str(record.bid) == "33990.00"
    assert record.source == "kraken"


def test_prototype_ticker_canonicalises_pair_and_pct_change() -> None:
    record = ok(parse_ticker(encode(seed("rawticker", "prototype")), ctx()), TickerRecord)
    assert record.pair == "BTC/USD"
    assert record.time == utc(2024, 1, 15, 9, 52, 25, 678000)
    assert record.pct_change == Decimal("2.51")
    assert record.change_24h_pct is None
    assert record.bid is None
    assert record.exchange_time is None


def test_producer_ticker_prefers_exchange_time() -> None:
    record = ok(parse_ticker(encode(seed("rawticker", "producer")), ctx()), TickerRecord)
    assert record == TickerRecord(
        pair="BTC/USD",
        time=utc(2026, 3, 15, 11, 25, 19, 200068),
        last=Decimal("71770.4"),
        bid=Decimal("71770.3"),
        ask=Decimal("71770.4"),
        volume_24h=Decimal("636.8977771"),
        bid_qty=Decimal("0.03155564"),
        ask_qty=Decimal("1.72978253"),
        vwap=Decimal("71318.4"),
        low=Decimal("70510.9"),
        high=Decimal("72000.0"),
        change_24h_pct=Decimal("1.54"),
        exchange_time=utc(2026, 3, 15, 11, 25, 19, 200068),
        receive_time=utc(2026, 3, 15, 11, 25, 19, 400000),
    )


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"last": "71749.0"}, "last", Decimal("71749.0")),
        ({"last": " 5 "}, "last", Decimal(5)),
        ({"last": 7}, "last", Decimal(7)),
        ({"volume_24h": 0}, "volume_24h", Decimal(0)),
        ({"volume_24h": Decimal("-0.0")}, "volume_24h", Decimal("0.0")),
        ({"timestamp": 1764310291000}, "time", utc(2025, 11, 28, 6, 11, 31)),
        ({"timestamp": "1764310291.5"}, "time", utc(2025, 11, 28, 6, 11, 31, 500000)),
        ({"timestamp": "2025-11-28T07:11:31+01:00"}, "time", utc(2025, 11, 28, 6, 11, 31)),
        ({"pair": "xbt-usd"}, "pair", "BTC/USD"),
        ({"pair": None, "symbol": "ETH/EUR"}, "pair", "ETH/EUR"),
        ({"pair": "WAVES/EUR"}, "pair", "WAVES/EUR"),
        ({"source": "replay"}, "source", "replay"),
        ({"extra": {"nested": [1, 2]}}, "pair", "BTC/USD"),
        ({"bid": None}, "bid", None),
        ({"last": Decimal("1.000000000000000000000")}, "last", Decimal("1.000000000000000000")),
    ],
)
def test_accepted_variants(changes: dict[str, Any], field: str, expected: object) -> None:
    record = ok(parse_ticker(variant("rawticker", "seed", **changes), ctx()), TickerRecord)
    assert getattr(record, field) == expected


def test_negative_zero_is_normalised() -> None:
    payload = variant("rawticker", "seed", volume_24h=Decimal("-0.0"))
    record = ok(parse_ticker(payload, ctx()), TickerRecord)
    assert record.volume_24h is not None
    assert not record.volume_24h.is_signed()


NOW_TEXT = "2026-10-01T00:00:00.000000Z"

REJECTIONS: list[tuple[dict[str, Any], str, str]] = [
    ({"last": -3}, "last", "field 'last': must be a finite positive number, got -3"),
    ({"last": 0}, "last", "field 'last': must be a finite positive number, got 0"),
    ({"last": "abc"}, "last", "field 'last': must be a number or a numeric string, got 'abc'"),
    ({"last": "NaN"}, "last", "field 'last': must be a number or a numeric string, got 'NaN'"),
    ({"last": True}, "last", "field 'last': must be a number or a numeric string, got true"),
    ({"last": [1]}, "last", "field 'last': must be a number or a numeric string, got an array"),
    (
        {"last": {"v": 1}},
        "last",
        "field 'last': must be a number or a numeric string, got an object",
    ),
    (
        {"last": Decimal("1e13")},
        "last",
        "field 'last': must be at most 1e12 in magnitude, got 1E+13",
    ),
    (
        {"last": Decimal("1e400")},
        "last",
        "field 'last': must be at most 1e12 in magnitude, got 1E+400",
    ),
    (
        {"last": Decimal("1e-19")},
        "last",
        "field 'last': must have at most 18 decimal places, got 1E-19",
    ),
    ({"last": None}, "last", "missing field 'last'"),
    ({"bid": -1}, "bid", "field 'bid': must be a finite positive number, got -1"),
    ({"ask": 0}, "ask", "field 'ask': must be a finite positive number, got 0"),
    (
        {"volume_24h": Decimal("-0.5")},
        "volume_24h",
        "field 'volume_24h': must be a finite non-negative number, got -0.5",
    ),
    (
        {"volume_24h": Decimal("1e16")},
        "volume_24h",
        "field 'volume_24h': must be at most 1e15 in magnitude, got 1E+16",
    ),
    ({"bid_qty": -1}, "bid_qty", "field 'bid_qty': must be a finite non-negative number, got -1"),
    (
        {"change_pct": "up"},
        "change_pct",
        "field 'change_pct': must be a number or a numeric string, got 'up'",
    ),
    (
        {"pct_change": "x"},
        "pct_change",
        "field 'pct_change': must be a number or a numeric string, got 'x'",
    ),
    ({"pair": None}, "pair", "missing field 'pair' or 'symbol'"),
    ({"pair": 5}, "pair", "field 'pair': must be a string, got 5"),
    (
        {"pair": "BTC USD"},
        "pair",
        "field 'pair': must be a trading pair like 'BTC/USD', got 'BTC USD'",
    ),
    (
        {"pair": "BTC/BTC"},
        "pair",
        "field 'pair': must be a trading pair like 'BTC/USD', got 'BTC/BTC'",
    ),
    ({"timestamp": None}, "timestamp", "missing field 'timestamp'"),
    (
        {"timestamp": "2025-11-28T06:11:31"},
        "timestamp",
        "field 'timestamp': ISO-8601 time must carry a timezone offset or 'Z', "
        "got '2025-11-28T06:11:31'",
    ),
    (
        {"timestamp": "yesterday"},
        "timestamp",
        "field 'timestamp': must be epoch seconds, epoch milliseconds or ISO-8601 with a "
        "timezone, got 'yesterday'",
    ),
    (
        {"timestamp": 1230768000},
        "timestamp",
        "field 'timestamp': must not be before 2009-01-03T00:00:00Z, got 1230768000",
    ),
    (
        {"timestamp": 1790000000 + 2 * 86400 * 30},
        "timestamp",
        f"field 'timestamp': must not be more than 1 day after now ({NOW_TEXT}), got 1795184000",
    ),
    (
        {"timestamp": "2026-10-03T00:00:00Z"},
        "timestamp",
        f"field 'timestamp': must not be more than 1 day after now ({NOW_TEXT}), "
        "got '2026-10-03T00:00:00Z'",
    ),
    (
        {"timestamp": False},
        "timestamp",
        "field 'timestamp': must be epoch seconds, epoch milliseconds or ISO-8601 with a "
        "timezone, got false",
    ),
    (
        {"exchange_ts": "2026-13-01T00:00:00Z"},
        "exchange_ts",
        "field 'exchange_ts': must be epoch seconds, epoch milliseconds or ISO-8601 with a "
        "timezone, got '2026-13-01T00:00:00Z'",
    ),
    (
        {"receive_ts": -1},
        "receive_ts",
        "field 'receive_ts': must not be before 2009-01-03T00:00:00Z, got -1",
    ),
    ({"source": ""}, "source", "field 'source': must not be empty, got ''"),
    ({"source": "x" * 65}, "source", "field 'source': must be at most 64 characters, got 65"),
]


@pytest.mark.parametrize(("changes", "field", "reason"), REJECTIONS)
def test_rejections(changes: dict[str, Any], field: str, reason: str) -> None:
    rejection = rejected(parse_ticker(variant("rawticker", "seed", **changes), ctx()))
    assert rejection == Rejection(reason=reason, field=field)


def test_exchange_time_alone_is_enough() -> None:
    payload = variant("rawticker", "seed", timestamp=None, exchange_ts="2025-11-28T06:11:31Z")
    record = ok(parse_ticker(payload, ctx()), TickerRecord)
    assert record.time == record.exchange_time == utc(2025, 11, 28, 6, 11, 31)


@pytest.mark.parametrize(
    ("before", "last", "expected"),
    [
        (None, "100", None),  # a pair's first tick: nothing to change from
        ("100", "101", "1.000000"),
        ("100", "99.5", "-0.500000"),
        ("100", "100", "0.000000"),
        ("3", "4", "33.333333"),  # six decimals of a percent, rounded half even
        ("0", "100", None),  # a junk zero price before: no change rather than a division
        ("0.000000000000000001", "1000000", None),  # beyond what a signed column holds
    ],
)
def test_pct_change_from_the_previous_price(
    before: str | None, last: str, expected: str | None
) -> None:
    change = pct_change(None if before is None else Decimal(before), Decimal(last))
    assert change == (None if expected is None else Decimal(expected))
    if change is not None:
        assert str(change) == expected, "quantized to the unit, not just equal"
        assert change.copy_abs() <= MAX_SIGNED
