"""The monitor: what the pipeline holds and how far behind it is, as Prometheus metrics.

    python -m infra.monitor [--metrics-port 9209] [--metrics-host 127.0.0.1]
    python -m infra.monitor --once      # one sample, printed as JSON, then exit

One process, whatever runs the rest (``make up`` and the compose file run it as the
``monitor`` program of :mod:`infra.programs`), reading the durable state of the
pipeline rather than the workers' memory, so its figures stay true while a worker is
down, restarting or split over several processes. Every ``CRYPTOVIZ_MONITOR_INTERVAL_S``:

* the database (:mod:`infra.db_state`): rows and newest row of every table;
  trade-id gaps of the last 24 h every ``CRYPTOVIZ_MONITOR_GAP_INTERVAL_S``;
* Kafka (:mod:`infra.kafka_offsets`): the lag of every consumer group
  ``cryptoviz-*`` (where each flow and each Spark query keeps its position) on the
  topics of the topic map.

=============================================  ===========================================
metric                                         what
=============================================  ===========================================
``cryptoviz_table_rows{table}``                rows (``count(*)``, or the statistics' count
                                               above ``CRYPTOVIZ_MONITOR_EXACT_ROWS``)
``cryptoviz_table_rows_estimated{table}``      1 when ``cryptoviz_table_rows`` is that count
``cryptoviz_table_newest_row_timestamp_seconds``  time of the newest row (tables with a
                                               ``timestamp`` column and a row)
``cryptoviz_table_newest_row_age_seconds``     now - that time, computed at each scrape
``cryptoviz_consumer_lag{consumer,topic,``     messages not yet read by ``consumer`` (its
``partition}``                                 group without the ``cryptoviz-`` prefix)
``cryptoviz_trade_id_gaps{pair}``              holes in the pair's stored ``trade_id``
                                               sequence over the last 24 h
``cryptoviz_trade_ids_missing{pair}``          trade ids those holes leave out
``cryptoviz_monitor_samples_total{source,``    samples taken, by source (``tables``,
``outcome}``                                   ``gaps``, ``lag``) and outcome (ok, error)
``cryptoviz_monitor_last_sample_timestamp_``   when each source was last read successfully
``seconds{source}``
=============================================  ===========================================

A source that fails (database or Kafka down) keeps its last values and says so in
``cryptoviz_monitor_samples_total{outcome="error"}``; the ages keep growing, as they
should. Exit statuses: :mod:`infra.cli`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from types import FrameType
from typing import Annotated, Any

import msgspec
import psycopg
from prometheus_client import REGISTRY, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from handlers import CryptoVizError
from infra.cli import run_program
from infra.db_state import GAP_WINDOW, PairGaps, TableState, table_states, trade_gaps
from infra.kafka_offsets import KafkaOffsets, PartitionLag
from infra.programs import CONSUMER_GROUP_PREFIX
from infra.settings import Settings, SettingsError, env, load_settings, read_env

log = logging.getLogger("infra.monitor")

SAMPLES = Counter(
    "cryptoviz_monitor_samples_total",
    "Samples the monitor took, by source (tables, gaps, lag) and outcome (ok, error)",
    ["source", "outcome"],
)
LAST_SAMPLE = Gauge(
    "cryptoviz_monitor_last_sample_timestamp_seconds",
    "When the monitor last read a source successfully (Unix time)",
    ["source"],
)


class MonitorSettings(msgspec.Struct, frozen=True, kw_only=True):
    interval_s: Annotated[
        float,
        env("CRYPTOVIZ_MONITOR_INTERVAL_S", "seconds between the monitor's samples", gt=0),
    ] = 15.0
    gap_interval_s: Annotated[
        float,
        env(
            "CRYPTOVIZ_MONITOR_GAP_INTERVAL_S",
            "seconds between two looks for trade-id gaps (a scan of a day of trades)",
            gt=0,
        ),
    ] = 300.0
    exact_rows_max: Annotated[
        int,
        env(
            "CRYPTOVIZ_MONITOR_EXACT_ROWS",
            "tables with more rows (by the statistics) are counted by the statistics",
            ge=0,
        ),
    ] = 1_000_000


def load_monitor_settings(environ: Mapping[str, str] | None = None) -> MonitorSettings:
    """Build :class:`MonitorSettings` from environment variables (``os.environ`` by default)."""
    return read_env(MonitorSettings, os.environ if environ is None else environ)


class Monitor:
    """Samples the database and Kafka; :attr:`collector` serves the last samples."""

    def __init__(
        self, settings: Settings, cfg: MonitorSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        url, bootstrap = settings.database.url, settings.kafka.bootstrap_servers
        if url is None or bootstrap is None:
            raise SettingsError(
                "the monitor reads running servers: set DATABASE_URL and "
                "KAFKA_BOOTSTRAP_SERVERS (`make up` and the compose file do)"
            )
        self._url = url
        self._topics = settings.kafka.topics.all
        self._cfg = cfg
        self._clock = clock
        self._offsets = KafkaOffsets(bootstrap)
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self.tables: list[TableState] = []
        self.gaps: list[PairGaps] = []
        self.lags: list[PartitionLag] = []
        self._next_gaps = 0.0
        self.collector = MonitorCollector(self, clock)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            timeout_ms = int(min(self._cfg.interval_s, 30.0) * 1000)
            self._conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=5,
                application_name="cryptoviz-monitor",
                options=f"-c statement_timeout={timeout_ms}",
            )
        return self._conn

    def _sampled(self, source: str, sample: Callable[[], None]) -> bool:
        try:
            sample()
        except (psycopg.Error, CryptoVizError) as exc:
            SAMPLES.labels(source, "error").inc()
            log.warning("monitor: %s not sampled: %s", source, exc)
            if isinstance(exc, psycopg.Error) and self._conn is not None:
                self._conn.close()
            return False
        SAMPLES.labels(source, "ok").inc()
        LAST_SAMPLE.labels(source).set(self._clock())
        return True

    def sample(self, *, gaps: bool | None = None) -> None:
        """Read every source once (trade gaps: when due, or as ``gaps`` says)."""

        def tables() -> None:
            found = table_states(self._connection(), self._cfg.exact_rows_max)
            with self._lock:
                self.tables = found

        def lag() -> None:
            found = self._offsets.lag(CONSUMER_GROUP_PREFIX, self._topics)
            with self._lock:
                self.lags = found

        def trade() -> None:
            since = datetime.fromtimestamp(self._clock(), UTC) - GAP_WINDOW
            found = trade_gaps(self._connection(), since)
            with self._lock:
                self.gaps = found

        self._sampled("tables", tables)
        self._sampled("lag", lag)
        now = time.monotonic()
        if gaps if gaps is not None else now >= self._next_gaps:
            self._next_gaps = now + self._cfg.gap_interval_s
            self._sampled("gaps", trade)

    def run(self, stop: threading.Event) -> None:
        """Sample every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            self.sample()
            stop.wait(self._cfg.interval_s)

    def snapshot(self) -> tuple[list[TableState], list[PartitionLag], list[PairGaps]]:
        with self._lock:
            return list(self.tables), list(self.lags), list(self.gaps)

    def close(self) -> None:
        self._offsets.close()
        if self._conn is not None:
            self._conn.close()


def _consumer(group: str) -> str:
    return group.removeprefix(CONSUMER_GROUP_PREFIX)


class MonitorCollector(Collector):
    """The monitor's last samples as gauges; ages are computed at each scrape."""

    def __init__(self, monitor: Monitor, clock: Callable[[], float]) -> None:
        self._monitor = monitor
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tables, lags, gaps = self._monitor.snapshot()
        now = self._clock()
        rows = GaugeMetricFamily(
            "cryptoviz_table_rows", "Rows of the table (see cryptoviz_table_rows_estimated)",
            labels=["table"],
        )  # fmt: skip
        estimated = GaugeMetricFamily(
            "cryptoviz_table_rows_estimated",
            "1 when cryptoviz_table_rows is the statistics' count (a large table), 0 for count(*)",
            labels=["table"],
        )
        newest = GaugeMetricFamily(
            "cryptoviz_table_newest_row_timestamp_seconds",
            "Time of the table's newest row (its timestamp column; Unix time)",
            labels=["table"],
        )
        age = GaugeMetricFamily(
            "cryptoviz_table_newest_row_age_seconds",
            "Age of the table's newest row at scrape time (now - its timestamp column)",
            labels=["table"],
        )
        for t in tables:
            rows.add_metric([t.table], t.rows)
            estimated.add_metric([t.table], 1.0 if t.estimated else 0.0)
            if t.newest is not None:
                newest.add_metric([t.table], t.newest.timestamp())
                age.add_metric([t.table], now - t.newest.timestamp())
        lag = GaugeMetricFamily(
            "cryptoviz_consumer_lag",
            "Messages the consumer has not read yet (partition end - its committed position)",
            labels=["consumer", "topic", "partition"],
        )
        for p in lags:
            lag.add_metric([_consumer(p.group), p.topic, str(p.partition)], p.lag)
        holes = GaugeMetricFamily(
            "cryptoviz_trade_id_gaps",
            "Holes in the pair's stored trade_id sequence among the trades of the last 24 h",
            labels=["pair"],
        )
        missing = GaugeMetricFamily(
            "cryptoviz_trade_ids_missing",
            "Trade ids missing from trade_data in those holes (last 24 h)",
            labels=["pair"],
        )
        for g in gaps:
            holes.add_metric([g.pair], g.gaps)
            missing.add_metric([g.pair], g.missing)
        yield from (rows, estimated, newest, age, lag, holes, missing)


def _sample_json(monitor: Monitor) -> str:
    tables, lags, gaps = monitor.snapshot()

    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    return json.dumps(
        {
            "tables": [{k: plain(v) for k, v in asdict(t).items()} for t in tables],
            "lag": [{**asdict(p), "lag": p.lag} for p in lags],
            "trade_gaps": [asdict(g) for g in gaps],
        },
        indent=2,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.monitor", description=__doc__)
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics")
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument("--once", action="store_true", help="sample once, print JSON, exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_program("infra.monitor", lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    cfg = load_monitor_settings()
    monitor = Monitor(load_settings(), cfg)
    try:
        if args.once:
            monitor.sample(gaps=True)
            print(_sample_json(monitor))
            return
        REGISTRY.register(monitor.collector)
        if args.metrics_port is not None:
            start_http_server(args.metrics_port, addr=args.metrics_host)
        stop = threading.Event()

        def request_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        log.info("monitor: sampling every %g s", cfg.interval_s)
        monitor.run(stop)
    finally:
        monitor.close()


if __name__ == "__main__":
    sys.exit(main())
