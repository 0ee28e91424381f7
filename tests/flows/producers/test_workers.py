"""Settings, registration, `make up` wiring, and a producer worker as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

import msgspec
import pytest
from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, TestingSource, run_main

from flows._recovery import ensure_recovery_dir
from flows.producers.kafka_edge import Keyed
from flows.producers.settings import (
    DEFAULT_FEEDS,
    SAMPLES,
    FeedSpec,
    load_producer_settings,
    parse_feeds,
)
from flows.producers.workers import build_producer_flow, previous_price
from flows.registry import INGEST_WORKERS, WORKERS
from handlers import AlertMessage, TickerMessage
from infra._procs import free_port
from infra.programs import profile
from infra.settings import RAW_TOPICS, Settings, SettingsError, load_settings
from infra.stack import unreachable
from tests.flows.producers.conftest import read_records

REPO = Path(__file__).resolve().parents[3]


def test_defaults_and_environment_overrides() -> None:
    defaults = load_producer_settings({})
    assert defaults.kraken.ws_url == "wss://ws.kraken.com/v2"
    assert defaults.kraken.pairs == ()
    assert defaults.kraken.snapshot
    assert defaults.rss.feeds == DEFAULT_FEEDS
    assert defaults.rss.poll_interval_s == 300
    assert {f.name for f in DEFAULT_FEEDS} == {
        "coindesk", "cointelegraph", "decrypt", "cryptoslate", "bitcoinmagazine"
    }  # fmt: skip
    assert defaults.alerts.threshold_for("BTC/USD") == Decimal("0.5")
    assert defaults.alerts.window_s == 60
    assert not defaults.alerts.from_beginning
    # Producers write the topics of the one topic map (infra.settings.Topics).
    assert load_settings({}).kafka.topics.of("rawtrade") == "rawtrade"
    assert not defaults.replay.exit_at_end
    assert defaults.replay.files
    env = {
        "CRYPTOVIZ_TOPIC_RAWTRADE": "trades-x",
        "CRYPTOVIZ_KRAKEN_WS_URL": "ws://127.0.0.1:1/v2",
        "CRYPTOVIZ_KRAKEN_REST_URL": "http://127.0.0.1:1/0/public/Trades",
        "CRYPTOVIZ_KRAKEN_PAIRS": "BTC/USD, ETH/USD",
        "CRYPTOVIZ_RSS_FEEDS": "a=http://127.0.0.1:1/a.xml; b=https://example.com/b",
        "CRYPTOVIZ_RSS_POLL_S": "0.5",
        "CRYPTOVIZ_ALERT_THRESHOLD_PCT": "0.8",
        "CRYPTOVIZ_ALERT_THRESHOLDS": "SOL/USD=1.5",
        "CRYPTOVIZ_ALERT_FROM": "beginning",
        "CRYPTOVIZ_REPLAY_FILES": str(SAMPLES / "kraken_v1_session.txt"),
        "CRYPTOVIZ_REPLAY_SPEED": "0",
        "CRYPTOVIZ_REPLAY_EXIT": "1",
        "CRYPTOVIZ_SYNTHETIC_RATE": "1000",
        "CRYPTOVIZ_SYNTHETIC_SEED": "7",
    }
    s = load_producer_settings(env)
    topics = load_settings(env).kafka.topics
    assert topics.of("rawtrade") == "trades-x"
    assert topics.of("rawticker") == "rawticker"
    assert s.kraken.pairs == ("BTC/USD", "ETH/USD")
    assert s.rss.feeds == (
        FeedSpec(name="a", url="http://127.0.0.1:1/a.xml"),
        FeedSpec(name="b", url="https://example.com/b"),
    )
    assert s.alerts.threshold_for("SOL/USD") == Decimal("1.5")
    assert s.alerts.threshold_for("BTC/USD") == Decimal("0.8")
    assert s.alerts.from_beginning
    assert s.replay.speed == 0
    assert s.replay.exit_at_end
    assert len(s.replay.files) == 1
    assert s.synthetic.rate == 1000
    assert s.synthetic.seed == 7


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CRYPTOVIZ_RSS_FEEDS": "nourl"}, "name=http"),
        ({"CRYPTOVIZ_RSS_FEEDS": "a=http://x a=http://y"}, "twice"),
        ({"CRYPTOVIZ_ALERT_THRESHOLD_PCT": "-1"}, "positive"),
        ({"CRYPTOVIZ_ALERT_THRESHOLDS": "BTC/USD"}, "PAIR=percent"),
        ({"CRYPTOVIZ_ALERT_FROM": "middle"}, "'end' or 'beginning'"),
        ({"CRYPTOVIZ_RSS_POLL_S": "soon"}, "not a number"),
        ({"CRYPTOVIZ_TRACE_SAMPLE_RATIO": "2"}, "between 0 and 1"),
        ({"CRYPTOVIZ_REPLAY_FILES": "/nonexistent/file.jsonl"}, "not a file"),
    ],
)
def test_bad_settings_say_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_producer_settings(env)
    with pytest.raises(SettingsError):
        parse_feeds(";")


def test_workers_are_registered_and_make_up_picks_live_or_replay() -> None:
    def producers(name: Literal["live", "replay"]) -> tuple[str, ...]:
        return tuple(p.name for p in profile(name) if p.name.startswith("producer-"))

    assert set(producers("live")) | set(producers("replay")) <= set(WORKERS)
    assert set(INGEST_WORKERS) == {f"ingest-{t}" for t in RAW_TOPICS}
    assert producers("live") == ("producer-kraken", "producer-rss", "producer-alerts")
    assert producers("replay") == ("producer-replay", "producer-synthetic", "producer-alerts")
    problem = unreachable(f"wss://127.0.0.1:{free_port()}/v2", timeout=1)
    assert problem is not None
    assert "127.0.0.1" in problem


def _env(stack: Settings, tmp_path: Path, topics: dict[str, str], **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=stack.kafka.bootstrap_servers or "",
        CRYPTOVIZ_STATE_DIR=str(tmp_path / "state"),
        CRYPTOVIZ_CACHE_DIR=str(stack.cache_dir),
        PYTHONPATH=str(REPO),
        **{f"CRYPTOVIZ_TOPIC_{raw.upper()}": name for raw, name in topics.items()},
        **extra,
    )
    return env


def test_producer_topic_flag_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(  # noqa: PLW1510 (return code asserted)
        [sys.executable, "-m", "flows.run", "producer-kraken", "--topic", "x"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "CRYPTOVIZ_STATE_DIR": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 2
    assert "CRYPTOVIZ_TOPIC_RAW" in done.stderr


@pytest.mark.integration
def test_replay_worker_process_writes_every_raw_topic(
    stack: Settings, kafka_bootstrap: str, new_topic: object, tmp_path: Path
) -> None:
    assert callable(new_topic)
    topics = {t: new_topic(t) for t in ("rawticker", "rawtrade", "rawarticle")}
    files = os.pathsep.join(str(SAMPLES / n) for n in ("kraken_v1_session.txt", "news_feed.xml"))
    env = _env(stack, tmp_path, topics, CRYPTOVIZ_REPLAY_FILES=files,
               CRYPTOVIZ_REPLAY_SPEED="0", CRYPTOVIZ_REPLAY_EXIT="1")  # fmt: skip
    done = subprocess.run(  # noqa: PLW1510 (return code asserted)
        [sys.executable, "-m", "flows.run", "producer-replay", "--snapshot-s", "0.5"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    expected = {"rawticker": 22, "rawtrade": 28, "rawarticle": 4}
    counts = {
        raw: len(read_records(kafka_bootstrap, name, at_least=expected[raw]))
        for raw, name in topics.items()
    }
    assert counts == expected, done.stderr[-4000:]
    assert (tmp_path / "state" / "recovery" / "producer-replay").is_dir()
    # Started again on the same state: it resumes at the end and sends nothing more.
    again = subprocess.run(  # noqa: PLW1510 (return code asserted)
        [sys.executable, "-m", "flows.run", "producer-replay"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    recount = Counter({raw: len(read_records(kafka_bootstrap, n)) for raw, n in topics.items()})
    assert recount == Counter(counts)


def _tick(pair: str, last: str, at: float = 1.0) -> TickerMessage:
    return TickerMessage(pair=pair, last=Decimal(last), bid=None, ask=None,
                         volume_24h=Decimal("1"), timestamp=at,
                         change_24h_pct=Decimal("-3.5"))  # fmt: skip


@pytest.mark.parametrize(
    ("before", "last", "change"),
    [
        (None, "100", None),  # a pair's first tick
        (Decimal("100"), "101", Decimal("1.000000")),
        (Decimal("101"), "99.99", Decimal("-1.000000")),
        (Decimal("100"), "100", Decimal("0.000000")),
        (Decimal("0"), "5", None),  # no change from a price of 0
    ],
)
def test_previous_price_sets_pct_change_from_the_pair_s_last_price(
    before: Decimal | None, last: str, change: Decimal | None
) -> None:
    kept, tick = previous_price(before, _tick("BTC/USD", last))
    assert kept == Decimal(last)
    assert tick.pct_change == change
    assert tick.change_24h_pct == Decimal("-3.5"), "the 24 h change is its own field"


def test_pct_change_is_per_pair_and_survives_a_restart(tmp_path: Path) -> None:
    # Run 1 sends up to the EOF and stops; run 2 resumes from its recovery snapshot. The
    # first tick of run 2 must get its change from the last one of run 1 (the state is
    # recovered with the source's position), not none as after a fresh start.
    alert = AlertMessage(pair="BTC/USD", last=Decimal("1"), change=Decimal("5"),
                         timestamp=1.0, alert_type="up")  # fmt: skip
    items: list[object] = [_tick("BTC/USD", "100", 1), _tick("ETH/USD", "50", 1), alert,
                           _tick("BTC/USD", "101", 2), TestingSource.EOF(),
                           _tick("BTC/USD", "99.99", 3), _tick("ETH/USD", "51", 3)]  # fmt: skip
    recovery = tmp_path / "recovery"
    ensure_recovery_dir(recovery, 1)
    sent: list[tuple[str, Decimal | str, Decimal | None]] = []

    # Prices as Decimal, whether the wire wrote them as integers or not.
    numbers = msgspec.json.Decoder(float_hook=Decimal)

    def run() -> None:
        out: list[Keyed] = []
        flow = build_producer_flow("producer-replay", load_settings({}),
                                   load_producer_settings({}), source=TestingSource(items),
                                   sink=TestingSink(out))  # fmt: skip
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(recovery)))
        for _, record in out:
            message = numbers.decode(record.value)
            if record.topic == "rawticker":
                sent.append((message["pair"], message["last"], message.get("pct_change")))
            else:
                sent.append((record.topic, message["pair"], None))

    run()
    assert sent == [("BTC/USD", Decimal(100), None), ("ETH/USD", Decimal(50), None),
                    ("rawalert", "BTC/USD", None),
                    ("BTC/USD", Decimal(101), Decimal(1))], "before the restart"  # fmt: skip
    sent.clear()
    run()
    assert sent == [("BTC/USD", Decimal("99.99"), Decimal(-1)),
                    ("ETH/USD", Decimal(51), Decimal(2))], "after the restart"  # fmt: skip
