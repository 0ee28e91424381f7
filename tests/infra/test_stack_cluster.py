"""`make up CLUSTER=1` for real: the scaled-out shape starts what it says.

Runs ``python -m infra.stack up --replay --cluster`` as ``make up CLUSTER=1
REPLAY=1`` does, in a private state directory, and checks that each node is a
real process of the real engine: three brokers in the cluster's metadata and
replication factor 3 (``min.insync.replicas`` 2) on the raw topics; two running
processes per ingestion flow, each serving its own metrics; a Spark master with a
registered worker running the job; the API's two workers, whose metrics are
summed whichever one answers; data on the API; then Ctrl-C stops all of it.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType
from prometheus_client.parser import text_string_to_metric_families

from infra._procs import descendants, free_port, tcp_server_side_owner
from infra.cluster import API_WORKERS, FLOW_PROCESSES, PROCESS_PORT_STEP, is_clustered
from infra.programs import PROGRAMS
from infra.settings import Topics
from infra.spark_cluster import master_status
from tests._wait import wait_for
from tests.infra.test_stack_up import _survivors

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FLOWS = [p for p in PROGRAMS.values() if is_clustered(p)]
ROUTE = "/api/v1/cryptos"
T = TypeVar("T")


class Up:
    """The running ``make up CLUSTER=1`` and what it wrote in its state directory."""

    def __init__(self, proc: subprocess.Popen[bytes], state: Path, log: Path, port: int) -> None:
        self.proc, self.state, self.log, self.port = proc, state, log, port

    def until(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """``wait_for(probe)`` while ``make up`` lives; a probe that raises is a node still
        starting (retried), not a failure."""

        def alive_probe() -> T | None:
            assert self.proc.poll() is None, self.log.read_text()[-4000:]
            try:
                return probe()
            except Exception:  # a node still starting
                return None

        return wait_for(
            alive_probe, timeout, what, interval=2, explain=lambda: self.log.read_text()[-4000:]
        )

    def ports(self, relative: str) -> dict[str, int]:
        ports: dict[str, int] = json.loads((self.state / relative).read_text())
        return ports

    def supervised(self) -> dict[str, int]:
        """Program -> pid of every RUNNING program."""
        out = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c",
             str(self.state / "supervisord.conf"), "status"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        running = {}
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "RUNNING":
                running[parts[0]] = int(parts[3].rstrip(","))
        return running


def _scrape(url: str) -> list[Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return list(text_string_to_metric_families(response.read().decode()))


def _sum(families: list[Any], name: str, **labels: str) -> float:
    return float(sum(s.value for f in families for s in f.samples
                     if s.name == name and labels.items() <= s.labels.items()))  # fmt: skip


def _serves_metrics(url: str) -> bool:
    return _sum(_scrape(url), "process_cpu_seconds_total") > 0


@pytest.fixture
def up(server_dir: Path) -> Any:
    port = free_port()
    state = server_dir / "state"
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}  # fmt: skip
    env.update(CRYPTOVIZ_STATE_DIR=str(state), CRYPTOVIZ_API_PORT=str(port),
               CRYPTOVIZ_RATE_LIMIT="off", PYTHONPATH=str(REPO))  # fmt: skip
    log = server_dir / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "infra.stack", "up", "--replay", "--cluster"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    running = Up(proc, state / "cluster", log, port)
    try:
        yield running
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            code = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, log.read_text()[-3000:]
    wait_for(
        lambda: not _survivors(running.state),
        30,
        "every process it started to stop",
        interval=0.5,
        explain=lambda: "\n".join(_survivors(running.state)),
    )
    assert _survivors(running.state) == []


def test_the_cluster_switch_starts_every_node(up: Up) -> None:
    # Kafka: three brokers in the metadata, the raw topics on all three.
    brokers = up.until(lambda: up.ports("kafka/ports.json"), 300, "the Kafka nodes' ports")
    bootstrap = ",".join(f"127.0.0.1:{brokers[f'broker-{n}']}" for n in (1, 2, 3))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    raw = Topics().raw
    up.until(lambda: "starting under supervisord" in up.log.read_text(), 600, "the programs")
    meta = admin.list_topics(timeout=10)
    assert sorted(meta.brokers) == [1, 2, 3]
    for topic in raw:
        assert {len(p.replicas) for p in meta.topics[topic].partitions.values()} == {3}, topic
    configs = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in raw])
    assert {f.result()["min.insync.replicas"].value for f in configs.values()} == {"2"}

    # Every ingestion flow: two running processes, each serving its own metrics.
    names = [f"{flow.name}-{i}" for flow in FLOWS for i in range(FLOW_PROCESSES)]

    def all_running() -> dict[str, int] | None:
        running = up.supervised()
        return running if set(names) <= set(running) else None

    running = up.until(all_running, 300, "two processes per ingestion flow")
    assert not {p.name for p in FLOWS} & set(running), "a flow also runs unclustered"
    for flow in FLOWS:
        assert flow.metrics_port is not None
        for i in range(FLOW_PROCESSES):
            url = f"http://127.0.0.1:{flow.metrics_port + PROCESS_PORT_STEP * i}/metrics"
            up.until(functools.partial(_serves_metrics, url), 120, f"{flow.name}-{i}'s metrics")

    # Spark: a master with a registered worker, running the job.
    ui = f"http://127.0.0.1:{up.ports('spark/cluster-ports.json')['master-ui']}"

    def spark_running() -> dict[str, Any] | None:
        status = master_status(ui)
        alive = [w for w in status["workers"] if w["state"] == "ALIVE"]
        apps = [a["name"] for a in status["activeapps"]]
        return status if alive and "cryptoviz-analytics" in apps else None

    status = up.until(spark_running, 600, "the Spark master with a worker running the job")
    assert status["status"] == "ALIVE"
    assert {"spark-master", "spark-worker-0", "spark-analytics"} <= set(up.supervised())

    # Data through the clustered pipeline, on the API.
    base = f"http://127.0.0.1:{up.port}"
    up.until(lambda: urllib.request.urlopen(f"{base}/api/v1/prix/BTC/temps_reel/", timeout=10)
             .status == 200, 600, "a BTC price on the API")  # fmt: skip

    # The API: two workers, and /metrics sums them whichever one answers.
    api = up.supervised()["api"]

    def workers() -> list[int]:
        return [p for p in descendants(api)
                if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]  # fmt: skip

    assert len(up.until(lambda: w if len(w := workers()) == API_WORKERS else None, 120,
                        "the API's workers")) == API_WORKERS  # fmt: skip
    held: dict[int, http.client.HTTPConnection] = {}
    opened = 0
    for _ in range(60):
        conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
        conn.request("GET", ROUTE + "/")
        conn.getresponse().read()
        opened += 1
        assert conn.sock is not None
        owner = tcp_server_side_owner(up.port, conn.sock.getsockname()[1], workers())
        if owner is not None and owner not in held:
            held[owner] = conn
        else:
            conn.close()
        if len(held) == API_WORKERS:
            break
    assert len(held) == API_WORKERS, "could not reach both API workers"
    for extra, conn in zip((3, 5), held.values(), strict=True):
        for _ in range(extra):
            conn.request("GET", ROUTE + "/")
            conn.getresponse().read()

    def requests_counted() -> float:
        return _sum(_scrape(f"{base}/metrics"), "cryptoviz_api_requests_total", route=ROUTE)

    # A request is counted once its response has gone (the middleware's `finally`), so
    # the last one may land just after the client read it (CI once scraped 11 of 12).
    # Once every request is counted, any worker answering gives the whole sum.
    expected = float(opened + 8)
    up.until(lambda: requests_counted() == expected or None, 30, f"{expected} requests counted")
    assert {requests_counted() for _ in range(6)} == {expected}
    for conn in held.values():
        conn.close()
