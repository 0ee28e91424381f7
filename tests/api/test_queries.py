"""Every API statement's columns are its row type's fields, by name (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider

from api import candles, queries
from api.db import Database, Query, stamp_time, struct_row, time_stamp
from api.models import ModelAccuracy, ModelPrediction
from api.settings import ApiSettings
from api.telemetry import Telemetry
from spark_batch.accuracy import IntervalAccuracy

T0 = datetime(2026, 1, 15, tzinfo=UTC)
PARAMETERS: dict[str, Any] = {
    "key": "BTC", "pair": "BTC/USD", "symbol": "BTC", "pairs": ["BTC/USD"],
    "lo": T0 - timedelta(days=1), "hi": T0, "cts": T0, "since": T0 - timedelta(days=7),
    "n": 10, "width": timedelta(hours=1), "id": 1, "name": "n", "active": True,
    "time_range": "1h", "chart_type": "line", "indicators": [], "horizon": 300, "now": T0,
    "until": T0, "shown_first": "shown_first", "naive": "naive_last_value",
    "newest": T0, "oldest": T0 - timedelta(days=1),
}  # fmt: skip
"""A value for every parameter name the statements use (cursor keys: after_<column>)."""


def _statements() -> list[tuple[str, Query[Any]]]:
    found: list[tuple[str, Query[Any]]] = []
    for module in (queries, candles):
        for name, value in vars(module).items():
            if isinstance(value, Query):
                found.append((f"{module.__name__}.{name}", value))
                if isinstance(value, queries.PageQuery) and value.by_stamp is not None:
                    found.append((f"{module.__name__}.{name}.stamps", value.by_stamp.stamps))
                    found.append((f"{module.__name__}.{name}.rows", value.by_stamp.rows))
            elif isinstance(value, dict) and all(isinstance(q, Query) for q in value.values()):
                # flavour -> statement: the plain one runs here (test_timescale runs the others)
                found.append((f"{module.__name__}.{name}[plain]", value["plain"]))
    return found


STATEMENTS = _statements()


def test_every_statement_is_found() -> None:
    assert len(STATEMENTS) >= 25
    assert {q.name for _, q in STATEMENTS} >= {"ticker_page", "alert_page", "candles_raw"}


@pytest.mark.parametrize(("label", "query"), STATEMENTS, ids=[label for label, _ in STATEMENTS])
def test_columns_are_the_row_fields(label: str, query: Query[Any], fresh_db: str) -> None:
    """A field added to a point type and not to its SELECT (or the other way) fails here."""
    names = set(re.findall(r"%\((\w+)\)s", query.sql))
    int_keys = query.int_keys if isinstance(query, queries.PageQuery) else frozenset()
    params = {
        n: (0 if n.removeprefix("after_") in int_keys else "")
        if n.startswith("after_")
        else PARAMETERS[n]
        for n in names
    }
    with psycopg.connect(fresh_db) as conn:
        cur = conn.execute(query.sql, params)
        assert cur.description is not None, label
        columns = [c.name for c in cur.description]
        conn.rollback()
    assert columns == _field_names(query.row), label


def _field_names(row: Any) -> list[str]:
    # A row is a msgspec Struct, or a dataclass shared with another program (PairGaps),
    # or a plain value (a page's stamps): the timestamp column alone.
    if row is int:
        return ["timestamp"]
    if dataclasses.is_dataclass(row):
        return [f.name for f in dataclasses.fields(row)]
    return [f.name for f in msgspec.structs.fields(row)]


def test_latest_predictions_rows_are_model_predictions_but_what_the_api_adds() -> None:
    row = queries.LATEST_PREDICTIONS.row
    added = ("label", "shown_first", "accuracy")
    assert (*row.__struct_fields__, *added) == ModelPrediction.__struct_fields__


def test_accuracy_rows_are_the_report_lines_but_what_the_api_adds() -> None:
    """The accuracy line is declared as the SQL row and the API body (and as the Spark
    report's line, compared figure by figure in tests/api/test_market.py): a field added
    to one and not the other fails here."""
    row = queries.PREDICTION_ACCURACY.row
    assert (*row.__struct_fields__, "skill_vs_naive", "intervals") == (
        ModelAccuracy.__struct_fields__
    )
    band = queries.PREDICTION_INTERVAL_ACCURACY.row.__struct_fields__
    assert band == ("model_name", "horizon_s", *IntervalAccuracy.__struct_fields__)


def test_the_prediction_page_orders_by_every_key_column() -> None:
    # One row per (coin, model, horizon, issue time): without the horizon in the order, a
    # page ending between two horizons of one model and minute would skip or repeat rows.
    page = queries.PREDICTION_PAGE
    assert page.keys == ("model_name", "horizon_s")
    assert page.int_keys == {"horizon_s"}
    assert "ORDER BY timestamp DESC, model_name DESC, horizon_s DESC" in page.sql


# Prices as the feeds write them, and the numerics whose float is hardest to get right:
# more digits than a double holds, halfway cases, tiny and huge magnitudes.
NUMERICS = (
    "30000.1", "0.1", "0.000000012345", "123456789012.123456789", "1.0000000000000002220446",
    "9007199254740993", "-0.5", "2.675", "1e-20", "65432.12345678901234567890", "NaN",
)  # fmt: skip


def test_pages_read_in_binary_give_the_floats_of_the_numeric_text(fresh_db: str) -> None:
    """The ``float8`` casts of a binary page (see ``page_query``) must not change a digit:
    each value equals Python's float of PostgreSQL's text of the stored numeric."""
    query = queries.TICKER_PAGE
    assert query.binary
    assert "last::float8 AS last" in query.sql
    stamps = [T0 - timedelta(seconds=i, microseconds=7 * i) for i in range(len(NUMERICS))]
    # As the API's pool does: a UTC session, so timestamps load as UTC datetimes.
    with psycopg.connect(fresh_db, autocommit=True, options="-c TimeZone=UTC") as conn:
        for stamp, value in zip(stamps, NUMERICS, strict=True):
            conn.execute(
                "INSERT INTO ticker_data (timestamp, pair, last, bid) "
                "VALUES (%s, 'BTC/USD', %s::numeric, %s::numeric)",
                (stamp, value, value),
            )
        params = {"key": "BTC/USD", "lo": T0 - timedelta(days=1), "cts": T0 + timedelta(1), "n": 99}
        with conn.cursor(row_factory=struct_row(query.row), binary=True) as cur:
            rows = cur.execute(query.sql, params).fetchall()
        text = conn.execute("SELECT last::text FROM ticker_data ORDER BY timestamp DESC")
        expected = [float(t) for (t,) in text.fetchall()]
    assert [r.timestamp for r in rows] == stamps
    assert all(r.timestamp.utcoffset() == timedelta(0) for r in rows)
    for row, want in zip(rows, expected, strict=True):
        assert type(row.last) is float
        assert row.ask is None
        if math.isnan(want):
            assert math.isnan(row.last)
            assert math.isnan(row.bid or 0.0)
        else:
            assert (row.last, row.bid) == (want, want), row


def test_a_page_read_by_stamp_is_the_page(fresh_db: str) -> None:
    """The two steps of ``StampReads`` (stamps, then rows between two of them) give the
    page's rows; run through the API's own ``Database``, whose cursor loads the stamps
    as integers."""
    query = queries.TICKER_PAGE
    reads = query.by_stamp
    assert reads is not None
    assert queries.TRADE_PAGE.by_stamp is None  # ordered by trade_key too: not by stamp
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for i in range(30):
            for pair in ("BTC/USD", "ETH/USD"):
                conn.execute(
                    "INSERT INTO ticker_data (timestamp, pair, last, bid, high) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (T0 - timedelta(minutes=i, microseconds=i), pair, 100 + i, i or None, 0.1),
                )
    params = {"key": "BTC/USD", "lo": T0 - timedelta(days=1), "cts": T0, "n": 21}

    async def read() -> tuple[list[Any], list[int], list[Any]]:
        db = Database(fresh_db, ApiSettings(pool_min=0), Telemetry(TracerProvider()))
        await db.open()
        try:
            page = await db.fetch(query, params)
            stamps = await db.fetch(reads.stamps, params)
            newest, oldest = stamp_time(stamps[2]), stamp_time(stamps[12])
            span = {"key": "BTC/USD", "newest": newest, "oldest": oldest}
            by_stamp = await db.fetch(reads.rows, span)
            return page, stamps, by_stamp
        finally:
            await db.close()

    page, stamps, by_stamp = asyncio.run(read())
    assert len(page) == 21
    assert all(type(s) is int for s in stamps)
    assert stamps == [time_stamp(r.timestamp) for r in page]
    assert [stamp_time(s) for s in stamps] == [r.timestamp for r in page]
    assert by_stamp == page[2:13]
