"""rawalert: seed, producer and prototype shapes, direction rules, rejections."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from handlers import AlertRecord, Rejection, parse_alert
from tests.handlers._support import ctx, encode, ok, rejected, seed, utc, variant


def test_seed_alert_direction_from_sign() -> None:
    record = ok(parse_alert(encode(seed("rawalert", "seed")), ctx()), AlertRecord)
    assert record == AlertRecord(
        pair="BTC/USD",
        time=utc(2025, 11, 28, 6, 11, 33),
        last_price=Decimal(34000),
        change_percent=Decimal("1.2"),
        threshold=Decimal(1),
        alert_type="up",
    )


def test_producer_alert() -> None:
    record = ok(parse_alert(encode(seed("rawalert", "producer")), ctx()), AlertRecord)
    assert record == AlertRecord(
        pair="ETH/USD",
        time=utc(2025, 11, 28, 6, 11, 33, 500000),
        last_price=Decimal("2350.25"),
        change_percent=Decimal("-2.04"),
        threshold=Decimal("1.5"),
        alert_type="down",
        reference_price=Decimal("2399.2"),
        window_s=300,
        receive_time=utc(2025, 11, 28, 6, 11, 33, 600000),
    )


def test_prototype_alert_without_price() -> None:
    record = ok(parse_alert(encode(seed("rawalert", "prototype")), ctx()), AlertRecord)
    assert record == AlertRecord(
        pair="SOL/USD",
        time=utc(2025, 11, 28, 6, 11, 34),
        last_price=None,
        change_percent=Decimal("-3.5"),
        alert_type="down",
    )


@pytest.mark.parametrize(
    ("name", "changes", "field", "expected"),
    [
        ("seed", {"change": -0.7}, "alert_type", "down"),
        ("seed", {"change": None, "change_percent": "2.5"}, "change_percent", Decimal("2.5")),
        ("seed", {"last": None, "last_price": 5}, "last_price", Decimal(5)),
        ("seed", {"alert_type": "UP"}, "alert_type", "up"),
        ("prototype", {"type": "price_spike", "value": 4}, "alert_type", "up"),
        ("prototype", {"last": 150}, "last_price", Decimal(150)),
    ],
)
def test_accepted_variants(
    name: str, changes: dict[str, Any], field: str, expected: object
) -> None:
    record = ok(parse_alert(variant("rawalert", name, **changes), ctx()), AlertRecord)
    assert getattr(record, field) == expected


REJECTIONS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "seed",
        {"change": 0},
        "change",
        "field 'change': must be non-zero (its sign gives the alert direction), got 0",
    ),
    ("seed", {"change": None}, "change", "missing field 'change' or 'change_percent' or 'value'"),
    (
        "seed",
        {"change": "big"},
        "change",
        "field 'change': must be a number or a numeric string, got 'big'",
    ),
    ("seed", {"last": None}, "last", "missing field 'last' or 'last_price'"),
    ("seed", {"last": -5}, "last", "field 'last': must be a finite positive number, got -5"),
    (
        "seed",
        {"alert_type": "sideways"},
        "alert_type",
        "field 'alert_type': must be one of 'up', 'down', got 'sideways'",
    ),
    (
        "seed",
        {"alert_type": "down"},
        "alert_type",
        "field 'alert_type': says 'down' but 'change' is 1.2",
    ),
    ("prototype", {"type": "price_spike"}, "type", "field 'type': says 'up' but 'value' is -3.5"),
    (
        "prototype",
        {"type": "volume"},
        "type",
        "field 'type': must be one of 'price_spike', 'price_drop', got 'volume'",
    ),
    (
        "seed",
        {"threshold": -1},
        "threshold",
        "field 'threshold': must be a finite non-negative number, got -1",
    ),
    (
        "seed",
        {"reference_price": 0},
        "reference_price",
        "field 'reference_price': must be a finite positive number, got 0",
    ),
    (
        "seed",
        {"window_s": 0},
        "window_s",
        "field 'window_s': must be between 1 and 10000000, got 0",
    ),
    ("seed", {"timestamp": None}, "timestamp", "missing field 'timestamp'"),
    ("seed", {"pair": None}, "pair", "missing field 'pair' or 'symbol'"),
]


@pytest.mark.parametrize(("name", "changes", "field", "reason"), REJECTIONS)
def test_rejections(name: str, changes: dict[str, Any], field: str, reason: str) -> None:
    rejection = rejected(parse_alert(variant("rawalert", name, **changes), ctx()))
    assert rejection == Rejection(reason=reason, field=field)
