"""Walk-forward backtest of the forecast models on real 1-minute candle files.

    .venv/bin/python -m bench.backtest [CSV ...] [--burn-in-hours 24] [--no-write]
        [--gaussian-halflife-min 60]
    make backtest

Runs the exact model code of the streaming job (:mod:`spark_batch.models`) over
each candle file, minute by minute, and scores every forecast with the live
report's code (:func:`spark_batch.accuracy.accuracy`). Default files: the real
Binance BTC/USDT and ETH/USDT month of ``../shared/fixtures/real/market``.

* Each candle becomes four ticks inside its minute (:func:`candle_ticks`): the
  open at +1 s, the extreme nearer the open at +20 s, the other at +40 s, the close
  at +59 s. The ticks become bars with :func:`spark_batch.models.bars_from_ticks`,
  the function the Spark aggregate is tested against, so a bar here is the bar
  Spark would build from the same ticks (``tests/spark_batch/test_forecast_spark.py``
  checks it on a real slice).
* Walk-forward: bar after bar, the state machine first resolves the forecasts
  whose target is this bar's end, then issues new ones from what it has seen; a
  forecast never sees a later bar (``tests/bench/test_backtest.py`` changes the
  data after a time ``t`` and finds every forecast issued before ``t`` unchanged).
* The actual price of a forecast is the close of the bar ending at its target
  time (the last tick before it). Forecasts issued in the first ``--burn-in-hours``
  are not scored: the day-long volatility component and the calibration start
  from nothing.
* Targets (issue 13, checked in :func:`check_targets`): for ``random_walk``, on every
  file, horizon and level, coverage within 2 points of nominal and a lower mean
  interval score than ``random_walk_gaussian``, the plain EWMA-volatility Gaussian
  interval; ``shown_first`` not worse than naive.

Results: printed as a table and, for the default files and configuration, written
to ``bench/results/backtest.json`` (keys ``results[file][model][horizon_s]``, interval
figures under ``levels[level]``). Exit status (:mod:`infra.cli`): 1 when a target is
missed, 2 when there is no candle file.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from bench._results import REPO, provenance
from handlers import ConfigError
from infra.cli import ExitCode, run_program
from spark_batch import models
from spark_batch.accuracy import NAIVE, SHOWN_FIRST, Accuracy, Scored, accuracy
from spark_batch.timeutil import from_micros

RESULTS = REPO / "bench" / "results" / "backtest.json"
MARKET = REPO.parent / "shared" / "fixtures" / "real" / "market"
CANDLE_TICK_OFFSETS_S = (1, 20, 40, 59)
"""Where the open, first extreme, second extreme and close of a candle are placed."""
CALIBRATED = models.RANDOM_WALK
BASELINE = models.RANDOM_WALK_GAUSSIAN
COVERAGE_TOLERANCE = 0.02
_US = 1_000_000


class Candle(msgspec.Struct, frozen=True, array_like=True):
    open_us: int
    """Start of the minute (the file's naive UTC ``datetime``)."""
    open: float
    high: float
    low: float
    close: float


def default_files() -> list[Path]:
    return sorted(MARKET.glob("*.csv"))


def read_candles(path: Path) -> list[Candle]:
    """Candles of a ``datetime,open,high,low,close[,volume]`` CSV (naive UTC times)."""
    out = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            opened = datetime.fromisoformat(row["datetime"]).replace(tzinfo=UTC)
            out.append(
                Candle(
                    open_us=round(opened.timestamp() * _US),
                    open=float(row["open"]),
                    high=float(row["high"]),
                    low=float(row["low"]),
                    close=float(row["close"]),
                )
            )
    return out


def candle_ticks(c: Candle) -> list[tuple[int, float]]:
    """Four ``(µs, price)`` ticks inside the candle's minute: open, extremes, close."""
    # The extreme nearer the open comes first: a down candle usually makes its
    # high before its low, an up candle its low before its high.
    first, second = (c.high, c.low) if c.close < c.open else (c.low, c.high)
    prices = (c.open, first, second, c.close)
    offsets = CANDLE_TICK_OFFSETS_S
    return [(c.open_us + off * _US, p) for off, p in zip(offsets, prices, strict=True)]


def ticks_from_candles(candles: Sequence[Candle]) -> list[tuple[int, float]]:
    return [t for c in candles for t in candle_ticks(c)]


def symbol_of(path: Path) -> str:
    """``binance_BTCUSDT_1m_...csv`` -> ``BTCUSDT``."""
    parts = path.stem.split("_")
    return parts[1] if len(parts) > 1 else path.stem


def scored(
    forecasts: Sequence[models.Forecast], bars: Sequence[models.Bar], symbol: str, since_us: int
) -> list[Scored]:
    """The forecasts issued at or after ``since_us`` whose target bar exists, with its close."""
    closes = {b.end_us: b.close for b in bars}
    out = []
    for f in forecasts:
        actual = closes.get(f.target_us)
        if f.issued_us < since_us or actual is None:
            continue
        out.append(
            Scored(
                model=f.model, symbol=symbol, timestamp=from_micros(f.issued_us),
                predicted=f.predicted, actual=actual, last=f.last_price, horizon_s=f.horizon_s,
                low=f.low, high=f.high, level=f.level, outer_low=f.outer_low,
                outer_high=f.outer_high, outer_level=f.outer_level, preferred=f.preferred,
            )
        )  # fmt: skip
    return out


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _figures(a: Accuracy, baseline: Accuracy | None) -> dict[str, Any]:
    levels: dict[str, Any] = {}
    for i in a.intervals:
        base = None if baseline is None else baseline.interval(i.level)
        levels[f"{i.level:g}"] = {
            "coverage": round(i.coverage, 4),
            "mean_width": round(i.mean_width, 4),
            "interval_score": round(i.interval_score, 4),
            "interval_score_vs_baseline": None
            if base is None
            else round(i.interval_score / base.interval_score, 4),
        }
    return {
        "predictions": a.predictions,
        "mae": round(a.mae, 4),
        "rmse": round(a.rmse, 4),
        "mape_pct": _r(a.mape_pct, 5),
        "skill_vs_naive": _r(a.skill_vs_naive, 5),
        "directional_accuracy": _r(a.directional_accuracy, 4),
        "levels": levels,
    }


def backtest_file(path: Path, cfg: models.ModelConfig, burn_in_hours: float) -> dict[str, Any]:
    """Figures of every model on one file, keyed ``model -> horizon_s -> figures``."""
    started = time.perf_counter()
    candles = read_candles(path)
    bars = models.bars_from_ticks(ticks_from_candles(candles))
    forecasts = models.run(bars, cfg)
    since = bars[0].end_us + round(burn_in_hours * 3600 * _US)
    symbol = symbol_of(path)
    rows = scored(forecasts, bars, symbol, since)
    table = accuracy(rows)
    base = {a.horizon_s: a for a in table if a.model == BASELINE}
    results: dict[str, dict[str, Any]] = {}
    for a in table:
        results.setdefault(a.model, {})[str(a.horizon_s)] = _figures(a, base.get(a.horizon_s))
    preferred_skill = [f.trailing_skill or 0.0 for f in forecasts if f.preferred]
    return {
        "file": {
            "path": os.path.relpath(path, REPO),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "candles": len(candles),
            "first": from_micros(candles[0].open_us).isoformat(),
            "last": from_micros(candles[-1].open_us).isoformat(),
            "forecasts": len(forecasts),
            "scored": len(rows),
            "scored_from": from_micros(since).isoformat(),
            "seconds": round(time.perf_counter() - started, 1),
        },
        "min_trailing_skill_of_shown_first": round(min(preferred_skill, default=0.0), 6),
        "shown_first_models": sorted({f.model for f in forecasts if f.preferred}),
        "results": results,
    }


def check_targets(runs: dict[str, dict[str, Any]], cfg: models.ModelConfig) -> list[str]:
    """The issue's targets that a run misses (empty: all met)."""
    misses = []
    for name, run in runs.items():
        res = run["results"]
        for h in cfg.horizons_s:
            for level in (cfg.interval_level, cfg.outer_interval_level):
                ours = res[CALIBRATED][str(h)]["levels"][f"{level:g}"]
                theirs = res[BASELINE][str(h)]["levels"][f"{level:g}"]
                where = f"{name} {CALIBRATED} {h}s {level:g}"
                if abs(ours["coverage"] - level) > COVERAGE_TOLERANCE:
                    misses.append(f"{where}: coverage {ours['coverage']:.4f}")
                if ours["interval_score"] >= theirs["interval_score"]:
                    misses.append(
                        f"{where}: interval score {ours['interval_score']} not below the "
                        f"Gaussian's {theirs['interval_score']}"
                    )
            skill = res[SHOWN_FIRST][str(h)]["skill_vs_naive"]
            if skill is None or skill < 0.0:
                misses.append(f"{name} {SHOWN_FIRST} {h}s: skill {skill}")
        if run["min_trailing_skill_of_shown_first"] < 0.0:
            misses.append(f"{name}: a model was shown first with a negative trailing skill")
    return misses


def format_table(runs: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'file':<8} {'model':<21} {'h':>4} {'MAE':>10} {'skill':>8} {'dir':>6}  "
        f"{'cov80':>6} {'IS80':>9} {'vsG':>6}  {'cov95':>6} {'IS95':>9} {'vsG':>6}"
    )
    lines = [head, "-" * len(head)]
    for name, run in runs.items():
        for model, by_h in run["results"].items():
            for h, f in by_h.items():
                cells = []
                for level in ("0.8", "0.95"):
                    lv = f["levels"].get(level)
                    if lv is None:
                        cells.append(f"{'-':>6} {'-':>9} {'-':>6}")
                        continue
                    vs = lv["interval_score_vs_baseline"]
                    cells.append(
                        f"{lv['coverage']:>6.3f} {lv['interval_score']:>9.3f} "
                        f"{'-' if vs is None else format(vs, '.3f'):>6}"
                    )
                skill = f["skill_vs_naive"]
                direction = f["directional_accuracy"]
                lines.append(
                    f"{name:<8} {model:<21} {int(h) // 60:>3}m {f['mae']:>10.3f} "
                    f"{'-' if skill is None else format(skill, '+.4f'):>8} "
                    f"{'-' if direction is None else format(direction, '.3f'):>6}  "
                    + "  ".join(cells)
                )
    return "\n".join(lines)


def backtest(
    files: Sequence[Path], cfg: models.ModelConfig, burn_in_hours: float
) -> dict[str, Any]:
    runs = {symbol_of(p): backtest_file(p, cfg, burn_in_hours) for p in files}
    misses = check_targets(runs, cfg)
    return {
        "what": (
            "walk-forward backtest of spark_batch.models over 1-minute candles (4 ticks per "
            f"candle at +{CANDLE_TICK_OFFSETS_S} s); actual = close of the target minute; "
            f"forecasts issued in the first {burn_in_hours:g} h not scored"
        ),
        "command": "python -m bench.backtest",
        "models": list(models.MODEL_NAMES),
        "pseudo_models": {
            NAIVE: "the price stays at the last close (the yardstick of skill)",
            SHOWN_FIRST: "whichever model was flagged preferred when the forecast was issued",
        },
        "baseline_for_intervals": BASELINE,
        "config": msgspec.to_builtins(cfg),
        "burn_in_hours": burn_in_hours,
        "targets_met": not misses,
        "target_misses": misses,
        "runs": {n: {k: v for k, v in r.items() if k != "results"} for n, r in runs.items()},
        "results": {name: run["results"] for name, run in runs.items()},
        **provenance(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backtest", description=__doc__)
    parser.add_argument("files", nargs="*", type=Path, help="candle CSVs (default: the real month)")
    parser.add_argument("--burn-in-hours", type=float, default=24.0)
    parser.add_argument(
        "--gaussian-halflife-min",
        type=float,
        help="half-life of the Gaussian baseline's EWMA (default 60; a sensitivity check)",
    )
    parser.add_argument("--no-write", action="store_true", help="don't update bench/results")
    args = parser.parse_args(argv)
    return run_program("bench.backtest", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    files = args.files or default_files()
    if not files:
        raise ConfigError(f"no candle file given and none in {MARKET}")
    cfg = models.ModelConfig()
    if args.gaussian_halflife_min is not None:
        cfg = msgspec.structs.replace(cfg, plain_vol_halflife_bars=args.gaussian_halflife_min)
    result = backtest(files, cfg, args.burn_in_hours)
    print(format_table({n: {"results": r} for n, r in result["results"].items()}))
    # The recorded figures are those of the default files and configuration only.
    if not (args.no_write or args.files or args.gaussian_halflife_min is not None):
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {RESULTS.relative_to(REPO)}")
    for miss in result["target_misses"]:
        print(f"target missed: {miss}", file=sys.stderr)
    return ExitCode.OK if result["targets_met"] else ExitCode.FAILED


if __name__ == "__main__":
    sys.exit(main())
