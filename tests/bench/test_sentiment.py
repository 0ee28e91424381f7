"""The sentiment benchmark: its sets are what they claim, its arithmetic is right, and its
TextBlob scorer is exactly the label the RSS producer puts on an article."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bench.sentiment import (
    CRYPTO,
    evaluate,
    load_crypto,
    load_financial,
    macro_f1_gap,
    scorers,
    textblob_label,
)
from bench.tags import load_headlines
from flows.producers.news import parse_feed
from flows.producers.settings import FeedSpec
from tests.handlers._support import COINS


def test_the_financial_set_is_the_published_validation_split() -> None:
    items = load_financial()
    assert len(items) == 2388
    counts = {label: sum(i.label == label for i in items) for label in ("negative", "neutral")}
    counts["positive"] = sum(i.label == "positive" for i in items)
    assert counts == {"negative": 347, "neutral": 1566, "positive": 475}
    assert all("t.co/" not in i.text and i.text for i in items)


def test_the_crypto_set_labels_the_real_feed_items() -> None:
    items = load_crypto()
    real = {h.title for h in load_headlines() if h.origin == "real"}
    assert {i.text for i in items} == real
    for line in CRYPTO.read_text(encoding="utf-8").splitlines():
        assert json.loads(line)["url"].startswith("https://")


def test_evaluate_counts_a_known_confusion() -> None:
    truth = ["positive", "positive", "negative", "neutral", "neutral"]
    guess = ["positive", "neutral", "negative", "neutral", "positive"]
    figures = evaluate(truth, guess)  # type: ignore[arg-type]
    assert figures["accuracy"] == 0.6
    assert figures["confusion"]["positive"] == {"negative": 0, "neutral": 1, "positive": 1}
    assert figures["per_class"]["negative"] == {
        "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1
    }  # fmt: skip
    assert figures["per_class"]["positive"]["precision"] == 0.5
    assert figures["macro_f1"] == pytest.approx((1.0 + 0.5 + 0.5) / 3, abs=1e-4)
    with pytest.raises(ValueError, match="differ in length"):
        evaluate(truth, guess[:2])  # type: ignore[arg-type]


def test_the_bootstrap_gap_is_zero_for_the_same_scorer_and_positive_for_a_better_one() -> None:
    truth = ["positive", "negative", "neutral"] * 20
    same = macro_f1_gap(truth, truth, truth, resamples=50)  # type: ignore[arg-type]
    assert same == {"difference": 0.0, "ci95_low": 0.0, "ci95_high": 0.0}
    lazy = ["neutral"] * len(truth)
    better = macro_f1_gap(truth, truth, lazy, resamples=50)  # type: ignore[arg-type]
    assert better["ci95_low"] > 0.5


@pytest.mark.parametrize(
    "title",
    ["Bitcoin rallies to a wonderful record high", "Terrible losses hit ether traders",
     "Ethereum schedules an upgrade", "Crypto hardware wallets compared"],
)  # fmt: skip
def test_the_textblob_scorer_is_the_producers_label(title: str) -> None:
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<item><title>{title}</title><link>https://news.example.com/a</link></item>"
        "</channel></rss>"
    ).encode()
    spec = FeedSpec(name="t", url="https://news.example.com/feed")
    message = parse_feed(feed, spec, COINS, datetime(2026, 10, 1, tzinfo=UTC)).articles[0].message
    assert textblob_label(title) == message.sentiment.label


def test_every_scorer_gives_a_label() -> None:
    for name, scorer in scorers().items():
        for text in ("Stocks soar on great earnings", "Shares plunge after fraud charges", ""):
            assert scorer(text) in ("negative", "neutral", "positive"), name
