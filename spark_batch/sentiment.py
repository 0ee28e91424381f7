"""Sentiment per coin and event-time window, from ``rawarticle`` into ``sentiment_data``.

Spark keeps per (coin, window) only the article count, mean and variance of the
scores; label and confidence are computed on the driver by the pure functions
of :mod:`spark_batch.sentiment_math` when the batch's changed windows arrive.

* Tumbling windows of ``window_s`` on the article's published time.
* Watermark ``watermark_s``: an article whose published time is at or before
  (newest published time seen in earlier batches - watermark) is late. Spark
  drops it (the duplicate filter runs first and drops by event time), so closed
  windows never change; :mod:`spark_batch.late` records which articles that was.
* Each article counts once (``dropDuplicatesWithinWatermark`` on its id), even if
  a producer retry delivered it twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from spark_batch.publish import ResultPublisher
from spark_batch.sentiment_math import confidence, label, std_from_var
from spark_batch.settings import SentimentSettings
from spark_batch.sink import UpsertSink
from spark_batch.timeutil import from_micros
from spark_batch.writer import SENTIMENT, Value

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

QUERY_NAME = "sentiment"
_DECIMALS = 9


def sentiment_stats(articles: DataFrame, cfg: SentimentSettings) -> DataFrame:
    """Streaming aggregate: ``window_start_us, window_end_us, crypto_symbol, n, mean, var_pop``."""
    from pyspark.sql import functions as F

    deduped = articles.withWatermark(
        "event_time", f"{cfg.watermark_s} seconds"
    ).dropDuplicatesWithinWatermark(["article_id"])
    mentions = deduped.select("event_time", "score", F.explode("coins").alias("crypto_symbol"))
    window = F.window("event_time", f"{cfg.window_s} seconds").alias("w")
    return (
        mentions.groupBy(window, "crypto_symbol")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.avg("score").alias("mean"),
            F.var_pop("score").alias("var_pop"),
        )
        .select(
            F.unix_micros("w.start").alias("window_start_us"),
            F.unix_micros("w.end").alias("window_end_us"),
            "crypto_symbol",
            "n",
            "mean",
            "var_pop",
        )
    )


def sentiment_rows(stats: Iterable[Any], cfg: SentimentSettings) -> list[tuple[Value, ...]]:
    """``sentiment_data`` rows (in :data:`writer.SENTIMENT` column order) from aggregate rows."""
    rows: list[tuple[Value, ...]] = []
    for s in stats:
        n = int(s["n"])
        # Spark sums in partition order, so the same scores can give a mean one ulp
        # either side of a threshold (0.6 vs 0.6000000000000001). Label the stored,
        # rounded score: a replayed or restarted window then gets the same label.
        mean = round(float(s["mean"]), _DECIMALS)
        conf = confidence(n, std_from_var(s["var_pop"]), cfg.half_confidence_articles)
        rows.append(
            (
                from_micros(int(s["window_end_us"])),
                from_micros(int(s["window_start_us"])),
                str(s["crypto_symbol"]),
                mean,
                label(mean),
                cfg.source,
                round(conf, _DECIMALS),
                n,
            )
        )
    return rows


class SentimentSink(UpsertSink):
    """``foreachBatch`` function: upsert the batch's changed windows in one transaction."""

    def __init__(
        self, database_url: str, cfg: SentimentSettings, publisher: ResultPublisher | None = None
    ) -> None:
        super().__init__(
            QUERY_NAME, database_url, SENTIMENT, lambda s: sentiment_rows(s, cfg), publisher
        )
