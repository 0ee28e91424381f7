"""The analytics queries on real Spark (local[2]), real Kafka and real PostgreSQL."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Callable
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from infra.kafka_offsets import KafkaOffsets
from infra.programs import consumer_group
from spark_batch import models
from spark_batch.backfill import backfill_actual_prices
from spark_batch.metrics import PROGRAM, Positions, kafka_positions
from spark_batch.prediction import model_config, prediction_row
from spark_batch.report import main as report_main
from spark_batch.settings import PredictionSettings
from tests._wait import wait_for

from .conftest import Harness

pytestmark = pytest.mark.spark

B = datetime(2025, 1, 1, 10, 0, tzinfo=UTC)
"""A window boundary for every window size used here."""
BE = B.timestamp()

SENTIMENT_ROWS = (
    "SELECT crypto_symbol, window_start, timestamp, round(sentiment_score::numeric, 6), "
    "sentiment_label, round(confidence::numeric, 6), article_count, source "
    "FROM sentiment_data ORDER BY crypto_symbol, timestamp"
)
FORECAST_COLUMNS = (
    "timestamp, crypto_symbol, model_name, horizon_s, window_start, predicted_price, "
    "confidence_interval_low, confidence_interval_high, interval_level, outer_interval_low, "
    "outer_interval_high, outer_interval_level, target_time, last_price, trailing_skill, "
    "preferred"
)
"""The columns of ``prediction_row`` (writer.PREDICTION), in its order."""
FORECAST_ROWS = (
    f"SELECT {FORECAST_COLUMNS} FROM prediction_data "
    "ORDER BY crypto_symbol, model_name, horizon_s, timestamp"
)
PREDICTION_ROWS = (
    f"SELECT {FORECAST_COLUMNS}, actual_price FROM prediction_data "
    "ORDER BY crypto_symbol, model_name, horizon_s, timestamp"
)
ALL_TABLES = {  # every column but updated_at / detected_at (wall-clock stamps)
    "sentiment_data": "SELECT timestamp, window_start, crypto_symbol, sentiment_score, "
    "sentiment_label, source, confidence, article_count FROM sentiment_data "
    "ORDER BY crypto_symbol, source, timestamp",
    "prediction_data": PREDICTION_ROWS,
    "forecast_state": "SELECT crypto_symbol, bar_end, state_version, state FROM forecast_state "
    "ORDER BY crypto_symbol",
    "analytics_late_events": "SELECT query_name, event_id, crypto_symbol, event_time, "
    "window_start, window_end, watermark FROM analytics_late_events "
    "ORDER BY event_id, crypto_symbol",
}


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def article(
    ident: str, minute: float, score: float, mentioned: list[str] | None, **extra: Any
) -> dict[str, Any]:
    published = B + timedelta(minutes=minute)
    message: dict[str, Any] = {
        "id": ident,
        "title": extra.pop("title", f"article {ident}"),
        "url": f"https://news.example/{ident}",
        "website": "news.example",
        "content": {"summary": extra.pop("summary", "")},
        "published_at": iso(published),
        "timestamp": published.timestamp(),
        "sentiment": {"score": score, "label": "neutral"},
    }
    if mentioned is not None:
        message["cryptocurrencies_mentioned"] = mentioned
    message.update(extra)
    return message


def tick(pair: str, seconds: float, last: float | str, **extra: Any) -> dict[str, Any]:
    return {"pair": pair, "last": last, "timestamp": BE + seconds, **extra}


def r6(value: float | Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.000001"))


def snapshot(h: Harness) -> dict[str, list[tuple[Any, ...]]]:
    return {name: h.rows(query) for name, query in ALL_TABLES.items()}


# -- sentiment -----------------------------------------------------------------------


def test_sentiment_windows_are_exact(harness: Harness) -> None:
    h = harness
    h.produce(
        h.topics.rawarticle,
        [
            article("a1", 1, 0.9, ["bitcoin", "XBT"]),
            article("a2", 2, 0.7, ["BTC", "eth"]),
            # Epoch milliseconds and no published_at: the handler's fallback.
            {**article("a3", 4.99, 0.2, ["Ethereum"]), "published_at": None,
             "timestamp": (B + timedelta(minutes=4.99)).timestamp() * 1000},
            article("a1", 1, 0.9, ["bitcoin", "XBT"]),  # a producer retry: counted once
            # No mention list: coins come from the title and summary, like the handler.
            article("a4", 6, 0.5, None, title="Solana and Cardano", summary="a solution"),
            article("bad-score", 2, 1.5, ["BTC"]),
            {**article("no-id", 2, 0.5, ["BTC"]), "id": None},
        ],
    )  # fmt: skip
    h.run("sentiment")
    b5, b10 = B + timedelta(minutes=5), B + timedelta(minutes=10)
    assert h.rows(SENTIMENT_ROWS) == [
        ("ADA", b5, b10, r6(0.5), "neutral", r6(0.25), 1, "aggregated_articles"),
        # scores 0.9, 0.7: mean 0.8, sigma 0.1 -> 2/(2+3) * (1 - 0.2)
        ("BTC", B, b5, r6(0.8), "positive", r6(0.32), 2, "aggregated_articles"),
        # scores 0.7, 0.2: mean 0.45, sigma 0.25 -> 2/5 * 0.5
        ("ETH", B, b5, r6(0.45), "neutral", r6(0.2), 2, "aggregated_articles"),
        ("SOL", b5, b10, r6(0.5), "neutral", r6(0.25), 1, "aggregated_articles"),
    ]


def test_a_query_leaves_its_kafka_position_for_the_lag(harness: Harness) -> None:
    """What ``spark_batch.run`` does with each progress report: the query's position is
    committed to its consumer group, so the lag is known with the job stopped."""
    h = harness
    h.produce(h.topics.rawarticle, [article(f"p{i}", i, 0.5, ["BTC"]) for i in range(5)])
    progress = h.run("sentiment")
    assert kafka_positions(progress["sentiment"]), "no Kafka end offsets in the progress"
    offsets = KafkaOffsets(h.bootstrap)
    try:
        positions = Positions(offsets)
        group = consumer_group(PROGRAM, "sentiment")

        def lag() -> list[tuple[int, int]] | None:
            positions.update("sentiment", progress["sentiment"])
            found = [(p.position, p.lag) for p in offsets.lag(group, [h.topics.rawarticle])]
            return found or None  # empty until the group coordinator took the commit

        assert sum(position for position, _lag in wait_for(lag, 60, "the commit")) == 5
        assert all(p.lag == 0 for p in offsets.lag(group, [h.topics.rawarticle]))
        h.produce(h.topics.rawarticle, [article(f"q{i}", i, 0.5, ["ETH"]) for i in range(3)])
        lags = offsets.lag(group, [h.topics.rawarticle])
        assert sum(p.lag for p in lags) == 3, "produced while the query was not running"
    finally:
        offsets.close()


def test_late_articles_are_counted_and_closed_windows_kept(harness: Harness) -> None:
    h = harness
    h.produce(
        h.topics.rawarticle, [article("on1", 1, 0.9, ["BTC"]), article("on2", 30, 0.5, ["BTC"])]
    )
    h.run("sentiment", "late_articles")
    before = h.rows(SENTIMENT_ROWS)
    # The watermark is now 10:30 - 10 min = 10:20: an article at or before it is late.
    h.produce(
        h.topics.rawarticle,
        [
            article("late1", 2, 0.1, ["BTC", "ETH"]),  # its window 10:00-10:05 is closed
            article("late2", 20, 0.1, ["BTC"]),  # exactly at the watermark: late too
            article("on3", 21, 0.3, ["BTC"]),  # within the watermark: counted
        ],
    )
    h.run("sentiment", "late_articles")
    after = h.rows(SENTIMENT_ROWS)
    assert [r for r in after if r[1] == B] == [r for r in before if r[1] == B]
    assert [r[6] for r in after if r[1] == B] == [1]  # still only on1
    w20 = B + timedelta(minutes=20)
    assert [(r[1], r[3], r[6]) for r in after if r[1] == w20] == [(w20, r6(0.3), 1)]
    watermark = w20
    assert h.rows(ALL_TABLES["analytics_late_events"]) == [
        ("sentiment", "late1", "BTC", B + timedelta(minutes=2), B, B + timedelta(minutes=5),
         watermark),
        ("sentiment", "late1", "ETH", B + timedelta(minutes=2), B, B + timedelta(minutes=5),
         watermark),
        ("sentiment", "late2", "BTC", w20, w20, w20 + timedelta(minutes=5), watermark),
    ]  # fmt: skip


# -- predictions ---------------------------------------------------------------------

BTC_TICKS = [(5.0, 100.0), (65.0, 101.0), (125.0, 103.0), (175.0, 102.0), (200.0, 104.5),
             (250.0, 103.5), (251.0, 103.75)]  # fmt: skip
ETH_TICKS = [(10.0, 3000.0), (40.0, 3001.5), (70.0, 2999.25), (130.0, 3002.0), (190.0, 3001.0)]


def expected_forecasts(
    ticks: dict[str, list[tuple[int, float]]], cfg: PredictionSettings, closed_before_us: int
) -> list[tuple[Any, ...]]:
    """The rows the backtest's code gives for ``{symbol: [(µs, price)]}``: ``FORECAST_ROWS`` order.

    Only the bars ending at or before ``closed_before_us`` (those the watermark closed).
    """
    rows = []
    for symbol, series in ticks.items():
        bars = [b for b in models.bars_from_ticks(series) if b.end_us <= closed_before_us]
        rows += [prediction_row(symbol, f) for f in models.run(bars, model_config(cfg))]
    return sorted(rows, key=lambda r: (r[1], r[2], r[3], r[0]))


def _us(seconds: float) -> int:
    return round((BE + seconds) * 1_000_000)


def test_predictions_are_exact(harness: Harness) -> None:
    h = harness
    messages = [tick("XBT/USD", t, p) for t, p in BTC_TICKS]
    messages += [tick("XETHZUSD", t, str(p)) for t, p in ETH_TICKS]  # Kraken-style text prices
    messages += [
        tick("XBT/USD", 65.0, 101.0),  # duplicate of a tick: counted once
        tick("BTC/EUR", 30.0, 90.0),  # another quote: not mixed into BTC
        tick("ETH/USD", 25.0, "not a price"),
        tick("ETH/USD", 20.0, -1.0),  # not a price
        tick("ETH/USD", 400.0, 3003.0),  # closes the minutes up to 390 s (10 s watermark)
    ]
    h.produce(h.topics.rawticker, messages)
    h.run("predictions")
    expected = expected_forecasts(
        {"BTC": [(_us(t), p) for t, p in BTC_TICKS], "ETH": [(_us(t), p) for t, p in ETH_TICKS]},
        h.cfg.prediction,
        _us(390),
    )
    got = [tuple(r) for r in h.rows(FORECAST_ROWS)]
    assert got == expected
    # BTC: bars end at 1, 2, 3, 4, 5 minutes; the first starts the state, the others issue
    # 5 models x 3 horizons each, but the trend needs 3 closes (not at the second bar).
    # ETH: bars 1..4 (its 400 s tick is in a minute still open).
    assert len([r for r in got if r[1] == "BTC"]) == 4 * 15 - 3
    assert len([r for r in got if r[1] == "ETH"]) == 3 * 15 - 3
    # Spot-check one row by hand: the seeds' moving average at 10:03 reads the ticks of
    # 10:00-10:03, 100, 101, 103, 102: mean 101.5, sample stddev sqrt(5/3).
    at = B + timedelta(minutes=3)
    (ma,) = [r for r in got if r[1:4] == ("BTC", "moving_average", 60) and r[0] == at]
    std = math.sqrt(5 / 3)
    assert (ma[4], r6(ma[5]), r6(ma[6]), r6(ma[7]), ma[8], ma[12], ma[13]) == (
        B, r6(101.5), r6(101.5 - std), r6(101.5 + std), 0.682689, B + timedelta(minutes=4),
        Decimal("102.0"))  # fmt: skip
    # Issued at the minute, for issue + horizon, with the price of the minute's last tick.
    rw = [r for r in got if r[1:4] == ("BTC", "random_walk", 300)]
    assert [r[0] for r in rw] == [B + timedelta(minutes=m) for m in (2, 3, 4, 5)]
    assert all(r[12] == r[0] + timedelta(minutes=5) for r in rw)
    assert [r[5] for r in rw] == [Decimal(v) for v in ("101.0", "102.0", "104.5", "103.75")]


def rounded(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(r6(v) if isinstance(v, Decimal) else v for v in row) for row in rows]


# -- restarts and replays --------------------------------------------------------------

PART1_ARTICLES = [article(f"p1-{i}", i * 1.5, 0.1 * (i % 9) + 0.1, ["BTC", "ETH"][: 1 + i % 2])
                  for i in range(8)]  # fmt: skip
PART2_ARTICLES = [
    *[article(f"p2-{i}", 12 + i * 1.5, 0.95 - 0.1 * (i % 8), ["ETH"]) for i in range(6)],
    article("p2-late", 0.2, 0.5, ["BTC"]),  # before the watermark of part 1 (10:00:30)
]
PART1_TICKS = [tick("BTC/USD", t * 7.0, 100 + math.sin(t / 5)) for t in range(40)]
PART2_TICKS = [tick("BTC/USD", 280 + t * 7.0, 101 + math.cos(t / 3)) for t in range(40)]


class CrashAfterWrite:
    """A foreachBatch function that dies right after the sink committed one batch.

    This is the worst moment for exactly-once: the database has the batch, Spark's
    checkpoint does not, so the restarted query runs the same batch again.
    """

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.close = sink.close

    def __call__(self, batch: Any, batch_id: int) -> None:
        self.sink(batch, batch_id)
        # Not batch.isEmpty(): a second action would run the stateful batch plan again.
        if self.sink.last_rows:
            raise RuntimeError(f"simulated crash after writing batch {batch_id}")


def _two_part_run(h: Harness, state_dir: Path, *, crash: bool) -> dict[str, list[Any]]:
    queries = ("sentiment", "late_articles", "predictions")
    h.produce(h.topics.rawarticle, PART1_ARTICLES)
    h.produce(h.topics.rawticker, PART1_TICKS)
    h.run(*queries, state_dir=state_dir)
    h.run(*queries, state_dir=state_dir)  # same checkpoint, nothing new: nothing changes
    h.produce(h.topics.rawarticle, PART2_ARTICLES)
    h.produce(h.topics.rawticker, PART2_TICKS)
    if crash:
        with pytest.raises(Exception, match="simulated crash"):
            h.run(*queries, state_dir=state_dir, wrap_sink=lambda _n, sink: CrashAfterWrite(sink))
        # Restart: the unfinished batch is replayed from the checkpoint. Spark 4.1.1's Kafka
        # source then fails its progress report once, after the batch committed (see
        # spark_batch.run.supervise); the job restarts the query, and so do we.
        try:
            h.run(*queries, state_dir=state_dir)
        except Exception as exc:
            if "Option.get()" not in str(exc):
                raise
    h.run(*queries, state_dir=state_dir)
    tables = snapshot(h)
    with psycopg.connect(h.url, autocommit=True) as conn:
        conn.execute("TRUNCATE sentiment_data, prediction_data, forecast_state, "
                     "analytics_late_events, analytics_watermarks")  # fmt: skip
    return tables


def test_restart_from_checkpoint_gives_identical_tables(
    harness: Harness, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    crashed = _two_part_run(harness, tmp_path / "crashed", crash=True)
    other_topics = msgspec.structs.replace(
        harness.topics, rawarticle=new_topic("rawarticle"), rawticker=new_topic("rawticker")
    )
    reference = _two_part_run(
        dataclasses.replace(harness, settings=harness.settings.with_topics(other_topics)),
        tmp_path / "reference",
        crash=False,
    )
    assert all(reference.values())  # sentiment, predictions and a late article
    for table, rows in reference.items():
        missing = [r for r in rows if r not in crashed[table]]
        extra = [r for r in crashed[table] if r not in rows]
        assert (missing, extra) == ([], []), table


def test_replaying_the_same_input_changes_nothing(harness: Harness, tmp_path: Path) -> None:
    h = harness
    queries = ("sentiment", "late_articles", "predictions")
    h.produce(h.topics.rawarticle, [*PART1_ARTICLES, article("late", 0.5, 0.4, ["BTC"])])
    h.produce(h.topics.rawticker, PART1_TICKS)
    h.run(*queries, state_dir=tmp_path / "first")
    first = snapshot(h)
    stamps = h.rows("SELECT updated_at FROM prediction_data ORDER BY 1")
    # A second, independent run from the earliest offsets (a fresh checkpoint).
    h.run(*queries, state_dir=tmp_path / "second")
    assert snapshot(h) == first
    assert h.rows("SELECT updated_at FROM prediction_data ORDER BY 1") == stamps
    counts = h.rows("SELECT count(*), count(DISTINCT (crypto_symbol, model_name, horizon_s, "
                    "timestamp)) "
                    "FROM prediction_data")  # fmt: skip
    assert counts[0][0] == counts[0][1] > 0


# -- actual prices and accuracy -------------------------------------------------------


def test_actual_price_and_accuracy_on_a_known_path(harness: Harness) -> None:
    h = harness
    # p(t) = 100 + 0.01 t, one tick per second for 15 minutes, in Kafka and in ticker_data.
    path = [(float(t), round(100 + 0.01 * t, 2)) for t in range(900)]
    h.produce(h.topics.rawticker, [tick("XBT/USD", t, p) for t, p in path])
    with (
        psycopg.connect(h.url, autocommit=True) as conn,
        conn.cursor().copy("COPY ticker_data (timestamp, pair, last) FROM STDIN") as copy,
    ):
        for t, p in path:
            copy.write_row((B + timedelta(seconds=t), "BTC/USD", Decimal(str(p))))
    h.run("predictions")
    with psycopg.connect(h.url, autocommit=True) as conn:
        filled = backfill_actual_prices(conn, quote="USD", max_staleness_s=60)
        assert filled > 0
        assert backfill_actual_prices(conn, quote="USD", max_staleness_s=60) == 0  # idempotent
    # Every filled actual price is the tick at the target time; later targets stay NULL.
    rows = h.rows("SELECT target_time, actual_price FROM prediction_data")
    for target, actual in rows:
        seconds = (target - B).total_seconds()
        if seconds <= 899:
            assert actual == Decimal(str(round(100 + 0.01 * seconds, 2)))
        else:
            assert actual is None

    # Issued 10:03 .. 10:09 (three full minutes for the moving average behind each one).
    start, end = B + timedelta(minutes=3), B + timedelta(minutes=10)
    out = io.StringIO()
    with redirect_stdout(out):
        code = report_main(["--from", iso(start), "--to", iso(end), "--database-url", h.url,
                            "--json", "--no-backfill"])  # fmt: skip
    assert code == 0
    report = {(r["model"], r["horizon_s"]): r for r in json.loads(out.getvalue())}
    n = 7
    # 15-minute targets lie beyond the path: not scored yet.
    assert {h for _, h in report} == {60, 300}
    for horizon in (60, 300):
        # The closes (last tick of each minute, at e - 1) lie on a line: the trend misses
        # only the last second, the naive forecast the whole horizon and that second.
        naive = report[("naive_last_value", horizon)]
        assert naive["predictions"] == n
        assert naive["mae"] == pytest.approx(0.01 * (horizon + 1), abs=1e-6)
        trend = report[("linear_trend", horizon)]
        assert trend["predictions"] == n
        assert trend["mae"] == pytest.approx(0.01, abs=1e-6)
        assert trend["rmse"] == pytest.approx(0.01, abs=1e-6)
        assert trend["directional_accuracy"] == 1.0
        assert trend["skill_vs_naive"] == pytest.approx(1 - 1 / (horizon + 1))
        # The mean of ticks e-180..e-1 is p(e - 90.5).
        ma = report[("moving_average", horizon)]
        assert ma["mae"] == pytest.approx(0.01 * (horizon + 90.5), abs=1e-6)
        assert ma["directional_accuracy"] == 0.0  # the mean lags below the last price
        assert [(i["level"], i["coverage"]) for i in ma["intervals"]] == [(0.6827, 0.0)]
        assert ma["skill_vs_naive"] == pytest.approx(1 - (horizon + 90.5) / (horizon + 1))
        rw = report[("random_walk", horizon)]
        assert rw["skill_vs_naive"] == 0.0
        assert [i["level"] for i in rw["intervals"]] == [0.8, 0.95]
        for i in rw["intervals"]:
            assert i["interval_score"] >= i["mean_width"] > 0
        assert report[("shown_first", horizon)]["predictions"] == n
    # The SQL view agrees with the report over the same rows.
    view = h.rows("SELECT model_name, horizon_s, predictions, mae FROM prediction_accuracy "
                  "WHERE crypto_symbol = 'BTC' ORDER BY 1, 2")  # fmt: skip
    assert {m for m, *_ in view} == set(models.MODEL_NAMES)
    assert {hz for _, hz, *_ in view} == {60, 300}

    text = io.StringIO()
    with redirect_stdout(text):
        assert report_main(["--from", iso(start), "--to", iso(end), "--database-url", h.url]) == 0
    assert "naive_last_value" in text.getvalue()
    assert "(base)" in text.getvalue()
    assert "shown_first" in text.getvalue()


def test_report_refuses_bad_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main(["--from", "2025-01-02T00:00:00Z", "--to", "2025-01-01T00:00:00Z"]) == 2
    assert report_main(["--from", "2025-01-01T00:00:00", "--to", "2025-01-02T00:00:00Z"]) == 2
    assert "timezone" in capsys.readouterr().err
    assert report_main(["--last", "24h", "--from", "2025-01-01T00:00:00Z"]) == 2
    assert report_main(["--last", "soon"]) == 2
    assert "90m, 24h or 7d" in capsys.readouterr().err


def test_junk_ingestion_refuses_cannot_move_the_watermarks(harness: Harness) -> None:
    """A tick or article stamped in the year 5138 (or priced beyond the handlers' 1e12)
    is not analysed: otherwise the watermark would jump there and drop everything after."""
    h = harness
    future = 99_999_999_999.0
    h.produce(h.topics.rawticker, [*PART1_TICKS, {"pair": "BTC/USD", "last": 100.0,
              "timestamp": future}, tick("BTC/USD", 1.0, 1e13)])  # fmt: skip
    h.produce(h.topics.rawarticle, [*PART1_ARTICLES, {**article("junk", 1, 0.9, ["BTC"]),
              "published_at": None, "timestamp": future}])  # fmt: skip
    h.run("predictions", "sentiment")
    h.produce(h.topics.rawticker, PART2_TICKS)
    h.produce(h.topics.rawarticle, PART2_ARTICLES[:-1])
    h.run("predictions", "sentiment")
    last_tick = datetime.fromtimestamp(PART2_TICKS[-1]["timestamp"], UTC)
    (newest_window,) = h.rows("SELECT max(window_start) FROM prediction_data")[0]
    assert newest_window > last_tick - timedelta(minutes=3)  # part 2 was analysed
    assert h.rows("SELECT max(last_price) FROM prediction_data")[0][0] < 1000
    (eth_articles,) = h.rows(
        "SELECT sum(article_count) FROM sentiment_data WHERE crypto_symbol = 'ETH'"
    )[0]
    assert eth_articles == 4 + 6  # part 1's ETH articles and every part 2 article
    assert h.rows("SELECT count(*) FROM sentiment_data WHERE timestamp > now()")[0][0] == 0
