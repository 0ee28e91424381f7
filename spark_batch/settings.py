"""Typed settings of the Spark analytics job, read once from the environment.

:func:`load_spark_settings` is the only place that looks at environment variables;
the structs never do, so tests build them directly. Servers (Kafka, PostgreSQL),
the state directory and the jar cache come from :class:`infra.settings.Settings`.

Environment variables (all optional):

======================================  ==============================================
``CRYPTOVIZ_SPARK_MASTER``              Spark master URL (default ``local[*]``)
``CRYPTOVIZ_SPARK_SHUFFLE_PARTITIONS``  shuffle partitions = state-store partitions (4);
                                        fixed by a query's first start (checkpoint)
``CRYPTOVIZ_SPARK_TRIGGER_S``           micro-batch interval in seconds (2)
``CRYPTOVIZ_SPARK_MAX_OFFSETS``         max Kafka records per micro-batch (unlimited)
``CRYPTOVIZ_SPARK_OUTPUT_MODE``         ``update`` (rows refresh every batch) or
                                        ``append`` (one final row per closed window)
``CRYPTOVIZ_SPARK_STATE_STORE``         ``hdfs`` (default) or ``rocksdb``
``CRYPTOVIZ_SPARK_DRIVER_MEMORY``       e.g. ``1g`` (default)
``CRYPTOVIZ_SPARK_UI``                  ``1`` enables the Spark web UI (off by default)
``CRYPTOVIZ_SPARK_LOG_LEVEL``           JVM log level (``WARN``)
``CRYPTOVIZ_SENTIMENT_WINDOW_S``        tumbling sentiment window (300)
``CRYPTOVIZ_SENTIMENT_WATERMARK_S``     how late an article may be (600)
``CRYPTOVIZ_PREDICTION_WINDOW_S``       prediction window length (180)
``CRYPTOVIZ_PREDICTION_SLIDE_S``        prediction window slide (30)
``CRYPTOVIZ_PREDICTION_HORIZON_S``      forecast horizon after the window end (300)
``CRYPTOVIZ_PREDICTION_WATERMARK_S``    how late a tick may be (60)
``CRYPTOVIZ_PREDICTION_QUOTE``          quote currency of the priced pairs (``USD``)
``CRYPTOVIZ_PREDICTION_INTERVAL_LEVEL`` nominal level of the model intervals (0.8)
``CRYPTOVIZ_BACKFILL_INTERVAL_S``       how often ``actual_price`` is filled in (30)
======================================  ==============================================
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from infra.settings import SettingsError

OutputMode = Literal["update", "append"]
StateStore = Literal["hdfs", "rocksdb"]
_LOG_LEVELS = frozenset({"ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"})


def _positive(what: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise SettingsError(f"{what} must be > 0, got {value}")


def _non_negative(what: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise SettingsError(f"{what} must be >= 0, got {value}")


class SentimentSettings(msgspec.Struct, frozen=True, kw_only=True):
    window_s: int = 300
    """Tumbling window length: feeds are polled every 5 minutes."""
    watermark_s: int = 600
    """Articles whose window ended more than this before the newest article are late."""
    source: str = "aggregated_articles"
    """``sentiment_data.source`` of the rows (the seeds' value)."""
    half_confidence_articles: float = 3.0
    """Article count at which the count factor of the confidence reaches 1/2."""

    def __post_init__(self) -> None:
        _positive("sentiment window", self.window_s)
        _non_negative("sentiment watermark", self.watermark_s)
        _positive("half_confidence_articles", self.half_confidence_articles)
        if not self.source:
            raise SettingsError("sentiment source must not be empty")


class PredictionSettings(msgspec.Struct, frozen=True, kw_only=True):
    window_s: int = 180
    slide_s: int = 30
    horizon_s: int = 300
    """The forecast is for ``window end + horizon``."""
    watermark_s: int = 60
    """Ticks are real-time; one minute absorbs partition skew and producer retries."""
    quote: str = "USD"
    """Only ``COIN/<quote>`` pairs are priced, so a symbol's row never mixes currencies."""
    ewma_halflife_s: float = 30.0
    interval_level: float = 0.8
    """Nominal coverage of the ``ewma`` and ``linear_trend`` prediction intervals."""

    def __post_init__(self) -> None:
        _positive("prediction window", self.window_s)
        _positive("prediction slide", self.slide_s)
        _positive("prediction horizon", self.horizon_s)
        _non_negative("prediction watermark", self.watermark_s)
        _positive("ewma half-life", self.ewma_halflife_s)
        if self.slide_s > self.window_s:
            raise SettingsError(
                f"prediction slide ({self.slide_s}s) must not exceed the window ({self.window_s}s)"
            )
        if not 0.0 < self.interval_level < 1.0:
            raise SettingsError(f"interval level {self.interval_level} must be in (0, 1)")
        if not self.quote:
            raise SettingsError("prediction quote must not be empty")


class BackfillSettings(msgspec.Struct, frozen=True, kw_only=True):
    interval_s: float = 30.0
    max_staleness_s: int = 60
    """The actual price is the last tick at or before the target time, if at most this old."""

    def __post_init__(self) -> None:
        _positive("backfill interval", self.interval_s)
        _positive("backfill max staleness", self.max_staleness_s)


class SparkSettings(msgspec.Struct, frozen=True, kw_only=True):
    master: str = "local[*]"
    app_name: str = "cryptoviz-analytics"
    shuffle_partitions: int = 4
    trigger_s: float = 2.0
    max_offsets_per_trigger: int | None = None
    output_mode: OutputMode = "update"
    state_store: StateStore = "hdfs"
    driver_memory: str = "1g"
    ui: bool = False
    log_level: str = "WARN"
    article_topic: str = "rawarticle"
    ticker_topic: str = "rawticker"
    sentiment: SentimentSettings = SentimentSettings()
    prediction: PredictionSettings = PredictionSettings()
    backfill: BackfillSettings = BackfillSettings()

    def __post_init__(self) -> None:
        _positive("shuffle partitions", self.shuffle_partitions)
        _positive("trigger interval", self.trigger_s)
        if self.max_offsets_per_trigger is not None:
            _positive("max offsets per trigger", self.max_offsets_per_trigger)
        if self.log_level not in _LOG_LEVELS:
            raise SettingsError(f"log level {self.log_level!r} is not one of {sorted(_LOG_LEVELS)}")

    @staticmethod
    def checkpoint_dir(state_dir: Path, query: str) -> Path:
        """Checkpoint of one query: under the state directory, never in /tmp."""
        return state_dir / "spark" / "checkpoints" / query


def _get(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return None if raw is None or raw.strip() == "" else raw.strip()


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = _get(env, name)
    if raw is None:
        return default
    if raw not in allowed:
        raise SettingsError(f"{name}={raw!r} must be one of {', '.join(allowed)}")
    return raw


def load_spark_settings(env: Mapping[str, str] | None = None) -> SparkSettings:
    """Build :class:`SparkSettings` from environment variables (``os.environ`` by default)."""
    env = os.environ if env is None else env
    max_offsets = _get(env, "CRYPTOVIZ_SPARK_MAX_OFFSETS")
    defaults = SparkSettings()
    return SparkSettings(
        master=_get(env, "CRYPTOVIZ_SPARK_MASTER") or defaults.master,
        shuffle_partitions=_int(
            env, "CRYPTOVIZ_SPARK_SHUFFLE_PARTITIONS", defaults.shuffle_partitions
        ),
        trigger_s=_float(env, "CRYPTOVIZ_SPARK_TRIGGER_S", defaults.trigger_s),
        max_offsets_per_trigger=None
        if max_offsets is None
        else _int(env, "CRYPTOVIZ_SPARK_MAX_OFFSETS", 0),
        output_mode=_choice(  # type: ignore[arg-type]
            env, "CRYPTOVIZ_SPARK_OUTPUT_MODE", defaults.output_mode, ("update", "append")
        ),
        state_store=_choice(  # type: ignore[arg-type]
            env, "CRYPTOVIZ_SPARK_STATE_STORE", defaults.state_store, ("hdfs", "rocksdb")
        ),
        driver_memory=_get(env, "CRYPTOVIZ_SPARK_DRIVER_MEMORY") or defaults.driver_memory,
        ui=_get(env, "CRYPTOVIZ_SPARK_UI") in {"1", "true", "yes"},
        log_level=(_get(env, "CRYPTOVIZ_SPARK_LOG_LEVEL") or defaults.log_level).upper(),
        sentiment=SentimentSettings(
            window_s=_int(env, "CRYPTOVIZ_SENTIMENT_WINDOW_S", 300),
            watermark_s=_int(env, "CRYPTOVIZ_SENTIMENT_WATERMARK_S", 600),
        ),
        prediction=PredictionSettings(
            window_s=_int(env, "CRYPTOVIZ_PREDICTION_WINDOW_S", 180),
            slide_s=_int(env, "CRYPTOVIZ_PREDICTION_SLIDE_S", 30),
            horizon_s=_int(env, "CRYPTOVIZ_PREDICTION_HORIZON_S", 300),
            watermark_s=_int(env, "CRYPTOVIZ_PREDICTION_WATERMARK_S", 60),
            quote=(_get(env, "CRYPTOVIZ_PREDICTION_QUOTE") or "USD").upper(),
            interval_level=_float(env, "CRYPTOVIZ_PREDICTION_INTERVAL_LEVEL", 0.8),
        ),
        backfill=BackfillSettings(
            interval_s=_float(env, "CRYPTOVIZ_BACKFILL_INTERVAL_S", 30.0),
        ),
    )
