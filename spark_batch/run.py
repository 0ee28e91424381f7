"""Run the analytics job until SIGTERM / Ctrl-C.

    python -m spark_batch.run [--once] [--query NAME ...]

Needs ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` (``make up`` passes them to
its workers); Spark settings come from ``CRYPTOVIZ_SPARK_*`` and friends (see
:mod:`spark_batch.settings`). The queries of :mod:`spark_batch.jobs` run side by
side; the main thread fills in actual prices every ``backfill.interval_s``.
On SIGTERM the queries are stopped (a micro-batch in flight is abandoned); that,
or a kill at any moment, is safe: the next start replays the unfinished batch
from the checkpoint and the upserts make the replay invisible. Exit status (the
scheme of :mod:`infra.cli`): 0 on a requested stop, 1 when a query failed or Spark
could not start, 2 for a configuration error.

``--once`` processes what is in Kafka now (``availableNow``), backfills, and exits.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING

import psycopg
from prometheus_client import start_http_server

from infra.cli import ExitCode, run_program
from infra.kafka_offsets import KafkaOffsets
from infra.settings import Settings, load_settings
from spark_batch import metrics
from spark_batch.backfill import backfill_actual_prices
from spark_batch.jobs import QUERY_NAMES, Analytics
from spark_batch.settings import SparkSettings, load_spark_settings

if TYPE_CHECKING:
    from pyspark.sql.streaming.query import StreamingQuery

log = logging.getLogger("spark_batch.run")
BACKFILL_LOOKBACK = timedelta(days=2)
"""Predictions whose target is older than this are not retried by the running job."""


def backfill_once(settings: Settings, cfg: SparkSettings, *, since: datetime | None) -> int:
    assert settings.database.url is not None
    with psycopg.connect(settings.database.url, autocommit=True) as conn, conn.transaction():
        return backfill_actual_prices(
            conn,
            quote=cfg.prediction.quote,
            max_staleness_s=cfg.backfill.max_staleness_s,
            since=since,
        )


PROGRESS_INTERVAL_S = 5.0
"""How often query health and progress metrics are checked."""
MAX_RESTARTS = 5
"""Consecutive restarts of one failing query before the process gives up (exit 1)."""


def supervise(
    analytics: Analytics,
    queries: dict[str, StreamingQuery],
    settings: Settings,
    cfg: SparkSettings,
    stop: threading.Event,
    *,
    positions: metrics.Positions | None = None,
) -> int:
    """Backfill periodically and restart failed queries until ``stop`` is set.

    A failed query is restarted from its checkpoint (the unfinished batch is
    replayed; the sinks are idempotent). Restarting is also the workaround for a
    Spark 4.1.1 bug: the Kafka source's progress metrics throw a
    NullPointerException right after a replayed batch committed
    (``KafkaMicroBatchStream.metrics`` wraps an unset offset map in ``Some``), so
    the first restart after a crash fails once, after its batch was committed.
    Each query's progress goes to the metrics and its Kafka position to ``positions``.
    Returns 0 on stop, 1 when a query keeps failing.
    """
    restarts = dict.fromkeys(queries, 0)
    next_backfill = time.monotonic() + cfg.backfill.interval_s
    # Wake often enough for fresh metrics and quick restarts; backfill on its own cadence.
    while not stop.wait(min(PROGRESS_INTERVAL_S, cfg.backfill.interval_s)):
        for name, query in list(queries.items()):
            if query.isActive:
                continue
            error = query.exception()
            if error is None:  # stopped without error (availableNow, or stop())
                continue
            restarts[name] += 1
            if restarts[name] > MAX_RESTARTS:
                log.error("query %s failed %d times in a row: %s", name, MAX_RESTARTS, error)
                return 1
            log.warning("query %s failed (%s); restarting from its checkpoint", name, error)
            metrics.RESTARTS.labels(name).inc()
            (queries[name],) = analytics.start([name])
        for name, query in queries.items():
            progress = query.lastProgress if query.isActive else None
            if progress is not None:
                restarts[name] = 0
                metrics.observe(name, progress)
                if positions is not None:
                    positions.update(name, progress)
        if time.monotonic() < next_backfill:
            continue
        next_backfill = time.monotonic() + cfg.backfill.interval_s
        try:
            filled = backfill_once(settings, cfg, since=datetime.now(UTC) - BACKFILL_LOOKBACK)
            if filled:
                log.info("backfill: %d actual prices filled", filled)
        except psycopg.OperationalError as exc:
            log.warning("backfill skipped, database unavailable: %s", exc)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_batch.run", description=__doc__)
    parser.add_argument("--once", action="store_true", help="process what is there, then exit")
    parser.add_argument(
        "--query", action="append", choices=QUERY_NAMES, help="run only this query (repeatable)"
    )
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics")
    parser.add_argument("--metrics-host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_program("spark_batch", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    cfg = load_spark_settings()
    from spark_batch.session import build_session

    spark = build_session(cfg, settings.cache_dir)
    # Sentiment and predictions of the tracked coins only, followed live (infra.tracking).
    tracking = settings.tracked_coins("spark-analytics").acquire()
    analytics = Analytics(spark, settings, cfg, tracking=tracking)

    if args.metrics_port is not None:
        start_http_server(args.metrics_port, addr=args.metrics_host)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping the queries", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    names = args.query or list(QUERY_NAMES)
    assert settings.kafka.bootstrap_servers is not None  # Analytics checked it
    positions = metrics.Positions(KafkaOffsets(settings.kafka.bootstrap_servers))
    queries = dict(zip(names, analytics.start(names, available_now=args.once), strict=True))
    log.info("started %s", ", ".join(queries))
    try:
        if args.once:
            failed = False
            for name, query in queries.items():
                try:
                    query.awaitTermination()
                except Exception as exc:  # reported, then exit status 1
                    log.error("query %s failed: %s", name, exc)
                    failed = True
                    continue
                if query.lastProgress is not None:
                    positions.update(name, query.lastProgress)
            if failed:
                return ExitCode.FAILED
            backfill_once(settings, cfg, since=None)
            return ExitCode.OK
        return supervise(analytics, queries, settings, cfg, stop, positions=positions)
    finally:
        for query in queries.values():
            query.stop()
        analytics.close()
        tracking.release()
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
