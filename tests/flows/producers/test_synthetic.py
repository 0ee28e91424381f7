"""The synthetic market: rate, pairs, valid messages, and prices that trend and jump."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from bytewax.testing import TestingSink, run_main

from flows.producers.alerts import AlertDetector, AlertState
from flows.producers.kafka_edge import Keyed
from flows.producers.settings import (
    SAMPLES,
    AlertSettings,
    ProducerSettings,
    ReplaySettings,
    SyntheticSettings,
    load_producer_settings,
)
from flows.producers.synthetic import record_capture, synthetic_pairs
from flows.producers.workers import build_producer_flow
from handlers import CoinTable, HandlerContext, TickerRecord, handler_for
from infra.settings import Settings, SettingsError


def generate(settings: Settings, synthetic: SyntheticSettings) -> list[Keyed]:
    out: list[Keyed] = []
    flow = build_producer_flow(
        "producer-synthetic", settings, ProducerSettings(synthetic=synthetic), sink=TestingSink(out)
    )
    run_main(flow, epoch_interval=timedelta(milliseconds=200))
    return out


def test_many_pairs_valid_messages_and_consecutive_trade_ids(
    offline_settings: Settings, coins: CoinTable
) -> None:
    out = generate(
        offline_settings, SyntheticSettings(pairs=20, rate=50_000, seed=1, max_messages=4000)
    )
    assert len(out) == 4000
    ctx = HandlerContext(coins=coins, now=datetime.now(UTC))
    ids: dict[str, list[int]] = defaultdict(list)
    topics: dict[str, int] = defaultdict(int)
    for key, record in out:
        assert key == "kafka"
        parsed = handler_for(record.topic)(record.value, ctx)
        assert not hasattr(parsed, "reason"), parsed
        topics[record.topic] += 1
        if record.topic == "rawtrade":
            body = msgspec.json.decode(record.value)
            ids[body["pair"]].append(body["trade_id"])
    assert set(topics) == {"rawticker", "rawtrade"}
    assert 0.6 < topics["rawtrade"] / len(out) < 0.8
    assert set(ids) == set(synthetic_pairs(coins, 20))
    assert all(v == list(range(v[0], v[0] + len(v))) for v in ids.values())
    assert synthetic_pairs(coins, 20)[:6] == list(coins.tracked)


def test_rate_is_kept(offline_settings: Settings) -> None:
    started = time.monotonic()
    out = generate(offline_settings, SyntheticSettings(rate=400, seed=2, run_for_s=1.5))
    elapsed = time.monotonic() - started
    assert 400 * 1.5 * 0.8 <= len(out) <= 400 * elapsed * 1.05


def test_prices_trend_and_jump_enough_to_raise_alerts(
    offline_settings: Settings, coins: CoinTable
) -> None:
    out = generate(
        offline_settings,
        # 50 000 msgs/s over 4 pairs: 80 µs of simulated time per step, so jumps must be
        # frequent per simulated second to show up in 6 000 messages.
        SyntheticSettings(pairs=4, rate=50_000, seed=3, max_messages=6000, jump_per_s=300.0,
                          trade_share=0.5),
    )  # fmt: skip
    ctx = HandlerContext(coins=coins, now=datetime.now(UTC))
    detector = AlertDetector(AlertSettings(cooldown_s=0))
    states: dict[str, AlertState | None] = defaultdict(lambda: None)
    alerts: list[Any] = []
    step = 0.0
    for _key, record in out:
        if record.topic != "rawticker":
            continue
        ticker = handler_for("rawticker")(record.value, ctx)
        assert isinstance(ticker, TickerRecord)
        # Strictly increasing tick times (the generator stamps them with the wall clock).
        step += 0.001
        ticker = msgspec.structs.replace(ticker, time=datetime.fromtimestamp(1.7e9 + step, UTC))
        states[ticker.pair], alert = detector(states[ticker.pair], ticker)
        if alert is not None:
            alerts.append(alert)
    assert alerts, "jumps of 1-3 % must cross the 0.5 % threshold"
    assert {a.alert_type for a in alerts} <= {"up", "down"}
    assert all(abs(a.change) >= Decimal("0.5") for a in alerts)


def test_a_recorded_capture_is_reproducible_and_replays_with_its_own_times(
    offline_settings: Settings, coins: CoinTable, tmp_path: Path
) -> None:
    synthetic = SyntheticSettings(pairs=4, rate=20, seed=7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    first = record_capture(synthetic, coins, start, 200, tmp_path / "a.txt")
    second = record_capture(synthetic, coins, start, 200, tmp_path / "b.txt")
    assert first.read_bytes() == second.read_bytes()
    lines = first.read_bytes().splitlines()
    assert len(lines) == 200
    assert lines[20].startswith(f"{start.timestamp() + 1:.6f}: ".encode())  # 20 frames a second

    out: list[Keyed] = []
    replay = ReplaySettings(files=(first,), speed=0, exit_at_end=True)
    run_main(build_producer_flow(
    "producer-replay", offline_settings, ProducerSettings(replay=replay),
                               sink=TestingSink(out)))  # fmt: skip
    assert len(out) == 200
    times = sorted(msgspec.json.decode(record.value)["timestamp"] for _, record in out)
    assert times[0] == start.timestamp()
    assert times[-1] == pytest.approx(start.timestamp() + 199 / 20)


def test_recording_needs_a_seed(coins: CoinTable, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed"):
        record_capture(SyntheticSettings(), coins, datetime.now(UTC), 1, tmp_path / "x.txt")


def test_pair_offsets_split_the_pair_sequence_into_disjoint_slices(coins: CoinTable) -> None:
    slices = [synthetic_pairs(coins, 12, offset) for offset in (0, 12, 24)]
    assert [p for s in slices for p in s] == synthetic_pairs(coins, 36)
    assert len({p for s in slices for p in s}) == 36
    assert slices[0][:6] == list(coins.tracked)
    assert all(p.startswith("SYN") for p in slices[2])


def test_producers_with_different_offsets_make_disjoint_pairs(
    offline_settings: Settings, coins: CoinTable
) -> None:
    seen = []
    for offset in (0, 5):
        out = generate(
            offline_settings,
            SyntheticSettings(pairs=5, pair_offset=offset, rate=50_000, seed=4, max_messages=500),
        )
        seen.append({msgspec.json.decode(record.value)["pair"] for _, record in out})
    assert seen[0] == set(synthetic_pairs(coins, 5))
    assert seen[1] == set(synthetic_pairs(coins, 5, 5))
    assert not seen[0] & seen[1]


def test_ticks_of_a_pair_never_share_a_time_even_in_big_batches(
    offline_settings: Settings,
) -> None:
    # 200 000 msgs/s over 3 pairs: every poll has hundreds of messages due (capped at 5 000),
    # far more than one per pair. ticker_data keeps one row per (pair, exchange time).
    before = datetime.now(UTC)
    out = generate(
        offline_settings, SyntheticSettings(pairs=3, rate=200_000, seed=5, max_messages=30_000)
    )
    after = datetime.now(UTC)
    times: dict[str, list[datetime]] = defaultdict(list)
    for _, record in out:
        if record.topic == "rawticker":
            body = msgspec.json.decode(record.value)
            times[body["pair"]].append(datetime.fromisoformat(body["exchange_ts"]))
    assert sum(len(v) for v in times.values()) > 8000
    for stamps in times.values():
        assert stamps == sorted(stamps)
        assert len(set(stamps)) == len(stamps)
        # Within the run: spread over the time since the previous batch, not ahead of it
        # (by at most 1 µs per message of a batch).
        assert before <= stamps[0]
        assert stamps[-1] <= after + timedelta(milliseconds=5)


def test_pair_offset_is_read_from_the_environment() -> None:
    assert load_producer_settings({}).synthetic.pair_offset == 0
    env = {"CRYPTOVIZ_SYNTHETIC_PAIR_OFFSET": "24", "CRYPTOVIZ_SYNTHETIC_PAIRS": "12"}
    assert load_producer_settings(env).synthetic.pair_offset == 24
    with pytest.raises(SettingsError, match="CRYPTOVIZ_SYNTHETIC_PAIR_OFFSET"):
        load_producer_settings({"CRYPTOVIZ_SYNTHETIC_PAIR_OFFSET": "-1"})


def test_messages_say_they_are_synthetic(offline_settings: Settings, coins: CoinTable) -> None:
    out = generate(
        offline_settings, SyntheticSettings(pairs=3, rate=50_000, seed=8, max_messages=60)
    )
    ctx = HandlerContext(coins=coins, now=datetime.now(UTC))
    records = [handler_for(r.topic)(r.value, ctx) for _k, r in out]
    assert {getattr(r, "source", None) for r in records} == {"synthetic"}


def test_beside_a_replay_it_leaves_the_replayed_coins_alone(
    offline_settings: Settings, coins: CoinTable, tmp_path: Path
) -> None:
    candles = tmp_path / "binance_BTCUSDT_1m_2024-01.csv"
    candles.write_text("datetime,open,high,low,close\n")
    producer = ProducerSettings(
        synthetic=SyntheticSettings(
            pairs=6, rate=50_000, seed=9, max_messages=600, beside_replay=True
        ),
        replay=ReplaySettings(files=(candles, SAMPLES / "news_feed.xml")),
    )
    out: list[Keyed] = []
    run_main(
        build_producer_flow(
            "producer-synthetic", offline_settings, producer, sink=TestingSink(out)
        ),
        epoch_interval=timedelta(milliseconds=200),
    )
    pairs = {msgspec.json.decode(r.value)["pair"] for _k, r in out}
    assert pairs == set(synthetic_pairs(coins, 6, exclude=("BTC",)))
    assert not any(p.startswith("BTC/") for p in pairs)
    assert "ETH/USD" in pairs
    # Not beside a replay (benchmarks, the live profile): every coin, BTC first.
    assert synthetic_pairs(coins, 6)[0] == "BTC/USD"
