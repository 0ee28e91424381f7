"""Latest price, latest predictions with accuracy, tracked cryptos with freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.api import seed
from tests.api.conftest import NOW

Client = TestClient[Litestar]
Conn = psycopg.Connection[tuple[Any, ...]]
H = timedelta(hours=1)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_latest_price_with_computed_24h_change(client: Client, db: Conn) -> None:
    seed.tickers(
        db,
        [
            (NOW - 25 * H, "BTC/USD", 39000),
            (NOW - 24 * H - timedelta(minutes=5), "BTC/USD", 40000),
            (NOW - 2 * H, "BTC/USD", 41000),
            (NOW - timedelta(seconds=30), "BTC/USD", 42000, 41990, 42010, 1500, None, None,
             None, None, None, 3.3),
        ],
    )  # fmt: skip
    r = client.get("/api/v1/prix/bitcoin/temps_reel/")
    assert r.status_code == 200
    assert r.json() == {
        "crypto_symbol": "BTC",
        "pair": "BTC/USD",
        "price": 42000.0,
        "bid": 41990.0,
        "ask": 42010.0,
        "spread": 20.0,
        "volume_24h": 1500.0,
        "change_24h_pct": 5.0,
        "change_24h_source": "computed",
        "timestamp": iso(NOW - timedelta(seconds=30)),
        "age_s": 30.0,
    }


def test_latest_price_falls_back_to_the_exchange_change(client: Client, db: Conn) -> None:
    seed.tickers(
        db,
        [
            (NOW - 3 * H, "ETH/USD", 2400),
            (NOW - H, "ETH/USD", 2500, None, None, None, None, None, None, None, None, -1.5),
        ],
    )
    body = client.get("/api/v1/prix/ETH/temps_reel/").json()
    assert body["change_24h_pct"] == -1.5
    assert body["change_24h_source"] == "exchange"
    assert body["spread"] is None
    assert body["age_s"] == 3600.0
    seed.tickers(db, [(NOW - H, "SOL/USD", 100)])
    none = client.get("/api/v1/prix/SOL/temps_reel/").json()
    assert none["change_24h_pct"] is None
    assert none["change_24h_source"] is None


def test_latest_price_in_another_quote(client: Client, db: Conn) -> None:
    seed.tickers(db, [(NOW - H, "BTC/EUR", 39000), (NOW - H, "BTC/USD", 42000)])
    body = client.get("/api/v1/prix/BTC/temps_reel/?quote=zeur").json()
    assert (body["pair"], body["price"]) == ("BTC/EUR", 39000.0)


def test_latest_predictions_with_accuracy(client: Client, db: Conn) -> None:
    rows: list[tuple[Any, ...]] = []
    # Evaluated predictions of "ma": errors 100 and 300 on actual 40000 and 50000; the
    # first actual price lies inside its interval, the second does not.
    rows.append((NOW - 3 * H, None, "BTC", "ma", 40100, 40000, 39900, 40200, 0.95, 300,
                 NOW - 3 * H + timedelta(minutes=5), 40050))  # fmt: skip
    rows.append((NOW - 2 * H, None, "BTC", "ma", 50300, 50000, 50100, 50500, 0.95, 300,
                 NOW - 2 * H + timedelta(minutes=5), 50050))  # fmt: skip
    # Too old for the 7-day accuracy window.
    rows.append((NOW - 9 * 24 * H, None, "BTC", "ma", 1, 100000, None, None, None, 300,
                 NOW - 9 * 24 * H, None))  # fmt: skip
    # Latest, not yet evaluated.
    rows.append((NOW - H, NOW - 2 * H, "BTC", "ma", 42000, None, 41800, 42200, 0.95, 300,
                 NOW - H + timedelta(minutes=5), 41990))  # fmt: skip
    rows.append((NOW - H, None, "BTC", "naive", 41990, None, None, None, None, 300,
                 NOW - H + timedelta(minutes=5), 41990))  # fmt: skip
    rows.append((NOW - H, None, "ETH", "ma", 2500, 2400, None, None, None, 300, NOW, None))
    seed.predictions(db, rows)
    body = client.get("/api/v1/predictions/xbt/").json()
    assert body == {
        "crypto_symbol": "BTC",
        "count": 2,
        "data": [
            {
                "model_name": "ma",
                "timestamp": iso(NOW - H),
                "window_start": iso(NOW - 2 * H),
                "predicted_price": 42000.0,
                "confidence_interval_low": 41800.0,
                "confidence_interval_high": 42200.0,
                "interval_level": 0.95,
                "horizon_s": 300,
                "target_time": iso(NOW - H + timedelta(minutes=5)),
                "last_price": 41990.0,
                "accuracy": {
                    "window_days": 7,
                    "evaluated": 2,
                    "mae": 200.0,
                    "mape_pct": pytest.approx((100 / 40000 + 300 / 50000) / 2 * 100),
                    "interval_coverage_pct": 50.0,
                },
            },
            {
                "model_name": "naive",
                "timestamp": iso(NOW - H),
                "window_start": None,
                "predicted_price": 41990.0,
                "confidence_interval_low": None,
                "confidence_interval_high": None,
                "interval_level": None,
                "horizon_s": 300,
                "target_time": iso(NOW - H + timedelta(minutes=5)),
                "last_price": 41990.0,
                "accuracy": None,
            },
        ],
    }
    empty = client.get("/api/v1/predictions/SOL/").json()
    assert empty == {"crypto_symbol": "SOL", "count": 0, "data": []}


def test_cryptos_with_freshness(client: Client, db: Conn) -> None:
    seed.tickers(db, [(NOW - H, "BTC/USD", 42000), (NOW - 2 * H, "BTC/USD", 41000)])
    seed.trades(db, [(NOW - 3 * H, "BTC/USD", 42000, 1, "b", None, "k")])
    seed.sentiments(db, [(NOW - 4 * H, NOW - 5 * H, "BTC", 0.5, "neutral", "rss", 0.5, 1)])
    db.execute("UPDATE crypto_configuration SET active = false WHERE symbol = 'DOT'")
    body = client.get("/api/v1/cryptos/").json()
    assert body["count"] == 6
    by_symbol = {c["symbol"]: c for c in body["data"]}
    assert by_symbol["BTC"] == {
        "symbol": "BTC",
        "name": "Bitcoin",
        "active": True,
        "pairs": ["BTC/USD"],
        "last_ticker": iso(NOW - H),
        "last_trade": iso(NOW - 3 * H),
        "last_sentiment": iso(NOW - 4 * H),
        "last_prediction": None,
        "age_s": 3600.0,
    }
    assert by_symbol["DOT"]["active"] is False
    assert by_symbol["ETH"]["last_ticker"] is None
    assert by_symbol["ETH"]["age_s"] is None
    assert [c["symbol"] for c in body["data"]] == sorted(by_symbol)
