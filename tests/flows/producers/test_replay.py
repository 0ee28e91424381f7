"""Replay of recorded Kraken frames and saved feeds (bundled samples and real captures)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.producers.kafka_edge import Keyed
from flows.producers.replay import ReplaySource, capture_line, parse_frame
from flows.producers.settings import SAMPLES, AlertSettings, ProducerSettings, ReplaySettings
from flows.producers.trades import TradeSequencer
from flows.producers.workers import build_alert_flow, build_producer_flow
from handlers import (
    AlertRecord,
    CoinTable,
    HandlerContext,
    TradeMessage,
    handler_for,
)
from infra.settings import Settings
from tests.flows.producers._observe import Counters, logged

V2 = SAMPLES / "kraken_v2_session.jsonl"
V1 = SAMPLES / "kraken_v1_session.txt"
NEWS = SAMPLES / "news_feed.xml"


def replay(
    settings: Settings,
    files: tuple[Path, ...],
    speed: float = 0.0,
    recovery: Path | None = None,
) -> list[Keyed]:
    out: list[Keyed] = []
    replay_settings = ReplaySettings(files=files, speed=speed, exit_at_end=True)
    source = ReplaySource(replay_settings, settings.coin_table())
    flow = build_producer_flow(
        "producer-replay",
        settings,
        ProducerSettings(replay=replay_settings),
        source=source,
        sink=TestingSink(out),
    )
    config = None if recovery is None else RecoveryConfig(str(recovery))
    run_main(flow, epoch_interval=timedelta(milliseconds=50), recovery_config=config)
    return out


def decoded(out: list[Keyed], topic: str) -> list[dict[str, Any]]:
    decoder = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)
    return [decoder.decode(r.value) for _k, r in out if r.topic == topic]


def assert_contract(out: list[Keyed], coins: CoinTable) -> None:
    """What the producer writes is exactly what the ingestion handlers accept (an undated
    article stamped with its record time, as ingestion does)."""
    seen = datetime.now(UTC)
    ctx = HandlerContext(coins=coins, now=seen, record_time=seen)
    for _key, record in out:
        result = handler_for(record.topic)(record.value, ctx)
        assert not hasattr(result, "reason"), (record.value, result)


def test_samples_replay_through_the_live_parsers(
    offline_settings: Settings, coins: CoinTable, caplog: pytest.LogCaptureFixture
) -> None:
    counted = Counters()
    out = replay(offline_settings, (V2, V1, NEWS))
    assert_contract(out, coins)
    counts = Counter(r.topic for _k, r in out)
    # v2: 3 ticker snapshots + 3 x 89 s of ticker updates (one per trade frame) ...
    expected_v2: Counter[str] = Counter()
    sequencer = TradeSequencer()
    for line in V2.read_bytes().splitlines():
        item = capture_line(line)
        if item is None:
            continue
        recorded, frame = item
        ctx = HandlerContext(coins=coins, now=datetime.fromtimestamp(recorded or 0, UTC))
        for msg in parse_frame(frame, ctx).messages:
            if not isinstance(msg, TradeMessage) or sequencer.accept(msg)[0]:
                expected_v2[type(msg).__name__] += 1
    assert counts["rawticker"] == expected_v2["TickerMessage"] + 22
    assert counts["rawtrade"] == expected_v2["TradeMessage"] + 28
    assert counts["rawarticle"] == 4
    rejected = logged(caplog.records, "replay: recorded rejection of %s: %s")
    assert ("NOPE/USD", "Currency pair not supported NOPE/USD") in rejected
    assert counted("cryptoviz_replay_rejections_total") == 0
    assert counted("cryptoviz_replay_frames_total", file=V2.name) > 0
    ada = [t for t in decoded(out, "rawticker") if t["pair"] == "ADA/USD"]
    assert ada[0]["last"] == Decimal("0.10035")
    v1_trades = [t for t in decoded(out, "rawtrade") if t["pair"] == "SOL/USD"]
    assert len(v1_trades) == 8
    assert {t["ord_type"] for t in v1_trades} == {"l", "m"}


def test_real_captures_replay_to_the_recorded_counts(
    shared_fixtures: Path, offline_settings: Settings, coins: CoinTable
) -> None:
    v1 = shared_fixtures / "kraken" / "v1"
    v2 = shared_fixtures / "kraken" / "v2"
    out = replay(offline_settings, tuple(sorted(v1.glob("*.txt"))))
    assert_contract(out, coins)
    # cryptofeed's own golden counts for these captures: {TICKER: 18, TRADES: 10}.
    assert Counter(r.topic for _k, r in out) == {"rawticker": 18, "rawtrade": 10}
    trades = decoded(out, "rawtrade")
    xmr = next(t for t in trades if t["pair"] == "XMR/USD")
    assert (xmr["price"], xmr["timestamp"], xmr["side"]) == (
        Decimal("354.11000000"), Decimal("1618678142.557535"), "s"
    )  # fmt: skip
    tickers = decoded(out, "rawticker")
    assert {t["pair"] for t in tickers} >= {"BTC/CHF", "ADA/BTC", "XMR/USD", "SC/EUR"}
    assert any(t["pair"] == "XMR/USD" and t["last"] == Decimal("354.11000000") for t in tickers)

    out2 = replay(offline_settings, tuple(sorted(v2.glob("*.jsonl"))))
    assert_contract(out2, coins)
    tickers2 = {t["pair"]: t for t in decoded(out2, "rawticker")}
    raw = {r.key: r.value for _k, r in out2 if r.topic == "rawticker"}
    assert b'"bid":0.99980,' in raw[b"USDT/USD"]
    assert b'"high":1.00000,' in raw[b"USDT/USD"]
    assert tickers2["BTC/USD"]["last"] == Decimal("71770.4")
    (trade,) = decoded(out2, "rawtrade")
    assert (trade["trade_id"], trade["price"], trade["side"], trade["ord_type"]) == (
        97184416, Decimal("71749.0"), "s", "l"
    )  # fmt: skip


def test_recorded_speed_is_kept_or_accelerated(offline_settings: Settings) -> None:
    # The v1 sample spans 20.4 s of recorded time.
    started = time.monotonic()
    fast = replay(offline_settings, (V1,), speed=20.0)
    took = time.monotonic() - started
    assert 0.95 <= took <= 3.0, took
    started = time.monotonic()
    fastest = replay(offline_settings, (V1,), speed=0.0)
    assert time.monotonic() - started < took
    assert [r.value for _k, r in fast] == [r.value for _k, r in fastest]


def test_a_restarted_replay_continues_where_it_stopped(
    offline_settings: Settings, tmp_path: Path
) -> None:
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    first = replay(offline_settings, (V1, NEWS), speed=0.0, recovery=recovery)
    second = replay(offline_settings, (V1, NEWS), speed=0.0, recovery=recovery)
    assert len(first) == 22 + 28 + 4
    assert second == []


def test_replayed_session_raises_the_alerts_its_prices_imply(
    offline_settings: Settings, coins: CoinTable
) -> None:
    tickers = [
        (r.value, None) for _k, r in replay(offline_settings, (V2,)) if r.topic == "rawticker"
    ]
    out: list[Keyed] = []
    producer = ProducerSettings(alerts=AlertSettings())
    flow = build_alert_flow(
        offline_settings, producer, source=TestingSource(tickers), sink=TestingSink(out)
    )
    run_main(flow)
    ctx = HandlerContext(coins=coins, now=datetime.now(UTC))
    alerts = [handler_for("rawalert")(r.value, ctx) for _k, r in out]
    assert all(isinstance(a, AlertRecord) for a in alerts)
    found = sorted((a.pair, a.alert_type) for a in alerts if isinstance(a, AlertRecord))
    assert found == [("ADA/USD", "down"), ("ETH/USD", "up")]
