"""History endpoints against a real database: exact bodies, aliases, date forms, paging."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.api import seed
from tests.api.conftest import NOW

Client = TestClient[Litestar]
Conn = psycopg.Connection[tuple[Any, ...]]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


H = timedelta(hours=1)


@pytest.fixture
def market(db: Conn) -> None:
    seed.tickers(
        db,
        [
            (NOW - 2 * H, "BTC/USD", 42000.5, 41999, 42001, 1234.5, 1.5, 2, 41900.25, 41000, 43000,
             1.25),
            (NOW - H, "BTC/USD", 42100),
            (NOW - 30 * H, "BTC/USD", 40000),
            (NOW - H, "ETH/USD", 2500),
        ],
    )  # fmt: skip


def test_ticker_history_exact_body(client: Client, market: None) -> None:
    r = client.get("/api/v1/ticker/BTC/USD/historique/")
    assert r.status_code == 200
    assert r.json() == {
        "pair": "BTC/USD",
        "count": 2,
        "data": [
            {
                "timestamp": iso(NOW - H),
                "last": 42100.0,
                "bid": None,
                "ask": None,
                "volume_24h": None,
                "bid_qty": None,
                "ask_qty": None,
                "vwap": None,
                "low": None,
                "high": None,
                "change_24h_pct": None,
                "pct_change": None,
            },
            {
                "timestamp": iso(NOW - 2 * H),
                "last": 42000.5,
                "bid": 41999.0,
                "ask": 42001.0,
                "volume_24h": 1234.5,
                "bid_qty": 1.5,
                "ask_qty": 2.0,
                "vwap": 41900.25,
                "low": 41000.0,
                "high": 43000.0,
                "change_24h_pct": 1.25,
                "pct_change": None,
            },
        ],
        "limit": 100,
        "next": None,
        "next_url": None,
        "date_debut": iso(NOW - 24 * H),
        "date_fin": iso(NOW),
    }


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/ticker/BTC/USD/historique/",
        "/api/v1/ticker/XBT/USD/historique/",
        "/api/v1/ticker/xbt/zusd/historique/",
        "/api/v1/ticker/bitcoin/usd/historique/",
        "/api/v1/ticker/historique/?pair=XBT/USD",
        "/api/v1/ticker/historique/?pair=btc-usd",
        "/api/v1/ticker/historique/?pair=XBTUSD",
        "/api/v1/ticker/historique/?pair=XXBTZUSD",
    ],
)
def test_pair_aliases_reach_the_same_series(client: Client, market: None, path: str) -> None:
    body = client.get(path).json()
    assert body["pair"] == "BTC/USD"
    assert [row["last"] for row in body["data"]] == [42100.0, 42000.5]


@pytest.mark.parametrize(
    "query",
    [
        # ISO-8601 with Z, with an offset (URL-encoded and, as clients often send it,
        # with the '+' left raw so that it arrives as a space), and Unix epoch seconds.
        "date_debut=2026-01-15T09:00:00Z&date_fin=2026-01-15T10:30:00Z",
        "date_debut=" + quote("2026-01-15T11:00:00+02:00") + "&date_fin=2026-01-15T10:30:00Z",
        "date_debut=2026-01-15T11:00:00+02:00&date_fin=2026-01-15T12:30:00+02:00",
        f"date_debut={int((NOW - 3 * H).timestamp())}&date_fin={int((NOW - 1.5 * H).timestamp())}",
        # periode anchored on one date.
        "periode=1h&date_fin=2026-01-15T10:30:00Z",
        "periode=1h&date_debut=2026-01-15T09:30:00Z",
    ],
)
def test_both_date_forms_select_the_same_rows(client: Client, market: None, query: str) -> None:
    body = client.get(f"/api/v1/ticker/BTC/USD/historique/?{query}").json()
    assert [row["timestamp"] for row in body["data"]] == [iso(NOW - 2 * H)], body


def test_open_ranges(client: Client, market: None) -> None:
    since = client.get(f"/api/v1/ticker/BTC/USD/historique/?date_debut={iso(NOW - 90 * H)}")
    assert [r["last"] for r in since.json()["data"]] == [42100.0, 42000.5, 40000.0]
    assert since.json()["date_fin"] is None
    until = client.get(f"/api/v1/ticker/BTC/USD/historique/?date_fin={iso(NOW - 3 * H)}")
    assert [r["last"] for r in until.json()["data"]] == [40000.0]
    assert until.json()["date_debut"] is None


def test_periode_filters_by_length(client: Client, market: None) -> None:
    assert client.get("/api/v1/ticker/BTC/USD/historique/?periode=1h").json()["count"] == 1
    assert client.get("/api/v1/ticker/BTC/USD/historique/?periode=7d").json()["count"] == 3


def test_price_history(client: Client, market: None) -> None:
    r = client.get("/api/v1/prix/xbt/historique/?periode=24h")
    assert r.json() == {
        "crypto_symbol": "BTC",
        "pair": "BTC/USD",
        "count": 2,
        "data": [
            {"timestamp": iso(NOW - H), "price": 42100.0, "bid": None, "ask": None,
             "volume_24h": None},
            {"timestamp": iso(NOW - 2 * H), "price": 42000.5, "bid": 41999.0, "ask": 42001.0,
             "volume_24h": 1234.5},
        ],
        "limit": 100,
        "next": None,
        "next_url": None,
        "date_debut": iso(NOW - 24 * H),
        "date_fin": iso(NOW),
    }  # fmt: skip


def test_trade_history_exact(client: Client, db: Conn) -> None:
    t = NOW - H
    seed.trades(
        db,
        [
            (t, "BTC/USD", 42000.0, 0.5, "b", 1, "k1"),
            (t, "BTC/USD", 42001.0, 0.25, "s", 2, "k2"),
            (t, "ETH/USD", 2500.0, 1.0, "b", 3, "k3"),
        ],
    )
    body = client.get("/api/v1/trade/XBT/USD/historique/").json()
    assert body["pair"] == "BTC/USD"
    assert body["data"] == [
        {"timestamp": iso(t), "price": 42001.0, "volume": 0.25, "side": "s", "trade_id": 2,
         "ord_type": None, "trade_key": "k2"},
        {"timestamp": iso(t), "price": 42000.0, "volume": 0.5, "side": "b", "trade_id": 1,
         "ord_type": None, "trade_key": "k1"},
    ]  # fmt: skip
    same = client.get("/api/v1/trade/historique/?pair=btc/usd").json()
    assert same["data"] == body["data"]


def test_sentiment_history_exact_and_aliases(client: Client, db: Conn) -> None:
    seed.sentiments(
        db,
        [
            (NOW - H, NOW - 2 * H, "BTC", 0.75, "positive", "aggregated_articles", 0.8, 4),
            (NOW - 3 * H, NOW - 4 * H, "BTC", 0.3, "negative", "aggregated_articles", 0.6, 2),
            (NOW - H, NOW - 2 * H, "ETH", 0.5, "neutral", "aggregated_articles", 0.5, 1),
        ],
    )
    expected = [
        {"timestamp": iso(NOW - H), "window_start": iso(NOW - 2 * H), "sentiment_score": 0.75,
         "sentiment_label": "positive", "source": "aggregated_articles", "confidence": 0.8,
         "article_count": 4},
        {"timestamp": iso(NOW - 3 * H), "window_start": iso(NOW - 4 * H), "sentiment_score": 0.3,
         "sentiment_label": "negative", "source": "aggregated_articles", "confidence": 0.6,
         "article_count": 2},
    ]  # fmt: skip
    for name in ("BTC", "btc", "bitcoin", "XBT", "$btc"):
        url = f"/api/v1/sentiment/{quote(name)}/historique/?periode=24h&resolution=window"
        body = client.get(url).json()
        assert (body["crypto_symbol"], body["resolution"]) == ("BTC", "window")
        assert body["count"] == 2
        assert body["data"] == expected


def _hour(ts: datetime, score: float | None = None, label: str | None = None,
          articles: int = 0, windows: int = 0) -> dict[str, Any]:  # fmt: skip
    return {"timestamp": iso(ts), "sentiment_score": score, "sentiment_label": label,
            "article_count": articles, "window_count": windows}  # fmt: skip


def test_sentiment_history_is_one_row_per_hour_with_the_empty_hours(
    client: Client, db: Conn
) -> None:
    seed.sentiments(
        db,
        [
            (NOW - H, NOW - H - timedelta(minutes=5), "BTC", 0.75, "positive", "rss", 0.8, 4),
            (NOW - H + timedelta(minutes=5), NOW - H, "BTC", 0.65, "positive", "rss", 0.8, 2),
            (NOW - 3 * H, NOW - 4 * H, "BTC", 0.3, "negative", "rss", 0.6, 2),
            (NOW - 8 * 24 * H, NOW - 8 * 24 * H, "BTC", 0.9, "positive", "rss", 0.6, 9),
            (NOW - H, NOW - 2 * H, "ETH", 0.5, "neutral", "rss", 0.5, 1),
        ],
    )
    body = client.get("/api/v1/sentiment/bitcoin/historique/?periode=7d").json()
    # The seed's example: 168 rows for 7 days, one per hour, newest first.
    assert (body["crypto_symbol"], body["resolution"], body["count"]) == ("BTC", "1h", 168)
    assert len(body["data"]) == 168
    assert body["next"] is None
    assert (body["date_debut"], body["date_fin"]) == (iso(NOW - 7 * 24 * H), iso(NOW))
    # The hour starting at NOW begins at the range's end: not in it; the oldest is NOW - 168 h.
    assert [row["timestamp"] for row in body["data"]] == [iso(NOW - k * H) for k in range(1, 169)]
    assert body["data"][0] == _hour(NOW - H, 0.7, "positive", 6, 2)
    assert body["data"][1] == _hour(NOW - 2 * H)
    assert body["data"][2] == _hour(NOW - 3 * H, 0.3, "negative", 2, 1)
    assert sum(row["article_count"] for row in body["data"]) == 8
    assert client.get("/api/v1/sentiment/BTC/historique/?periode=24h").json()["count"] == 24
    month = client.get("/api/v1/sentiment/BTC/historique/?periode=30d").json()
    assert (month["count"], month["next"]) == (720, None)
    assert sum(row["article_count"] for row in month["data"]) == 17


def test_sentiment_hours_page_and_read_dates_without_offset_as_utc(
    client: Client, db: Conn
) -> None:
    seed.sentiments(db, [(NOW - 30 * H, NOW - 31 * H, "BTC", 0.2, "negative", "rss", 0.5, 3)])
    day = client.get(
        "/api/v1/sentiment/BTC/historique/?date_debut=2026-01-14&date_fin=2026-01-14T12:00:00"
    ).json()
    assert (day["date_debut"], day["date_fin"]) == ("2026-01-14T00:00:00Z", "2026-01-14T12:00:00Z")
    assert day["count"] == 12
    assert day["data"][5] == _hour(NOW - 30 * H, 0.2, "negative", 3, 1)
    first = client.get("/api/v1/sentiment/BTC/historique/?periode=7d&limit=100").json()
    assert (first["count"], first["limit"]) == (100, 100)
    rest = client.get(first["next_url"]).json()
    assert (rest["count"], rest["next"]) == (68, None)
    hours = [row["timestamp"] for row in first["data"] + rest["data"]]
    assert hours == [iso(NOW - k * H) for k in range(1, 169)]
    # An open end is now, and the body says so; an unknown coin is a 404 as elsewhere.
    since = client.get(f"/api/v1/sentiment/BTC/historique/?date_debut={iso(NOW - 2 * H)}")
    assert since.json()["date_fin"] == iso(NOW)
    assert since.json()["count"] == 2
    assert client.get("/api/v1/sentiment/NOPE/historique/").status_code == 404


def test_dates_without_an_offset_are_utc(client: Client, market: None) -> None:
    naive = "date_debut=2026-01-15T09:00:00&date_fin=2026-01-15T10:30:00"
    body = client.get(f"/api/v1/ticker/BTC/USD/historique/?{naive}").json()
    assert [row["timestamp"] for row in body["data"]] == [iso(NOW - 2 * H)]
    assert (body["date_debut"], body["date_fin"]) == (
        "2026-01-15T09:00:00Z",
        "2026-01-15T10:30:00Z",
    )
    whole_day = client.get("/api/v1/ticker/BTC/USD/historique/?date_debut=2026-01-15").json()
    assert whole_day["date_debut"] == "2026-01-15T00:00:00Z"
    assert whole_day["count"] == 2


@pytest.mark.parametrize("query", ["page=2", "page=x", "page=1&page_size=50", "page_size=10"])
def test_page_numbers_are_refused_with_the_cursor_to_use(
    client: Client, market: None, query: str
) -> None:
    r = client.get(f"/api/v1/ticker/BTC/USD/historique/?{query}")
    assert r.status_code == 400
    body = r.json()
    if "page_size" in query:
        assert body["parameter"] == "page_size"
        assert "limit=" in body["detail"]
    else:
        assert body["parameter"] == "page"
        assert "cursor=" in body["detail"]
        assert "next_url" in body["detail"]


def test_page_one_is_the_first_page(client: Client, market: None) -> None:
    first = client.get("/api/v1/ticker/BTC/USD/historique/?limit=1").json()
    assert client.get("/api/v1/ticker/BTC/USD/historique/?limit=1&page=1").json() == first
    assert "page=" not in first["next_url"]


def test_prediction_history_exact(client: Client, db: Conn) -> None:
    seed.predictions(
        db,
        [
            (NOW - H, NOW - 2 * H, "BTC", "moving_average", 42000, 42100, 41900, 42100, 0.95, 300,
             NOW - H + timedelta(minutes=5), 41950),
            (NOW - H, None, "BTC", "naive", 41950, None, None, None, None, 300,
             NOW - H + timedelta(minutes=5), 41950),
        ],
    )  # fmt: skip
    seed.forecasts(
        db,
        [{"timestamp": NOW - 2 * H, "crypto_symbol": "BTC", "model_name": "random_walk",
          "horizon_s": 60, "predicted_price": 41000, "actual_price": 41010,
          "confidence_interval_low": 40990, "confidence_interval_high": 41010,
          "interval_level": 0.8, "outer_interval_low": 40980, "outer_interval_high": 41020,
          "outer_interval_level": 0.95, "last_price": 41000, "trailing_skill": -0.25,
          "preferred": True}],
    )  # fmt: skip
    body = client.get("/api/v1/prediction/bitcoin/historique/").json()
    assert body["crypto_symbol"] == "BTC"
    assert body["horizon_s"] is None
    none = dict.fromkeys(("outer_interval_low", "outer_interval_high", "outer_interval_level",
                          "trailing_skill"))  # fmt: skip
    assert body["data"] == [
        {"timestamp": iso(NOW - H), "window_start": None, "model_name": "naive",
         "horizon_s": 300, "target_time": iso(NOW - H + timedelta(minutes=5)),
         "predicted_price": 41950.0, "actual_price": None, "confidence_interval_low": None,
         "confidence_interval_high": None, "interval_level": None, **none,
         "last_price": 41950.0, "preferred": False},
        {"timestamp": iso(NOW - H), "window_start": iso(NOW - 2 * H),
         "model_name": "moving_average", "horizon_s": 300,
         "target_time": iso(NOW - H + timedelta(minutes=5)), "predicted_price": 42000.0,
         "actual_price": 42100.0, "confidence_interval_low": 41900.0,
         "confidence_interval_high": 42100.0, "interval_level": 0.95, **none,
         "last_price": 41950.0, "preferred": False},
        {"timestamp": iso(NOW - 2 * H), "window_start": None, "model_name": "random_walk",
         "horizon_s": 60, "target_time": iso(NOW - 2 * H + timedelta(minutes=1)),
         "predicted_price": 41000.0, "actual_price": 41010.0,
         "confidence_interval_low": 40990.0, "confidence_interval_high": 41010.0,
         "interval_level": 0.8, "outer_interval_low": 40980.0, "outer_interval_high": 41020.0,
         "outer_interval_level": 0.95, "last_price": 41000.0, "trailing_skill": -0.25,
         "preferred": True},
    ]  # fmt: skip


FORECAST_MODELS = ("ewma", "random_walk")
HORIZONS = (60, 300, 900)


def _forecast_grid(db: Conn, minutes: int) -> set[tuple[str, str, int]]:
    """Every model and horizon at each of ``minutes`` issue times (the job's row pattern),
    plus forecasts stamped after the clock; the keys served, (timestamp, model, horizon)."""
    rows: list[dict[str, Any]] = [
        {"timestamp": NOW - timedelta(minutes=m), "crypto_symbol": "BTC", "model_name": model,
         "horizon_s": h, "predicted_price": 100 + m, "last_price": 100}
        for m in range(-2, minutes)
        for model in FORECAST_MODELS
        for h in HORIZONS
    ]  # fmt: skip
    seed.forecasts(db, rows)
    return {(iso(r["timestamp"]), r["model_name"], r["horizon_s"]) for r in rows
            if r["timestamp"] <= NOW}  # fmt: skip


@pytest.mark.parametrize("limit", [1, 4, 5, 7])
def test_forecast_pages_neither_skip_nor_repeat_a_horizon(
    client: Client, db: Conn, limit: int
) -> None:
    # Six rows share each issue time (2 models x 3 horizons): page ends fall between
    # two horizons of one model and minute.
    expected = _forecast_grid(db, 10)
    future = iso(NOW + timedelta(hours=1))
    got, _ = _walk(client, f"/api/v1/prediction/BTC/historique/?date_fin={future}&limit={limit}")
    keys = [(r["timestamp"], r["model_name"], r["horizon_s"]) for r in got]
    assert len(keys) == len(set(keys))
    assert set(keys) == expected  # and none issued after the clock, even in the range
    assert keys == sorted(keys, reverse=True)


def test_forecast_history_of_one_horizon(client: Client, db: Conn) -> None:
    expected = _forecast_grid(db, 10)
    got, pages = _walk(client, "/api/v1/prediction/BTC/historique/?horizon=300&limit=3")
    assert {(r["timestamp"], r["model_name"], r["horizon_s"]) for r in got} == {
        k for k in expected if k[2] == 300
    }
    assert pages == -(-len(got) // 3)
    first = client.get("/api/v1/prediction/BTC/historique/?horizon=300&limit=3").json()
    assert first["horizon_s"] == 300
    # The cursor keeps to its horizon.
    other = client.get(f"/api/v1/prediction/BTC/historique/?horizon=60&cursor={first['next']}")
    assert other.status_code == 400
    assert other.json()["parameter"] == "cursor"
    assert client.get("/api/v1/prediction/BTC/historique/?horizon=0").status_code == 400


def test_a_cursor_whose_horizon_is_not_a_number_is_refused(client: Client, db: Conn) -> None:
    _forecast_grid(db, 3)
    cursor = client.get("/api/v1/prediction/BTC/historique/?limit=2").json()["next"]
    state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert state[-1] == ["random_walk", "300"]
    state[-1][1] = "sixty"
    forged = base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")
    r = client.get(f"/api/v1/prediction/BTC/historique/?cursor={forged}")
    assert r.status_code == 400
    assert r.json()["parameter"] == "cursor"


@pytest.fixture
def news(db: Conn) -> None:
    seed.articles(
        db,
        [
            (NOW - H, "a1", "Bitcoin up", "https://example.org/1", "example.org", "sum 1",
             ["BTC"], 0.8, "positive", 0.4),
            (NOW - 2 * H, "a2", "Ether and Bitcoin", None, None, None, ["ETH", "BTC"], 0.2,
             "negative", None),
            (NOW - 3 * H, "a3", "Solana", None, None, None, ["SOL"], None, None, None),
        ],
    )  # fmt: skip


def test_article_history_exact(client: Client, news: None) -> None:
    body = client.get("/api/v1/article/historique/").json()
    assert body["crypto_symbol"] is None
    assert [a["article_id"] for a in body["data"]] == ["a1", "a2", "a3"]
    assert body["data"][0] == {
        "timestamp": iso(NOW - H),
        "article_id": "a1",
        "title": "Bitcoin up",
        "url": "https://example.org/1",
        "website": "example.org",
        "summary": "sum 1",
        "cryptocurrencies_mentioned": ["BTC"],
        "sentiment_score": 0.8,
        "sentiment_label": "positive",
        "subjectivity": 0.4,
    }
    filtered = client.get("/api/v1/article/historique/?crypto_symbol=bitcoin").json()
    assert filtered["crypto_symbol"] == "BTC"
    assert [a["article_id"] for a in filtered["data"]] == ["a1", "a2"]
    by_path = client.get("/api/v1/articles/xbt/").json()
    assert by_path["data"] == filtered["data"]


def test_alert_history_exact(client: Client, db: Conn) -> None:
    seed.alerts(
        db,
        [
            (NOW - H, "BTC/USD", 42000, 1.5, 1, "up", 41380, 300),
            (NOW - H, "ETH/USD", 2400, -2.0, 1, "down", 2449, 300),
            (NOW - 2 * H, "BTC/USD", 41000, -1.2, 1, "down", 41500, None),
        ],
    )
    body = client.get("/api/v1/alert/historique/").json()
    assert body["pair"] is None
    assert [(a["pair"], a["alert_type"]) for a in body["data"]] == [
        ("ETH/USD", "down"),
        ("BTC/USD", "up"),
        ("BTC/USD", "down"),
    ]
    assert body["data"][1] == {
        "timestamp": iso(NOW - H),
        "pair": "BTC/USD",
        "last_price": 42000.0,
        "change_percent": 1.5,
        "threshold": 1.0,
        "alert_type": "up",
        "reference_price": 41380.0,
        "window_s": 300,
    }
    only = client.get("/api/v1/alert/historique/?pair=XBT/USD").json()
    assert only["pair"] == "BTC/USD"
    assert [a["change_percent"] for a in only["data"]] == [1.5, -1.2]


def test_prototype_alert_without_a_price_is_served_with_null(client: Client, db: Conn) -> None:
    seed.alerts(db, [(NOW - H, "SOL/USD", None, -3.5, None, "down", None, None)])
    body = client.get("/api/v1/alert/historique/?pair=SOL/USD")
    assert body.status_code == 200
    assert body.json()["data"][0]["last_price"] is None
    schema = client.get("/docs/openapi.json").json()["components"]["schemas"]
    last_price = schema["AlertPoint"]["properties"]["last_price"]
    assert {"type": "null"} in last_price["oneOf"]


def test_periode_live_answers_with_websocket_urls(client: Client) -> None:
    r = client.get("/api/v1/ticker/XBT/USD/historique/?periode=live")
    assert r.status_code == 200
    assert r.json() == {
        "periode": "live",
        "channel": "ticker:BTC/USD",
        "websocket": "ws://testserver.local/ws/ticker/BTC/USD/",
        "multiplex": "ws://testserver.local/ws/live",
        "subscribe_message": {"action": "subscribe", "channels": ["ticker:BTC/USD"]},
    }
    sentiment = client.get("/api/v1/sentiment/bitcoin/historique/?periode=live").json()
    assert sentiment["websocket"] == "ws://testserver.local/ws/sentiment/BTC/"
    alerts = client.get("/api/v1/alert/historique/?periode=live").json()
    assert alerts["websocket"] == "ws://testserver.local/ws/alert/"


def _walk(client: Client, url: str) -> tuple[list[dict[str, Any]], int]:
    rows: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        r = client.get(next_url)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["count"] == len(body["data"]) <= body["limit"]
        rows += body["data"]
        pages += 1
        next_url = body["next_url"]
        assert (body["next"] is None) == (next_url is None)
        assert pages < 1000
    return rows, pages


def test_pagination_walks_a_large_range_without_gaps_or_duplicates(
    client: Client, db: Conn
) -> None:
    rng = random.Random(5)
    start = NOW - timedelta(days=20)
    expected: list[tuple[datetime, str]] = []
    rows = []
    for i in range(2500):
        # Several trades share a timestamp: the key column must break the ties.
        ts = start + timedelta(seconds=rng.randrange(0, 20 * 86400) // 7 * 7)
        key = f"t{i:05d}"
        rows.append((ts, "BTC/USD", 42000.0 + i, 0.1, rng.choice("bs"), i, key))
        expected.append((ts, key))
    seed.trades(db, rows)
    seed.trades(db, [(start + H, "ETH/USD", 1.0, 1.0, "b", None, "other")])
    expected.sort(reverse=True)
    url = f"/api/v1/trade/BTC/USD/historique/?date_debut={iso(start)}&date_fin={iso(NOW)}&limit=97"
    got, pages = _walk(client, url)
    assert pages == -(-2500 // 97)
    assert [(datetime.fromisoformat(r["timestamp"]), r["trade_key"]) for r in got] == expected


def test_pagination_with_two_key_columns_and_a_frozen_relative_range(
    db: Conn, app_factory: Any
) -> None:
    # Alerts without a pair order by (timestamp, pair, alert_type). The relative
    # periode is frozen by the cursor: moving the clock between pages changes nothing.
    clock = [NOW]
    rows = []
    for minute in range(0, 600, 3):
        for pair in ("BTC/USD", "ETH/USD", "SOL/USD"):
            for kind in ("up", "down"):
                rows.append((NOW - timedelta(minutes=minute), pair, 1, 1, 1, kind, 1, 60))
    seed.alerts(db, rows)
    with TestClient(app_factory(clock=lambda: clock[0])) as client:
        first = client.get("/api/v1/alert/historique/?periode=6h&limit=50").json()
        clock[0] = NOW + timedelta(hours=2)
        rest, _ = _walk(client, first["next_url"])
    got = [(r["timestamp"], r["pair"], r["alert_type"]) for r in first["data"] + rest]
    assert len(got) == len(set(got))
    in_range = sorted(
        ((iso(ts), pair, kind) for ts, pair, *_x, kind, _r, _w in rows if ts >= NOW - 6 * H),
        reverse=True,
    )
    assert got == in_range


def test_cursor_of_another_listing_is_rejected(client: Client, market: None) -> None:
    seed_rows = client.get("/api/v1/ticker/BTC/USD/historique/?limit=1").json()
    cursor = seed_rows["next"]
    assert cursor
    r = client.get(f"/api/v1/ticker/ETH/USD/historique/?cursor={cursor}")
    assert r.status_code == 400
    assert r.json()["parameter"] == "cursor"
    ok = client.get(f"/api/v1/ticker/XBT/USD/historique/?cursor={cursor}&limit=1")
    assert ok.status_code == 200
    assert [row["last"] for row in ok.json()["data"]] == [42000.5]
