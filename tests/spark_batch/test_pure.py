"""The analytics math without Spark: labels, confidence, bars, accuracy, symbols, lateness.

The forecast models themselves: tests/spark_batch/test_models.py.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.settings import REPO_ROOT, SettingsError
from spark_batch import models
from spark_batch.accuracy import (
    NAIVE,
    SCORED_COLUMNS,
    SHOWN_FIRST,
    Scored,
    accuracy,
    interval_score,
    summarise,
)
from spark_batch.late import late_rows, tumbling_window, watermark_before
from spark_batch.models import bar_from_ticks
from spark_batch.prediction import bar_from_row, bars_by_symbol, prediction_row
from spark_batch.report import parse_duration
from spark_batch.sentiment import sentiment_rows
from spark_batch.sentiment_math import confidence, label
from spark_batch.settings import (
    SentimentSettings,
    SparkSettings,
    load_spark_settings,
)
from spark_batch.symbols import canonical_pair, load_symbols, parsed_article, tick_symbol
from spark_batch.timeutil import from_micros, parse_iso, to_micros
from spark_batch.writer import PREDICTION

SYMBOLS = load_symbols(REPO_ROOT / "infra" / "coins.toml")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


# -- sentiment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.0, "negative"), (0.399999, "negative"), (0.4, "neutral"), (0.6, "neutral"),
     (0.600001, "positive"), (1.0, "positive")],
)  # fmt: skip
def test_label_uses_the_seed_thresholds(score: float, expected: str) -> None:
    assert label(score) == expected


def test_confidence_values() -> None:
    assert confidence(1, 0.0) == pytest.approx(0.25)
    assert confidence(3, 0.0) == pytest.approx(0.5)
    assert confidence(9, 0.0) == pytest.approx(0.75)
    assert confidence(3, 0.25) == pytest.approx(0.25)
    assert confidence(4, 0.5) == 0.0
    assert confidence(0, 0.0) == 0.0


@given(
    n=st.integers(1, 10_000),
    std=st.floats(0.0, 0.5),
    more=st.integers(1, 100),
    spread=st.floats(0.0, 0.5),
)
def test_confidence_grows_with_count_and_agreement(
    n: int, std: float, more: int, spread: float
) -> None:
    value = confidence(n, std)
    assert 0.0 <= value < 1.0
    assert confidence(n + more, std) >= value
    assert confidence(n, min(std + spread, 0.5)) <= value


def test_sentiment_rows_round_and_label() -> None:
    stats = [
        {"window_start_us": to_micros(T0), "window_end_us": to_micros(T0) + 300_000_000,
         "crypto_symbol": "BTC", "n": 2, "mean": 0.7, "var_pop": 0.01},
    ]  # fmt: skip
    (row,) = sentiment_rows(stats, SentimentSettings())
    assert row == (
        T0 + timedelta(minutes=5),
        T0,
        "BTC",
        0.7,
        "positive",
        "aggregated_articles",
        round(2 / 5 * (1 - 0.2), 9),
        2,
    )


def test_a_mean_one_ulp_above_the_threshold_is_labelled_like_its_stored_score() -> None:
    # Three scores averaging 0.6, summed in another partition order: one ulp above 0.6.
    window = {"window_start_us": to_micros(T0), "window_end_us": to_micros(T0) + 300_000_000,
              "crypto_symbol": "BTC", "n": 3, "var_pop": 0.00667}  # fmt: skip
    above = sentiment_rows([{**window, "mean": 0.6000000000000001}], SentimentSettings())
    exact = sentiment_rows([{**window, "mean": 0.6}], SentimentSettings())
    assert 0.6000000000000001 > 0.6
    assert above == exact
    assert above[0][3:5] == (0.6, "neutral")


# -- the Spark rows of the prediction query ---------------------------------------


def spark_row(ticks: list[tuple[int, float]], end_us: int, symbol: str = "ETH") -> dict[str, Any]:
    """What the bar aggregate hands the driver for these ticks (Spark's decimal rules)."""
    prices = [Decimal(repr(p)).quantize(Decimal("1e-10")) for _, p in ticks]
    return {
        "bar_end_us": end_us, "crypto_symbol": symbol, "n": len(ticks),
        "s_p": sum(prices),
        "s_pp": sum((p * p).quantize(Decimal("1e-9")) for p in prices),
        "high": max(p for _, p in ticks), "low": min(p for _, p in ticks),
        "close": max(ticks)[1],
    }  # fmt: skip


TICKS_3 = [(1_000_000, 1.5), (20_000_000, 2.25), (59_000_000, 2.0)]


def test_a_spark_bar_row_is_the_bar_of_its_ticks() -> None:
    assert bar_from_row(spark_row(TICKS_3, 60_000_000)) == bar_from_ticks(TICKS_3, 60_000_000)


def test_a_bar_whose_sum_overflowed_is_skipped() -> None:
    row = {**spark_row(TICKS_3, 60_000_000), "s_pp": None}  # try_sum's overflow
    assert bar_from_row(row) is None
    assert bars_by_symbol([row, spark_row(TICKS_3, 120_000_000, "BTC")]) == {
        "BTC": [bar_from_ticks(TICKS_3, 120_000_000)]
    }


def test_bars_of_a_batch_are_sorted_per_coin() -> None:
    rows = [spark_row(TICKS_3, e * 60_000_000, s) for e, s in ((3, "A"), (1, "B"), (2, "A"))]
    assert {k: [b.end_us for b in v] for k, v in bars_by_symbol(rows).items()} == {
        "A": [120_000_000, 180_000_000],
        "B": [60_000_000],
    }


def test_prediction_row_fixes_decimals_and_times() -> None:
    f = models.Forecast(
        model="random_walk", horizon_s=300, issued_us=180_000_000, target_us=480_000_000,
        window_start_us=120_000_000, predicted=1 / 3, low=0.1, high=None, level=0.8,
        outer_low=None, outer_high=None, outer_level=None, last_price=2.0,
        trailing_skill=-0.12345678, preferred=True,
    )  # fmt: skip
    row = prediction_row("BTC", f)
    assert row == (
        from_micros(180_000_000), "BTC", "random_walk", 300, from_micros(120_000_000),
        Decimal("0.33333333"), Decimal("0.1"), None, 0.8, None, None, None,
        from_micros(480_000_000), Decimal("2.0"), -0.123457, True,
    )  # fmt: skip
    assert len(row) == len(PREDICTION.columns)


# -- accuracy ----------------------------------------------------------------------


def _scored(model: str, predicted: float, actual: float, last: float, minute: int,
            low: float | None = None, high: float | None = None,
            **extra: Any) -> Scored:  # fmt: skip
    return Scored(model=model, symbol="BTC", timestamp=T0 + timedelta(minutes=minute),
                  predicted=predicted, actual=actual, last=last, low=low, high=high,
                  level=None if low is None else 0.8, horizon_s=60, **extra)  # fmt: skip


def test_the_report_reads_every_scored_field_by_name() -> None:
    """A field added to Scored and not to the report's SELECT (or the other way) fails here;
    the figures read so are checked against the API's SQL in tests/api/test_market.py."""
    assert list(SCORED_COLUMNS) == list(Scored.__struct_fields__)


def test_accuracy_figures() -> None:
    rows = [
        _scored("m", 110.0, 100.0, 105.0, 0, 95.0, 105.0),  # wrong way, inside
        _scored("m", 104.0, 108.0, 100.0, 1, 101.0, 103.0),  # right way, outside by 5
        _scored("m", 100.0, 100.0, 100.0, 2),  # no move: no direction call, no interval
    ]
    got = summarise("m", "BTC", rows, 60)
    assert got.predictions == 3
    assert got.horizon_s == 60
    assert got.mae == pytest.approx((10 + 4 + 0) / 3)
    assert got.rmse == pytest.approx(math.sqrt((100 + 16 + 0) / 3))
    assert got.mape_pct == pytest.approx((10.0 + 4 / 108 * 100 + 0.0) / 3)
    assert (got.directional_accuracy, got.direction_calls) == (0.5, 2)
    assert got.naive_mae == pytest.approx((5 + 8 + 0) / 3)
    assert got.naive_rmse == pytest.approx(math.sqrt((25 + 64) / 3))
    assert got.skill_vs_naive == pytest.approx(1 - (14 / 3) / (13 / 3))
    (inner,) = got.intervals
    assert (inner.level, inner.predictions, inner.coverage) == (0.8, 2, 0.5)
    assert inner.mean_width == pytest.approx((10 + 2) / 2)
    # Interval score: width, plus 2 / alpha times the miss (alpha = 0.2 -> 10 x 5).
    assert inner.interval_score == pytest.approx((10 + (2 + 10 * 5)) / 2)
    assert got.interval(0.8) == inner
    assert got.interval(0.95) is None


@pytest.mark.parametrize(
    ("low", "high", "actual", "level", "expected"),
    [(1.0, 3.0, 2.0, 0.8, 2.0), (1.0, 3.0, 0.0, 0.8, 2.0 + 10.0), (1.0, 3.0, 4.0, 0.95, 42.0),
     (1.0, 3.0, 3.0, 0.95, 2.0)],
)  # fmt: skip
def test_interval_score(low: float, high: float, actual: float, level: float,
                        expected: float) -> None:  # fmt: skip
    assert interval_score(low, high, actual, level) == pytest.approx(expected)


def test_outer_intervals_are_scored_at_their_own_level() -> None:
    rows = [_scored("m", 100.0, 104.0, 100.0, i, 98.0, 102.0, outer_low=95.0, outer_high=105.0,
                    outer_level=0.95) for i in range(2)]  # fmt: skip
    inner, outer = summarise("m", "BTC", rows, 60).intervals
    assert (inner.level, inner.coverage) == (0.8, 0.0)
    assert (outer.level, outer.coverage, outer.mean_width) == (0.95, 1.0, 10.0)
    assert outer.interval_score == pytest.approx(10.0)


def test_accuracy_adds_naive_and_shown_first_lines_per_coin_and_horizon() -> None:
    rows = [_scored("a", 101.0, 102.0, 100.0, 0, preferred=True),
            _scored("b", 99.0, 102.0, 100.0, 0),
            _scored("a", 101.0, 99.0, 100.0, 1),
            _scored("b", 99.0, 99.0, 100.0, 1, preferred=True)]  # fmt: skip
    out = accuracy(rows)
    assert [(a.model, a.predictions) for a in out] == [
        ("a", 2), ("b", 2), (SHOWN_FIRST, 2), (NAIVE, 2)
    ]  # fmt: skip
    shown, naive = out[-2], out[-1]
    assert shown.mae == pytest.approx((1 + 0) / 2)  # a at minute 0, b at minute 1
    assert naive.mae == pytest.approx(1.5)
    assert naive.directional_accuracy == 0.0  # "no move" never calls a direction


# -- symbols -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["XBT/USD", "xbt-usd", "XXBTZUSD", "btcusd", " ETH/USD ", "XETHZUSD", "solusd", "FOO/USD",
     "foo-bar", "BTC/BTC", "XBT/BTC", "", "x" * 41, "adaxbt", "dotusdt", "linkzeur",
     "bitcoin/usd", "BTC/USD/EUR", "ZUSD/XBT", "$btc/usd", "BTC_USD", "ripple/usd",
     "Avalanche-EUR", "tether/usd", "ether/xbt"],
)  # fmt: skip
def test_canonical_pair_matches_the_coin_table(text: str) -> None:
    assert canonical_pair(text, SYMBOLS.maps) == SYMBOLS.table.pair(text)


@given(st.text(alphabet="abcdeilnorstuxzABCDEXZ019/- ", max_size=14))
def test_canonical_pair_matches_the_coin_table_on_any_text(text: str) -> None:
    assert canonical_pair(text, SYMBOLS.maps) == SYMBOLS.table.pair(text)


@pytest.mark.parametrize(
    ("pair", "quote", "symbol"),
    [("BTC/USD", "USD", "BTC"), ("xbt-usd", "USD", "BTC"), ("XXBTZUSD", "USD", "BTC"),
     ("ETH/USDT", "USD", None), ("ETH/USDT", "USDT", "ETH"), ("BTC/EUR", "USD", None),
     ("nonsense pair", "USD", None), (None, "USD", None)],
)  # fmt: skip
def test_tick_symbol_is_the_coin_part_of_a_priced_pair(
    pair: object, quote: str, symbol: str | None
) -> None:
    # parse_ticks' rule: canonical pair ending in /<quote>, the coin before the slash.
    assert tick_symbol(pair, SYMBOLS.maps, quote) == symbol


SEEN_US = 1_768_478_400_123_000
"""A Kafka record time (epoch µs): 2026-01-15T12:00:00.123Z."""


def _article(**fields: object) -> bytes:
    base: dict[str, object] = {"id": "a-1", "title": "t", "sentiment": {"score": 0.7}}
    return json.dumps({**base, **fields}).encode()


def test_spark_reads_articles_with_the_ingestion_handler() -> None:
    table = SYMBOLS.table
    mentioned = _article(cryptocurrencies_mentioned=["bitcoin", "XBT", "eth", "nope"])
    assert parsed_article(table, mentioned, SEEN_US) == ("a-1", SEEN_US, 0.7, ["BTC", "ETH"])
    prose = _article(title="Bitcoin rallies", summary="a solution for $eth")
    assert parsed_article(table, prose, SEEN_US) == ("a-1", SEEN_US, 0.7, ["BTC", "ETH"])
    untagged = parsed_article(table, _article(cryptocurrencies_mentioned=[]), SEEN_US)
    assert untagged == ("a-1", SEEN_US, 0.7, [])
    # Its own time wins over the record time; what ingestion refuses, Spark skips.
    dated = parsed_article(table, _article(published_at="2026-01-15T11:00:00Z"), SEEN_US)
    assert dated == ("a-1", SEEN_US - 3_600_123_000, 0.7, [])
    for refused in (
        _article(sentiment={"score": 1.5}),
        _article(title=""),
        _article(url="ftp://x"),
        _article(timestamp=SEEN_US / 1e6 + 2 * 86400),  # more than a day after it was seen
        b"not json",
    ):
        assert parsed_article(table, refused, SEEN_US) is None
    assert parsed_article(table, None, SEEN_US) is None


# -- lateness ----------------------------------------------------------------------


def test_tumbling_window_is_epoch_aligned() -> None:
    moment = datetime(2025, 1, 1, 10, 7, 30, tzinfo=UTC)
    assert tumbling_window(moment, 300) == (
        datetime(2025, 1, 1, 10, 5, tzinfo=UTC),
        datetime(2025, 1, 1, 10, 10, tzinfo=UTC),
    )


def test_watermark_before_replays_and_resets() -> None:
    before, through = T0, T0 + timedelta(minutes=1)
    state = ("ck", 4, before, through)
    assert watermark_before(None, "ck", 0) is None
    assert watermark_before(state, "ck", 5) == through  # next batch
    assert watermark_before(state, "ck", 4) == before  # replay of the last batch
    assert watermark_before(state, "other", 5) is None  # a new checkpoint
    assert watermark_before(state, "ck", 1) is None


def test_late_rows_are_at_or_before_the_watermark() -> None:
    wm = T0 + timedelta(minutes=10)
    rows = [("a", wm, ["BTC", "ETH"]), ("b", wm + timedelta(microseconds=1), ["BTC"]),
            ("c", T0, [])]  # fmt: skip
    got = late_rows(rows, watermark=wm, window_s=300, batch_id=3)
    assert [(r[1], r[2]) for r in got] == [("a", "BTC"), ("a", "ETH")]
    assert got[0][4:8] == (wm, wm + timedelta(minutes=5), wm, 3)
    assert late_rows(rows, watermark=None, window_s=300, batch_id=0) == []


# -- settings and time -------------------------------------------------------------


def test_settings_from_environment() -> None:
    cfg = load_spark_settings(
        {"CRYPTOVIZ_SPARK_MASTER": "spark://h:7077", "CRYPTOVIZ_SENTIMENT_WINDOW_S": "60",
         "CRYPTOVIZ_PREDICTION_QUOTE": "eur", "CRYPTOVIZ_SPARK_MAX_OFFSETS": "500",
         "CRYPTOVIZ_SPARK_OUTPUT_MODE": "append", "CRYPTOVIZ_SPARK_UI": "1",
         "CRYPTOVIZ_PREDICTION_HORIZONS_S": "120, 3600", "CRYPTOVIZ_PREDICTION_OUTER_LEVEL": "0.9"}
    )  # fmt: skip
    assert cfg.master == "spark://h:7077"
    assert cfg.sentiment.window_s == 60
    assert cfg.prediction.quote == "EUR"
    assert cfg.prediction.horizons_s == (120, 3600)
    assert cfg.prediction.outer_interval_level == 0.9
    assert cfg.max_offsets_per_trigger == 500
    assert cfg.output_mode == "append"
    assert cfg.ui is True
    assert load_spark_settings({}) == SparkSettings()
    assert SparkSettings.checkpoint_dir(Path("/s"), "q") == Path("/s/spark/checkpoints/q")


@pytest.mark.parametrize(
    "env",
    [{"CRYPTOVIZ_SENTIMENT_WINDOW_S": "0"}, {"CRYPTOVIZ_PREDICTION_HORIZONS_S": "60,90"},
     {"CRYPTOVIZ_PREDICTION_HORIZONS_S": "60;300"}, {"CRYPTOVIZ_PREDICTION_WINDOW_S": "100"},
     {"CRYPTOVIZ_PREDICTION_OUTER_LEVEL": "0"},
     {"CRYPTOVIZ_SPARK_OUTPUT_MODE": "complete"}, {"CRYPTOVIZ_PREDICTION_INTERVAL_LEVEL": "1"},
     {"CRYPTOVIZ_SPARK_SHUFFLE_PARTITIONS": "two"}],
)  # fmt: skip
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        load_spark_settings(env)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90m", 5400), ("24h", 86400), ("7d", 604800), ("1.5h", 5400)]
)
def test_report_trailing_windows(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0h", "24", "h", "-1d", "2w"])
def test_bad_trailing_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_time_helpers_are_timezone_aware() -> None:
    assert parse_iso("2025-01-01T00:00:00Z") == T0
    assert parse_iso("2025-01-01T02:00:00+02:00") == T0
    with pytest.raises(ValueError, match="timezone"):
        parse_iso("2025-01-01T00:00:00")
    with pytest.raises(ValueError, match="naive"):
        to_micros(datetime(2025, 1, 1))  # noqa: DTZ001 - the point of the test
    assert from_micros(to_micros(T0) + 1) == T0 + timedelta(microseconds=1)


def test_progress_reports_become_gauges() -> None:
    from prometheus_client import REGISTRY

    from spark_batch.metrics import observe

    observe(
        "predictions",
        {
            "batchId": 7,
            "numInputRows": 1200,
            "inputRowsPerSecond": 600.0,
            "processedRowsPerSecond": 2400.5,
            "durationMs": {"triggerExecution": 500},
            "timestamp": "2026-11-01T12:00:00.000Z",
        },
    )

    def value(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"query": "predictions"})

    assert value("cryptoviz_spark_batch_duration_seconds") == 0.5
    assert value("cryptoviz_spark_batch_input_rows") == 1200
    assert value("cryptoviz_spark_processed_rows_per_second") == 2400.5
    assert value("cryptoviz_spark_last_batch_timestamp_seconds") == 1793534400.0
