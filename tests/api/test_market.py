"""Latest price, latest forecasts with their accuracy, tracked cryptos with freshness."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from api.models import StoredPrediction
from api.routes.market import shown_first
from spark_batch.accuracy import accuracy, fetch_scored
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


def _forecast(at: datetime, model: str, horizon: int, **values: Any) -> dict[str, Any]:
    return {"timestamp": at, "crypto_symbol": "BTC", "model_name": model, "horizon_s": horizon,
            **values}  # fmt: skip


def _job_rows(at: datetime, actual: float | None) -> list[dict[str, Any]]:
    """One issue time of the job: random_walk (shown first, calibrated 80/95 % intervals),
    ewma and the prototype's moving average, at 60 and 300 s."""
    rows = []
    for h in (60, 300):
        rows += [
            _forecast(at, "random_walk", h, predicted_price=100, last_price=100,
                      actual_price=actual, confidence_interval_low=99.5,
                      confidence_interval_high=100.5, interval_level=0.8,
                      outer_interval_low=99, outer_interval_high=101, outer_interval_level=0.95,
                      trailing_skill=0.0, preferred=True),
            _forecast(at, "ewma", h, predicted_price=100.5, last_price=100, actual_price=actual,
                      confidence_interval_low=99.9, confidence_interval_high=101.1,
                      interval_level=0.8, outer_interval_low=99.5, outer_interval_high=101.5,
                      outer_interval_level=0.95, trailing_skill=-0.02),
            _forecast(at, "moving_average", h, predicted_price=99, last_price=100,
                      actual_price=actual, confidence_interval_low=98.5,
                      confidence_interval_high=99.5, interval_level=0.6827,
                      trailing_skill=-0.3),
        ]  # fmt: skip
    return rows


def test_latest_forecasts_per_model_and_horizon_shown_first_and_accuracy(
    client: Client, db: Conn
) -> None:
    latest, scored = NOW - timedelta(minutes=2), NOW - timedelta(minutes=20)
    seed.forecasts(db, _job_rows(scored, 101.0) + _job_rows(latest, None))
    # Stamped after the clock (ticks from the future): never served, not even as "latest".
    seed.forecasts(db, [_forecast(NOW + timedelta(minutes=1), "ewma", 60, predicted_price=1)])
    seed.forecasts(db, [{**r, "crypto_symbol": "ETH"} for r in _job_rows(latest, None)])
    body = client.get("/api/v1/predictions/xbt/").json()
    assert body["crypto_symbol"] == "BTC"
    assert body["horizon_s"] is None
    assert [(p["horizon_s"], p["model_name"], p["shown_first"]) for p in body["data"]] == [
        (60, "random_walk", True), (60, "ewma", False), (60, "moving_average", False),
        (300, "random_walk", True), (300, "ewma", False), (300, "moving_average", False),
    ]  # fmt: skip
    assert body["count"] == 6
    assert {p["timestamp"] for p in body["data"]} == {iso(latest)}
    by_key = {(p["model_name"], p["horizon_s"]): p for p in body["data"]}
    assert by_key[("moving_average", 60)]["label"] == "moving average (the prototype's baseline)"
    assert by_key[("random_walk", 60)]["label"] == "random walk, calibrated intervals"
    # Every model's trailing skill is visible, negative included.
    assert [by_key[(m, 300)]["trailing_skill"] for m in ("random_walk", "ewma",
            "moving_average")] == [0.0, -0.02, -0.3]  # fmt: skip
    rw = by_key[("random_walk", 60)]
    assert (rw["outer_interval_low"], rw["outer_interval_high"], rw["outer_interval_level"]) == (
        99.0, 101.0, 0.95)  # fmt: skip
    assert (body["accuracy_from"], body["accuracy_to"]) == (iso(latest - 24 * H), iso(latest))
    # The report's measures over that window: one scored forecast per model and horizon,
    # actual 101 after a last price of 100.
    assert rw["accuracy"] == {
        "model_name": "random_walk", "horizon_s": 60, "predictions": 1, "mae": 1.0,
        "rmse": 1.0, "mape_pct": pytest.approx(100 / 101), "directional_accuracy": 0.0,
        "direction_calls": 1, "naive_mae": 1.0, "naive_rmse": 1.0,
        "naive_mape_pct": pytest.approx(100 / 101), "skill_vs_naive": 0.0,
        "intervals": [
            # missed by 0.5: width 1 + 2 / 0.2 * 0.5
            {"level": 0.8, "predictions": 1, "coverage": 0.0, "mean_width": 1.0,
             "interval_score": pytest.approx(6.0)},
            {"level": 0.95, "predictions": 1, "coverage": 1.0, "mean_width": 2.0,
             "interval_score": 2.0},
        ],
    }  # fmt: skip
    ewma = by_key[("ewma", 300)]["accuracy"]
    assert (ewma["mae"], ewma["skill_vs_naive"], ewma["directional_accuracy"]) == (0.5, 0.5, 1.0)
    ma = by_key[("moving_average", 60)]["accuracy"]
    assert ma["skill_vs_naive"] == -1.0
    assert [i["level"] for i in ma["intervals"]] == [0.6827]
    assert [(a["horizon_s"], a["model_name"], a["predictions"]) for a in body["baselines"]] == [
        (60, "shown_first", 1), (60, "naive_last_value", 1),
        (300, "shown_first", 1), (300, "naive_last_value", 1),
    ]  # fmt: skip

    one = client.get("/api/v1/predictions/BTC/?horizon=300").json()
    assert one["horizon_s"] == 300
    assert [(p["horizon_s"], p["model_name"]) for p in one["data"]] == [
        (300, "random_walk"), (300, "ewma"), (300, "moving_average")]  # fmt: skip
    assert {a["horizon_s"] for a in one["baselines"]} == {300}
    empty = client.get("/api/v1/predictions/SOL/").json()
    assert empty == {"crypto_symbol": "SOL", "horizon_s": None, "count": 0, "data": [],
                     "accuracy_from": None, "accuracy_to": None, "baselines": []}  # fmt: skip
    assert client.get("/api/v1/predictions/BTC/?horizon=-60").status_code == 400


def _stored(model: str, at: datetime, preferred: bool, skill: float | None) -> StoredPrediction:
    return StoredPrediction(
        model_name=model, horizon_s=60, timestamp=at, window_start=None, target_time=at,
        predicted_price=1, confidence_interval_low=None, confidence_interval_high=None,
        interval_level=None, outer_interval_low=None, outer_interval_high=None,
        outer_interval_level=None, last_price=1, trailing_skill=skill, preferred=preferred,
    )  # fmt: skip


def test_the_model_shown_first_is_never_worse_than_naive() -> None:
    old = NOW - H
    # The job's flag at the newest issue time wins (an older flag does not count).
    flagged = [_stored("random_walk", NOW, True, 0.0), _stored("ewma", NOW, False, 0.3),
               _stored("linear_trend", old, True, 0.5)]  # fmt: skip
    assert shown_first(flagged) == {60: "random_walk"}
    # Rows without flags (stored before the job flagged them): the best skill if >= 0.
    legacy = [_stored("ewma", NOW, False, 0.02), _stored("ma", NOW, False, -0.1),
              _stored("trend", NOW, False, None)]  # fmt: skip
    assert shown_first(legacy) == {60: "ewma"}
    # Only negative or unknown skills: none; the naive forecast (the last price) is shown.
    assert shown_first([_stored("ma", NOW, False, -0.1), _stored("t", NOW, False, None)]) == {}


def test_the_accuracy_route_gives_the_reports_figures(client: Client, db: Conn) -> None:
    """The API's SQL and the report's Python (spark_batch.accuracy) on the same rows."""
    rng = random.Random(13)
    rows: list[dict[str, Any]] = []
    for minute in range(0, 26 * 60, 7):  # some older than the 24 h window
        at = NOW - timedelta(minutes=minute)
        last = round(100 + rng.gauss(0, 2), 2)
        for h in (60, 300):
            actual = None if rng.random() < 0.1 else rng.choice([last, round(last + rng.gauss(
                0, 0.5), 2)])  # fmt: skip
            shown = rng.choice(["random_walk", "ewma", None])
            for model in ("random_walk", "ewma", "moving_average", "ma"):
                p = last if model == "random_walk" else round(last + rng.gauss(0, 0.4), 2)
                w, ow = abs(rng.gauss(0.5, 0.2)), abs(rng.gauss(1.0, 0.3))
                level = {"moving_average": 0.6827, "ma": 0.95}.get(model, 0.8)
                outer = model in ("random_walk", "ewma")
                rows.append(_forecast(
                    at, model, h, predicted_price=p, actual_price=actual,
                    last_price=None if model == "ma" and minute % 2 else last,
                    confidence_interval_low=p - w, confidence_interval_high=p + w,
                    interval_level=level if model != "ma" or minute % 3 else None,
                    outer_interval_low=p - ow if outer else None,
                    outer_interval_high=p + ow if outer else None,
                    outer_interval_level=0.95 if outer else None,
                    preferred=model == shown,
                ))  # fmt: skip
    rows.append(_forecast(NOW + H, "ewma", 60, predicted_price=1, actual_price=2, last_price=1))
    seed.forecasts(db, rows)
    body = client.get("/api/v1/predictions/BTC/accuracy/?periode=24h").json()
    start, end = NOW - 24 * H, NOW + timedelta(microseconds=1)
    assert (body["date_debut"], body["date_fin"]) == (iso(start), iso(NOW))
    expected = [
        {"model_name": a.model, **{k: v for k, v in msgspec.to_builtins(a).items()
                                   if k not in ("model", "symbol")}}
        for a in accuracy(fetch_scored(db, start, end))
    ]  # fmt: skip
    assert len(expected) == 2 * 6  # per horizon: 4 models, shown first, naive
    assert body["count"] == len(expected)
    assert body["data"] == [_approx(e) for e in expected]
    one = client.get("/api/v1/predictions/BTC/accuracy/?periode=24h&horizon=60").json()
    assert one["data"] == [_approx(e) for e in expected if e["horizon_s"] == 60]
    assert client.get("/api/v1/predictions/BTC/accuracy/?periode=live").status_code == 400
    assert client.get("/api/v1/predictions/FOO/accuracy/").status_code == 404


def _approx(value: Any) -> Any:
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9, abs=1e-12)
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list | tuple):  # the report's tuples are the API's lists
        return [_approx(v) for v in value]
    return value


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
