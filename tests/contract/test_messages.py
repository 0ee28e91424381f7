"""Every message of the seed documents, produced verbatim to its topic and ingested.

The four ingestion workers run as under ``make up`` (``python -m flows.run
ingest-<topic>``) on this module's topics and database. Each seed message is
produced as the document shows it (with the key the document gives, if any), each
article twice (a producer retry): every one is stored once, none is dead-lettered,
and each stored row holds what the message says, in the columns the seeds name
(DOCUMENTATION_TECHNIQUE.md's table diagram). The Kraken frame goes through the
producer's parser first, as the prototype's ``kraken_producer.py`` did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from handlers import HandlerContext, TickerMessage, encode_message, parse_kraken_v1
from infra.settings import Settings, Topics
from tests._wait import wait_for
from tests.contract.conftest import FOUND, only, params, rows
from tests.contract.seeds import Example
from tests.flows.conftest import Worker, produce, read_all

pytestmark = pytest.mark.integration

TABLES = {
    "rawticker": "ticker_data",
    "rawtrade": "trade_data",
    "rawarticle": "article_data",
    "rawalert": "alert_data",
}
SEEN = datetime.now(UTC)


def _frame_message(frame: Example, coins: Any) -> TickerMessage:
    event = parse_kraken_v1(frame.text.encode(), HandlerContext(coins=coins, now=SEEN))
    assert event.rejections == (), event.rejections
    [message] = event.messages
    assert isinstance(message, TickerMessage)
    return message


@pytest.fixture(scope="module")
def ingested(
    stack: Settings,
    module_env: dict[str, str],
    module_topics: Topics,
    module_database: str,
    tmp_path_factory: Any,
) -> Iterator[str]:
    """This module's database once every seed message has been ingested."""
    bootstrap = stack.kafka.bootstrap_servers or ""
    coins = stack.coin_table()
    expected = dict.fromkeys(TABLES.values(), 0)
    for example in FOUND:
        if example.kind not in ("message", "kraken-frame") or example.topic is None:
            continue
        if example.kind == "kraken-frame":
            payloads = [encode_message(_frame_message(example, coins))]
        else:
            # Articles twice: a retried delivery is stored once.
            copies = 2 if example.topic == "rawarticle" else 1
            payloads = [example.text.encode()] * copies
        key = None if example.key is None else example.key.encode()
        produce(bootstrap, module_topics.of(example.topic), payloads, key=key)
        expected[TABLES[example.topic]] += 1
    logs = tmp_path_factory.mktemp("logs")
    workers = [
        Worker(f"ingest-{topic}", module_topics.of(topic), module_env, Path(logs) / topic).start()
        for topic in TABLES
    ]
    try:
        for table, count in expected.items():
            wait_for(
                lambda t=table, n=count: _count(module_database, t) >= n,  # type: ignore[misc]
                120,
                f"{count} rows in {table}",
            )
        # Both copies of each article read (the metric counts them) before checking there
        # was no second row and no dead letter.
        articles = 2 * expected["article_data"]
        wait_for(
            lambda: workers[2].metric("cryptoviz_ingest_messages_total") >= articles,
            60,
            "every article delivery read",
        )
        assert {t: _count(module_database, t) for t in expected} == expected
        assert read_all(bootstrap, module_topics.deadletter) == []
        yield module_database
    finally:
        for worker in workers:
            worker.stop()


def _count(url: str, table: str) -> int:
    return int(rows(url, f"SELECT count(*) AS n FROM {table}")[0]["n"])


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _number(value: object) -> Decimal:
    return Decimal(str(value))


@pytest.mark.parametrize("example", params("message", "kraken-frame"))
def test_seed_message_is_stored_as_documented(
    example: Example | None, ingested: str, stack: Settings
) -> None:
    seed = only(example)
    coins = stack.coin_table()
    if seed.kind == "kraken-frame":
        sent: dict[str, Any] = json.loads(encode_message(_frame_message(seed, coins)))
        # What the producer made of the frame: last = c[0], volume_24h = v[1].
        frame = json.loads(seed.text)
        assert (_number(sent["last"]), _number(sent["volume_24h"])) == (
            _number(frame[1]["c"][0]),
            _number(frame[1]["v"][1]),
        )
    else:
        sent = json.loads(seed.text)
    check = {
        "rawticker": _ticker,
        "rawtrade": _trade,
        "rawarticle": _article,
        "rawalert": _alert,
    }[seed.topic or ""]
    check(sent, ingested, coins)


def _ticker(sent: dict[str, Any], url: str, coins: Any) -> None:
    pair = coins.pair(sent["pair"])  # canonical: XBT/USD is stored as BTC/USD
    [row] = rows(
        url,
        "SELECT * FROM ticker_data WHERE pair = %s AND timestamp = %s",
        pair,
        _utc(sent["timestamp"]),
    )
    for key in ("last", "bid", "ask", "volume_24h", "pct_change"):
        expected = None if sent.get(key) is None else _number(sent[key])
        assert row[key] == expected, key
    # The prototype's pct_change is the change from the previous price, kept apart
    # from the exchange's 24 h change.
    assert row["change_24h_pct"] is None


def _trade(sent: dict[str, Any], url: str, coins: Any) -> None:
    [row] = rows(
        url,
        "SELECT * FROM trade_data WHERE pair = %s AND timestamp = %s",
        coins.pair(sent["pair"]),
        _utc(sent["timestamp"]),
    )
    assert (row["price"], row["volume"], row["side"]) == (
        _number(sent["price"]),
        _number(sent["volume"]),
        sent["side"],
    )


def _article(sent: dict[str, Any], url: str, coins: Any) -> None:
    [row] = rows(url, "SELECT * FROM article_data WHERE article_id = %s", sent["id"])
    link = sent.get("url") or (sent["id"] if sent["id"].startswith("http") else None)
    assert row["title"] == sent["title"]
    assert row["url"] == link
    assert row["website"] == (sent.get("website") or urlsplit(link).hostname)
    assert row["summary"] == (sent.get("content") or {}).get("summary", "")
    mentioned = [coins.coin(name) for name in sent["cryptocurrencies_mentioned"]]
    assert row["cryptocurrencies_mentioned"] == list(dict.fromkeys(mentioned))
    assert row["sentiment_score"] == sent["sentiment"]["score"]
    assert row["sentiment_label"] == sent["sentiment"]["label"]
    # Neither example has a time of its own: filed under the time the pipeline first
    # saw it (its Kafka append time), its publication time unknown.
    assert "timestamp" not in sent
    assert "published_at" not in sent
    assert row["published_at"] is None
    assert row["timestamp"] == row["kafka_time"]
    assert SEEN.replace(microsecond=0) <= row["timestamp"] <= row["ingest_time"]


def _alert(sent: dict[str, Any], url: str, coins: Any) -> None:
    [row] = rows(
        url,
        "SELECT * FROM alert_data WHERE pair = %s AND timestamp = %s",
        coins.pair(sent["pair"]),
        _utc(sent["timestamp"]),
    )
    assert row["last_price"] == _number(sent["last"])
    assert row["change_percent"] == _number(sent["change"])
    assert row["threshold"] == _number(sent["threshold"])
    assert row["alert_type"] == ("up" if sent["change"] > 0 else "down")
