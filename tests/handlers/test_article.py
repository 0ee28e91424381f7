"""rawarticle: seed and prototype shapes, mentions, sentiment labels, rejections."""

from __future__ import annotations

from typing import Any

import pytest

from handlers import ArticleRecord, Rejection, parse_article, record_context, sentiment_label
from tests.handlers._support import COINS, ctx, encode, ok, rejected, seed, utc, variant


def test_seed_article() -> None:
    record = ok(parse_article(encode(seed("rawarticle", "seed")), ctx()), ArticleRecord)
    assert record == ArticleRecord(
        article_id="cointelegraph_1764313285",
        time=utc(2025, 11, 28, 7, 1, 25),
        published_at=utc(2025, 11, 28, 7, 1, 25),
        title="Bitcoiners accuse JPMorgan...",
        url="https://cointelegraph.com/news/bitcoiners-accuse-jpmorgan",
        website="cointelegraph.com",
        summary="...",
        cryptocurrencies_mentioned=("BTC", "ETH"),
        sentiment_score=0.993,
        sentiment_label="positive",
        source="cointelegraph.com",
    )


def test_prototype_article() -> None:
    record = ok(parse_article(encode(seed("rawarticle", "prototype")), ctx()), ArticleRecord)
    assert record == ArticleRecord(
        article_id="https://coindesk.com/article-123",
        time=utc(2024, 1, 15, 14, 30),
        published_at=utc(2024, 1, 15, 14, 30),
        title="Bitcoin hits new all-time high amid institutional adoption",
        url="https://www.coindesk.com/article-123",
        website="coindesk.com",
        summary="Bitcoin rallied as ETF inflows grew.",
        cryptocurrencies_mentioned=("BTC",),
        sentiment_score=0.8,
        sentiment_label="positive",
        subjectivity=0.35,
        source="coindesk.com",
    )


SEEN = utc(2026, 9, 30, 12, 0, 0, 500000)
"""A Kafka record time."""


def test_architecture_article_without_a_time_is_stamped_when_first_seen() -> None:
    payload = encode(seed("rawarticle", "architecture"))
    record = ok(parse_article(payload, record_context(COINS, SEEN)), ArticleRecord)
    assert record == ArticleRecord(
        article_id="cointelegraph_1764313285",
        time=SEEN,
        published_at=None,
        title="Bitcoiners accuse JPMorgan...",
        url="https://cointelegraph.com/news/...",
        website="cointelegraph.com",
        summary="...",
        cryptocurrencies_mentioned=("BTC", "ETH"),
        sentiment_score=0.993,
        sentiment_label="positive",
        source="cointelegraph.com",
    )


def test_documentation_article_without_url_takes_its_id_as_url() -> None:
    payload = encode(seed("rawarticle", "documentation"))
    record = ok(parse_article(payload, record_context(COINS, SEEN)), ArticleRecord)
    assert record == ArticleRecord(
        article_id="https://coindesk.com/article-123",
        time=SEEN,
        published_at=None,
        title="Bitcoin hits new all-time high...",
        url="https://coindesk.com/article-123",
        website="coindesk.com",
        cryptocurrencies_mentioned=("BTC",),
        sentiment_score=0.8,
        sentiment_label="positive",
        source="coindesk.com",
    )


def test_article_without_url_or_website_has_neither() -> None:
    payload = variant("rawarticle", "documentation", id="coindesk-123")
    record = ok(parse_article(payload, record_context(COINS, SEEN)), ArticleRecord)
    assert (record.url, record.website, record.source) == (None, None, "rss")


def test_an_article_time_of_its_own_wins_over_the_record_time() -> None:
    record = ok(parse_article(encode(seed("rawarticle", "seed")), ctx()), ArticleRecord)
    stamped = parse_article(encode(seed("rawarticle", "seed")), record_context(COINS, SEEN))
    assert stamped == record


def test_article_without_any_time_is_refused_only_without_a_record_time() -> None:
    payload = encode(seed("rawarticle", "architecture"))
    assert parse_article(payload, ctx()) == Rejection(
        reason="missing published_at/timestamp, and no record time to stamp the article with",
        field="published_at",
    )


def test_record_context_judges_future_times_from_the_record_time() -> None:
    later = variant("rawarticle", "seed", timestamp=SEEN.timestamp() + 2 * 86400)
    assert rejected(parse_article(later, record_context(COINS, SEEN))).field == "timestamp"


def _article(name: str = "seed", **changes: Any) -> ArticleRecord:
    return ok(parse_article(variant("rawarticle", name, **changes), ctx()), ArticleRecord)


def test_published_at_wins_over_timestamp() -> None:
    record = _article(published_at="2025-11-28T08:00:00+01:00")
    assert record.time == utc(2025, 11, 28, 7)


def test_mentions_are_canonical_deduplicated_and_ordered() -> None:
    names = ["ethereum", "bitcoin", "XBT", "btc", "unknowncoin", "ETH", "$sol", "Cardano"]
    assert _article(cryptocurrencies_mentioned=names).cryptocurrencies_mentioned == (
        "ETH",
        "BTC",
        "SOL",
        "ADA",
    )
    assert _article(cryptocurrencies_mentioned=[]).cryptocurrencies_mentioned == ()


def test_mentions_default_to_the_prose() -> None:
    record = _article(
        cryptocurrencies_mentioned=None,
        title="Solana and Ether rally",
        content={"summary": "Traders bought $LINK; the method is automatic."},
    )
    assert record.cryptocurrencies_mentioned == ("SOL", "ETH", "LINK")


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"sentiment": {"score": 0.5}}, "sentiment_label", "neutral"),
        ({"sentiment": {"score": 0.1}}, "sentiment_label", "negative"),
        ({"sentiment": {"score": 1}}, "sentiment_score", 1.0),
        ({"sentiment": {"score": 0.9, "label": "Negative"}}, "sentiment_label", "negative"),
        ({"sentiment": {"score": "0.25"}}, "sentiment_score", 0.25),
        ({"content": {"summary": ""}, "summary": "top"}, "summary", "top"),
        ({"content": None}, "summary", ""),
        ({"content": {"text": "full"}}, "summary", ""),
        ({"website": None}, "website", "cointelegraph.com"),
        (
            {"website": None, "url": "http://user@WWW.Example.org:8080/a?b#c"},
            "website",
            "example.org",
        ),
        ({"source": "CoinDesk RSS"}, "source", "CoinDesk RSS"),
        ({"title": "  padded title  "}, "title", "padded title"),
        ({"id": None, "article_id": "a-1"}, "article_id", "a-1"),
        ({"url": None, "link": "https://x.io/"}, "url", "https://x.io/"),
        ({"url": None}, "url", None),
        ({"url": None, "website": None}, "website", None),
        (
            {"url": None, "website": None, "id": "https://www.CoinDesk.com/a"},
            "website",
            "coindesk.com",
        ),
        ({"timestamp": 1764313285}, "published_at", utc(2025, 11, 28, 7, 1, 25)),
        ({"receive_ts": 1764313286.25}, "receive_time", utc(2025, 11, 28, 7, 1, 26, 250000)),
        ({"summary": "s" * 20_000, "content": None}, "summary", "s" * 20_000),
    ],
)
def test_accepted_variants(changes: dict[str, Any], field: str, expected: object) -> None:
    assert getattr(_article(**changes), field) == expected


REJECTIONS: list[tuple[dict[str, Any], str, str]] = [
    ({"id": None}, "id", "missing field 'id' or 'article_id'"),
    ({"id": 12}, "id", "field 'id': must be a string, got 12"),
    ({"id": "i" * 513}, "id", "field 'id': must be at most 512 characters, got 513"),
    ({"title": None}, "title", "missing field 'title'"),
    ({"title": "   "}, "title", "field 'title': must not be empty, got '   '"),
    ({"title": "t" * 1001}, "title", "field 'title': must be at most 1000 characters, got 1001"),
    ({"title": "a\x00b"}, "title", "field 'title': must not contain NUL characters"),
    (
        {"url": "ftp://x.org/a"},
        "url",
        "field 'url': must be an absolute http(s) URL, got 'ftp://x.org/a'",
    ),
    ({"url": "https://"}, "url", "field 'url': must be an absolute http(s) URL, got 'https://'"),
    (
        {"url": "https://x.org/" + "a" * 2040},
        "url",
        "field 'url': must be at most 2048 characters, got 2054",
    ),
    ({"website": ["x"]}, "website", "field 'website': must be a string, got an array"),
    ({"content": "text"}, "content", "field 'content': must be an object, got 'text'"),
    (
        {"content": {"summary": "s" * 20_001}},
        "content.summary",
        "field 'content.summary': must be at most 20000 characters, got 20001",
    ),
    ({"summary": 3}, "summary", "field 'summary': must be a string, got 3"),
    (
        {"timestamp": None},
        "published_at",
        "missing published_at/timestamp, and no record time to stamp the article with",
    ),
    (
        {"published_at": "2024-01-15T14:30:00"},
        "published_at",
        "field 'published_at': ISO-8601 time must carry a timezone offset or 'Z', "
        "got '2024-01-15T14:30:00'",
    ),
    ({"sentiment": None}, "sentiment.score", "missing field 'sentiment.score'"),
    ({"sentiment": {}}, "sentiment.score", "missing field 'sentiment.score'"),
    ({"sentiment": 0.5}, "sentiment", "field 'sentiment': must be an object, got 0.5"),
    (
        {"sentiment": {"score": 1.5}},
        "sentiment.score",
        "field 'sentiment.score': must be a finite number between 0 and 1, got 1.5",
    ),
    (
        {"sentiment": {"score": -0.1}},
        "sentiment.score",
        "field 'sentiment.score': must be a finite number between 0 and 1, got -0.1",
    ),
    (
        {"sentiment": {"score": 0.5, "label": "great"}},
        "sentiment.label",
        "field 'sentiment.label': must be one of 'positive', 'neutral', 'negative', got 'great'",
    ),
    (
        {"sentiment": {"score": 0.5, "subjectivity": 2}},
        "sentiment.subjectivity",
        "field 'sentiment.subjectivity': must be a finite number between 0 and 1, got 2",
    ),
    (
        {"cryptocurrencies_mentioned": "BTC"},
        "cryptocurrencies_mentioned",
        "field 'cryptocurrencies_mentioned': must be an array of strings, got 'BTC'",
    ),
    (
        {"cryptocurrencies_mentioned": ["BTC", 1]},
        "cryptocurrencies_mentioned",
        "field 'cryptocurrencies_mentioned': must be an array of strings, got an array",
    ),
    (
        {"cryptocurrencies_mentioned": ["BTC"] * 257},
        "cryptocurrencies_mentioned",
        "field 'cryptocurrencies_mentioned': must have at most 256 entries, got 257",
    ),
]


@pytest.mark.parametrize(("changes", "field", "reason"), REJECTIONS)
def test_rejections(changes: dict[str, Any], field: str, reason: str) -> None:
    rejection = rejected(parse_article(variant("rawarticle", "seed", **changes), ctx()))
    assert rejection == Rejection(reason=reason, field=field)


def test_lone_surrogate_text_is_rejected() -> None:
    # JSON cannot carry one (the decoder refuses it); an in-process object can.
    from handlers._article import article_from_object
    from handlers._fields import Invalid

    message = seed("rawarticle", "seed")
    message["title"] = "bad \ud800"
    with pytest.raises(Invalid, match="must be valid Unicode text"):
        article_from_object(message, ctx())


@pytest.mark.parametrize(
    ("score", "label"),
    [
        (1.0, "positive"),
        (0.61, "positive"),
        (0.6, "neutral"),
        (0.5, "neutral"),
        (0.4, "neutral"),
        (0.39, "negative"),
        (0.0, "negative"),
    ],
)
def test_sentiment_label_rule(score: float, label: str) -> None:
    assert sentiment_label(score) == label
