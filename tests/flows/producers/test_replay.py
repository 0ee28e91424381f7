"""Replay of recorded Kraken frames and saved feeds (bundled samples and real captures)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.producers.kafka_edge import Keyed
from flows.producers.replay import (
    CANDLES_PART,
    ReplaySource,
    ReplayState,
    capture_line,
    describe,
    parse_frame,
    read_candle_file,
)
from flows.producers.settings import (
    SAMPLES,
    AlertSettings,
    ProducerSettings,
    ReplaySettings,
    default_replay_files,
)
from flows.producers.trades import TradeSequencer
from flows.producers.workers import build_alert_flow, build_producer_flow
from handlers import (
    AlertRecord,
    Candle,
    CoinTable,
    ConfigError,
    HandlerContext,
    TickerRecord,
    TradeMessage,
    candle_ticks,
    epoch_seconds,
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
    **options: Any,
) -> list[Keyed]:
    out: list[Keyed] = []
    replay_settings = ReplaySettings(files=files, speed=speed, exit_at_end=True, **options)
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
    # Each topic in the same order (the order between topics is not kept: the ticks take
    # a step of their own, flows.producers.workers.with_pct_change).
    assert by_topic(fast) == by_topic(fastest)


def by_topic(out: list[Keyed]) -> dict[str, list[bytes]]:
    topics: dict[str, list[bytes]] = {}
    for _key, record in out:
        topics.setdefault(record.topic, []).append(record.value)
    return topics


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


def test_replayed_captures_say_they_are_recorded_history(
    offline_settings: Settings, coins: CoinTable
) -> None:
    out = replay(offline_settings, (V2, V1))
    sources = Counter(t["source"] for t in decoded(out, "rawticker") + decoded(out, "rawtrade"))
    assert set(sources) == {f"history:{V2.name}", f"history:{V1.name}"}
    ctx = HandlerContext(coins=coins, now=datetime.now(UTC))
    record = handler_for("rawticker")(out[0][1].value, ctx)
    assert isinstance(record, TickerRecord)
    assert record.source.startswith("history:")


# -- candle files ------------------------------------------------------------------------

MarketSlice = Callable[[int], tuple[Path, ...]]


def _candles(path: Path) -> list[Candle]:
    return [c for _n, c in read_candle_file(path) if isinstance(c, Candle)]


def test_candles_play_as_four_ticks_a_minute_in_market_time_order(
    market_slice: MarketSlice, offline_settings: Settings, coins: CoinTable
) -> None:
    files = market_slice(30)  # BTC/USDT and ETH/USDT, 2024-01-01 00:00-00:29
    out = replay(offline_settings, files, speed=0.0)
    assert_contract(out, coins)
    tickers = decoded(out, "rawticker")
    assert len(tickers) == 2 * 30 * 4
    # Several pairs, one stream in the market's own time order.
    stamps = [t["timestamp"] for t in tickers]
    assert stamps == sorted(stamps)
    assert [t["pair"] for t in tickers[:4]] == ["BTC/USD", "ETH/USD", "BTC/USD", "ETH/USD"]
    for path, pair in zip(files, ("BTC/USD", "ETH/USD"), strict=True):
        expected = [
            (Decimal(str(epoch_seconds(at))), price)
            for candle in _candles(path)
            for at, price in candle_ticks(candle)
        ]
        got = [(t["timestamp"], t["last"]) for t in tickers if t["pair"] == pair]
        assert got == expected
        # The derivation, on the first real minute: open +1 s, low +20 s, high +40 s,
        # close +59 s (an up candle: 42283.58 -> 42298.61).
        if pair == "BTC/USD":
            first = [(int(t) % 60, str(p)) for t, p in got[:4]]
            assert first == [(1, "42283.58"), (20, "42261.02"), (40, "42298.62"), (59, "42298.61")]
    # Speed 0 keeps the market's time: history, the import's rows.
    assert {t["source"] for t in tickers} == {f"history:{p.stem}" for p in files}
    assert {t["receive_ts"] for t in tickers} == {None}
    assert datetime.fromtimestamp(float(stamps[0]), UTC) == datetime(
        2024, 1, 1, 0, 0, 1, tzinfo=UTC
    )


def test_file_pairs_can_keep_their_own_quote(
    market_slice: MarketSlice, offline_settings: Settings
) -> None:
    out = replay(offline_settings, market_slice(2), candle_pairs="file")
    assert {t["pair"] for t in decoded(out, "rawticker")} == {"BTC/USDT", "ETH/USDT"}


def test_retimed_stamps_follow_the_market_at_the_chosen_speed(
    market_slice: MarketSlice, offline_settings: Settings
) -> None:
    files = market_slice(3)  # 3 market minutes at 120x: 1.5 s
    started = time.time()
    tickers = decoded(replay(offline_settings, files, speed=120.0), "rawticker")
    assert len(tickers) == 2 * 3 * 4
    market = [
        epoch_seconds(at)
        for path in files
        for candle in _candles(path)
        for at, _p in candle_ticks(candle)
    ]
    market.sort()
    stamps = [float(t["timestamp"]) for t in tickers]
    # Stamps are the replay clock: the market's intervals divided by the speed...
    for (m0, m1), (s0, s1) in zip(pairwise(market), pairwise(stamps), strict=True):
        assert abs((s1 - s0) - (m1 - m0) / 120) < 1e-5
    # ... starting when the replay started (its first tick plays at once) ...
    assert started - 1 <= stamps[0] <= started + 60
    # ... and no tick is played before its stamp: the speed is honoured.
    assert all(float(t["receive_ts"]) >= float(t["timestamp"]) - 1e-3 for t in tickers)
    assert {t["source"] for t in tickers} == {f"replay:{p.stem}" for p in files}


def test_a_restarted_market_keeps_its_schedule(
    market_slice: MarketSlice, offline_settings: Settings, coins: CoinTable
) -> None:
    files = market_slice(10)
    settings = ReplaySettings(files=files, speed=6000.0, exit_at_end=True)
    source = ReplaySource(settings, coins)
    assert source.list_parts() == [CANDLES_PART]
    first = source.build_part("replay", CANDLES_PART, None)
    played: list[Any] = []
    while len(played) < 25:
        played += first.next_batch()
        time.sleep(0.005)
    state = first.snapshot()
    assert isinstance(state, ReplayState)
    assert state.lines == len(played)
    time.sleep(0.3)  # a downtime: the resumed market catches up, on the same schedule
    second = source.build_part("replay", CANDLES_PART, state)
    while True:
        try:
            batch = second.next_batch()
        except StopIteration:
            break
        played += batch
        time.sleep(0.005)
    assert len(played) == 2 * 10 * 4
    start = epoch_seconds(datetime(2024, 1, 1, tzinfo=UTC))
    anchor = state.anchor
    assert anchor is not None
    market = sorted(
        epoch_seconds(at) for p in files for c in _candles(p) for at, _x in candle_ticks(c)
    )
    assert [m.timestamp for m in played] == [anchor + (t - start) / 6000 for t in market]


def test_bad_candle_rows_are_skipped_counted_and_said(
    offline_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "binance_SOLUSDT_1m_test.csv"
    path.write_text(
        "datetime,open,high,low,close,volume\n"
        "2024-01-01 00:00:00,100,101,99,100.5,1\n"
        "2024-01-01 00:01:00,100.5,100,99,100,1\n"  # high below the open
        "2024-01-01 00:01:00,100.5,101,99,100,1\n"
        "2024-01-01 00:01:00,100,101,99,100.5,1\n"  # not after the previous row
        "2024-01-01 00:02:00,100,101,99,100.5,1\n"
    )
    counted = Counters()
    with caplog.at_level(logging.WARNING):
        tickers = decoded(replay(offline_settings, (path,)), "rawticker")
    assert len(tickers) == 3 * 4
    assert {t["pair"] for t in tickers} == {"SOL/USD"}
    assert counted("cryptoviz_replay_rejections_total", file=path.name) == 2
    refused = [r.getMessage() for r in caplog.records if "candle refused" in r.getMessage()]
    assert len(refused) == 2
    assert f"{path.name}:3: candle refused: low 99 / high 100 do not bracket" in refused[0]
    assert f"{path.name}:5: candle refused: 2024-01-01 00:01 is not after" in refused[1]


def test_a_candle_file_must_name_its_pair(offline_settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("datetime,open,high,low,close\n")
    with pytest.raises(ConfigError, match=r"no pair in the name of prices\.csv"):
        ReplaySource(ReplaySettings(files=(path,)), offline_settings.coin_table())


# -- what make up REPLAY=1 plays ---------------------------------------------------------


def test_the_real_market_is_played_when_at_hand(shared_fixtures: Path, coins: CoinTable) -> None:
    files = default_replay_files()
    market = sorted((shared_fixtures / "market").glob("*.csv"))
    assert files[:2] == tuple(market)
    assert all(p.suffix == ".xml" for p in files[2:])  # and the feeds: no Kraken capture
    line = describe(ReplaySettings(files=files), coins, beside_synthetic=True)
    assert line.startswith(
        f"replay: real market BTC/USD ({market[0].name}), ETH/USD ({market[1].name}), "
        "4 ticks a minute, re-timed to now at 1x; the synthetic market plays the other coins"
    )


def test_without_a_candle_file_the_samples_play_and_it_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, coins: CoinTable
) -> None:
    import flows.producers.replay as replay_module
    import flows.producers.settings as settings_module

    absent = tmp_path / "shared" / "fixtures" / "real"
    monkeypatch.setattr(settings_module, "SHARED_REAL", absent)
    monkeypatch.setattr(settings_module, "SHARED_MARKET", absent / "market")
    monkeypatch.setattr(replay_module, "SHARED_MARKET", absent / "market")
    files = default_replay_files()
    assert files == (V1, V2, NEWS)
    line = describe(ReplaySettings(files=files), coins, beside_synthetic=True)
    assert line == (
        f"replay: no candle file at hand ({absent / 'market'} is absent): playing "
        "kraken_v1_session.txt, kraken_v2_session.jsonl, news_feed.xml (Kraken captures at "
        "their recorded times); prices move with the synthetic market. Name candle files "
        "with `make up REPLAY=1 REPLAY_FILES=a.csv:b.csv`"
    )
