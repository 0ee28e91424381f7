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
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
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
    x = (F.unix_micros("event_time") - F.unix_micros("w.end")) / F.lit(1e6)
    prepared = windowed.select(
        "w",
        "crypto_symbol",
        "event_time",
        "price",
        x.alias("x"),
        F.exp(x / F.lit(ewma_tau(cfg.ewma_halflife_s))).alias("weight"),
    )
    return (
        prepared.groupBy("w", "crypto_symbol")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.avg("price").alias("mean"),
            F.var_pop("price").alias("var_pop"),
            F.avg("x").alias("x_mean"),
            F.var_pop("x").alias("x_var"),
            F.covar_pop("x", "price").alias("xp_cov"),
            F.sum("weight").alias("sum_w"),
            F.sum(F.col("weight") * F.col("price")).alias("sum_wp"),
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
            "mean",
            "var_pop",
            "x_mean",
            "x_var",
            "xp_cov",
            (F.col("sum_wp") / F.col("sum_w")).alias("ewma"),
            "last_price",
            "first_x",
            "last_x",
        )
    )


def _price(value: float | None) -> Decimal | None:
    # Fixed decimals: float noise from the aggregation order cannot reach the table.
    return None if value is None else Decimal(repr(round(value, _PRICE_DECIMALS)))


def window_stats(row: Any) -> WindowStats:
    return WindowStats(
        n=int(row["n"]),
        mean=float(row["mean"]),
        var_pop=float(row["var_pop"]),
        x_mean=float(row["x_mean"]),
        x_var=float(row["x_var"]),
        xp_cov=float(row["xp_cov"]),
        ewma=float(row["ewma"]),
        last_price=float(row["last_price"]),
        first_x=float(row["first_x"]),
        last_x=float(row["last_x"]),
    )


def prediction_rows(stats: Iterable[Any], cfg: PredictionSettings) -> list[tuple[Value, ...]]:
    """``prediction_data`` rows (in :data:`writer.PREDICTION` column order) from aggregates."""
    rows: list[tuple[Value, ...]] = []
    for s in stats:
        window = window_stats(s)
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
