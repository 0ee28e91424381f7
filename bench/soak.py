"""Load/soak harness (issue 6 §3): a synthetic market at 10x a busy real rate, for minutes.

    .venv/bin/python -m bench.soak [--rate 20000] [--minutes 10] [--api-rate 100] [--no-write]

1. Starts its own stack in a fresh temporary state dir (embedded Kafka and PostgreSQL,
   or the servers named by ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``), then the
   whole pipeline under supervisord as ``make up`` does: the four ingestion workers,
   ``producer-alerts``, the Spark analytics job (``--no-spark`` leaves it out) and the
   API, each worker on a free metrics port.
2. Load: ``--producers`` ``producer-synthetic`` processes (one tops out near 14.6k
   msgs/s alone), each at ``rate / producers`` on its own slice of the pairs
   (``CRYPTOVIZ_SYNTHETIC_PAIR_OFFSET``): ticker_data keys rows by (pair, time), so two
   producers on one pair could merge rows. After ``--minutes`` they are stopped and the
   harness waits for ingestion to catch up.
3. From a second process (``--api-client``), open-loop HTTP load on the API at
   ``--api-rate`` req/s (latest price, ticker and trade history, candles of the tracked
   pairs) from the end of warm-up to the end of the load.
4. Every ``--sample-s`` (every second while catching up) it samples what was produced,
   ingested, the lag of each ingestion worker and the memory of every process.

Definitions:

* produced: messages in the ticker + trade topics (Kafka high watermarks, minus what
  was there before);
* ingested: rows committed by the ingestion workers (``cryptoviz_ingest_rows_total``),
  checked at the end against ``count(*)`` of ticker_data and trade_data;
* lag of an ingestion worker: high watermarks minus the offsets in its Bytewax
  recovery store, i.e. what a restarted worker would resume from. Bytewax keeps no
  Kafka consumer group (it assigns partitions and commits offsets in its recovery
  store, once per epoch: every 5 s), so this is the committed position, and it moves
  in 5 s steps;
* catch-up: from stopping the producers to the first sample where every ingestion
  worker's lag is 0;
* memory: RSS of each worker's process tree (Spark's JVM included) and of the Kafka
  broker; PSS for PostgreSQL, whose backends map the same shared buffers (their RSS
  would count them once per backend). Start = first sample after ``--warmup-s``;
  flat = grew by less than ``max(5 %, 16 MB)`` from the middle to the end of the load
  (start -> middle includes caches filling up, a leak keeps growing after it);
* errors: ERROR/CRITICAL/FATAL lines (Spark's known code-generation fallback counted
  apart) and tracebacks in each worker's log, supervisor restarts (spawns after the
  first), dead letters, API non-2xx answers, connection errors and timeouts.

The API runs with its per-client rate limit off (one client sends all the load).
Results: printed (samples only in the file) and written to ``bench/results/soak.json``
(``--results``). Ctrl-C or a failure stops everything started; the state dir (worker
logs) is then kept and its path printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import io
import json
import math
import os
import pickle
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import xmlrpc.client
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, cast

import msgspec
import psycopg
from confluent_kafka import Consumer, TopicPartition

from bench._results import provenance, report
from bench.api import Connection, _request
from flows.registry import INGEST_WORKERS
from infra._console import StackError, step
from infra._procs import die_with_parent, free_port
from infra.settings import Settings, SettingsError, load_settings
from infra.stack import Stack, supervisor_config

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "soak.json"
PER_PRODUCER_RATE = 7000.0
"""Default share of one producer process: half its solo ceiling, the cores are shared."""
API_PATHS = (
    "/api/v1/prix/BTC/temps_reel/",
    "/api/v1/ticker/ETH/USD/historique/?periode=5m",
    "/api/v1/trade/SOL/USD/historique/?periode=5m",
    "/api/v1/candles/BTC/USD/?interval=1m&periode=1h",
)
"""Pairs of producer 0 (the tracked pairs come first): latest price, both histories, candles."""
UNSAVED_OPTIONS = ("write", "results", "keep_state")
FLAT_SHARE, FLAT_MB = 0.05, 16.0
KEEP_UP_SHARE = 0.05
"""Ingestion keeps up while the lag grows by less than this share of the rate (per s)."""
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|FATAL)\b")
KNOWN_ERROR = re.compile(r"ERROR CodeGenerator: Failed to compile the generated Java code")
"""Spark 4.1.1 logs this and falls back to interpreted execution (docs/BENCHMARKS.md);
counted apart, as ``known_error_lines``."""
ROWS_METRIC = re.compile(r'^cryptoviz_ingest_rows_total\{topic="([^"]+)"\} (\S+)$', re.M)


@dataclass(frozen=True)
class Options:
    rate: float = 20_000.0
    minutes: float = 10.0
    api_rate: float = 100.0
    producers: int = 3
    pairs: int = 12
    """Per producer."""
    sample_s: float = 10.0
    warmup_s: float = 60.0
    catchup_timeout_s: float = 600.0
    spark: bool = True
    write: bool = True
    results: Path = RESULTS
    keep_state: bool = False

    @property
    def load_s(self) -> float:
        return self.minutes * 60.0


@dataclass(frozen=True)
class IngestWorker:
    name: str
    kafka_topic: str
    recovery: Path
    metrics_port: int


@dataclass
class Layout:
    """What runs under supervisord, and where to look at it."""

    programs: dict[str, list[str]] = field(default_factory=dict)
    producers: list[str] = field(default_factory=list)
    ingest: list[IngestWorker] = field(default_factory=list)
    api_port: int = 0
    env: dict[str, str] = field(default_factory=dict)


def renamed_topics(settings: Settings) -> Settings:
    """Settings whose topics carry a unique suffix, so a shared broker's other users don't
    count in our watermarks (the Spark job and the API's live relay read the default names)."""
    suffix = f"-soak{uuid.uuid4().hex[:6]}"
    k = settings.kafka
    kafka = msgspec.structs.replace(
        k,
        raw_topics=tuple(t + suffix for t in k.raw_topics),
        dead_letter_topic=k.dead_letter_topic + suffix,
        sentiment_topic=k.sentiment_topic + suffix,
        prediction_topic=k.prediction_topic + suffix,
    )
    return msgspec.structs.replace(settings, kafka=kafka)


def _flow(worker: str, recovery: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "flows.run", worker, "--recovery-dir", str(recovery), *args]


def plan(settings: Settings, opts: Options) -> Layout:
    state, k = settings.state_dir, settings.kafka
    raws = ("rawticker", "rawtrade", "rawarticle", "rawalert")
    topic = dict(zip(raws, k.raw_topics, strict=True))
    layout = Layout(api_port=free_port())
    layout.env = {
        **{f"CRYPTOVIZ_TOPIC_{raw.upper()}": real for raw, real in topic.items()},
        "CRYPTOVIZ_DEAD_LETTER_TOPIC": k.dead_letter_topic,
        "CRYPTOVIZ_SENTIMENT_TOPIC": k.sentiment_topic,
        "CRYPTOVIZ_PREDICTION_TOPIC": k.prediction_topic,
        "CRYPTOVIZ_API_PORT": str(layout.api_port),
        # A per-client limit (1200/minute by default) would answer the load with 429s.
        "CRYPTOVIZ_RATE_LIMIT": "off",
        "CRYPTOVIZ_SYNTHETIC_PAIRS": str(opts.pairs),
    }
    for name in INGEST_WORKERS:
        raw = name.removeprefix("ingest-")
        w = IngestWorker(name, topic[raw], state / "recovery" / name, free_port())
        layout.ingest.append(w)
        layout.programs[name] = _flow(
            name, w.recovery, "--topic", w.kafka_topic, "--metrics-port", str(w.metrics_port)
        )
    alerts = "producer-alerts"
    layout.programs[alerts] = _flow(
        alerts, state / "recovery" / alerts, "--topic", topic["rawticker"]
    )
    env_cmd = shutil.which("env") or "/usr/bin/env"
    for index in range(opts.producers):
        name = f"producer-synthetic-{index + 1}"
        layout.producers.append(name)
        # Per-process settings: supervisord gives all its programs the same environment.
        layout.programs[name] = [
            env_cmd,
            f"CRYPTOVIZ_SYNTHETIC_RATE={opts.rate / opts.producers:g}",
            f"CRYPTOVIZ_SYNTHETIC_PAIR_OFFSET={index * opts.pairs}",
            *_flow("producer-synthetic", state / "recovery" / name),
        ]
    if opts.spark:
        spark = ["-m", "spark_batch.run", "--metrics-port", str(free_port())]
        layout.programs["spark-analytics"] = [sys.executable, *spark]
    layout.programs["api"] = [sys.executable, "-m", "api"]
    return layout


def write_config(settings: Settings, env: dict[str, str], layout: Layout) -> Path:
    """supervisord's config as ``make up`` writes it; producers wait for :meth:`start`."""
    conf = supervisor_config(settings, env, layout.programs)
    text = conf.read_text()
    for name in layout.producers:
        text = text.replace(f"[program:{name}]\n", f"[program:{name}]\nautostart=false\n")
    conf.write_text(text)
    return conf


class Supervisor:
    """supervisord running ``conf``, driven over its XML-RPC socket (no supervisorctl forks)."""

    def __init__(self, conf: Path, state: Path, env: dict[str, str]) -> None:
        from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

        self.log = state / "logs" / "supervisord.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            env=env,
            stdout=subprocess.DEVNULL,  # it logs to supervisord.log as well
            start_new_session=True,  # Ctrl-C reaches the harness only; it stops supervisord
            preexec_fn=die_with_parent,  # noqa: PLW1509 (only a prctl call, libc loaded already)
        )
        self._transport = partial(
            SupervisorTransport, None, None, f"unix://{state}/supervisor.sock"
        )

    def _rpc(self) -> Any:
        # A fresh transport per call: one whose request failed (socket not there yet)
        # refuses every later request.
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=self._transport()).supervisor

    def info(self) -> dict[str, dict[str, Any]]:
        rows = cast(list[dict[str, Any]], self._rpc().getAllProcessInfo())
        return {row["name"]: row for row in rows}

    def wait_running(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise StackError(f"supervisord exited ({self.proc.returncode}); see {self.log}")
            with contextlib.suppress(OSError, xmlrpc.client.Fault, http.client.HTTPException):
                states = {n: i["statename"] for n, i in self.info().items() if n in names}
                if all(states.get(n) == "RUNNING" for n in names):
                    return
            if time.monotonic() > deadline:
                raise StackError(f"workers not running after {timeout:.0f} s; see {self.log}")
            time.sleep(0.5)

    def start(self, names: list[str]) -> None:
        for name in names:
            self._rpc().startProcess(name, False)

    def stop(self, names: list[str], timeout: float = 30.0) -> None:
        for name in names:
            self._rpc().stopProcess(name, False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.info()
            if all(states[n]["statename"] in ("STOPPED", "EXITED", "FATAL") for n in names):
                return
            time.sleep(0.2)

    def spawns(self) -> Counter[str]:
        """Times each program was started (supervisord logs ``spawned: 'NAME' with pid N``)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return Counter(re.findall(r"spawned: '([^']+)' with pid", text))

    def shutdown(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- probes ---------------------------------------------------------------------------


class Kafka:
    """High watermarks of the topics, through one idle consumer (no group, no commits)."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "soak-probe"})
        meta = self._consumer.list_topics(timeout=10)
        self.partitions = {t: sorted(meta.topics[t].partitions) for t in topics}

    def high(self) -> dict[str, dict[int, int]]:
        return {
            topic: {
                p: int(self._consumer.get_watermark_offsets(TopicPartition(topic, p), 10, False)[1])
                for p in parts
            }
            for topic, parts in self.partitions.items()
        }

    def close(self) -> None:
        self._consumer.close()


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


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                kids[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry.name))
    return kids


def _kb(path: str, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def tree_mb(pid: int, kids: dict[int, list[int]], *, pss: bool = False) -> float:
    """Memory of ``pid`` and all its descendants, in MB (RSS, or PSS)."""
    todo, total = [pid], 0
    while todo:
        current = todo.pop()
        todo += kids.get(current, [])
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
    """One sample: produced, ingested, lag of each ingestion worker, memory of each process."""

    def __init__(self, settings: Settings, layout: Layout, sup: Supervisor) -> None:
        assert settings.kafka.bootstrap_servers is not None
        k = settings.kafka
        self.market = [k.raw_topics[0], k.raw_topics[1]]
        self.dlq = k.dead_letter_topic
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
        for w in self.layout.ingest:
            try:
                done = committed_offsets(w.recovery)
            except (sqlite3.Error, pickle.UnpicklingError):
                continue  # a store being written; the next sample reads it
            out[w.name] = sum(
                max(h - max(done.get(p, -1), self.base[w.kafka_topic][p]), 0)
                for p, h in high[w.kafka_topic].items()
            )
        return out

    def memory(self) -> dict[str, float]:
        kids = _children()
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


# -- the API client (second process) ----------------------------------------------------


async def api_load(port: int, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: request i is due at start + i/rate (its latency counts from then), paths
    in turn, over up to 64 keep-alive connections; a broken one is reopened."""
    requests = [_request(path) for path in API_PATHS]
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


# -- summary ----------------------------------------------------------------------------


def _at(samples: list[dict[str, Any]], t: float) -> dict[str, Any]:
    return min(samples, key=lambda s: abs(s["t"] - t))


def _slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else None


def summarize(
    opts: Options,
    samples: list[dict[str, Any]],
    stopped_at: float,
    caught_up_at: float | None,
    final: dict[str, Any],
) -> dict[str, Any]:
    load = [s for s in samples if s["phase"] == "load"]
    warm = [s for s in load if s["t"] >= opts.warmup_s] or load[-1:]
    first, middle, end = warm[0], _at(warm, (warm[0]["t"] + load[-1]["t"]) / 2), load[-1]
    market = final["market_topics"]

    def produced(s: dict[str, Any]) -> int:
        return int(sum(s["produced"][t] for t in market))

    def ingested(s: dict[str, Any]) -> int:
        return int(s["rows"].get("rawticker", 0) + s["rows"].get("rawtrade", 0))

    span = max(end["t"] - first["t"], 1e-9)
    memory: dict[str, Any] = {}
    for name in end.get("memory_mb", {}):
        series = [s["memory_mb"][name] for s in load if name in s.get("memory_mb", {})]
        start_mb = first["memory_mb"].get(name)
        mid_mb, end_mb = middle["memory_mb"].get(name), end["memory_mb"][name]
        flat = None if mid_mb is None else end_mb - mid_mb <= max(FLAT_SHARE * mid_mb, FLAT_MB)
        memory[name] = {
            "start": start_mb,
            "middle": mid_mb,
            "end": end_mb,
            "peak": max(series),
            "flat": flat,
        }
    workers = list(end["lag"])
    lag = {
        name: {
            "max": max(s["lag"].get(name, 0) for s in samples),
            "final": samples[-1]["lag"].get(name),
        }
        for name in workers
    }
    half = [s for s in load if s["t"] >= opts.load_s / 2]
    growth = _slope([(s["t"], sum(s["lag"].values())) for s in half])
    errors = (
        sum(v["error_lines"] + v["tracebacks"] for v in final["logs"].values())
        + sum(final["restarts"].values())
        + final["dead_letters"]
        + final["api"].get("errors", 0)
    )
    return {
        "rates": {
            "target_msgs_per_s": opts.rate,
            "produced_msgs_per_s": round((produced(end) - produced(first)) / span),
            "ingested_rows_per_s": round((ingested(end) - ingested(first)) / span),
            "window_s": [first["t"], end["t"]],
        },
        "keeps_up": growth is not None and growth < KEEP_UP_SHARE * opts.rate,
        "lag_growth_msgs_per_s_second_half": None if growth is None else round(growth, 1),
        "lag": lag,
        "catch_up_s": None if caught_up_at is None else round(caught_up_at - stopped_at, 1),
        "memory_mb": memory,
        "memory_flat": all(m["flat"] is not False for m in memory.values()),
        "errors_total": errors,
    }


def print_summary(result: dict[str, Any]) -> None:
    s, f = result["summary"], result["final"]
    r = s["rates"]
    print("\n== soak summary ==")
    print(
        f"load {result['options']['minutes']} min at {r['target_msgs_per_s']:,.0f} msgs/s "
        f"target: produced {r['produced_msgs_per_s']:,}/s, ingested {r['ingested_rows_per_s']:,}"
        f" rows/s (t={r['window_s'][0]:.0f}-{r['window_s'][1]:.0f} s)"
    )
    for table, n in f["rows"].items():
        print(f"  {table}: {n:,} rows for {f['produced'][table]:,} messages produced")
    print(
        f"keeps up: {s['keeps_up']} (lag growth {s['lag_growth_msgs_per_s_second_half']}/s); "
        f"catch-up after stop: {s['catch_up_s']} s"
    )
    for name, lag in s["lag"].items():
        print(f"  lag {name}: max {lag['max']:,}, final {lag['final']}")
    print("memory MB (start / middle / end / peak, flat):")
    for name, m in s["memory_mb"].items():
        print(f"  {name:24} {m['start']} / {m['middle']} / {m['end']} / {m['peak']}  {m['flat']}")
    api = f["api"]
    print(
        f"API {api.get('rps')} req/s of {api.get('target_rps')}: p50 {api.get('p50_ms')} ms, "
        f"p95 {api.get('p95_ms')} ms, p99 {api.get('p99_ms')} ms, errors {api.get('errors')}"
    )
    logs = {n: v["error_lines"] + v["tracebacks"] for n, v in f["logs"].items()}
    print(
        f"errors: total {s['errors_total']}; dead letters {f['dead_letters']}; restarts "
        f"{dict(f['restarts'])}; log errors {logs}"
    )


# -- the run ------------------------------------------------------------------------------


class Soak:
    """One run: its stack and workers (:meth:`start`), the load, the catch-up, the figures.

    :meth:`close` stops everything started, whatever happened before.
    """

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.state = Path(tempfile.mkdtemp(prefix="cryptoviz-soak-"))
        settings = load_settings({**os.environ, "CRYPTOVIZ_STATE_DIR": str(self.state)})
        self.servers = {
            "kafka": "external" if settings.kafka.bootstrap_servers else "embedded",
            "postgres": "external" if settings.database.url else "embedded",
        }
        if settings.kafka.bootstrap_servers is not None:
            settings = renamed_topics(settings)
            if opts.spark:
                step("note: on a shared broker the Spark job reads the default topic names")
        self.stack = Stack(settings)
        self.sup: Supervisor | None = None
        self.client: subprocess.Popen[bytes] | None = None
        self.probe: Probe | None = None
        self.samples: list[dict[str, Any]] = []
        self.t0 = self.stopped_at = 0.0
        self.caught_up_at: float | None = None
        self.states_at_end: dict[str, str] = {}

    @property
    def url(self) -> str:
        assert self.stack.settings.database.url is not None
        return self.stack.settings.database.url

    def start(self) -> None:
        """Servers, migrations, topics; then every worker but the producers, until ready."""
        settings = self.stack.start()
        self.stack.prepare()
        if self.opts.spark:
            from infra.jars import ensure_jars

            ensure_jars("spark", settings.cache_dir)
        self.layout = plan(settings, self.opts)
        self.baseline_rows = count_rows(self.url)
        env = {**self.stack.env(), **self.layout.env}
        self.sup = Supervisor(write_config(settings, env, self.layout), self.state, env)
        others = [n for n in self.layout.programs if n not in self.layout.producers]
        step(f"starting under supervisord: {', '.join(others)}")
        self.sup.wait_running(others, timeout=180)
        wait_api(self.layout.api_port, timeout=120)
        self.probe = Probe(settings, self.layout, self.sup)

    def load(self) -> None:
        """Producers for ``--minutes``; the API client from the end of warm-up."""
        assert self.sup is not None
        assert self.probe is not None
        opts, layout = self.opts, self.layout
        each = opts.rate / opts.producers
        step(f"load: {opts.producers} producers x {each:,.0f} msgs/s for {opts.minutes:g} min")
        self.t0 = time.monotonic()
        self.sup.start(layout.producers)
        next_at = opts.sample_s
        while (now := time.monotonic() - self.t0) < opts.load_s:
            if self.client is None and now >= opts.warmup_s:
                self.client = start_api_client(layout.api_port, opts.api_rate, opts.load_s - now)
            if now >= next_at:
                last = self.probe.sample(now, "load")
                self.samples.append(last)
                made = sum(last["produced"][t] for t in self.probe.market)
                rows, lag = sum(last["rows"].values()), sum(last["lag"].values())
                step(f"t={now:5.0f} s produced {made:,} rows {rows:,} lag {lag:,}")
                next_at += opts.sample_s
            time.sleep(min(0.2, max(0.0, next_at - now)))
        self.samples.append(self.probe.sample(time.monotonic() - self.t0, "load"))
        self.states_at_end = {n: i["statename"] for n, i in self.sup.info().items()}
        self.stopped_at = time.monotonic() - self.t0
        self.sup.stop(layout.producers)

    def catch_up(self) -> None:
        """Sample every second until every ingestion worker's lag is 0 (or the timeout)."""
        assert self.probe is not None
        step("producers stopped; waiting for ingestion to catch up")
        deadline = self.t0 + self.stopped_at + self.opts.catchup_timeout_s
        while self.caught_up_at is None and time.monotonic() < deadline:
            time.sleep(1.0)
            every_10th = len(self.samples) % 10 == 0
            s = self.probe.sample(time.monotonic() - self.t0, "catch-up", memory=every_10th)
            self.samples.append(s)
            if len(s["lag"]) == len(self.layout.ingest) and not any(s["lag"].values()):
                self.caught_up_at = s["t"]

    def result(self) -> dict[str, Any]:
        assert self.sup is not None
        assert self.probe is not None
        api: dict[str, Any] = {"errors": 1, "failed": "the API client did not run"}
        if self.client is not None:
            out, _ = self.client.communicate(timeout=120)
            if self.client.returncode == 0:
                api = json.loads(out)
        produced = self.probe.produced(self.probe.kafka.high())
        rows = count_rows(self.url)
        market = self.probe.market
        final = {
            "market_topics": market,
            "produced": {"ticker_data": produced[market[0]], "trade_data": produced[market[1]]},
            "rows": {t: n - self.baseline_rows[t] for t, n in rows.items()},
            "dead_letters": produced[self.probe.dlq],
            "states_at_end_of_load": self.states_at_end,
            "restarts": {n: max(c - 1, 0) for n, c in self.sup.spawns().items()},
            "logs": log_errors(self.state / "logs", list(self.layout.programs)),
            "api": api,
        }
        o = self.opts
        summary = summarize(o, self.samples, self.stopped_at, self.caught_up_at, final)
        summary["rows_equal_produced"] = final["rows"] == final["produced"]
        return {
            **provenance(),
            "options": {k: v for k, v in asdict(o).items() if k not in UNSAVED_OPTIONS},
            "servers": self.servers,
            "final": final,
            "summary": summary,
            "samples": self.samples,
        }

    def close(self, *, keep_state: bool) -> None:
        if self.client is not None and self.client.poll() is None:
            self.client.kill()
            self.client.wait()
        if self.probe is not None:
            self.probe.kafka.close()
        if self.sup is not None:
            step("stopping the workers")
            self.sup.shutdown()
        self.stack.stop()
        if keep_state:
            step(f"state and worker logs kept in {self.state}")
        else:
            shutil.rmtree(self.state, ignore_errors=True)


def run(opts: Options) -> dict[str, Any]:
    soak = Soak(opts)
    ok = False
    try:
        soak.start()
        soak.load()
        soak.catch_up()
        result = soak.result()
        ok = True
        return result
    finally:
        soak.close(keep_state=opts.keep_state or not ok)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rate", type=float, default=20_000.0, help="ticks + trades per second")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--api-rate", type=float, default=100.0, help="API requests per second")
    parser.add_argument(
        "--producers",
        type=int,
        default=None,
        help=f"synthetic producer processes (default: rate / {PER_PRODUCER_RATE:g})",
    )
    parser.add_argument("--pairs", type=int, default=12, help="pairs per producer")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=None,
        help="start figures after this (default: 10 %% of the load, <= 60 s)",
    )
    parser.add_argument("--catchup-timeout-s", type=float, default=600.0)
    parser.add_argument("--no-spark", action="store_true", help="leave the Spark job out")
    parser.add_argument("--no-write", action="store_true", help=f"don't write {RESULTS.name}")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--keep-state", action="store_true", help="keep the temp state dir")
    parser.add_argument("--api-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--api-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--api-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.api_client:
        print(json.dumps(asyncio.run(api_load(args.api_port, args.api_rate, args.api_seconds))))
        return 0
    opts = Options(
        rate=args.rate,
        minutes=args.minutes,
        api_rate=args.api_rate,
        producers=args.producers or max(1, math.ceil(args.rate / PER_PRODUCER_RATE)),
        pairs=args.pairs,
        sample_s=args.sample_s,
        warmup_s=args.warmup_s if args.warmup_s is not None else min(60.0, args.minutes * 6),
        catchup_timeout_s=args.catchup_timeout_s,
        spark=not args.no_spark,
        write=not args.no_write,
        results=args.results,
        keep_state=args.keep_state,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run(opts)
    except KeyboardInterrupt:
        step("interrupted")
        return 130
    except (StackError, SettingsError) as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    with contextlib.redirect_stdout(io.StringIO()):  # the samples are for the file only
        report(result, opts.results, write=opts.write)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
