"""What a soak run samples: produced messages, ingested rows, lag, memory, log errors.

See the definitions in :mod:`bench.soak`.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

from bench._kafka import Kafka
from bench._soak_plan import Layout
from bench._soak_supervisor import Supervisor
from infra._procs import descendants, process_table
from infra.settings import Settings

ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|FATAL)\b")
KNOWN_ERROR = re.compile(r"ERROR CodeGenerator: Failed to compile the generated Java code")
"""Spark 4.1.1 logs this and falls back to interpreted execution (docs/BENCHMARKS.md);
counted apart, as ``known_error_lines``."""
ROWS_METRIC = re.compile(r'^cryptoviz_ingest_rows_total\{topic="([^"]+)"\} (\S+)$', re.M)


_FRONTIER = (
    "SELECT min(worker_frontier) FROM fronts WHERE ex_num = (SELECT max(ex_num) FROM fronts)"
)
_SNAPS = """
    SELECT state_key, ser_change FROM snaps s
    WHERE step_id LIKE '%.kafka_input'
      AND snap_epoch = (SELECT max(snap_epoch) FROM snaps t
                        WHERE t.step_id = s.step_id AND t.state_key = s.state_key
                          AND t.snap_epoch < ?)
"""


def committed_offsets(recovery: Path) -> dict[int, int]:
    """Kafka offset per partition that a restart would resume from, from the recovery store.

    Bytewax resumes from the snapshots taken before the oldest epoch a worker is still
    working on (its frontier): those epochs' rows are written. The Kafka input's state
    is the next offset to read, pickled, keyed ``<partition>-<topic>``.
    """
    offsets: dict[int, int] = {}
    for part in sorted(recovery.glob("part-*.sqlite3")):
        with contextlib.closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=2)) as db:
            row = db.execute(_FRONTIER).fetchone()
            if row is None or row[0] is None:
                continue
            snaps = db.execute(_SNAPS, (row[0],)).fetchall()
        for key, blob in snaps:
            value = pickle.loads(blob) if blob is not None else None  # our own worker's state
            if isinstance(value, int):
                offsets[int(str(key).split("-", 1)[0])] = value
    return offsets


def rows_committed(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError):
        return {}
    return {topic: float(value) for topic, value in ROWS_METRIC.findall(text)}


def _kb(path: str, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def tree_mb(pid: int, table: dict[int, tuple[int, str]], *, pss: bool = False) -> float:
    """Memory of ``pid`` and all its descendants, in MB (RSS, or PSS)."""
    total = 0
    for current in [pid, *descendants(pid, table)]:
        if pss:
            total += _kb(f"/proc/{current}/smaps_rollup", "Pss:")
        else:
            total += _kb(f"/proc/{current}/status", "VmRSS:")
    return round(total / 1024, 1)


def _pid_file(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(path.read_text().split()[0])
    return None


class Probe:
    """One sample: produced, ingested, lag of each Kafka-reading worker, memory of each process."""

    def __init__(self, settings: Settings, layout: Layout, sup: Supervisor) -> None:
        assert settings.kafka.bootstrap_servers is not None
        topics = settings.kafka.topics
        self.market = [topics.rawticker, topics.rawtrade]
        self.dlq = topics.deadletter
        self.layout, self.sup = layout, sup
        self.kafka = Kafka(
            settings.kafka.bootstrap_servers,
            sorted({*self.market, self.dlq, *(w.kafka_topic for w in layout.ingest)}),
        )
        state = settings.state_dir
        # Only servers this run started are ours to measure (pid files of the embedded ones).
        self.servers = {
            "kafka": (state / "kafka" / "broker.pid", False),
            "postgres": (state / "postgres" / "pgdata" / "postmaster.pid", True),
        }
        self.base = self.kafka.high()

    def produced(self, high: dict[str, dict[int, int]]) -> dict[str, int]:
        return {
            t: sum(high[t].values()) - sum(self.base[t].values()) for t in (*self.market, self.dlq)
        }

    def lag(self, high: dict[str, dict[int, int]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, topic, recovery in self.layout.consumers:
            try:
                done = committed_offsets(recovery)
            except (sqlite3.Error, pickle.UnpicklingError):
                continue  # a store being written; the next sample reads it
            out[name] = sum(
                max(h - max(done.get(p, -1), self.base[topic][p]), 0)
                for p, h in high[topic].items()
            )
        return out

    def memory(self) -> dict[str, float]:
        kids = process_table()
        out: dict[str, float] = {}
        for name, info in self.sup.info().items():
            if info["pid"]:
                out[name] = tree_mb(int(info["pid"]), kids)
        for name, (pid_file, pss) in self.servers.items():
            pid = _pid_file(pid_file)
            if pid is not None and Path(f"/proc/{pid}").exists():
                out[name] = tree_mb(pid, kids, pss=pss)
        return out

    def sample(self, t: float, phase: str, *, memory: bool = True) -> dict[str, Any]:
        started = time.perf_counter()
        high = self.kafka.high()
        rows: dict[str, float] = {}
        for w in self.layout.ingest:
            rows.update(rows_committed(w.metrics_port))
        return {
            "t": round(t, 2),
            "phase": phase,
            "produced": self.produced(high),
            "rows": {topic: int(n) for topic, n in rows.items()},
            "lag": self.lag(high),
            **({"memory_mb": self.memory()} if memory else {}),
            "sample_ms": round((time.perf_counter() - started) * 1000),
        }


def count_rows(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in ("ticker_data", "trade_data")
        }


def log_errors(logs: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        path = logs / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        flagged = [line for line in lines if ERROR_LINE.search(line)]
        known = [line for line in flagged if KNOWN_ERROR.search(line)]
        errors = [line for line in flagged if not KNOWN_ERROR.search(line)]
        tracebacks = sum(line.startswith("Traceback (most recent call last)") for line in lines)
        out[name] = {
            "error_lines": len(errors),
            "tracebacks": tracebacks,
            "examples": list(dict.fromkeys(line[:240] for line in errors))[:3],
            "known_error_lines": len(known),
        }
    return out
