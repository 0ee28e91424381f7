"""Rows built by column name (:func:`api.db.struct_row`) and stamps, without a database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from api.db import PG_EPOCH, One, stamp_time, struct_row, time_stamp


class Point(msgspec.Struct, frozen=True, kw_only=True):
    price: float
    side: str


@dataclass
class _Column:
    name: str


@dataclass
class _Cursor:
    description: list[_Column]


def _maker(*names: str) -> Any:
    cursor: Any = _Cursor([_Column(n) for n in names])
    return struct_row(Point)(cursor)


def test_columns_are_passed_by_name_in_any_order() -> None:
    assert _maker("side", "price")(("b", 1.5)) == Point(price=1.5, side="b")
    assert _maker("price", "side")((2.5, "s")) == Point(price=2.5, side="s")


def test_one_maker_per_row_type_and_select_list() -> None:
    assert _maker("side", "price") is _maker("side", "price")
    assert _maker("side", "price") is not _maker("price", "side")


@pytest.mark.parametrize("name", ["?column?", "from", "price; x", "1price"])
def test_a_column_that_is_no_keyword_argument_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="alias it"):
        _maker("side", name)


def test_a_column_that_is_no_field_fails_like_the_constructor() -> None:
    with pytest.raises(TypeError, match="volume"):
        _maker("side", "price", "volume")(("b", 1.0, 3.0))


class Positional(msgspec.Struct, frozen=True):
    price: float
    side: str


def test_columns_in_field_order_build_a_positional_struct_positionally() -> None:
    cursor: Any = _Cursor([_Column("price"), _Column("side")])
    make: Any = struct_row(Positional)(cursor)
    assert make((1.5, "b")) == Positional(price=1.5, side="b")
    # A keyword call keeps its names among the code's constants; a positional one not.
    assert ("price", "side") not in make.__code__.co_consts
    swapped: Any = _Cursor([_Column("side"), _Column("price")])
    by_name: Any = struct_row(Positional)(swapped)
    assert by_name(("s", 2.5)) == Positional(price=2.5, side="s")
    assert ("side", "price") in by_name.__code__.co_consts


def test_a_plain_value_row_type_is_the_one_column_itself() -> None:
    one: Any = _Cursor([_Column("timestamp")])
    two: Any = _Cursor([_Column("a"), _Column("b")])
    assert struct_row(int)(one)((7,)) == 7
    value: Any = _Cursor([_Column("value")])
    assert struct_row(One[int])(value)((7,)) == One(7)  # a Struct's alias is no plain type
    with pytest.raises(ValueError, match="one column"):
        struct_row(int)(two)


def test_stamps_are_postgresql_microseconds() -> None:
    moment = datetime(2026, 1, 15, 12, 0, 0, 123456, tzinfo=UTC)
    assert time_stamp(PG_EPOCH) == 0
    assert time_stamp(moment) == ((26 * 365 + 7 + 14) * 86400 + 12 * 3600) * 10**6 + 123456
    assert stamp_time(time_stamp(moment)) == moment
    assert stamp_time(-1) == PG_EPOCH - timedelta(microseconds=1)
