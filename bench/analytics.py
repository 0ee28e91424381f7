"""Analytics benchmark: the Spark ``predictions`` query on the embedded stack.

    .venv/bin/python -m bench.analytics [--rate 2000] [--seconds 60]
        [--steps 5000,10000,20000,30000,40000] [--step-seconds 40] [--refine] [--pairs 12]
        [--replay-hours 6] [--no-write] [--keep-state]

One run, one fresh embedded stack (Kafka + PostgreSQL started here; the job reads
the fixed topic ``rawticker``, so external servers are not used):

1. **The job**: ``python -m spark_batch.run --query predictions`` in a subprocess,
   with its default settings (``local[*]``, 2 s trigger, ``update`` output mode,
   1g driver memory; ``CRYPTOVIZ_SPARK_*`` in the environment apply). This process
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
   upper bound of "tick produced -> its windows' prediction rows committed", by the
   few ms of the Kafka publish and the commit-log write.
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
5. **Prediction quality** on a replay: ``--replay-hours`` of one tick per second per
   tracked pair from the synthetic market's price process
   (:mod:`flows.producers.synthetic`, seed 7, event times from 2025-01-01), produced
   to a fresh topic and copied into ``ticker_data``; the query runs over it once
   (``availableNow``, in this process), the actual prices are back-filled, and
   :func:`spark_batch.accuracy.accuracy` scores the predictions made from the first
   full window to the last one whose target lies in the path.

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
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from confluent_kafka import KafkaError, Message, Producer

from bench._results import git_commit, machine, report
from bench.ingest import new_database
from flows.producers.settings import SyntheticSettings
from flows.producers.synthetic import SyntheticPartition, synthetic_pairs
from infra._procs import descendants, process_table
from infra.cli import run_program
from infra.settings import Settings, Topics, load_settings
from infra.stack import temporary_stack
from infra.topics import ensure_topics
from spark_batch.accuracy import NAIVE, Accuracy, Scored, accuracy, fetch_scored, summarise
from spark_batch.backfill import backfill_actual_prices
from spark_batch.settings import SparkSettings, load_spark_settings

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "analytics.json"
TOPIC = Topics().rawticker
"""The job under test reads the default topic map, on a broker of its own."""
QUERY = "predictions"
REPLAY_START = datetime(2025, 1, 1, tzinfo=UTC)
REPLAY_SEED = 7
HEADLINE_PAIR = "BTC/USD"
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


# -- prediction quality on a replay -------------------------------------------------------


def _price_text(price: float) -> str:
    """Six significant digits, like the synthetic producer and Kraken."""
    digits = math.floor(math.log10(price)) + 1 if price >= 1 else 0
    return f"{price:.{max(1, min(8, 6 - digits))}f}"


def replay_market(pairs: int) -> SyntheticSettings:
    """The synthetic market's defaults, one tick per simulated second per pair."""
    return SyntheticSettings(pairs=pairs, rate=float(pairs), seed=REPLAY_SEED)


def replay_path(settings: Settings, hours: float) -> list[tuple[float, str, str]]:
    """``(epoch s, pair, last)``: one tick per second per tracked pair, synthetic market."""
    coins = settings.coin_table()
    pairs = synthetic_pairs(coins, len(coins.tracked))
    # rate = pairs: one simulated second between two ticks of a pair.
    part = SyntheticPartition(replay_market(len(pairs)), coins, None)
    base = REPLAY_START.timestamp()
    ticks = []
    for second in range(int(hours * 3600)):
        for pair in pairs:
            path = part._paths[pair]
            part._step(path)
            ticks.append((base + second, pair, _price_text(path.price)))
    return ticks


def _accuracy_dict(a: Accuracy) -> dict[str, Any]:
    def r(v: float | None, nd: int) -> float | None:
        return None if v is None else round(v, nd)

    return {
        "predictions": a.predictions,
        "mae": r(a.mae, 6),
        "mape_pct": r(a.mape_pct, 4),
        "directional_accuracy": r(a.directional_accuracy, 3),
        "coverage": r(a.coverage, 3),
        "nominal_level": r(a.nominal_level, 4),
        "skill_vs_naive": r(a.skill_vs_naive, 3),
    }


def replay(settings: Settings, admin: str, state: Path, hours: float) -> dict[str, Any]:
    from spark_batch.jobs import Analytics
    from spark_batch.session import build_session

    bootstrap = settings.kafka.bootstrap_servers
    assert bootstrap is not None
    url = new_database(admin)
    topic = f"bench-replay-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, (topic,), settings.kafka.partitions)
    ticks = replay_path(settings, hours)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for ts, pair, last in ticks:
        payload = f'{{"pair":"{pair}","last":{last},"timestamp":{ts:.6f}}}'.encode()
        while True:
            try:
                producer.produce(topic, payload, key=pair.encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0
    with (
        psycopg.connect(url, autocommit=True) as conn,
        conn.cursor().copy("COPY ticker_data (timestamp, pair, last) FROM STDIN") as copy,
    ):
        for ts, pair, last in ticks:
            copy.write_row((datetime.fromtimestamp(ts, UTC), pair, Decimal(last)))

    # FATAL: Spark 4.1.1 logs a whole-stage codegen fallback of the sliding-window stage at
    # ERROR, with the plan, on every batch; a real failure still raises in awaitTermination.
    cfg = msgspec.structs.replace(
        load_spark_settings(), log_level="FATAL", max_offsets_per_trigger=None
    )
    job_settings = (
        msgspec.structs.replace(settings, state_dir=state / "replay")
        .with_servers(database=url)
        .with_topics(msgspec.structs.replace(settings.kafka.topics, rawticker=topic))
    )
    spark = build_session(cfg, settings.cache_dir)
    try:
        analytics = Analytics(spark, job_settings, cfg)
        started = time.perf_counter()
        (query,) = analytics.start([QUERY], available_now=True)
        try:
            query.awaitTermination()
        finally:
            query.stop()
            analytics.close()
        spark_s = time.perf_counter() - started
    finally:
        spark.stop()

    pcfg = cfg.prediction
    first = REPLAY_START + timedelta(seconds=pcfg.window_s)
    last_tick = REPLAY_START + timedelta(seconds=int(hours * 3600) - 1)
    until = last_tick - timedelta(seconds=pcfg.horizon_s)
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            filled = backfill_actual_prices(
                conn, quote=pcfg.quote, max_staleness_s=cfg.backfill.max_staleness_s
            )
        scored = fetch_scored(conn, first, until)
        (predictions,) = conn.execute("SELECT count(*) FROM prediction_data").fetchone() or (0,)
    rows = accuracy(scored)
    symbol = HEADLINE_PAIR.split("/", 1)[0]
    by_coin: dict[str, dict[str, Any]] = {}
    for a in rows:
        by_coin.setdefault(a.symbol, {})[a.model] = _accuracy_dict(a)
    pooled: dict[str, Any] = {}
    models = sorted({s.model for s in scored})
    for model in [*models, NAIVE]:
        group: list[Scored] = [
            s
            if model != NAIVE
            else msgspec.structs.replace(s, model=NAIVE, predicted=s.last, low=None, high=None)
            for s in scored
            if model == NAIVE or s.model == model
        ]
        if model == NAIVE:  # one naive forecast per (coin, prediction time)
            group = list({(s.symbol, s.timestamp): s for s in group if s.last is not None}.values())
        a = summarise(model, "ALL", group)
        pooled[model] = {
            "predictions": a.predictions,
            "mape_pct": round(a.mape_pct or 0.0, 4),
            "naive_mape_pct": round(a.naive_mape_pct or 0.0, 4),
            "skill_vs_naive_mape": round(1 - (a.mape_pct or 0.0) / (a.naive_mape_pct or 1.0), 3),
            "directional_accuracy": None
            if a.directional_accuracy is None
            else round(a.directional_accuracy, 3),
            "coverage": None if a.coverage is None else round(a.coverage, 3),
            "nominal_level": None if a.nominal_level is None else round(a.nominal_level, 4),
        }
    headline = by_coin[symbol]
    market = replay_market(len(by_coin))
    return {
        "models": {
            m: {k: headline[m][k] for k in ("mae", "coverage", "nominal_level")}
            | {
                "mape_pct": headline[m]["mape_pct"],
                "skill_vs_naive": headline[m]["skill_vs_naive"],
                "predictions": headline[m]["predictions"],
            }
            for m in models
        },
        "naive_mae": headline[NAIVE]["mae"],
        "replay": {
            "headline_pair": HEADLINE_PAIR,
            "what": (
                f"{hours:g} h of synthetic market (flows.producers.synthetic price process with "
                f"its default settings, seed {REPLAY_SEED}), one tick per second per pair, "
                f"event time from "
                f"{REPLAY_START.isoformat()}; window {pcfg.window_s} s sliding {pcfg.slide_s} s, "
                f"horizon {pcfg.horizon_s} s; scored: predictions made in "
                f"[{first.isoformat()}, {until.isoformat()})"
            ),
            "market": {
                "volatility_per_sqrt_hour": market.volatility,
                "trend_switch_per_s": market.trend_switch_per_s,
                "trend": "new drift regime: 0 or +-0.2..1 % per minute",
                "jump_per_s": market.jump_per_s,
                "jump": "+-1..3 %",
            },
            "ticks": len(ticks),
            "pairs": sorted({p for _, p, _ in ticks}),
            "spark_available_now_s_incl_query_start": round(spark_s, 1),
            "spark_ticks_per_s": round(len(ticks) / spark_s),
            "prediction_rows": int(predictions),
            "actual_prices_filled": filled,
            "scored_predictions": len(scored),
            "by_coin": by_coin,
            "pooled_all_coins": pooled,
        },
    }


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
    parser.add_argument("--replay-hours", type=float, default=6)
    parser.add_argument("--no-write", action="store_true", help="don't update bench/results")
    parser.add_argument("--keep-state", action="store_true", help="keep the temporary state dir")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    prediction = load_spark_settings().prediction
    if args.replay_hours * 3600 < prediction.window_s + prediction.horizon_s + 120:
        parser.error("--replay-hours must cover a window, the horizon and two minutes more")
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
        print(f"replay of {args.replay_hours:g} h for prediction quality ...", flush=True)
        quality = replay(settings, admin, state, args.replay_hours)

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
        "models": quality["models"],
        "naive_mae": quality["naive_mae"],
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
        "replay": quality["replay"],
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
