"""What scaling out buys on this machine: the figures of docs/BENCHMARKS.md, "Scaling out".

    .venv/bin/python -m bench.scaling [--messages 300000] [--failover-rate 2000]
        [--failover-s 45] [--spark-rate 1000] [--spark-seconds 30]
        [--only produce,ingest,failover,spark] [--no-write]

One embedded PostgreSQL and one three-node Kafka cluster (:mod:`infra.kafka_cluster`)
are started here; every phase uses fresh topics (3 partitions) and databases.

1. **produce**: ``--messages`` ticker messages, ``acks=all`` and idempotent like every
   producer of the project, into a topic of replication factor 1 and into one of
   replication factor 3 (``min.insync.replicas=2``) on the same cluster: the cost
   of replication on the producer side.
2. **ingest**: ``ingest-rawticker`` over the pre-loaded topic into an empty
   database, timed from its first committed row to the last, as (a) one process on
   the replicated topic, (b) a Bytewax cluster of two processes on it (``-i``/``-a``,
   shared recovery), (c) one process on the unreplicated topic. Each run reports
   the CPU seconds its processes used (``/proc``) and the messages per CPU-second
   after the first commit (start-up left out): the per-core figure that sizes a
   multi-host deployment, and the one a loaded machine disturbs least.
3. **failover**: one ingestion process while a producer writes ``--failover-rate``
   msgs/s into a replicated topic; a third of the way in, the broker leading the
   most partitions is SIGKILLed; two thirds in, it is started again. Reported: the
   time from the kill to the first committed row produced after the kill on a
   partition the dead broker led (the failover as the pipeline sees it), the
   longest pause between two commits of any rows, the producer's slowest
   acknowledgement, and whether every message produced is in the database.
4. **spark**: the ``predictions`` query at ``--spark-rate`` ticks/s with
   ``CRYPTOVIZ_SPARK_MASTER=local[2]``, then on a standalone master with one worker
   of 2 cores (:mod:`infra.spark_cluster`): tick produced -> its micro-batch
   committed (the measurement of :func:`bench.analytics.live`), and the batches'
   durations (offsets written -> commit written).

Two cores run everything here (three brokers, the flows, Spark, PostgreSQL): the
figures show the overheads of the clustered shape, not its speed-up.
Results: printed, and written to bench/results/scaling.json.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

from bench._commits import longest_pause
from bench._results import provenance, report
from bench.ingest import PAIRS, count, new_database, ticker_payload
from infra._procs import free_port, tree_cpu_seconds
from infra.cli import run_program
from infra.java import find_java
from infra.kafka_cluster import EmbeddedKafkaCluster
from infra.settings import Settings
from infra.spark_cluster import SparkClusterLayout, SparkStandalone
from infra.stack import temporary_stack
from infra.topics import ensure_topics

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "scaling.json"
PHASES = ("produce", "ingest", "failover", "spark")
PRODUCER = {"acks": "all", "enable.idempotence": True, "linger.ms": 20,
            "batch.num.messages": 10000, "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000}  # fmt: skip
"""The project's delivery guarantees (acks=all, idempotence), batched for a bulk load."""


def produce(bootstrap: str, topic: str, n: int) -> float:
    """Messages per second, from the first produce to the last acknowledgement."""
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER})
    failed: list[KafkaError] = []

    def acked(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(err)

    started = time.perf_counter()
    for i in range(n):
        payload = ticker_payload(i, 1_764_310_291.0 + i / 1000)
        while True:
            try:
                producer.produce(topic, payload, key=PAIRS[i % len(PAIRS)].encode(),
                                 on_delivery=acked)  # fmt: skip
                break
            except BufferError:
                producer.poll(0.05)
        if i % 20000 == 0:
            producer.poll(0)
    if producer.flush(300) or failed:
        raise RuntimeError(f"{topic}: {len(failed)} deliveries failed ({failed[:3]})")
    return n / (time.perf_counter() - started)


class Ingest:
    """``ingest-rawticker`` as ``processes`` processes of one Bytewax cluster."""

    def __init__(self, env: dict[str, str], topic: str, processes: int, state: Path,
                 extra: tuple[str, ...] = ()) -> None:  # fmt: skip
        addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
        cluster = ["-a", addresses, "--partitions", str(processes)] if processes > 1 else []
        env = {**env, "CRYPTOVIZ_STATE_DIR": str(state)}
        state.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        for index in range(processes):
            with (state / f"process-{index}.log").open("ab") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "flows.run", "ingest-rawticker", "--topic", topic,
                     "--metrics-port", str(free_port()),
                     *(["-i", str(index), *cluster] if cluster else []), *extra],
                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                ))  # fmt: skip
        self.state = state

    def cpu_seconds(self) -> float:
        return sum(tree_cpu_seconds(p.pid) for p in self.procs)

    def check(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"ingestion exited with {proc.returncode}; see {self.state}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def ingest(env: dict[str, str], url: str, topic: str, n: int, processes: int,
           state: Path) -> dict[str, float]:  # fmt: skip
    run = Ingest({**env, "DATABASE_URL": url}, topic, processes, state)
    started = time.perf_counter()
    first: float | None = None
    rows0, cpu0 = 0, 0.0
    try:
        while (done := count(url)) < n:
            if first is None and done > 0:
                # CPU from here on: the rate per CPU-second leaves out the start-up.
                first, rows0, cpu0 = time.perf_counter(), done, run.cpu_seconds()
            run.check()
            time.sleep(0.05)
        finished = time.perf_counter()
        cpu = run.cpu_seconds()
    finally:
        run.stop()
    assert first is not None
    rate = n / (finished - first)
    return {"msgs_per_s": round(rate), "msgs_per_s_incl_startup": round(n / (finished - started)),
            "cpu_s": round(cpu, 1),
            "msgs_per_cpu_s": round((n - rows0) / max(cpu - cpu0, 1e-3))}  # fmt: skip


class SteadyProducer(threading.Thread):
    """``rate`` ticker msgs/s until stopped; remembers each message's partition and ack delay."""

    def __init__(self, bootstrap: str, topic: str, rate: int, partitions: int) -> None:
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                                  "enable.idempotence": True, "linger.ms": 5,
                                  "log_level": 2})  # fmt: skip
        self.topic, self.rate, self.partitions = topic, rate, partitions
        self.stop_event = threading.Event()
        self.sent = 0
        self.failed = 0
        self.acks: list[tuple[float, float, int]] = []
        """(produced at, acknowledged at, partition), wall clock."""
        self.pair_partition: dict[str, int] = {}

    def _acked(self, produced: float, pair: str, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed += 1
            return
        partition = msg.partition()
        assert partition is not None
        self.acks.append((produced, time.time(), partition))
        self.pair_partition[pair] = partition

    def run(self) -> None:
        started = time.perf_counter()
        while not self.stop_event.is_set():
            due = int((time.perf_counter() - started) * self.rate) - self.sent
            for _ in range(max(0, min(due, 1000))):
                now = time.time()
                pair = PAIRS[self.sent % len(PAIRS)]
                # Pair k always to partition k % 3: every partition carries pairs, so the
                # dead leader's partitions can be told apart in the table by pair.
                self.producer.produce(
                    self.topic, ticker_payload(self.sent, now), key=pair.encode(),
                    partition=(self.sent % len(PAIRS)) % self.partitions,
                    on_delivery=functools.partial(self._acked, now, pair),
                )  # fmt: skip
                self.sent += 1
            self.producer.poll(0.002)
        self.producer.flush(120)


def failover(cluster: EmbeddedKafkaCluster, env: dict[str, str], admin: str, rate: int,
             seconds: float, state: Path) -> dict[str, Any]:  # fmt: skip
    topic = f"bench-failover-{uuid.uuid4().hex[:6]}"
    ensure_topics(cluster.bootstrap, (topic,), 3, 3)
    url = new_database(admin)
    run = Ingest({**env, "DATABASE_URL": url}, topic, 1, state)
    feed = SteadyProducer(cluster.bootstrap, topic, rate, 3)
    commits: list[tuple[float, int]] = []

    def watch(until: float) -> None:
        while time.time() < until:
            commits.append((time.time(), count(url)))
            run.check()
            time.sleep(0.05)

    try:
        feed.start()
        deadline = time.time() + 120
        while count(url) == 0:  # the schedule starts with the first commit
            run.check()
            if time.time() > deadline:
                raise RuntimeError(f"no row committed after 120 s; see {state}")
            time.sleep(0.05)
        begin = time.time()
        watch(begin + seconds / 3)
        victim = cluster.busiest_leader((topic,))
        led = {p for p, m in AdminClient({"bootstrap.servers": cluster.bootstrap})
               .list_topics(topic, timeout=10).topics[topic].partitions.items()
               if m.leader == victim}  # fmt: skip
        killed = time.time()
        cluster.kill(victim)
        watch(begin + 2 * seconds / 3)
        restarted = time.time()
        # Started on a thread: commits are watched while the broker comes back.
        back: list[float] = []

        def bring_back() -> None:
            cluster.restart(victim)
            back.append(time.time())

        restart = threading.Thread(target=bring_back)
        restart.start()
        watch(begin + seconds)
        restart.join(180)
        if not back:
            raise RuntimeError(f"broker {victim} did not come back; see {state}")
        feed.stop_event.set()
        feed.join(180)
        deadline = time.time() + 120
        while count(url) < feed.sent - feed.failed and time.time() < deadline:
            time.sleep(0.2)
        watch(time.time() + 1)
    finally:
        feed.stop_event.set()
        run.stop()
    victim_pairs = [pair for pair, p in feed.pair_partition.items() if p in led]
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM min(ingest_time)) FROM ticker_data "
            "WHERE pair = ANY(%s) AND timestamp > to_timestamp(%s)",
            (victim_pairs, killed),
        ).fetchone()
    first_after = float(row[0]) if row and row[0] is not None else None
    slowest = max((ack - made for made, ack, p in feed.acks if p in led and made >= killed),
                  default=None)  # fmt: skip
    rows = count(url)
    return {
        "victim_broker": victim,
        "partitions_led_by_victim": sorted(led),
        "kill_to_first_commit_on_its_partitions_s": (
            None if first_after is None else round(first_after - killed, 2)
        ),
        "longest_commit_pause_while_down_s": round(longest_pause(commits, killed, restarted), 2),
        "longest_commit_pause_before_kill_s": round(longest_pause(commits, begin, killed), 2),
        "slowest_ack_on_its_partitions_after_kill_s": (
            None if slowest is None else round(slowest, 2)
        ),
        "broker_restart_s": round(back[0] - restarted, 1),
        "produced": feed.sent,
        "delivery_failures": feed.failed,
        "rows": rows,
        "nothing_lost": rows == feed.sent - feed.failed and feed.failed == 0,
        "rate_msgs_per_s": rate,
    }


def spark_latency(bootstrap: str, env: dict[str, str], state: Path, pairs: list[str],
                  rate: int, seconds: float) -> dict[str, Any]:  # fmt: skip
    """Tick produced -> its micro-batch committed, and the batches' own durations.

    The measurement of :func:`bench.analytics.live` (which batch holds a tick from
    the checkpoint's offsets; the commit time from ``commits/N``), with room for a
    slow first batch: a standalone job also starts an executor JVM on the worker.
    """
    from bench.analytics import QUERY, Checkpoint, Feed, covers, latencies, start_job
    from spark_batch.settings import SparkSettings

    job = start_job(env, state / "spark-job.log")
    checkpoint = Checkpoint(SparkSettings.checkpoint_dir(Path(env["CRYPTOVIZ_STATE_DIR"]), QUERY))
    feed = Feed(bootstrap, pairs, checkpoint.scan)

    def exited() -> str | None:
        code = job.poll()
        return None if code is None else f"the Spark job exited with {code}; see {state}"

    def produce(duration: float, *, record: bool = False) -> None:
        if (reason := feed.run(rate, duration, record=record, stop=exited)) is not None:
            raise RuntimeError(reason)

    try:
        started = time.monotonic()
        while not checkpoint.batches:
            produce(1.0)
            if time.monotonic() - started > 600:
                raise RuntimeError(f"no batch committed after 600 s; see {state}")
        first = time.monotonic() - started
        # Catch up with what was produced during the start, then warm up (code
        # generation, state store): the measurement starts with steady batches.
        backlog, caught_up = feed.acked, time.monotonic() + 600
        while checkpoint.committed_total() < backlog:
            if time.monotonic() > caught_up:
                raise RuntimeError(f"the start-up backlog not processed in 600 s; see {state}")
            produce(1.0)
        produce(15.0)
        t0 = time.time()
        produce(seconds, record=True)
        deadline = time.monotonic() + 600
        while not covers(checkpoint.ordered(), feed.recorded):
            if time.monotonic() > deadline:
                raise RuntimeError(f"recorded ticks not committed after 600 s; see {state}")
            produce(1.0)
        lat = sorted(latencies(feed.recorded, checkpoint.ordered()))
        batches = [b for b in checkpoint.ordered() if b.planned >= t0]
    finally:
        if job.poll() is None:
            job.send_signal(signal.SIGTERM)
            try:
                job.wait(60)
            except subprocess.TimeoutExpired:
                job.kill()
                job.wait(10)
    durations = sorted(b.committed - b.planned for b in batches)

    def pct(values: list[float], q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)

    return {
        "first_batch_after_s": round(first, 1),
        "latency_p50_ms": pct(lat, 0.5),
        "latency_p99_ms": pct(lat, 0.99),
        "batch_duration_p50_ms": pct(durations, 0.5),
        "batch_duration_p99_ms": pct(durations, 0.99),
        "batches": len(batches),
        "ticks": len(lat),
    }


def spark(bootstrap: str, env: dict[str, str], admin: str, state: Path, rate: int,
          seconds: float, settings: Settings) -> dict[str, Any]:  # fmt: skip
    from bench.analytics import TOPIC
    from flows.producers.synthetic import synthetic_pairs

    pairs = synthetic_pairs(settings.coin_table(), 12)
    java = find_java()
    layout = SparkClusterLayout.with_free_ports(state / "spark-cluster")
    standalone = SparkStandalone(layout, java)
    out: dict[str, Any] = {}
    admin_client = AdminClient({"bootstrap.servers": bootstrap})
    try:
        standalone.start()
        for label, master in (("local", "local[2]"), ("standalone", layout.master_url)):
            # The job reads the fixed topic: a fresh one per run, so neither reads a backlog.
            if TOPIC in admin_client.list_topics(timeout=10).topics:
                admin_client.delete_topics([TOPIC], operation_timeout=30)[TOPIC].result()
                while TOPIC in admin_client.list_topics(timeout=10).topics:
                    time.sleep(0.5)
            ensure_topics(bootstrap, (TOPIC,), 3, 3)
            run_state = state / f"spark-{label}"
            run_state.mkdir(parents=True)
            job_env = {**env, **layout.env(java), "DATABASE_URL": new_database(admin),
                       "CRYPTOVIZ_STATE_DIR": str(run_state / "job"),
                       "CRYPTOVIZ_SPARK_MASTER": master}  # fmt: skip
            print(f"spark, {label} ({master}) at {rate} ticks/s ...", flush=True)
            out[label] = {
                "master": master,
                **spark_latency(bootstrap, job_env, run_state, pairs, rate, seconds),
            }
            print(f"  {out[label]}", flush=True)  # fmt: skip
    finally:
        standalone.stop()
    return out


def run(args: argparse.Namespace, state: Path, timed: Callable[[str], None]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    # The servers of `make up CLUSTER=1`: three Kafka nodes and PostgreSQL, always embedded.
    with temporary_stack(state, embedded=True, cluster=True, prepare=False) as stack:
        cluster = stack.kafka_cluster
        assert cluster is not None
        settings, bootstrap, admin = stack.settings, stack.bootstrap, stack.database_url
        timed("servers up")
        env = {**stack.env(), "PYTHONPATH": str(REPO)}
        topics = {rf: f"bench-rf{rf}-{uuid.uuid4().hex[:6]}" for rf in (1, 3)}
        for rf, topic in topics.items():
            ensure_topics(bootstrap, (topic,), 3, rf)
        if {"produce", "ingest"} & set(args.only):
            produced = {}
            for rf, topic in topics.items():
                print(f"produce {args.messages:,} into replication factor {rf} ...", flush=True)
                produced[rf] = produce(bootstrap, topic, args.messages)
                print(f"  {produced[rf]:,.0f} msgs/s", flush=True)
            results["produce_msgs_per_s"] = {f"rf{rf}": round(v) for rf, v in produced.items()}
            results["produce_rf3_over_rf1"] = round(produced[3] / produced[1], 3)
            timed("produce")
        if "ingest" in set(args.only):
            runs = {"rf3_1_process": (topics[3], 1), "rf3_2_processes": (topics[3], 2),
                    "rf1_1_process": (topics[1], 1)}  # fmt: skip
            ingested = {}
            for label, (topic, processes) in runs.items():
                print(f"ingest {label} ...", flush=True)
                ingested[label] = ingest(env, new_database(admin), topic, args.messages,
                                         processes, state / f"ingest-{label}")  # fmt: skip
                print(f"  {ingested[label]}", flush=True)
            results["ingest"] = ingested
            one, two = ingested["rf3_1_process"], ingested["rf3_2_processes"]
            results["ingest_2_over_1_process"] = round(two["msgs_per_s"] / one["msgs_per_s"], 3)
            results["ingest_rf3_over_rf1"] = round(
                one["msgs_per_s"] / ingested["rf1_1_process"]["msgs_per_s"], 3
            )
            timed("ingest")
        if "failover" in set(args.only):
            print(f"failover at {args.failover_rate} msgs/s over {args.failover_s:.0f} s ...",
                  flush=True)  # fmt: skip
            results["failover"] = failover(cluster, env, admin, args.failover_rate,
                                           args.failover_s, state / "failover")  # fmt: skip
            print(f"  {results['failover']}", flush=True)
            timed("failover")
        if "spark" in set(args.only):
            results["spark"] = spark(bootstrap, env, admin, state, args.spark_rate,
                                     args.spark_seconds, settings)  # fmt: skip
            print(f"  {results['spark']}", flush=True)
            timed("spark")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling")
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--failover-rate", type=int, default=2000)
    parser.add_argument("--failover-s", type=float, default=45.0)
    parser.add_argument("--spark-rate", type=int, default=1000)
    parser.add_argument("--spark-seconds", type=float, default=30.0)
    parser.add_argument("--only", default=",".join(PHASES), help="comma-separated phases")
    parser.add_argument("--keep-state", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="don't update bench/results")
    args = parser.parse_args(argv)
    args.only = [p for p in args.only.split(",") if p]
    if unknown := set(args.only) - set(PHASES):
        parser.error(f"unknown phases {sorted(unknown)}; choose from {', '.join(PHASES)}")
    state = Path(tempfile.mkdtemp(prefix="cryptoviz-bench-scaling-"))
    started = time.monotonic()
    load_before = os.getloadavg()
    durations: dict[str, float] = {}
    mark = [started]

    def timed(phase: str) -> None:
        durations[phase] = round(time.monotonic() - mark[0], 1)
        mark[0] = time.monotonic()

    try:
        results = run(args, state, timed)
    except BaseException:
        print(f"state and logs kept in {state}", file=sys.stderr)
        raise
    if not args.keep_state:
        shutil.rmtree(state, ignore_errors=True)
    result = {
        **results,
        "messages": args.messages,
        "phases": args.only,
        "phase_seconds": durations,
        "load_average_before": [round(x, 1) for x in load_before],
        "load_average_after": [round(x, 1) for x in os.getloadavg()],
        "command": "python -m bench.scaling " + " ".join(argv or sys.argv[1:]),
        **provenance(),
    }
    report(result, RESULTS, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(run_program("bench.scaling", main))
