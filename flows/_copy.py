"""``COPY ... FROM STDIN`` text for a batch of rows, built column by column.

psycopg's ``Copy.write_row`` adapts every value of every row through its dumper
(in C, but one call per value): about 2 µs per ticker row on a quiet machine, the
ingestion worker's largest cost after the handler. Here a batch is transposed into
columns and each column is encoded at once:

- numbers and times (``Decimal``, ``int``, ``float``, ``datetime``, ``None``): one
  msgspec JSON encoding of the whole column, whose tokens are already PostgreSQL's
  input syntax once the quotes around times are dropped (RFC 3339 times, decimals
  with their exact digits, ``null`` -> ``\\N``);
- text: the values themselves, escaped for COPY (backslash, tab, newline, carriage
  return) only in the rare batch where one of them needs it;
- Kafka timestamps (milliseconds) become ``datetime`` and join the first kind.

Anything else (arrays, booleans, a float that is not finite) makes :func:`encode_columns`
return ``None``, and the caller formats that batch with psycopg instead. The text
differs from psycopg's (``2025-11-28T06:11:31.001000Z`` for ``2025-11-28
06:11:31.001000+00:00``) but the stored values are the same:
``tests/flows/test_copy.py`` compares them value by value on PostgreSQL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

_JSON = msgspec.json.Encoder(decimal_format="number")
_NULL = "\\N"
_NONE = type(None)
_ONLY_NONE = frozenset({_NONE})
_NUMERIC = frozenset({Decimal, int, float, datetime, _NONE})
_TEXT = frozenset({str, _NONE})
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def kafka_times(stamps: Sequence[int | None]) -> list[datetime | None]:
    """Kafka timestamps (ms since the epoch) as UTC datetimes.

    msgspec converts epoch seconds to datetimes in C, rounding to the microsecond, which
    makes ``ms / 1000`` exact (``tests/flows/test_copy.py`` checks a million values).
    """
    seconds = [None if ms is None else ms / 1000 for ms in stamps]
    return msgspec.convert(seconds, list[datetime | None], strict=False)


def _numeric(column: Sequence[Any], kinds: set[type]) -> list[str] | None:
    if float in kinds and not all(math.isfinite(v) for v in column if type(v) is float):
        return None  # JSON has no NaN or infinity: msgspec would write null
    text = _JSON.encode(column).decode()[1:-1]
    if datetime in kinds:
        text = text.replace('"', "")
    if _NONE in kinds:
        text = text.replace("null", _NULL)
    return text.split(",")


def _text(column: Sequence[str | None], kinds: set[type]) -> list[str]:
    present = [v for v in column if v is not None]
    blob = "".join(present)
    if "\\" in blob or "\t" in blob or "\n" in blob or "\r" in blob:
        return [_NULL if v is None else v.translate(_COPY_ESCAPES) for v in column]
    if _NONE not in kinds:
        return present
    return [_NULL if v is None else v for v in column]


def _encode_column(column: Sequence[Any]) -> list[str] | None:
    kinds = set(map(type, column))
    if kinds == _ONLY_NONE:
        return [_NULL] * len(column)
    if kinds <= _NUMERIC:
        return _numeric(column, kinds)
    if kinds <= _TEXT:
        return _text(column, kinds)
    return None


def encode_columns(columns: Sequence[Sequence[Any]]) -> bytes | None:
    """The COPY text of the rows whose columns these are (UTF-8), or ``None`` when a
    value is left to psycopg."""
    if not columns or not columns[0]:
        return b""
    encoded: list[list[str]] = []
    for column in columns:
        tokens = _encode_column(column)
        if tokens is None:
            return None
        encoded.append(tokens)
    return ("\n".join(map("\t".join, zip(*encoded, strict=True))) + "\n").encode()
