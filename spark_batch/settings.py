"""Typed settings of the Spark analytics job, read once from the environment.

:func:`load_spark_settings` is the only place that looks at environment variables,
through the shared reader of :mod:`infra.settings` (each variable is declared on its
field, with its bounds; the README's "Configuration" tables list them); the structs
never do, so tests build them directly. Servers (Kafka, PostgreSQL), the topics
(``Settings.kafka.topics``), the state directory and the jar cache come from
:class:`infra.settings.Settings`. The declared bounds are checked when a struct is
built, from the environment or in code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, get_args

import msgspec

from infra.settings import SettingsError, check_bounds, env, read_env
from spark_batch.models import BAR_S, ModelConfig

OutputMode = Literal["update", "append"]
StateStore = Literal["hdfs", "rocksdb"]
LogLevel = Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"]
_LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


class SentimentSettings(msgspec.Struct, frozen=True, kw_only=True):
    window_s: Annotated[
        int, env("CRYPTOVIZ_SENTIMENT_WINDOW_S", "tumbling sentiment window (s)", gt=0)
    ] = 300
    """Tumbling window length: feeds are polled every 5 minutes."""
    watermark_s: Annotated[
        int, env("CRYPTOVIZ_SENTIMENT_WATERMARK_S", "how late an article may be (s)", ge=0)
    ] = 600
    """Articles whose window ended more than this before the newest article are late."""
    source: Annotated[str, msgspec.Meta(min_length=1)] = "aggregated_articles"
    """``sentiment_data.source`` of the rows (the seeds' value)."""
    half_confidence_articles: Annotated[float, msgspec.Meta(gt=0)] = 3.0
    """Article count at which the count factor of the confidence reaches 1/2."""

    def __post_init__(self) -> None:
        check_bounds(self)


_MODELS = ModelConfig()
"""The model defaults: declared once, in :mod:`spark_batch.models`."""


class PredictionSettings(msgspec.Struct, frozen=True, kw_only=True):
    window_s: Annotated[
        int,
        env(
            "CRYPTOVIZ_PREDICTION_WINDOW_S",
            "the seeds' moving-average window (s, a multiple of 60)",
            gt=0,
        ),
    ] = _MODELS.window_s
    """The seeds' moving-average window (a multiple of the 60 s bar)."""
    horizons_s: Annotated[
        tuple[int, ...],
        env(
            "CRYPTOVIZ_PREDICTION_HORIZONS_S",
            "forecast horizons, comma-separated (s, multiples of 60)",
            min_length=1,
        ),
    ] = _MODELS.horizons_s
    """Each forecast is for ``issue time + horizon`` (multiples of the 60 s bar)."""
    watermark_s: Annotated[
        int,
        env(
            "CRYPTOVIZ_PREDICTION_WATERMARK_S",
            "how late a tick may be (s); a bar's forecasts appear this long after its minute",
            ge=0,
        ),
    ] = 10
    """How late a tick may be: a bar closes (its forecasts appear) this long after its minute.
    Ticks are real-time; 10 s absorbs partition skew and producer retries."""
    quote: Annotated[
        str,
        env(
            "CRYPTOVIZ_PREDICTION_QUOTE",
            "quote currency of the priced pairs",
            parse=str.upper,
            min_length=1,
        ),
    ] = "USD"
    """Only ``COIN/<quote>`` pairs are priced, so a symbol's row never mixes currencies."""
    ewma_halflife_s: Annotated[float, msgspec.Meta(gt=0)] = _MODELS.ewma_halflife_s
    trend_window_s: Annotated[int, msgspec.Meta(ge=3 * BAR_S)] = _MODELS.trend_window_s
    """The ``linear_trend`` model's window (a multiple of the 60 s bar): a model
    definition fixed by the backtest's figures, so not read from the environment."""
    interval_level: Annotated[
        float,
        env(
            "CRYPTOVIZ_PREDICTION_INTERVAL_LEVEL",
            "nominal level of the inner intervals",
            gt=0,
            lt=1,
        ),
    ] = _MODELS.interval_level
    """Nominal coverage of the inner intervals."""
    outer_interval_level: Annotated[
        float,
        env(
            "CRYPTOVIZ_PREDICTION_OUTER_LEVEL",
            "nominal level of the outer intervals",
            gt=0,
            lt=1,
        ),
    ] = _MODELS.outer_interval_level
    """Nominal coverage of the outer intervals."""

    def __post_init__(self) -> None:
        check_bounds(self)
        if any(h <= 0 or h % BAR_S for h in self.horizons_s):
            raise SettingsError(
                f"prediction horizons {list(self.horizons_s)} must be positive multiples of "
                f"{BAR_S} s"
            )
        if self.window_s % BAR_S or self.trend_window_s % BAR_S:
            raise SettingsError(
                f"prediction window ({self.window_s}s) and trend window "
                f"({self.trend_window_s}s) must be multiples of {BAR_S} s"
            )


class BackfillSettings(msgspec.Struct, frozen=True, kw_only=True):
    interval_s: Annotated[
        float,
        env("CRYPTOVIZ_BACKFILL_INTERVAL_S", "how often `actual_price` is filled in (s)", gt=0),
    ] = 30.0
    max_staleness_s: Annotated[int, msgspec.Meta(gt=0)] = 60
    """The actual price is the last tick at or before the target time, if at most this old."""

    def __post_init__(self) -> None:
        check_bounds(self)


class SparkSettings(msgspec.Struct, frozen=True, kw_only=True):
    master: Annotated[str, env("CRYPTOVIZ_SPARK_MASTER", "Spark master URL")] = "local[*]"
    app_name: str = "cryptoviz-analytics"
    shuffle_partitions: Annotated[
        int,
        env(
            "CRYPTOVIZ_SPARK_SHUFFLE_PARTITIONS",
            "shuffle partitions = state-store partitions; fixed by a query's first start",
            gt=0,
        ),
    ] = 4
    trigger_s: Annotated[
        float, env("CRYPTOVIZ_SPARK_TRIGGER_S", "micro-batch interval (s)", gt=0)
    ] = 2.0
    max_offsets_per_trigger: Annotated[
        int | None,
        env(
            "CRYPTOVIZ_SPARK_MAX_OFFSETS",
            "max Kafka records per micro-batch",
            default="unlimited",
            gt=0,
        ),
    ] = None
    output_mode: Annotated[
        OutputMode,
        env(
            "CRYPTOVIZ_SPARK_OUTPUT_MODE",
            "sentiment: `update` (rows refresh every batch) or `append` (one final row per "
            "closed window); predictions always append (closed bars)",
        ),
    ] = "update"
    state_store: Annotated[
        StateStore, env("CRYPTOVIZ_SPARK_STATE_STORE", "`hdfs` or `rocksdb`")
    ] = "hdfs"
    driver_memory: Annotated[str, env("CRYPTOVIZ_SPARK_DRIVER_MEMORY", "Spark driver memory")] = (
        "1g"
    )
    ui: Annotated[bool, env("CRYPTOVIZ_SPARK_UI", "the Spark web UI")] = False
    log_level: Annotated[LogLevel, env("CRYPTOVIZ_SPARK_LOG_LEVEL", "JVM log level")] = "WARN"
    sentiment: SentimentSettings = SentimentSettings()
    prediction: PredictionSettings = PredictionSettings()
    backfill: BackfillSettings = BackfillSettings()

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.log_level not in _LOG_LEVELS:
            raise SettingsError(f"log level {self.log_level!r} is not one of {_LOG_LEVELS}")

    @staticmethod
    def checkpoint_dir(state_dir: Path, query: str) -> Path:
        """Checkpoint of one query: under the state directory, never in /tmp."""
        return state_dir / "spark" / "checkpoints" / query


def load_spark_settings(env: Mapping[str, str] | None = None) -> SparkSettings:
    """Build :class:`SparkSettings` from environment variables (``os.environ`` by default)."""
    return read_env(SparkSettings, os.environ if env is None else env)
