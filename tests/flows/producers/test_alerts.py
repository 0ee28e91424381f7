"""Price alerts on a price path with known crossings, across a clean restart and a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.producers.alert_log import AlertKey, alert_keys
from flows.producers.alerts import AlertDetector, AlertState
from flows.producers.kafka_edge import Keyed
from flows.producers.settings import AlertSettings, ProducerSettings
from flows.producers.workers import Payload, build_alert_flow
from handlers import (
    AlertRecord,
    CoinTable,
    HandlerContext,
    TickerMessage,
    TickerRecord,
    encode_message,
    parse_alert,
)
from infra.settings import Settings

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC).timestamp()
SETTINGS = AlertSettings(
    threshold_pct=Decimal("0.5"),
    thresholds={"ETH/USD": Decimal("1.0")},
    window_s=60,
    cooldown_s=120,
)

# (seconds after T0, BTC/USD price)
BTC_PATH: list[tuple[int, str]] = [
    *((t, "100.00") for t in range(0, 60, 5)),
    (60, "100.60"),  # +0.60 % vs t=0: alert up (1)
    (65, "100.80"),  # same excursion: nothing
    *((t, "100.80") for t in range(70, 130, 5)),  # window catches up: re-armed
    (130, "101.50"),  # +0.69 % vs 100.80: a new crossing, but inside the up cool-down
    (135, "101.50"),
    (200, "100.90"),  # -0.59 % vs 101.50 (t=135, the window start): alert down (2)
    (205, "100.90"),
    *((t, "100.90") for t in range(210, 400, 10)),
    (400, "102.00"),  # +1.09 % vs 100.90, cool-down over: alert up (3)
    (401, "102.00"),
]
ETH_PATH: list[tuple[int, str]] = [
    (0, "3000.00"),
    (30, "3021.00"),  # +0.70 %: below ETH's 1 % threshold
    (59, "3036.00"),  # +1.20 % vs t=0: alert up
]
EXPECTED = [
    ("BTC/USD", T0 + 60, "up", Decimal("0.6000"), Decimal("100.00")),
    ("BTC/USD", T0 + 200, "down", Decimal("-0.5911"), Decimal("101.50")),
    ("BTC/USD", T0 + 400, "up", Decimal("1.0902"), Decimal("100.90")),
    ("ETH/USD", T0 + 59, "up", Decimal("1.2000"), Decimal("3000.00")),
]


def payload(pair: str, t: int, price: str) -> Payload:
    msg = TickerMessage(
        pair=pair, last=Decimal(price), timestamp=T0 + t, exchange_ts=None, receive_ts=T0 + t
    )
    return encode_message(msg), None


def ticks() -> list[Payload]:
    merged = [(t, "BTC/USD", p) for t, p in BTC_PATH] + [(t, "ETH/USD", p) for t, p in ETH_PATH]
    return [payload(pair, t, p) for t, pair, p in sorted(merged)]


def alerts_of(out: list[Keyed], coins: CoinTable) -> list[tuple[Any, ...]]:
    ctx = HandlerContext(coins=coins, now=datetime.now(UTC))
    found = []
    for key, record in out:
        assert key == "kafka"
        assert record.topic == "rawalert"
        alert = parse_alert(record.value, ctx)
        assert isinstance(alert, AlertRecord), alert
        assert record.key == alert.pair.encode()
        found.append(
            (alert.pair, alert.time.timestamp(), alert.alert_type, alert.change_percent,
             alert.reference_price)
        )  # fmt: skip
    return sorted(found, key=lambda a: (a[0], a[1]))


def run(
    settings: Settings,
    items: list[Any],
    out: list[Keyed],
    recovery: Path | None,
    already_sent: set[AlertKey] | None = None,
    epoch: timedelta = timedelta(0),
) -> None:
    flow = build_alert_flow(
        settings,
        ProducerSettings(alerts=SETTINGS),
        source=TestingSource(items),
        sink=TestingSink(out),
        already_sent=already_sent,
    )
    config = None if recovery is None else RecoveryConfig(str(recovery))
    run_main(flow, epoch_interval=epoch, recovery_config=config)


def test_known_crossings_give_exactly_the_expected_alerts(
    offline_settings: Settings, coins: CoinTable
) -> None:
    out: list[Keyed] = []
    run(offline_settings, ticks(), out, None)
    assert alerts_of(out, coins) == sorted(EXPECTED, key=lambda a: (a[0], a[1]))
    first = msgspec.json.decode(out[0][1].value)
    assert {"pair", "last", "change", "threshold", "timestamp", "alert_type"} <= set(first)
    assert first["window_s"] == 60
    assert first["source"] is None  # a live path: no label, its row says `kraken`


@pytest.mark.parametrize("cut", [15, 16, 17, 24, 30])
def test_a_clean_restart_neither_refires_nor_forgets(
    offline_settings: Settings, coins: CoinTable, tmp_path: Path, cut: int
) -> None:
    """Stop after ``cut`` ticks (16: right after the first BTC alert, mid-excursion), restart."""
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    items = ticks()
    out: list[Keyed] = []
    run(offline_settings, [*items[:cut], TestingSource.EOF(), *items[cut:]], out, recovery)
    run(offline_settings, [*items[:cut], TestingSource.EOF(), *items[cut:]], out, recovery)
    assert alerts_of(out, coins) == sorted(EXPECTED, key=lambda a: (a[0], a[1]))


@pytest.mark.parametrize("read_back", [False, True], ids=["bytewax-only", "keys-read-back"])
def test_after_a_crash_no_alert_is_new_and_with_the_keys_read_back_none_repeats(
    offline_settings: Settings, coins: CoinTable, tmp_path: Path, read_back: bool
) -> None:
    """After an abort the input since the last snapshot is replayed (here: all of it, no
    epoch closed before the crash), so Bytewax alone re-raises alerts (same key: the
    table's primary key absorbs them, none is new). What the worker does for real,
    reading back the keys already on the topic, leaves nothing published twice."""
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    items = ticks()
    source_items = [*items[:20], TestingSource.ABORT(), *items[20:]]
    out: list[Keyed] = []
    long = timedelta(minutes=5)
    run(offline_settings, source_items, out, recovery, epoch=long)  # stops at the ABORT
    assert len(out) >= 1  # the first BTC alert (t=60, the 13th tick) went out before the crash
    sent = alert_keys(record.value for _, record in out) if read_back else None
    run(offline_settings, source_items, out, recovery, already_sent=sent, epoch=long)
    found = alerts_of(out, coins)
    assert sorted(set(found)) == sorted(EXPECTED, key=lambda a: (a[0], a[1]))
    repeated = len(found) - len(set(found))
    assert (repeated == 0) if read_back else (repeated > 0)


def test_alert_keys_reads_alert_messages_and_skips_anything_else() -> None:
    value, _ = payload("BTC/USD", 0, "100.00")  # a ticker: no alert_type
    alert = msgspec.json.encode(
        {"pair": "BTC/USD", "timestamp": T0 + 60, "alert_type": "up", "last": 100.6}
    )
    assert alert_keys([alert, value, b"{not json", None]) == {("BTC/USD", T0 + 60, "up")}


def test_detector_ignores_late_ticks_and_keeps_one_anchor_before_the_window() -> None:
    detector = AlertDetector(SETTINGS)
    state: AlertState | None = None
    for t, price in [(0, "100"), (50, "100.1"), (40, "200"), (61, "100.2"), (62, "100.2")]:
        record = TickerRecord(
            pair="BTC/USD", time=datetime.fromtimestamp(T0 + t, UTC), last=Decimal(price)
        )
        state, alert = detector(state, record)
        assert alert is None
    assert state is not None
    # The late tick is dropped; t=0 stays as the reference (last tick before the window).
    assert [t - T0 for t, _p in state.ticks] == [0, 50, 61, 62]


def test_two_price_paths_on_one_pair_are_never_compared(
    offline_settings: Settings, coins: CoinTable
) -> None:
    """What `make up REPLAY=1` showed: a recorded ADA/USD at 0.10 and the synthetic
    market's at 0.45, interleaved on one pair, made a "+348 %" alert. Keyed by (pair,
    source), each path has its own window: no alert, until one path moves by itself."""

    def tick(t: int, price: str, source: str) -> Payload:
        msg = TickerMessage(pair="ADA/USD", last=Decimal(price), timestamp=T0 + t, source=source)
        return encode_message(msg), None

    recorded = "history:kraken_v2_session.jsonl"
    items = [
        tick(t, "0.10035" if t % 2 else "0.45", recorded if t % 2 else "synthetic")
        for t in range(0, 60)
    ]
    out: list[Keyed] = []
    run(offline_settings, items, out, None)
    assert out == []
    # The synthetic path itself moves 1 %: one alert, on that path, saying so.
    run(offline_settings, [*items, tick(60, "0.4545", "synthetic")], out, None)
    (alert,) = alerts_of(out, coins)
    assert alert[:4] == ("ADA/USD", T0 + 60, "up", Decimal("1.0000"))
    assert alert[4] == Decimal("0.45")
    record = parse_alert(out[0][1].value, HandlerContext(coins=coins, now=datetime.now(UTC)))
    assert isinstance(record, AlertRecord)
    assert record.source == "synthetic"
