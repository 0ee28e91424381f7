"""The database pool: opened in the app's lifespan, traced, failing fast when down.

Every statement is a :class:`Query` constant (fixed SQL text, values only as
parameters) that names its row type: rows come back as instances of it, built by
column name (:func:`struct_row`), so a SELECT list's aliases are the row type's
fields. Outages become :class:`~api.errors.Unavailable` (503) within the
pool timeout: the pool is opened without waiting, so the app starts (and
``health/`` reports) while the database is down, and it reconnects by itself.
"""

from __future__ import annotations

import dataclasses
import keyword
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, Final, Generic, TypeVar

import msgspec
import psycopg
from opentelemetry.trace import SpanKind
from psycopg import AsyncConnection
from psycopg.adapt import Loader
from psycopg.rows import BaseRowFactory, RowMaker
from psycopg.types.numeric import FloatLoader, Int8BinaryLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.errors import Unavailable
from api.settings import ApiSettings
from api.telemetry import Telemetry
from handlers._generated import generated
from infra.migrate import Flavour

log = logging.getLogger("api.db")

R = TypeVar("R")
Connection = AsyncConnection[Any]

# While the database is known to be down, requests wait only this long for a
# connection (one may just have been re-established) instead of the full timeout.
FAST_FAIL_TIMEOUT_S: Final = 0.25


@dataclass(frozen=True, slots=True)
class Query(Generic[R]):
    """One parameterised statement; ``name`` labels its span and latency metric.

    ``row`` is the type of its rows, built with the columns as keywords: the SELECT
    list's names (aliases where needed) are exactly its fields. ``binary`` asks for
    the results in PostgreSQL's binary format, which loads faster (a timestamptz is
    a number, not text to parse: 0.75 against 1.05 ms of CPU for 1,000 tickers) but
    loads ``numeric`` as ``Decimal``: only for statements casting their ``numeric``
    columns to ``float8``. A row type that is a plain value type (``int``) stands
    for the one column's value itself, no object per row.
    """

    name: str
    operation: str
    table: str
    sql: str
    row: type[R]
    binary: bool = False
    loaders: tuple[tuple[str, type[Loader]], ...] = ()
    """(PostgreSQL type, psycopg loader) pairs this statement's cursor loads otherwise
    than the pool does (:data:`STAMP_LOADERS`)."""


PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
ONE_MICROSECOND: Final = timedelta(microseconds=1)
STAMP_LOADERS: Final[tuple[tuple[str, type[Loader]], ...]] = (("timestamptz", Int8BinaryLoader),)
"""Binary ``timestamptz`` loaded as what PostgreSQL sends, a *stamp*: microseconds
since :data:`PG_EPOCH` as an ``int`` (0.2 ms less CPU per 1,000 than datetimes)."""


def stamp_time(stamp: int) -> datetime:
    """The UTC datetime of a stamp (see :data:`STAMP_LOADERS`), as psycopg loads it."""
    return PG_EPOCH + timedelta(microseconds=stamp)


def time_stamp(moment: datetime) -> int:
    """The stamp of an aware datetime (see :data:`STAMP_LOADERS`)."""
    return (moment - PG_EPOCH) // ONE_MICROSECOND


class One(msgspec.Struct, Generic[R], frozen=True):
    """The row of a statement returning one column, named ``value``."""

    value: R


def struct_row(row: type[R]) -> BaseRowFactory[R]:
    """A row factory building ``row`` with each column passed by its name.

    psycopg's ``class_row`` does the same with ``row(**dict(zip(names, values)))``,
    which costs about eight times as much per row as a keyword call spelt out
    (2.2 ms against 0.27 ms of CPU for a page of 1,000 tickers): the call is
    generated once per row type and SELECT list (see :mod:`handlers._generated`).
    """

    def factory(cursor: Any) -> RowMaker[R]:
        names = tuple(column.name for column in cursor.description or ())
        make: RowMaker[R] | None = _ROW_MAKERS.get((row, names))
        if make is None:
            make = _ROW_MAKERS[row, names] = _row_maker(row, names)
        return make

    return factory


_ROW_MAKERS: dict[tuple[object, tuple[str, ...]], Any] = {}


def _row_maker(row: type[R], names: tuple[str, ...]) -> RowMaker[R]:
    if _is_value_type(row):
        if len(names) != 1:
            raise ValueError(f"a {row.__name__} row is one column, not {len(names)}")
        value: RowMaker[R] = itemgetter(0)
        return value
    for name in names:
        # Column names come from the Query's fixed SQL text; one that is no
        # keyword argument is a statement to alias, not something to compile.
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"column {name!r} cannot be passed by name: alias it")
    if getattr(row, "__match_args__", None) == names:
        # The columns are the row type's positional fields, in order: a positional
        # call, a third cheaper than the keyword one (TickerPoint, 1,000-row pages).
        call = "row(*values)"
    else:
        call = f"row({', '.join(f'{name}=values[{i}]' for i, name in enumerate(names))})"
    make: Callable[[Sequence[Any]], R] = generated("make_row", "values", call, {"row": row})
    return make


def _is_value_type(row: object) -> bool:
    """A plain class (``int``...): not a Struct, a Struct's alias (``One[int]``, no
    class) or a dataclass, whose rows are built from the columns by name."""
    return (
        isinstance(row, type)
        and not issubclass(row, msgspec.Struct)
        and not dataclasses.is_dataclass(row)
    )


class Database:
    """Async connection pool plus the one way the API runs statements."""

    def __init__(self, url: str, settings: ApiSettings, telemetry: Telemetry) -> None:
        self._settings = settings
        self._telemetry = telemetry
        # Outcome of the latest connection attempt or query: optimistic until one fails.
        self._healthy = True
        self.flavour: Flavour | None = None
        self.name = psycopg.conninfo.conninfo_to_dict(url).get("dbname") or "postgres"
        self.pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            timeout=settings.pool_timeout_s,
            # Give up reconnecting quickly: the next request then triggers a fresh
            # attempt, so recovery after a long outage is not stuck in a long backoff.
            reconnect_timeout=settings.pool_reconnect_timeout_s,
            reconnect_failed=self._reconnect_failed,
            open=False,
            configure=self._configure,
            kwargs={
                "autocommit": True,
                "connect_timeout": max(2, int(settings.pool_timeout_s)),
                "application_name": settings.service_name,
                # UTC sessions: every timestamptz comes back as an aware UTC datetime.
                "options": f"-c statement_timeout={settings.statement_timeout_ms} -c TimeZone=UTC",
            },
            name="cryptoviz-api",
            connection_class=self._tracked_connection_class(),
        )
        telemetry.watch_pool(self.pool.get_stats)

    async def open(self) -> None:
        # wait=False: a database that is down at startup must not stop the API.
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close(timeout=5.0)

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        # Prices are numeric; JSON clients want numbers, and float keeps every digit
        # a market price has (far below float's 15 significant digits).
        conn.adapters.register_loader("numeric", FloatLoader)
        if self.flavour is None:
            cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
            self.flavour = "timescale" if await cur.fetchone() else "plain"
        self._healthy = True

    async def _reconnect_failed(self, _: AsyncConnectionPool[Any]) -> None:
        self._healthy = False

    def _tracked_connection_class(self) -> type[Connection]:
        """A connection class recording failed connection attempts: the pool retries them
        in the background, and meanwhile requests should fail fast, not wait in line."""
        database = self

        class TrackedConnection(AsyncConnection[Any]):
            @classmethod
            async def connect(cls, conninfo: str = "", **kwargs: Any) -> TrackedConnection:
                try:
                    return await super().connect(conninfo, **kwargs)
                except psycopg.OperationalError:
                    database._healthy = False
                    raise

        return TrackedConnection

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; an outage raises :class:`Unavailable` quickly."""
        timeout = self._settings.pool_timeout_s if self._healthy else FAST_FAIL_TIMEOUT_S
        try:
            async with self.pool.connection(timeout=timeout) as conn:
                self._healthy = True
                yield conn
        except PoolTimeout:
            self._telemetry.db_errors.labels("unavailable").inc()
            raise Unavailable(
                "the database is unavailable; retry shortly", headers={"Retry-After": "1"}
            ) from None
        except psycopg.errors.QueryCanceled:
            self._telemetry.db_errors.labels("timeout").inc()
            raise Unavailable(
                "the database did not answer in time; retry shortly or narrow the request",
                headers={"Retry-After": "1"},
            ) from None
        except psycopg.OperationalError:
            self._healthy = False
            self._telemetry.db_errors.labels("unavailable").inc()
            raise Unavailable(
                "the database connection failed; retry shortly", headers={"Retry-After": "1"}
            ) from None

    async def fetch(
        self,
        query: Query[R],
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        conn: Connection | None = None,
    ) -> list[R]:
        """All rows of ``query``; on ``conn`` when given (e.g. inside a transaction)."""
        if conn is not None:
            return await self._run(conn, query, params)
        async with self.connection() as pooled:
            return await self._run(pooled, query, params)

    async def fetch_one(
        self,
        query: Query[R],
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        conn: Connection | None = None,
    ) -> R | None:
        rows = await self.fetch(query, params, conn)
        return rows[0] if rows else None

    async def _run(
        self,
        conn: Connection,
        query: Query[R],
        params: Mapping[str, Any] | Sequence[Any] | None,
    ) -> list[R]:
        t = self._telemetry
        with t.tracer.start_as_current_span(
            f"{query.operation} {query.table}",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system.name": "postgresql",
                "db.namespace": self.name,
                "db.operation.name": query.operation,
                "db.collection.name": query.table,
                "db.query.summary": query.name,
                # The parameterised text only: values never reach a span.
                "db.query.text": query.sql,
            },
        ) as span:
            started = time.perf_counter()
            try:
                async with conn.cursor(
                    row_factory=struct_row(query.row), binary=query.binary
                ) as cur:
                    for pg_type, loader in query.loaders:
                        cur.adapters.register_loader(pg_type, loader)
                    await cur.execute(query.sql, params)
                    rows = await cur.fetchall() if cur.description is not None else []
            finally:
                t.db_queries.labels(query.name).observe(time.perf_counter() - started)
            span.set_attribute("db.response.returned_rows", len(rows))
            return rows
