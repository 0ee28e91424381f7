"""The soak run's API load: an open-loop HTTP client, run as a second process.

:func:`start_api_client` launches it as ``python -m bench.soak --api-client``, which
prints :func:`api_load`'s figures as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.api import Connection, request_bytes
from infra._console import StackError
from infra._procs import die_with_parent

REPO = Path(__file__).resolve().parent.parent
API_PATHS = (
    "/api/v1/prix/BTC/temps_reel/",
    "/api/v1/ticker/ETH/USD/historique/?periode=5m",
    "/api/v1/trade/SOL/USD/historique/?periode=5m",
    "/api/v1/candles/BTC/USD/?interval=1m&periode=1h",
)
"""Pairs of producer 0 (the tracked pairs come first): latest price, both histories, candles."""


async def api_load(port: int, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: request i is due at start + i/rate (its latency counts from then), paths
    in turn, over up to 64 keep-alive connections; a broken one is reopened."""
    requests = [request_bytes(path) for path in API_PATHS]
    pool: asyncio.Queue[Connection | None] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(None)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()

    async def one(index: int, due: float) -> None:
        conn = await pool.get()
        try:
            if conn is None:
                conn = await Connection.open(port)
            status = await asyncio.wait_for(conn.get(requests[index % len(requests)]), 10.0)
        except (OSError, EOFError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
            errors[type(exc).__name__] += 1
            if conn is not None:
                conn.close()
            conn = None
        else:
            if not 200 <= status < 300:
                errors[f"HTTP {status}"] += 1
            latencies[API_PATHS[index % len(API_PATHS)]].append(time.perf_counter() - due)
        finally:
            pool.put_nowait(conn)

    start = time.perf_counter()
    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    _, pending = await asyncio.wait(tasks, timeout=15.0) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    if pending:
        errors["no answer 15 s after the last request"] += len(pending)
    while not pool.empty():
        conn = pool.get_nowait()
        if conn is not None:
            conn.close()
    elapsed = time.perf_counter() - start
    every = sorted(x for values in latencies.values() for x in values)
    return {
        "target_rps": rate,
        "requests": len(tasks),
        "answered": len(every),
        "rps": round(len(every) / elapsed, 1),
        **_percentiles(every),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "per_path": {path: _percentiles(sorted(v)) for path, v in latencies.items()},
    }


def _percentiles(ordered: list[float]) -> dict[str, float | None]:
    def at(q: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] * 1000, 2)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": at(1.0)}


def start_api_client(port: int, rate: float, seconds: float) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "bench.soak",
        "--api-client",
        "--api-port",
        str(port),
        "--api-rate",
        str(rate),
        "--api-seconds",
        str(seconds),
    ]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, preexec_fn=die_with_parent)  # noqa: PLW1509


def wait_api(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, urllib.error.URLError):
            url = f"http://127.0.0.1:{port}/api/v1/health/"
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        if time.monotonic() > deadline:
            raise StackError(f"the API did not answer /api/v1/health/ in {timeout:.0f} s")
        time.sleep(1.0)
