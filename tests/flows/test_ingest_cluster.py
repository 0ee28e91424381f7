"""An ingestion flow as a Bytewax cluster of two processes, as the clustered compose file runs it.

Both processes share the flow's recovery partitions, split the topic's Kafka
partitions, and serve their own metrics. Losing one process takes its peer down
too (Timely's connections between them break); both restarted resume from the
shared snapshots without losing or repeating a row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from infra._procs import free_port
from tests._wait import wait_for
from tests.flows._payloads import VALID
from tests.flows.conftest import Worker, count_rows, produce

pytestmark = pytest.mark.integration


def test_two_processes_split_the_topic_and_survive_losing_one(
    kafka_bootstrap: str,
    fresh_db: str,
    new_topic: Callable[..., str],
    worker_env: Callable[..., dict[str, str]],
    workers: Callable[..., Worker],
) -> None:
    n = 40_000
    source, dlq = new_topic("rawticker", partitions=3), new_topic("deadletter")
    produce(kafka_bootstrap, source, [VALID["rawticker"](i) for i in range(n)])
    env = worker_env(fresh_db, dlq)
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"

    def cluster() -> list[Worker]:
        return [workers("ingest-rawticker", source, env, "-i", str(i), "-a", addresses,
                        "--partitions", "2") for i in (0, 1)]  # fmt: skip

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
