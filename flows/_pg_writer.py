"""Idempotent batch writes of parsed records into PostgreSQL/TimescaleDB.

Exceptions::

    IngestError                 root (a handlers.CryptoVizError), carries ``detail``
    └── DatabaseUnavailable     nothing committed; ``retry_after``: the least wait before a retry

Write path for one batch, all in one transaction:

1. *Optimistic COPY* straight into the table when its primary key is the whole
   idempotency key. This is the common case and as fast as a raw COPY.
2. If that hits a unique violation (a redelivered or replayed message), COPY the
   batch into a temporary staging table and ``INSERT ... SELECT ... ON CONFLICT
   DO NOTHING``: rows already present count as duplicates.
3. If the database refuses a row for a data reason (a constraint or trigger the
   handlers did not foresee: SQLSTATE classes 22 and 23, or a trigger's ``RAISE
   EXCEPTION``), on either path, insert row by row under savepoints and report the
   refused rows with the database's reason, so the caller can dead-letter them
   instead of retrying a poisoned batch forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from flows._copy import encode_columns, kafka_times
from flows._tables import TableSpec, rows_for
from handlers import CryptoVizError, Record


class IngestError(CryptoVizError):
    """Root of the ingestion errors; ``detail`` is a human-readable reason."""


class DatabaseUnavailable(IngestError):
    """The database could not be reached; nothing of the batch was committed.

    ``retry_after``: the least time to wait before trying again, in seconds. 0 when
    nothing says (the server is unreachable: the caller's backoff decides); more when
    the server itself answered that it cannot take the work now (starting up, shutting
    down, too many connections), so retrying sooner would only add to its load.
    """

    def __init__(self, detail: str, retry_after: float = 0.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@dataclass(slots=True)
class WriteResult:
    inserted: int
    duplicates: int
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(index in the batch, database's reason) for rows the database refused."""


_CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
_REFUSALS = (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.RaiseException)
"""The row's fault, not the system's: that row is refused, the rest of the batch commits."""
_SERVER_BUSY = frozenset({"57P01", "57P02", "57P03", "53300"})
"""admin/crash shutdown, cannot connect now (starting up, recovering), too many connections."""
SERVER_BUSY_RETRY_S = 1.0


def _unavailable(detail: str, exc: Exception) -> DatabaseUnavailable:
    busy = getattr(exc, "sqlstate", None) in _SERVER_BUSY
    return DatabaseUnavailable(f"{detail}: {exc}", SERVER_BUSY_RETRY_S if busy else 0.0)


Row = tuple[Any, ...]
KAFKA_TIME = "kafka_time"
"""Column every raw table has for the message's Kafka timestamp (migration 0005)."""


class _Batch:
    """The rows of one write and their Kafka times, encoded for COPY once, on first use."""

    __slots__ = ("_encoded", "_rows", "_stamps", "_text")

    def __init__(self, rows: list[Row], kafka_ms: Sequence[int | None] | None) -> None:
        self._rows = rows
        self._stamps = kafka_times(kafka_ms) if kafka_ms is not None else [None] * len(rows)
        self._text: bytes | None = None
        self._encoded = False

    def copy_text(self) -> bytes | None:
        if not self._encoded:
            self._text = encode_columns([*zip(*self._rows, strict=True), self._stamps])
            self._encoded = True
        return self._text

    def full_rows(self) -> list[Row]:
        return [(*row, t) for row, t in zip(self._rows, self._stamps, strict=True)]


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
        # VALUES straight into the table: each value takes its column's type (a SELECT
        # over VALUES would type a Python list as text, not as the text[] column).
        self._insert_one = sql.SQL(
            "INSERT INTO {t} ({c}) VALUES ({p}) ON CONFLICT DO NOTHING"
        ).format(t=table, c=cols, p=placeholders)
        self._exists_one: sql.Composed | None = None
        self._dedup_index: tuple[int, ...] = ()
        if spec.dedup_on is None:
            self._merge = sql.SQL(
                "INSERT INTO {t} ({c}) SELECT {c} FROM {s} ON CONFLICT DO NOTHING"
            ).format(t=table, c=cols, s=stage)
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
            self._exists_one = sql.SQL("SELECT 1 FROM {t} WHERE {same}").format(
                t=table,
                same=sql.SQL(" AND ").join(
                    sql.SQL("{k} = {p}").format(k=sql.Identifier(k), p=sql.Placeholder())
                    for k in spec.dedup_on
                ),
            )
            self._dedup_index = tuple(columns.index(k) for k in spec.dedup_on)

    # -- connection -------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            # Autocommit: the common write is one COPY, a transaction of its own, so it
            # needs neither BEGIN nor COMMIT (two round trips to a server that, on a
            # busy machine, must first be scheduled: 20-25 % of the writer's time was
            # spent waiting on them). Every write of several statements opens its own
            # transaction (``conn.transaction()``).
            self._conn = psycopg.connect(
                self._conninfo, connect_timeout=int(self._connect_timeout), autocommit=True
            )
        except _CONNECTION_ERRORS as exc:
            raise _unavailable("cannot connect to the database", exc) from exc
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
        self, records: Sequence[Record], kafka_ms: Sequence[int | None] | None = None
    ) -> WriteResult:
        """Write ``records`` (with each one's Kafka timestamp in ms, when known).

        Raises :class:`DatabaseUnavailable` if nothing could be committed.
        """
        if not records:
            return WriteResult(0, 0)
        batch = _Batch(rows_for(self._spec, records), kafka_ms)
        conn = self._connection()
        try:
            if self._spec.optimistic_copy:
                try:
                    with conn.cursor() as cur:  # one statement: atomic by itself
                        self._copy_into(cur, self._copy, batch)
                    return WriteResult(len(records), 0)
                except psycopg.errors.UniqueViolation:
                    pass  # some rows are already there: take the idempotent path
                except _REFUSALS:
                    return self._row_by_row(conn, batch.full_rows())
            try:
                inserted = self._merge_via_stage(conn, batch)
                return WriteResult(inserted, len(records) - inserted)
            except _REFUSALS:
                return self._row_by_row(conn, batch.full_rows())
        except _CONNECTION_ERRORS as exc:
            self._drop()
            raise _unavailable("database connection lost", exc) from exc

    @staticmethod
    def _copy_into(cur: psycopg.Cursor[Any], statement: sql.Composed, batch: _Batch) -> None:
        data = batch.copy_text()
        with cur.copy(statement) as copy:
            if data is not None:
                copy.write(data)
            else:  # a value the encoder leaves to psycopg (an array...): row by row
                for row in batch.full_rows():
                    copy.write_row(row)

    def _merge_via_stage(self, conn: psycopg.Connection[Any], batch: _Batch) -> int:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(self._create_stage)
            self._copy_into(cur, self._copy_stage, batch)
            cur.execute(self._merge)
            return max(cur.rowcount, 0)

    def _row_by_row(self, conn: psycopg.Connection[Any], rows: list[Row]) -> WriteResult:
        inserted = 0
        refused: list[tuple[int, str]] = []
        with conn.transaction(), conn.cursor() as cur:
            for index, row in enumerate(rows):
                if self._exists_one is not None:
                    cur.execute(self._exists_one, [row[i] for i in self._dedup_index])
                    if cur.fetchone() is not None:
                        continue  # already stored (a duplicate)
                try:
                    with conn.transaction():  # a savepoint per row
                        cur.execute(self._insert_one, row)
                        inserted += max(cur.rowcount, 0)
                except _REFUSALS as exc:
                    refused.append((index, f"database refused row: {exc.sqlstate} {exc}"))
        duplicates = len(rows) - inserted - len(refused)
        return WriteResult(inserted, duplicates, refused)
