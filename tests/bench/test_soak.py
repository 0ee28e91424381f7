"""The soak harness at a reduced size: 2,000 msgs/s for 20 s through the pipeline (no Spark).

It runs as a command (``python -m bench.soak``) against the session's Kafka broker (on
topics of its own) and a fresh database, and its saved result must add up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from flows.producers.synthetic import synthetic_pairs
from flows.registry import INGEST_WORKERS
from infra.settings import load_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RATE, SECONDS, WARMUP, API_RATE = 2000, 20, 6, 20


def test_soak_ingests_every_message_and_reports_lag_memory_and_api_latency(
    kafka_bootstrap: str, fresh_db: str, tmp_path: Path
) -> None:
    results = tmp_path / "soak.json"
    args = {
        "--rate": RATE, "--minutes": SECONDS / 60, "--producers": 2, "--api-rate": API_RATE,
        "--sample-s": 2, "--warmup-s": WARMUP, "--catchup-timeout-s": 60, "--results": results,
    }  # fmt: skip
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": fresh_db}
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--no-spark",
         *(str(x) for item in args.items() for x in item)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert "== soak summary ==" in done.stdout
    result = json.loads(results.read_text())
    final, summary = result["final"], result["summary"]

    # Every message produced is exactly one row: nothing lost, and no two producers'
    # ticks merged on (pair, timestamp).
    produced = final["produced"]
    assert produced["ticker_data"] + produced["trade_data"] >= 0.75 * RATE * SECONDS
    assert final["rows"] == produced
    assert summary["rows_equal_produced"] is True
    assert 0.75 * RATE <= summary["rates"]["produced_msgs_per_s"] <= 1.1 * RATE
    coins = load_settings().coin_table()
    with psycopg.connect(fresh_db) as conn:
        pairs = {row[0] for row in conn.execute("SELECT DISTINCT pair FROM ticker_data")}
    assert pairs == set(synthetic_pairs(coins, 24))  # 2 producers x 12 disjoint pairs

    # Lag of every ingestion worker, back to 0 once the producers stopped.
    assert set(summary["lag"]) == {*INGEST_WORKERS, "producer-alerts"}
    assert summary["lag"]["ingest-rawtrade"]["max"] > 0
    assert all(lag["final"] == 0 for lag in summary["lag"].values())
    assert summary["catch_up_s"] is not None
    assert 0 <= summary["catch_up_s"] <= 60

    # Memory of every worker at start, middle and end of the load.
    workers = {*INGEST_WORKERS, "producer-alerts", "producer-synthetic-1",
               "producer-synthetic-2", "api"}  # fmt: skip
    assert set(summary["memory_mb"]) == workers  # the servers are not this run's
    for name, memory in summary["memory_mb"].items():
        assert all(memory[k] > 20 for k in ("start", "middle", "end")), (name, memory)
    load = [s for s in result["samples"] if s["phase"] == "load"]
    assert len(load) >= 5
    assert all(set(s["memory_mb"]) == workers for s in load)

    # The API under load from the second process, and no errors anywhere.
    api = final["api"]
    assert api["requests"] >= API_RATE * (SECONDS - WARMUP) * 0.9
    assert api["answered"] == api["requests"]
    assert api["errors"] == 0, api["error_kinds"]
    assert 0 < api["p50_ms"] <= api["p99_ms"]
    assert final["dead_letters"] == 0
    assert not any(final["restarts"].values())
    assert all(v["error_lines"] == v["tracebacks"] == 0 for v in final["logs"].values())
    assert summary["errors_total"] == 0
