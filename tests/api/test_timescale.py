"""The TimescaleDB branch, for real (TimescaleDB in PGlite): time_bucket/first/last and
candles from the ticker_ohlc_hourly continuous aggregate give the same answers.

PGlite serves one connection at a time: the app's pool holds exactly one, and the
test's own connections are closed before an app starts.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from opentelemetry.sdk.trace import TracerProvider

from api import create_app
from infra.migrate import migrate
from infra.settings import KafkaSettings, Settings
from infra.timescale_pglite import PGliteUnavailableError, TimescalePGlite
from tests.api.conftest import NOW, test_api_settings
from tests.api.test_candles import WIDTHS, Tick, expected_candles, fetch_all, iso

pytestmark = pytest.mark.timescale

START = NOW - timedelta(days=2)


@pytest.fixture(scope="module")
def timescale(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, list[Tick], list[Tick]]]:
    server = TimescalePGlite(log_path=Path(tmp_path_factory.mktemp("pglite")) / "server.log")
    try:
        url = server.start()
    except PGliteUnavailableError as exc:
        pytest.fail(f"TimescaleDB on PGlite is unavailable: {exc}", pytrace=False)
    try:
        assert migrate(url).flavour == "timescale"
        rng = random.Random(7)
        ticks: list[Tick] = []
        ts, price = START, Decimal("42000.00")
        while ts < NOW - timedelta(minutes=1):
            ts += timedelta(seconds=rng.randint(60, 900), microseconds=rng.randint(0, 999_999))
            price += Decimal(rng.randint(-900, 900)) / 100
            ticks.append((ts, price))
        trades = [(t, Decimal(rng.randint(1, 999)) / 100) for t, _ in ticks[::3]]
        # No COPY on PGlite, and no pipeline mode (executemany): one INSERT per table,
        # the rows passed as arrays.
        rows = [(t, "BTC/USD", p) for t, p in ticks] + [(t, "ETH/USD", p) for t, p in ticks[::5]]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO ticker_data (timestamp, pair, last) "
                "SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::numeric[])",
                ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
            )
            conn.execute(
                "INSERT INTO trade_data (timestamp, pair, price, volume, side, trade_key) "
                "SELECT t, 'BTC/USD', 1, v, 'b', k "
                "FROM unnest(%s::timestamptz[], %s::numeric[], %s::text[]) AS x(t, v, k)",
                (
                    [t for t, _ in trades],
                    [v for _, v in trades],
                    [f"k{i}" for i in range(len(trades))],
                ),
            )
        yield url, ticks, trades
    finally:
        server.stop()


@contextmanager
def api_client(stack: Settings, url: str) -> Iterator[TestClient[Litestar]]:
    settings = msgspec.structs.replace(stack, kafka=KafkaSettings()).with_servers(database=url)
    api = test_api_settings(pool_min=1, pool_max=1, pool_timeout_s=10.0)
    app = create_app(settings, api, tracer_provider=TracerProvider(), clock=lambda: NOW)
    with TestClient(app) as client:
        yield client
    # PGlite is one session for all its clients: statements psycopg prepared on the
    # app's connection would clash with the next connection's.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DEALLOCATE ALL")


def _check_candles(client: TestClient[Litestar], ticks: list[Tick], trades: list[Tick]) -> None:
    start, end = START + timedelta(minutes=7), NOW - timedelta(minutes=3)
    for interval in ("15m", "1h", "4h", "1d"):
        url = (
            f"/api/v1/candles/BTC/USD/?interval={interval}&date_debut={iso(start)}"
            f"&date_fin={iso(end)}&limit=100"
        )
        got, sources = fetch_all(client, url)
        assert got == expected_candles(ticks, trades, WIDTHS[interval], start, end), interval
        # On TimescaleDB, whole-hour candles come from the continuous aggregate.
        hourly = WIDTHS[interval] >= timedelta(hours=1)
        assert sources == {"ticker_ohlc_hourly" if hourly else "ticker_data"}


def test_candles_from_the_continuous_aggregate(
    stack: Settings, timescale: tuple[str, list[Tick], list[Tick]]
) -> None:
    url, ticks, trades = timescale
    # Nothing materialized yet: real-time aggregation answers from the raw rows.
    with api_client(stack, url) as client:
        _check_candles(client, ticks, trades)
    with psycopg.connect(url, autocommit=True) as conn:
        for view in ("ticker_ohlc_hourly", "trade_volume_hourly"):
            conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
    # Materialized: the same candles.
    with api_client(stack, url) as client:
        _check_candles(client, ticks, trades)


def test_history_and_latest_price_on_timescale(
    stack: Settings, timescale: tuple[str, list[Tick], list[Tick]]
) -> None:
    url, ticks, _ = timescale
    with api_client(stack, url) as client:
        body: dict[str, Any] = client.get(
            "/api/v1/ticker/XBT/USD/historique/?periode=6h&limit=5"
        ).json()
        recent = sorted((t for t in ticks if NOW - timedelta(hours=6) <= t[0] <= NOW), reverse=True)
        assert [r["last"] for r in body["data"]] == [float(p) for _, p in recent[:5]]
        assert body["next"] is not None
        latest = client.get("/api/v1/prix/BTC/temps_reel/").json()
        assert latest["price"] == float(ticks[-1][1])
        assert latest["change_24h_source"] == "computed"
