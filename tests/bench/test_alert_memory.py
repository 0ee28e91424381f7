"""The alert worker's memory harness at a reduced size, on the session's broker.

It runs as a command (``python -m bench.alert_memory``) on topics of its own: a small
backlog first (the worker starts behind its input), then one producer for 20 s. Its
saved result must hold what the 10-minute run is read from: RSS, lag, tickers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BACKLOG, RATE, SECONDS = 20_000, 1_000, 20


def test_alert_memory_reports_rss_lag_and_flatness(kafka_bootstrap: str, tmp_path: Path) -> None:
    results = tmp_path / "alert-memory.json"
    args = {
        "--rate": RATE, "--minutes": SECONDS / 60, "--producers": 1, "--pairs": 6,
        "--backlog": BACKLOG, "--sample-s": 2, "--warmup-s": 4, "--results": results,
    }  # fmt: skip
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    done = subprocess.run(
        [sys.executable, "-m", "bench.alert_memory",
         *(str(x) for item in args.items() for x in item)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(results.read_text())
    samples, summary = result["samples"], result["summary"]
    assert len(samples) >= SECONDS // 2 - 1
    assert all(s["rss_mb"] > 20 for s in samples)
    # The backlog (and whatever the producer sent once it was up) was counted...
    assert samples[-1]["tickers"] >= BACKLOG
    # ...and the worker read them: its committed position moved (lag below what exists).
    lags = [s["lag"] for s in samples if s["lag"] is not None]
    assert lags
    assert min(lags) < samples[-1]["tickers"]
    rss = summary["rss_mb"]
    assert set(rss) == {"start", "middle", "end", "peak"}
    assert rss["peak"] >= max(rss["start"], rss["middle"], rss["end"])
    assert isinstance(summary["flat"], bool)
    assert result["options"]["backlog"] == BACKLOG
