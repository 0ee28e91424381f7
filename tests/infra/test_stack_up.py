"""`make up REPLAY=1` for real: the whole system, offline, data on the API within 60 s.

Runs ``python -m infra.stack up --replay`` exactly as ``make up REPLAY=1`` does,
with its own embedded Kafka and PostgreSQL in a private state directory, then
stops it with SIGINT (Ctrl-C) and checks that nothing it started is left running.
Where ``../shared`` has the real candles, BTC/USD is the real January 2024 market
re-timed to now (not the synthetic one), and the console says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from infra._procs import free_port
from tests._wait import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MARKET = REPO.parent / "shared" / "fixtures" / "real" / "market"
REAL_BTC = (38_555.0, 48_969.48)
"""The low and high of BTC/USDT in January 2024 (SOURCES.md); the synthetic BTC is near 95k."""


def _get(url: str, timeout: float = 3) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except OSError:
        return 0, {}


def _survivors(state: Path) -> list[str]:
    """Processes started for this state directory: by command line or inherited environment."""
    marker = f"CRYPTOVIZ_STATE_DIR={state}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if str(state).encode() in cmdline or marker + b"\0" in environ + b"\0":
            args = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {args}")
    return found


def test_replay_shows_data_within_60_s_and_ctrl_c_stops_everything(server_dir: Path) -> None:
    port = free_port()
    state = server_dir / "state"
    env = {
        k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
    }
    env.update(
        CRYPTOVIZ_STATE_DIR=str(state),
        CRYPTOVIZ_API_PORT=str(port),
        CRYPTOVIZ_SPARK_DRIVER_MEMORY="512m",
        PYTHONPATH=str(REPO),
    )
    log = (server_dir / "up.log").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.stack", "up", "--replay"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def log_tail() -> str:
            return (server_dir / "up.log").read_text()[-3000:]

        def price_shown() -> dict[str, object] | None:
            assert proc.poll() is None, log_tail()
            status, price = _get(f"http://127.0.0.1:{port}/api/v1/prix/BTC/temps_reel/")
            return price if status == 200 else None

        price = wait_for(
            price_shown,
            60 - (time.monotonic() - started),
            "a BTC price on the API within 60 s",
            interval=1,
            explain=log_tail,
        )
        last, age = price.get("price"), price.get("age_s")
        assert isinstance(last, float | int)
        assert isinstance(age, float | int)
        if MARKET.is_dir():
            # The real market, re-timed: a January 2024 price, stamped now.
            assert REAL_BTC[0] <= last <= REAL_BTC[1], price
            assert age < 120, price

        # Health checks Kafka and the database for real; while Spark's JVM starts on
        # the same two cores a check can be slow, so give it a few tries.
        def answered() -> dict[str, object] | None:
            status, health = _get(f"http://127.0.0.1:{port}/api/v1/health/", timeout=10)
            return health if status == 200 else None

        health = wait_for(answered, 30, "a 200 from the health check", interval=1)
        assert health["status"] == "ok"
        status, page = 0, None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=15) as response:
            status, page = response.status, response.read()
        assert status == 200
        assert b"CryptoViz" in page
        # One price path per pair: no alert compares two sources (the old "ADA/USD +348 %").
        status, alerts = _get(f"http://127.0.0.1:{port}/api/v1/alert/historique/?periode=1h")
        assert status == 200
        data = alerts.get("data")
        assert isinstance(data, list)
        assert all(abs(a["change_percent"]) < 20 for a in data), data
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        log.close()
    output = (server_dir / "up.log").read_text()
    assert code == 0, output[-3000:]
    assert "==> dashboard http://127.0.0.1:" in output
    if MARKET.is_dir():
        assert "==> replay: real market BTC/USD (binance_BTCUSDT_1m_2024-01_SysTB.csv)" in output
        assert "re-timed to now at 1x; the synthetic market plays the other coins" in output
    else:
        assert "==> replay: no candle file at hand" in output
    assert "==> stopping PostgreSQL" in output
    wait_for(
        lambda: not _survivors(state),
        15,
        "every process it started to stop",
        interval=0.5,
        explain=lambda: "\n".join(_survivors(state)),
    )
    assert _survivors(state) == []
