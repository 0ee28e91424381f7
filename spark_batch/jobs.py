"""The streaming queries of the analytics job, wired from settings.

=================  ============  =====================================================
query              topic         output
=================  ============  =====================================================
``sentiment``      rawarticle    ``sentiment_data`` (upsert per coin, source, window)
``late_articles``  rawarticle    ``analytics_late_events`` (articles past the watermark)
``predictions``    rawticker     ``prediction_data`` (per coin, model, horizon, minute)
                                and ``forecast_state`` (the models' state per coin)
=================  ============  =====================================================

Sentiment and predictions are written for the tracked coins only
(:class:`TrackedOnly`): the driver filters each micro-batch by the set
:class:`infra.tracking.TrackedCoins` holds at that moment (``crypto_configuration``,
followed live), so activating a coin through the API starts its rows at the next
micro-batch and deactivating it stops them, without restarting a query. Spark still
aggregates every coin (a coin activated mid-window gets that window whole).

Topics are the logical names of the topic map (``Settings.kafka.topics``): a renamed
``rawticker`` is read under its new name, and the results go to the configured
``sentiment`` and ``prediction`` topics. Each query has its own checkpoint in
``<state_dir>/spark/checkpoints/<query>`` and starts from the earliest Kafka offsets
the first time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infra.settings import Settings, SettingsError, Topics
from infra.tracking import TrackedCoins
from spark_batch import late, prediction, sentiment
from spark_batch.publish import ResultPublisher
from spark_batch.settings import SparkSettings
from spark_batch.sources import kafka_stream, parse_articles, parse_ticks
from spark_batch.symbols import Symbols, load_symbols
from spark_batch.writer import PREDICTION, SENTIMENT

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

QUERY_NAMES: tuple[str, ...] = (sentiment.QUERY_NAME, late.QUERY_NAME, prediction.QUERY_NAME)
PER_COIN: frozenset[str] = frozenset((sentiment.QUERY_NAME, prediction.QUERY_NAME))
"""The queries whose rows are per coin (a ``crypto_symbol`` column): tracked coins only."""


class TrackedOnly:
    """``foreachBatch`` wrapper: only the rows of the coins tracked now reach the sink."""

    def __init__(self, sink: Callable[[DataFrame, int], Any], tracking: TrackedCoins) -> None:
        self._sink = sink
        self._tracking = tracking

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        from pyspark.sql import functions as F

        coins = list(self._tracking.tracked.coins)  # read once per micro-batch
        self._sink(batch.filter(F.col("crypto_symbol").isin(coins)), batch_id)


@dataclass
class Analytics:
    """Builds and starts the queries; :meth:`close` releases the sinks' connections."""

    spark: SparkSession
    settings: Settings
    cfg: SparkSettings
    symbols: Symbols | None = None
    wrap_sink: Callable[[str, Any], Any] | None = None
    """Test seam: ``wrap_sink(query_name, sink)`` returns the foreachBatch function to use."""
    tracking: TrackedCoins | None = None
    """The tracked coins (acquired by the caller); ``None``: every coin is analysed."""
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.settings.kafka.bootstrap_servers is None or self.settings.database.url is None:
            raise SettingsError(
                "the analytics job needs running servers: set KAFKA_BOOTSTRAP_SERVERS and "
                "DATABASE_URL (`make up` / `python -m infra.stack services` print them)"
            )
        if self.symbols is None:
            self.symbols = load_symbols(self.settings.coins_file)

    @property
    def _bootstrap(self) -> str:
        assert self.settings.kafka.bootstrap_servers is not None
        return self.settings.kafka.bootstrap_servers

    @property
    def _topics(self) -> Topics:
        return self.settings.kafka.topics

    def _publisher(self, topic: str, columns: tuple[str, ...]) -> ResultPublisher:
        return ResultPublisher(self._bootstrap, topic, columns)

    @property
    def _database(self) -> str:
        assert self.settings.database.url is not None
        return self.settings.database.url

    def articles(self) -> DataFrame:
        assert self.symbols is not None
        raw = kafka_stream(
            self.spark, self._bootstrap, self._topics.rawarticle, self.cfg.max_offsets_per_trigger
        )
        return parse_articles(raw, self.symbols)

    def ticks(self) -> DataFrame:
        assert self.symbols is not None
        raw = kafka_stream(
            self.spark, self._bootstrap, self._topics.rawticker, self.cfg.max_offsets_per_trigger
        )
        return parse_ticks(raw, self.symbols.maps, self.cfg.prediction.quote)

    def _start(
        self,
        name: str,
        frame: DataFrame,
        sink: Any,
        output_mode: str,
        available_now: bool,
    ) -> StreamingQuery:
        checkpoint = self.cfg.checkpoint_dir(self.settings.state_dir, name)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        batch_fn = sink if self.wrap_sink is None else self.wrap_sink(name, sink)
        if self.tracking is not None and name in PER_COIN:
            batch_fn = TrackedOnly(batch_fn, self.tracking)
        writer = (
            frame.writeStream.queryName(name)
            .outputMode(output_mode)
            .foreachBatch(batch_fn)
            .option("checkpointLocation", str(checkpoint))
        )
        if available_now:
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=f"{self.cfg.trigger_s} seconds")
        self._closers.append(sink.close)
        return writer.start()

    def start(
        self, names: Sequence[str] = QUERY_NAMES, *, available_now: bool = False
    ) -> list[StreamingQuery]:
        """Start the named queries (``available_now``: process what is in Kafka, then stop)."""
        unknown = sorted(set(names) - set(QUERY_NAMES))
        if unknown:
            raise ValueError(f"unknown queries {unknown}; known: {list(QUERY_NAMES)}")
        queries = []
        for name in names:
            if name == sentiment.QUERY_NAME:
                queries.append(
                    self._start(
                        name,
                        sentiment.sentiment_stats(self.articles(), self.cfg.sentiment),
                        sentiment.SentimentSink(
                            self._database,
                            self.cfg.sentiment,
                            self._publisher(self._topics.sentiment, SENTIMENT.columns),
                        ),
                        self.cfg.output_mode,
                        available_now,
                    )
                )
            elif name == late.QUERY_NAME:
                checkpoint = self.cfg.checkpoint_dir(self.settings.state_dir, name)
                queries.append(
                    self._start(
                        name,
                        late.late_columns(self.articles()),
                        late.LateArticleSink(self._database, self.cfg.sentiment, checkpoint),
                        "append",
                        available_now,
                    )
                )
            else:
                queries.append(
                    self._start(
                        name,
                        prediction.bar_stats(self.ticks(), self.cfg.prediction),
                        prediction.PredictionSink(
                            self._database,
                            self.cfg.prediction,
                            self._publisher(self._topics.prediction, PREDICTION.columns),
                        ),
                        "append",  # a bar is emitted once, when the watermark closes it
                        available_now,
                    )
                )
        return queries

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()
