"""The walk-forward backtest on the real candle files: issue 13's targets, no lookahead.

``test_targets_on_the_real_month`` runs the whole backtest (both files, about 45 s of
CPU) and fails when a calibrated interval misses its coverage by more than 2 points,
when it does not beat the plain Gaussian interval's score, or when the model shown
first is worse than naive; ``test_the_target_check_catches_a_broken_calibration``
shows that it would.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bench import backtest
from spark_batch import models

CFG = models.ModelConfig()


@pytest.fixture(scope="module")
def market(shared_fixtures: Path) -> list[Path]:
    files = sorted((shared_fixtures / "market").glob("*.csv"))
    if len(files) < 2:
        pytest.skip(f"the real candle files are missing from {shared_fixtures / 'market'}")
    return files


@pytest.fixture(scope="module")
def month(market: list[Path]) -> dict[str, Any]:
    return backtest.backtest(market, CFG, burn_in_hours=24)


def _slice(source: Path, target: Path, minutes: int) -> Path:
    with source.open() as f:
        rows = [line for _, line in zip(range(minutes + 1), f, strict=False)]
    target.write_text("".join(rows))
    return target


def test_targets_on_the_real_month(month: dict[str, Any]) -> None:
    assert month["target_misses"] == []
    assert month["targets_met"] is True
    for name in ("BTCUSDT", "ETHUSDT"):
        run = month["runs"][name]
        assert run["file"]["candles"] == 44_641
        assert run["shown_first_models"] == [models.RANDOM_WALK]
        res = month["results"][name]
        for h in ("60", "300", "900"):
            ours = res[models.RANDOM_WALK][h]["levels"]
            theirs = res[models.RANDOM_WALK_GAUSSIAN][h]["levels"]
            for level in ("0.8", "0.95"):
                assert abs(ours[level]["coverage"] - float(level)) <= 0.02
                assert ours[level]["interval_score_vs_baseline"] < 1.0
            # The plain Gaussian interval over-covers at 80 % on real prices (fat tails).
            assert theirs["0.8"]["coverage"] > 0.83
            # Every model's skill is reported, negative included; none is a stub.
            assert res[models.MOVING_AVERAGE][h]["skill_vs_naive"] < 0
            assert res[models.LINEAR_TREND][h]["skill_vs_naive"] < 0
            assert res[models.RANDOM_WALK][h]["skill_vs_naive"] == 0.0


def test_the_recorded_results_are_this_codes(month: dict[str, Any]) -> None:
    """bench/results/backtest.json holds what the backtest computes now."""
    recorded = msgspec.json.decode(backtest.RESULTS.read_bytes())
    assert recorded["results"] == month["results"]
    assert recorded["config"] == msgspec.json.decode(msgspec.json.encode(month["config"]))


def test_the_target_check_catches_a_broken_calibration(market: list[Path], tmp_path: Path) -> None:
    week = _slice(market[0], tmp_path / "binance_BTCUSDT_week.csv", 7 * 1440)
    miss = "BTCUSDT random_walk 60s 0.8: coverage"
    good = {"BTCUSDT": backtest.backtest_file(week, CFG, 24)}
    assert not any(miss in m for m in backtest.check_targets(good, CFG))
    # A prior so heavy that the model's own errors never move the quantiles: the intervals
    # stay the normal ones, which over-cover at 80 % like the Gaussian baseline.
    frozen = msgspec.structs.replace(CFG, prior_weight=1e12)
    bad = {"BTCUSDT": backtest.backtest_file(week, frozen, 24)}
    misses = backtest.check_targets(bad, frozen)
    assert any(miss in m for m in misses), misses


def test_changing_the_data_after_t_changes_no_forecast_issued_before_t(
    market: list[Path],
) -> None:
    candles = backtest.read_candles(market[0])[:3000]
    ticks = backtest.ticks_from_candles(candles)
    t = candles[2000].open_us + 30_000_000  # in the middle of a minute
    rng = random.Random(13)
    changed = [(at, p if at < t else p * rng.uniform(0.9, 1.1)) for at, p in ticks]
    original = models.run(models.bars_from_ticks(ticks), CFG)
    altered = models.run(models.bars_from_ticks(changed), CFG)
    before = [f for f in original if f.issued_us <= t]
    assert before == [f for f in altered if f.issued_us <= t]
    assert len(before) > 20_000
    # ... and the change does show after t (the comparison is not vacuous).
    assert [f for f in original if f.issued_us > t] != [f for f in altered if f.issued_us > t]


def test_candles_become_four_ticks_inside_their_minute(market: list[Path]) -> None:
    first = backtest.read_candles(market[0])[0]
    ticks = backtest.candle_ticks(first)
    offsets = [at - first.open_us for at, _ in ticks]
    assert offsets == [1_000_000, 20_000_000, 40_000_000, 59_000_000]
    prices = [p for _, p in ticks]
    assert (prices[0], prices[-1]) == (first.open, first.close)
    assert sorted(p for _, p in ticks[1:3]) == [first.low, first.high]
    (bar,) = models.bars_from_ticks(ticks)
    assert (bar.end_us, bar.high, bar.low, bar.close, bar.n) == (
        first.open_us + 60_000_000, first.high, first.low, first.close, 4)  # fmt: skip
    with market[0].open() as f:
        row = next(csv.DictReader(f))
    assert first.close == float(row["close"])


def test_the_cli_prints_the_table_and_exits_by_the_targets(
    market: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two_days = _slice(market[1], tmp_path / "binance_ETHUSDT_2d.csv", 2 * 1440)
    code = backtest.main([str(two_days), "--burn-in-hours", "12"])
    captured = capsys.readouterr()
    assert "ETHUSDT  random_walk " in captured.out
    assert "written to" not in captured.out  # explicit files are not the recorded figures
    # Two days are too few for the targets' precision: a miss is reported and fails the run.
    assert code == (1 if "target missed" in captured.err else 0)
