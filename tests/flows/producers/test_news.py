"""Feed parsing, text cleaning, sentiment and coin mentions: table tests, no servers."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.producers.news import (
    Article,
    FeedError,
    canonical_url,
    html_to_text,
    parse_feed,
    sentiment,
)
from flows.producers.rss import SeenKeys, new_articles
from flows.producers.settings import SAMPLES, FeedSpec
from handlers import (
    ArticleRecord,
    CoinTable,
    HandlerContext,
    encode_message,
    parse_article,
    sentiment_label,
)

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
FEED = FeedSpec(name="test", url="https://news.example.com/feed")


def rss(items: str, encoding: str = "UTF-8") -> str:
    return (
        f'<?xml version="1.0" encoding="{encoding}"?><rss version="2.0"><channel>'
        f"<title>t</title><link>https://news.example.com/</link>{items}</channel></rss>"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bitcoin and ETH rally", ("BTC", "ETH")),
        ("btc slips while xbt futures rise", ("BTC",)),
        ("Ethereum's ether outperforms", ("ETH",)),
        ("Something methodical about automatic methods", ()),
        ("MATIC holders migrate", ("POL",)),
        ("A solution for consoles", ()),
        ("SOL jumps 10%", ("SOL",)),
        ("the sol rises over the plaza", ()),
        ("$sol and $ada", ("SOL", "ADA")),
        ("Ada Lovelace invented programming", ()),
        ("Cardano (ADA) and Polkadot's DOT", ("ADA", "DOT")),
        ("Click the link below; dot-com era", ()),
        ("Chainlink LINK oracles", ("LINK",)),
        ("an avalanche of liquidations", ()),
        ("AVAX and Dogecoin", ("AVAX", "DOGE")),
    ],
)
def test_coin_mentions_match_whole_words_with_case_rules(
    coins: CoinTable, text: str, expected: tuple[str, ...]
) -> None:
    item = f"<item><title>{text}</title><link>https://news.example.com/a</link></item>"
    parsed = parse_feed(rss(item).encode(), FEED, coins, NOW)
    assert parsed.articles[0].message.cryptocurrencies_mentioned == expected


@pytest.mark.parametrize(
    ("score", "label"),
    [(1.0, "positive"), (0.61, "positive"), (0.6, "neutral"), (0.5, "neutral"),
     (0.4, "neutral"), (0.39, "negative"), (0.0, "negative")],
)  # fmt: skip
def test_sentiment_labels_follow_the_seed_rule(score: float, label: str) -> None:
    assert sentiment_label(score) == label


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Bitcoin hits an excellent record high; investors delighted", "positive"),
        ("Terrible crash: awful losses and angry, sad traders", "negative"),
        ("Ethereum developers schedule the next upgrade", "neutral"),
    ],
)
def test_sentiment_score_is_textblob_polarity_rescaled(text: str, label: str) -> None:
    from textblob import TextBlob

    score, subjectivity = sentiment(text)
    polarity, expected_subjectivity = TextBlob(text).sentiment
    assert score == pytest.approx((polarity + 1) / 2, abs=1e-6)
    assert subjectivity == pytest.approx(expected_subjectivity, abs=1e-6)
    assert sentiment_label(score) == label


def test_sentiment_needs_no_downloaded_corpora(tmp_path: Path) -> None:
    code = (
        "from flows.producers.news import sentiment; "
        "print(sentiment('Great gains, awful fees. The method works.'))"
    )
    env = {**os.environ, "NLTK_DATA": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run(  # noqa: PLW1510 (return code asserted)
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("(")


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>BTC climbed <strong>5%</strong>.</p><p>Next</p>", "BTC climbed 5%. Next"),
        ("Fish &amp; chips &#8211; &quot;quoted&quot; &nbsp;ok", 'Fish & chips \u2013 "quoted" ok'),
        ("<div>a<script>alert(1)</script>b<style>p{}</style></div>", "a b"),
        ("<img src='x.png'/>Caption<br>line", "Caption line"),
        ("  plain\n\ttext  ", "plain text"),
        ("", ""),
    ],
)
def test_html_is_reduced_to_clean_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        (
            "https://Example.com/a?utm_source=rss&utm_medium=x&id=3#top",
            "https://example.com/a?id=3",
        ),
        ("http://example.com:80/b?fbclid=1", "http://example.com/b"),
        ("https://example.com:8443", "https://example.com:8443/"),
        ("ftp://example.com/a", None),
        ("not a url", None),
    ],
)
def test_canonical_urls_drop_tracking_and_fragments(url: str, canonical: str | None) -> None:
    assert canonical_url(url) == canonical


def test_dates_are_converted_to_utc_and_missing_ones_left_to_ingestion(
    coins: CoinTable,
) -> None:
    items = (
        "<item><title>a</title><link>https://n.example.com/a</link>"
        "<pubDate>Fri, 01 May 2026 11:30:00 +0200</pubDate></item>"
        "<item><title>b</title><link>https://n.example.com/b</link>"
        "<pubDate>Fri, 01 May 2026 08:15:00 -0400</pubDate></item>"
        "<item><title>c</title><link>https://n.example.com/c</link></item>"
        "<item><title>d</title><link>https://n.example.com/d</link>"
        "<pubDate>Sun, 01 May 2050 00:00:00 +0000</pubDate></item>"
    )
    parsed = parse_feed(rss(items).encode(), FEED, coins, NOW)
    by_title = {a.message.title: a.message for a in parsed.articles}
    assert by_title["a"].published_at == "2026-05-01T09:30:00.000000Z"
    assert by_title["b"].published_at == "2026-05-01T12:15:00.000000Z"
    # No date: no time on the message; ingestion stamps it with its Kafka record time.
    assert (by_title["c"].published_at, by_title["c"].timestamp) == (None, None)
    assert by_title["c"].receive_ts == NOW.timestamp()
    assert by_title["d"].published_at is None, "a date far in the future is a feed error"
    assert [a.message.title for a in parsed.articles][:2] == ["a", "b"], "oldest first"


def test_entries_without_link_use_a_permalink_guid_or_are_skipped(coins: CoinTable) -> None:
    items = (
        '<item><title>guid only</title><guid isPermaLink="true">https://n.example.com/g</guid></item>'
        '<item><title>nothing</title><guid isPermaLink="false">abc-123</guid></item>'
        "<item><link>https://n.example.com/untitled</link></item>"
        "<item><description>no keys at all</description></item>"
    )
    parsed = parse_feed(rss(items).encode(), FEED, coins, NOW)
    assert [a.message.url for a in parsed.articles] == ["https://n.example.com/g"]
    reasons = sorted(reason for reason, _keys in parsed.skipped)
    assert reasons == ["no guid and no link", "no http(s) link", "no title"]


def test_non_utf8_feed_is_decoded_from_its_declared_encoding(coins: CoinTable) -> None:
    item = "<item><title>Bitcoin à 100 000 € : café “prudent”</title><link>https://n.example.com/x</link></item>"
    parsed = parse_feed(rss(item, "windows-1252").encode("cp1252"), FEED, coins, NOW)
    assert parsed.articles[0].message.title == "Bitcoin à 100 000 € : café “prudent”"


def test_broken_feeds_raise_and_damaged_ones_keep_their_good_entries(coins: CoinTable) -> None:
    with pytest.raises(FeedError, match="test"):
        parse_feed(b"<html><body>Service Unavailable", FEED, coins, NOW)
    damaged = rss(
        "<item><title>one</title><link>https://n.example.com/1</link></item>"
        "<item><title>two &bogus; entity</title><link>https://n.example.com/2</link></item>"
    ).encode()
    parsed = parse_feed(damaged, FEED, coins, NOW)
    assert parsed.warning is not None
    assert [a.message.title for a in parsed.articles] == ["one", "two &bogus; entity"]


def test_dedup_by_guid_or_canonical_url(coins: CoinTable) -> None:
    first = rss(
        "<item><title>A</title><guid>a</guid><link>https://n.example.com/a?utm_source=x</link></item>"
        "<item><title>B</title><link>https://n.example.com/b</link></item>"
    )
    second = rss(
        "<item><title>A again</title><guid>a</guid><link>https://n.example.com/a2</link></item>"
        "<item><title>B moved</title><guid>new</guid><link>https://n.example.com/b#c</link></item>"
        "<item><title>C</title><link>https://n.example.com/c</link></item>"
        "<item><title>C twice</title><link>https://n.example.com/c?utm_medium=y</link></item>"
    )
    seen = SeenKeys([], 100)
    got = [
        [m.title for m in new_articles(parse_feed(doc.encode(), FEED, coins, NOW), seen, "t")]
        for doc in (first, second)
    ]
    assert got == [["A", "B"], ["C"]]


def _round_trip(article: Article, coins: CoinTable) -> ArticleRecord:
    ctx = HandlerContext(coins=coins, now=NOW, record_time=NOW)  # as ingestion reads it
    record = parse_article(encode_message(article.message), ctx)
    assert isinstance(record, ArticleRecord), record
    return record


def test_sample_feed_articles_parse_back_with_the_ingestion_handler(coins: CoinTable) -> None:
    feed = SAMPLES / "news_feed.xml"
    parsed = parse_feed(feed.read_bytes(), FEED, coins, NOW)
    records = {r.title: r for r in (_round_trip(a, coins) for a in parsed.articles)}
    btc = records["Bitcoin rallies to a record high as ETF inflows surge"]
    assert btc.url == "https://news.example.com/markets/bitcoin-record-high"
    assert btc.summary.startswith("BTC climbed above $100,000 on strong")
    assert "track()" not in btc.summary
    assert btc.time == datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
    assert btc.sentiment_label == "positive"
    assert btc.cryptocurrencies_mentioned == ("BTC",)
    eth = records["Ethereum developers schedule the next upgrade"]
    assert eth.cryptocurrencies_mentioned == ("ETH",), "'method', 'something', 'automatic'"
    sol = records["Solana outage: terrible losses and angry traders"]
    assert sol.sentiment_label == "negative"
    assert sol.cryptocurrencies_mentioned == ("SOL",)
    bridge = records["Cardano and Polkadot teams announce a bridge"]
    assert bridge.cryptocurrencies_mentioned == ("ADA", "DOT", "LINK")
    assert bridge.url == "https://news.example.com/tech/ada-dot-bridge"


def test_real_feeds_parse_completely_and_dedup(shared_fixtures: Path, coins: CoinTable) -> None:
    rss_dir = shared_fixtures / "rss"
    expected = {
        "cointelegraph_rss_2026-09-30.xml": 30,
        "coindesk_rss_2026-09-30.xml": 25,
        "coindesk_rss_2026-09-25_3items.xml": 3,
    }
    for name, count in expected.items():
        parsed = parse_feed((rss_dir / name).read_bytes(), FEED, coins, NOW)
        assert len(parsed.articles) == count, name
        assert not parsed.skipped, name
        records = [_round_trip(a, coins) for a in parsed.articles]
        assert len({r.article_id for r in records}) == count
        assert all(r.url is not None for r in records), "the producer always gives the link"
        assert all("utm_" not in (r.url or "") and "<" not in r.summary for r in records)
        assert all(r.time.tzinfo is not None and r.time.year == 2026 for r in records)
        seen = SeenKeys([], 1000)
        assert len(new_articles(parsed, seen, name)) == count
        again = parse_feed((rss_dir / name).read_bytes(), FEED, coins, NOW)
        assert new_articles(again, seen, name) == []
    cointelegraph = parse_feed(
        (rss_dir / "cointelegraph_rss_2026-09-30.xml").read_bytes(), FEED, coins, NOW
    )
    # Cointelegraph's <link> carries utm_* parameters; its permalink GUID is the clean URL.
    assert all(a.keys[1] == f"url:{a.message.url}" for a in cointelegraph.articles)
    assert all(a.keys[0] == f"guid:{a.message.url}" for a in cointelegraph.articles)
    assert any(a.message.cryptocurrencies_mentioned for a in cointelegraph.articles)
