"""The migrations' TimescaleDB flavour, for real, on TimescaleDB 2.23 in PGlite.

One server for the module (PGlite serves ONE connection at a time: every test
closes its connection before the next one opens). Tests run in file order and
share the database; rows of different tests use different pairs.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from infra.migrate import MigrationError, MigrationReport, detect_flavour, load_migrations, migrate
from tests.sql import cases

pytestmark = pytest.mark.timescale

ALL_VERSIONS = tuple(m.version for m in load_migrations())
CAGGS = ("sentiment_hourly", "ticker_ohlc_hourly", "trade_volume_hourly")


@pytest.fixture(scope="module")
def timescale_db(pglite_url: str) -> tuple[str, MigrationReport]:
    with psycopg.connect(pglite_url) as conn:
        assert detect_flavour(conn) == "timescale"
    return pglite_url, migrate(pglite_url)


@pytest.fixture
def url(timescale_db: tuple[str, MigrationReport]) -> str:
    return timescale_db[0]


def test_migrations_apply_timescale_flavour(timescale_db: tuple[str, MigrationReport]) -> None:
    url, report = timescale_db
    assert report.flavour == "timescale"
    assert report.applied_versions == ALL_VERSIONS
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version, flavour FROM schema_migrations ORDER BY 1").fetchall()
        assert rows == [(v, "timescale") for v in ALL_VERSIONS]
        version = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        assert version is not None
        assert str(version[0]).startswith("2.")


def test_rerun_is_idempotent(url: str) -> None:
    assert migrate(url) == MigrationReport("timescale", (), ALL_VERSIONS)
    assert migrate(url, flavour="timescale").applied == ()
    with pytest.raises(MigrationError, match="migrated with the 'timescale' flavour"):
        migrate(url, flavour="plain")


@pytest.mark.parametrize("table", sorted(cases.TABLE_COLUMNS))
def test_same_tables_columns_and_keys_as_plain(url: str, table: str) -> None:
    with psycopg.connect(url) as conn:
        assert cases.table_columns(conn, table) == cases.TABLE_COLUMNS[table]
        assert cases.primary_key(conn, table) == cases.PRIMARY_KEYS[table]


def test_hypertables_and_chunk_intervals(url: str) -> None:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT d.hypertable_name, d.column_name, d.time_interval, h.compression_enabled
               FROM timescaledb_information.dimensions d
               JOIN timescaledb_information.hypertables h USING (hypertable_schema, hypertable_name)
               WHERE d.hypertable_schema = 'public'"""
        ).fetchall()
    day, week = timedelta(days=1), timedelta(days=7)
    assert sorted(rows) == sorted(
        [
            ("ticker_data", "timestamp", day, True),
            ("trade_data", "timestamp", day, True),
            ("article_data", "timestamp", week, True),
            ("alert_data", "timestamp", week, True),
            ("sentiment_data", "timestamp", week, True),
            ("prediction_data", "timestamp", week, True),
        ]
    )


def test_compression_settings(url: str) -> None:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT hypertable::text, segmentby, orderby
               FROM timescaledb_information.hypertable_compression_settings
               WHERE hypertable::text NOT LIKE '\\_timescaledb%'"""
        ).fetchall()
    assert sorted(rows) == sorted(
        [
            ("ticker_data", "pair", '"timestamp" DESC'),
            ("trade_data", "pair", '"timestamp" DESC'),
            ("article_data", "", '"timestamp" DESC'),
            ("alert_data", "pair", '"timestamp" DESC'),
            ("sentiment_data", "crypto_symbol", '"timestamp" DESC'),
            ("prediction_data", "crypto_symbol", '"timestamp" DESC'),
        ]
    )


def test_compression_retention_and_refresh_jobs(url: str) -> None:
    with psycopg.connect(url) as conn:
        jobs = conn.execute(
            """SELECT proc_name, hypertable_name, config
               FROM timescaledb_information.jobs
               WHERE proc_name IN ('policy_compression', 'policy_retention',
                                   'policy_refresh_continuous_aggregate')"""
        ).fetchall()
    by_kind: dict[str, dict[str, dict[str, object]]] = {}
    for proc, table, config in jobs:
        assert isinstance(config, dict)
        by_kind.setdefault(str(proc), {})[str(table)] = config
    tables = set(cases.TIME_SERIES_TABLES)
    assert set(by_kind["policy_compression"]) == tables
    assert {c["compress_after"] for c in by_kind["policy_compression"].values()} == {"7 days"}
    assert set(by_kind["policy_retention"]) == tables
    assert {c["drop_after"] for c in by_kind["policy_retention"].values()} == {"90 days"}
    refresh = by_kind["policy_refresh_continuous_aggregate"]
    assert set(refresh) == set(CAGGS)
    assert {(c["start_offset"], c["end_offset"]) for c in refresh.values()} == {
        ("3 days", "01:00:00")
    }


def test_continuous_aggregates(url: str) -> None:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT view_name, hypertable_name, materialized_only
               FROM timescaledb_information.continuous_aggregates ORDER BY view_name"""
        ).fetchall()
        assert rows == [
            ("sentiment_hourly", "sentiment_data", False),
            ("ticker_ohlc_hourly", "ticker_data", False),
            ("trade_volume_hourly", "trade_data", False),
        ]
        for view, columns in cases.ROLLUP_COLUMNS.items():
            assert [c for c, _, _ in cases.table_columns(conn, view)] == columns


def _watermark(conn: cases.Conn, view: str) -> int:
    """The cagg's materialization watermark (internal microseconds; min int before a refresh)."""
    row = conn.execute(
        """SELECT _timescaledb_functions.cagg_watermark(mat_hypertable_id)
           FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = %s""",
        (view,),
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_rollups_give_the_same_values_as_plain(url: str) -> None:
    # CALL refresh_continuous_aggregate cannot run inside a transaction block.
    with psycopg.connect(url, autocommit=True) as conn:
        cases.insert_known_rows(conn)
        # Nothing materialized yet: real-time aggregation already gives the values.
        cases.assert_rollups_match(conn)
        before = {view: _watermark(conn, view) for view in CAGGS}
        for view in CAGGS:
            conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)".encode())
        after = {view: _watermark(conn, view) for view in CAGGS}
        # Refreshed up to the end of the last bucket: 12:00 on the test day.
        row = conn.execute(
            "SELECT _timescaledb_functions.to_unix_microseconds(%s)", (cases.ts(12),)
        ).fetchone()
        assert row is not None
        assert after == dict.fromkeys(CAGGS, int(str(row[0])))
        assert all(before[view] < after[view] for view in CAGGS)
        # Now served from the materialization: same values.
        cases.assert_rollups_match(conn)
        materialized = conn.execute(
            """SELECT count(*) FROM ticker_ohlc_hourly
               WHERE pair = ANY(%s) AND bucket < %s""",
            (list(cases.TICK_PAIRS), cases.ts(12)),
        ).fetchone()
        assert materialized == (len(cases.EXPECTED_OHLC),)


@pytest.mark.parametrize(("query", "index"), cases.API_QUERIES)
def test_api_queries_use_an_index_without_sort(url: str, query: str, index: str) -> None:
    with psycopg.connect(url) as conn:
        cases.insert_plan_rows(conn)
        plan = cases.explain(conn, query)
    assert "Index" in plan, plan
    assert index in plan, plan
    assert "Sort" not in plan, plan


def test_pk_dedup(url: str) -> None:
    with psycopg.connect(url) as conn:
        cases.assert_pk_dedup(conn)


def test_dedup_into_a_compressed_chunk(url: str) -> None:
    """The ingestion sink's ON CONFLICT DO NOTHING also holds once a chunk is compressed."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO ticker_data (timestamp, pair, last)
               VALUES ('2023-06-01 12:00+00', 'OLD/USD', 7),
                      ('2023-06-01 13:00+00', 'OLD/USD', 8)"""
        )
        compressed = conn.execute(
            """SELECT compress_chunk(c)
               FROM show_chunks('ticker_data', older_than => TIMESTAMPTZ '2023-06-02') c"""
        ).fetchall()
        assert len(compressed) == 1
        conn.execute(
            """INSERT INTO ticker_data (timestamp, pair, last)
               VALUES ('2023-06-01 12:00+00', 'OLD/USD', 99) ON CONFLICT DO NOTHING"""
        )
        rows = conn.execute(
            "SELECT last FROM ticker_data WHERE pair = 'OLD/USD' ORDER BY timestamp"
        ).fetchall()
        assert [r[0] for r in rows] == [7, 8]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                """INSERT INTO ticker_data (timestamp, pair, last)
                   VALUES ('2023-06-01 12:00+00', 'OLD/USD', 99)"""
            )
