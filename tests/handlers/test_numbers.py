"""Exact decimals: JSON numbers, numeric strings, precision kept from the wire text."""

from __future__ import annotations

from decimal import Decimal

import pytest

from handlers import TickerRecord, parse_ticker
from handlers._fields import check_number, show
from handlers._numbers import to_decimal
from tests.handlers._support import ctx, ok


def test_wire_precision_survives_exactly() -> None:
    payload = (
        b'{"pair":"USDT/USD","last":0.99980,"bid":0.10035,"ask":1.00000,'
        b'"volume_24h":270638277.50461281,"timestamp":1764310291}'
    )
    record = ok(parse_ticker(payload, ctx()), TickerRecord)
    assert str(record.last) == "0.99980"
    assert str(record.bid) == "0.10035"
    assert str(record.ask) == "1.00000"
    assert str(record.volume_24h) == "270638277.50461281"
    assert record.bid == Decimal("0.10035")  # a float would be 0.100349999999999997...
    assert float(record.bid) == 0.10035


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (5, Decimal(5)),
        (Decimal("0.99980"), Decimal("0.99980")),
        (0.10035, Decimal("0.10035")),
        ("71749.0", Decimal("71749.0")),
        (" -2.5e3 ", Decimal("-2.5E+3")),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        ("+7", Decimal(7)),
    ],
)
def test_to_decimal(raw: object, expected: Decimal) -> None:
    value = to_decimal(raw)
    assert value == expected
    assert str(value) == str(expected)


@pytest.mark.parametrize(
    "raw",
    [
        True,
        False,
        None,
        "",
        "abc",
        "NaN",
        "inf",
        "1,5",
        "0x10",
        "1e1234567",
        "١٢٣",
        "9" * 65,
        [1],
        {},
    ],
)
def test_to_decimal_rejects(raw: object) -> None:
    assert to_decimal(raw) is None


def test_non_finite_float_is_converted_then_refused() -> None:
    nan = to_decimal(float("nan"))
    assert nan is not None
    assert nan.is_nan()
    with pytest.raises(Exception, match="must be a finite positive number"):
        check_number("last", float("nan"), "price")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (Decimal("1.000000000000000000000"), "1.000000000000000000"),
        (Decimal("0.000000000000000001"), "1E-18"),
        (Decimal("999999999999.999999999999999999"), "999999999999.999999999999999999"),
        (Decimal("-0"), "0"),
    ],
)
def test_scale_is_bounded_without_losing_value(raw: Decimal, expected: str) -> None:
    assert str(check_number("x", raw, "amount")) == expected


def test_show_clips_long_values() -> None:
    assert show("x" * 100) == repr("x" * 60 + "...")
    assert show(Decimal("1" * 100)) == "1" * 60 + "..."
    assert show(object()) == "object"
    assert show(3.5) == "3.5"
