"""Spark writes the tracked coins only, read per micro-batch from crypto_configuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from infra.tracking import TrackedCoins
from tests._wait import wait_for

from .conftest import Harness

pytestmark = pytest.mark.spark

B = datetime(2025, 1, 1, 10, 0, tzinfo=UTC)


def article(ident: str, minute: float, mentioned: list[str]) -> dict[str, Any]:
    published = B + timedelta(minutes=minute)
    return {
        "id": ident,
        "title": f"article {ident}",
        "url": f"https://news.example/{ident}",
        "website": "news.example",
        "published_at": published.isoformat(),
        "timestamp": published.timestamp(),
        "cryptocurrencies_mentioned": mentioned,
        "sentiment": {"score": 0.75, "label": "positive"},
    }


def ticks(pair: str, price: float, minutes: int) -> list[dict[str, Any]]:
    """A tick every 5 s: enough closed windows (or bars) for every prediction design."""
    return [
        {"pair": pair, "last": price + i * 0.01, "timestamp": B.timestamp() + 5 * i}
        for i in range(minutes * 12)
    ]


def coins_of(h: Harness, table: str) -> dict[str, int]:
    rows = h.rows(f"SELECT crypto_symbol, count(*) FROM {table} GROUP BY 1")
    return {str(symbol): int(n) for symbol, n in rows}


def test_only_tracked_coins_are_written_and_a_change_applies_at_the_next_batch(
    harness: Harness,
) -> None:
    h = harness
    with psycopg.connect(h.url, autocommit=True) as db:
        db.execute("UPDATE crypto_configuration SET active = (symbol = 'BTC')")
    tracking = TrackedCoins(h.settings.coin_table(), h.url, poll_s=120, program="spark-test")
    with tracking:
        h.produce(h.topics.rawarticle, [article("a1", 1, ["BTC", "XRP"])])
        h.produce(h.topics.rawticker, ticks("BTC/USD", 100.0, 6) + ticks("XRP/USD", 2.0, 6))
        h.run("sentiment", "predictions", tracking=tracking)
        assert set(coins_of(h, "sentiment_data")) == {"BTC"}
        assert set(coins_of(h, "prediction_data")) == {"BTC"}

        with psycopg.connect(h.url, autocommit=True) as db:
            db.execute("INSERT INTO crypto_configuration (symbol, name) VALUES ('XRP', 'XRP')")
        wait_for(lambda: "XRP" in tracking.tracked.coins, 10, "XRP tracked")
        # The same window changes: XRP's row counts its mention from before it was tracked.
        h.produce(h.topics.rawarticle, [article("a2", 2, ["XRP"])])
        h.run("sentiment", tracking=tracking)
        rows = h.rows("SELECT article_count FROM sentiment_data WHERE crypto_symbol = 'XRP'")
        assert rows == [(2,)]

        with psycopg.connect(h.url, autocommit=True) as db:
            db.execute("UPDATE crypto_configuration SET active = false WHERE symbol = 'XRP'")
        wait_for(lambda: "XRP" not in tracking.tracked.coins, 10, "XRP no longer tracked")
        h.produce(h.topics.rawarticle, [article("a3", 3, ["XRP", "BTC"])])
        h.run("sentiment", tracking=tracking)
        counts = dict(h.rows("SELECT crypto_symbol, article_count FROM sentiment_data"))
        assert counts == {"BTC": 2, "XRP": 2}, "XRP's row no longer moves"
