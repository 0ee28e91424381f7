"""Migration 0006 on TimescaleDB over a compressed ``prediction_data`` chunk (PGlite).

An installation older than a week has compressed prediction chunks when it
upgrades: the key change (the horizon joins it) must apply over them, and keep
the old rows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from infra.migrate import MIGRATIONS_DIR, migrate

pytestmark = pytest.mark.timescale


def _insert(conn: psycopg.Connection[tuple[object, ...]], price: int, horizon_s: int) -> None:
    conn.execute(
        """INSERT INTO prediction_data (timestamp, crypto_symbol, model_name, predicted_price,
               horizon_s, target_time)
           VALUES ('2023-06-01 12:00+00', 'BTC', 'ewma', %s, %s,
                   TIMESTAMPTZ '2023-06-01 12:00+00' + make_interval(secs => %s))""",
        (price, horizon_s, horizon_s),
    )


def test_forecast_key_change_applies_over_a_compressed_chunk(
    pglite_url: str, tmp_path: Path
) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if int(path.name[:4]) < 6:
            shutil.copy(path, before)
    assert migrate(pglite_url, migrations_dir=before).applied_versions == (1, 2, 3, 4, 5)
    with psycopg.connect(pglite_url, autocommit=True) as conn:
        _insert(conn, 1, 300)
        compressed = conn.execute(
            "SELECT compress_chunk(c) FROM show_chunks('prediction_data') c"
        ).fetchall()
        assert len(compressed) == 1
    shutil.copy(MIGRATIONS_DIR / "0006_forecasts.sql", before)
    assert migrate(pglite_url, migrations_dir=before).applied_versions == (6,)
    with psycopg.connect(pglite_url, autocommit=True) as conn:
        # Same coin, model and time, another horizon: a row of its own now.
        _insert(conn, 2, 60)
        rows = conn.execute(
            "SELECT horizon_s, predicted_price, preferred FROM prediction_data ORDER BY 1"
        ).fetchall()
        assert rows == [(60, 2, False), (300, 1, False)]
        with pytest.raises(psycopg.errors.UniqueViolation):
            _insert(conn, 3, 300)
