"""Every request and response of the seed documents, against the API on a real database.

The API runs in-process (Litestar's test client, lifespan included) on a migrated
database seeded with a day of BTC and ETH data, its clock pinned to
:data:`NOW`. Each documented request is sent as written, with its placeholders
(``{symbol}``, ``{crypto}``, ``{pair}``, ``...``) filled with BTC, BTC/USD and a date:
it answers 200 with the body the seeds describe (the subject, ``count``, ``data``),
or, where CryptoViz keeps a deliberate difference from the prototype, the clear
error ``docs/MIGRATING.md`` explains.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from opentelemetry.sdk.trace import TracerProvider

from api import create_app
from infra.settings import Settings
from tests.api import seed
from tests.api.conftest import API_KEY, test_api_settings
from tests.contract.conftest import FOUND, MISSING, only, params
from tests.contract.seeds import SEEDS, Example

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
MIGRATING = Path(__file__).resolve().parents[2] / "docs" / "MIGRATING.md"
Client = TestClient[Litestar]


@pytest.fixture(scope="module")
def client(stack: Settings, module_database: str) -> Iterator[Client]:
    with psycopg.connect(module_database, autocommit=True) as conn:
        _seed(conn)
    app = create_app(
        stack.with_servers(database=module_database),
        test_api_settings(),
        tracer_provider=TracerProvider(),
        clock=lambda: NOW,
    )
    with TestClient(app) as test_client:
        yield test_client


def _seed(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """A day of BTC and ETH: a tick and a trade every 10 minutes, hourly predictions,
    BTC's hourly sentiment, an article and an alert (more than a page of ticks)."""
    ticks, trades, sentiments, predictions = [], [], [], []
    for step in range(24 * 6):
        t = NOW - step * timedelta(minutes=10)
        for pair, price in (("BTC/USD", 42000.0 + step), ("ETH/USD", 2500.0 + step)):
            ticks.append((t, pair, price, price - 1, price + 1, 1234.5))
            trades.append((t, pair, price, 0.1, "b", step, f"{pair}-{step}"))
    for hour in range(1, 24):
        t = NOW - hour * H
        sentiments.append((t, t - timedelta(minutes=5), "BTC", 0.7, "positive", "rss", 0.8, 3))
        for coin, price in (("BTC", 42000), ("ETH", 2500)):
            predictions.append(
                (t, t - timedelta(minutes=3), coin, "moving_average", price, None, price - 100,
                 price + 100, 0.8, 300, t + timedelta(minutes=5), price - 10)
            )  # fmt: skip
    seed.tickers(conn, ticks)
    seed.trades(conn, trades)
    seed.sentiments(conn, sentiments)
    seed.predictions(conn, predictions)
    seed.articles(
        conn,
        [
            (NOW - 2 * H, "a1", "Bitcoin rallies", "https://coindesk.com/a1", "coindesk.com",
             "BTC up", ["BTC"], 0.8, "positive", 0.3),
        ],
    )  # fmt: skip
    seed.alerts(conn, [(NOW - H, "BTC/USD", 42000, 1.2, 1, "up", 41500, 300)])


# -- the placeholders of the documented paths ------------------------------------------

PLACEHOLDERS = {"{symbol}": "BTC", "{crypto}": "BTC", "{pair}": "BTC/USD", "=...": "=2024-01-15"}


def concrete(path: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        path = path.replace(placeholder, value)
    return path


SUBJECT = re.compile(r"^/api/v1/(ticker|trade|sentiment|prediction|prix|articles)/")


def _subject_key(path: str) -> str | None:
    """The body's subject field of a history path: ``pair`` or ``crypto_symbol``."""
    found = SUBJECT.match(path)
    if found is None:
        return None
    return "pair" if found[1] in ("ticker", "trade") else "crypto_symbol"


# -- requests -----------------------------------------------------------------------


@pytest.mark.parametrize("example", params("request"))
def test_seed_request_answers_as_documented(example: Example | None, client: Client) -> None:
    request = only(example)
    path = concrete(request.path)
    if request.method == "POST":
        _create_crypto(client, path)
        return
    response = client.get(path)
    assert response.status_code == 200, (path, response.text)
    body = response.json()
    if "/historique" in path or path.startswith("/api/v1/articles/"):
        # The seeds' history body: the subject, a count and the rows, newest first.
        assert {"count", "data"} <= set(body), body
        assert body["count"] == len(body["data"])
        # The seeded day has rows for every documented request: an empty answer is wrong.
        assert body["data"], (path, "no rows")
        key = _subject_key(path)
        if key == "pair":
            assert body["pair"] == ("ETH/USD" if "/ETH/" in path else "BTC/USD")
        elif key == "crypto_symbol":
            assert body["crypto_symbol"] == ("ETH" if "/eth/" in path else "BTC")
        stamps = [row["timestamp"] for row in body["data"]]
        assert stamps == sorted(stamps, reverse=True)
        # The range used is stated; dates without an offset were read as UTC.
        assert "date_debut" in body
        assert "date_fin" in body
        if "date_debut=2024-01-15" in path:
            assert body["date_debut"] == "2024-01-15T00:00:00Z"
        if "periode=1h" in path and "ticker" in path:
            assert body["count"] == 7  # a tick every 10 minutes, both ends included
    elif path.startswith("/api/v1/config/"):
        assert {"count", "data"} <= set(body)
    elif path == "/api/v1/health/":
        assert body["status"] == "ok"
    elif path.startswith("/api/v1/prix/"):
        assert (body["crypto_symbol"], body["pair"], body["price"]) == ("BTC", "BTC/USD", 42000.0)
    elif path.startswith("/api/v1/predictions/"):
        # "Prédictions avec métriques de confiance": the latest prediction and its interval.
        assert body["crypto_symbol"] == "BTC"
        assert body["data"]
        assert {"predicted_price", "confidence_interval_low", "confidence_interval_high"} <= set(
            body["data"][0]
        )
    else:
        pytest.fail(f"no documented outcome for {path}")


def _create_crypto(client: Client, path: str) -> None:
    """A write of the configuration: refused without an API key (a deliberate difference,
    docs/MIGRATING.md), done with one."""
    body = {"symbol": "XRP", "name": "XRP"}
    refused = client.post(path, json=body)
    assert refused.status_code == 401
    assert "API key" in refused.json()["detail"]
    assert "API key" in MIGRATING.read_text()
    created = client.post(path, json=body, headers={"X-API-Key": API_KEY})
    assert created.status_code in (201, 409), created.text
    listed = client.get(path).json()
    assert "XRP" in [c["symbol"] for c in listed["data"]]


# -- the one documented response ------------------------------------------------------


def _shape(text: str) -> Any:
    """The JSON of an abbreviated example (``...`` standing for more fields or rows)."""
    text = re.sub(r",\s*\.\.\.", "", text)
    text = re.sub(r"^\s*\.\.\.\s*$", "", text, flags=re.M)
    text = re.sub(r",(\s*[\]}])", r"\1", text)
    return json.loads(text)


@pytest.mark.parametrize("example", params("response"))
def test_seed_response_has_the_documented_shape_and_count(
    example: Example | None, client: Client
) -> None:
    """DOCUMENTATION_TECHNIQUE.md: ``/api/v1/sentiment/bitcoin/historique/`` over 7 days
    answers ``{"crypto_symbol", "count": 168, "data": [{"timestamp", "sentiment_score"}...]}``
    (one row per hour; its SQL and the quick start's ``?periode=7d`` give the 7 days)."""
    documented = _shape(only(example).text)
    request = only(example).request
    assert request == "GET /api/v1/sentiment/bitcoin/historique/"
    body = client.get(request.split(" ", 1)[1] + "?periode=7d").json()
    assert set(documented) <= set(body)
    assert body["count"] == documented["count"] == len(body["data"]) == 168
    for row in body["data"]:
        assert set(documented["data"][0]) <= set(row)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", row["timestamp"])
    scored = [row for row in body["data"] if row["sentiment_score"] is not None]
    assert len(scored) == 23
    assert all(isinstance(row["sentiment_score"], float) for row in scored)
    # Canonical symbols: the prototype echoed "BITCOIN"; CryptoViz answers the coin's
    # symbol whichever alias was asked (docs/MIGRATING.md).
    assert documented["crypto_symbol"] == "BITCOIN"
    assert body["crypto_symbol"] == "BTC"
    assert "canonical" in MIGRATING.read_text().lower()


# -- the external request, and the documented parameters -------------------------------


@pytest.mark.parametrize("example", params("external"))
def test_prometheus_metrics_request_is_the_api_metrics_endpoint(
    example: Example | None, client: Client
) -> None:
    """``curl http://localhost:9090/metrics`` asks Prometheus itself (its own metrics);
    CryptoViz's programs expose theirs to it on ``/metrics`` (the API's, here)."""
    assert only(example).text.endswith(":9090/metrics")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "# HELP" in response.text


def _documented_periodes() -> list[str]:
    text = (SEEDS / "ARCHITECTURE.md").read_text(encoding="utf-8") if SEEDS.is_dir() else ""
    found = re.search(r"`periode`\s*:\s*([0-9a-z, ]+)", text)
    return [] if found is None else [p.strip() for p in found[1].split(",")]


HISTORY = [e for e in FOUND if e.kind == "request" and e.document == "ARCHITECTURE.md"]


@pytest.mark.skipif(not FOUND, reason=MISSING)
def test_documented_periodes_and_page_size(client: Client) -> None:
    """ARCHITECTURE.md: ``periode`` takes 1h, 24h, 7d, 30d on every history route, and
    the prototype paged by 100 rows. CryptoViz pages by 100 too, by cursor: ``page=2``
    is a 400 naming the cursor (docs/MIGRATING.md)."""
    periodes = _documented_periodes()
    assert periodes == ["1h", "24h", "7d", "30d"]
    paths = [concrete(e.path) for e in HISTORY if e.path.endswith("/historique/")]
    assert len(paths) == 6
    for path in paths:
        for periode in periodes:
            response = client.get(f"{path}?periode={periode}")
            assert response.status_code == 200, (path, periode, response.text)
    ticks = client.get("/api/v1/ticker/BTC/USD/historique/").json()
    assert (ticks["count"], ticks["limit"]) == (100, 100)
    assert ticks["next"] is not None
    second = client.get(ticks["next_url"]).json()
    assert second["count"] == 44  # 144 ticks: a day at 10-minute steps
    refused = client.get("/api/v1/ticker/BTC/USD/historique/?page=2")
    assert refused.status_code == 400
    assert "cursor" in refused.json()["detail"]
    assert "page=" in MIGRATING.read_text()
