"""Committed result rows reach the live topics as JSON keyed by coin."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from spark_batch.publish import ResultPublisher
from spark_batch.writer import PREDICTION, SENTIMENT
from tests.flows.conftest import read_all

END = datetime(2026, 11, 1, 12, 5, tzinfo=UTC)


def _sentiment_row() -> tuple[object, ...]:
    values = {
        "timestamp": END, "window_start": END.replace(minute=0), "crypto_symbol": "BTC",
        "sentiment_score": 0.75, "sentiment_label": "positive", "source": "aggregated_articles",
        "confidence": 0.5, "article_count": 3,
    }  # fmt: skip
    return tuple(values.get(c) for c in SENTIMENT.columns)


@pytest.mark.integration
def test_rows_are_published_as_json_keyed_by_coin(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("sentiment")
    publisher = ResultPublisher(kafka_bootstrap, topic, SENTIMENT.columns)
    publisher.publish([_sentiment_row(), _sentiment_row()])
    publisher.close()
    messages = read_all(kafka_bootstrap, topic)
    assert len(messages) == 2
    body = json.loads(messages[0][0] or b"")
    assert body["crypto_symbol"] == "BTC"
    assert body["sentiment_label"] == "positive"
    assert body["timestamp"] == "2026-11-01T12:05:00Z"
    assert publisher.failures == 0


def test_decimals_stay_exact_numbers() -> None:
    publisher = ResultPublisher("127.0.0.1:1", "prediction", PREDICTION.columns)
    row = tuple(
        Decimal("95063.57829916") if c == "predicted_price" else ("BTC" if c == "crypto_symbol"
                                                                   else None)
        for c in PREDICTION.columns
    )  # fmt: skip
    assert b'"predicted_price":95063.57829916' in publisher.encode(row)


def test_an_unreachable_broker_is_counted_not_raised() -> None:
    publisher = ResultPublisher("127.0.0.1:1", "prediction", SENTIMENT.columns)
    publisher.publish([_sentiment_row()])
    assert publisher.failures == 1
