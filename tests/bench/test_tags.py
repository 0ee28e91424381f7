"""The labelled headline set: the tagger meets its targets, and every component tags alike."""

from __future__ import annotations

import html
import io
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import msgspec
import pytest

from bench.tags import (
    TARGETS,
    Headline,
    load_headlines,
    load_set,
    load_table,
    run,
    score,
    set_files,
)
from flows.producers.news import html_to_text, parse_feed
from flows.producers.settings import FeedSpec
from handlers import ArticleRecord, encode_message, parse_article, record_context
from spark_batch.symbols import parsed_article

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
NOW = datetime(2026, 10, 1, tzinfo=UTC)
NOW_US = int(NOW.timestamp()) * 1_000_000
TABLE = load_table()
SET = load_set()
PER_FILE_FLOOR = 0.92


def test_the_set_is_large_varied_and_labelled_over_the_table() -> None:
    assert len(SET) >= 150
    kinds = {h.kind for h in SET}
    assert {"contained-name", "acronym", "common-word", "shouted", "plain"} <= kinds
    assert sum(h.origin == "real" for h in SET) >= 50
    symbols = {coin.symbol for coin in TABLE.coins}
    for headline in SET:
        assert set(headline.coins) <= symbols, headline
    assert len({h.title for h in SET}) == len(SET), "duplicate headlines"


def test_the_tagger_meets_the_targets_on_the_set() -> None:
    result = run(set_files(), REPO / "infra" / "coins.toml")
    assert result["micro"]["precision"] >= TARGETS["precision"], result["wrong"]
    assert result["micro"]["recall"] >= TARGETS["recall"], result["wrong"]
    assert result["meets_targets"]
    # Each file on its own keeps a floor, so a regression cannot hide in one batch behind
    # the others (blind-3 stays at precision 0.93: brand names such as "Raspberry Ripple",
    # left wrong rather than patched one phrase each; docs/ANALYTICS.md lists them).
    for name, figures in result["per_file"].items():
        assert figures["precision"] >= PER_FILE_FLOOR, name
        assert figures["recall"] >= PER_FILE_FLOOR, name
    assert result["cost_us_per_headline"] > 0


def test_the_blind_batches_are_in_the_set_with_their_own_origin() -> None:
    blind = [path for path in set_files() if path.name.startswith("blind_")]
    assert blind, "the blind batches sit next to the first set"
    for path in blind:
        items = load_headlines(path)
        assert {h.origin for h in items} == {path.stem.replace("_", "-")}, path.name
    assert any(h.summary for h in SET), "some items are a title with a summary"


def test_the_score_counts_pairs_as_labelled() -> None:
    # A known tagger on a known set: the arithmetic of the benchmark itself.
    items = [
        Headline("a", ("BTC",), "plain", "x"),
        Headline("b", ("BTC", "ETH"), "plain", "x"),
        Headline("c", (), "acronym", "x"),
    ]
    answers = {"a": ["BTC"], "b": ["BTC"], "c": ["ADA", "NOPE"]}
    result = score(lambda title: answers[title], items, ["BTC", "ETH", "ADA"])
    assert (result.micro.tp, result.micro.fp, result.micro.fn) == (2, 1, 1)
    assert result.per_coin["ETH"].fn == 1
    assert result.per_coin["ADA"].fp == 1
    assert result.micro.figures()["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert [w["title"] for w in result.wrong] == ["b", "c"]
    with pytest.raises(ValueError, match="not in the table"):
        score(lambda _: [], [Headline("d", ("NEAR",), "plain", "x")], ["BTC"])


def _feed(title: str, summary: str) -> bytes:
    description = f"<description>{html.escape(summary)}</description>" if summary else ""
    item = (
        f"<item><title>{html.escape(title)}</title>{description}"
        "<link>https://news.example.com/a</link><guid>g</guid></item>"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>'
        f"<link>https://news.example.com/</link>{item}</channel></rss>"
    ).encode()


def test_producer_handler_and_spark_tag_every_headline_alike() -> None:
    feed = FeedSpec(name="t", url="https://news.example.com/feed")
    for headline in SET:
        expected = TABLE.mentions(headline.text)
        # tags() stops scoring once a decision is known; explain() scores in full: same tags.
        explained = (m.symbol for m in TABLE.tagger.explain(headline.text) if m.counted)
        assert tuple(dict.fromkeys(explained)) == expected, headline.title
        parsed = parse_feed(_feed(headline.title, headline.summary), feed, TABLE, NOW)
        message = parsed.articles[0].message
        assert message.cryptocurrencies_mentioned == expected, headline.title
        # The ingestion handler, on a message that carries no tags (seed/prototype shape).
        untagged = msgspec.json.decode(encode_message(message))
        del untagged["cryptocurrencies_mentioned"]
        record = parse_article(msgspec.json.encode(untagged), record_context(TABLE, NOW))
        assert isinstance(record, ArticleRecord), record
        assert record.cryptocurrencies_mentioned == expected, headline.title
        spark = parsed_article(TABLE, msgspec.json.encode(untagged), NOW_US)
        assert spark is not None, headline.title
        assert tuple(spark[3]) == expected, headline.title


@pytest.mark.skipif(not (SHARED / "fixtures" / "real").is_dir(), reason="../shared not present")
def test_real_items_are_the_feeds_own_titles() -> None:
    titles: set[str] = set()
    for path in (SHARED / "fixtures" / "real" / "rss").glob("*.xml"):
        parsed = feedparser.parse(io.BytesIO(path.read_bytes()))
        titles |= {html_to_text(entry.title) for entry in parsed.entries}
    real = [h.title for h in SET if h.origin == "real"]
    assert real
    assert set(real) <= titles
