"""Prediction accuracy per model and coin (pure functions) and its database query.

For the predictions whose ``actual_price`` is known, with ``e = predicted - actual``:

* MAE = mean ``|e|``; MAPE = mean ``|e| / |actual|`` in percent;
* directional accuracy = share of predictions whose move away from ``last_price``
  has the sign of the actual move, over the predictions where the price did move
  (a forecast equal to ``last_price`` calls no move and counts as a miss);
* interval coverage = share of predictions whose interval holds the actual price,
  over those with an interval, beside the interval's nominal level;
* the naive forecast ("the price stays at ``last_price``") scored on the same
  predictions: naive MAE and MAPE, and skill = 1 - MAE / naive MAE (> 0 is better
  than naive, < 0 worse).

The ``prediction_accuracy`` view of migration 0004 computes the same figures in
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

NAIVE = "naive_last_value"


class Scored(msgspec.Struct, frozen=True, kw_only=True):
    """One prediction with its actual price."""

    model: str
    symbol: str
    timestamp: datetime
    predicted: float
    actual: float
    last: float | None
    low: float | None = None
    high: float | None = None
    level: float | None = None


class Accuracy(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    symbol: str
    predictions: int
    mae: float
    mape_pct: float | None
    directional_accuracy: float | None
    direction_calls: int
    """Predictions where the price moved (the denominator of directional accuracy)."""
    coverage: float | None
    nominal_level: float | None
    naive_mae: float | None
    naive_mape_pct: float | None
    skill_vs_naive: float | None


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def summarise(model: str, symbol: str, rows: Sequence[Scored]) -> Accuracy:
    """The accuracy figures of ``rows`` (one model and coin; see the module docstring)."""
    if not rows:
        raise ValueError("no scored predictions")
    errors = [abs(r.predicted - r.actual) for r in rows]
    apes = [abs(r.predicted - r.actual) / abs(r.actual) * 100 for r in rows if r.actual != 0]
    moved = [r for r in rows if r.last is not None and r.actual != r.last]
    hits = [
        _sign(r.predicted - r.last) == _sign(r.actual - r.last) for r in moved if r.last is not None
    ]
    with_interval = [r for r in rows if r.low is not None and r.high is not None]
    inside = [r.low <= r.actual <= r.high for r in with_interval]  # type: ignore[operator]
    levels = [r.level for r in with_interval if r.level is not None]
    naive = [r for r in rows if r.last is not None]
    naive_errors = [abs(r.last - r.actual) for r in naive if r.last is not None]
    naive_apes = [
        abs(r.last - r.actual) / abs(r.actual) * 100
        for r in naive
        if r.last is not None and r.actual != 0
    ]
    mae = math.fsum(errors) / len(errors)
    naive_mae = _mean(naive_errors)
    skill = None
    if naive_mae is not None and naive_mae > 0:
        skill = 1.0 - mae / naive_mae
    return Accuracy(
        model=model,
        symbol=symbol,
        predictions=len(rows),
        mae=mae,
        mape_pct=_mean(apes),
        directional_accuracy=_mean([float(h) for h in hits]),
        direction_calls=len(hits),
        coverage=_mean([float(i) for i in inside]),
        nominal_level=_mean(levels),
        naive_mae=naive_mae,
        naive_mape_pct=_mean(naive_apes),
        skill_vs_naive=skill,
    )


def accuracy(rows: Iterable[Scored]) -> list[Accuracy]:
    """:func:`summarise` per (model, coin), plus a ``naive_last_value`` line per coin.

    The naive line scores each distinct (coin, prediction time) once, whatever
    the number of models that predicted it.
    """
    groups: dict[tuple[str, str], list[Scored]] = defaultdict(list)
    naive: dict[str, dict[datetime, Scored]] = defaultdict(dict)
    for row in rows:
        groups[(row.model, row.symbol)].append(row)
        if row.last is not None:
            naive[row.symbol].setdefault(
                row.timestamp,
                msgspec.structs.replace(row, model=NAIVE, predicted=row.last, low=None, high=None),
            )
    out = [summarise(model, symbol, group) for (model, symbol), group in sorted(groups.items())]
    out += [
        summarise(NAIVE, symbol, list(by_time.values()))
        for symbol, by_time in sorted(naive.items())
    ]
    return sorted(out, key=lambda a: (a.symbol, a.model == NAIVE, a.model))


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def fetch_scored(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> list[Scored]:
    """Predictions made in ``[start, end)`` whose actual price is known."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    cur = conn.execute(
        "SELECT model_name, crypto_symbol, timestamp, predicted_price, actual_price, last_price, "
        "confidence_interval_low, confidence_interval_high, interval_level "
        "FROM prediction_data WHERE actual_price IS NOT NULL "
        "AND timestamp >= %s AND timestamp < %s ORDER BY crypto_symbol, model_name, timestamp",
        (start, end),
    )
    return [
        Scored(
            model=str(r[0]),
            symbol=str(r[1]),
            timestamp=r[2],
            predicted=float(r[3]),
            actual=float(r[4]),
            last=_float(r[5]),
            low=_float(r[6]),
            high=_float(r[7]),
            level=_float(r[8]),
        )
        for r in cur.fetchall()
    ]
