"""Kafka sources and the parsing of raw ticker and article messages into typed columns.

Messages are the wire shapes of ``handlers/_wire.py`` and the seeds' shapes.
Ingestion (Bytewax) owns validation and dead letters; here invalid rows are
simply not analysed. Spark must not analyse what ingestion refuses, though.

* Articles (a few per minute) are parsed by the ingestion handler itself, in a
  Python UDF (:func:`parse_articles`): same verdict, time and coins as the stored row.
* Ticks (the hot stream) stay in the JVM: numbers and times are read as JSON text
  and converted with ``try_cast``, so ``99950.5`` and ``"99950.5"`` both work and a
  malformed value gives null (the row is then skipped) instead of failing the query
  under ANSI mode, and the handlers' plausibility bounds are applied too
  (:func:`plausible`), or a single junk tick stamped in the year 5138 would move the
  event-time watermark there and every later tick would be dropped as late (the
  chaos run found that). Event time, never processing time: ``timestamp`` (the
  exchange time when known, else the receive time), then ``receive_ts``, then the
  Kafka record timestamp.

Epoch values of 1e11 or more are milliseconds, as in ``handlers._time``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handlers import DEFAULT_MAX_FUTURE, GENESIS
from handlers import MAX_PRICE as HANDLER_MAX_PRICE
from spark_batch.symbols import SymbolMaps, Symbols, article_udf, pair_column

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

_MS_THRESHOLD = 1e11
MAX_PRICE = float(HANDLER_MAX_PRICE)


def ticker_schema() -> StructType:
    from pyspark.sql import types as T

    text = T.StringType()
    return T.StructType(
        [
            T.StructField("pair", text),
            T.StructField("last", text),
            T.StructField("timestamp", text),
            T.StructField("receive_ts", text),
        ]
    )


def kafka_stream(
    spark: SparkSession, bootstrap: str, topic: str, max_offsets: int | None = None
) -> DataFrame:
    """A streaming read of ``topic``: from the earliest offset on first start, then the checkpoint.

    ``failOnDataLoss`` stays on: offsets deleted by retention before we read them
    stop the query loudly instead of silently skipping data.
    """
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "true")
    )
    if max_offsets is not None:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets))
    return reader.load()


def event_time(text: Column) -> Column:
    """Epoch seconds, epoch milliseconds or ISO-8601 text -> timestamp (null if none)."""
    from pyspark.sql import functions as F

    number = text.try_cast("double")
    seconds = F.when(F.abs(number) >= _MS_THRESHOLD, number / 1000.0).otherwise(number)
    return F.when(number.isNotNull(), F.timestamp_seconds(seconds)).otherwise(
        text.try_cast("timestamp")
    )


def plausible(event: Column, kafka_time: Column) -> Column:
    """The handlers' time rule: from GENESIS to ``DEFAULT_MAX_FUTURE`` after the message arrived.

    "Arrived" is the Kafka record time (the broker's append time on the raw topics),
    which a replay reads back unchanged, rather than the wall clock of the batch.
    """
    from pyspark.sql import functions as F

    latest = kafka_time + F.make_interval(secs=F.lit(DEFAULT_MAX_FUTURE.total_seconds()))
    return (event >= F.lit(GENESIS)) & (event <= latest)


def parse_ticks(raw: DataFrame, maps: SymbolMaps, quote: str) -> DataFrame:
    """``(crypto_symbol, event_time, price)`` for every valid ``<coin>/<quote>`` tick."""
    from pyspark.sql import functions as F

    msg = F.from_json(F.col("value").cast("string"), ticker_schema())
    parsed = raw.select(msg.alias("m"), F.col("timestamp").alias("kafka_time")).select(
        pair_column(F.col("m.pair"), maps).alias("pair"),
        F.col("m.last").try_cast("double").alias("price"),
        F.coalesce(
            event_time(F.col("m.timestamp")),
            event_time(F.col("m.receive_ts")),
            F.col("kafka_time"),
        ).alias("event_time"),
        "kafka_time",
    )
    suffix = "/" + quote
    return parsed.where(
        F.col("pair").endswith(suffix)
        & F.col("event_time").isNotNull()
        & plausible(F.col("event_time"), F.col("kafka_time"))
        & F.col("price").isNotNull()
        & (F.col("price") > 0)
        & ~F.isnan("price")
        & (F.col("price") <= MAX_PRICE)
    ).select(
        F.substring_index("pair", "/", 1).alias("crypto_symbol"),
        "event_time",
        "price",
    )


def parse_articles(raw: DataFrame, symbols: Symbols) -> DataFrame:
    """``(article_id, event_time, score, coins)`` for every article ingestion accepts.

    Each Kafka record goes through the ingestion handler itself
    (:func:`spark_batch.symbols.article_udf`: ``handlers.parse_article`` on its bytes
    and its Kafka record time), so Spark counts exactly the articles that ingestion
    stores, at the time it stores them under (an article without a time of its own:
    its Kafka record time), with the same coins.
    """
    from pyspark.sql import functions as F

    parse = article_udf(symbols)
    parsed = raw.select(parse(F.col("value"), F.unix_micros("timestamp")).alias("a"))
    return parsed.where(F.col("a").isNotNull()).select(
        F.col("a.article_id").alias("article_id"),
        F.timestamp_micros(F.col("a.time_us")).alias("event_time"),
        F.col("a.score").alias("score"),
        F.col("a.coins").alias("coins"),
    )
