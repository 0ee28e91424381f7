"""The live Kraken producer against a local Kraken v2 server, into real Kafka.

One scripted session covers the issue's scenarios: status, acks (one symbol
rejected), snapshots then updates, heartbeats, a subscription that goes silent
while heartbeats continue, an abrupt drop, a dead (mute) link, an immediate drop,
a trade-id gap on the live feed, and the REST endpoint that fills gaps.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import cast

import msgspec
import psycopg
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main

from flows.producers.kafka_edge import Keyed
from flows.producers.kraken import KrakenSource
from flows.producers.settings import KrakenSettings, OutputSettings, ProducerSettings
from flows.producers.workers import build_producer_flow
from handlers import CoinTable
from infra.settings import Settings, Topics
from infra.tracking import TrackedCoins
from tests.flows.producers._observe import Counters, logged
from tests.flows.producers._servers import (
    ConnectionScript,
    FakeKraken,
    HttpServer,
    Market,
    kraken_trades_route,
)
from tests.flows.producers.conftest import read_records

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
SYMBOLS = ("BTC/USD", "ETH/USD", "ADA/USD")
PRICES = {
    "BTC/USD": Decimal("95000.1"),
    "ETH/USD": Decimal("3001.15"),
    "ADA/USD": Decimal("0.10035"),
}
REST_NAMES = {"XBTUSD": "BTC/USD", "ETHUSD": "ETH/USD", "ADAUSD": "ADA/USD"}
BACKOFF = 0.2


def kraken_settings(ws_url: str, rest_url: str, run_for_s: float) -> KrakenSettings:
    return KrakenSettings(
        ws_url=ws_url,
        rest_trades_url=rest_url,
        pairs=(*SYMBOLS, "DOGE/USD"),
        connect_timeout_s=2.0,
        heartbeat_timeout_s=0.5,
        ack_timeout_s=1.0,
        data_timeout_s=0.6,
        ping_interval_s=0.3,
        pong_timeout_s=1.0,
        backoff_initial_s=BACKOFF,
        backoff_max_s=5.0,
        healthy_after_s=2.0,
        rest_timeout_s=2.0,
        rest_retry_s=0.1,
        run_for_s=run_for_s,
    )


def ids_by_pair(trades: list[dict[str, object]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for trade in trades:
        out.setdefault(str(trade["pair"]), []).append(int(str(trade["trade_id"])))
    return out


@pytest.mark.integration
def test_every_trade_lands_exactly_once_through_drops_gaps_and_silence(
    stack: Settings,
    kafka_bootstrap: str,
    fresh_topics: Callable[[], Topics],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="flows.producers")
    market = Market(symbols=SYMBOLS, prices=dict(PRICES), hide={"BTC/USD": (40, 59)})
    scripts = {
        0: ConnectionScript(drop_after_s=3.0, silence=(("ticker", "ETH/USD"),)),
        1: ConnectionScript(mute=True),
        2: ConnectionScript(drop_after_s=0.05),
    }
    counted = Counters()
    topics = fresh_topics()
    with (
        # A 10-trade snapshot (Kraken sends 50) so every reconnect surely leaves a gap.
        FakeKraken(market, scripts=scripts, snapshot_depth=10) as server,
        HttpServer() as http,
    ):
        http.routes["/0/public/Trades"] = kraken_trades_route(market, REST_NAMES)
        settings = kraken_settings(server.url, f"{http.base}/0/public/Trades", run_for_s=8.5)
        producer = ProducerSettings(output=OutputSettings(linger_ms=1), kraken=settings)
        source = KrakenSource(settings, stack.coin_table())
        run_main(
            build_producer_flow(
                "producer-kraken", stack.with_topics(topics), producer, source=source
            )
        )
        connections = list(server.connections)

    trades = read_records(kafka_bootstrap, topics.rawtrade)
    tickers = read_records(kafka_bootstrap, topics.rawticker)
    decoded = [msgspec.json.decode(value or b"") for _k, value, _h in trades]

    # Every trade exactly once: per pair, consecutive ids from the first snapshot on.
    by_pair = ids_by_pair(decoded)
    assert set(by_pair) == set(SYMBOLS)
    for pair, ids in by_pair.items():
        assert len(ids) == len(set(ids)), f"{pair}: duplicates {Counter(ids).most_common(3)}"
        assert sorted(ids) == list(range(min(ids), max(ids) + 1)), f"{pair}: holes"
        assert len(ids) > 200
    assert set(range(1040, 1060)) <= set(by_pair["BTC/USD"]), "hidden trades were filled"

    # The live gap (hidden trades) and the reconnect gap were detected and filled over REST.
    jumps = logged(caplog.records, "%s: trade_id jumped")  # (pair, last id, next id, missing)
    assert ("BTC/USD", 1039, 1060, 20) in jumps, jumps
    assert counted("cryptoviz_kraken_trade_gaps_total") > 1, "pairs also lost trades too"
    missing = counted("cryptoviz_kraken_trades_missing_total")
    assert counted("cryptoviz_kraken_trades_filled_total") == missing >= 20
    assert counted("cryptoviz_kraken_trades_unrecoverable_total") == 0
    assert {r["pair"] for r in market.rest_requests} == {"XBTUSD", "ETHUSD", "ADAUSD"}

    # The silent subscription was found, renewed, and streamed again.
    assert counted.deltas("cryptoviz_kraken_silent_subscriptions_total") == {
        ("ticker", "ETH/USD"): 1
    }
    assert counted("cryptoviz_kraken_recovered_subscriptions_total", pair="ETH/USD") >= 1
    unsubscribes = [r for r in server.requests if r.get("method") == "unsubscribe"]
    assert unsubscribes
    assert unsubscribes[0]["params"] == {
        "channel": "ticker",
        "symbol": ["ETH/USD"],
    }

    # Rejected symbol logged with Kraken's text; requests are batched with explicit snapshot.
    rejected = logged(caplog.records, "kraken: %s subscription for %s rejected")
    assert ("ticker", "DOGE/USD", "Currency pair not supported DOGE/USD") in rejected
    assert counted("cryptoviz_kraken_rejected_subscriptions_total", channel="ticker") >= 1
    subscribes = [r for r in server.requests if r.get("method") == "subscribe"]
    first = subscribes[0]
    assert first["params"] == {
        "channel": "ticker", "symbol": [*SYMBOLS, "DOGE/USD"], "snapshot": True
    }  # fmt: skip
    assert isinstance(first["req_id"], int)
    assert counted("cryptoviz_kraken_pongs_total") >= 1
    statuses = counted.deltas("cryptoviz_kraken_status_total")
    assert statuses
    assert set(statuses) == {("online",)}

    # Drop, dead link, immediate drop: three reconnects whose waits grow.
    assert len(connections) >= 4
    reasons = [str(r[0]) for r in logged(caplog.records, "kraken: connection ended")][:3]
    assert reasons[0].startswith(("closed", "error")), reasons
    assert reasons[1].startswith("heartbeat"), reasons
    delays = [float(str(d[0])) for d in logged(caplog.records, "kraken: reconnecting in")][:3]
    assert BACKOFF / 2 <= delays[0] <= BACKOFF
    assert BACKOFF <= delays[1] <= 2 * BACKOFF
    assert 2 * BACKOFF <= delays[2] <= 4 * BACKOFF
    gaps = [b - a for a, b in itertools.pairwise(connections)]
    assert gaps[2] >= 2 * BACKOFF * 0.9, f"connects too fast: {gaps}"

    # Contract and precision: what lands is keyed, traced, and keeps 0.10035 exact.
    assert all(
        key == f"{d['pair']}".encode() for (key, _v, _h), d in zip(trades, decoded, strict=True)
    )
    assert all(TRACEPARENT.match(h["traceparent"]) for _k, _v, h in trades + tickers)
    ada = [v for k, v, _h in tickers if k == b"ADA/USD"]
    assert ada
    assert all(b'"last":0.10035,' in (v or b"") for v in ada)
    eth = [v for k, v, _h in tickers if k == b"ETH/USD"]
    assert len(eth) > 10


@pytest.mark.integration
def test_the_pairs_follow_crypto_configuration_on_the_live_socket(
    stack: Settings,
    kafka_bootstrap: str,
    fresh_db: str,
    fresh_topics: Callable[[], Topics],
) -> None:
    market = Market(
        symbols=("BTC/USD", "ETH/USD", "XRP/USD"),
        prices={"BTC/USD": PRICES["BTC/USD"], "ETH/USD": PRICES["ETH/USD"],
                "XRP/USD": Decimal("2.1")},
    )  # fmt: skip
    topics = fresh_topics()
    with psycopg.connect(fresh_db, autocommit=True) as db:
        db.execute("UPDATE crypto_configuration SET active = (symbol = 'BTC')")
    coins = stack.coin_table()
    # A long poll: the changes below arrive by notification.
    tracking = TrackedCoins(coins, fresh_db, poll_s=120, program="producer-kraken")
    marks: dict[str, float] = {}

    def configure() -> None:
        with psycopg.connect(fresh_db, autocommit=True) as db:
            time.sleep(3)
            marks["xrp"] = time.time()
            db.execute("INSERT INTO crypto_configuration (symbol, name) VALUES ('XRP', 'XRP')")
            time.sleep(3)
            marks["btc"] = time.time()
            db.execute("UPDATE crypto_configuration SET active = false WHERE symbol = 'BTC'")

    with FakeKraken(market) as server, HttpServer() as http:
        http.routes["/0/public/Trades"] = kraken_trades_route(market, REST_NAMES)
        settings = msgspec.structs.replace(
            kraken_settings(server.url, f"{http.base}/0/public/Trades", run_for_s=9.0),
            pairs=(),
            data_timeout_s=30.0,
        )
        producer = ProducerSettings(output=OutputSettings(linger_ms=1), kraken=settings)
        source = KrakenSource(settings, coins, tracking=tracking)
        changer = threading.Thread(target=configure)
        changer.start()
        run_main(
            build_producer_flow(
                "producer-kraken", stack.with_topics(topics), producer, source=source
            )
        )
        changer.join()
        requests = list(zip(server.request_times, server.requests, strict=True))
        connections = len(server.connections)

    asked = [
        (t, r["method"], cast(dict[str, object], r["params"])["channel"],
         cast(dict[str, object], r["params"])["symbol"])
        for t, r in requests if r["method"] in ("subscribe", "unsubscribe")
    ]  # fmt: skip
    # One connection throughout: BTC at the start, XRP added, then BTC removed, per channel.
    assert connections == 1
    assert [a[1:] for a in asked] == [
        ("subscribe", "ticker", ["BTC/USD"]),
        ("subscribe", "trade", ["BTC/USD"]),
        ("subscribe", "ticker", ["XRP/USD"]),
        ("subscribe", "trade", ["XRP/USD"]),
        ("unsubscribe", "ticker", ["BTC/USD"]),
        ("unsubscribe", "trade", ["BTC/USD"]),
    ]
    added, removed = asked[2][0] - marks["xrp"], asked[4][0] - marks["btc"]
    assert 0 <= added < 5, "XRP subscribed within seconds of its row"
    assert 0 <= removed < 5, "BTC unsubscribed within seconds of its update"

    tickers = [msgspec.json.decode(v or b"") for _k, v, _h in read_records(
        kafka_bootstrap, topics.rawticker)]  # fmt: skip
    trades = [msgspec.json.decode(v or b"") for _k, v, _h in read_records(
        kafka_bootstrap, topics.rawtrade)]  # fmt: skip
    pairs = Counter(str(m["pair"]) for m in tickers + trades)
    assert set(pairs) == {"BTC/USD", "XRP/USD"}, pairs  # ETH was never tracked
    assert pairs["XRP/USD"] > 10
    # Nothing of BTC stamped after its unsubscribe was sent (in-flight data is dropped).
    unsubscribed = asked[4][0]
    late = [m for m in tickers + trades
            if m["pair"] == "BTC/USD" and float(str(m["timestamp"])) > unsubscribed]  # fmt: skip
    assert late == []


def test_restart_neither_resends_nor_skips_trades(
    offline_settings: Settings, coins: CoinTable, tmp_path: Path
) -> None:
    """Recovery state = per-pair trade sequence: the snapshot replayed on the next start is
    deduplicated, and trades missed while the worker was down are fetched over REST."""
    market = Market(symbols=("BTC/USD",), prices={"BTC/USD": Decimal("95000.1")})
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    out: list[Keyed] = []
    runs: list[dict[str, float]] = []  # what each run counted
    with FakeKraken(market) as server, HttpServer() as http:
        http.routes["/0/public/Trades"] = kraken_trades_route(market, REST_NAMES)
        settings = kraken_settings(server.url, f"{http.base}/0/public/Trades", 1.2)
        producer = ProducerSettings(kraken=msgspec.structs.replace(settings, pairs=("BTC/USD",)))
        for pause in (0.0, 0.0, 1.5):
            # 0: first start; 1: restart at once (its 50-trade snapshot overlaps what was
            # sent); 2: restart after 1.5 s down (75 trades, more than a snapshot holds).
            time.sleep(pause)
            counted = Counters()
            source = KrakenSource(producer.kraken, coins)
            flow = build_producer_flow(
                "producer-kraken", offline_settings, producer, source=source, sink=TestingSink(out)
            )
            run_main(
                flow,
                epoch_interval=timedelta(milliseconds=100),
                recovery_config=RecoveryConfig(str(recovery)),
            )
            runs.append(
                {what: counted(f"cryptoviz_kraken_{what}_total")
                 for what in ("duplicate_trades", "trade_gaps", "trades_missing", "trades_filled")}
            )  # fmt: skip
    ids = [
        int(msgspec.json.decode(record.value)["trade_id"])
        for _key, record in out
        if record.topic == "rawtrade"
    ]
    assert len(ids) == len(set(ids)), "a restart re-sent trades"
    assert sorted(ids) == list(range(min(ids), max(ids) + 1)), "the downtime was not filled"
    assert runs[1]["duplicate_trades"] > 0
    assert not runs[1]["trade_gaps"]
    assert runs[2]["trade_gaps"]
    assert runs[2]["trades_filled"] == runs[2]["trades_missing"]
    assert len(server.connections) == 3


def test_after_maintenance_reconnects_wait_at_least_the_minimum_interval(
    offline_settings: Settings, coins: CoinTable, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flows.producers")
    market = Market(symbols=("BTC/USD",), prices={"BTC/USD": Decimal("95000.1")})
    scripts = {0: ConnectionScript(status="maintenance", drop_after_s=0.3)}
    with FakeKraken(market, scripts=scripts) as server:
        settings = msgspec.structs.replace(
            kraken_settings(server.url, "http://127.0.0.1:9/unused", 1.8),
            pairs=("BTC/USD",),
            backoff_initial_s=0.05,
            after_maintenance_s=0.8,
        )
        source = KrakenSource(settings, coins)
        out: list[Keyed] = []
        flow = build_producer_flow(
            "producer-kraken",
            offline_settings,
            ProducerSettings(kraken=settings),
            source=source,
            sink=TestingSink(out),
        )
        run_main(flow)
        connections = list(server.connections)
    statuses = [s[0] for s in logged(caplog.records, "kraken: system status")]
    assert statuses[:2] == ["maintenance", "online"]
    assert float(str(logged(caplog.records, "kraken: reconnecting in")[0][0])) >= 0.8
    assert connections[1] - connections[0] >= 0.3 + 0.8
    assert out, "data flows again once the exchange is back online"
