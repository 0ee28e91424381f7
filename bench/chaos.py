"""The chaos run: the whole pipeline twice on the same recorded input, once under faults.

    .venv/bin/python -m bench.chaos                 # full size (documented in RELIABILITY.md)
    .venv/bin/python -m bench.chaos --size ci       # what CI runs (tests/chaos)

1. **Reference run**: fresh embedded Kafka and PostgreSQL; ``producer-replay``
   replays a recorded market capture (:mod:`bench._chaos_input`) and the saved
   news feeds at the recorded pace, while junk is written straight into the raw
   topics; ingestion, alerts, Spark and the API run under supervisord. When every
   market message is in the database, every junk message is a dead letter, every
   Spark query has committed a batch reaching the end of its topic and no table
   has changed for ``settle_s``, the run's results are recorded: a digest
   per table (:mod:`bench._chaos_checks`), the dead letters, the alerts on the
   alert topic.
2. **Faulted run**: the same, from scratch, while :func:`fault_schedule` SIGKILLs
   every worker once (supervisord restarts it), kills and restarts the Kafka broker
   and stops PostgreSQL for ``postgres_down_s``. A WebSocket client follows a live
   ticker channel throughout and reconnects when the API dies.

Pass: every table digest and the dead-letter counts are identical, no alert is
on the topic twice, every fault was recovered from, and the live client saw the
stream again after reconnecting. Exit status 0 on pass, 1 otherwise.

``--cluster`` runs both on the scaled-out shape (``make up CLUSTER=1``: three Kafka
nodes, two processes per ingestion flow, Spark master and worker, two API
workers) and injects the faults a cluster exists to survive instead
(:mod:`bench._chaos_cluster`): the busiest broker SIGKILLed and restarted later, a
rolling restart of the three brokers, one process of an ingestion flow killed, the
Spark worker (with its executors) and the master killed, the API worker serving
the live client killed. Pass also needs ingestion to have kept committing while
the broker was down (its longest pause in commits shorter than the outage) and
the other API worker's client to have kept its stream. Results in
``bench/results/cluster_chaos.json`` (``cluster_chaos-ci.json`` for the CI size).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Producer

from bench._chaos_checks import (
    DeadLetters,
    Digest,
    alert_repeats,
    dead_letters,
    dump_rows,
    end_offsets,
    row_differences,
    spark_lagging,
    table_counts,
    table_digests,
)
from bench._chaos_cluster import (
    PROBE_PATH,
    ClusterOutcome,
    CommitWatch,
    cluster_schedule,
    inject,
)
from bench._chaos_input import ChaosInput, build_input
from bench._chaos_pipeline import FaultOutcome, Pipeline, fault_schedule
from bench._chaos_ws import LiveWatcher
from bench._results import REPO, provenance, report
from infra.cli import run_program
from infra.settings import load_settings


class Size(msgspec.Struct, frozen=True):
    frames: int
    rate: float
    """Market frames per recorded second (the replay's pace)."""
    junk_rounds: int
    postgres_down_s: float = 30.0
    settle_s: float = 20.0
    broker_down_s: float = 30.0
    """Cluster scenario: how long the killed broker stays down."""


SIZES = {
    # A broker down 45-60 s: long enough to see commits resume after the failover.
    "ci": Size(frames=9_000, rate=90.0, junk_rounds=1, broker_down_s=45.0),
    "full": Size(frames=180_000, rate=600.0, junk_rounds=5, broker_down_s=60.0),
}


class RunResult(msgspec.Struct):
    label: str
    digests: dict[str, Digest]
    dead_letters: DeadLetters
    alerts: int
    alert_repeats: int
    seconds: float
    faults: list[FaultOutcome] = msgspec.field(default_factory=list)
    live_connections: list[int] = msgspec.field(default_factory=list)
    live_failed_attempts: int = 0
    restarts: dict[str, int] = msgspec.field(default_factory=dict)
    """Restarts by supervisord per program: the kills, and crashes the faults caused."""
    cluster_faults: list[ClusterOutcome] = msgspec.field(default_factory=list)
    """The cluster scenario's faults, with recovery times and commit pauses."""


def _expected_market_rows(capture: Path) -> dict[str, int]:
    text = capture.read_bytes()
    return {"ticker_data": text.count(b'"channel":"ticker"'),
            "trade_data": text.count(b'"channel":"trade"')}  # fmt: skip


def _write_junk(bootstrap: str, junk: tuple[tuple[str, bytes], ...], parts: int,
                every_s: float, stop: threading.Event) -> None:  # fmt: skip
    """Junk in ``parts`` bursts ``every_s`` apart, so some of it meets the faults."""
    # log_level 2: librdkafka's "connection refused" while the broker is down is expected.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "enable.idempotence": True, "log_level": 2})  # fmt: skip
    chunk = -(-len(junk) // parts)
    for start in range(0, len(junk), chunk):
        for topic, value in junk[start : start + chunk]:
            producer.produce(topic, value)
        producer.flush(300)
        if stop.wait(every_s):
            break
    if producer.flush(300):
        raise RuntimeError("junk writer: messages not delivered")


def _wait_settled(run: Pipeline, data: ChaosInput, expected: dict[str, int], size: Size,
                  deadline_s: float) -> None:  # fmt: skip
    deadline = time.monotonic() + deadline_s
    market_done = False
    last: dict[str, Digest] | None = None
    stable_since = 0.0
    while time.monotonic() < deadline:
        time.sleep(3)
        try:
            if not market_done:
                counts = table_counts(run.database_url, tuple(expected))
                market_done = counts == expected
                continue
            topics = run.settings.kafka.topics
            letters = dead_letters(run.bootstrap, topics.deadletter)
            if letters.distinct < len(data.junk):
                continue
            ends = end_offsets(run.bootstrap, (topics.rawticker, topics.rawarticle))
            if spark_lagging(run.state_dir / "spark" / "checkpoints", ends):
                continue
            digests = table_digests(run.database_url)
        except Exception as exc:  # a server is down for a fault: try again
            print(f"  (waiting: {type(exc).__name__}: {str(exc)[:100]})", flush=True)
            continue
        if digests != last:
            last, stable_since = digests, time.monotonic()
        elif time.monotonic() - stable_since >= size.settle_s:
            return
    raise TimeoutError(
        f"not settled within {deadline_s:.0f} s (market rows complete: {market_done}); "
        f"logs in {run.logs()}"
    )


def rows_dir(workdir: Path, label: str) -> Path:
    """Where a run's table rows are dumped, to show the rows of a digest that differs."""
    return workdir / f"{label}-rows"


def run_pipeline(label: str, workdir: Path, data: ChaosInput, size: Size, *,
                 faults: bool, cluster: bool = False) -> RunResult:  # fmt: skip
    env = {
        "CRYPTOVIZ_REPLAY_FILES": ":".join(str(p) for p in data.files),
        "CRYPTOVIZ_REPLAY_SPEED": "1",
        "CRYPTOVIZ_ALERT_FROM": "beginning",
        "CRYPTOVIZ_BACKFILL_INTERVAL_S": "5",
        "CRYPTOVIZ_API_LIVE": "1",
    }
    expected = _expected_market_rows(data.files[0])
    started = time.monotonic()
    print(f"[{label}] starting Kafka, PostgreSQL and the workers", flush=True)
    with Pipeline(workdir / label, env, cluster=cluster) as run:
        stop = threading.Event()
        junk = threading.Thread(
            target=_write_junk,
            args=(run.bootstrap, data.junk, 3, data.duration_s / 3, stop),
            daemon=True,
        )
        junk.start()
        # The cluster scenario's probes publish on the prediction channel (no table reads it).
        channel = PROBE_PATH if cluster else "/ws/ticker/BTC/USD/"
        watcher = LiveWatcher(f"ws://127.0.0.1:{run.api_port}{channel}").start()
        outcomes: list[FaultOutcome] = []
        cluster_outcomes: list[ClusterOutcome] = []
        commits = CommitWatch(run.database_url)
        if cluster:  # the cluster scenario's pauses in commits
            commits.start()
        try:
            if faults and cluster:
                # The schedule starts with the stream (the first committed market row):
                # on a loaded machine the programs take minutes to start, and a broker
                # outage before anything flows would test nothing.
                deadline = time.monotonic() + 900
                while commits.rows() == 0 and time.monotonic() < deadline:
                    time.sleep(0.5)
                flowing = run.elapsed()
                for cfault in cluster_schedule(data.duration_s):
                    time.sleep(max(0.0, flowing + cfault.at_s - run.elapsed()))
                    done = inject(run, cfault, commits, broker_down_s=size.broker_down_s,
                                  live=watcher)  # fmt: skip
                    cluster_outcomes.append(done)
                    print(f"[{label}] t={done.injected_at_s:6.1f}s {cfault.kind:<18} "
                          f"{cfault.target:<18} back after {done.recovered_after_s:5.1f}s, "
                          f"longest commit pause {done.longest_commit_pause_s:5.1f}s",
                          flush=True)  # fmt: skip
            elif faults:
                for fault in fault_schedule(data.duration_s):
                    time.sleep(max(0.0, fault.at_s - run.elapsed()))
                    outcome = run.inject(fault, size.postgres_down_s)
                    outcomes.append(outcome)
                    print(f"[{label}] t={outcome.injected_at_s:6.1f}s {fault.kind:<13} "
                          f"{fault.target:<18} back after {outcome.recovered_after_s:5.1f}s",
                          flush=True)  # fmt: skip
            _wait_settled(run, data, expected, size, deadline_s=data.duration_s + 600)
        finally:
            stop.set()
            watcher.stop()
            commits.stop()
        junk.join(timeout=60)
        digests = table_digests(run.database_url)
        dump_rows(run.database_url, rows_dir(workdir, label))
        letters = dead_letters(run.bootstrap, run.settings.kafka.topics.deadletter)
        alerts, repeats = alert_repeats(run.bootstrap, run.settings.kafka.topics.rawalert)
        restarts = run.restarts()
        print(f"[{label}] settled after {time.monotonic() - started:.0f} s", flush=True)
    return RunResult(
        label=label,
        digests=digests,
        dead_letters=letters,
        alerts=alerts,
        alert_repeats=repeats,
        seconds=round(time.monotonic() - started, 1),
        faults=outcomes,
        live_connections=watcher.connections,
        live_failed_attempts=watcher.failed_attempts,
        restarts=restarts,
        cluster_faults=cluster_outcomes,
    )


def compare(reference: RunResult, faulted: RunResult, faults_expected: int,
            broker_down_s: float = 30.0) -> list[str]:  # fmt: skip
    """Every way the faulted run differs from the reference run (empty: pass)."""
    problems: list[str] = []
    for table in sorted(set(reference.digests) | set(faulted.digests)):
        ref, got = reference.digests.get(table), faulted.digests.get(table)
        if ref != got:
            problems.append(f"table {table}: reference {ref}, faulted {got}")
    if reference.dead_letters.by_reason != faulted.dead_letters.by_reason:
        problems.append(f"dead letters differ: reference {reference.dead_letters.by_reason}, "
                        f"faulted {faulted.dead_letters.by_reason}")  # fmt: skip
    for run in (reference, faulted):
        if run.alert_repeats:
            problems.append(f"{run.label}: {run.alert_repeats} alerts on the topic twice")
    if reference.restarts:
        problems.append(f"reference run: workers restarted without a fault: {reference.restarts}")
    injected = len(faulted.faults) + len(faulted.cluster_faults)
    if injected != faults_expected:
        problems.append(f"{injected} of {faults_expected} faults injected")
    for done in faulted.cluster_faults:
        kind = done.fault.kind
        if kind == "broker-kill" and done.longest_commit_pause_s >= broker_down_s:
            problems.append(f"no commit for {done.longest_commit_pause_s} s while a broker was "
                            f"down for {broker_down_s:.0f} s")  # fmt: skip
        if kind == "api-worker-kill" and not done.detail.get("survivors_kept_receiving"):
            problems.append("a live client on a surviving API worker lost its stream")
        if kind == "api-worker-kill" and not done.detail.get("live_client_reconnected"):
            problems.append("the live client did not reconnect to a new API worker")
    # The cluster scenario's live client follows the prediction channel, silent but for
    # Spark's batches and the probe markers: a later reconnect may well see nothing, so
    # there it is a connection after the first that must have received messages.
    after_reconnect = (faulted.live_connections[1:] if faulted.cluster_faults
                       else faulted.live_connections[-1:])  # fmt: skip
    if len(faulted.live_connections) < 2 or not any(after_reconnect):
        problems.append(
            f"live client: connections {faulted.live_connections} (wanted a reconnect "
            "after the API was killed, then messages again)"
        )
    return problems


def summary(data: ChaosInput, reference: RunResult, faulted: RunResult, problems: list[str]) -> str:
    lines = [
        f"input: {data.market_frames:,} market frames over {data.duration_s:.0f} s, "
        f"{len(data.files) - 1} news feeds, {len(data.junk)} junk messages",
        f"{'table':<24}{'rows (ref)':>12}{'rows (faulted)':>16}  same",
    ]
    for table in sorted(reference.digests):
        ref, got = reference.digests[table], faulted.digests.get(table)
        same = "yes" if ref == got else "NO"
        lines.append(f"{table:<24}{ref.rows:>12,}{(got.rows if got else 0):>16,}  {same}")
    lines += [
        f"dead letters: {reference.dead_letters.distinct} / {faulted.dead_letters.distinct} "
        f"distinct ({reference.dead_letters.records} / {faulted.dead_letters.records} records)",
        f"alerts on the topic: {reference.alerts} / {faulted.alerts}, repeated "
        f"{reference.alert_repeats} / {faulted.alert_repeats}",
        f"faults injected: {len(faulted.faults) + len(faulted.cluster_faults)}; live client "
        f"connections {faulted.live_connections}",
        *(
            f"  {d.fault.kind:<18} at {d.injected_at_s:6.1f} s: recovered after "
            f"{d.recovered_after_s:5.1f} s, longest pause in commits {d.longest_commit_pause_s} s"
            for d in faulted.cluster_faults
        ),
        f"worker restarts: reference {reference.restarts or 'none'}, faulted {faulted.restarts}",
        "PASS" if not problems else "FAIL:\n  " + "\n  ".join(problems),
    ]
    return "\n".join(lines)


def chaos(size_name: str, workdir: Path, *, cluster: bool = False) -> dict[str, Any]:
    size = SIZES[size_name]
    settings = load_settings()
    data = build_input(workdir / "input", settings.coin_table(), frames=size.frames,
                       rate=size.rate, topics=settings.kafka.topics.raw,
                       junk_rounds=size.junk_rounds)  # fmt: skip
    reference = run_pipeline("reference", workdir, data, size, faults=False, cluster=cluster)
    faulted = run_pipeline("faulted", workdir, data, size, faults=True, cluster=cluster)
    schedule = cluster_schedule if cluster else fault_schedule
    problems = compare(reference, faulted, len(schedule(data.duration_s)), size.broker_down_s)
    problems += [
        f"table {table}: {line}"
        for table in sorted(reference.digests)
        if reference.digests[table] != faulted.digests.get(table)
        for line in row_differences(
            rows_dir(workdir, reference.label), rows_dir(workdir, faulted.label), table
        )
    ]
    print(summary(data, reference, faulted, problems), flush=True)
    return {
        "size": size_name,
        "shape": "cluster" if cluster else "single",
        **provenance(),
        "input": {
            "market_frames": data.market_frames,
            "replay_s": data.duration_s,
            "feeds": [p.name for p in data.files[1:]],
            "junk": len(data.junk),
        },
        "reference": msgspec.to_builtins(reference),
        "faulted": msgspec.to_builtins(faulted),
        "problems": problems,
        "passed": not problems,
        **({"pass": not problems, "faults": [
            {"kind": d.fault.kind, "target": d.fault.target, "at_s": d.injected_at_s,
             "recovered_after_s": d.recovered_after_s,
             "longest_commit_pause_s": d.longest_commit_pause_s}
            for d in faulted.cluster_faults]} if cluster else {}),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--cluster", action="store_true", help="the scaled-out shape's faults")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--no-write", action="store_true", help="don't update bench/results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cryptoviz-chaos-") as tmp:
        result = chaos(args.size, args.workdir or Path(tmp), cluster=args.cluster)
    name = ("cluster_chaos" + ("" if args.size == "full" else f"-{args.size}") if args.cluster
            else f"chaos-{args.size}")  # fmt: skip
    report(result, REPO / "bench" / "results" / f"{name}.json", write=not args.no_write)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(run_program("bench.chaos", main))
