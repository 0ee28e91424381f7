"""What the database holds, as monitoring reads it: rows and newest row per table, trade gaps.

Read by the ``monitor`` program (:mod:`infra.monitor`, Prometheus gauges) and by the
API (the dashboard's gap count), so both say the same thing. Every query is cheap
enough to run every few seconds on a large database:

* **rows**: ``count(*)`` while the table is small (at most ``exact_max`` rows by the
  statistics), else the statistics' own count: TimescaleDB's
  ``approximate_row_count`` on a hypertable (compressed chunks included), else the
  live-tuple counts PostgreSQL keeps for the table and its partitions.
* **newest row**: ``max("timestamp")`` through an index: directly when an index
  starts with the time column (``article_data``), else once per series key when an
  index is ``(key, "timestamp")`` (the primary keys of ``ticker_data``... ): a loose
  index scan over the keys, then the newest row of each, never a scan of the rows.
* **trade gaps**: holes in each pair's ``trade_id`` sequence (Kraken numbers the
  trades of a book consecutively) among the trades of a recent window.

Tables are discovered, not listed: every table of the ``public`` schema but the
migrations' bookkeeping, with a newest row where it has a ``timestamp`` column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from infra.migrate import MIGRATIONS_TABLE

TIME_COLUMN = "timestamp"
"""The event-time column of every time-series table (migrations/0001_core.sql)."""
GAP_WINDOW = timedelta(hours=24)
"""How far back trade-id gaps are looked for (the monitor's gauges, the API's count)."""

Strategy = Literal["direct", "per-key", "scan"]
Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    hypertable: bool
    time_strategy: Strategy | None
    """How its newest row is found (``None``: no time column)."""
    key: str | None = None
    """The series key of the ``per-key`` strategy."""


@dataclass(frozen=True, slots=True)
class TableState:
    table: str
    rows: int
    estimated: bool
    """``rows`` is the statistics' count, not ``count(*)`` (a large table)."""
    newest: datetime | None
    """The newest row's time; ``None`` for an empty table or one without a time column."""
    timed: bool
    """Whether the table has a time column (a newest row to speak of)."""


@dataclass(frozen=True, slots=True)
class PairGaps:
    pair: str
    gaps: int
    """Holes in the pair's ``trade_id`` sequence."""
    missing: int
    """Trade ids those holes leave out."""


_TABLES = """
SELECT c.oid, c.relname,
       EXISTS (SELECT 1 FROM pg_attribute a
               WHERE a.attrelid = c.oid AND a.attname = %(time)s AND NOT a.attisdropped)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND c.relname <> %(skip)s
ORDER BY c.relname
"""
# The first two columns of each index of a table, by name (NULL past its end).
_INDEX_HEADS = """
SELECT a1.attname, a2.attname
FROM pg_index i
JOIN pg_attribute a1 ON a1.attrelid = i.indrelid AND a1.attnum = i.indkey[0]
LEFT JOIN pg_attribute a2 ON a2.attrelid = i.indrelid AND a2.attnum = i.indkey[1]
WHERE i.indrelid = %s AND i.indisvalid
"""
_HYPERTABLES = """
SELECT hypertable_name FROM timescaledb_information.hypertables
WHERE hypertable_schema = 'public'
"""
_LIVE_TUPLES = """
SELECT coalesce(sum(s.n_live_tup), 0)::bigint FROM pg_stat_user_tables s
WHERE s.relid = %(oid)s OR s.relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = %(oid)s)
"""
TRADE_GAPS_SQL = """
SELECT pair, count(*) FILTER (WHERE step > 1) AS gaps,
       coalesce(sum(step - 1) FILTER (WHERE step > 1), 0)::bigint AS missing
FROM (SELECT pair, trade_id - lag(trade_id) OVER (PARTITION BY pair ORDER BY trade_id) AS step
      FROM trade_data WHERE "timestamp" >= %(since)s AND trade_id IS NOT NULL) AS steps
GROUP BY pair ORDER BY pair
"""
"""Holes in each pair's ``trade_id`` sequence since ``%(since)s``, as :class:`PairGaps`
rows (run by the monitor here, and by the API as its ``trade_gaps`` query)."""


def _has_timescale(conn: Conn) -> bool:
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None


def discover(conn: Conn) -> list[Table]:
    """The tables of the ``public`` schema, and how to find each one's newest row."""
    hypertables = {str(r[0]) for r in conn.execute(_HYPERTABLES)} if _has_timescale(conn) else set()
    tables = []
    for oid, name, timed in conn.execute(
        _TABLES, {"time": TIME_COLUMN, "skip": MIGRATIONS_TABLE}
    ).fetchall():
        strategy: Strategy | None = None
        key: str | None = None
        if timed:
            heads = conn.execute(_INDEX_HEADS, (oid,)).fetchall()
            if any(first == TIME_COLUMN for first, _second in heads):
                strategy = "direct"
            elif keyed := [str(first) for first, second in heads if second == TIME_COLUMN]:
                strategy, key = "per-key", keyed[0]
            else:
                strategy = "scan"
        tables.append(Table(str(name), str(name) in hypertables, strategy, key))
    return tables


def _newest_query(table: Table) -> sql.Composed:
    t, ts = sql.Identifier(table.name), sql.Identifier(TIME_COLUMN)
    if table.time_strategy != "per-key":
        return sql.SQL("SELECT max({ts}) FROM {t}").format(ts=ts, t=t)
    assert table.key is not None
    k = sql.Identifier(table.key)
    return sql.SQL(
        "WITH RECURSIVE keys AS ("
        " (SELECT {k} AS v FROM {t} ORDER BY {k} LIMIT 1)"
        " UNION ALL"
        " SELECT (SELECT {k} FROM {t} WHERE {k} > keys.v ORDER BY {k} LIMIT 1)"
        " FROM keys WHERE keys.v IS NOT NULL)"
        " SELECT max((SELECT {ts} FROM {t} WHERE {k} = keys.v ORDER BY {ts} DESC LIMIT 1))"
        " FROM keys WHERE keys.v IS NOT NULL"
    ).format(k=k, t=t, ts=ts)


def _estimate(conn: Conn, table: Table, oid: int) -> int:
    if table.hypertable:
        row = conn.execute("SELECT approximate_row_count(%s::regclass)", (table.name,)).fetchone()
    else:
        row = conn.execute(_LIVE_TUPLES, {"oid": oid}).fetchone()
    return max(0, int(row[0])) if row is not None and row[0] is not None else 0


def table_states(
    conn: Conn,
    exact_max: int,
    tables: Sequence[Table] | None = None,
) -> list[TableState]:
    """Rows and newest row of each table (``tables``: default, :func:`discover`'s)."""
    tables = discover(conn) if tables is None else tables
    out = []
    for table in tables:
        oid_row = conn.execute("SELECT %s::regclass::oid", (table.name,)).fetchone()
        assert oid_row is not None
        estimate = _estimate(conn, table, oid_row[0])
        estimated = estimate > exact_max
        if estimated:
            rows = estimate
        else:
            counted = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name))
            ).fetchone()
            rows = int(counted[0]) if counted is not None else 0
        newest: datetime | None = None
        if table.time_strategy is not None and rows:
            found = conn.execute(_newest_query(table)).fetchone()
            value = found[0] if found is not None else None
            newest = value if isinstance(value, datetime) else None
        out.append(TableState(table.name, rows, estimated, newest, table.time_strategy is not None))
    return out


def trade_gaps(conn: Conn, since: datetime) -> list[PairGaps]:
    """Holes in each pair's ``trade_id`` sequence among its trades since ``since``
    (every pair with a numbered trade there, holes or not)."""
    with conn.cursor(row_factory=class_row(PairGaps)) as cur:
        return cur.execute(TRADE_GAPS_SQL, {"since": since}).fetchall()
