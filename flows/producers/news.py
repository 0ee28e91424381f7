"""RSS/Atom feed bytes -> ``rawarticle`` messages: the one parsing path for live and replay.

* ``feedparser`` on the raw bytes (never a URL or a path: it would fetch or open
  it), so it detects the encoding from the XML prolog and HTTP content type.
* Summaries are the entry's HTML reduced to clean text; titles too (entities,
  stray tags, trailing spaces).
* ``published_at`` from the parsed date, which feedparser already normalises to UTC
  from whatever offset the feed used; entries without a date get ``published_at``
  null and ``timestamp`` = first seen.
* Dedup keys: the GUID and the canonical URL (tracking parameters and fragment
  removed); an entry is new only if none of its keys was seen.
* Sentiment: TextBlob's default pattern analyzer (bundled lexicon, no corpora
  download): score = (polarity + 1) / 2, label by the seeds' rule, plus subjectivity.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import feedparser
from textblob import TextBlob

from flows.producers.settings import FeedSpec
from handlers import (
    DEFAULT_MAX_FUTURE,
    GENESIS,
    ArticleContent,
    ArticleMessage,
    ArticleSentiment,
    CoinTable,
    CryptoVizError,
    epoch_seconds,
    iso_utc,
    sentiment_label,
)

MAX_TITLE = 1000
MAX_SUMMARY = 20_000
MAX_URL = 2048

_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRACKING = re.compile(r"^(utm_.*|mc_(cid|eid)|fbclid|gclid|dclid|msclkid|ref_src|cmpid)$", re.I)


class FeedError(CryptoVizError):
    """A feed could not be fetched or parsed (the poller backs off)."""


# -- text ---------------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "iframe", "svg", "template"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "ul", "ol", "tr", "td", "th", "table", "blockquote",
         "section", "article", "header", "footer", "figure", "figcaption", "img", "hr",
         "h1", "h2", "h3", "h4", "h5", "h6", "pre"}
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
            self.parts.append(" ")  # what it hid separated the text around it
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML fragment: tags dropped, entities decoded, spaces collapsed."""
    if not html:
        return ""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = _CONTROL.sub(" ", "".join(parser.parts))
    return _SPACE.sub(" ", text).strip()


def canonical_url(url: str) -> str | None:
    """``url`` without tracking parameters, fragment or default port; ``None`` if not http(s)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    netloc = parts.hostname.lower()
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        netloc += f":{port}"
    query = urllib.parse.urlencode(
        [
            (k, v)
            for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            if not _TRACKING.match(k)
        ]
    )
    return urllib.parse.urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def sentiment(text: str) -> tuple[float, float]:
    """(score in [0, 1], subjectivity in [0, 1]) of ``text`` with TextBlob's pattern analyzer."""
    polarity, subjectivity = TextBlob(text).sentiment
    score = min(1.0, max(0.0, (float(polarity) + 1.0) / 2.0))
    return round(score, 6), round(min(1.0, max(0.0, float(subjectivity))), 6)


# -- entries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Article:
    message: ArticleMessage
    keys: tuple[str, ...]
    """Dedup keys: ``guid:...`` and/or ``url:...``."""


@dataclass(slots=True)
class ParsedFeed:
    articles: list[Article] = field(default_factory=list)
    skipped: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    """(reason, dedup keys) of entries that give no article."""
    warning: str | None = None
    """Set when feedparser found the feed malformed but still read entries."""


def _entry_time(entry: Any, now: datetime) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            # feedparser's *_parsed are UTC struct_times, already shifted from the
            # feed's own offset (e.g. "+0200" or "EST").
            moment = datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)
            if GENESIS <= moment <= now + DEFAULT_MAX_FUTURE:  # the handlers' rule
                return moment
            return None
    return None


def _entry_url(entry: Any) -> str | None:
    candidates = [entry.get("link")]
    guid = entry.get("id")
    if isinstance(guid, str) and guid.startswith(("http://", "https://")):
        candidates.append(guid)
    for raw in candidates:
        if isinstance(raw, str) and raw.strip():
            url = canonical_url(raw)
            if url is not None and len(url) <= MAX_URL:
                return url
    return None


def _summary_html(entry: Any) -> str:
    summary = entry.get("summary")
    if isinstance(summary, str) and summary.strip():
        return summary
    for content in entry.get("content") or ():
        value = content.get("value")
        if isinstance(value, str) and value.strip():
            return value
    return ""


def entry_keys(entry: Any) -> tuple[str, ...]:
    keys: list[str] = []
    guid = entry.get("id")
    if isinstance(guid, str) and guid.strip():
        keys.append("guid:" + guid.strip())
    link = entry.get("link")
    url = canonical_url(link) if isinstance(link, str) else None
    if url is not None:
        keys.append("url:" + url)
    return tuple(keys)


def article_from_entry(
    entry: Any, feed: FeedSpec, coins: CoinTable, now: datetime
) -> Article | tuple[str, tuple[str, ...]]:
    """One feed entry as an :class:`Article`, or (why not, its dedup keys)."""
    keys = entry_keys(entry)
    if not keys:
        return "no guid and no link", keys
    title = html_to_text(str(entry.get("title") or ""))[:MAX_TITLE].strip()
    if not title:
        return "no title", keys
    url = _entry_url(entry)
    if url is None:
        return "no http(s) link", keys
    summary = html_to_text(_summary_html(entry))[:MAX_SUMMARY].strip()
    published = _entry_time(entry, now)
    text = f"{title}.\n{summary}" if summary else title
    score, subjectivity = sentiment(text)
    host = urllib.parse.urlsplit(url).hostname or feed.name
    message = ArticleMessage(
        id=hashlib.sha256(keys[0].encode()).hexdigest()[:32],
        title=title,
        url=url,
        website=host.removeprefix("www."),
        content=ArticleContent(summary=summary),
        summary=summary,
        published_at=None if published is None else iso_utc(published),
        timestamp=None if published is None else epoch_seconds(published),
        cryptocurrencies_mentioned=coins.mentions(f"{title}\n{summary}"),
        sentiment=ArticleSentiment(
            score=score, label=sentiment_label(score), subjectivity=subjectivity
        ),
        receive_ts=epoch_seconds(now),
    )
    return Article(message, keys)


def parse_feed(
    content: bytes,
    feed: FeedSpec,
    coins: CoinTable,
    now: datetime,
    content_type: str | None = None,
) -> ParsedFeed:
    """Every entry of a feed document, oldest first. Raises :class:`FeedError` if unusable."""
    headers = {"content-location": feed.url}
    if content_type:
        headers["content-type"] = content_type
    # BytesIO: feedparser treats a bytes argument as a *file name* first.
    parsed = feedparser.parse(
        io.BytesIO(content), response_headers=headers, resolve_relative_uris=True
    )
    entries = list(parsed.get("entries") or [])
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if not entries and (problem is not None or not parsed.get("version")):
        reason = f"{type(problem).__name__}: {problem}" if problem else "not an RSS/Atom document"
        raise FeedError(f"feed {feed.name}: {reason}")
    out = ParsedFeed(warning=None if problem is None else f"{type(problem).__name__}: {problem}")
    for entry in entries:
        result = article_from_entry(entry, feed, coins, now)
        if isinstance(result, Article):
            out.articles.append(result)
        else:
            out.skipped.append(result)
    # Undated entries (no timestamp: ingestion stamps them) sort as received, i.e. last.
    out.articles.sort(key=lambda a: a.message.timestamp or epoch_seconds(now))
    return out


# -- HTTP ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchResult:
    status: int
    """200, or 304 (not modified: ``body`` is empty)."""
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None


def http_fetch(
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    timeout: float,
    max_bytes: int,
    user_agent: str,
) -> FetchResult:
    """Conditional GET with a per-read timeout *and* a total deadline (slow-drip servers)."""
    if not url.startswith(("http://", "https://")):
        raise FeedError(f"{url!r} is not an http(s) URL")
    headers = {
        "User-Agent": user_agent,
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, "
        "text/xml;q=0.8, */*;q=0.5",
    }
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (scheme checked)
    deadline = time.monotonic() + 2 * timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(65536):
                size += len(chunk)
                if size > max_bytes:
                    raise FeedError(f"GET {url}: larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FeedError(f"GET {url}: body not received within {2 * timeout:g} s")
                chunks.append(chunk)
            return FetchResult(
                status=response.status,
                body=b"".join(chunks),
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                content_type=response.headers.get("Content-Type"),
            )
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return FetchResult(status=304, etag=etag, last_modified=last_modified)
        raise FeedError(f"GET {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise FeedError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
