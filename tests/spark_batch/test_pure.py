"""The analytics math without Spark: labels, confidence, models, accuracy, symbols, lateness."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.settings import REPO_ROOT, SettingsError
from spark_batch import models
from spark_batch.accuracy import NAIVE, Scored, accuracy, summarise
from spark_batch.late import late_rows, tumbling_window, watermark_before
from spark_batch.models import WindowStats, forecasts, stats_from_ticks
from spark_batch.prediction import prediction_rows, window_stats
from spark_batch.sentiment import sentiment_rows
from spark_batch.sentiment_math import confidence, label
from spark_batch.settings import (
    PredictionSettings,
    SentimentSettings,
    SparkSettings,
    load_spark_settings,
)
from spark_batch.symbols import article_coins, canonical_pair, load_symbols
from spark_batch.timeutil import from_micros, parse_iso, to_micros

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


# -- models ------------------------------------------------------------------------


def test_stats_and_models_on_a_known_window() -> None:
    # Prices 100, 102, 104, 106 at 30, 20, 10, 0 s before the window end: a line.
    ticks = [(970.0, 100.0), (980.0, 102.0), (990.0, 104.0), (1000.0, 106.0)]
    stats = stats_from_ticks(ticks, window_end=1000.0, halflife_s=30.0)
    assert stats.n == 4
    assert stats.mean == pytest.approx(103.0)
    assert stats.last_price == 106.0
    assert stats.span_s == 30.0
    assert models.slope(stats) == pytest.approx(0.2)
    ma = models.moving_average(stats)
    std = math.sqrt(sum((p - 103.0) ** 2 for _, p in ticks) / 3)
    assert (ma.predicted, ma.low, ma.high) == pytest.approx((103.0, 103.0 - std, 103.0 + std))
    assert ma.level == pytest.approx(0.682689, abs=1e-6)
    trend = models.linear_trend(stats, horizon_s=300, level=0.8)
    assert trend is not None
    # A perfect line: the fit is exact, so the diffusion estimate and the interval are 0.
    assert trend.predicted == pytest.approx(106.0 + 0.2 * 300)
    assert trend.low == pytest.approx(trend.predicted)
    ewma = models.ewma(stats, horizon_s=300, halflife_s=30.0, level=0.8)
    weights = [2 ** (-(1000.0 - t) / 30.0) for t, _ in ticks]
    expected = sum(w * p for w, (_, p) in zip(weights, ticks, strict=True)) / sum(weights)
    assert ewma.predicted == pytest.approx(expected)


def test_single_tick_gives_no_interval_and_no_trend() -> None:
    stats = stats_from_ticks([(10.0, 5.0)], window_end=30.0, halflife_s=30.0)
    out = forecasts(stats, horizon_s=300, halflife_s=30.0, level=0.8)
    assert [f.model for f in out] == ["moving_average", "ewma"]
    assert all(f.low is None and f.high is None and f.level is None for f in out)
    assert all(f.predicted == 5.0 for f in out)


def test_diffusion_estimate_is_calibrated_on_brownian_paths() -> None:
    # sigma^2 = 15 MSE / S must be unbiased for a Brownian path sampled every second.
    rng = random.Random(7)
    estimates = []
    for _ in range(400):
        price, ticks = 100.0, []
        for second in range(181):
            ticks.append((float(second), price))
            price += rng.gauss(0.0, 0.05)
        stats = stats_from_ticks(ticks, window_end=181.0, halflife_s=30.0)
        estimate = models.diffusion_variance(stats)
        assert estimate is not None
        estimates.append(estimate)
    assert sum(estimates) / len(estimates) == pytest.approx(0.05**2, rel=0.1)


def test_interval_coverage_matches_nominal_on_random_walks() -> None:
    # The ewma/linear_trend intervals are derived for a random walk: check they hold it.
    rng = random.Random(11)
    hits = {"ewma": 0, "linear_trend": 0}
    trials = 600
    for _ in range(trials):
        price, ticks = 100.0, []
        for second in range(481):
            if second < 180:
                ticks.append((float(second), price))
            if second == 480:
                actual = price
            price += rng.gauss(0.0, 0.05)
        stats = stats_from_ticks(ticks, window_end=180.0, halflife_s=30.0)
        for f in forecasts(stats, horizon_s=300, halflife_s=30.0, level=0.8):
            if f.model in hits and f.low is not None and f.high is not None:
                hits[f.model] += f.low <= actual <= f.high
    for model, count in hits.items():
        assert count / trials == pytest.approx(0.8, abs=0.05), model


@pytest.mark.parametrize(
    ("level", "dof", "expected"),
    [(0.8, 5, 1.4759), (0.95, 5, 2.5706), (0.9, 30, 1.6973), (0.95, 1e9, 1.96)],
)
def test_t_value(level: float, dof: float, expected: float) -> None:
    assert models.t_value(level, dof) == pytest.approx(expected, abs=2e-3)


def sums_row(ticks: list[tuple[float, float]], window_end: float, halflife_s: float
             ) -> dict[str, Any]:  # fmt: skip
    """What the Spark aggregate hands the driver: exact sums, as ``prediction_stats`` takes them."""
    tau = models.ewma_tau(halflife_s)
    xs = [round((t - window_end) * 1_000_000) for t, _ in ticks]
    ps = [Decimal(repr(price)) for _, price in ticks]
    ws = [Decimal(math.exp(x / 1e6 / tau)).quantize(Decimal("1e-18")) for x in xs]
    return {
        "window_start_us": round((window_end - 180) * 1e6),
        "window_end_us": round(window_end * 1e6),
        "crypto_symbol": "ETH", "n": len(ticks),
        "s_p": sum(ps), "s_pp": sum(p * p for p in ps), "s_x": sum(xs),
        "s_xx": sum(x * x for x in xs), "s_xp": sum(x * p for x, p in zip(xs, ps, strict=True)),
        "s_w": sum(ws), "s_wp": sum(w * p for w, p in zip(ws, ps, strict=True)),
        "last_price": ticks[-1][1], "first_x": xs[0] / 1e6, "last_x": xs[-1] / 1e6,
    }  # fmt: skip


TICKS_3 = [(0.0, 1.0), (60.0, 2.0), (120.0, 4.0)]


def test_window_stats_from_exact_sums_match_the_direct_statistics() -> None:
    direct = stats_from_ticks(TICKS_3, window_end=180.0, halflife_s=30.0)
    from_sums = window_stats(sums_row(TICKS_3, 180.0, 30.0))
    assert from_sums is not None
    for name in direct.__struct_fields__:
        assert getattr(from_sums, name) == pytest.approx(getattr(direct, name), rel=1e-12), name


def test_a_window_whose_sum_overflowed_is_skipped() -> None:
    row = {**sums_row(TICKS_3, 180.0, 30.0), "s_pp": None}  # try_sum's overflow
    assert window_stats(row) is None
    assert prediction_rows([row], PredictionSettings()) == []


def test_prediction_rows_fix_decimals_and_target() -> None:
    rows = prediction_rows([sums_row(TICKS_3, 180.0, 30.0)], PredictionSettings())
    assert [r[3] for r in rows] == ["moving_average", "ewma", "linear_trend"]
    for row in rows:
        assert row[0] == from_micros(180_000_000)
        assert row[9] == from_micros(480_000_000)
        assert row[8] == 300
        assert str(row[10]) == "4.0"
        predicted = row[4]
        assert predicted is not None
        assert -predicted.as_tuple().exponent <= 8  # type: ignore[union-attr,operator]


# -- accuracy ----------------------------------------------------------------------


def _scored(model: str, predicted: float, actual: float, last: float, minute: int,
            low: float | None = None, high: float | None = None) -> Scored:  # fmt: skip
    return Scored(model=model, symbol="BTC", timestamp=T0 + timedelta(minutes=minute),
                  predicted=predicted, actual=actual, last=last, low=low, high=high,
                  level=None if low is None else 0.8)  # fmt: skip


def test_accuracy_figures() -> None:
    rows = [
        _scored("m", 110.0, 100.0, 105.0, 0, 95.0, 105.0),  # wrong way, inside
        _scored("m", 104.0, 108.0, 100.0, 1, 101.0, 103.0),  # right way, outside
        _scored("m", 100.0, 100.0, 100.0, 2),  # no move: no direction call, no interval
    ]
    got = summarise("m", "BTC", rows)
    assert got.predictions == 3
    assert got.mae == pytest.approx((10 + 4 + 0) / 3)
    assert got.mape_pct == pytest.approx((10.0 + 4 / 108 * 100 + 0.0) / 3)
    assert (got.directional_accuracy, got.direction_calls) == (0.5, 2)
    assert got.coverage == 0.5
    assert got.nominal_level == 0.8
    assert got.naive_mae == pytest.approx((5 + 8 + 0) / 3)
    assert got.skill_vs_naive == pytest.approx(1 - (14 / 3) / (13 / 3))


def test_accuracy_adds_one_naive_line_per_coin() -> None:
    rows = [_scored("a", 101.0, 102.0, 100.0, 0), _scored("b", 99.0, 102.0, 100.0, 0),
            _scored("a", 101.0, 99.0, 100.0, 1)]  # fmt: skip
    out = accuracy(rows)
    assert [(a.model, a.predictions) for a in out] == [("a", 2), ("b", 1), (NAIVE, 2)]
    naive = out[-1]
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


def test_article_coins_follow_the_handler_rule() -> None:
    table = SYMBOLS.table
    assert article_coins(table, ["bitcoin", "XBT", "eth", "nope"], "t", "s") == ["BTC", "ETH"]
    assert article_coins(table, [], "Bitcoin and SOL", "") == []
    assert article_coins(table, None, "Bitcoin rallies", "a solution for $eth") == ["BTC", "ETH"]


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
         "CRYPTOVIZ_SPARK_OUTPUT_MODE": "append", "CRYPTOVIZ_SPARK_UI": "1"}
    )  # fmt: skip
    assert cfg.master == "spark://h:7077"
    assert cfg.sentiment.window_s == 60
    assert cfg.prediction.quote == "EUR"
    assert cfg.max_offsets_per_trigger == 500
    assert cfg.output_mode == "append"
    assert cfg.ui is True
    assert load_spark_settings({}) == SparkSettings()
    assert SparkSettings.checkpoint_dir(Path("/s"), "q") == Path("/s/spark/checkpoints/q")


@pytest.mark.parametrize(
    "env",
    [{"CRYPTOVIZ_SENTIMENT_WINDOW_S": "0"}, {"CRYPTOVIZ_PREDICTION_SLIDE_S": "600"},
     {"CRYPTOVIZ_SPARK_OUTPUT_MODE": "complete"}, {"CRYPTOVIZ_PREDICTION_INTERVAL_LEVEL": "1"},
     {"CRYPTOVIZ_SPARK_SHUFFLE_PARTITIONS": "two"}],
)  # fmt: skip
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        load_spark_settings(env)


def test_time_helpers_are_timezone_aware() -> None:
    assert parse_iso("2025-01-01T00:00:00Z") == T0
    assert parse_iso("2025-01-01T02:00:00+02:00") == T0
    with pytest.raises(ValueError, match="timezone"):
        parse_iso("2025-01-01T00:00:00")
    with pytest.raises(ValueError, match="naive"):
        to_micros(datetime(2025, 1, 1))  # noqa: DTZ001 - the point of the test
    assert from_micros(to_micros(T0) + 1) == T0 + timedelta(microseconds=1)


def test_window_stats_round_trip() -> None:
    stats = WindowStats(n=1, mean=1.0, var_pop=0.0, x_mean=-1.0, x_var=0.0, xp_cov=0.0,
                        ewma=1.0, last_price=1.0, first_x=-1.0, last_x=-1.0)  # fmt: skip
    assert stats.std_sample is None
    assert models.slope(stats) is None
    assert models.diffusion_variance(stats) is None


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
