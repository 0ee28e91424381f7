"""The monitor on the real stack: rows and age per table, consumer lag, dead letters, gaps.

The database and Kafka are the session's real servers; the flow is ``python -m
flows.run ingest-rawticker`` and the monitor ``python -m infra.monitor``, both run
as :mod:`infra.programs` declares them (what ``make up`` and the compose file run),
and read through their ``/metrics`` endpoints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from infra._procs import free_port
from infra.db_state import GAP_WINDOW, discover, table_states, trade_gaps
from infra.kafka_offsets import KafkaOffsets, OffsetsUnavailable
from infra.monitor import Monitor, MonitorSettings, load_monitor_settings
from infra.programs import PROGRAMS, consumer_group
from infra.settings import Settings, SettingsError
from tests._wait import wait_for
from tests.flows._payloads import BASE_TS, VALID
from tests.flows.conftest import Worker, count_rows, produce

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of a ``/metrics`` endpoint: (name, sorted labels) -> value."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sum of ``name`` over the series whose labels include ``labels`` (None: none)."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    return sum(found) if found else None


# ------------------------------------------------------------------ the database


def _insert_ticks(url: str, pair: str, times: list[datetime]) -> None:
    with psycopg.connect(url) as conn:
        conn.cursor().executemany(
            "INSERT INTO ticker_data (timestamp, pair, last) VALUES (%s, %s, 1)",
            [(t, pair) for t in times],
        )


def _insert_trades(url: str, pair: str, ids: list[int], at: datetime) -> None:
    with psycopg.connect(url) as conn:
        conn.cursor().executemany(
            "INSERT INTO trade_data (timestamp, pair, price, volume, side, trade_id, trade_key) "
            "VALUES (%s, %s, 1, 1, 'b', %s, %s)",
            [(at + timedelta(milliseconds=i), pair, i, str(i)) for i in ids],
        )


def test_tables_are_found_with_the_index_that_finds_their_newest_row(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        tables = {t.name: t for t in discover(conn)}
    assert "schema_migrations" not in tables
    assert tables["article_data"].time_strategy == "direct"  # (timestamp DESC)
    for name, key in (
        ("ticker_data", "pair"),
        ("trade_data", "pair"),
        ("alert_data", "pair"),
        ("sentiment_data", "crypto_symbol"),
        ("prediction_data", "crypto_symbol"),
    ):
        assert (tables[name].time_strategy, tables[name].key) == ("per-key", key), name  # fmt: skip
    assert tables["crypto_configuration"].time_strategy is None


def test_rows_and_newest_row_per_table(fresh_db: str) -> None:
    newest = NOW - timedelta(minutes=3)
    _insert_ticks(fresh_db, "BTC/USD", [NOW - timedelta(hours=h) for h in (5, 4, 3)])
    _insert_ticks(fresh_db, "ETH/USD", [newest, NOW - timedelta(hours=1)])
    _insert_ticks(fresh_db, "SOL/USD", [NOW - timedelta(days=2)])
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        states = {s.table: s for s in table_states(conn, exact_max=1000)}
        ticker = states["ticker_data"]
        assert (ticker.rows, ticker.estimated, ticker.newest) == (6, False, newest)
        assert (states["trade_data"].rows, states["trade_data"].newest) == (0, None)
        assert states["crypto_configuration"].timed is False
        # Above the exact bound, the statistics count (live tuples: flushed on demand).
        conn.execute("SELECT pg_stat_force_next_flush()")
        estimated = {s.table: s for s in table_states(conn, exact_max=0)}["ticker_data"]
    assert estimated.estimated is True
    assert estimated.newest == newest


def test_trade_id_gaps_of_the_last_day(fresh_db: str) -> None:
    _insert_trades(fresh_db, "BTC/USD", [1, 2, 3, 6, 7, 9, 10], NOW - timedelta(hours=1))
    _insert_trades(fresh_db, "ETH/USD", [50, 51, 52], NOW - timedelta(hours=1))
    # A hole older than the window is not counted.
    _insert_trades(fresh_db, "SOL/USD", [1, 5], NOW - GAP_WINDOW - timedelta(hours=1))
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        gaps = {g.pair: (g.gaps, g.missing) for g in trade_gaps(conn, NOW - GAP_WINDOW)}
    assert gaps == {"BTC/USD": (2, 3), "ETH/USD": (0, 0)}


# ------------------------------------------------------------------ Kafka offsets


def test_lag_counts_from_the_committed_position_or_the_first_retained(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("lagged", partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for partition in (0, 1):
        for _ in range(5):
            producer.produce(topic, b"m", partition=partition)
    assert producer.flush(30) == 0
    offsets = KafkaOffsets(kafka_bootstrap)
    try:
        group = consumer_group("test-lag", topic)
        _commit(offsets, group, {(topic, 0): 2})
        # Partition 1 has no commit: everything retained there is still to read.
        lags = {(p.topic, p.partition): (p.position, p.lag) for p in offsets.lag(group, [topic])}
        assert lags == {(topic, 0): (2, 3), (topic, 1): (0, 5)}
        _commit(offsets, group, {(topic, 0): 5, (topic, 1): 5})
        assert [p.lag for p in offsets.lag(group, [topic])] == [0, 0]
        assert offsets.lag(group, ["another-topic"]) == []
        count = offsets.count(topic, datetime.now(UTC) - timedelta(minutes=5))
        assert (count.retained, count.since) == (10, 10)
        assert offsets.count(topic, datetime.now(UTC) + timedelta(minutes=1)).since == 0
        assert offsets.count("no-such-topic", datetime.now(UTC)).retained == 0
    finally:
        offsets.close()


def _commit(offsets: KafkaOffsets, group: str, positions: dict[tuple[str, int], int]) -> None:
    """Commit, retrying while the broker's group coordinator is not ready (a new broker)."""

    def committed() -> bool:
        try:
            offsets.commit(group, positions)
        except OffsetsUnavailable:
            return False
        return True

    wait_for(committed, 60, f"a commit to {group}", interval=1)


# ------------------------------------------------------------------ the programs


class Program:
    """A program of :mod:`infra.programs` as a subprocess on a free metrics port."""

    def __init__(self, name: str, env: dict[str, str], log: Path, *extra: str) -> None:
        self.port = free_port()
        self.log = log
        with log.open("ab") as out:
            command = PROGRAMS[name].command(metrics_port=self.port, extra=extra)
            self.proc = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def samples(self) -> Samples:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        return scrape(self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def committed(offsets: KafkaOffsets, topic: str) -> int:
    """What the ingestion flow has committed in ``topic``, summed over partitions."""
    group = consumer_group("ingest-rawticker")
    return sum(offsets.committed(group, offsets.partitions([topic])).values())


@pytest.fixture
def env_for(stack: Settings, tmp_path: Path) -> Callable[..., dict[str, str]]:
    def make(database_url: str, dead_letter_topic: str, topic: str = "rawticker") -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=stack.kafka.bootstrap_servers or "",
            DATABASE_URL=database_url,
            CRYPTOVIZ_STATE_DIR=str(tmp_path / "state"),
            CRYPTOVIZ_CACHE_DIR=str(stack.cache_dir),
            CRYPTOVIZ_DEAD_LETTER_TOPIC=dead_letter_topic,
            CRYPTOVIZ_TOPIC_RAWTICKER=topic,
            CRYPTOVIZ_MONITOR_INTERVAL_S="0.5",
            CRYPTOVIZ_MONITOR_GAP_INTERVAL_S="0.5",
            PYTHONPATH=str(REPO),
        )
        return env

    return make


@pytest.fixture
def programs(tmp_path: Path) -> Iterator[Callable[..., Program]]:
    started: list[Program] = []

    def start(name: str, env: dict[str, str], *extra: str) -> Program:
        started.append(Program(name, env, tmp_path / f"{name}.log", *extra))
        return started[-1]

    yield start
    for program in started:
        program.stop()


def test_metrics_of_a_flow_stopped_and_restarted(
    kafka_bootstrap: str,
    fresh_db: str,
    new_topic: Callable[..., str],
    env_for: Callable[..., dict[str, str]],
    programs: Callable[..., Program],
    tmp_path: Path,
) -> None:
    """Rows and age after rows land; lag while the flow is stopped, then back to 0;
    dead letters per reason after junk; trade gaps: each read from the programs."""
    source, dlq = new_topic("rawticker"), new_topic("deadletter")
    env = env_for(fresh_db, dlq, source)
    consumer = {"consumer": "ingest-rawticker", "topic": source}

    def lag() -> float | None:
        return value(monitor.samples(), "cryptoviz_consumer_lag", **consumer)

    produce(kafka_bootstrap, source, [VALID["rawticker"](i) for i in range(30)])
    flow = Worker("ingest-rawticker", source, env, tmp_path / "flow.log").start()
    monitor = programs("monitor", env)
    offsets = KafkaOffsets(kafka_bootstrap)
    try:
        wait_for(lambda: count_rows(fresh_db, "ticker_data") == 30, 90, "30 ticker rows")
        # The flow's position reaches the group (auto-commit every 5 s): no lag.
        wait_for(lambda: committed(offsets, source) == 30, 60, "30 committed")
        wait_for(lambda: lag() == 0, 30, "lag 0 while the flow runs")
        samples = monitor.samples()
        newest = BASE_TS + 29 / 1000  # tests/flows/_payloads.ticker
        assert value(samples, "cryptoviz_table_rows", table="ticker_data") == 30
        assert value(samples, "cryptoviz_table_rows_estimated", table="ticker_data") == 0
        assert value(
            samples, "cryptoviz_table_newest_row_timestamp_seconds", table="ticker_data"
        ) == pytest.approx(newest)
        age = value(samples, "cryptoviz_table_newest_row_age_seconds", table="ticker_data")
        assert age is not None
        assert age == pytest.approx(datetime.now(UTC).timestamp() - newest, abs=30)
        assert value(samples, "cryptoviz_table_rows", table="trade_data") == 0
        assert value(samples, "cryptoviz_table_newest_row_age_seconds", table="trade_data") is None

        # Junk: dead letters per reason, counted by the flow.
        produce(kafka_bootstrap, source, [b"{}", b"{}", b"not json"])

        def letters() -> dict[str, float | None] | None:
            samples = scrape(flow.metrics_port)
            name = "cryptoviz_dead_letters_total"
            found = {
                reason: value(samples, name, topic="rawticker", stage="parse", reason=reason)
                for reason in ("missing pair", "malformed payload")
            }
            # The three may arrive in different polls: wait for all of them to be counted.
            return found if sum(v or 0 for v in found.values()) >= 3 else None

        found = wait_for(letters, 60, "dead letters counted by reason")
        assert found == {"missing pair": 2, "malformed payload": 1}
        # The position of all 33 messages committed (within the 5 s auto-commit).
        wait_for(lambda: committed(offsets, source) == 33, 60, "33 committed")

        # The flow stops; what arrives meanwhile is lag, seen with the flow down.
        flow.stop()
        produce(kafka_bootstrap, source, [VALID["rawticker"](i) for i in range(30, 50)])
        wait_for(lambda: lag() == 20, 30, "a lag of 20 with the flow stopped")
        flow = Worker("ingest-rawticker", source, env, tmp_path / "flow.log").start()
        wait_for(lambda: count_rows(fresh_db, "ticker_data") == 50, 90, "50 ticker rows")
        wait_for(lambda: lag() == 0, 60, "lag back to 0 after the restart")
        wait_for(lambda: value(monitor.samples(), "cryptoviz_table_rows", table="ticker_data")
                 == 50, 30, "50 rows seen by the monitor")  # fmt: skip

        # Trade-id gaps in the stored trades.
        _insert_trades(fresh_db, "BTC/USD", [100, 101, 104, 105], NOW - timedelta(minutes=5))
        wait_for(lambda: value(monitor.samples(), "cryptoviz_trade_ids_missing", pair="BTC/USD")
                 == 2, 30, "2 trade ids missing")  # fmt: skip
        assert value(monitor.samples(), "cryptoviz_trade_id_gaps", pair="BTC/USD") == 1
        ok = value(monitor.samples(), "cryptoviz_monitor_samples_total", outcome="ok")
        assert ok is not None
        assert ok > 0
    finally:
        flow.stop()
        offsets.close()


def test_the_monitor_needs_its_servers_and_reads_its_settings(
    env_for: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = {k: v for k, v in env_for("", "dlq").items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "infra.monitor", "--once"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "set DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS" in done.stderr
    assert load_monitor_settings({"CRYPTOVIZ_MONITOR_INTERVAL_S": "2"}).interval_s == 2
    with pytest.raises(SettingsError, match="CRYPTOVIZ_MONITOR_INTERVAL_S"):
        load_monitor_settings({"CRYPTOVIZ_MONITOR_INTERVAL_S": "0"})


def test_a_source_down_is_counted_and_its_last_values_kept(
    fresh_db: str, database_url: str, stack: Settings
) -> None:
    _insert_ticks(fresh_db, "BTC/USD", [NOW])
    monitor = Monitor(stack.with_servers(database=fresh_db), MonitorSettings(interval_s=1))
    errors = _errors("tables")
    try:
        monitor.sample(gaps=True)
        assert {t.table: t.rows for t in monitor.tables}["ticker_data"] == 1
        with psycopg.connect(database_url, autocommit=True) as admin:  # the database goes
            name = str(psycopg.conninfo.conninfo_to_dict(fresh_db)["dbname"])
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        monitor.sample(gaps=False)
        monitor.sample(gaps=False)  # the broken connection, then no database at all
        assert _errors("tables") == errors + 2
        families = {f.name: f for f in monitor.collector.collect()}
        rows = {s.labels["table"]: s.value for s in families["cryptoviz_table_rows"].samples}
        assert rows["ticker_data"] == 1, "the last values are kept"
        (age,) = [s.value for s in families["cryptoviz_table_newest_row_age_seconds"].samples]
        assert age >= 0
        assert monitor.lags is not None  # Kafka is still read
    finally:
        monitor.close()


def _errors(source: str) -> float:
    from prometheus_client import REGISTRY

    labels = {"source": source, "outcome": "error"}
    return REGISTRY.get_sample_value("cryptoviz_monitor_samples_total", labels) or 0.0
