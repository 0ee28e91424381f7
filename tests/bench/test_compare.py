"""``python -m bench.compare api`` at a tiny size: two sides, the real servers, the JSON.

The sides are HEAD (exported with ``git archive``) and this working tree (``.``), each
with its own database and ``python -m api``; the command starts its own embedded
PostgreSQL (so that PostgreSQL's CPU is measured too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench._checkouts import Checkout
from bench.api import ENDPOINTS
from bench.compare import LATENCY_FIGURES, rotated

REPO = Path(__file__).resolve().parents[2]


def test_each_round_starts_one_side_later() -> None:
    sides = [Checkout(label, label, "abc1234", REPO) for label in ("a", "b", "c")]
    orders = ["".join(s.label for s in rotated(sides, r)) for r in range(4)]
    assert orders == ["abc", "bca", "cab", "abc"]


@pytest.mark.integration
def test_two_sides_each_measured_on_every_endpoint_with_their_cpu(tmp_path: Path) -> None:
    results = tmp_path / "compare-api.json"
    # No DATABASE_URL: the command starts its own PostgreSQL, whose CPU it can read.
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.compare", "api", "--ref", "HEAD", "--ref", ".",
         "--rows", "20000", "--rounds", "1", "--seconds", "1", "--results", str(results)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(results.read_text())

    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    assert [(s["label"], s["ref"]) for s in result["sides"]] == [("HEAD", "HEAD"), ("this", ".")]
    assert result["sides"][0]["commit"] == head
    assert result["sides"][1]["commit"].startswith(head)
    assert result["command"].startswith("python -m bench.compare api --ref HEAD")
    assert {"machine", "date", "commit"} <= result.keys()

    for label in ("HEAD", "this"):
        assert set(result["medians"][label]) == set(ENDPOINTS)
        for figures in result["medians"][label].values():
            assert figures["rps"] > 0
            assert figures["server_cpu_ms_per_request"] > 0
            assert figures["postgres_cpu_ms_per_request"] > 0
    assert all(r == 1.0 for r in result["cpu_ratio_to_first"]["HEAD"].values())
    # One run per side, endpoint and round; no request failed.
    assert len(result["runs"]) == 2 * len(ENDPOINTS)
    assert sum(r["errors"] for r in result["runs"]) == 0


@pytest.mark.integration
def test_two_ingest_workers_each_drain_the_topic_with_their_cpu(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    result = _compare_head_twice(
        "ingest", ["--messages", "20000"], kafka_bootstrap, database_url, tmp_path
    )

    assert [s["label"] for s in result["sides"]] == ["HEAD", "HEAD#2"]
    assert result["sides"][0]["commit"] == result["sides"][1]["commit"]
    assert [(r["side"], r["rows"]) for r in result["runs"]] == [("HEAD", 20000), ("HEAD#2", 20000)]
    for label in ("HEAD", "HEAD#2"):
        figures = result["medians"][label]
        assert figures["cpu_s_per_million"] > 0
        assert figures["msgs_per_s"] > 0
        assert figures["peak_rss_mb"] > 0
    assert result["cpu_ratio_to_first"]["HEAD"] == 1.0


@pytest.mark.integration
def test_two_ingest_workers_each_measured_for_latency_after_a_warmup(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    result = _compare_head_twice(
        "latency", ["--rate", "200", "--seconds", "3", "--warmup-s", "1"],
        kafka_bootstrap, database_url, tmp_path,
    )  # fmt: skip

    assert [s["label"] for s in result["sides"]] == ["HEAD", "HEAD#2"]
    # Each run on its own topic and database: exactly its own messages, split at the
    # warm-up's end.
    assert [(r["side"], r["rows"], r["warmup_rows"]) for r in result["runs"]] == [
        ("HEAD", 600, 200),
        ("HEAD#2", 600, 200),
    ]
    for label in ("HEAD", "HEAD#2"):
        figures = result["medians"][label]
        assert set(LATENCY_FIGURES) <= figures.keys()
        assert 0 < figures["latency_worker_p50_ms"] <= figures["latency_worker_p99_ms"]
        assert figures["latency_kafka_p99_ms"] < figures["latency_p99_ms"] + 1
    assert result["latency_ratio_to_first"]["HEAD"] == 1.0


def _compare_head_twice(
    kind: str, args: list[str], kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> dict[str, Any]:
    """``bench.compare KIND`` of HEAD against itself, one round: its JSON."""
    results = tmp_path / f"compare-{kind}.json"
    # The session's broker and server: the command makes its own topics and databases.
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "-m", "bench.compare", kind, "--ref", "HEAD", "--ref", "HEAD", *args,
         "--rounds", "1", "--results", str(results)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(results.read_text())
    return result
