"""``python -m api``: the entry point serves HTTP and WebSockets from the environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from websockets.sync.client import connect

from infra._procs import free_port
from infra.settings import Settings
from tests._wait import wait_for

REPO = Path(__file__).resolve().parents[2]


def test_python_m_api_serves_from_the_environment(stack: Settings, fresh_db: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": fresh_db,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka.bootstrap_servers or "",
        "CRYPTOVIZ_API_PORT": str(port),
        # Per minute, not per second: on a loaded machine four requests can span two
        # one-second windows and never meet the limit.
        "CRYPTOVIZ_RATE_LIMIT": "2/minute",
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "api"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def answered() -> httpx.Response | None:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                return httpx.get(f"{base}/api/v1/health/", timeout=5)
            except httpx.TransportError:
                return None

        health = wait_for(answered, 30, "python -m api to start", interval=0.2)
        assert health.status_code == 200, health.text
        assert health.json()["live"]["status"] in ("starting", "running")
        # The rate limit came from the environment.
        statuses = [httpx.get(f"{base}/api/v1/cryptos/").status_code for _ in range(4)]
        assert 429 in statuses
        with connect(f"ws://127.0.0.1:{port}/ws/live") as ws:
            ws.send(json.dumps({"action": "subscribe", "channels": ["alert"]}))
            assert json.loads(ws.recv(timeout=5)) == {"type": "subscribed", "channels": ["alert"]}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_python_m_api_without_database_explains() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "api"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2  # a configuration error (infra.cli's exit-code scheme)
    assert "DATABASE_URL" in result.stderr
