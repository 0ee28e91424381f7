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
return ``None``, and the caller formats that batch with psycopg instead: the result is
the same text either way (``tests/flows/test_copy.py`` checks it value by value
against psycopg's own formatter).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

_JSON = msgspec.json.Encoder(decimal_format="number")
_NULL = "\\N"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_NUMERIC = frozenset({Decimal, int, float, datetime, type(None)})
_TEXT = frozenset({str, type(None)})
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def kafka_times(stamps: Sequence[int | None]) -> list[datetime | None]:
    """Kafka timestamps (ms since the epoch) as UTC datetimes."""
    return [None if ms is None else _EPOCH + _MS * ms for ms in stamps]


def _numeric(column: Sequence[Any]) -> list[str] | None:
    text = _JSON.encode(column).decode()
    tokens = text[1:-1].replace('"', "").replace("null", _NULL).split(",")
    # A float that is not finite is encoded as null too: not the same value, so not ours.
    if tokens.count(_NULL) != column.count(None):
        return None
    return tokens


def _text(column: Sequence[str | None]) -> list[str]:
    present = [v for v in column if v is not None]
    blob = "".join(present)
    if "\\" in blob or "\t" in blob or "\n" in blob or "\r" in blob:
        return [_NULL if v is None else v.translate(_COPY_ESCAPES) for v in column]
    if len(present) == len(column):
        return present
    return [_NULL if v is None else v for v in column]


def _encode_column(column: Sequence[Any]) -> list[str] | None:
    nones = column.count(None)
    if nones == len(column):
        return [_NULL] * nones
    kinds = set(map(type, column))
    if kinds <= _NUMERIC:
        return _numeric(column)
    if kinds <= _TEXT:
        return _text(column)
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
