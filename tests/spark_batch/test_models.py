"""The forecast state machine (spark_batch.models) on known and simulated paths.

The real-market figures are the backtest's (tests/bench/test_backtest.py).
"""

from __future__ import annotations

import math
import random
from decimal import Decimal

import msgspec
import pytest

from spark_batch import models
from spark_batch.accuracy import Scored, accuracy
from spark_batch.models import Bar, Forecast, Forecaster, ModelConfig, bar_from_ticks
from spark_batch.timeutil import from_micros

CFG = ModelConfig()
MIN = 60_000_000


def walk(
    minutes: int, *, seed: int, sigma: float = 0.001, drift: float = 0.0, calm_every: int = 0
) -> list[Bar]:
    """Bars of a geometric random walk with 6 ticks a minute (relative sigma per minute).

    ``calm_every``: the volatility switches between sigma and sigma / 4 every that many
    minutes (volatility clustering, which a fixed interval cannot follow).
    """
    rng = random.Random(seed)
    price, ticks = 100.0, []
    for minute in range(minutes):
        s = sigma / 4 if calm_every and (minute // calm_every) % 2 else sigma
        for k in range(6):
            price *= math.exp(rng.gauss(drift / 6, s / math.sqrt(6)))
            ticks.append((minute * MIN + k * 10_000_000 + 1, round(price, 4)))
    return models.bars_from_ticks(ticks)


def scored(forecasts: list[Forecast], bars: list[Bar], since_us: int = 0) -> list[Scored]:
    closes = {b.end_us: b.close for b in bars}
    return [
        Scored(model=f.model, symbol="X", timestamp=from_micros(f.issued_us), predicted=f.predicted,
               actual=closes[f.target_us], last=f.last_price, horizon_s=f.horizon_s, low=f.low,
               high=f.high, level=f.level, outer_low=f.outer_low, outer_high=f.outer_high,
               outer_level=f.outer_level, preferred=f.preferred)
        for f in forecasts
        if f.target_us in closes and f.issued_us >= since_us
    ]  # fmt: skip


# -- bars --------------------------------------------------------------------------


def test_a_bar_sums_its_ticks_like_spark() -> None:
    ticks = [(10, 42298.123456789), (30, 1.5), (50, 7.25), (50, 3.0)]
    bar = bar_from_ticks(ticks, 60)
    assert bar.n == 4
    assert bar.sum_p == Decimal("42298.1234567890") + Decimal("1.5") + Decimal("10.25")
    # Spark's decimal(24,10) * decimal(24,10) is decimal(38,9): each square is rounded.
    assert bar.sum_pp == Decimal("1789131247.965763823") + Decimal("2.25") + Decimal(
        "52.5625"
    ) + Decimal("9")
    assert (bar.high, bar.low) == (42298.123456789, 1.5)
    assert bar.close == 7.25  # the latest tick; equal times resolve to the higher price


def test_bars_are_minutes_aligned_on_the_epoch() -> None:
    bars = models.bars_from_ticks([(0, 1.0), (59_999_999, 2.0), (60_000_000, 3.0)])
    assert [(b.end_us, b.n, b.close) for b in bars] == [(MIN, 2, 2.0), (2 * MIN, 1, 3.0)]


# -- the forecasts -------------------------------------------------------------------


def test_forecasts_are_issued_at_the_bar_end_for_each_horizon() -> None:
    bars = walk(5, seed=1)
    out = Forecaster(CFG)
    assert out.advance(bars[0]) == []  # the first bar starts the state
    issued = out.advance(bars[1])
    assert {(f.model, f.horizon_s) for f in issued} == {
        (m, h) for m in models.MODEL_NAMES for h in (60, 300, 900) if m != models.LINEAR_TREND
    }  # the trend needs three closes
    for f in issued:
        assert f.issued_us == bars[1].end_us
        assert f.target_us == f.issued_us + f.horizon_s * 1_000_000
        assert f.last_price == bars[1].close
    rw = {f.horizon_s: f for f in issued if f.model == models.RANDOM_WALK}
    assert all(f.predicted == bars[1].close for f in rw.values())
    # Before any error is known the conformal quantiles are the normal ones (the prior).
    g = {f.horizon_s: f for f in issued if f.model == models.RANDOM_WALK_GAUSSIAN}
    q80, q95 = models.weighted_quantiles(models.half_normal_prior(CFG), (0.8, 0.95), 0.05)
    assert q80 > 1.2816  # the normal quantiles, a little wider for the few (pseudo-)scores
    assert q95 > 1.96
    widths = {}
    for h, f in rw.items():
        low, high, outer_low, outer_high = f.low, f.high, f.outer_low, f.outer_high
        assert low is not None
        assert high is not None
        assert outer_low is not None
        assert outer_high is not None
        assert outer_low < low < f.predicted < high < outer_high
        assert (f.level, f.outer_level) == (0.8, 0.95)
        assert (outer_high - f.predicted) / (high - f.predicted) == pytest.approx(q95 / q80)
        assert g[h].high is not None
        widths[h] = high - low
    assert widths[900] == pytest.approx(math.sqrt(15) * widths[60])  # sqrt(15 min / 1 min)


def test_the_seeds_moving_average_on_known_bars() -> None:
    ticks = [(5_000_000, 100.0), (65_000_000, 101.0), (125_000_000, 103.0), (175_000_000, 102.0),
             (200_000_000, 104.5)]  # fmt: skip
    forecasts = models.run(models.bars_from_ticks(ticks), CFG)
    ma = [f for f in forecasts if f.model == models.MOVING_AVERAGE and f.horizon_s == 60]
    # At 3 minutes: ticks of minutes 0-2: 100, 101, 103, 102. At 4: 101, 103, 102, 104.5.
    assert [f.predicted for f in ma] == [pytest.approx(100.5), 101.5, 102.625]
    std = math.sqrt(5 / 3)
    assert ma[1].low == pytest.approx(101.5 - std)
    assert ma[1].high == pytest.approx(101.5 + std)
    assert ma[1].level == pytest.approx(0.682689, abs=1e-6)
    assert ma[1].outer_low is None
    assert ma[2].window_start_us == MIN  # three minutes: 1, 2 and 3


def test_random_walk_intervals_are_calibrated_where_the_gaussian_ones_are_not() -> None:
    # Volatility switching between two regimes every two hours, 6 days of minutes.
    bars = walk(6 * 1440, seed=3, calm_every=120)
    rows = scored(models.run(bars, CFG), bars, since_us=bars[1440].end_us)
    table = {(a.model, a.horizon_s): a for a in accuracy(rows)}
    for h in (60, 300, 900):
        ours = table[(models.RANDOM_WALK, h)]
        base = table[(models.RANDOM_WALK_GAUSSIAN, h)]
        for level in (0.8, 0.95):
            mine, theirs = ours.interval(level), base.interval(level)
            assert mine is not None
            assert theirs is not None
            assert mine.coverage == pytest.approx(level, abs=0.02), (h, level)
            assert mine.interval_score < theirs.interval_score, (h, level)


def test_trailing_skill_is_visible_and_a_trend_is_preferred_only_while_it_pays() -> None:
    # A steady trend: extrapolating it beats "the price stays".
    trending = walk(1100, seed=5, sigma=0.0002, drift=0.001)
    forecasts = [f for f in models.run(trending, CFG) if f.horizon_s == 300]
    # Shown first only once its skill weighs half a day of forecasts (~900 minutes here).
    early = [f for f in forecasts if f.issued_us <= trending[800].end_us]
    late = [f for f in forecasts if f.issued_us > trending[1050].end_us]
    assert {f.model for f in early if f.preferred} == {models.RANDOM_WALK}
    assert {f.model for f in late if f.preferred} == {models.LINEAR_TREND}
    trend = [f for f in late if f.model == models.LINEAR_TREND]
    assert all(f.trailing_skill is not None and f.trailing_skill > 0.5 for f in trend)
    ma = [f for f in late if f.model == models.MOVING_AVERAGE]
    assert all(f.trailing_skill is not None and f.trailing_skill < 0 for f in ma)  # lags behind
    # A driftless walk: nothing beats naive by the margin, the random walk is shown first.
    flat = walk(1500, seed=6)
    shown = [f for f in models.run(flat, CFG) if f.preferred]
    assert {f.model for f in shown} == {models.RANDOM_WALK}
    assert all((f.trailing_skill or 0.0) >= 0.0 for f in shown)


def test_a_missing_target_minute_leaves_the_forecast_unscored() -> None:
    bars = walk(30, seed=7)
    gap = [b for i, b in enumerate(bars) if i != 10]  # no tick in minute 10
    f = Forecaster(CFG)
    for bar in gap[:10]:
        f.advance(bar)
    before = f.state.skill[f"{models.RANDOM_WALK}/60"].weight
    pending = sorted(f.state.pending)
    assert pending[0] == bars[10].end_us  # the 1-minute forecast issued at minute 9's end
    f.advance(gap[10])  # minute 11: the forecast for minute 10 has no bar to be scored on
    assert bars[10].end_us not in f.state.pending
    # The 1-minute forecast targeting minute 11 was issued at 10, which never came: nothing
    # to resolve at 60 s, only the decay of the other horizons' resolutions.
    assert f.state.skill[f"{models.RANDOM_WALK}/60"].weight == before


# -- state -------------------------------------------------------------------------


def test_a_restored_snapshot_continues_with_the_same_digits() -> None:
    bars = walk(400, seed=8)
    whole = Forecaster(CFG)
    expected = [f for b in bars for f in whole.advance(b)]
    first = Forecaster(CFG)
    got = [f for b in bars[:123] for f in first.advance(b)]
    blob = first.snapshot()
    second = Forecaster.restore(CFG, blob)
    got += [f for b in bars[123:] for f in second.advance(b)]
    assert got == expected
    assert second.snapshot() == whole.snapshot()
    assert len(blob) < 25_000  # about 20 kB per coin once every histogram exists


def test_a_bar_already_applied_changes_nothing() -> None:
    bars = walk(20, seed=9)
    f = Forecaster(CFG)
    for bar in bars:
        f.advance(bar)
    before = f.snapshot()
    assert f.advance(bars[-1]) == []
    assert f.advance(bars[5]) == []
    assert f.snapshot() == before


def test_a_state_of_another_version_is_discarded() -> None:
    f = Forecaster(CFG)
    for bar in walk(5, seed=10):
        f.advance(bar)
    old = msgspec.msgpack.encode(msgspec.structs.replace(f.state, version=0))
    assert Forecaster.restore(CFG, old).last_end_us is None
    assert Forecaster.restore(CFG, f.snapshot()).last_end_us == f.last_end_us
    assert Forecaster.restore(CFG, None).last_end_us is None


def test_no_forecast_sees_a_later_bar() -> None:
    bars = walk(300, seed=11)
    cut = bars[150].end_us
    changed = bars[:151] + [msgspec.structs.replace(b, close=b.close * 1.5, high=b.high * 1.5)
                            for b in bars[151:]]  # fmt: skip
    a, b = models.run(bars, CFG), models.run(changed, CFG)
    assert [f for f in a if f.issued_us <= cut] == [f for f in b if f.issued_us <= cut]
    assert [f for f in a if f.issued_us > cut] != [f for f in b if f.issued_us > cut]


# -- pieces ------------------------------------------------------------------------


def test_quantiles_of_the_prior_are_the_normal_ones() -> None:
    prior = models.half_normal_prior(CFG)
    assert sum(prior) == pytest.approx(CFG.prior_weight)
    q80, q95 = models.weighted_quantiles(prior, (0.8, 0.95), CFG.score_bin_width, unit=0.0)
    assert q80 == pytest.approx(1.2816, abs=0.01)
    assert q95 == pytest.approx(1.96, abs=0.01)


def test_weighted_quantiles_interpolate_inside_a_bin() -> None:
    bins = [1.0, 1.0, 2.0, 0.0]  # bins of 0.5: [0, .5), [.5, 1), [1, 1.5), overflow
    assert models.weighted_quantiles(bins, (0.25, 0.5, 0.75), 0.5, unit=0.0) == [
        pytest.approx(0.5), pytest.approx(1.0), pytest.approx(1.25)
    ]  # fmt: skip
    # The conformal correction counts the next forecast: level * (total + unit).
    assert models.weighted_quantiles(bins, (0.5,), 0.5, unit=4.0) == [pytest.approx(1.5)]


@pytest.mark.parametrize(
    "change",
    [{"horizons_s": (90,)}, {"horizons_s": ()}, {"window_s": 100}, {"interval_level": 1.0},
     {"vol_weights": (1.0,)}, {"trend_window_s": 120}],
)  # fmt: skip
def test_bad_model_configs_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**change)  # type: ignore[arg-type]
