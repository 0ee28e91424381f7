"""The Spark standalone cluster: a master, a registered worker, the analytics job on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from infra.java import find_java
from infra.settings import Settings
from infra.spark_cluster import (
    DAEMONS,
    MASTER_CLASS,
    WORKER_CLASS,
    SparkClusterLayout,
    SparkStandalone,
    alive_workers,
    master_status,
    spark_home,
)
from tests.flows.conftest import REPO, produce
from tests.spark_batch.test_streaming import SENTIMENT_ROWS, B, article, r6

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def test_the_daemons_are_sparks_own_from_the_pyspark_package(tmp_path: Path) -> None:
    layout = SparkClusterLayout(tmp_path, 7077, 8080, (8081, 8082))
    programs = layout.programs()
    assert list(programs) == ["spark-master", "spark-worker-0", "spark-worker-1"]
    master, worker = programs["spark-master"], programs["spark-worker-1"]
    assert master[1:4] == ["-m", "infra.spark_cluster", "master"]
    assert worker[3:5] == ["worker", "spark://127.0.0.1:7077"]
    assert DAEMONS == {"master": MASTER_CLASS, "worker": WORKER_CLASS}
    assert (spark_home() / "bin" / "spark-class").is_file()
    assert MASTER_CLASS == "org.apache.spark.deploy.master.Master"
    assert worker[worker.index("--webui-port") + 1] == "8082"
    env = layout.env(find_java())
    assert "spark.deploy.recoveryMode=FILESYSTEM" in env["SPARK_MASTER_OPTS"]
    assert env["PYSPARK_PYTHON"] == sys.executable


def _json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


def test_the_job_runs_on_the_cluster_with_the_same_results(
    stack: Settings, fresh_db: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    java = find_java()
    layout = SparkClusterLayout.with_free_ports(tmp_path / "spark")
    cluster = SparkStandalone(layout, java)
    assert cluster.start() == layout.master_url
    try:
        assert master_status(layout.master_ui)["status"] == "ALIVE"
        (worker,) = alive_workers(layout.master_ui)
        assert worker["cores"] == 2
        topic = new_topic("rawarticle")
        assert stack.kafka.bootstrap_servers is not None
        articles = [article("a1", 1, 0.9, ["bitcoin"]), article("a2", 2, 0.7, ["BTC", "eth"]),
                    article("a1", 1, 0.9, ["bitcoin"])]  # fmt: skip
        produce(stack.kafka.bootstrap_servers, topic, [json.dumps(a).encode() for a in articles])
        state = tmp_path / "state"
        env = {**os.environ, **layout.env(java), "KAFKA_BOOTSTRAP_SERVERS":
               stack.kafka.bootstrap_servers, "DATABASE_URL": fresh_db,
               "CRYPTOVIZ_STATE_DIR": str(state), "CRYPTOVIZ_TOPIC_RAWARTICLE": topic}  # fmt: skip
        run = subprocess.run(
            [sys.executable, "-m", "tests.infra._spark_cluster_job", layout.master_url],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-4000:]
        app_id = run.stdout.split()[-1]
        # The master scheduled it, and the worker ran its executor.
        (app,) = [a for a in master_status(layout.master_ui)["completedapps"] if a["id"] == app_id]
        assert app["name"] == "cryptoviz-analytics"
        finished = _json(f"http://127.0.0.1:{layout.worker_ui_ports[0]}/json/")
        assert app_id in {e["appid"] for e in finished["finishedexecutors"]}
        # The executors wrote the state store into the checkpoint every node reads.
        assert any((state / "spark" / "checkpoints" / "sentiment" / "state").rglob("*.delta"))
        b5 = B + timedelta(minutes=5)
        with psycopg.connect(fresh_db) as conn:
            rows = conn.execute(SENTIMENT_ROWS).fetchall()
        # The same rows local[2] gives (tests/spark_batch/test_streaming.py).
        assert [r[:4] + r[6:7] for r in rows] == [
            ("BTC", B, b5, r6(0.8), 2),
            ("ETH", B, b5, r6(0.7), 1),
        ]
    finally:
        cluster.stop()
