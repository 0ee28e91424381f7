"""``python -m api --workers 2``: metrics summed over the workers, live messages on each.

Which worker accepted a connection is read from ``/proc`` (the server end of the
TCP connection and the worker's open files), so the test holds one HTTP client
and one WebSocket client on *each* worker, whatever the kernel's choice.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from infra._procs import descendants, free_port, tcp_server_side_owner
from infra.settings import Settings
from tests._wait import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROUTE = "/api/v1/cryptos"
"""Its route template (the label); requests go to the same path with a slash."""
WS_PATH = "/ws/ticker/BTC/USD/"


class Api:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, metrics_dir: Path) -> None:
        self.proc, self.port, self.metrics_dir = proc, port, metrics_dir
        self.base = f"http://127.0.0.1:{port}"

    def workers(self) -> list[int]:
        return descendants(self.proc.pid)

    def owner(self, client_port: int) -> int | None:
        return tcp_server_side_owner(self.port, client_port, self.workers())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of ``name``'s samples carrying ``labels``, from one scrape (a new connection)."""
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        total = 0.0
        for sample in text_string_to_metric_families(text):
            for s in sample.samples:
                if s.name == name and labels.items() <= s.labels.items():
                    total += s.value
        return total


@pytest.fixture
def api(stack: Settings, fresh_db: str, tmp_path: Path) -> Iterator[Api]:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # a previous run's: wiped at start
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": fresh_db,
           "KAFKA_BOOTSTRAP_SERVERS": stack.kafka.bootstrap_servers or "",
           "CRYPTOVIZ_API_PORT": str(port), "CRYPTOVIZ_API_WORKERS": "2",
           "CRYPTOVIZ_RATE_LIMIT": "off", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}  # fmt: skip
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    with (tmp_path / "api.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "api"], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
    running = Api(proc, port, metrics_dir)
    try:
        wait_for(lambda: _answers(running) and len(running.workers()) >= 2, 120, "two workers")
        yield running
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for pid in [proc.pid, *descendants(proc.pid)]:
                os.kill(pid, signal.SIGKILL)
            proc.wait()


def _answers(api: Api) -> bool:
    try:
        return httpx.get(f"{api.base}/api/v1/health/", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _one_per_worker(api: Api, open_one: Callable[[], tuple[Any, int]]) -> dict[int, Any]:
    """Open clients until each worker holds one; close the extra ones."""
    held: dict[int, Any] = {}
    for _ in range(60):
        client, local_port = open_one()
        owner = api.owner(local_port)
        if owner is not None and owner not in held:
            held[owner] = client
        else:
            client.close()
        if len(held) == 2:
            return held
    raise AssertionError(f"could not reach both workers: {sorted(held)} of {api.workers()}")


class _Http:
    """One kept-alive HTTP/1.1 connection: every request goes to the same worker."""

    def __init__(self, api: Api) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
        self.get(ROUTE + "/")  # opens the connection; counted like the others

    def get(self, path: str) -> None:
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        response.read()
        assert response.status == 200, response.status

    @property
    def local_port(self) -> int:
        assert self.conn.sock is not None
        return int(self.conn.sock.getsockname()[1])

    def close(self) -> None:
        self.conn.close()


def _http_client(api: Api, opened: list[_Http]) -> tuple[_Http, int]:
    opened.append(client := _Http(api))
    return client, client.local_port


def _ws_client(api: Api) -> tuple[websocket.WebSocket, int]:
    ws = websocket.create_connection(f"ws://127.0.0.1:{api.port}{WS_PATH}", timeout=10)
    assert ws.sock is not None
    return ws, int(ws.sock.getsockname()[1])


def test_metrics_are_summed_over_the_workers(api: Api) -> None:
    opened: list[_Http] = []
    clients = _one_per_worker(api, lambda: _http_client(api, opened))
    (a, first), (b, second) = clients.items()
    for _ in range(10):
        first.get(ROUTE + "/")
    for _ in range(20):
        second.get(ROUTE + "/")
    # One request per opened connection, then 10 + 20 on the two workers: every scrape,
    # whichever worker answers it, counts them all.
    # A request is counted once its response has gone (the middleware's `finally`), so
    # the last one may land just after the client read it: wait for it, then every
    # scrape must agree.
    sent = float(len(opened) + 30)

    def counted() -> float:
        return api.metric("cryptoviz_api_requests_total", route=ROUTE, status="200")

    wait_for(lambda: counted() == sent, 30, f"{sent} requests counted")
    assert {counted() for _ in range(6)} == {sent}
    # Each worker wrote its own values; the stale file of an earlier run is gone.
    assert {p.name for p in api.metrics_dir.glob("counter_*.db")} >= {
        f"counter_{a}.db",
        f"counter_{b}.db",
    }
    assert not (api.metrics_dir / "counter_1.db").exists()
    for client in clients.values():
        client.close()


def test_a_live_message_reaches_a_client_on_each_worker(api: Api, stack: Settings) -> None:
    sockets = _one_per_worker(api, lambda: _ws_client(api))
    clients = "cryptoviz_api_ws_clients"
    wait_for(lambda: api.metric(clients) == 2.0, 30, "two clients counted over two workers")
    producer = Producer({"bootstrap.servers": stack.kafka.bootstrap_servers or ""})
    run = uuid.uuid4().hex

    def send(seq: int) -> None:
        producer.produce("rawticker", json.dumps({"pair": "BTC/USD", "last": 42000 + seq,
                         "timestamp": time.time(), "run": run, "seq": seq}).encode())  # fmt: skip
        producer.flush(10)

    def receive(ws: websocket.WebSocket, timeout: float) -> list[int]:
        seqs: list[int] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ws.settimeout(left)
            try:
                message = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException:
                break
            if message.get("data", {}).get("run") == run:
                seqs.append(message["data"]["seq"])
        return seqs

    # Each worker's relay starts at the end of the topic once assigned: send until
    # both have seen one, then one more that both must get.
    for seq in range(60):
        send(seq)
        if all(receive(ws, 1.0) for ws in sockets.values()):
            break
    send(1000)
    for pid, ws in sockets.items():
        assert 1000 in receive(ws, 15.0), f"worker {pid} did not relay the message"

    # A worker dies: uvicorn starts another; the other worker's client keeps its stream.
    victim, survivor = sockets
    os.kill(victim, signal.SIGKILL)
    send(2000)
    assert 2000 in receive(sockets[survivor], 15.0)
    wait_for(lambda: len(api.workers()) >= 2 and victim not in api.workers(), 60, "a new worker")
    # Its gauge went with it; its counters stay in the sums.
    wait_for(lambda: api.metric(clients) == 1.0, 30, "the dead worker's client uncounted")
    for ws in sockets.values():
        ws.close()
