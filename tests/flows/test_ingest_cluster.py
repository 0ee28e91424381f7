"""An ingestion flow as a Bytewax cluster of two processes, as the clustered compose file runs it.

Both processes share the flow's recovery partitions, split the topic's Kafka
partitions, and serve their own metrics. Losing one process takes its peer down
too (Timely's connections between them break); both restarted resume from the
shared snapshots without losing or repeating a row. Bytewax's main-thread signal
loop is paced in each process (``flows._signal_pacer``), and signals still stop them.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from bench.flow_threads import sample
from infra._procs import free_port
from tests._wait import wait_for
from tests.flows._payloads import VALID
from tests.flows.conftest import Worker, count_rows, produce

pytestmark = pytest.mark.integration


Cluster = tuple[str, dict[str, str], Callable[[], list[Worker]]]
"""(the source topic, the workers' environment, a function starting both processes)."""


@pytest.fixture
def ticker_cluster(
    kafka_bootstrap: str,
    fresh_db: str,
    new_topic: Callable[..., str],
    worker_env: Callable[..., dict[str, str]],
    workers: Callable[..., Worker],
) -> Callable[[int, int], Cluster]:
    """A ``rawticker`` topic of ``partitions`` holding ``n`` messages, and
    ``ingest-rawticker`` on it as a Bytewax cluster of two processes into ``fresh_db``."""

    def make(n: int, partitions: int) -> Cluster:
        source, dlq = new_topic("rawticker", partitions=partitions), new_topic("deadletter")
        produce(kafka_bootstrap, source, [VALID["rawticker"](i) for i in range(n)])
        env = worker_env(fresh_db, dlq)
        addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"

        def cluster() -> list[Worker]:
            return [workers("ingest-rawticker", source, env, "-i", str(i), "-a", addresses,
                            "--partitions", "2") for i in (0, 1)]  # fmt: skip

        return source, env, cluster

    return make


def test_two_processes_split_the_topic_and_survive_losing_one(
    fresh_db: str, ticker_cluster: Callable[[int, int], Cluster]
) -> None:
    n = 40_000
    _, env, cluster = ticker_cluster(n, 3)

    first = cluster()
    wait_for(lambda: count_rows(fresh_db, "ticker_data") > 4_000, 120, "first rows")
    first[1].kill()
    # Its peer cannot go on alone: it exits, and a supervisor restarts both.
    wait_for(lambda: not first[0].alive(), 60, "the peer process to exit")
    killed_at = count_rows(fresh_db, "ticker_data")
    assert killed_at < n, "the cluster finished before the kill; raise n"

    second = cluster()
    wait_for(lambda: count_rows(fresh_db, "ticker_data") == n, 180, "all rows")
    with psycopg.connect(fresh_db) as conn:
        distinct = conn.execute("SELECT count(DISTINCT (pair, timestamp)) FROM ticker_data")
        assert distinct.fetchone() == (n,)
    # Each process read its share of the three Kafka partitions, on its own metrics port.
    wait_for(lambda: all(w.metric("cryptoviz_ingest_messages_total") > 0 for w in second), 60,
             "both processes' metrics")  # fmt: skip
    # One recovery directory, with the two partitions both processes share.
    (shared,) = (Path(env["CRYPTOVIZ_STATE_DIR"]) / "recovery").iterdir()
    assert sorted(p.name for p in shared.glob("part-*.sqlite3")) == [
        "part-0.sqlite3",
        "part-1.sqlite3",
    ]


def _main_thread_wakeups(pid: int) -> int:
    return sample(pid)[pid].voluntary


def test_a_paced_cluster_ingests_and_still_stops_on_sigint_and_on_sigterm(
    kafka_bootstrap: str, fresh_db: str, ticker_cluster: Callable[[int, int], Cluster]
) -> None:
    n = 3_000
    source, _, cluster = ticker_cluster(n, 2)

    def stopped(processes: list[Worker]) -> list[int | None]:
        wait_for(lambda: not any(w.alive() for w in processes), 60, "both processes to stop")
        return [w.proc.returncode if w.proc else None for w in processes]

    first = cluster()
    wait_for(lambda: count_rows(fresh_db, "ticker_data") == n, 180, "all rows")
    # Each main thread wakes a few times per pacing period, not at each of Bytewax's
    # 1 ms loop turns (~1,000 a second unpaced: docs/BENCHMARKS.md).
    pids = [w.proc.pid for w in first if w.proc]
    before = [_main_thread_wakeups(pid) for pid in pids]
    time.sleep(3)
    rates = [(_main_thread_wakeups(pid) - b) / 3 for pid, b in zip(pids, before, strict=True)]
    assert all(rate < 200 for rate in rates), rates
    # Ctrl-C (SIGINT to both): Bytewax's check still raises KeyboardInterrupt, its
    # workers stop, and the process exits as interrupted (130; a peer whose connection
    # broke first exits 1).
    for w in first:
        assert w.proc is not None
        w.proc.send_signal(signal.SIGINT)
    codes = stopped(first)
    assert 130 in codes, codes

    produce(kafka_bootstrap, source, [VALID["rawticker"](i) for i in range(n, 2 * n)])
    second = cluster()
    wait_for(lambda: count_rows(fresh_db, "ticker_data") == 2 * n, 180, "the new rows")
    with psycopg.connect(fresh_db) as conn:
        distinct = conn.execute("SELECT count(DISTINCT (pair, timestamp)) FROM ticker_data")
        assert distinct.fetchone() == (2 * n,)
    # SIGTERM (what supervisord sends) keeps its default action: both end at once.
    for w in second:
        assert w.proc is not None
        w.proc.send_signal(signal.SIGTERM)
    assert stopped(second) == [-signal.SIGTERM, -signal.SIGTERM]
