"""The columnar COPY encoder stores exactly what psycopg's own row formatter stores.

Each case COPYs the same rows twice into twin tables of a real PostgreSQL, once as
:func:`flows._copy.encode_columns` text and once through psycopg's ``write_row``,
and compares the tables value by value (``EXCEPT`` both ways).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from flows._copy import encode_columns, kafka_times
from flows._pg_writer import KAFKA_TIME
from flows._tables import TABLES, rows_for
from handlers import HandlerContext, Rejection, handler_for
from infra.settings import Settings
from tests.flows._payloads import VALID

T0 = datetime(2025, 11, 28, 6, 11, 31, tzinfo=UTC)
# A column per kind the encoder handles, and the values that need care in COPY text.
TWIN_COLUMNS = "t timestamptz, d numeric, i bigint, f double precision, s text"
EDGE_ROWS: list[tuple[Any, ...]] = [
    (T0, Decimal("30000.17"), 1, 0.5, "BTC/USD"),
    (T0 + timedelta(microseconds=1), Decimal("1E+3"), -(2**62), 1e-05, "tab\there"),
    (T0.astimezone(timezone(timedelta(hours=-5))), Decimal("-0"), 0, 1e22, "back\\slash"),
    (None, Decimal("0.000000000000000001"), None, None, "new\nline and \r return"),
    (T0 + timedelta(days=3650, microseconds=999999), None, 7, -2.5, None),
    (T0, Decimal("123456789012.123456789012345678"), 8, 3.0, "\\N"),
    (T0, Decimal("5"), 9, 0.1, ""),
    (T0, Decimal("6"), 10, 0.2, "unicode: é ₿ \U0001d518"),
]


def _copy_twice(url: str, columns: str, names: list[str], rows: list[tuple[Any, ...]]) -> None:
    """COPY ``rows`` into tables ``a`` (our text) and ``b`` (psycopg); assert they match."""
    cols = sql.SQL(", ").join(map(sql.Identifier, names))
    data = encode_columns(list(zip(*rows, strict=True)))
    assert data is not None, "every value here is one the encoder handles"
    with psycopg.connect(url) as conn:
        conn.execute(f"CREATE TEMP TABLE a ({columns})")
        conn.execute(f"CREATE TEMP TABLE b ({columns})")
        with conn.cursor() as cur:
            with cur.copy(sql.SQL("COPY a ({}) FROM STDIN").format(cols)) as copy:
                copy.write(data)
            with cur.copy(sql.SQL("COPY b ({}) FROM STDIN").format(cols)) as copy:
                for row in rows:
                    copy.write_row(row)
        counts = conn.execute("SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)")
        assert counts.fetchone() == (len(rows), len(rows))
        for left, right in (("a", "b"), ("b", "a")):
            diff = conn.execute(f"SELECT * FROM {left} EXCEPT ALL SELECT * FROM {right}")
            assert diff.fetchall() == [], f"rows of {left} not in {right}"


@pytest.mark.integration
def test_edge_values_are_stored_as_psycopg_stores_them(fresh_db: str) -> None:
    _copy_twice(fresh_db, TWIN_COLUMNS, ["t", "d", "i", "f", "s"], EDGE_ROWS)


@pytest.mark.integration
@pytest.mark.parametrize("topic", ["rawticker", "rawtrade", "rawalert"])
def test_each_tables_rows_with_kafka_times_match_psycopg(
    topic: str, fresh_db: str, stack: Settings
) -> None:
    ctx = HandlerContext(coins=stack.coin_table(), now=datetime.now(UTC))
    records = [handler_for(topic)(VALID[topic](i), ctx) for i in range(200)]
    accepted = [r for r in records if not isinstance(r, Rejection)]
    assert len(accepted) == 200
    spec = TABLES[topic]
    stamps = [None if i % 7 == 0 else 1_764_310_291_000 + i for i in range(200)]
    rows = [(*row, t) for row, t in zip(rows_for(spec, accepted), kafka_times(stamps), strict=True)]
    with psycopg.connect(fresh_db) as conn:
        types = conn.execute(
            "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns"
            " JOIN pg_attribute ON attrelid = %s::regclass AND attname = column_name"
            " WHERE table_name = %s",
            (spec.table, spec.table),
        ).fetchall()
    type_of: dict[str, str] = dict(types)
    names = [*spec.columns, KAFKA_TIME]
    columns = ", ".join(f'"{name}" {type_of[name]}' for name in names)
    _copy_twice(fresh_db, columns, names, rows)


def test_kafka_times_are_exact_utc_milliseconds() -> None:
    assert kafka_times([1_764_310_291_001, None]) == [
        datetime(2025, 11, 28, 6, 11, 31, 1000, tzinfo=UTC),
        None,
    ]
    # ms / 1000 as a float is inexact; the conversion rounds it back to the millisecond.
    epoch, ms = datetime(1970, 1, 1, tzinfo=UTC), timedelta(milliseconds=1)
    stamps = [*range(1_764_310_291_000, 1_764_311_291_000), *range(0, 4_102_444_800_000, 4_099_999)]
    converted = kafka_times(stamps)
    wrong = [s for s, t in zip(stamps, converted, strict=True) if t != epoch + ms * s]
    assert not wrong, f"{len(wrong)} wrong, first {wrong[:5]}"


@pytest.mark.parametrize(
    "column",
    [
        [["BTC", "ETH"], None],  # an array (articles' coins): psycopg's job
        [True, False],  # a boolean
        [1.5, float("nan")],  # a float JSON cannot say: not silently NULL
        [Decimal(1), "1"],  # mixed kinds
    ],
)
def test_values_the_encoder_does_not_handle_are_left_to_psycopg(column: list[Any]) -> None:
    assert encode_columns([column]) is None


def test_null_and_empty_columns() -> None:
    assert encode_columns([]) == b""
    assert encode_columns([[None, None], ["x", None]]) == b"\\N\tx\n\\N\t\\N\n"
