"""Analytics benchmark: the Spark ``predictions`` query on the embedded stack.

    .venv/bin/python -m bench.analytics [--rate 2000] [--seconds 60]
        [--steps 5000,10000,20000,30000,40000] [--step-seconds 40] [--refine] [--pairs 12]
        [--no-write] [--keep-state]

One run, one fresh embedded stack (Kafka + PostgreSQL started here; the job reads
the fixed topic ``rawticker``, so external servers are not used):

1. **The job**: ``python -m spark_batch.run --query predictions`` in a subprocess,
   with its default settings (``local[*]``, 2 s trigger, 1-minute bars closed by a
   10 s watermark, 1g driver memory; ``CRYPTOVIZ_SPARK_*`` in the environment apply). This process
   produces ticker JSON in the wire shape of ``handlers/_wire.py`` for ``--pairs``
   USD pairs, each message's ``timestamp`` (its event time) being the wall clock
   when it is produced.
2. **Latency** at ``--rate`` ticks/s for ``--seconds`` (after a warm-up): for every
   tick, the time from its production to the commit of the first micro-batch that
   included it. Which batch includes a tick comes from Spark's checkpoint: batch N's
   planned end offsets (``offsets/N``) against the tick's partition and offset (from
   its delivery report); the commit time is the mtime of ``commits/N``, which Spark
   writes after ``foreachBatch`` returned, i.e. after the batch's upsert into
   ``prediction_data`` committed and its rows were published to Kafka. So it is an
   upper bound of "tick produced -> the micro-batch that took it in committed", by the
   few ms of the Kafka publish and the commit-log write. A tick moves its minute's bar;
   the forecasts come when the minute closes, hence:
   **Forecast delay**: for the forecasts issued during the latency phase, the time
   from their issue time (the end of their minute, on the producer's clock) to their
   insertion into ``prediction_data`` (``updated_at``, the writing transaction's start
   on the database's clock; same machine): watermark + wait for the next trigger +
   batch time.
3. **Sustained rate**: the rate steps up (``--steps``, ``--step-seconds`` each, the
   latency phase counting as the first step). Lag = Kafka end offsets (acknowledged
   by the broker) minus the end offsets of the last committed batch, taken right after
   each commit; a step is kept up when that lag does not grow (least-squares slope
   over the last 60 % of the step below 5 % of the rate; a step more than 20 s of data
   behind is ended early and fails). The ladder stops at the first failing step; the
   backlog is then drained (its rate is the catch-up throughput). ``--refine`` tries
   the midpoint once more, but after an overload the JVM heap is still full of state
   and that step is pessimistic. The job's JVM logs its collections
   (``-Xlog:gc`` added through ``JAVA_TOOL_OPTIONS``, observation only) so every step
   reports the heap left after GC and its full GCs: the heap is the ceiling.
4. **Memory**: RSS from ``/proc`` of the job's Python driver and of its JVM (in local
   mode ONE JVM holds the Spark driver and the executor), sampled every second; peak
   (``VmHWM``) and at the end of the latency phase.
Forecast quality is measured on real prices by ``bench/backtest.py`` (docs/ANALYTICS.md).

Results: printed, and written to bench/results/analytics.json.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Message, Producer

from bench._results import git_commit, machine, report
from bench.ingest import new_database
from flows.producers.synthetic import synthetic_pairs
from infra._procs import descendants, process_table
from infra.cli import run_program
from infra.settings import Topics, load_settings
from infra.stack import temporary_stack
from spark_batch.settings import SparkSettings, load_spark_settings

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "analytics.json"
TOPIC = Topics().rawticker
"""The job under test reads the default topic map, on a broker of its own."""
QUERY = "predictions"
SLOPE_LIMIT = 0.05
"""A step is kept up while the lag grows by less than this share of the rate."""
MAX_LAG_S = 20
"""A step is ended early once the job is this many seconds of data behind."""
CATCH_UP_MIN_BACKLOG = 20_000
"""A drain measures a catch-up rate only from a backlog this large (else one batch)."""
CODEGEN_FAILURE = "Failed to compile the generated Java code"
_GC_LINE = re.compile(
    r"^\[(?P<at>[^\]]+)\].*GC\(\d+\) Pause (?P<kind>\w+).*?"
    r"(?P<before>\d+)M->(?P<after>\d+)M\((?P<heap>\d+)M\) (?P<ms>[\d.]+)ms$"
)


@dataclass(frozen=True)
class GcPause:
    at: float
    full: bool
    after_mb: int
    heap_mb: int
    ms: float


def gc_pauses(path: Path) -> list[GcPause]:
    """Pauses from a JVM log written with ``-Xlog:gc:file=...:utctime``."""
    out = []
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        m = _GC_LINE.match(line)
        if m is None or m["kind"] not in ("Young", "Full"):  # not Remark, Cleanup
            continue
        at = datetime.strptime(m["at"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        full = m["kind"] == "Full"
        out.append(GcPause(at, full, int(m["after"]), int(m["heap"]), float(m["ms"])))
    return out


def gc_summary(pauses: Sequence[GcPause], t0: float, t1: float) -> dict[str, Any]:
    """Heap left after collections and full-GC time in ``[t0, t1]``."""
    inside = [p for p in pauses if t0 <= p.at <= t1]
    if not inside:
        return {}
    full = [p for p in inside if p.full]
    return {
        "heap_after_gc_mb_max": max(p.after_mb for p in inside),
        "heap_after_gc_mb_median": round(statistics.median(p.after_mb for p in inside)),
        "heap_committed_mb_max": max(p.heap_mb for p in inside),
        "full_gcs": len(full),
        "gc_pause_s": round(math.fsum(p.ms for p in inside) / 1000, 2),
    }


# -- processes ------------------------------------------------------------------------


def _status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass
class Memory:
    """RSS of the job's Python driver, its JVM and any Python workers of the JVM."""

    driver_pid: int
    jvm_pid: int | None = None
    driver_peak_kb: int = 0
    jvm_peak_kb: int = 0
    workers_peak_kb: int = 0
    samples: int = 0

    def sample(self) -> None:
        table = process_table()
        if self.jvm_pid is None or _status_kb(self.jvm_pid, "VmRSS") is None:
            javas = [p for p in descendants(self.driver_pid, table) if table[p][1] == "java"]
            self.jvm_pid = max(javas, key=lambda p: _status_kb(p, "VmRSS") or 0, default=None)
        if self.jvm_pid is not None:
            workers = [
                p for p in descendants(self.jvm_pid, table) if table[p][1].startswith("python")
            ]
            total = sum(_status_kb(pid, "VmRSS") or 0 for pid in workers)
            self.workers_peak_kb = max(self.workers_peak_kb, total)
            self.jvm_peak_kb = max(self.jvm_peak_kb, _status_kb(self.jvm_pid, "VmHWM") or 0)
        self.driver_peak_kb = max(self.driver_peak_kb, _status_kb(self.driver_pid, "VmHWM") or 0)
        self.samples += 1

    def now_mb(self) -> dict[str, float | None]:
        return {
            "driver": _mb(_status_kb(self.driver_pid, "VmRSS")),
            "jvm": None if self.jvm_pid is None else _mb(_status_kb(self.jvm_pid, "VmRSS")),
        }

    def peak_mb(self) -> dict[str, float | None]:
        """Peak RSS (``VmHWM``) seen while sampling; Python workers: peak of their summed RSS."""
        return {
            "driver": _mb(self.driver_peak_kb or None),
            "jvm": _mb(self.jvm_peak_kb or None),
            "python_workers": round(self.workers_peak_kb / 1024, 1),
        }


def _mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


# -- Spark's checkpoint -----------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    id: int
    planned: float
    """mtime of ``offsets/N``: the batch's end offsets were fixed (batch start)."""
    committed: float
    """mtime of ``commits/N``: ``foreachBatch`` returned (rows committed and published)."""
    ends: dict[int, int]
    """Exclusive end offset per partition of the ticker topic."""

    @property
    def total(self) -> int:
        return sum(self.ends.values())


@dataclass
class Checkpoint:
    """Reads committed batches incrementally (Spark purges logs older than 100 batches)."""

    path: Path
    batches: dict[int, Batch] = field(default_factory=dict)

    def scan(self) -> None:
        commits = self.path / "commits"
        try:
            names = [n for n in os.listdir(commits) if n.isdigit()]
        except FileNotFoundError:
            return
        for name in names:
            bid = int(name)
            if bid in self.batches:
                continue
            try:
                committed = (commits / name).stat().st_mtime_ns / 1e9
                offsets = self.path / "offsets" / name
                planned = offsets.stat().st_mtime_ns / 1e9
                lines = offsets.read_text().splitlines()
            except FileNotFoundError:
                continue  # purged between listing and reading: long since recorded
            source = json.loads(lines[-1])
            ends = {int(p): int(o) for p, o in source.get(TOPIC, {}).items()}
            self.batches[bid] = Batch(bid, planned, committed, ends)

    def ordered(self) -> list[Batch]:
        return [self.batches[k] for k in sorted(self.batches)]

    def committed_total(self) -> int:
        return self.ordered()[-1].total if self.batches else 0


# -- the feed ---------------------------------------------------------------------------


@dataclass
class Feed:
    """Ticker JSON for ``pairs`` at a steady rate, with the broker's acknowledged offsets."""

    bootstrap: str
    pairs: list[str]
    tick: Callable[[], None]
    """Called every ~0.5 s while producing (checkpoint scan, memory sample)."""
    seed: int = 1
    high: dict[int, int] = field(default_factory=dict)
    samples_t: list[float] = field(default_factory=list)
    samples_acked: list[int] = field(default_factory=list)
    recorded: list[tuple[int, int, float]] = field(default_factory=list)
    """``(partition, offset, produce time)`` of the ticks produced with ``record``."""
    errors: int = 0

    def __post_init__(self) -> None:
        self.producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": 1,
                "queue.buffering.max.messages": 2_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
            }
        )
        rng = random.Random(self.seed)
        self._rng = rng
        self._price = [100.0 * 10 ** rng.uniform(-1, 3) for _ in self.pairs]
        self._keys = [p.encode() for p in self.pairs]
        self._i = 0

    @property
    def acked(self) -> int:
        return sum(self.high.values())

    def _ack(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors += 1
            return
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None
        assert offset is not None
        if offset >= self.high.get(partition, 0):
            self.high[partition] = offset + 1

    def _ack_recorded(self, produced: float, err: KafkaError | None, msg: Message) -> None:
        self._ack(err, msg)
        partition, offset = msg.partition(), msg.offset()
        if err is None and partition is not None and offset is not None:
            self.recorded.append((partition, offset, produced))

    def _payload(self, k: int, now: float) -> bytes:
        price = self._price[k] = self._price[k] * math.exp(self._rng.gauss(0.0, 2e-4))
        return (
            f'{{"pair":"{self.pairs[k]}","last":{price:.4f},"bid":{price * 0.9999:.4f},'
            f'"ask":{price * 1.0001:.4f},"volume_24h":1200.5,"timestamp":{now:.6f}}}'
        ).encode()

    def _sample(self) -> None:
        self.samples_t.append(time.time())
        self.samples_acked.append(self.acked)

    def run(
        self,
        rate: float,
        seconds: float,
        *,
        record: bool = False,
        stop: Callable[[], str | None] | None = None,
    ) -> str | None:
        """Produce at ``rate`` msgs/s for ``seconds`` (paced on the wall clock, no bursts).

        ``stop`` is asked every 0.5 s; a reason it returns ends the run early (and is returned).
        """
        started = time.perf_counter()
        total = int(rate * seconds)
        sent = 0
        next_sample = next_tick = 0.0
        n = len(self.pairs)
        while sent < total:
            now = time.perf_counter()
            due = min(total, int((now - started) * rate) + 1) - sent
            for _ in range(min(due, 2000)):
                k = self._i % n
                self._i += 1
                produced = time.time()
                callback = functools.partial(self._ack_recorded, produced) if record else self._ack
                try:
                    self.producer.produce(
                        TOPIC, self._payload(k, produced), key=self._keys[k], on_delivery=callback
                    )
                except BufferError:
                    self.producer.poll(0.01)
                    continue
                sent += 1
            self.producer.poll(0 if due > 0 else 0.001)
            if now >= next_sample:
                self._sample()
                next_sample = now + 0.1
            if now >= next_tick:
                self.tick()
                next_tick = now + 0.5
                reason = None if stop is None else stop()
                if reason is not None:
                    self._sample()
                    return reason
        self._sample()
        return None

    def idle(self, seconds: float) -> None:
        """Deliver what is queued, keep sampling, produce nothing."""
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.producer.poll(0.1)
            self._sample()
            self.tick()

    def acked_at(self, moment: float) -> float:
        """Acknowledged messages at ``moment`` (linear between samples)."""
        ts, values = self.samples_t, self.samples_acked
        i = bisect.bisect_right(ts, moment)
        if i == 0:
            return float(values[0]) if values else 0.0
        if i == len(ts):
            return float(values[-1])
        t0, t1, v0, v1 = ts[i - 1], ts[i], values[i - 1], values[i]
        return v0 + (v1 - v0) * (moment - t0) / (t1 - t0) if t1 > t0 else float(v1)


# -- analysis -----------------------------------------------------------------------------


def _slope(points: Sequence[tuple[float, float]]) -> float:
    xm = statistics.fmean(x for x, _ in points)
    ym = statistics.fmean(y for _, y in points)
    sxx = math.fsum((x - xm) ** 2 for x, _ in points)
    return math.fsum((x - xm) * (y - ym) for x, y in points) / sxx if sxx > 0 else 0.0


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latencies(recorded: Sequence[tuple[int, int, float]], batches: Sequence[Batch]) -> list[float]:
    """Seconds from each tick's production to the commit of the first batch holding it."""
    ends = {p: [b.ends.get(p, 0) for b in batches] for p in {p for p, _, _ in recorded}}
    out = []
    for partition, offset, produced in recorded:
        i = bisect.bisect_right(ends[partition], offset)
        if i < len(batches):
            out.append(batches[i].committed - produced)
    return out


def covers(batches: Sequence[Batch], recorded: Sequence[tuple[int, int, float]]) -> bool:
    """Whether the last committed batch holds every recorded tick."""
    if not batches:
        return False
    last: dict[int, int] = {}
    for partition, offset, _ in recorded:
        last[partition] = max(offset, last.get(partition, -1))
    return all(batches[-1].ends.get(p, 0) > o for p, o in last.items())


def step_report(
    target: int, t0: float, t1: float, feed: Feed, batches: Sequence[Batch]
) -> dict[str, Any]:
    """Did the job keep up with the rate produced in ``[t0, t1]``? (see the module docstring)."""
    achieved = (feed.acked_at(t1) - feed.acked_at(t0)) / (t1 - t0)
    in_step = [b for b in batches if t0 < b.committed <= t1]
    tail = [b for b in in_step if b.committed >= t0 + 0.4 * (t1 - t0)]
    if len(tail) < 3:
        tail = in_step[-3:]
    points = [(b.committed, feed.acked_at(b.committed) - b.total) for b in tail]
    kept_up = False
    slope = consumed = None
    if len(points) >= 3:  # fewer commits in a whole step: batches far longer than the trigger
        slope = _slope(points)
        kept_up = slope < SLOPE_LIMIT * achieved
    if len(tail) >= 2 and tail[-1].committed > tail[0].committed:
        consumed = (tail[-1].total - tail[0].total) / (tail[-1].committed - tail[0].committed)
    durations = [(b.committed - b.planned) * 1000 for b in in_step]
    lags = [lag for _, lag in points]
    return {
        "target_ticks_per_s": target,
        "achieved_ticks_per_s": round(achieved),
        "consumed_ticks_per_s": None if consumed is None else round(consumed),
        "lag_growth_ticks_per_s": None if slope is None else round(slope),
        "lag_after_commit_s_median": round(statistics.median(lags) / achieved, 2) if lags else None,
        "lag_after_commit_s_last": round(lags[-1] / achieved, 2) if lags else None,
        "batches": len(in_step),
        "batch_ms_median": round(statistics.median(durations)) if durations else None,
        "batch_ms_max": round(max(durations)) if durations else None,
        "kept_up": kept_up,
    }


# -- the live job ---------------------------------------------------------------------


def forecast_delay(url: str, t0: float, t1: float) -> dict[str, Any] | None:
    """Issue time -> insertion of the forecasts issued in ``[t0, t1]`` (one per coin-minute)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT crypto_symbol, timestamp, "
            "extract(epoch FROM updated_at - timestamp)::float8 FROM prediction_data "
            "WHERE timestamp BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
            (t0, t1),
        ).fetchall()
    delays = [float(r[2]) for r in rows]
    if not delays:
        return None
    return {
        "p50_ms": round(_pct(delays, 0.5) * 1000, 1),
        "p99_ms": round(_pct(delays, 0.99) * 1000, 1),
        "max_ms": round(max(delays) * 1000, 1),
        "min_ms": round(min(delays) * 1000, 1),
        "coin_minutes": len(delays),
        "measures": (
            "prediction_data.updated_at (insert transaction start, database clock) minus "
            "timestamp (issue time = end of the minute, producer clock), per coin and minute"
        ),
    }


def start_job(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "spark_batch.run", "--query", QUERY],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def live(
    bootstrap: str,
    env: dict[str, str],
    state: Path,
    pairs: list[str],
    rate: int,
    seconds: float,
    steps: list[int],
    step_seconds: float,
    refine: bool,
) -> dict[str, Any]:
    # Observation only: the JVM logs its collections (wall-clock stamps) for the heap figures.
    gc_log = f"-Xlog:gc:file={state}/gc-%p.log:utctime"
    env = {**env, "JAVA_TOOL_OPTIONS": f"{env.get('JAVA_TOOL_OPTIONS', '')} {gc_log}".strip()}
    job = start_job(env, state / "spark-job.log")
    windows: list[tuple[float, float]] = []
    checkpoint = Checkpoint(SparkSettings.checkpoint_dir(Path(env["CRYPTOVIZ_STATE_DIR"]), QUERY))
    memory = Memory(job.pid)
    last_mem = 0.0

    def exited() -> str | None:
        code = job.poll()
        return None if code is None else f"the Spark job exited with {code}; see {state}"

    def tick() -> None:
        nonlocal last_mem
        checkpoint.scan()
        if time.monotonic() - last_mem >= 1.0:
            memory.sample()
            last_mem = time.monotonic()

    feed = Feed(bootstrap, pairs, tick)
    result: dict[str, Any] = {}
    try:
        started = time.monotonic()
        while not checkpoint.batches:  # JVM start, query start, first batch
            if (reason := feed.run(rate, 1.0, stop=exited)) is not None:
                raise RuntimeError(reason)
            if time.monotonic() - started > 180:
                raise RuntimeError(f"no batch committed after 180 s; see {state}")
        result["first_commit_after_s"] = round(time.monotonic() - started, 1)
        print(f"  first batch committed after {result['first_commit_after_s']} s", flush=True)
        # Warm-up: code generation, state store, steady batches.
        if (reason := feed.run(rate, 15.0, stop=exited)) is not None:
            raise RuntimeError(reason)

        print(f"latency at {rate:.0f} ticks/s for {seconds:.0f} s ...", flush=True)
        t0 = time.time()
        if (reason := feed.run(rate, seconds, record=True, stop=exited)) is not None:
            raise RuntimeError(reason)
        t1 = time.time()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # keep the rate until every recorded tick is in
            if (reason := feed.run(rate, 1.0, stop=exited)) is not None:
                raise RuntimeError(reason)
            if covers(checkpoint.ordered(), feed.recorded):
                break
        lat = latencies(feed.recorded, checkpoint.ordered())
        if len(lat) < len(feed.recorded):
            raise RuntimeError("recorded ticks were never committed")
        result["latency"] = {
            "p50_ms": round(_pct(lat, 0.5) * 1000, 1),
            "p90_ms": round(_pct(lat, 0.9) * 1000, 1),
            "p99_ms": round(_pct(lat, 0.99) * 1000, 1),
            "max_ms": round(max(lat) * 1000, 1),
            "min_ms": round(min(lat) * 1000, 1),
            "ticks": len(lat),
        }
        result["rss_at_rate_mb"] = memory.now_mb()
        result["forecast_delay"] = forecast_delay(env["DATABASE_URL"], t0, t1)
        print(
            f"  p50 {result['latency']['p50_ms']:.0f} ms, p99 {result['latency']['p99_ms']:.0f} ms"
            f" over {len(lat)} ticks",
            flush=True,
        )
        reports = [step_report(rate, t0, t1, feed, checkpoint.ordered())]
        windows = [(t0, t1)]

        def drain() -> dict[str, Any]:
            feed.producer.flush(30)
            feed.idle(0.2)
            checkpoint.scan()
            backlog_from, begin = checkpoint.committed_total(), time.time()
            deadline = time.monotonic() + 60
            while (
                checkpoint.committed_total() < feed.acked
                and time.monotonic() < deadline
                and exited() is None
            ):
                feed.idle(0.5)
            done = checkpoint.committed_total() >= feed.acked
            batches = [b for b in checkpoint.ordered() if b.committed > begin]
            out: dict[str, Any] = {"drained": done, "backlog_ticks": feed.acked - backlog_from}
            if done and batches and out["backlog_ticks"] >= CATCH_UP_MIN_BACKLOG:
                last = batches[-1]
                moved = last.total - backlog_from
                out["catch_up_ticks_per_s"] = round(moved / (last.committed - begin))
                out["seconds"] = round(last.committed - begin, 1)
            return out

        def step(target: int) -> dict[str, Any]:
            print(f"step {target:.0f} ticks/s for {step_seconds:.0f} s ...", flush=True)
            s0 = time.time()

            def hopeless() -> str | None:
                # Far behind: stop early rather than pile up a backlog the job cannot hold.
                lag = feed.acked - checkpoint.committed_total()
                if time.time() - s0 > 10 and lag > target * MAX_LAG_S:
                    return f"lag {lag} ticks > {MAX_LAG_S} s of data"
                return exited()

            reason = feed.run(target, step_seconds, stop=hopeless)
            s1 = time.time()
            feed.idle(0.5)  # let the batch in flight at s1 commit for the analysis
            report = step_report(target, s0, s1, feed, checkpoint.ordered())
            windows.append((s0, s1))
            if reason is not None:
                report["kept_up"] = False
                report["stopped_early"] = reason
            print(f"  {report}", flush=True)
            return report

        failed = None
        for target in steps:
            report = step(target)
            reports.append(report)
            if not report["kept_up"]:
                failed = target
                break
        drained = drain()
        print(f"drain: {drained}", flush=True)
        result["drain"] = drained
        good = [r["target_ticks_per_s"] for r in reports if r["kept_up"]]
        if refine and failed is not None and good and drained["drained"] and exited() is None:
            mid = int(round((max(good) + failed) / 2, -2))
            if max(good) < mid < failed:
                reports.append(step(mid))
                result["drain_after_refinement"] = drain()
        result["steps"] = reports
        memory.sample()
        result["rss_peak_mb"] = memory.peak_mb()
        result["jvm_pid_found"] = memory.jvm_pid is not None
        result["producer_errors"] = feed.errors
        result["batches_seen"] = len(checkpoint.batches)
        result["job_exited"] = exited()
    finally:
        if job.poll() is None:
            job.send_signal(signal.SIGTERM)
            try:
                job.wait(60)
            except subprocess.TimeoutExpired:
                job.kill()
                job.wait(10)
    log = (state / "spark-job.log").read_text(errors="replace")
    result["codegen_failures_logged"] = log.count(CODEGEN_FAILURE)
    result["out_of_memory_errors_logged"] = log.count("java.lang.OutOfMemoryError")
    if memory.jvm_pid is not None:
        pauses = gc_pauses(state / f"gc-{memory.jvm_pid}.log")
        for report, (s0, s1) in zip(result.get("steps", []), windows, strict=False):
            report.update(gc_summary(pauses, s0, s1))
        result["gc_whole_run"] = gc_summary(pauses, 0.0, math.inf)
    return result


# -- main ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics")
    parser.add_argument("--rate", type=int, default=2000, help="latency-phase ticks/s")
    parser.add_argument("--seconds", type=float, default=60, help="latency measurement length")
    parser.add_argument(
        "--steps", default="5000,10000,20000,30000,40000", help="rates after the latency phase"
    )
    parser.add_argument(
        "--refine",
        action="store_true",
        help="after the first failing step and a drain, try the midpoint once (its result "
        "is skewed by the heap the overload left behind)",
    )
    parser.add_argument("--step-seconds", type=float, default=40)
    parser.add_argument("--pairs", type=int, default=12, help="USD pairs in the live feed")
    parser.add_argument("--no-write", action="store_true", help="don't update bench/results")
    parser.add_argument("--keep-state", action="store_true", help="keep the temporary state dir")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    wall = time.monotonic()
    load_before = os.getloadavg()

    # Always servers of its own (the lag is read from the broker's end offsets), and the
    # default topic map (the load goes to TOPIC).
    with temporary_stack(
        prefix="cryptoviz-bench-analytics-",
        settings=load_settings().with_topics(Topics()),
        embedded=True,
        keep=args.keep_state,
    ) as stack:
        settings = stack.settings
        state = settings.state_dir
        bootstrap, admin = stack.bootstrap, stack.database_url
        pairs = synthetic_pairs(settings.coin_table(), args.pairs)
        env = {**stack.env(), "PYTHONPATH": str(REPO)}
        env["DATABASE_URL"] = new_database(admin)
        env["CRYPTOVIZ_STATE_DIR"] = str(state / "job")
        spark_cfg = load_spark_settings(env)

        print(f"Spark job on {TOPIC}, {len(pairs)} pairs ...", flush=True)
        run = live(
            bootstrap,
            env,
            state,
            pairs,
            args.rate,
            args.seconds,
            steps,
            args.step_seconds,
            args.refine,
        )

    good = [s["target_ticks_per_s"] for s in run["steps"] if s["kept_up"]]
    overload = [
        s["consumed_ticks_per_s"]
        for s in run["steps"]
        if not s["kept_up"] and s["consumed_ticks_per_s"] is not None
    ]
    peak, at_rate = run["rss_peak_mb"], run["rss_at_rate_mb"]
    result: dict[str, Any] = {
        "latency_p50_ms": run["latency"]["p50_ms"],
        "latency_p99_ms": run["latency"]["p99_ms"],
        "max_sustained_ticks_per_s": max(good) if good else None,
        "driver_rss_mb": peak["driver"],
        "jvm_rss_mb": peak["jvm"],
        "forecast_delay_p50_ms": (run.get("forecast_delay") or {}).get("p50_ms"),
        "forecast_delay_p99_ms": (run.get("forecast_delay") or {}).get("p99_ms"),
        "forecast_delay": run.get("forecast_delay"),
        "latency_rate_ticks_per_s": args.rate,
        "latency": run["latency"],
        "latency_measures": (
            "per tick: mtime of the checkpoint's commits/N of the first micro-batch N whose "
            "planned end offset passed the tick's offset, minus the wall-clock time the tick "
            "was produced (= its event time); commits/N is written after foreachBatch "
            "returned, i.e. after the prediction_data upsert committed and the rows were "
            "published to Kafka"
        ),
        "steps": run["steps"],
        "sustained_criterion": (
            f"lag (broker end offsets minus the last committed batch's end offsets, after each "
            f"commit) grows by less than {SLOPE_LIMIT:.0%} of the rate over the last 60 % of a "
            f"step"
        ),
        "consumed_ticks_per_s_when_overloaded": max(overload) if overload else None,
        "drain": run["drain"],
        "drain_after_refinement": run.get("drain_after_refinement"),
        "job_exited": run["job_exited"],
        "batches_seen": run["batches_seen"],
        "codegen_failures_logged": run["codegen_failures_logged"],
        "out_of_memory_errors_logged": run["out_of_memory_errors_logged"],
        "gc_whole_run": run.get("gc_whole_run"),
        "first_commit_after_s": run["first_commit_after_s"],
        "rss_mb": {
            "peak": peak,
            f"at_{args.rate:.0f}_ticks_per_s": at_rate,
            "note": (
                "local mode: one JVM is both the Spark driver and the executor; 'driver' is "
                "the Python driver process (py4j client, foreachBatch sinks)"
            ),
        },
        "spark": {
            "master": spark_cfg.master,
            "driver_memory": spark_cfg.driver_memory,
            "trigger_s": spark_cfg.trigger_s,
            "output_mode": spark_cfg.output_mode,
            "shuffle_partitions": spark_cfg.shuffle_partitions,
            "state_store": spark_cfg.state_store,
            "max_offsets_per_trigger": spark_cfg.max_offsets_per_trigger,
        },
        "pairs": len(pairs),
        "producer_errors": run["producer_errors"],
        "run_s": round(time.monotonic() - wall),
        "loadavg_1_5_15": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
    }
    report(result, RESULTS, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(run_program("bench.analytics", main))
