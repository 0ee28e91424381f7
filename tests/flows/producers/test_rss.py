"""The news producer flow against a local HTTP server, on TestingSink, with recovery."""

from __future__ import annotations

import email.utils
import itertools
import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main

from flows.producers.kafka_edge import Keyed
from flows.producers.rss import RssSource
from flows.producers.settings import FeedSpec, ProducerSettings, RssSettings
from flows.producers.workers import build_producer_flow
from handlers import ArticleRecord, CoinTable, HandlerContext, parse_article
from infra.settings import Settings
from infra.tracking import TrackedCoins
from tests._wait import wait_for
from tests.flows.producers._observe import Counters, logged
from tests.flows.producers._servers import HttpServer, Reply

LAST_MODIFIED = email.utils.format_datetime(datetime(2026, 5, 1, 12, tzinfo=UTC), usegmt=True)


def rss(items: str, encoding: str = "UTF-8") -> bytes:
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?><rss version="2.0"><channel>'
        f"<title>t</title><link>https://n.example.com/</link>{items}</channel></rss>"
    )
    return text.encode("cp1252" if encoding == "windows-1252" else "utf-8")


def item(guid: str, title: str, link: str, date: str = "Fri, 01 May 2026 10:00:00 +0000") -> str:
    return (
        f"<item><title>{title}</title><guid isPermaLink='false'>{guid}</guid>"
        f"<link>{link}</link><pubDate>{date}</pubDate>"
        f"<description><![CDATA[<p>{title} <b>today</b></p>]]></description></item>"
    )


class VersionedFeed:
    """Serves v1, answers 304 to its ETag twice, then serves v2 (new + duplicate items)."""

    def __init__(self) -> None:
        self.v1 = rss(
            item("a", "Bitcoin gains", "https://n.example.com/a?utm_source=rss")
            + item("b", "Ether steady", "https://n.example.com/b")
        )
        self.v2 = rss(
            item("c", "Solana excellent rally", "https://n.example.com/c")
            + item("b", "Ether steady (updated)", "https://n.example.com/b?utm_medium=x")
            + item("a", "Bitcoin gains", "https://n.example.com/a")
        )
        self.not_modified = 0
        self.conditional: list[tuple[str | None, str | None]] = []

    def __call__(self, query: str, headers: dict[str, str]) -> Reply:
        etag = headers.get("if-none-match")
        self.conditional.append((etag, headers.get("if-modified-since")))
        current = "v1" if self.not_modified < 2 else "v2"
        if etag == f'"{current}"':
            self.not_modified += 1
            return Reply(304)
        body = self.v1 if current == "v1" else self.v2
        headers = {"ETag": f'"{current}"', "Last-Modified": LAST_MODIFIED,
                   "Content-Type": "application/rss+xml"}  # fmt: skip
        return Reply(200, body, headers)


class Run:
    """What one run of the RSS worker counted (Prometheus) and logged."""

    def __init__(self, counted: Counters, records: list[logging.LogRecord]) -> None:
        self.polls = Counter(counted.deltas("cryptoviz_rss_polls_total"))
        """(feed, outcome) -> polls: ``ok``, ``not_modified`` or ``error``."""
        self.skipped = Counter(counted.deltas("cryptoviz_rss_entries_skipped_total"))
        """(feed, reason) -> entries skipped."""
        self.failures = [
            (str(feed), str(reason), float(str(delay)))
            for feed, reason, delay in logged(records, "rss %s: %s; next try in")
        ]
        """(feed, reason, seconds until the next try) of each failed poll, in order."""


def test_feeds_poll_conditionally_back_off_alone_and_never_resend(
    offline_settings: Settings, coins: CoinTable, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flows.producers")
    versioned = VersionedFeed()
    latin = rss(
        item("l1", "Bitcoin à 100 000 € : café", "https://n.example.com/l1"), "windows-1252"
    )
    odd = rss(
        "<item><title>Permalink only</title><guid isPermaLink='true'>https://n.example.com/p</guid>"
        "<pubDate>Fri, 01 May 2026 11:30:00 +0200</pubDate></item>"
        "<item><title>No link, no URL guid</title><guid isPermaLink='false'>x-1</guid></item>"
        "<item><title>Undated ADA news</title><link>https://n.example.com/undated</link></item>"
    )
    with HttpServer() as http:
        http.routes["/good.xml"] = versioned
        http.routes["/latin1.xml"] = lambda q, h: Reply(200, latin, {"Content-Type": "text/xml"})
        http.routes["/odd.xml"] = lambda q, h: Reply(200, odd)
        http.routes["/broken.xml"] = lambda q, h: Reply(200, b"<html><body>Service Unavailable")
        http.routes["/down.xml"] = lambda q, h: Reply(503, b"try later")
        http.routes["/hang.xml"] = lambda q, h: Reply(200, odd, delay_s=3.0)
        feeds = tuple(
            FeedSpec(name=name, url=f"{http.base}/{name}.xml")
            for name in ("good", "latin1", "odd", "broken", "down", "hang")
        )
        settings = RssSettings(
            feeds=feeds, poll_interval_s=0.25, timeout_s=0.4, backoff_initial_s=0.2,
            backoff_max_s=0.8, run_for_s=2.5,
        )  # fmt: skip
        recovery = tmp_path / "recovery"
        recovery.mkdir()
        init_db_dir(recovery, 1)
        runs: list[tuple[list[Keyed], Run]] = []
        for _ in range(2):
            out: list[Keyed] = []
            counted, mark = Counters(), len(caplog.records)
            source = RssSource(settings, coins)
            flow = build_producer_flow(
                "producer-rss",
                offline_settings,
                ProducerSettings(rss=settings),
                source=source,
                sink=TestingSink(out),
            )
            run_main(
                flow,
                epoch_interval=timedelta(milliseconds=100),
                recovery_config=RecoveryConfig(str(recovery)),
            )
            runs.append((out, Run(counted, caplog.records[mark:])))

    (first, stats), (second, stats2) = runs
    # As ingestion reads them: an undated article is stamped with its record time.
    seen = datetime.now(UTC)
    ctx = HandlerContext(coins=coins, now=seen, record_time=seen)
    records = [parse_article(r.value, ctx) for _k, r in first]
    assert all(isinstance(r, ArticleRecord) for r in records), records
    articles = {r.title: r for r in records if isinstance(r, ArticleRecord)}
    assert sorted(articles) == [
        "Bitcoin gains", "Bitcoin à 100 000 € : café", "Ether steady", "Permalink only",
        "Solana excellent rally", "Undated ADA news",
    ]  # fmt: skip
    assert len(first) == len(articles), "each article exactly once"
    assert {r.topic for _k, r in first} == {"rawarticle"}

    # Conditional GET: validators sent back, 304s counted, v2's duplicates dropped.
    assert versioned.not_modified >= 2
    assert ('"v1"', LAST_MODIFIED) in versioned.conditional
    assert articles["Bitcoin gains"].url == "https://n.example.com/a"
    assert articles["Solana excellent rally"].sentiment_label == "positive"
    assert articles["Solana excellent rally"].cryptocurrencies_mentioned == ("SOL",)
    assert articles["Permalink only"].url == "https://n.example.com/p"
    assert articles["Permalink only"].time == datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
    undated = next(
        v for _k, r in first if (v := msgspec.json.decode(r.value))["title"] == "Undated ADA news"
    )
    assert undated["published_at"] is None
    assert ("odd", "no http(s) link") in stats.skipped
    assert stats.skipped[("odd", "no http(s) link")] == 1, "logged once, not per poll"

    # Failing feeds back off alone (growing delays); the hanging one never blocked the rest.
    outcomes = stats.polls
    assert outcomes[("good", "ok")] + outcomes[("good", "not_modified")] >= 4
    for name in ("broken", "down", "hang"):
        assert outcomes[(name, "ok")] == 0, name
        assert outcomes[(name, "error")] >= 1, name
        delays = [d for feed, _reason, d in stats.failures if feed == name]
        assert all(b >= a * 0.99 or b >= 0.4 for a, b in itertools.pairwise(delays))
    assert any("503" in reason for feed, reason, _d in stats.failures if feed == "down")
    assert any("timed out" in reason for feed, reason, _d in stats.failures if feed == "hang")
    assert any("broken" in reason for feed, reason, _d in stats.failures if feed == "broken")

    # Restart: dedup keys and validators come back from recovery; nothing is re-sent.
    assert second == []
    assert stats2.polls[("good", "not_modified")] >= 1
    assert not any(feed == "odd" for feed, _ in stats2.skipped)


class GrowingFeed:
    """One more article about XRP and bitcoin at every poll, stamped with the poll's time."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def __call__(self, query: str, headers: dict[str, str]) -> Reply:
        n = len(self.items)
        date = email.utils.format_datetime(datetime.now(UTC), usegmt=True)
        self.items.append(item(f"g{n}", f"XRP jumps as bitcoin rallies, take {n}",
                               f"https://n.example.com/g{n}", date))  # fmt: skip
        body = rss("".join(reversed(self.items)))
        return Reply(200, body, {"Content-Type": "application/rss+xml"})


@pytest.mark.integration
def test_tags_follow_crypto_configuration(
    offline_settings: Settings, coins: CoinTable, fresh_db: str
) -> None:
    marks: dict[str, float] = {}
    feed = GrowingFeed()

    def after_polls(n: int) -> None:
        wait_for(lambda: len(feed.items) >= n, 60, f"{n} polls", interval=0.05)

    def configure() -> None:
        # Phases counted in polls (the flow may be slow to start on a loaded machine).
        with psycopg.connect(fresh_db, autocommit=True) as db:
            after_polls(4)
            marks["on"] = time.time()
            db.execute("INSERT INTO crypto_configuration (symbol, name) VALUES ('XRP', 'XRP')")
            after_polls(len(feed.items) + 15)
            marks["off"] = time.time()
            db.execute("UPDATE crypto_configuration SET active = false WHERE symbol = 'XRP'")

    out: list[Keyed] = []
    with HttpServer() as http:
        http.routes["/grow.xml"] = feed
        settings = RssSettings(
            feeds=(FeedSpec(name="grow", url=f"{http.base}/grow.xml"),),
            poll_interval_s=0.2,
            run_for_s=15.0,
        )
        tracking = TrackedCoins(coins, fresh_db, poll_s=120, program="producer-rss")
        source = RssSource(settings, coins, tracking=tracking)
        changer = threading.Thread(target=configure)
        changer.start()
        run_main(
            build_producer_flow(
                "producer-rss",
                offline_settings,
                ProducerSettings(rss=settings),
                source=source,
                sink=TestingSink(out),
            ),
            epoch_interval=timedelta(milliseconds=100),
        )
        changer.join()
    messages = [msgspec.json.decode(r.value) for _k, r in out]
    # receive_ts: when the producer parsed the article (pubDate has whole seconds only).
    tags = [(m["receive_ts"], tuple(m["cryptocurrencies_mentioned"])) for m in messages]
    assert tags == sorted(tags), "one article per poll, in order"
    assert len(tags) > 10
    assert "off" in marks, "the run ended before its last phase"
    settle = 1.0  # a notified change reaches the producer well within this
    before = {t for ts, t in tags if ts < marks["on"]}
    during = {t for ts, t in tags if marks["on"] + settle < ts < marks["off"]}
    after = {t for ts, t in tags if ts > marks["off"] + settle}
    # XRP is named only while it is tracked; bitcoin (tracked throughout) always.
    assert before == {("BTC",)}
    assert during == {("XRP", "BTC")}
    assert after == {("BTC",)}
