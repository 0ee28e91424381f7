"""rawarticle: seed and prototype news-article messages.

Only an id, a title and a sentiment score are required. The seeds' examples carry no
time (ARCHITECTURE.md) or neither time nor url (DOCUMENTATION_TECHNIQUE.md): such an
article is stamped with ``ctx.record_time``, when the pipeline first saw it, and its
``published_at`` stays unknown; without a url, an id that is one (the prototype's
scraper used the link as the id) serves as the url.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from handlers import _fields as F
from handlers._context import HandlerContext
from handlers._payload import run_handler
from handlers._records import ArticleRecord, Rejection, SentimentLabel

MAX_ID = 512
MAX_TITLE = 1000
MAX_SUMMARY = 20_000
MAX_URL = 2048
MAX_WEBSITE = 253
MAX_MENTIONS = 256
DEFAULT_SOURCE = "rss"
"""The source of an article that names no website (the table's default too)."""
POSITIVE_ABOVE = 0.6
NEGATIVE_BELOW = 0.4
LABELS: Mapping[str, SentimentLabel] = {
    "positive": "positive",
    "neutral": "neutral",
    "negative": "negative",
}
_URL = re.compile(r"https?://([^\s/?#@]+@)?(?P<host>[^\s/?#:@]+)(:[0-9]{1,5})?([/?#]\S*)?", re.I)


def sentiment_label(score: float) -> SentimentLabel:
    """The seeds' rule for a score in [0, 1]: > 0.6 positive, < 0.4 negative, else neutral."""
    if score > POSITIVE_ABOVE:
        return "positive"
    if score < NEGATIVE_BELOW:
        return "negative"
    return "neutral"


def _url_and_site(obj: F.Obj, article_id: str) -> tuple[str | None, str | None]:
    """The article's url (its own, else an id that is a URL, else None) and website."""
    url = F.text(obj, "url", "link", max_len=MAX_URL)
    if url is None:
        match = _URL.fullmatch(article_id) if len(article_id) <= MAX_URL else None
        url = None if match is None else article_id
    else:
        match = _URL.fullmatch(url)
        if match is None:
            raise F.fail("url", "must be an absolute http(s) URL", url)
    website = F.text(obj, "website", max_len=MAX_WEBSITE)
    if website is None and match is not None:
        website = match.group("host").lower().removeprefix("www.")
    return url, website


def _summary(obj: F.Obj) -> str:
    content = F.mapping(obj, "content")
    nested = None
    if content is not None:
        nested = F.text(
            content, "summary", max_len=MAX_SUMMARY, allow_empty=True, prefix="content."
        )
    top = F.text(obj, "summary", max_len=MAX_SUMMARY, allow_empty=True)
    return nested or top or ""


def _mentions(obj: F.Obj, ctx: HandlerContext, title: str, summary: str) -> tuple[str, ...]:
    raw = obj.get("cryptocurrencies_mentioned")
    if raw is None:
        return ctx.coins.mentions(f"{title}\n{summary}")
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise F.fail("cryptocurrencies_mentioned", "must be an array of strings", raw)
    if len(raw) > MAX_MENTIONS:
        raise F.Invalid(
            f"field 'cryptocurrencies_mentioned': must have at most {MAX_MENTIONS} entries, "
            f"got {len(raw)}",
            "cryptocurrencies_mentioned",
        )
    symbols: dict[str, None] = {}
    for item in raw:
        symbol = ctx.coins.coin(item)
        if symbol is not None:
            symbols.setdefault(symbol, None)
    return tuple(symbols)


def article_from_object(obj: F.Obj, ctx: HandlerContext) -> ArticleRecord:
    """Validate one decoded article message; raises ``Invalid``.

    ``cryptocurrencies_mentioned`` is canonicalised (unknown names dropped); when
    the field is absent the coins are found in the title and summary instead. The
    record's time is the article's own (``published_at``, else ``timestamp``), else
    ``ctx.record_time``; an article with neither is refused.
    """
    article_id = F.required_text(obj, "id", "article_id", max_len=MAX_ID)
    title = F.required_text(obj, "title", max_len=MAX_TITLE)
    url, website = _url_and_site(obj, article_id)
    summary = _summary(obj)
    published = F.time(obj, "published_at", ctx=ctx) or F.time(obj, "timestamp", ctx=ctx)
    time = published or ctx.record_time
    if time is None:
        raise F.Invalid(
            "missing published_at/timestamp, and no record time to stamp the article with",
            "published_at",
        )
    sentiment = F.mapping(obj, "sentiment")
    if sentiment is None:
        raise F.missing(("score",), "sentiment.")
    score = float(F.required_number(sentiment, "score", kind="unit", prefix="sentiment."))
    label = F.choice(sentiment, "label", LABELS, prefix="sentiment.")
    subjectivity = F.number(sentiment, "subjectivity", kind="unit", prefix="sentiment.")
    return ArticleRecord(
        article_id=article_id,
        time=time,
        published_at=published,
        title=title,
        url=url,
        website=website,
        summary=summary,
        cryptocurrencies_mentioned=_mentions(obj, ctx, title, summary),
        sentiment_score=score,
        sentiment_label=label or sentiment_label(score),
        subjectivity=None if subjectivity is None else float(subjectivity),
        receive_time=F.time(obj, "receive_ts", ctx=ctx),
        source=F.source(obj, website or DEFAULT_SOURCE),
    )


def parse_article(payload: bytes, ctx: HandlerContext) -> ArticleRecord | Rejection:
    """A ``rawarticle`` payload as an :class:`ArticleRecord`, or why not."""
    return run_handler(article_from_object, payload, ctx)
