"""rawtrade: seed and producer shapes, side/ord_type normalisation, trade_key, rejections."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from handlers import Rejection, TradeRecord, parse_trade
from tests.handlers._support import ctx, encode, ok, rejected, seed, utc, variant


def test_seed_trade() -> None:
    record = ok(parse_trade(encode(seed("rawtrade", "seed")), ctx()), TradeRecord)
    assert record == TradeRecord(
        pair="ETH/USD",
        time=utc(2025, 11, 28, 6, 11, 32),
        price=Decimal("2400.5"),
        volume=Decimal("2.1"),
        side="b",
    )


def test_producer_trade() -> None:
    record = ok(parse_trade(encode(seed("rawtrade", "producer")), ctx()), TradeRecord)
    assert record == TradeRecord(
        pair="BTC/USD",
        time=utc(2026, 3, 15, 11, 26, 23, 23215),
        price=Decimal("71749.0"),
        volume=Decimal("0.00220616"),
        side="s",
        trade_id=97184416,
        ord_type="l",
        receive_time=utc(2026, 3, 15, 11, 26, 23, 100000),
    )
    assert record.trade_key == "97184416"


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"side": "buy"}, "side", "b"),
        ({"side": "SELL"}, "side", "s"),
        ({"side": " S "}, "side", "s"),
        ({"ord_type": "limit"}, "ord_type", "l"),
        ({"ord_type": "Market"}, "ord_type", "m"),
        ({"ord_type": "m"}, "ord_type", "m"),
        ({"trade_id": "42"}, "trade_id", 42),
        ({"trade_id": Decimal("42.0")}, "trade_id", 42),
        ({"volume": None, "qty": "0.5"}, "volume", Decimal("0.5")),
        ({"volume": 0}, "volume", Decimal(0)),
        ({"price": "71749.0"}, "price", Decimal("71749.0")),
    ],
)
def test_accepted_variants(changes: dict[str, Any], field: str, expected: object) -> None:
    record = ok(parse_trade(variant("rawtrade", "seed", **changes), ctx()), TradeRecord)
    assert getattr(record, field) == expected


REJECTIONS: list[tuple[dict[str, Any], str, str]] = [
    ({"side": None}, "side", "missing field 'side'"),
    ({"side": "x"}, "side", "field 'side': must be one of 'b', 'buy', 's', 'sell', got 'x'"),
    ({"side": 1}, "side", "field 'side': must be one of 'b', 'buy', 's', 'sell', got 1"),
    (
        {"ord_type": "stop"},
        "ord_type",
        "field 'ord_type': must be one of 'l', 'limit', 'm', 'market', got 'stop'",
    ),
    ({"price": -1}, "price", "field 'price': must be a finite positive number, got -1"),
    ({"price": None}, "price", "missing field 'price'"),
    ({"volume": -1}, "volume", "field 'volume': must be a finite non-negative number, got -1"),
    ({"volume": None}, "volume", "missing field 'volume' or 'qty'"),
    ({"timestamp": None}, "timestamp", "missing field 'timestamp'"),
    (
        {"trade_id": -1},
        "trade_id",
        "field 'trade_id': must be between 0 and 9223372036854775807, got -1",
    ),
    (
        {"trade_id": 2**63},
        "trade_id",
        "field 'trade_id': must be between 0 and 9223372036854775807, got 9223372036854775808",
    ),
    ({"trade_id": Decimal("1.5")}, "trade_id", "field 'trade_id': must be an integer, got 1.5"),
    ({"trade_id": "abc"}, "trade_id", "field 'trade_id': must be an integer, got 'abc'"),
    ({"trade_id": True}, "trade_id", "field 'trade_id': must be an integer, got true"),
    ({"pair": "???"}, "pair", "field 'pair': must be a trading pair like 'BTC/USD', got '???'"),
]


@pytest.mark.parametrize(("changes", "field", "reason"), REJECTIONS)
def test_rejections(changes: dict[str, Any], field: str, reason: str) -> None:
    rejection = rejected(parse_trade(variant("rawtrade", "seed", **changes), ctx()))
    assert rejection == Rejection(reason=reason, field=field)


def _trade(**changes: Any) -> TradeRecord:
    return ok(parse_trade(variant("rawtrade", "seed", **changes), ctx()), TradeRecord)


def test_trade_key_is_a_stable_content_hash_without_trade_id() -> None:
    key = _trade().trade_key
    assert re.fullmatch(r"[0-9a-f]{40}", key)
    # Same trade written differently on the wire: same key.
    assert _trade(price="2400.50", volume=Decimal("2.10"), timestamp=1764310292000).trade_key == key
    assert _trade(side="buy", timestamp="2025-11-28T06:11:32Z").trade_key == key
    # Any content difference: a different key.
    others = {
        _trade(side="s").trade_key,
        _trade(price=2400.6).trade_key,
        _trade(volume=2.2).trade_key,
        _trade(timestamp=1764310293).trade_key,
        _trade(pair="ETH/EUR").trade_key,
    }
    assert key not in others
    assert len(others) == 5


def test_trade_key_uses_trade_id_when_present() -> None:
    assert _trade(trade_id=7).trade_key == "7"
    assert _trade(trade_id=0).trade_key == "0"
