"""Running one Kafka-to-PostgreSQL system on the peers' workload, and what it stored.

A :class:`System` is a way to start one process that drains the pre-loaded topic
into ``ticker_data`` of a given database; the same ``tag`` resumes where a killed
process left off (same consumer group, same recovery state). :func:`throughput`
times a clean run; :func:`restart_test` SIGKILLs the process half way, restarts
it, and :func:`account` compares what the table holds with the messages sent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.ingest import BASE_TS, PAIRS
from infra._procs import descendants, log_tail

_CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class System:
    name: str
    start: Callable[[str, str], subprocess.Popen[bytes]]
    """``start(database_url, tag)``: one process draining the topic into that database."""
    guarantee: str
    """What the system promises across a crash, in one sentence for the table."""
    versions: dict[str, str]
    log: Path
    """Where its processes write (quoted when one fails)."""


class ProcessTree:
    """CPU seconds (user + system) and peak RSS of a process and its descendants."""

    def __init__(self, root: int) -> None:
        self.root = root
        self._cpu: dict[int, float] = {}
        self._hwm_kb: dict[int, int] = {}

    def sample(self) -> None:
        for pid in (self.root, *descendants(self.root)):
            # A process may end between the listing and the reads: keep its last values.
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                self._cpu[pid] = (int(fields[11]) + int(fields[12])) / _CLK_TCK
            with contextlib.suppress(OSError, ValueError, IndexError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self._hwm_kb[pid] = int(line.split()[1])

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu.values())

    @property
    def peak_rss_mb(self) -> float:
        """Sum of each process's own peak: an upper bound of the tree's peak."""
        return sum(self._hwm_kb.values()) / 1024


def kill_tree(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGKILL) -> None:
    """Send ``sig`` to the process and everything below it, then reap it."""
    for pid in (*descendants(proc.pid), proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the tree, SIGKILL what is left after ``timeout`` seconds."""
    if proc.poll() is None:
        kill_tree(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    kill_tree(proc)


class Rows:
    """``count(*)`` of ``ticker_data`` over one open connection."""

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(url, autocommit=True)

    def count(self) -> int:
        row = self._conn.execute("SELECT count(*) FROM ticker_data").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()


class SystemFailed(RuntimeError):
    def __init__(self, system: System, what: str) -> None:
        tail = log_tail(system.log)
        super().__init__(f"{system.name}: {what}; last lines of {system.log}:\n{tail}")


@dataclass(slots=True)
class Progress:
    """Watches a running process fill the table: when rows appeared, CPU and memory."""

    system: System
    proc: subprocess.Popen[bytes]
    rows: Rows
    started: float = field(default_factory=time.perf_counter)
    first_at: float | None = None
    first_rows: int = 0
    first_cpu_s: float = 0.0
    tree: ProcessTree = field(init=False)

    def __post_init__(self) -> None:
        self.tree = ProcessTree(self.proc.pid)

    def wait_for(self, target: int, timeout: float, stall_s: float | None = None) -> int:
        """Poll until the table holds ``target`` rows; return the count reached.

        Raises if the process dies or ``timeout`` passes, unless ``stall_s`` is
        given: then a count that stops growing for that long is returned as is.
        """
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while True:
            done = self.rows.count()
            now = time.perf_counter()
            self.tree.sample()
            if self.first_at is None and done > 0:
                self.first_at, self.first_rows, self.first_cpu_s = now, done, self.tree.cpu_s
            if done >= target:
                return done
            if done != last:
                last, last_change = done, time.monotonic()
            elif stall_s is not None and time.monotonic() - last_change > stall_s:
                return done
            if self.proc.poll() is not None:
                if stall_s is not None:
                    return done
                code = self.proc.returncode
                raise SystemFailed(self.system, f"exited with {code} at {done} rows")
            if time.monotonic() > deadline:
                if stall_s is not None:
                    return done
                raise SystemFailed(self.system, f"{done} of {target} rows after {timeout:.0f} s")
            time.sleep(POLL_S)


def throughput(system: System, url: str, n: int, tag: str, timeout: float) -> dict[str, float]:
    """Drain ``n`` messages into the empty database at ``url``; rates and costs.

    The rate counts the rows committed between the first commit seen and the last
    (so a system's start-up and its first batch are outside the window); CPU is
    the process tree's over the same window.
    """
    rows = Rows(url)
    proc = system.start(url, tag)
    progress = Progress(system, proc, rows)
    try:
        progress.wait_for(n, timeout)
        done_at = time.perf_counter()
        progress.tree.sample()
    finally:
        stop(proc)
    try:
        stored = rows.count()
    finally:
        rows.close()
    assert progress.first_at is not None
    window = max(done_at - progress.first_at, POLL_S)
    measured = n - progress.first_rows
    if measured <= 0:  # everything in one commit: only the run including start-up says anything
        window, measured = done_at - progress.started, n
    cpu = progress.tree.cpu_s - (progress.first_cpu_s if measured < n else 0.0)
    return {
        "msgs_per_s": measured / window,
        "msgs_per_s_incl_startup": n / (done_at - progress.started),
        "cpu_s_per_million": cpu / measured * 1e6,
        "cpu_s_total": progress.tree.cpu_s,
        "peak_rss_mb": progress.tree.peak_rss_mb,
        "first_commit_rows": progress.first_rows,
        "rows": stored,
    }


def restart_test(
    system: System, url: str, n: int, tag: str, timeout: float, stall_s: float
) -> dict[str, Any]:
    """SIGKILL the system once half the messages are stored, restart it, account.

    The restarted process runs until the table holds ``n`` rows or stops growing
    for ``stall_s`` seconds (a system that lost messages never gets there).
    """
    rows = Rows(url)
    try:
        proc = system.start(url, tag)
        try:
            at_kill = Progress(system, proc, rows).wait_for(n // 2, timeout)
        finally:
            kill_tree(proc)
        restarted = time.perf_counter()
        proc = system.start(url, tag)
        try:
            Progress(system, proc, rows).wait_for(n, timeout, stall_s=stall_s)
            finished_s = time.perf_counter() - restarted
        finally:
            stop(proc)
    finally:
        rows.close()
    return {
        "rows_at_kill": at_kill,
        "killed_mid_way": at_kill < n,
        "restart_to_end_s": round(finished_s, 1),
        **account(url, n).as_dict(),
    }


@dataclass(frozen=True, slots=True)
class Accounting:
    """``ticker_data`` against the ``n`` messages of the workload."""

    rows: int
    stored: int
    """Messages with at least one row."""
    duplicates: int
    """Rows beyond the first of a message (0 whenever the primary key holds)."""
    lost: int
    """Messages with no row."""
    wrong_values: int
    """Messages whose row holds other prices than the message."""
    unexpected: int
    """Rows that are no message's (a shifted timestamp, a renamed pair...)."""

    def as_dict(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "wrong_values": self.wrong_values,
            "unexpected": self.unexpected,
        }


# The workload's messages, rebuilt in SQL from bench.ingest.ticker_payload's formulas:
# message i is pair PAIRS[i % 6] at BASE_TS + i/1000 s, last 30000 + (i % 5000)/100,
# bid/ask 0.5 below/above, volume 1200.5. Exact numerics, so a row matches or not.
_ACCOUNT = """
WITH expected AS (
    SELECT i,
           (%(pairs)s::text[])[i %% %(npairs)s + 1] AS pair,
           to_timestamp(%(base)s::numeric + i / 1000.0) AS ts,
           30000 + (i %% 5000) / 100.0 AS last
    FROM generate_series(0, %(n)s - 1) AS i
), copies AS (
    SELECT e.i, count(t.pair) AS copies,
           bool_and(t.last = e.last AND t.bid = e.last - 0.5 AND t.ask = e.last + 0.5
                    AND t.volume_24h = 1200.5) AS right_values
    FROM expected e LEFT JOIN ticker_data t ON t.pair = e.pair AND t.timestamp = e.ts
    GROUP BY e.i
)
SELECT (SELECT count(*) FROM ticker_data),
       count(*) FILTER (WHERE copies > 0),
       coalesce(sum(copies - 1) FILTER (WHERE copies > 1), 0),
       count(*) FILTER (WHERE copies = 0),
       count(*) FILTER (WHERE copies > 0 AND NOT right_values),
       coalesce(sum(copies), 0)
FROM copies
"""


def account(url: str, n: int) -> Accounting:
    """Compare ``ticker_data`` at ``url`` with the workload's first ``n`` messages."""
    params = {"pairs": list(PAIRS), "npairs": len(PAIRS), "base": repr(BASE_TS), "n": n}
    with psycopg.connect(url) as conn:
        row = conn.execute(_ACCOUNT, params).fetchone()
    assert row is not None
    rows, stored, duplicates, lost, wrong, matched = (int(v) for v in row)
    return Accounting(rows, stored, duplicates, lost, wrong, rows - matched)
