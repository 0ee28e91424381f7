"""The encoded-row cache: its bound, and pages served through it against real PostgreSQL,
byte for byte the pages built without it, as rows arrive, are back-filled and deleted."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry, Counter

from api.context import ApiContext
from api.db import stamp_time
from api.queries import TICKER_PAGE
from api.row_cache import RowCache, array, members
from tests.api import seed
from tests.api.conftest import NOW, AppFactory, test_api_settings

Client = TestClient[Litestar]
Conn = psycopg.Connection[tuple[Any, ...]]


def _raw(i: int) -> bytes:
    return b'"i":%d' % i


def test_the_bound_holds_and_rows_got_recently_stay() -> None:
    cache = RowCache(10)  # two generations of 5
    cache.put("s", {i: _raw(i) for i in range(5)})
    cache.put("s", {5: _raw(5)})  # the young generation was full: it became the old one
    assert cache.get("s", [0]) == [_raw(0)]  # found in the old one: young again
    cache.put("s", {i: _raw(i) for i in range(6, 10)})  # fills the young one, drops 1-4
    assert cache.get("s", list(range(10))) == [
        _raw(0), None, None, None, None, _raw(5), _raw(6), _raw(7), _raw(8), _raw(9),
    ]  # fmt: skip
    for i in range(1000):
        cache.put(("other", i % 3), {i: _raw(i)})
        assert len(cache) <= 10


def test_series_are_apart_and_lookups_are_counted() -> None:
    registry = CollectorRegistry()
    counted = Counter("rows", "rows", ["result"], registry=registry)
    cache = RowCache(100, counted)
    cache.put("a", {1: _raw(1), 2: _raw(2)})
    assert cache.get("b", [1, 2]) == [None, None]
    assert cache.get("a", [2, 3, 1]) == [_raw(2), None, _raw(1)]
    assert registry.get_sample_value("rows_total", {"result": "hit"}) == 2
    assert registry.get_sample_value("rows_total", {"result": "miss"}) == 3
    assert RowCache(100).enabled
    assert not RowCache(0).enabled


class _Note(msgspec.Struct):
    at: datetime
    text: str | None
    points: list[_Note] | None = None


@pytest.mark.parametrize(
    "points",
    [
        [],
        [_Note(NOW, None)],
        [_Note(NOW + timedelta(seconds=i), f"n{i}") for i in range(50)],
        [_Note(NOW, "a},{b"), _Note(NOW, None)],  # the cut inside a value
        [_Note(NOW, None, [_Note(NOW, "x"), _Note(NOW, "y")]), _Note(NOW, "z")],
    ],
)
def test_members_joined_are_the_encoded_list(points: list[_Note]) -> None:
    cut = members(points)
    assert cut == [msgspec.json.encode(p)[1:-1] for p in points]
    assert array(cut) == msgspec.Raw(msgspec.json.encode(points))


# -- pages through the cache, against pages without it ---------------------------------

H = timedelta(hours=1)

BTC_URLS = (
    "/api/v1/ticker/BTC/USD/historique/?periode=24h&limit=1000",
    "/api/v1/ticker/BTC/USD/historique/",
    "/api/v1/ticker/historique/?pair=XBT/USD&limit=333",
    "/api/v1/ticker/BTC/USD/historique/?periode=7d&limit=97",
    f"/api/v1/ticker/BTC/USD/historique/?date_debut={int((NOW - 30 * H).timestamp())}"
    f"&date_fin={int((NOW - 2 * H).timestamp())}&limit=250",
    "/api/v1/prix/BTC/historique/?periode=24h&limit=1000",
    "/api/v1/prix/BTC/historique/?limit=61",
)
URLS = (*BTC_URLS, "/api/v1/ticker/ETH/USD/historique/?limit=1000")


def _ticks(rng: random.Random, stamps: list[datetime], pair: str) -> list[tuple[Any, ...]]:
    """Rows with every column, some NULL, values with many digits."""
    rows = []
    for ts in stamps:
        price = round(rng.uniform(20000, 90000), rng.choice((1, 2, 5, 8)))
        extra = [round(price * rng.uniform(0.9, 1.1), 6) for _ in range(9)]
        rows.append((ts, pair, price, *(None if rng.random() < 0.2 else v for v in extra)))
    return rows


def _pages(client: Client, url: str) -> Iterator[bytes]:
    """Every page of ``url``'s listing, following ``next_url``."""
    next_url: str | None = url
    while next_url is not None:
        r = client.get(next_url)
        assert r.status_code == 200, r.text
        yield r.content
        next_url = r.json()["next_url"]


def _same_pages(cached: Client, plain: Client) -> int:
    """Walk every listing of URLS on both apps: the same bytes page for page; rows served."""
    rows = 0
    for url in URLS:
        pages = list(_pages(cached, url))
        assert pages == list(_pages(plain, url)), url
        rows += sum(len(msgspec.json.decode(p)["data"]) for p in pages)
    return rows


def _counted(client: Client, result: str) -> float:
    ctx: ApiContext = client.app.state["ctx"]
    value = ctx.telemetry.registry.get_sample_value(
        "cryptoviz_api_row_cache_rows_total", {"result": result}
    )
    return value or 0.0


@pytest.fixture
def clients(app_factory: AppFactory) -> Iterator[tuple[Client, Client]]:
    """An app with the row cache (the default) and one without it, on one database."""
    plain_settings = test_api_settings(row_cache_rows=0)
    with TestClient(app_factory()) as cached, TestClient(app_factory(plain_settings)) as plain:
        yield cached, plain


def test_pages_through_the_cache_are_the_pages_without_it(
    db: Conn, clients: tuple[Client, Client]
) -> None:
    cached, plain = clients
    rng = random.Random(14)
    # 1,400 BTC ticks from 30 h to 1 h ago, 77 s apart; ETH interleaved.
    stamps = [NOW - timedelta(hours=1, seconds=77 * i, microseconds=i) for i in range(1400)]
    seed.tickers(db, _ticks(rng, stamps, "BTC/USD"))
    seed.tickers(db, _ticks(rng, [t - timedelta(seconds=5) for t in stamps], "ETH/USD"))

    served = _same_pages(cached, plain)  # every row read and encoded once
    assert _counted(cached, "miss") > 0
    assert _counted(cached, "hit") + _counted(cached, "miss") == served
    misses = _counted(cached, "miss")
    again = _same_pages(cached, plain)  # all from the cache now
    assert _counted(cached, "miss") == misses
    assert _counted(cached, "hit") + misses == served + again
    assert _counted(plain, "hit") == _counted(plain, "miss") == 0

    # New rows arrive (the newest pages shift), then older rows are back-filled between
    # cached ones inside the windows, then rows are deleted (retention, say).
    newer = [NOW - timedelta(seconds=13 * i + 1) for i in range(200)]
    seed.tickers(db, _ticks(rng, newer, "BTC/USD"))
    _same_pages(cached, plain)
    assert _counted(cached, "miss") == misses + 200 * 2  # ticker and price listings
    between = [t - timedelta(seconds=30) for t in stamps[::5]]
    seed.tickers(db, _ticks(rng, between, "BTC/USD"))
    _same_pages(cached, plain)
    db.execute(
        "DELETE FROM ticker_data WHERE pair = 'BTC/USD' AND timestamp = ANY(%s)",
        (stamps[1::7] + newer[::3],),
    )
    _same_pages(cached, plain)


def test_a_row_deleted_between_the_two_reads_is_not_served(
    db: Conn, clients: tuple[Client, Client]
) -> None:
    cached, plain = clients
    stamps = [NOW - timedelta(minutes=i + 1) for i in range(50)]
    seed.tickers(db, _ticks(random.Random(3), stamps, "BTC/USD"))
    ctx: ApiContext = cached.app.state["ctx"]
    reads = TICKER_PAGE.by_stamp
    assert reads is not None
    fetch = ctx.db.fetch
    deleted: list[datetime] = []

    async def deleting_after_the_stamps(query: Any, params: Any = None, conn: Any = None) -> Any:
        rows = await fetch(query, params, conn)
        if query is reads.stamps and not deleted:
            deleted.append(stamp_time(rows[7]))
            db.execute("DELETE FROM ticker_data WHERE timestamp = %s", (deleted[0],))
        return rows

    ctx.db.fetch = deleting_after_the_stamps  # type: ignore[method-assign]
    url = "/api/v1/ticker/BTC/USD/historique/?limit=1000"
    body = cached.get(url).content
    assert deleted
    assert body == plain.get(url).content
    assert len(msgspec.json.decode(body)["data"]) == 49
