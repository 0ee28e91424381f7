"""News feeds as a Bytewax source: one partition per feed, polled on a daemon thread.

Each partition polls its feed every ``poll_interval_s`` with a conditional GET
(ETag / Last-Modified); the request runs on its own daemon thread so a hanging
or slow feed delays nobody else, and ``next_batch`` never blocks. A failing feed
backs off exponentially (with jitter) on its own. The partition's recovery state
is its dedup keys and validators, so a restarted producer re-sends nothing it
already sent (Kafka acknowledged it before the state was committed: see
:mod:`flows.producers.kafka_edge`).

Articles are tagged with the tracked coins only (``cryptocurrencies_mentioned``):
each poll parses with the coin table of the tracked set at that moment
(:mod:`infra.tracking`, the ``crypto_configuration`` table followed live), so a coin
activated through the API is recognised from the next poll on, and a deactivated one
no longer is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.producers import _metrics as m
from flows.producers._util import Backoff, in_thread
from flows.producers.news import FeedError, FetchResult, ParsedFeed, http_fetch, parse_feed
from flows.producers.settings import FeedSpec, RssSettings
from handlers import ArticleMessage, CoinTable
from infra.tracking import TrackedCoins

log = logging.getLogger(__name__)

PENDING_WAKE = timedelta(milliseconds=50)

Fetch = Callable[[FeedSpec, str | None, str | None], FetchResult]
"""``fetch(feed, etag, last_modified)``; raises :class:`FeedError`."""


@dataclass(slots=True)
class FeedState:
    """Recovery state of one feed partition."""

    seen: list[str] = field(default_factory=list)
    """Dedup keys, oldest first (bounded by ``RssSettings.seen_capacity``)."""
    etag: str | None = None
    last_modified: str | None = None


class SeenKeys:
    """Insertion-ordered, bounded set of dedup keys."""

    def __init__(self, keys: list[str], capacity: int) -> None:
        self._keys: dict[str, None] = dict.fromkeys(keys)
        self._capacity = capacity
        self._trim()

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self._keys.pop(key, None)  # re-inserted: most recently seen last
            self._keys[key] = None
        self._trim()

    def _trim(self) -> None:
        while len(self._keys) > self._capacity:
            del self._keys[next(iter(self._keys))]

    def as_list(self) -> list[str]:
        return list(self._keys)


def new_articles(parsed: ParsedFeed, seen: SeenKeys, feed: str) -> list[ArticleMessage]:
    """The articles of ``parsed`` none of whose keys is in ``seen``; marks them all seen."""
    out: list[ArticleMessage] = []
    for article in parsed.articles:
        if any(key in seen for key in article.keys):
            seen.add(article.keys)  # a known GUID teaches us its URL, and vice versa
            continue
        seen.add(article.keys)
        out.append(article.message)
    for reason, keys in parsed.skipped:
        if keys and all(key in seen for key in keys):
            continue
        seen.add(keys)
        m.RSS_SKIPPED.labels(feed, reason).inc()
        log.warning("rss %s: entry skipped: %s (%s)", feed, reason, ", ".join(keys) or "no keys")
    return out


class FeedPartition(StatefulSourcePartition[ArticleMessage, FeedState]):
    def __init__(
        self,
        *,
        feed: FeedSpec,
        settings: RssSettings,
        tracking: TrackedCoins,
        resume: FeedState | None,
        fetch: Fetch,
    ) -> None:
        state = resume or FeedState()
        self._feed = feed
        self._s = settings
        self._tracking = tracking.acquire()
        self._closed = False
        self._fetch = fetch
        self._seen = SeenKeys(state.seen, settings.seen_capacity)
        self._etag = state.etag
        self._last_modified = state.last_modified
        self._backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        self._due = time.monotonic()
        self._pending: Future[FetchResult] | None = None
        self._deadline = None if settings.run_for_s is None else self._due + settings.run_for_s

    def next_batch(self) -> list[ArticleMessage]:
        now = time.monotonic()
        if self._deadline is not None and now >= self._deadline:
            raise StopIteration
        if self._pending is None:
            if now >= self._due:
                feed, etag, modified = self._feed, self._etag, self._last_modified
                self._pending = in_thread(
                    lambda: self._fetch(feed, etag, modified), f"rss-{feed.name}"
                )
            return []
        if not self._pending.done():
            return []
        future, self._pending = self._pending, None
        try:
            result = future.result()
            articles = self._accept(result)
        except FeedError as exc:
            self._failed(str(exc))
            return []
        except Exception as exc:  # a bug on one odd feed must not stop the other feeds
            log.exception("rss %s: unexpected error", self._feed.name)
            self._failed(f"{type(exc).__name__}: {exc}")
            return []
        self._backoff.reset()
        self._schedule(self._s.poll_interval_s)
        return articles

    def _accept(self, result: FetchResult) -> list[ArticleMessage]:
        name = self._feed.name
        if result.status == 304:
            m.RSS_POLLS.labels(name, "not_modified").inc()
            return []
        parsed = parse_feed(
            result.body, self._feed, self._tracking.table, datetime.now(UTC), result.content_type
        )
        if parsed.warning:
            log.warning("rss %s: malformed feed, read what parses: %s", name, parsed.warning)
        articles = new_articles(parsed, self._seen, name)
        self._etag, self._last_modified = result.etag, result.last_modified
        m.RSS_POLLS.labels(name, "ok").inc()
        m.RSS_ARTICLES.labels(name).inc(len(articles))
        if articles:
            log.info("rss %s: %d new articles", name, len(articles))
        return articles

    def _failed(self, reason: str) -> None:
        name = self._feed.name
        m.RSS_POLLS.labels(name, "error").inc()
        delay = self._backoff.next()
        log.warning("rss %s: %s; next try in %.1f s", name, reason, delay)
        self._schedule(delay)

    def _schedule(self, delay: float) -> None:
        self._due = time.monotonic() + delay

    def next_awake(self) -> datetime | None:
        now = datetime.now(UTC)
        if self._pending is not None:
            return now + PENDING_WAKE
        wait = max(0.0, self._due - time.monotonic())
        if self._deadline is not None:
            wait = min(wait, max(0.0, self._deadline - time.monotonic()))
        return now + timedelta(seconds=wait)

    def snapshot(self) -> FeedState:
        return FeedState(self._seen.as_list(), self._etag, self._last_modified)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._tracking.release()


class RssSource(FixedPartitionedSource[ArticleMessage, FeedState]):
    """New articles of every configured feed; one partition per feed.

    Tagged with the coins ``tracking`` tracks (default: the coin table's defaults).
    """

    def __init__(
        self,
        settings: RssSettings,
        coins: CoinTable,
        *,
        tracking: TrackedCoins | None = None,
        fetch: Fetch | None = None,
    ) -> None:
        self._s = settings
        self._tracking = tracking or TrackedCoins.fixed(coins)
        self._feeds = {feed.name: feed for feed in settings.feeds}
        self._fetch = fetch or self._http

    def _http(self, feed: FeedSpec, etag: str | None, last_modified: str | None) -> FetchResult:
        return http_fetch(
            feed.url,
            etag=etag,
            last_modified=last_modified,
            timeout=self._s.timeout_s,
            max_bytes=self._s.max_bytes,
            user_agent=self._s.user_agent,
        )

    def list_parts(self) -> list[str]:
        return list(self._feeds)

    def build_part(
        self, step_id: str, for_part: str, resume_state: FeedState | None
    ) -> FeedPartition:
        return FeedPartition(
            feed=self._feeds[for_part],
            settings=self._s,
            tracking=self._tracking,
            resume=resume_state,
            fetch=self._fetch,
        )
