"""Price predictions per coin and sliding event-time window, from ``rawticker``.

Spark keeps per (coin, window) the constant-size sufficient statistics of
:class:`spark_batch.models.WindowStats`; the models themselves run on the driver
(:func:`spark_batch.models.forecasts`) for the windows a batch changed, and the
rows are upserted into ``prediction_data`` keyed on (coin, model, window end).

* Windows of ``window_s`` sliding every ``slide_s`` on the tick's own time; the
  row's ``timestamp`` is the window end, ``target_time`` = end + ``horizon_s``.
* ``x`` (seconds before the window end) and the EWMA weights need the window of
  each tick, so the window is assigned in a projection before the aggregation
  (Spark carries the watermark over to that window column).
* Ticks are deduplicated per (coin, event time) within the watermark, as the
  ``ticker_data`` primary key does.
* The statistics are exact decimal sums (prices, ``x`` in microseconds, weights),
  turned into means and co-moments on the driver: the same ticks give the same
  predictions to the last digit however they were cut into micro-batches, so a
  restart or a crash cannot change them (the chaos run compares them byte for byte).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from decimal import Context, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from spark_batch.models import WindowStats, ewma_tau, forecasts
from spark_batch.publish import ResultPublisher
from spark_batch.settings import PredictionSettings
from spark_batch.sink import UpsertSink
from spark_batch.timeutil import from_micros
from spark_batch.writer import PREDICTION, Value

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

QUERY_NAME = "predictions"
_PRICE_DECIMALS = 8
_PRICE = "decimal(24,10)"
"""Tick prices as exact decimals (the handlers allow up to 1e12 and Kraken uses <= 10 places)."""
_X_US = "decimal(20,0)"
_WEIGHT = "decimal(20,18)"
_SUMS = ("s_p", "s_pp", "s_x", "s_xx", "s_xp", "s_w", "s_wp")
_US = Decimal(1_000_000)
_EXACT = Context(prec=80)


def prediction_stats(ticks: DataFrame, cfg: PredictionSettings) -> DataFrame:
    """Streaming aggregate: one row of window statistics per (coin, window) changed."""
    from pyspark.sql import functions as F

    deduped = ticks.withWatermark(
        "event_time", f"{cfg.watermark_s} seconds"
    ).dropDuplicatesWithinWatermark(["crypto_symbol", "event_time"])
    windowed = deduped.select(
        "crypto_symbol",
        "event_time",
        "price",
        F.window("event_time", f"{cfg.window_s} seconds", f"{cfg.slide_s} seconds").alias("w"),
    )
    x_us = F.unix_micros("event_time") - F.unix_micros("w.end")
    x = x_us / F.lit(1e6)
    prepared = windowed.select(
        "w",
        "crypto_symbol",
        "event_time",
        "price",
        x.alias("x"),
        x_us.cast(_X_US).alias("x_us"),
        F.col("price").cast(_PRICE).alias("p"),
        F.exp(x / F.lit(ewma_tau(cfg.ewma_halflife_s))).cast(_WEIGHT).alias("w8"),
    )
    # Exact decimal sums, not Spark's floating averages and co-moments: a float sum
    # depends on the order it is taken in, i.e. on how the ticks were cut into
    # micro-batches, so a restart or a late batch could change a prediction's last
    # digit. Decimal sums are the same in any order; try_sum gives null on overflow
    # (that window is then skipped) instead of failing the query under ANSI mode.
    p, xu, w8 = F.col("p"), F.col("x_us"), F.col("w8")
    return (
        prepared.groupBy("w", "crypto_symbol")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.try_sum(p).alias("s_p"),
            F.try_sum(p * p).alias("s_pp"),
            F.try_sum(xu).alias("s_x"),
            F.try_sum(xu * xu).alias("s_xx"),
            F.try_sum(xu * p).alias("s_xp"),
            F.try_sum(w8).alias("s_w"),
            F.try_sum(w8 * p).alias("s_wp"),
            # Latest tick; equal times resolve to the higher price, deterministically.
            F.max(F.struct("event_time", "price")).getField("price").alias("last_price"),
            F.min("x").alias("first_x"),
            F.max("x").alias("last_x"),
        )
        .select(
            F.unix_micros("w.start").alias("window_start_us"),
            F.unix_micros("w.end").alias("window_end_us"),
            "crypto_symbol",
            "n",
            *_SUMS,
            "last_price",
            "first_x",
            "last_x",
        )
    )


def _price(value: float | None) -> Decimal | None:
    # Fixed decimals: float noise from the aggregation order cannot reach the table.
    return None if value is None else Decimal(repr(round(value, _PRICE_DECIMALS)))


def window_stats(row: Any) -> WindowStats | None:
    """The window's statistics from its exact sums (``None`` if a sum overflowed)."""
    sums = [row[name] for name in _SUMS]
    if any(v is None for v in sums):
        return None
    s_p, s_pp, s_x, s_xx, s_xp, s_w, s_wp = (Decimal(v) for v in sums)
    with localcontext(_EXACT):
        n = Decimal(int(row["n"]))
        mean = s_p / n
        x_mean_us = s_x / n
        return WindowStats(
            n=int(row["n"]),
            mean=float(mean),
            var_pop=float(s_pp / n - mean * mean),
            x_mean=float(x_mean_us / _US),
            x_var=float((s_xx / n - x_mean_us * x_mean_us) / (_US * _US)),
            xp_cov=float((s_xp / n - x_mean_us * mean) / _US),
            ewma=float(s_wp / s_w),
            last_price=float(row["last_price"]),
            first_x=float(row["first_x"]),
            last_x=float(row["last_x"]),
        )


def prediction_rows(stats: Iterable[Any], cfg: PredictionSettings) -> list[tuple[Value, ...]]:
    """``prediction_data`` rows (in :data:`writer.PREDICTION` column order) from aggregates."""
    rows: list[tuple[Value, ...]] = []
    for s in stats:
        window = window_stats(s)
        if window is None:
            continue
        end = from_micros(int(s["window_end_us"]))
        start = from_micros(int(s["window_start_us"]))
        for f in forecasts(
            window,
            horizon_s=cfg.horizon_s,
            halflife_s=cfg.ewma_halflife_s,
            level=cfg.interval_level,
        ):
            rows.append(
                (
                    end,
                    start,
                    str(s["crypto_symbol"]),
                    f.model,
                    _price(f.predicted),
                    _price(f.low),
                    _price(f.high),
                    None if f.level is None else round(f.level, 6),
                    cfg.horizon_s,
                    end + timedelta(seconds=cfg.horizon_s),
                    _price(window.last_price),
                )
            )
    return rows


class PredictionSink(UpsertSink):
    """``foreachBatch`` function: upsert the batch's changed windows in one transaction."""

    def __init__(
        self, database_url: str, cfg: PredictionSettings, publisher: ResultPublisher | None = None
    ) -> None:
        super().__init__(
            QUERY_NAME, database_url, PREDICTION, lambda s: prediction_rows(s, cfg), publisher
        )
