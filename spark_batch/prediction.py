"""Price forecasts from ``rawticker``: Spark closes 1-minute bars, the driver runs the models.

Spark's part is a stateful aggregation with a constant-size state per (coin,
minute): :func:`bar_stats` groups the ticks into tumbling 1-minute event-time
windows and emits each bar once, when the watermark has passed its end (append
mode). The bar holds the tick count, exact decimal sums of the prices and their
squares, high, low and close (:class:`spark_batch.models.Bar`).

The models need more than one bar: volatility, calibration and trailing skill are
carried from bar to bar. That state is a small per-coin state machine
(:class:`spark_batch.models.Forecaster`) run on the driver by
:class:`PredictionSink`, the ``foreachBatch`` function. For each micro-batch, in
ONE database transaction, it

1. reads the coins' states from ``forecast_state`` (``FOR UPDATE``),
2. applies the newly closed bars of each coin in time order, skipping bars at or
   before the state's last bar (a micro-batch Spark replays after a crash),
3. upserts the forecasts into ``prediction_data`` and the new states into
   ``forecast_state``,

and only then publishes the forecasts. The state in the database always matches
the forecasts in the database, so a crash at any moment, a restart, or a new
checkpoint replaying Kafka from the start gives the same rows to the last digit;
the driver keeps nothing between batches. (Why not Spark's own state store: see
docs/ANALYTICS.md, "Where the state lives".)

* Ticks are deduplicated per (coin, event time) within the watermark, as the
  ``ticker_data`` primary key does, and a tick later than the watermark is
  dropped (``watermark_s``, 10 s by default: a bar closes, and its forecasts are
  written, about ``watermark_s`` + one trigger after the minute ends).
* A forecast row's ``timestamp`` is the bar end: the time it was issued, after
  which none of its ticks lie; ``target_time`` = ``timestamp`` + ``horizon_s``.
* The sums are exact decimals (see :func:`spark_batch.models.bar_from_ticks`): the
  same ticks give the same bar however they were cut into micro-batches.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg

from spark_batch.models import (
    STATE_VERSION,
    Bar,
    Forecast,
    Forecaster,
    ModelConfig,
)
from spark_batch.publish import ResultPublisher
from spark_batch.settings import PredictionSettings
from spark_batch.timeutil import from_micros
from spark_batch.writer import FORECAST_STATE, PREDICTION, Database, Value, upsert

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

QUERY_NAME = "predictions"
_PRICE_DECIMALS = 8
_PRICE = "decimal(24,10)"
"""Tick prices as exact decimals (the handlers allow up to 1e12 and Kraken uses <= 10 places)."""
log = logging.getLogger(__name__)


def model_config(cfg: PredictionSettings) -> ModelConfig:
    """The models' configuration from the job's settings (the rest are the models' defaults)."""
    return ModelConfig(
        horizons_s=cfg.horizons_s,
        interval_level=cfg.interval_level,
        outer_interval_level=cfg.outer_interval_level,
        window_s=cfg.window_s,
        ewma_halflife_s=cfg.ewma_halflife_s,
        trend_window_s=cfg.trend_window_s,
    )


def bar_stats(ticks: DataFrame, cfg: PredictionSettings) -> DataFrame:
    """Streaming aggregate: one row per (coin, minute) once the minute is closed (append mode)."""
    from pyspark.sql import functions as F

    deduped = ticks.withWatermark(
        "event_time", f"{cfg.watermark_s} seconds"
    ).dropDuplicatesWithinWatermark(["crypto_symbol", "event_time"])
    # Exact decimal sums, not floating ones: a float sum depends on the order it is
    # taken in, i.e. on how the ticks were cut into micro-batches. try_sum gives null
    # on overflow (that bar is then skipped) instead of failing the query.
    p = F.col("price").cast(_PRICE)
    return (
        deduped.groupBy(F.window("event_time", "60 seconds").alias("w"), "crypto_symbol")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.try_sum(p).alias("s_p"),
            F.try_sum(p * p).alias("s_pp"),
            F.max("price").alias("high"),
            F.min("price").alias("low"),
            # Latest tick; equal times resolve to the higher price, deterministically.
            F.max(F.struct("event_time", "price")).getField("price").alias("close"),
        )
        .select(
            F.unix_micros("w.end").alias("bar_end_us"),
            "crypto_symbol",
            "n",
            "s_p",
            "s_pp",
            "high",
            "low",
            "close",
        )
    )


def bar_from_row(row: Any) -> Bar | None:
    """The :class:`Bar` of one aggregate row (``None`` if a sum overflowed)."""
    if row["s_p"] is None or row["s_pp"] is None:
        return None
    return Bar(
        end_us=int(row["bar_end_us"]),
        n=int(row["n"]),
        sum_p=Decimal(row["s_p"]),
        sum_pp=Decimal(row["s_pp"]),
        high=float(row["high"]),
        low=float(row["low"]),
        close=float(row["close"]),
    )


def bars_by_symbol(rows: Iterable[Any]) -> dict[str, list[Bar]]:
    """Each coin's closed bars of a micro-batch, in time order."""
    out: dict[str, list[Bar]] = defaultdict(list)
    for row in rows:
        bar = bar_from_row(row)
        if bar is not None:
            out[str(row["crypto_symbol"])].append(bar)
    for bars in out.values():
        bars.sort(key=lambda b: b.end_us)
    return dict(out)


def _price(value: float | None) -> Decimal | None:
    # Fixed decimals: the table holds what the models computed, to 1e-8.
    return None if value is None else Decimal(repr(round(value, _PRICE_DECIMALS)))


def _level(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def prediction_row(symbol: str, f: Forecast) -> tuple[Value, ...]:
    """One ``prediction_data`` row, in :data:`writer.PREDICTION` column order."""
    return (
        from_micros(f.issued_us),
        symbol,
        f.model,
        f.horizon_s,
        from_micros(f.window_start_us),
        _price(f.predicted),
        _price(f.low),
        _price(f.high),
        _level(f.level),
        _price(f.outer_low),
        _price(f.outer_high),
        _level(f.outer_level),
        from_micros(f.target_us),
        _price(f.last_price),
        _level(f.trailing_skill),
        f.preferred,
    )


def apply_bars(
    conn: psycopg.Connection[Any], bars: Mapping[str, Sequence[Bar]], cfg: ModelConfig
) -> list[tuple[Value, ...]]:
    """Run the coins' state machines over new bars and store forecasts and states.

    Inside the caller's transaction; returns the forecast rows written.
    """
    symbols = sorted(bars)
    found = conn.execute(
        "SELECT crypto_symbol, state_version, state FROM forecast_state "
        "WHERE crypto_symbol = ANY(%s) FOR UPDATE",
        (symbols,),
    ).fetchall()
    blobs = {str(s): bytes(b) for s, v, b in found if v == STATE_VERSION}
    rows: list[tuple[Value, ...]] = []
    states: list[tuple[Value, ...]] = []
    for symbol in symbols:
        forecaster = Forecaster.restore(cfg, blobs.get(symbol))
        before = forecaster.last_end_us
        for bar in bars[symbol]:
            rows.extend(prediction_row(symbol, f) for f in forecaster.advance(bar))
        after = forecaster.last_end_us
        if after is not None and after != before:
            states.append((symbol, from_micros(after), STATE_VERSION, forecaster.snapshot()))
    upsert(conn, PREDICTION, rows)
    upsert(conn, FORECAST_STATE, states)
    return rows


class PredictionSink:
    """``foreachBatch`` function: closed bars -> forecasts and states, one transaction."""

    def __init__(
        self, database_url: str, cfg: PredictionSettings, publisher: ResultPublisher | None = None
    ) -> None:
        self._db = Database(database_url)
        self._models = model_config(cfg)
        self._publisher = publisher
        self.last_rows = 0
        """Forecast rows the last batch produced (for logs and tests)."""

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        bars = bars_by_symbol(batch.collect())
        if not bars:
            self.last_rows = 0
            return
        # The transaction may be retried (database unreachable): apply_bars re-reads the states.
        rows = self._db.transaction(lambda conn: apply_bars(conn, bars, self._models))
        self.last_rows = len(rows)
        if self._publisher is not None and rows:
            self._publisher.publish(rows)
        log.info(
            "%s batch %d: %d bars, %d forecasts",
            QUERY_NAME,
            batch_id,
            sum(len(b) for b in bars.values()),
            len(rows),
        )

    def close(self) -> None:
        self._db.close()
        if self._publisher is not None:
            self._publisher.close()
