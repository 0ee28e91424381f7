"""Spark and ingestion agree on what an article is and when it happened.

On one article topic of the real broker: the seeds' two articles (no time of their
own; one without a url), each delivered twice, articles with a time, one tagged from
its prose, and articles ingestion refuses (no title, a bad url, an unknown label),
which Spark counted before it read articles with the ingestion handler. The
ingestion worker stores them; the Spark job (``python -m spark_batch.run --once
--query sentiment``, as deployed) counts them per coin and window. Then, through the
API: every window's ``article_count`` is the number of articles
``/api/v1/articles/{coin}/`` lists for that window, and every article listed is in
one window.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace import TracerProvider

from api import create_app
from api.context import utc_now
from infra.settings import Settings, Topics
from tests._wait import wait_for
from tests.api.conftest import test_api_settings
from tests.contract.conftest import FOUND, MISSING, REPO, rows
from tests.flows.conftest import Worker, produce

pytestmark = [pytest.mark.integration, pytest.mark.spark]

MICROSECOND = timedelta(microseconds=1)


def _articles(now: datetime) -> tuple[list[bytes], int]:
    """The payloads to produce, and how many distinct articles ingestion stores."""
    seeds = [e.text.encode() for e in FOUND if e.kind == "message" and e.topic == "rawarticle"]
    assert len(seeds) == 2

    def article(**fields: Any) -> bytes:
        return json.dumps({"sentiment": {"score": 0.3}, **fields}).encode()

    timed = [
        article(id="sol-1", title="Solana upgrade", url="https://x.io/sol-1",
                cryptocurrencies_mentioned=["SOL", "bitcoin"],
                published_at=(now - timedelta(minutes=2)).isoformat()),
        article(id="prose-1", title="Ethereum staking grows", url="https://x.io/prose-1",
                timestamp=(now - timedelta(minutes=1)).timestamp()),
    ]  # fmt: skip
    refused = [
        article(id="no-title", cryptocurrencies_mentioned=["BTC"], timestamp=now.timestamp()),
        article(id="bad-url", title="t", url="ftp://x", cryptocurrencies_mentioned=["BTC"]),
        article(id="bad-label", title="t", cryptocurrencies_mentioned=["ETH"],
                sentiment={"score": 0.5, "label": "great"}),
    ]  # fmt: skip
    return [*seeds, *seeds, *timed, *refused], len(seeds) + len(timed)


@pytest.mark.skipif(not FOUND, reason=MISSING)
def test_every_window_counts_exactly_the_articles_the_route_lists(
    stack: Settings,
    module_env: dict[str, str],
    module_topics: Topics,
    module_database: str,
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    payloads, stored = _articles(now)
    produce(stack.kafka.bootstrap_servers or "", module_topics.rawarticle, payloads)
    worker = Worker("ingest-rawarticle", module_topics.rawarticle, module_env, tmp_path / "w")
    worker.start()
    try:
        wait_for(
            lambda: (
                rows(module_database, "SELECT count(*) AS n FROM article_data")[0]["n"] == stored
            ),
            120,
            f"{stored} articles stored",
        )
    finally:
        worker.stop()
    env = {
        **module_env,
        "CRYPTOVIZ_SPARK_MASTER": "local[2]",
        "CRYPTOVIZ_SPARK_SHUFFLE_PARTITIONS": "2",
        "CRYPTOVIZ_SPARK_DRIVER_MEMORY": "512m",
        "CRYPTOVIZ_SPARK_LOG_LEVEL": "error",
    }
    spark = subprocess.run(
        [sys.executable, "-m", "spark_batch.run", "--once", "--query", "sentiment"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert spark.returncode == 0, spark.stderr[-3000:]

    windows = rows(
        module_database,
        "SELECT crypto_symbol, window_start, timestamp, article_count FROM sentiment_data",
    )
    mentions = rows(
        module_database,
        "SELECT unnest(cryptocurrencies_mentioned) AS coin, article_id FROM article_data",
    )
    assert {w["crypto_symbol"] for w in windows} == {"BTC", "ETH", "SOL"}
    app = create_app(
        stack.with_servers(database=module_database),
        test_api_settings(),
        tracer_provider=TracerProvider(),
        clock=utc_now,
    )
    start = (now - timedelta(hours=1)).isoformat()
    end = (now + timedelta(hours=1)).isoformat()
    with TestClient(app) as client:

        def listed(coin: str, since: str, until: str) -> list[str]:
            body = client.get(
                f"/api/v1/articles/{coin}/", params={"date_debut": since, "date_fin": until}
            ).json()
            assert body["next"] is None
            return [a["article_id"] for a in body["data"]]

        # A window counts exactly the articles listed for its coin and period...
        for window in windows:
            ids = listed(
                window["crypto_symbol"],
                window["window_start"].isoformat(),
                (window["timestamp"] - MICROSECOND).isoformat(),  # windows end exclusive
            )
            assert len(ids) == window["article_count"], (window, ids)
        # ...and every article listed for a coin is counted in one of its windows.
        for coin in ("BTC", "ETH", "SOL"):
            counted = sum(w["article_count"] for w in windows if w["crypto_symbol"] == coin)
            ids = listed(coin, start, end)
            assert sorted(ids) == sorted(m["article_id"] for m in mentions if m["coin"] == coin)
            assert len(ids) == counted, coin
        # The windows, as the route serves them, say the same.
        served = client.get(
            "/api/v1/sentiment/BTC/historique/",
            params={"resolution": "window", "date_debut": start, "date_fin": end},
        ).json()
        assert sum(w["article_count"] for w in served["data"]) == len(listed("BTC", start, end))
    assert sum(w["article_count"] for w in windows) == len(mentions) == 6
