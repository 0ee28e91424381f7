"""infra.timescale_pglite: clear errors when it cannot start, and a clean stop."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from infra import timescale_pglite
from infra.timescale_pglite import PGliteUnavailableError, TimescalePGlite


def test_missing_node_modules_says_to_run_npm_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(timescale_pglite, "PGLITE_DIR", tmp_path)
    monkeypatch.setattr("shutil.which", lambda _name: "/usr/bin/node")
    with pytest.raises(PGliteUnavailableError, match=r"run `npm ci --prefix infra/pglite`"):
        TimescalePGlite().start()


def test_missing_node_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _name: None)
    with pytest.raises(PGliteUnavailableError, match=r"node is not on PATH"):
        TimescalePGlite().start()


def test_conninfo_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = TimescalePGlite().conninfo


@pytest.mark.timescale
def test_start_serves_timescaledb_and_stop_frees_the_port(tmp_path: Path) -> None:
    log = tmp_path / "pglite.log"
    with TimescalePGlite(log_path=log) as server:
        started = server.running
        assert started
        port = server.port
        assert port is not None
        with psycopg.connect(server.conninfo) as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()
            assert row == (1,)
    assert not server.running
    assert "ready on 127.0.0.1:" in log.read_text()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.timescale
def test_port_in_use_is_reported(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = TimescalePGlite(port=port, log_path=tmp_path / "pglite.log")
        with pytest.raises(PGliteUnavailableError, match="EADDRINUSE"):
            server.start()
        assert not server.running


@pytest.mark.timescale
def test_a_client_leaves_nothing_in_the_session_for_the_next(pglite_url: str) -> None:
    # PGlite is ONE session, lent to one client at a time (infra/pglite/server.mjs).
    # psycopg names prepared statements _pg3_0, _pg3_1, ... afresh per connection; its
    # executemany prepares at once, so a second client's failed with
    # DuplicatePreparedStatement while the first one's statement outlived it.
    insert = "INSERT INTO left_behind VALUES (%s)"
    first = psycopg.connect(pglite_url, autocommit=True)
    first.execute("CREATE TEMP TABLE left_behind (n int)")
    first.cursor().executemany(insert, [(1,), (2,)])
    first.execute("BEGIN")
    first.execute("INSERT INTO left_behind VALUES (3)")
    first.close()  # mid-transaction: close() neither commits nor rolls back
    with psycopg.connect(pglite_url, autocommit=True) as second:
        prepared = second.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
        assert prepared == (0,)
        assert second.execute("SELECT to_regclass('pg_temp.left_behind')").fetchone() == (None,)
        second.execute("CREATE TEMP TABLE left_behind (n int)")
        second.cursor().executemany(insert, [(4,), (5,)])
        assert second.execute("SELECT sum(n) FROM left_behind").fetchone() == (9,)
        second.execute("DROP TABLE left_behind")
