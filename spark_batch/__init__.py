"""Spark Structured Streaming analytics: sentiment per coin and price forecasts.

    python -m spark_batch.run [--once]                 # the job (until SIGTERM)
    python -m spark_batch.report --last 24h            # forecast accuracy report

(``docs/ANALYTICS.md`` describes the forecasts; ``bench/backtest.py`` runs their
models, :mod:`~spark_batch.models`, over real candles without Spark.)

Modules: :mod:`~spark_batch.settings` (env -> typed settings), :mod:`~spark_batch.session`
(SparkSession with the pinned Kafka connector jars), :mod:`~spark_batch.sources` (Kafka
reads, message parsing), :mod:`~spark_batch.symbols` (canonical symbols from the coin
table), :mod:`~spark_batch.sentiment` / :mod:`~spark_batch.sentiment_math`,
:mod:`~spark_batch.prediction` / :mod:`~spark_batch.models`, :mod:`~spark_batch.late`
(articles past the watermark), :mod:`~spark_batch.writer` (idempotent upserts),
:mod:`~spark_batch.backfill` (actual prices), :mod:`~spark_batch.accuracy`,
:mod:`~spark_batch.jobs` (the queries), :mod:`~spark_batch.run`.

Python UDF workers (article coin mentions) import this package and ``handlers``: the
project must be installed (``pip install -e .``) or on ``PYTHONPATH`` where executors run.
"""
