"""Candles equal an independent Python computation, from raw ticks and from the hourly
aggregate, across pages and gaps."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from api.candle_cache import CandleCache
from api.models import Candle
from tests.api import seed
from tests.api.conftest import NOW, AppFactory, test_api_settings

Conn = psycopg.Connection[tuple[Any, ...]]
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
WIDTHS = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}
START = NOW - timedelta(days=3)
GAP = (NOW - timedelta(hours=40), NOW - timedelta(hours=30))

Tick = tuple[datetime, Decimal]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _series(rng: random.Random, step_max: int) -> Iterator[tuple[datetime, Decimal]]:
    ts = START
    price = Decimal("42000.00")
    while ts < NOW:
        ts += timedelta(seconds=rng.randint(1, step_max), microseconds=rng.randint(0, 999_999))
        if GAP[0] <= ts < GAP[1]:
            continue
        price += Decimal(rng.randint(-500, 500)) / 100
        yield ts, price


@pytest.fixture(scope="module")
def market_data() -> tuple[list[Tick], list[Tick]]:
    rng = random.Random(42)
    ticks = list(_series(rng, 90))
    trades = [(ts, Decimal(rng.randint(1, 10_000)) / 1000) for ts, _ in _series(rng, 200)]
    return ticks, trades


@pytest.fixture
def seeded(db: Conn, market_data: tuple[list[Tick], list[Tick]]) -> tuple[list[Tick], list[Tick]]:
    ticks, trades = market_data
    seed.tickers(db, [(ts, "BTC/USD", price) for ts, price in ticks])
    seed.tickers(db, [(ts, "ETH/USD", price / 10) for ts, price in ticks[::7]])
    seed.trades(db, [(ts, "BTC/USD", 1, v, "b", None, f"t{i}") for i, (ts, v) in enumerate(trades)])
    return ticks, trades


def expected_candles(
    ticks: list[Tick], trades: list[Tick], width: timedelta, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Candles by hand: whole buckets overlapping [start, end], newest first."""

    def bucket(ts: datetime) -> datetime:
        return ORIGIN + ((ts - ORIGIN) // width) * width

    lo, hi = bucket(start), bucket(end) + width
    grouped: dict[datetime, list[Tick]] = defaultdict(list)
    for ts, price in ticks:
        if lo <= ts < hi:
            grouped[bucket(ts)].append((ts, price))
    volume: dict[datetime, list[Decimal]] = defaultdict(list)
    for ts, v in trades:
        volume[bucket(ts)].append(v)
    out = []
    for b in sorted(grouped, reverse=True):
        rows = sorted(grouped[b])
        prices = [p for _, p in rows]
        out.append(
            {
                "timestamp": iso(b),
                "open": float(rows[0][1]),
                "high": float(max(prices)),
                "low": float(min(prices)),
                "close": float(rows[-1][1]),
                "volume": float(sum(volume[b], Decimal(0))),
                "trade_count": len(volume[b]),
                "tick_count": len(rows),
            }
        )
    return out


def fetch_all(client: TestClient[Litestar], url: str) -> tuple[list[dict[str, Any]], set[str]]:
    data: list[dict[str, Any]] = []
    sources: set[str] = set()
    next_url: str | None = url
    while next_url:
        r = client.get(next_url)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["pair"] == "BTC/USD"
        data += body["data"]
        sources.add(r.headers["X-Candle-Source"])
        next_url = body["next_url"]
    return data, sources


@pytest.mark.parametrize("interval", list(WIDTHS))
def test_candles_equal_an_independent_computation(
    app_factory: AppFactory, seeded: tuple[list[Tick], list[Tick]], interval: str
) -> None:
    ticks, trades = seeded
    # Both ends fall inside buckets: those buckets are served whole.
    start = START + timedelta(minutes=17, seconds=33)
    end = NOW - timedelta(minutes=7, seconds=5)
    expected = expected_candles(ticks, trades, WIDTHS[interval], start, end)
    url = (
        f"/api/v1/candles/XBT/USD/?interval={interval}&date_debut={iso(start)}"
        f"&date_fin={iso(end)}&limit=700"
    )
    sources = ["raw", "aggregate"] if WIDTHS[interval] >= timedelta(hours=1) else ["raw"]
    for source in sources:
        app = app_factory(test_api_settings(candle_source=source))
        with TestClient(app) as client:
            got, served_by = fetch_all(client, url)
        assert got == expected, (interval, source)
        relation = "ticker_ohlc_hourly" if source == "aggregate" else "ticker_data"
        assert served_by == {relation}


def test_candles_pages_skip_gaps_and_open_ranges_work(
    client: TestClient[Litestar], seeded: tuple[list[Tick], list[Tick]]
) -> None:
    ticks, trades = seeded
    width = WIDTHS["1m"]
    # Open range: everything from START on, including the last ticks just past NOW.
    expected = expected_candles(ticks, trades, width, START, NOW + timedelta(days=1))
    # A 10-hour gap holds no candle: a page that reaches it continues past it.
    got, _ = fetch_all(
        client, f"/api/v1/candles/BTC/USD/?interval=1m&date_debut={iso(START)}&limit=1000"
    )
    assert got == expected
    latest = client.get("/api/v1/candles/BTC/USD/?interval=1h&periode=6h").json()
    assert latest["data"] == expected_candles(
        ticks, trades, WIDTHS["1h"], NOW - timedelta(hours=6), NOW
    )
    assert latest["interval"] == "1h"


def test_candles_default_interval_and_live(client: TestClient[Litestar]) -> None:
    body = client.get("/api/v1/candles/BTC/USD/").json()
    assert body == {
        "pair": "BTC/USD",
        "interval": "1h",
        "count": 0,
        "data": [],
        "limit": 100,
        "next": None,
        "next_url": None,
        "date_debut": iso(NOW - timedelta(hours=24)),
        "date_fin": iso(NOW),
    }
    live = client.get("/api/v1/candles/BTC/USD/?periode=live").json()
    assert live["websocket"].endswith("/ws/ticker/BTC/USD/")


def test_completed_candles_are_cached_and_recent_ones_are_not(
    app_factory: AppFactory, db: Conn
) -> None:
    old, recent = NOW - timedelta(hours=5), NOW - timedelta(seconds=20)
    seed.tickers(db, [(old, "BTC/USD", 100), (recent, "BTC/USD", 200)])
    url = "/api/v1/candles/BTC/USD/?interval=1h&periode=24h"
    with (
        TestClient(app_factory()) as cached,
        TestClient(app_factory(test_api_settings(candle_cache_s=0))) as uncached,
    ):
        assert [c["close"] for c in cached.get(url).json()["data"]] == [200.0, 100.0]
        # A late tick in an old bucket and a new tick in the current bucket.
        seed.tickers(db, [(old + timedelta(minutes=1), "BTC/USD", 150), (NOW, "BTC/USD", 300)])
        # Buckets that ended less than a minute ago (11:00-12:00 here) and the current
        # one are always fresh; older ones are served from the cache...
        assert [c["close"] for c in cached.get(url).json()["data"]] == [300.0, 200.0, 100.0]
        # ...until the cache expires (bounded staleness); without a cache, at once.
        assert [c["close"] for c in uncached.get(url).json()["data"]] == [300.0, 200.0, 150.0]


def test_cache_computes_once_for_concurrent_requests() -> None:
    calls = 0
    row = Candle(
        timestamp=NOW, open=1.0, high=1.0, low=1.0, close=1.0, volume=0.0, trade_count=0,
        tick_count=1,
    )  # fmt: skip

    async def compute() -> list[Candle]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return [row]

    async def scenario() -> None:
        cache = CandleCache(ttl_s=60)
        results = await asyncio.gather(*(cache.get("k", compute) for _ in range(10)))
        assert calls == 1
        assert all(r == [row] for r in results)
        assert await cache.get("k", compute) == [row]
        assert calls == 1
        assert await CandleCache(ttl_s=0).get("k", compute) == [row]
        assert calls == 2

    asyncio.run(scenario())
