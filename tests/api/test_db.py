"""Rows built by column name (:func:`api.db.struct_row`), without a database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from api.db import struct_row


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
