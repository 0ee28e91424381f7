"""The dashboard at ``/``: served assets, and the page itself in headless Chromium.

The browser test runs the real app under uvicorn against a migrated database seeded
with an evening of market data, analytics, news and alerts, loads the page in the
system's Chromium, checks that the charts are drawn with that data, then produces
ticks on the Kafka topic the API relays and sees the price change without a reload,
also after the socket was dropped and reconnected. Its screenshot goes to the test's
temporary directory; ``make dashboard-png`` (``CRYPTOVIZ_REFRESH_DASHBOARD_PNG=1``) writes
it to the committed ``docs/dashboard.png`` instead, so ``make test`` leaves the tree clean.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from confluent_kafka import Producer
from litestar import Litestar
from litestar.testing import TestClient

from api.context import utc_now
from api.dashboard import CONTENT_SECURITY_POLICY, dashboard_router
from api.errors import exception_handlers
from api.settings import LiveTopics
from infra.settings import Settings
from tests._wait import wait_for
from tests.api import seed
from tests.api.browser import Browser, missing_prerequisites
from tests.api.conftest import AppFactory, serve, test_api_settings
from tests.api.test_live import relay_ready

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "api" / "dashboard" / "static"
DOC_SCREENSHOT = ROOT / "docs" / "dashboard.png"
REFRESH_SCREENSHOT = "CRYPTOVIZ_REFRESH_DASHBOARD_PNG"
XSS_TITLE = '<img src=x onerror="window.__xss=1">Bitcoin & "ETF" <b>flows</b>'


# -- assets, without a browser -------------------------------------------------------


def test_page_and_assets_are_served(module_client: TestClient[Litestar]) -> None:
    page = module_client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "Visionneuse Dynamique" in page.text
    for path, kind in (
        ("/dashboard/static/app.js", "javascript"),
        ("/dashboard/static/style.css", "text/css"),
        ("/dashboard/vendor/charts.js", "javascript"),
    ):
        response = module_client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"], path
    assert "LightweightCharts" in module_client.get("/dashboard/vendor/charts.js").text
    assert module_client.get("/dashboard/static/../__init__.py").status_code == 404
    # The page is not part of the API's contract.
    paths = module_client.get("/docs/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not any(p.startswith("/dashboard") for p in paths)


def test_missing_chart_library_says_how_to_install_it(tmp_path: Path) -> None:
    app = Litestar(
        route_handlers=[dashboard_router(node_modules=tmp_path / "node_modules")],
        exception_handlers=exception_handlers(),
    )
    with TestClient(app) as client:
        for path in ("/", "/dashboard/vendor/charts.js"):
            response = client.get(path)
            assert response.status_code == 503
            assert "npm ci --prefix api/dashboard" in response.text
            # The API's one error shape, like every other route's 503.
            assert response.headers["content-type"].startswith("application/json")
            body = response.json()
            assert set(body) == {"status_code", "detail"}
            assert body["status_code"] == 503
            assert body["detail"].startswith("the dashboard's chart library is not installed")


def test_page_script_never_writes_html() -> None:
    script = (STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script.replace("never innerHTML", ""), sink
    # No inline script or style: the Content-Security-Policy forbids them.
    html = (STATIC / "index.html").read_text()
    assert "<script>" not in html
    assert "style=" not in html
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY


# -- the page in a real browser -------------------------------------------------------


def _seed(conn: psycopg.Connection[tuple[Any, ...]], now: datetime) -> dict[str, float]:
    """A day of BTC and ETH ticks, trades, predictions, articles and alerts, a month of
    BTC sentiment.

    Returns the latest stored price of each pair.
    """
    rng = random.Random(7)
    ticks: list[tuple[Any, ...]] = []
    btc_prices: dict[datetime, float] = {}
    latest: dict[str, float] = {}
    # ETH's ticks are the freshest: the page still opens on BTC (as the prototype did).
    for pair, first, lag in (("BTC/USD", 42000.0, 5), ("ETH/USD", 2500.0, 2)):
        price = first
        for minutes in range(24 * 60, -1, -1):
            t = now - timedelta(seconds=lag + 60 * minutes)
            price *= 1 + rng.gauss(0.00002, 0.0012)
            last = round(price, 2)
            ticks.append((t, pair, last, last - 0.5, last + 0.5, 1234.5))
            latest[pair] = last
            if pair == "BTC/USD":
                btc_prices[t] = last
    # SOL/USD: only history, six hours of January 2024 (an import): no price in any period.
    sol = [
        (HISTORY_END - timedelta(minutes=m), "SOL/USD", round(100 + m / 100, 2))
        for m in range(6 * 60, -1, -1)
    ]
    seed.tickers(conn, ticks + sol)
    seed.trades(
        conn,
        [
            (now - timedelta(minutes=m), "BTC/USD", 42000 + m, 0.01 * m, "b", 1000 + m, f"k{m}")
            for m in range(1, 30)
            if m != 10  # one hole in the trade_id sequence: the health strip's "gaps"
        ],
    )
    times = sorted(btc_prices)
    latest_price = btc_prices[times[-1]]

    def price_at(moment: datetime) -> float:
        best = times[0]
        for t in times:
            if t <= moment:
                best = t
        return btc_prices[best]

    # The job's pattern: every model and horizon at each issue time; random_walk shown
    # first; ewma and the prototype's moving average worse than naive (negative skill).
    forecasts: list[dict[str, Any]] = []
    models = (
        ("random_walk", 0.0, 0.002, 0.012, True),
        ("ewma", 0.001, 0.004, -0.05, False),
        ("moving_average", 0.004, 0.002, -0.3, False),
    )
    for horizon in (60, 300, 900):
        t = now - timedelta(hours=6)
        issues: list[tuple[datetime, float, float | None]] = []
        while t < now - timedelta(seconds=horizon):
            issues.append((t, price_at(t), price_at(t + timedelta(seconds=horizon))))
            t += timedelta(minutes=10)
        issues.append((times[-1], latest_price, None))
        for at, last, actual in issues:
            for model, bias, spread, skill, preferred in models:
                predicted = round(last * (1 + bias * rng.uniform(-1, 1)), 2)
                outer = model != "moving_average"
                forecasts.append(
                    {"timestamp": at, "crypto_symbol": "BTC", "model_name": model,
                     "horizon_s": horizon, "predicted_price": predicted, "actual_price": actual,
                     "last_price": last,
                     "confidence_interval_low": round(predicted * (1 - spread), 2),
                     "confidence_interval_high": round(predicted * (1 + spread), 2),
                     "interval_level": 0.8 if outer else 0.6827,
                     "outer_interval_low": round(predicted * (1 - 2 * spread), 2) if outer
                     else None,
                     "outer_interval_high": round(predicted * (1 + 2 * spread), 2) if outer
                     else None,
                     "outer_interval_level": 0.95 if outer else None,
                     "trailing_skill": skill, "preferred": preferred}
                )  # fmt: skip
    seed.forecasts(conn, forecasts)

    # A month of 15-minute windows (2,976, more than a page of 1,000): scores in [0, 1].
    sentiments: list[tuple[Any, ...]] = []
    t = now - timedelta(days=31)
    while t <= now:
        score = round(max(0.0, min(1.0, rng.gauss(0.55, 0.17))), 4)
        label = "positive" if score > 0.6 else "negative" if score < 0.4 else "neutral"
        count = rng.randint(1, 9)
        sentiments.append(
            (t, t - timedelta(minutes=15), "BTC", score, label, "aggregated_articles", 0.7, count)
        )
        t += timedelta(minutes=15)
    seed.sentiments(conn, sentiments)

    articles: list[tuple[Any, ...]] = [
        (now - timedelta(minutes=5 + 37 * i), f"a{i}", title, url, "coindesk.com",
         "summary", ["BTC"], score, label, 0.4)
        for i, (title, url, score, label) in enumerate(
            [
                ("Bitcoin climbs as ETF inflows resume", "https://example.com/a0", 0.6, "positive"),
                (XSS_TITLE, "https://example.com/a1", 0.0, "neutral"),
                ("Miners sell as hash price slides", "javascript:window.__xss=2", -0.4, "negative"),
                ("BTC options open interest hits a record", "https://example.com/a3", 0.2,
                 "positive"),
                ("Bitcoin treasury companies under scrutiny", None, -0.2, "negative"),
            ]
        )
    ]  # fmt: skip
    seed.articles(conn, articles)
    seed.alerts(
        conn,
        [
            (now - timedelta(minutes=42), "BTC/USD", 42800.0, 2.1, 2.0, "up", 41920.0, 3600),
            (now - timedelta(hours=3), "ETH/USD", 2430.0, -3.2, 3.0, "down", 2510.0, 3600),
            (now - timedelta(hours=20), "SOL/USD", 101.5, 5.4, 5.0, "up", 96.3, 3600),
        ],
    )
    return latest


HISTORY_END = datetime(2024, 1, 31, 23, 55, 1, tzinfo=UTC)
"""The latest (and only) SOL/USD price of :func:`_seed`."""


def _price_text(value: float) -> str:
    """The page's rendering of a price above 1000 (en-US, two decimals)."""
    return f"{value:,.2f}"


# Pixels of the price chart's canvases painted in the candle colours (#26a69a, #ef5350).
CANDLE_PIXELS = """(() => {
  const near = (d, i, rgb) => rgb.every((v, k) => Math.abs(d[i + k] - v) < 12);
  let n = 0;
  for (const c of document.querySelectorAll('#price-chart canvas')) {
    if (!c.width || !c.height) continue;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] > 200 && (near(d, i, [38, 166, 154]) || near(d, i, [239, 83, 80]))) n++;
    }
  }
  return n;
})()"""

PAINTED_PIXELS = """(() => {
  let n = 0;
  for (const c of document.querySelectorAll('#sentiment-chart canvas')) {
    if (!c.width || !c.height) continue;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  }
  return n;
})()"""


@pytest.fixture
def browser() -> Iterator[Browser]:
    reason = missing_prerequisites()
    if reason is not None:
        pytest.skip(reason)
    with Browser(width=1280, height=1000) as b:
        yield b


def _wait_relay(port: int, timeout: float = 30.0) -> None:
    wait_for(
        lambda: relay_ready(httpx.get(f"http://127.0.0.1:{port}/api/v1/health/").json(), 1),
        timeout,
        "the live relay",
        interval=0.2,
    )


def _produce_until_shown(
    browser: Browser,
    producer: Producer,
    topic: str,
    first_price: float,
    timeout: float = 20.0,
    source: str | None = None,
) -> float:
    """Produce BTC ticks (first_price, first_price + 1, ...) until the page shows one.

    The relay's consumer may still be resolving its "latest" offset when it reports its
    partitions assigned, so the first message can be missed; the price shown must then
    be one of those produced, and it must have arrived without a reload.
    """
    sent: list[float] = []

    def attempt() -> float | None:
        price = first_price + len(sent)
        sent.append(price)
        value = {"pair": "XBT/USD", "last": price, "bid": price - 0.5, "ask": price + 0.5,
                 "timestamp": time.time(), "source": source}  # fmt: skip
        producer.produce(topic, json.dumps(value).encode())
        producer.flush(5)
        try:
            return float(
                browser.wait_for(
                    f"(() => {{ const t = window.cryptoviz.state.lastTick;"
                    f" return t && t.price >= {first_price} && t.price; }})()",
                    timeout=1.0,
                )
            )
        except AssertionError:
            return None

    shown = wait_for(attempt, timeout, "a produced tick on the page", interval=0)
    assert shown in sent
    text = browser.evaluate("document.getElementById('last-price').textContent")
    assert text == _price_text(shown)
    return shown


@pytest.mark.browser
@pytest.mark.integration
def test_dashboard_in_chromium(
    browser: Browser,
    stack: Settings,
    app_factory: AppFactory,
    fresh_db: str,
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        latest = _seed(conn, now)
    stored = latest["BTC/USD"]
    topic = new_topic("rawticker", 1)
    api = test_api_settings(
        live_enabled=True,
        live_topics=LiveTopics(
            ticker=topic, trade=None, article=None, alert=None, sentiment=None, prediction=None
        ),
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    dlq = new_topic("deadletter")
    for i in range(3):
        producer.produce(dlq, f"junk {i}".encode())
    assert producer.flush(30) == 0
    settings = stack.with_servers(database=fresh_db).with_topics(
        msgspec.structs.replace(stack.kafka.topics, deadletter=dlq)
    )
    with serve(app_factory(api, settings=settings, clock=utc_now)) as port:
        _wait_relay(port)
        assert browser.goto(f"http://127.0.0.1:{port}/?coin=BTC&periode=24h") == 200
        browser.wait_for("document.body.dataset.loaded", timeout=15)
        browser.wait_for(
            "(document.body.dataset.subscribed || '').includes('ticker:BTC/USD')", timeout=10
        )

        # Charts drawn with data: candles in the candle colours, a painted sentiment chart.
        assert browser.evaluate("window.cryptoviz.state.candles.length") >= 90
        assert browser.wait_for(f"{CANDLE_PIXELS} > 500 && {CANDLE_PIXELS}", timeout=10)
        assert browser.wait_for(f"{PAINTED_PIXELS} > 2000 && {PAINTED_PIXELS}", timeout=10)
        text = browser.evaluate("document.getElementById('last-price').textContent")
        assert text == _price_text(stored)
        assert browser.evaluate("document.getElementById('pair-title').textContent") == "BTC/USD"

        # Forecasts: a horizon selector (1 min first), one row per model of that horizon,
        # the one shown first on top and on the chart, every trailing skill (negative
        # too), the 24 h measures, then the shown-first and naive lines.
        horizons = browser.evaluate(
            "[...document.getElementById('horizon').options].map(o => [o.value, o.text])"
        )
        assert horizons == [["60", "1 min"], ["300", "5 min"], ["900", "15 min"]]
        assert browser.evaluate("document.getElementById('horizon').value") == "60"
        rows = browser.evaluate(
            "[...document.querySelectorAll('#models tbody tr')]"
            ".map(r => [r.dataset.model, r.dataset.horizon,"
            " ...[...r.cells].map(c => c.textContent)])"
        )
        assert [r[:2] for r in rows] == [
            ["random_walk", "60"], ["ewma", "60"], ["moving_average", "60"],
            ["shown_first", "60"], ["naive_last_value", "60"],
        ]  # fmt: skip
        assert rows[0][2] == "random walk, calibrated intervalsshown first"
        assert rows[2][2] == "moving average (the prototype's baseline)"
        assert [r[5] for r in rows[:3]] == ["+0.012", "-0.050", "-0.300"]
        assert all(int(r[10]) > 20 for r in rows)  # resolved forecasts of the 24 h window
        assert rows[0][9].startswith("80: ")
        assert " · 95: " in rows[0][9]
        assert rows[4][6] == "0.000"  # the naive forecast against itself
        assert browser.evaluate("document.getElementById('model').value") == "random_walk"
        summary = browser.evaluate("document.getElementById('prediction-summary').textContent")
        assert summary.startswith("random walk, calibrated intervals: ")
        assert "1 min ahead" in summary
        assert "trailing skill +0.012" in summary
        assert "coverage 80: " in summary
        browser.evaluate(
            "(() => { const s = document.getElementById('horizon'); s.value = '900';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        horizons_shown = browser.evaluate(
            "[...new Set([...document.querySelectorAll('#models tbody tr')]"
            ".map(r => r.dataset.horizon))]"
        )
        assert horizons_shown == ["900"]
        summary = browser.evaluate("document.getElementById('prediction-summary').textContent")
        assert "15 min ahead" in summary

        # Articles: escaped text, links only for http(s), sentiment labels.
        articles = browser.evaluate(
            "[...document.querySelectorAll('#articles li')].map(li => ({"
            "title: li.querySelector('.title').textContent,"
            "href: li.querySelector('a') && li.querySelector('a').getAttribute('href'),"
            "label: li.querySelector('.badge').textContent}))"
        )
        assert len(articles) == 5
        assert articles[0]["label"] == "positive"
        assert articles[0]["href"] == "https://example.com/a0"
        assert articles[1]["title"] == XSS_TITLE
        assert articles[2]["href"] is None  # javascript: URL dropped
        assert articles[4]["href"] is None
        injected = "document.querySelectorAll('#articles img, #articles b').length"
        assert browser.evaluate(injected) == 0
        assert browser.evaluate("window.__xss === undefined")

        # Alerts and the health strip.
        alerts = browser.evaluate("[...document.querySelectorAll('#alerts li')].length")
        assert alerts == 3
        chips = browser.evaluate(
            "Object.fromEntries([...document.querySelectorAll('#health .chip')]"
            ".map(c => [c.dataset.key, [c.dataset.level, c.querySelector('.v').textContent]]))"
        )
        assert chips["database"][0] == "ok"
        assert chips["kafka"][0] == "ok"
        assert chips["live relay"][1].startswith("running")
        for kind in ("ticks", "trades", "articles", "sentiment", "predictions"):
            assert chips[kind][0] == "ok", (kind, chips[kind])
        assert chips["dead letters"] == ["warn", "3 in 24 h"]
        assert chips["gaps"] == ["warn", "1"]

        # Live: a new tick changes the price without a reload.
        browser.evaluate("window.__sameDocument = true")
        shown = _produce_until_shown(browser, producer, topic, round(stored + 25.25, 2))
        assert browser.evaluate("window.__sameDocument === true")
        candle = browser.evaluate("window.cryptoviz.state.candles.at(-1)")
        assert candle["close"] == shown
        source = "document.getElementById('price-source')"
        assert browser.evaluate(f"{source}.hidden")  # the live feed needs no note

        # A replayed market says so under its price (the ticks' `source`).
        _produce_until_shown(
            browser, producer, topic, round(stored + 40.5, 2),
            source="replay:binance_BTCUSDT_1m_2024-01_SysTB",
        )  # fmt: skip
        assert browser.evaluate(f"!{source}.hidden")
        assert browser.evaluate(f"{source}.textContent") == (
            "Replayed market (binance_BTCUSDT_1m_2024-01_SysTB), re-timed to now: not live prices"
        )

        # A dropped socket reconnects, resubscribes, and updates keep coming.
        loaded = int(browser.evaluate("document.body.dataset.loaded"))
        browser.evaluate("window.cryptoviz.live.ws.close()")
        browser.wait_for("document.body.dataset.reconnects === '1'", timeout=5)
        browser.wait_for(
            f"Number(document.body.dataset.loaded) > {loaded} && "
            "(document.body.dataset.subscribed || '').includes('ticker:BTC/USD')",
            timeout=15,
        )
        _produce_until_shown(browser, producer, topic, round(stored + 60.75, 2))
        assert browser.evaluate("window.__sameDocument === true")

        browser.evaluate("window.scrollTo(0, 0)")
        screenshot = (
            DOC_SCREENSHOT if os.environ.get(REFRESH_SCREENSHOT) else tmp_path / "dashboard.png"
        )
        browser.screenshot(screenshot, full_page=True)

        # The selectors: another coin follows other channels; another period, other candles.
        for select, value in (("coin", "ETH"), ("periode", "7d")):
            loaded = int(browser.evaluate("document.body.dataset.loaded"))
            browser.evaluate(
                f"(() => {{ const s = document.getElementById('{select}'); s.value = '{value}';"
                " s.dispatchEvent(new Event('change')); })()"
            )
            browser.wait_for(f"Number(document.body.dataset.loaded) > {loaded}", timeout=10)
        browser.wait_for(
            "(s => s.includes('ticker:ETH/USD') && !s.includes('ticker:BTC/USD'))"
            "(document.body.dataset.subscribed || '')",
            timeout=10,
        )
        assert browser.evaluate("document.getElementById('pair-title').textContent") == "ETH/USD"
        text = browser.evaluate("document.getElementById('last-price').textContent")
        assert text == _price_text(latest["ETH/USD"])
        assert 24 <= browser.evaluate("window.cryptoviz.state.candles.length") <= 26  # 1 h each
        assert browser.evaluate("location.search") == "?coin=ETH&pair=ETH%2FUSD&periode=7d"

        # The sentiment chart covers the whole selected period, hour by hour.
        loaded = int(browser.evaluate("document.body.dataset.loaded"))
        browser.evaluate(
            "(() => { const s = document.getElementById('coin'); s.value = 'BTC';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        browser.wait_for(f"Number(document.body.dataset.loaded) > {loaded}", timeout=10)
        # 30 d first: the page is left on 7 d, which the history-only check below expects.
        for periode, hours in (("30d", 720), ("7d", 168)):
            loaded = int(browser.evaluate("document.body.dataset.loaded"))
            browser.evaluate(
                f"(() => {{ const s = document.getElementById('periode'); s.value = '{periode}';"
                " s.dispatchEvent(new Event('change')); })()"
            )
            browser.wait_for(f"Number(document.body.dataset.loaded) > {loaded}", timeout=10)
            span = browser.evaluate("window.cryptoviz.state.sentimentSpan")
            assert span["rows"] == hours, span
            assert span["last"] - span["first"] == (hours - 1) * 3600
            assert now.timestamp() - span["first"] <= hours * 3600 + 3600
            assert span["articles"] > 0

        # Phone width: one column, nothing wider than the screen.
        browser.viewport(390, 844)
        browser.wait_for(
            "document.getElementById('price-chart').getBoundingClientRect().width < 390", 5
        )
        assert browser.evaluate("document.documentElement.scrollWidth") <= 390
        assert browser.wait_for(f"{CANDLE_PIXELS} > 300 && {CANDLE_PIXELS}", timeout=10)
        browser.screenshot(tmp_path / "dashboard-390.png", full_page=True)

        # A coin with history only (an import of January 2024): the period ending at its
        # latest price, and a note saying so, instead of an empty chart.
        loaded = int(browser.evaluate("document.body.dataset.loaded"))
        browser.evaluate(
            "(() => { const s = document.getElementById('coin'); s.value = 'SOL';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        browser.wait_for(f"Number(document.body.dataset.loaded) > {loaded}", timeout=10)
        assert browser.evaluate("document.getElementById('pair-title').textContent") == "SOL/USD"
        assert 6 <= browser.evaluate("window.cryptoviz.state.candles.length") <= 8  # 1 h each
        assert browser.evaluate(f"{source}.textContent") == (
            "No price in the last 7d: showing the 7d up to 2024-01-31T23:55:01Z"
        )

        # Without a selection in the URL the page opens on BTC, though ETH ticked last.
        assert browser.goto(f"http://127.0.0.1:{port}/") == 200
        browser.wait_for("document.body.dataset.loaded", timeout=15)
        assert browser.evaluate("window.cryptoviz.state.coin") == "BTC"
        assert "coin=BTC" in browser.evaluate("location.search")

        errors = browser.errors()
        assert errors == [], "\n".join(errors)
    assert screenshot.stat().st_size > 20_000
