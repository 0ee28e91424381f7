"""Idempotent batch writes of parsed records into PostgreSQL/TimescaleDB.

Exceptions::

    IngestError                 root, carries ``detail``
    └── DatabaseUnavailable     the server is unreachable; ``retry_after`` says when to retry

Write path for one batch, all in one transaction:

1. *Optimistic COPY* straight into the table when its primary key is the whole
   idempotency key. This is the common case and as fast as a raw COPY.
2. If that hits a unique violation (a redelivered or replayed message), COPY the
   batch into a temporary staging table and ``INSERT ... SELECT ... ON CONFLICT
   DO NOTHING``: rows already present count as duplicates.
3. If the database refuses a row for a data reason (a constraint the handlers
   did not foresee), insert row by row under savepoints and report the refused
   rows with the database's reason, so the caller can dead-letter them instead of
   retrying a poisoned batch forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from flows._tables import TableSpec, rows_for
from handlers import Record


class IngestError(Exception):
    """Root of the ingestion errors; ``detail`` is a human-readable reason."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class DatabaseUnavailable(IngestError):
    """The database could not be reached; nothing of the batch was committed."""

    def __init__(self, detail: str, retry_after: float = 1.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@dataclass(slots=True)
class WriteResult:
    inserted: int
    duplicates: int
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(index in the batch, database's reason) for rows the database refused."""


_CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
KAFKA_TIME = "kafka_time"
"""Column every raw table has for the message's Kafka timestamp (migration 0005)."""


class BatchWriter:
    """Writes batches of one record type; one connection, reopened after an outage."""

    def __init__(self, conninfo: str, spec: TableSpec, connect_timeout: float = 5.0) -> None:
        self._conninfo = conninfo
        self._spec = spec
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        table = sql.Identifier(spec.table)
        stage = sql.Identifier(f"_stage_{spec.table}")
        columns = (*spec.columns, KAFKA_TIME)
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        self._copy = sql.SQL("COPY {} ({}) FROM STDIN").format(table, cols)
        self._create_stage = sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        ).format(stage, table)
        self._copy_stage = sql.SQL("COPY {} ({}) FROM STDIN").format(stage, cols)
        placeholders = sql.SQL(", ").join(sql.Placeholder() * len(columns))
        if spec.dedup_on is None:
            self._merge = sql.SQL(
                "INSERT INTO {t} ({c}) SELECT {c} FROM {s} ON CONFLICT DO NOTHING"
            ).format(t=table, c=cols, s=stage)
            self._insert_one = sql.SQL(
                "INSERT INTO {t} ({c}) VALUES ({p}) ON CONFLICT DO NOTHING"
            ).format(t=table, c=cols, p=placeholders)
        else:
            keys = sql.SQL(", ").join(map(sql.Identifier, spec.dedup_on))
            same = sql.SQL(" AND ").join(
                sql.SQL("x.{k} = s.{k}").format(k=sql.Identifier(k)) for k in spec.dedup_on
            )
            self._merge = sql.SQL(
                "INSERT INTO {t} ({c}) SELECT DISTINCT ON ({k}) {c} FROM {s} s "
                "WHERE NOT EXISTS (SELECT 1 FROM {t} x WHERE {same}) "
                "ORDER BY {k} ON CONFLICT DO NOTHING"
            ).format(t=table, c=cols, s=stage, k=keys, same=same)
            self._insert_one = sql.SQL(
                "INSERT INTO {t} ({c}) SELECT * FROM (VALUES ({p})) AS s ({c}) "
                "WHERE NOT EXISTS (SELECT 1 FROM {t} x WHERE {same}) ON CONFLICT DO NOTHING"
            ).format(t=table, c=cols, p=placeholders, same=same)

    # -- connection -------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            self._conn = psycopg.connect(
                self._conninfo, connect_timeout=int(self._connect_timeout), autocommit=False
            )
        except _CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    # -- writes -----------------------------------------------------------------------
    def write(
        self, records: Sequence[Record], kafka_times: Sequence[datetime | None] | None = None
    ) -> WriteResult:
        """Write ``records`` (with each one's Kafka append time, when known).

        Raises :class:`DatabaseUnavailable` if nothing could be committed.
        """
        if not records:
            return WriteResult(0, 0)
        times = kafka_times if kafka_times is not None else [None] * len(records)
        rows = [(*row, t) for row, t in zip(rows_for(self._spec, records), times, strict=True)]
        conn = self._connection()
        try:
            if self._spec.optimistic_copy:
                try:
                    with conn.transaction(), conn.cursor() as cur, cur.copy(self._copy) as copy:
                        for row in rows:
                            copy.write_row(row)
                    return WriteResult(len(rows), 0)
                except psycopg.errors.UniqueViolation:
                    pass  # some rows are already there: take the idempotent path
            try:
                inserted = self._merge_via_stage(conn, rows)
                return WriteResult(inserted, len(rows) - inserted)
            except (psycopg.DataError, psycopg.IntegrityError):
                return self._row_by_row(conn, rows)
        except _CONNECTION_ERRORS as exc:
            self._drop()
            raise DatabaseUnavailable(f"database connection lost: {exc}") from exc

    def _merge_via_stage(self, conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> int:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(self._create_stage)
            with cur.copy(self._copy_stage) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(self._merge)
            return max(cur.rowcount, 0)

    def _row_by_row(
        self, conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]
    ) -> WriteResult:
        inserted = 0
        refused: list[tuple[int, str]] = []
        with conn.transaction(), conn.cursor() as cur:
            for index, row in enumerate(rows):
                try:
                    with conn.transaction():  # a savepoint per row
                        cur.execute(self._insert_one, row)
                        inserted += max(cur.rowcount, 0)
                except (psycopg.DataError, psycopg.IntegrityError) as exc:
                    refused.append((index, f"database refused row: {exc.sqlstate} {exc}"))
        duplicates = len(rows) - inserted - len(refused)
        return WriteResult(inserted, duplicates, refused)
