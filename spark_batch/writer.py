"""Idempotent upserts of analytics rows into PostgreSQL/TimescaleDB (psycopg, driver side).

Each micro-batch is written in ONE transaction: the rows are COPYed into a
temporary staging table, then ``INSERT ... SELECT ... ON CONFLICT (primary key)
DO UPDATE``. Writing the same batch again (Spark replays the last batch after a
crash when its commit was not recorded) therefore leaves the table exactly as it
was: exactly-once results on top of at-least-once execution. Rows whose values
did not change are not rewritten (``WHERE ... IS DISTINCT FROM``), so a replay
does not even touch ``updated_at``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UpsertSpec:
    """How rows of one table are upserted."""

    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    """The table's primary key: the idempotency key of a row."""
    assignments: tuple[tuple[str, str], ...]
    """``(column, SQL expression)`` applied on conflict; ``t`` is the existing row."""
    compared: tuple[str, ...]
    """Columns whose change makes the row worth rewriting."""


SENTIMENT = UpsertSpec(
    table="sentiment_data",
    columns=(
        "timestamp",
        "window_start",
        "crypto_symbol",
        "sentiment_score",
        "sentiment_label",
        "source",
        "confidence",
        "article_count",
    ),
    key=("crypto_symbol", "source", "timestamp"),
    assignments=(
        ("window_start", "EXCLUDED.window_start"),
        ("sentiment_score", "EXCLUDED.sentiment_score"),
        ("sentiment_label", "EXCLUDED.sentiment_label"),
        ("confidence", "EXCLUDED.confidence"),
        ("article_count", "EXCLUDED.article_count"),
        ("updated_at", "now()"),
    ),
    compared=("window_start", "sentiment_score", "sentiment_label", "confidence", "article_count"),
)

_PREDICTION_VALUES = (
    "window_start",
    "predicted_price",
    "confidence_interval_low",
    "confidence_interval_high",
    "interval_level",
    "outer_interval_low",
    "outer_interval_high",
    "outer_interval_level",
    "target_time",
    "last_price",
    "trailing_skill",
    "preferred",
)
PREDICTION = UpsertSpec(
    table="prediction_data",
    columns=("timestamp", "crypto_symbol", "model_name", "horizon_s", *_PREDICTION_VALUES),
    key=("crypto_symbol", "model_name", "horizon_s", "timestamp"),
    assignments=(
        *((c, f"EXCLUDED.{c}") for c in _PREDICTION_VALUES),
        # actual_price belongs to the backfill; it stays valid while the target does.
        (
            "actual_price",
            "CASE WHEN t.target_time = EXCLUDED.target_time THEN t.actual_price END",
        ),
        ("updated_at", "now()"),
    ),
    compared=_PREDICTION_VALUES,
)

FORECAST_STATE = UpsertSpec(
    table="forecast_state",
    columns=("crypto_symbol", "bar_end", "state_version", "state"),
    key=("crypto_symbol",),
    assignments=(
        ("bar_end", "EXCLUDED.bar_end"),
        ("state_version", "EXCLUDED.state_version"),
        ("state", "EXCLUDED.state"),
        ("updated_at", "now()"),
    ),
    compared=("bar_end", "state_version", "state"),
)

LATE_EVENTS = UpsertSpec(
    table="analytics_late_events",
    columns=(
        "query_name",
        "event_id",
        "crypto_symbol",
        "event_time",
        "window_start",
        "window_end",
        "watermark",
        "batch_id",
    ),
    key=("query_name", "event_id", "crypto_symbol", "event_time"),
    # The first detection stands: a later duplicate of a late article is not news.
    assignments=(),
    compared=(),
)

Value = str | int | float | bool | bytes | Decimal | datetime | None


def _dedupe(spec: UpsertSpec, rows: Sequence[Sequence[Value]]) -> list[Sequence[Value]]:
    # ON CONFLICT cannot touch one row twice in a statement: the last version wins.
    positions = [spec.columns.index(k) for k in spec.key]
    unique: dict[tuple[Value, ...], Sequence[Value]] = {}
    for row in rows:
        unique[tuple(row[i] for i in positions)] = row
    return list(unique.values())


def upsert(conn: psycopg.Connection[Any], spec: UpsertSpec, rows: Sequence[Sequence[Value]]) -> int:
    """Upsert ``rows`` (tuples in ``spec.columns`` order) inside the caller's transaction.

    Returns the number of rows inserted or changed.
    """
    if not rows:
        return 0
    stage = sql.Identifier(f"_stage_{spec.table}")
    table = sql.Identifier(spec.table)
    cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        ).format(stage, table)
    )
    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, cols)) as copy:
        for row in _dedupe(spec, rows):
            copy.write_row(row)
    conflict = sql.SQL(", ").join(map(sql.Identifier, spec.key))
    if spec.assignments:
        sets = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(col), sql.SQL(expr))
            for col, expr in spec.assignments
        )
        old = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in spec.compared)
        new = sql.SQL(", ").join(
            sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in spec.compared
        )
        action: sql.Composable = sql.SQL(
            "DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})"
        ).format(sets, old, new)
    else:
        action = sql.SQL("DO NOTHING")
    cur = conn.execute(
        sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
            table, cols, cols, stage, conflict, action
        )
    )
    return cur.rowcount


class Database:
    """One lazily opened connection, reopened after failures; writes retried with backoff.

    Each streaming query owns one (foreachBatch functions of different queries run
    on different driver threads).
    """

    def __init__(self, url: str, *, attempts: int = 6, first_delay_s: float = 0.5) -> None:
        self._url = url
        self._attempts = attempts
        self._first_delay_s = first_delay_s
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            # Autocommit, so that conn.transaction() is an explicit BEGIN ... COMMIT.
            self._conn = psycopg.connect(self._url, autocommit=True)
        return self._conn

    def transaction(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``work`` in one committed transaction, retrying when the server is unreachable.

        A failure that is not about connectivity (a constraint, a bug) is raised at
        once: the query then stops and Spark replays the batch on restart.
        """
        delay = self._first_delay_s
        for attempt in range(1, self._attempts + 1):
            try:
                conn = self._connection()
                with conn.transaction():
                    return work(conn)
            except psycopg.OperationalError as exc:
                self.close()
                if attempt == self._attempts:
                    raise
                log.warning("database unavailable (%s); retry %d in %.1fs", exc, attempt, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
