"""The configuration drives collection, end to end, on the real stack.

Real processes, as ``make up`` runs them: the Kraken producer (against the fake
Kraken v2 server of the producer tests: this machine has no internet), the news
producer (against a local feed that publishes one article about XRP and bitcoin
per poll), the ticker and article ingestion flows, the Spark analytics job and the
API, on real Kafka and PostgreSQL. Only BTC is tracked at first. The test adds XRP
through the API (with a key) and sees its ticks, its tags and its predictions and
sentiment arrive; then it deactivates XRP and sees all of them stop, while BTC goes
on. The latencies it measured are printed (``-s``).
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from infra._procs import descendants, free_port, log_tail
from infra.programs import PROGRAMS
from infra.settings import Settings, environment_of
from infra.topics import ensure_topics
from tests._wait import wait_for
from tests.flows.producers._servers import (
    FakeKraken,
    HttpServer,
    Market,
    Reply,
    kraken_trades_route,
)

# The whole stack with Spark, then two configuration changes each followed to the
# end: longer than the suite's default 600 s budget on a loaded machine.
pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
API_KEY = "e2e-config-key"
PROGRAM_NAMES = (
    "ingest-rawticker",
    "ingest-rawarticle",
    "producer-kraken",
    "producer-rss",
    "spark-analytics",
    "api",
)
PRICES = {"BTC/USD": Decimal("95000.5"), "ETH/USD": Decimal("3000.25"), "XRP/USD": Decimal("2.1")}
WITHIN_S = 60
"""The issue's bound: a change reaches every component within this, without restarts."""


class NewsFeed:
    """One more article about XRP and bitcoin per poll, published now."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, query: str, headers: dict[str, str]) -> Reply:
        with self.lock:
            n = len(self.items)
            date = email.utils.format_datetime(datetime.now(UTC), usegmt=True)
            self.items.append(
                f"<item><title>XRP jumps as bitcoin rallies, update {n}</title>"
                f"<guid isPermaLink='false'>e2e-{n}</guid>"
                f"<link>https://news.example.com/e2e/{n}</link><pubDate>{date}</pubDate>"
                "<description>Traders cheer a strong rally.</description></item>"
            )
            items = "".join(reversed(self.items[-50:]))
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>e2e</title><link>https://news.example.com/</link>{items}</channel></rss>"
        ).encode()
        return Reply(200, body, {"Content-Type": "application/rss+xml"})


def walk_prices(market: Market, stop: threading.Event) -> None:
    """Prices that move (the models need some variance)."""
    rng = random.Random(7)
    while not stop.wait(0.5):
        with market.lock:
            for pair, price in market.prices.items():
                step = Decimal(str(round(rng.gauss(0, 0.0005), 6)))
                market.prices[pair] = (price * (1 + step)).quantize(PRICES[pair])


@dataclass
class Programs:
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]]

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str) -> str:
        return log_tail(self.logs / f"{name}.log", 40)

    def tails(self) -> str:
        return "\n".join(f"--- {n}\n{self.tail(n)}" for n in self.procs)


@contextlib.contextmanager
def programs(env: dict[str, str], logs: Path) -> Iterator[Programs]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in PROGRAM_NAMES:
            program = PROGRAMS[name]
            port = free_port() if program.metrics_port is not None else None
            with (logs / f"{name}.log").open("wb") as log:
                procs[name] = subprocess.Popen(
                    program.command(metrics_port=port),
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        yield Programs(logs, procs)
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(1.0, deadline - time.monotonic()))
        for proc in procs.values():
            # Whatever is left of the group (Spark's JVM): gone for good.
            for pid in [proc.pid, *descendants(proc.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def api(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "X-API-Key": API_KEY},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/health/", timeout=10
        ) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class Database:
    def __init__(self, url: str) -> None:
        self.url = url

    def one(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(query, params).fetchone()
        return None if row is None else row[0]

    def counts(self, coin: str) -> dict[str, Any]:
        """What the pipeline has stored about ``coin`` so far."""
        return {
            "ticks": self.one("SELECT count(*) FROM ticker_data WHERE pair = %s", (f"{coin}/USD",)),
            "tagged": self.one(
                "SELECT count(*) FROM article_data WHERE %s = ANY(cryptocurrencies_mentioned)",
                (coin,),
            ),
            # What Spark writes, not what the backfill adds later (actual_price).
            "predictions": self.one(
                "SELECT count(*) || ' ' || coalesce(md5(string_agg(concat_ws(' ', "
                "timestamp, model_name, predicted_price, confidence_interval_low, "
                "confidence_interval_high), ',' ORDER BY timestamp, model_name)), '') "
                "FROM prediction_data WHERE crypto_symbol = %s",
                (coin,),
            ),
            "sentiment": self.one(
                "SELECT count(*) || ' ' || coalesce(max(updated_at)::text, '') "
                "FROM sentiment_data WHERE crypto_symbol = %s",
                (coin,),
            ),
        }


def requests_for(server: FakeKraken, method: str, pair: str) -> list[float]:
    """When the fake Kraken received ``method`` requests naming ``pair``."""
    found = []
    for at, request in zip(list(server.request_times), list(server.requests), strict=False):
        params = request.get("params")
        symbols = params.get("symbol", []) if isinstance(params, dict) else []
        if request.get("method") == method and pair in symbols:
            found.append(at)
    return found


def moved(db: Database, coin: str, what: str, before: Any) -> Callable[[], Any]:
    """A probe: ``coin``'s ``what`` (:meth:`Database.counts`) once it differs from ``before``."""

    def probe() -> Any:
        now = db.counts(coin)[what]
        return now if now != before else None

    return probe


FOLLOWERS = ("producer-kraken", "producer-rss", "spark-analytics")
"""The programs that follow crypto_configuration, each logging every change it applies."""


def tracks(running: Programs, name: str, coins: str) -> float | None:
    """Now, if the last set ``name`` logged it tracks is ``coins`` (``"BTC, XRP"``)."""
    lines = [
        line
        for line in (running.logs / f"{name}.log").read_text(errors="replace").splitlines()
        if f"tracking: {name} now tracks" in line
    ]
    return time.time() if lines and f"now tracks {coins} (" in lines[-1] else None


def received_since(db: Database, table: str, since: float) -> bool:
    """A row of ``table`` about BTC received after ``since`` (epoch s) is stored."""
    about = (
        "pair = 'BTC/USD'" if table == "ticker_data" else "'BTC' = ANY(cryptocurrencies_mentioned)"
    )
    return bool(
        db.one(
            f"SELECT count(*) FROM {table} WHERE {about} AND receive_time > to_timestamp(%s)",
            (since,),
        )
    )


def stored(db: Database, table: str, coin: str) -> Callable[[], Any]:
    return lambda: db.one(f"SELECT count(*) FROM {table} WHERE crypto_symbol = %s", (coin,))


def scenario(running: Programs, db: Database, kraken: FakeKraken, port: int) -> dict[str, float]:
    """Add XRP, see it arrive; deactivate it, see it stop. Returns the latencies (s)."""
    latency: dict[str, float] = {}

    def wait(probe: Callable[[], Any], timeout: float, what: str) -> Any:
        def check() -> Any:
            running.check()
            return probe()

        return wait_for(check, timeout, what, interval=1, explain=running.tails)

    # Warm: BTC flows end to end (ticks, tags, predictions), XRP nowhere.
    wait(lambda: healthy(port), 180, "the API")
    # Start-up (Spark's first batches above all) is not what is measured: generous.
    wait(lambda: db.counts("BTC")["ticks"], 300, "BTC ticks stored")
    wait(lambda: db.counts("BTC")["tagged"], 300, "articles tagged BTC")
    wait(stored(db, "prediction_data", "BTC"), 900, "BTC predictions")
    assert db.counts("XRP")["ticks"] == db.counts("XRP")["tagged"] == 0
    assert requests_for(kraken, "subscribe", "XRP/USD") == []

    # Add XRP through the API: its ticks, tags, sentiment and predictions arrive.
    added = time.time()
    assert api(port, "POST", "/api/v1/config/crypto/", {"symbol": "xrp", "name": "XRP"}) == 201
    subscribed = wait(
        lambda: requests_for(kraken, "subscribe", "XRP/USD"), WITHIN_S, "XRP subscribed"
    )
    latency["kraken subscribe"] = subscribed[0] - added
    for name in FOLLOWERS:
        at = wait(partial(tracks, running, name, "BTC, XRP"), WITHIN_S, f"{name} tracks XRP")
        latency[f"{name} applied (at most)"] = at - added
    wait(lambda: db.counts("XRP")["ticks"], WITHIN_S, "XRP ticks stored")
    latency["first XRP tick stored"] = time.time() - added
    wait(lambda: db.counts("XRP")["tagged"], WITHIN_S, "articles tagged XRP")
    latency["first article tagged XRP stored"] = time.time() - added
    wait(stored(db, "sentiment_data", "XRP"), 300, "XRP sentiment")
    latency["first XRP sentiment row"] = time.time() - added
    # Predictions need the coin's first window (or bars) of ticks: longer than the rest.
    wait(stored(db, "prediction_data", "XRP"), 420, "XRP predictions")
    latency["first XRP prediction row"] = time.time() - added

    # Deactivate it: everything about XRP stops; BTC goes on.
    removed = time.time()
    assert api(port, "PATCH", "/api/v1/config/crypto/XRP/", {"active": False}) == 200
    unsubscribed = wait(
        lambda: requests_for(kraken, "unsubscribe", "XRP/USD"), WITHIN_S, "XRP unsubscribed"
    )
    latency["kraken unsubscribe"] = unsubscribed[0] - removed
    # What was in flight when each program applied the change may still land: ticks
    # and articles already in Kafka, the Spark batches already running. Wait until
    # it has, then freeze XRP and see BTC go on while XRP stays as it is.
    untracked_at = {
        name: wait(partial(tracks, running, name, "BTC"), WITHIN_S, f"{name} untracks XRP")
        for name in FOLLOWERS
    }
    wait(lambda: received_since(db, "ticker_data", unsubscribed[0] + 2), 120, "newer BTC ticks")
    wait(
        lambda: received_since(db, "article_data", untracked_at["producer-rss"] + 2),
        120,
        "newer articles",
    )
    for what in ("sentiment", "predictions"):
        # Each Spark query runs its batches one after another: the second BTC write
        # seen after the change comes from a batch that began after it.
        seen = db.counts("BTC")[what]
        for _ in range(2):
            seen = wait(moved(db, "BTC", what, seen), 420, f"BTC {what} written")
    frozen, btc = db.counts("XRP"), db.counts("BTC")
    for what in ("ticks", "tagged", "sentiment", "predictions"):
        wait(moved(db, "BTC", what, btc[what]), 420, f"BTC {what} go on")
    assert db.counts("XRP") == frozen, "XRP stopped everywhere"
    newest = db.one(
        "SELECT cryptocurrencies_mentioned FROM article_data ORDER BY receive_time DESC LIMIT 1"
    )
    assert newest == ["BTC"], "the same headline, no longer tagged XRP"
    return latency


def test_adding_and_deactivating_a_coin_drives_ticks_tags_and_analytics(
    stack: Settings, fresh_db: str, tmp_path: Path
) -> None:
    assert stack.kafka.bootstrap_servers is not None
    topics = stack.kafka.topics.with_suffix(f"-e2e-{uuid.uuid4().hex[:8]}")
    ensure_topics(stack.kafka.bootstrap_servers, topics.all, stack.kafka.partitions)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE crypto_configuration SET active = (symbol = 'BTC')")
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    market = Market(symbols=tuple(PRICES), prices=dict(PRICES), trade_every_s=0.2)
    stop = threading.Event()
    walker = threading.Thread(target=walk_prices, args=(market, stop), daemon=True)
    with FakeKraken(market, heartbeat_s=0.5) as kraken, HttpServer() as http:
        http.routes["/0/public/Trades"] = kraken_trades_route(
            market, {"XBTUSD": "BTC/USD", "ETHUSD": "ETH/USD", "XRPUSD": "XRP/USD"}
        )
        http.routes["/news.xml"] = NewsFeed()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")},
            **environment_of(topics),
            "PYTHONPATH": str(REPO),
            "KAFKA_BOOTSTRAP_SERVERS": stack.kafka.bootstrap_servers,
            "DATABASE_URL": fresh_db,
            "CRYPTOVIZ_STATE_DIR": str(tmp_path / "state"),
            "CRYPTOVIZ_CACHE_DIR": str(stack.cache_dir),
            "CRYPTOVIZ_KRAKEN_WS_URL": kraken.url,
            "CRYPTOVIZ_KRAKEN_REST_URL": f"{http.base}/0/public/Trades",
            "CRYPTOVIZ_RSS_FEEDS": f"e2e={http.base}/news.xml",
            "CRYPTOVIZ_RSS_POLL_S": "1",
            "CRYPTOVIZ_API_PORT": str(port),
            "CRYPTOVIZ_API_KEYS": API_KEY,
            "CRYPTOVIZ_SPARK_DRIVER_MEMORY": "512m",
            "CRYPTOVIZ_SPARK_SHUFFLE_PARTITIONS": "2",
            # Short windows: a coin's first sentiment and prediction rows come sooner.
            "CRYPTOVIZ_SENTIMENT_WINDOW_S": "30",
            "CRYPTOVIZ_PREDICTION_WINDOW_S": "60",
        }
        walker.start()
        try:
            with programs(env, logs) as running:
                latency = scenario(running, Database(fresh_db), kraken, port)
        finally:
            stop.set()
    print("\nconfiguration change -> effect (s):", msgspec.json.encode(latency).decode())
