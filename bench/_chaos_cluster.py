"""The faults a cluster exists to survive, for the chaos run's cluster scenario.

``python -m bench.chaos --cluster`` runs the scaled-out shape (``make up CLUSTER=1``:
three Kafka nodes, two processes per ingestion flow, a Spark master and worker, two
API workers) and, on the same recorded input as the single-node run, injects:

* ``broker-kill``: SIGKILL the broker leading the most partitions of the raw topics,
  start it again ``broker_down_s`` later, until every replica is back in sync;
* ``rolling-restart``: every broker in turn stopped (SIGTERM: it hands its
  leaderships over), started, and waited for until back in sync;
* ``flow-process-kill``: SIGKILL one process of an ingestion flow's Bytewax cluster;
  its peer exits too, supervisord restarts both;
* ``spark-worker-kill``: SIGKILL the Spark worker and its executors; supervisord
  restarts it, it registers again and the master gives the job a new executor;
* ``spark-master-kill``: SIGKILL the Spark master; restarted, it recovers the job
  and the worker from its recovery directory;
* ``api-worker-kill``: SIGKILL the uvicorn worker holding the live client's
  socket, while a probe client is connected to every other worker; uvicorn starts
  another. Markers published on the prediction topic (relayed live, ingested by
  nobody, so no table changes) must then reach every probe on its original
  connection, and the live client after it reconnected.

Every outcome records when the fault was injected, how long until the cluster was
whole again, and the longest pause in ingestion commits (rows of the market
tables, sampled every 0.25 s) over the fault's window: with one broker down the
pipeline must keep committing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

import msgspec
import psycopg
import websocket
from confluent_kafka import Producer

from bench._chaos_ws import LiveWatcher
from bench._commits import longest_pause
from infra._procs import descendants, pid_alive, tcp_server_side_owner
from infra.kafka_cluster import EmbeddedKafkaCluster
from infra.spark_cluster import master_status

ClusterFaultKind = Literal[
    "broker-kill",
    "rolling-restart",
    "flow-process-kill",
    "spark-worker-kill",
    "spark-master-kill",
    "api-worker-kill",
]
PROBE_SYMBOL = "BTC"
PROBE_PATH = f"/ws/prediction/{PROBE_SYMBOL}/"
"""Live channel of the cluster scenario's clients: the prediction topic is relayed live
and ingested by nobody, so probe markers published there change no table."""
BROKER_RESTART_S = 420.0
"""How long a restarted broker may take to rejoin before the run fails."""
MARKET_TABLES = ("ticker_data", "trade_data")
"""Rows the replay adds steadily: their count is the ingestion's commit clock."""


class ClusterFault(msgspec.Struct, frozen=True):
    at_s: float
    """Seconds after the workers started."""
    kind: ClusterFaultKind
    target: str
    """The program (or ``kafka`` for the brokers)."""


class ClusterOutcome(msgspec.Struct):
    fault: ClusterFault
    injected_at_s: float
    recovered_after_s: float
    """From the injection (a broker: from its restart) until the cluster is whole again."""
    longest_commit_pause_s: float
    """Longest time without a new market row over the fault's window."""
    detail: dict[str, object] = msgspec.field(default_factory=dict)


class ClusterRun(Protocol):
    """What the faults need from a running pipeline (:class:`bench._chaos_pipeline.Pipeline`)."""

    api_port: int

    @property
    def bootstrap(self) -> str: ...

    @property
    def probe_topic(self) -> str: ...

    @property
    def kafka_cluster(self) -> EmbeddedKafkaCluster: ...

    @property
    def spark_ui(self) -> str: ...

    @property
    def raw_topics(self) -> tuple[str, ...]: ...

    def elapsed(self) -> float: ...

    def pid(self, program: str) -> int: ...

    def wait_running(self, program: str, timeout: float = 120.0) -> int: ...


class CommitWatch:
    """Samples the market tables' row count every ``every_s`` on a thread."""

    def __init__(self, database_url: str, every_s: float = 0.25) -> None:
        self.url = database_url
        self.every_s = every_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="commit-watch", daemon=True)

    def start(self) -> CommitWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def pause(self, start: float, end: float) -> float:
        """Longest pause in commits between the monotonic times ``start`` and ``end``."""
        return round(longest_pause(list(self.samples), start, end), 2)

    def rows(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def _run(self) -> None:
        query = "SELECT " + " + ".join(f"(SELECT count(*) FROM {t})" for t in MARKET_TABLES)
        conn: psycopg.Connection[tuple[int]] | None = None
        while not self._stop.wait(self.every_s):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=3)
                row = conn.execute(query).fetchone()
                if row is not None:
                    self.samples.append((time.monotonic(), int(row[0])))
            except psycopg.Error:
                conn = None  # the database is away: no sample, which reads as a pause
        if conn is not None:
            conn.close()


def _kill_tree(pid: int) -> None:
    for victim in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _until(check: Callable[[], bool], timeout: float, what: str,
           meanwhile: Callable[[], None] = lambda: time.sleep(0.3)) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        meanwhile()
    raise TimeoutError(f"{what}: not after {timeout:.0f} s")


def _restarted(run: ClusterRun, program: str, old: int, timeout: float = 240.0) -> int:
    _until(lambda: run.pid(program) not in (0, old), timeout, f"{program} restarted")
    return run.pid(program)


def _spark_whole(run: ClusterRun) -> bool:
    status = master_status(run.spark_ui)
    workers = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
    return status.get("status") == "ALIVE" and bool(workers) and bool(status.get("activeapps"))


def api_workers(run: ClusterRun) -> list[int]:
    """The uvicorn worker processes of the ``api`` program: its children started by
    multiprocessing's spawn (not its resource tracker)."""
    parent = run.pid("api")
    workers = []
    for pid in descendants(parent) if parent else []:
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"spawn_main" in command and pid_alive(pid):
                workers.append(pid)
    return workers


def inject(
    run: ClusterRun,
    fault: ClusterFault,
    watch: CommitWatch,
    *,
    broker_down_s: float,
    live: LiveWatcher,
) -> ClusterOutcome:
    """Inject ``fault`` and wait until the cluster is whole again.

    ``live``: the run's live client (on :data:`PROBE_PATH`); ``api-worker-kill``
    kills the worker serving it.
    """
    at = run.elapsed()
    started = time.monotonic()
    window_start = started
    detail: dict[str, object] = {}
    raw = run.raw_topics
    cluster = run.kafka_cluster
    if fault.kind == "broker-kill":
        victim = cluster.busiest_leader(raw)
        detail["broker"] = victim
        detail["leaders_before"] = {str(k): v for k, v in cluster.leaders(raw).items()}
        cluster.kill(victim)
        time.sleep(broker_down_s)
        window_end = started = time.monotonic()  # recovery counts from the restart
        detail["rows_while_down"] = watch.rows() - _rows_at(watch, window_start)
        # A broker killed mid-write recovers its logs first; on a starved machine the
        # JVM took over 180 s (the default) to answer at all.
        cluster.restart(victim, timeout=BROKER_RESTART_S)
        cluster.wait_in_sync(raw)
    elif fault.kind == "rolling-restart":
        took: dict[str, float] = {}
        for node in sorted(cluster.nodes):
            t = time.monotonic()
            cluster.stop_node(node)
            cluster.restart(node, timeout=BROKER_RESTART_S)
            cluster.wait_in_sync(raw)
            took[str(node)] = round(time.monotonic() - t, 1)
        detail["per_broker_s"] = took
        window_end = time.monotonic()
    elif fault.kind == "flow-process-kill":
        flow = fault.target.rsplit("-", 1)[0]
        peers = [p for p in (f"{flow}-0", f"{flow}-1") if p != fault.target]
        old = {p: run.wait_running(p) for p in (fault.target, *peers)}
        _kill_tree(old[fault.target])
        for program, pid in old.items():
            _restarted(run, program, pid)
        detail["restarted"] = sorted(old)
        window_end = time.monotonic()
    elif fault.kind in ("spark-worker-kill", "spark-master-kill"):
        old_pid = run.wait_running(fault.target)
        _kill_tree(old_pid)
        _restarted(run, fault.target, old_pid)
        _until(lambda: _spark_whole(run), 300, "the Spark master with a worker and the job")
        window_end = time.monotonic()
    else:  # api-worker-kill
        workers = api_workers(run)
        port = live.local_port
        owner = tcp_server_side_owner(run.api_port, port, workers) if port else None
        victim = owner or workers[0]
        others = [w for w in workers if w != victim]
        probes = Probes(_probe_clients(run, others))
        connections = len(live.connections)
        _kill_tree(victim)
        _until(lambda: len(api_workers(run)) >= len(workers) and victim not in api_workers(run),
               120, "uvicorn to replace the worker", probes.read)  # fmt: skip
        window_end = time.monotonic()
        kept, reconnected = _markers_through(run, probes, live, connections)
        detail.update(survivors_kept_receiving=kept, live_client_reconnected=reconnected,
                      workers=len(workers), victim_was_live=owner is not None,
                      probes=len(probes.sockets), probes_lost=probes.lost)  # fmt: skip
    return ClusterOutcome(
        fault=fault,
        injected_at_s=round(at, 1),
        recovered_after_s=round(time.monotonic() - started, 1),
        longest_commit_pause_s=watch.pause(window_start, window_end),
        detail=detail,
    )


def _rows_at(watch: CommitWatch, moment: float) -> int:
    rows = 0
    for t, count in watch.samples:
        if t > moment:
            break
        rows = count
    return rows


def _probe_clients(run: ClusterRun, workers: list[int]) -> dict[int, websocket.WebSocket]:
    """One live client held on each of ``workers`` (the kernel picks; extra ones closed)."""
    url = f"ws://127.0.0.1:{run.api_port}{PROBE_PATH}"
    held: dict[int, websocket.WebSocket] = {}
    for _ in range(40):
        if len(held) == len(workers):
            break
        ws = websocket.create_connection(url, timeout=5)
        assert ws.sock is not None
        owner = tcp_server_side_owner(run.api_port, ws.sock.getsockname()[1], workers)
        if owner is not None and owner not in held:
            held[owner] = ws
        else:
            ws.close()
    return held


_MARKER = re.compile(r"chaos-probe-[0-9a-f]{8}")


class Probes:
    """Live clients held on the surviving API workers, read all along on a thread.

    websocket-client answers the server's pings only inside ``recv``, and uvicorn
    closes a socket whose ping went unanswered for 20 s: probes read from the
    harness's own loop went unread while that loop waited on /proc scans and Kafka
    flushes on a starved machine, and were closed by their own, healthy worker,
    which is not the fault under test. A thread keeps reading them.
    """

    def __init__(self, sockets: dict[int, websocket.WebSocket]) -> None:
        self.sockets = sockets
        self.lost: dict[str, str] = {}
        """Worker pid -> why its probe's connection ended (and whether the worker lived)."""
        self._markers: dict[int, set[str]] = {owner: set() for owner in sockets}
        self._marker: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        for ws in sockets.values():
            ws.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="chaos-probes", daemon=True)
        self._thread.start()

    @property
    def seen(self) -> set[int]:
        """Workers whose probe received the current marker."""
        with self._lock:
            marker = self._marker
            return {o for o, got in self._markers.items() if marker is not None and marker in got}

    def _run(self) -> None:
        while not self._stop.is_set():
            if all(str(owner) in self.lost for owner in self.sockets):
                self._stop.wait(0.2)
                continue
            for owner, ws in self.sockets.items():
                if str(owner) in self.lost:
                    continue
                try:
                    text = str(ws.recv())
                except websocket.WebSocketTimeoutException:
                    continue
                except (websocket.WebSocketException, OSError) as exc:
                    if self._stop.is_set():
                        return
                    alive = "alive" if pid_alive(owner) else "gone"
                    self.lost[str(owner)] = f"{type(exc).__name__}: {exc} (worker {alive})"
                    continue
                found = _MARKER.findall(text)
                if found:
                    with self._lock:
                        self._markers[owner].update(found)

    def read(self, marker: str | None = None) -> None:
        """Wait a moment for the reading thread; from now on look for ``marker``."""
        if marker is not None:
            with self._lock:
                self._marker = marker
        time.sleep(0.3)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for ws in self.sockets.values():
            with contextlib.suppress(Exception):
                ws.close()


def _markers_through(
    run: ClusterRun,
    probes: Probes,
    live: LiveWatcher,
    connections: int,
    timeout: float = 90.0,
) -> tuple[bool, bool]:
    """Publish markers on the prediction topic until every probe got one on its original
    connection and the live client got one on a new connection (or ``timeout``).

    Returns (every probe received, the live client reconnected and received).
    """
    producer = Producer({"bootstrap.servers": run.bootstrap, "acks": "all",
                         "enable.idempotence": True, "log_level": 2})  # fmt: skip
    deadline = time.monotonic() + timeout
    marker = f"chaos-probe-{uuid.uuid4().hex[:8]}"  # the shape _MARKER finds

    def reconnected() -> bool:
        return len(live.connections) > connections and live.connections[-1] > 0

    try:
        while time.monotonic() < deadline:
            producer.produce(
                run.probe_topic,
                key=PROBE_SYMBOL.encode(),
                value=json.dumps({"crypto_symbol": PROBE_SYMBOL, "probe": marker}),
            )
            producer.flush(10)
            probes.read(marker)
            if probes.lost or (probes.seen >= set(probes.sockets) and reconnected()):
                break
    finally:
        probes.close()
    kept = bool(probes.sockets) and not probes.lost and probes.seen >= set(probes.sockets)
    return kept, reconnected()


def cluster_schedule(duration_s: float) -> list[ClusterFault]:
    """Every cluster fault once, spread over the replay; each waits for the one before
    to be recovered from. The broker outage comes first (its commit pauses only mean
    something while the replay is producing), the API kill soon after."""
    return [
        ClusterFault(0.15 * duration_s, "broker-kill", "kafka"),
        ClusterFault(0.35 * duration_s, "api-worker-kill", "api"),
        ClusterFault(0.45 * duration_s, "flow-process-kill", "ingest-rawtrade-1"),
        ClusterFault(0.55 * duration_s, "spark-worker-kill", "spark-worker-0"),
        ClusterFault(0.65 * duration_s, "spark-master-kill", "spark-master"),
        ClusterFault(0.75 * duration_s, "rolling-restart", "kafka"),
    ]
