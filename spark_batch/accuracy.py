"""Forecast accuracy per model, coin and horizon (pure functions) and its database query.

The live report (``python -m spark_batch.report``) and the offline backtest
(``bench/backtest.py``) both score with :func:`accuracy`, so their figures mean
the same thing. For the forecasts whose actual price is known, with
``e = predicted - actual``:

* MAE = mean ``|e|``, RMSE = sqrt(mean ``e^2``), MAPE = mean ``|e| / |actual|`` in percent;
* the naive forecast ("the price stays at ``last_price``") scored on the same
  forecasts: naive MAE and RMSE, and skill = 1 - MAE / naive MAE (> 0 is better
  than naive, < 0 worse);
* directional accuracy = share of forecasts whose move away from ``last_price``
  has the sign of the actual move, over those where the price did move (a
  forecast equal to ``last_price`` calls no move and counts as a miss);
* per interval level (the inner interval, and the outer one where there is one):
  coverage = share of actual prices inside the interval, mean width, and the mean
  interval score of Gneiting & Raftery (2007, eq. 43; "Winkler score") for
  ``alpha = 1 - level``: ``width + (2 / alpha) * (distance from the interval to the
  actual price when outside)``. Lower is better; it rewards narrow intervals and
  punishes misses, and it is minimised by the true ``alpha/2`` and ``1 - alpha/2``
  quantiles, so an interval cannot win by covering more or less than its level.

Besides one line per model, :func:`accuracy` gives a ``naive_last_value`` line
per (coin, horizon) and a ``shown_first`` line: the forecasts flagged
``preferred`` (the model the dashboard shows first at each moment, see
:mod:`spark_batch.models`), whichever model they came from.

The ``prediction_accuracy`` view (migration 0006) computes the main figures in
SQL over all time; :func:`fetch_scored` + :func:`accuracy` give any time range.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg.rows import class_row

NAIVE = "naive_last_value"
SHOWN_FIRST = "shown_first"
"""Pseudo-model: the forecasts that were the preferred model's when issued."""


class Scored(msgspec.Struct, frozen=True, kw_only=True):
    """One forecast with its actual price."""

    model: str
    symbol: str
    timestamp: datetime
    predicted: float
    actual: float
    last: float | None
    horizon_s: int = 0
    low: float | None = None
    high: float | None = None
    level: float | None = None
    outer_low: float | None = None
    outer_high: float | None = None
    outer_level: float | None = None
    preferred: bool = False


class IntervalAccuracy(msgspec.Struct, frozen=True, kw_only=True):
    """One interval level of a report line (the API serves it as is)."""

    level: float
    """Nominal level (rounded to 4 places)."""
    predictions: int
    coverage: float
    """Share of actual prices inside the interval (compare with ``level``)."""
    mean_width: float
    interval_score: float
    """Mean interval (Winkler) score: width plus ``2 / (1 - level)`` times the miss
    distance; lower is better."""


class Accuracy(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    symbol: str
    horizon_s: int
    predictions: int
    mae: float
    rmse: float
    mape_pct: float | None
    directional_accuracy: float | None
    direction_calls: int
    """Forecasts where the price moved (the denominator of directional accuracy)."""
    naive_mae: float | None
    naive_rmse: float | None
    naive_mape_pct: float | None
    skill_vs_naive: float | None
    intervals: tuple[IntervalAccuracy, ...] = ()

    def interval(self, level: float) -> IntervalAccuracy | None:
        return next((i for i in self.intervals if abs(i.level - level) < 1e-4), None)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def interval_score(low: float, high: float, actual: float, level: float) -> float:
    """Gneiting & Raftery's interval score of ``[low, high]`` at nominal ``level``."""
    alpha = 1.0 - level
    return (
        (high - low)
        + (2.0 / alpha) * max(low - actual, 0.0)
        + (2.0 / alpha) * max(actual - high, 0.0)
    )


def _intervals(rows: Sequence[Scored]) -> tuple[IntervalAccuracy, ...]:
    by_level: dict[float, list[tuple[float, float, float]]] = defaultdict(list)
    for r in rows:
        for low, high, level in ((r.low, r.high, r.level), (r.outer_low, r.outer_high,
                                                              r.outer_level)):  # fmt: skip
            if low is not None and high is not None and level is not None:
                by_level[round(level, 4)].append((low, high, r.actual))
    out = []
    for level, items in sorted(by_level.items()):
        out.append(
            IntervalAccuracy(
                level=level,
                predictions=len(items),
                coverage=math.fsum(float(lo <= y <= hi) for lo, hi, y in items) / len(items),
                mean_width=math.fsum(hi - lo for lo, hi, _ in items) / len(items),
                interval_score=math.fsum(interval_score(lo, hi, y, level) for lo, hi, y in items)
                / len(items),
            )
        )
    return tuple(out)


def summarise(model: str, symbol: str, rows: Sequence[Scored], horizon_s: int = 0) -> Accuracy:
    """The accuracy figures of ``rows`` (one model, coin and horizon; see the module docstring)."""
    if not rows:
        raise ValueError("no scored predictions")
    errors = [r.predicted - r.actual for r in rows]
    apes = [abs(r.predicted - r.actual) / abs(r.actual) * 100 for r in rows if r.actual != 0]
    moved = [r for r in rows if r.last is not None and r.actual != r.last]
    hits = [
        _sign(r.predicted - r.last) == _sign(r.actual - r.last) for r in moved if r.last is not None
    ]
    naive_errors = [r.last - r.actual for r in rows if r.last is not None]
    naive_apes = [
        abs(r.last - r.actual) / abs(r.actual) * 100
        for r in rows
        if r.last is not None and r.actual != 0
    ]
    mae = math.fsum(abs(e) for e in errors) / len(errors)
    naive_mae = _mean([abs(e) for e in naive_errors])
    naive_mse = _mean([e * e for e in naive_errors])
    skill = None
    if naive_mae is not None and naive_mae > 0:
        skill = 1.0 - mae / naive_mae
    return Accuracy(
        model=model,
        symbol=symbol,
        horizon_s=horizon_s,
        predictions=len(rows),
        mae=mae,
        rmse=math.sqrt(math.fsum(e * e for e in errors) / len(errors)),
        mape_pct=_mean(apes),
        directional_accuracy=_mean([float(h) for h in hits]),
        direction_calls=len(hits),
        naive_mae=naive_mae,
        naive_rmse=None if naive_mse is None else math.sqrt(naive_mse),
        naive_mape_pct=_mean(naive_apes),
        skill_vs_naive=skill,
        intervals=_intervals(rows),
    )


def accuracy(rows: Iterable[Scored]) -> list[Accuracy]:
    """:func:`summarise` per (model, coin, horizon), plus the naive and shown-first lines.

    The naive line scores each distinct (coin, horizon, forecast time) once,
    whatever the number of models that forecast it.
    """
    groups: dict[tuple[str, str, int], list[Scored]] = defaultdict(list)
    naive: dict[tuple[str, int], dict[datetime, Scored]] = defaultdict(dict)
    for row in rows:
        groups[(row.model, row.symbol, row.horizon_s)].append(row)
        if row.preferred:
            groups[(SHOWN_FIRST, row.symbol, row.horizon_s)].append(row)
        if row.last is not None:
            naive[(row.symbol, row.horizon_s)].setdefault(
                row.timestamp,
                msgspec.structs.replace(
                    row, model=NAIVE, predicted=row.last, low=None, high=None,
                    outer_low=None, outer_high=None,
                ),
            )  # fmt: skip
    out = [summarise(m, s, group, h) for (m, s, h), group in sorted(groups.items())]
    out += [
        summarise(NAIVE, symbol, list(by_time.values()), horizon)
        for (symbol, horizon), by_time in sorted(naive.items())
    ]

    def order(a: Accuracy) -> tuple[str, int, int, str]:
        rank = 2 if a.model == NAIVE else 1 if a.model == SHOWN_FIRST else 0
        return (a.symbol, a.horizon_s, rank, a.model)

    return sorted(out, key=order)


SCORED_COLUMNS: dict[str, str] = {
    "model": "model_name",
    "symbol": "crypto_symbol",
    "timestamp": "timestamp",
    "predicted": "predicted_price::float8",
    "actual": "actual_price::float8",
    "last": "last_price::float8",
    "horizon_s": "horizon_s",
    "low": "confidence_interval_low::float8",
    "high": "confidence_interval_high::float8",
    "level": "interval_level",
    "outer_low": "outer_interval_low::float8",
    "outer_high": "outer_interval_high::float8",
    "outer_level": "outer_interval_level",
    "preferred": "preferred",
}
""":class:`Scored` field -> its ``prediction_data`` expression: the row is read by name
(a numeric's ``float8`` is the float of its text, as Python's ``float`` of the Decimal)."""


def fetch_scored(
    conn: psycopg.Connection[Any], start: datetime, end: datetime, horizon_s: int | None = None
) -> list[Scored]:
    """Forecasts issued in ``[start, end)`` (one horizon if given) with a known actual price."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    columns = ", ".join(f"{sql} AS {name}" for name, sql in SCORED_COLUMNS.items())
    with conn.cursor(row_factory=class_row(Scored)) as cur:
        cur.execute(
            f"SELECT {columns} FROM prediction_data WHERE actual_price IS NOT NULL "
            "AND timestamp >= %s AND timestamp < %s AND (%s::int IS NULL OR horizon_s = %s::int) "
            "ORDER BY crypto_symbol, horizon_s, model_name, timestamp",
            (start, end, horizon_s, horizon_s),
        )
        return cur.fetchall()
