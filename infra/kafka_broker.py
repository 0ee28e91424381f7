"""An embedded Apache Kafka broker (KRaft, combined broker+controller).

The broker runs from the pinned jar set ``infra/jars/kafka`` on the local Java.
Its log lives in ``data_dir`` so a restart keeps every message; the storage is
formatted once with Kafka's own ``StorageTool``. Readiness is a real metadata
request, never a sleep. Alone it is a one-node cluster; given a :class:`Quorum`
it is one node of :class:`infra.kafka_cluster.EmbeddedKafkaCluster`.
"""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from infra._console import StackError
from infra._procs import die_with_parent, log_tail, pid_alive, read_pid, sticky_ports, terminate

_LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
logger.server.name = org.apache.kafka
logger.server.level = warn
"""


_QUORUM_TIMEOUTS = (
    # Raft's defaults (2 s fetch, 1 s election) assume controllers that answer in
    # milliseconds; three JVMs sharing two busy cores miss them, and the quorum then
    # keeps electing leaders and never settles. A controller's loss is noticed a few
    # seconds later instead; a broker's (the session timeout, 9 s) is unchanged.
    "controller.quorum.fetch.timeout.ms=8000",
    "controller.quorum.election.timeout.ms=4000",
)


@dataclass(frozen=True, slots=True)
class Quorum:
    """What the nodes of a multi-node cluster share: the voters, the id, the replication."""

    cluster_id: str
    controllers: dict[int, int]
    """Controller port of every voter, by node id (a static voter set)."""
    brokers: dict[int, int]
    """Client (PLAINTEXT) port of every node, by node id."""
    replication_factor: int
    """Of the internal topics (offsets, transactions), and the default of new topics."""
    min_insync: int

    def voters(self) -> str:
        return ",".join(f"{n}@127.0.0.1:{p}" for n, p in sorted(self.controllers.items()))


SINGLE_NODE = 1


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class EmbeddedKafka:
    """Start, probe and stop one local KRaft node (broker and controller)."""

    def __init__(
        self,
        data_dir: Path,
        jars: Path,
        java: Path,
        heap_mb: int = 512,
        *,
        node_id: int = SINGLE_NODE,
        quorum: Quorum | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.jars = jars
        self.java = java
        self.heap_mb = heap_mb
        self.node_id = node_id
        self.quorum = quorum
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.controller_port = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    def _write_config(self) -> Path:
        q = self.quorum
        if q is None:
            ports = sticky_ports(self.data_dir / "ports.json", ("broker", "controller"))
            self.port, self.controller_port = ports["broker"], ports["controller"]
            voters = f"{self.node_id}@127.0.0.1:{self.controller_port}"
            replication, min_insync = 1, 1
        else:
            self.port, self.controller_port = q.brokers[self.node_id], q.controllers[self.node_id]
            voters, replication, min_insync = q.voters(), q.replication_factor, q.min_insync
        props = self.data_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node_id}",
                    # A static voter set: the controller port may change between runs.
                    f"controller.quorum.voters={voters}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.data_dir / 'log'}",
                    "num.partitions=3",
                    f"default.replication.factor={replication}",
                    f"min.insync.replicas={min_insync}",
                    f"offsets.topic.replication.factor={replication}",
                    f"transaction.state.log.replication.factor={replication}",
                    f"transaction.state.log.min.isr={min_insync}",
                    f"share.coordinator.state.topic.replication.factor={replication}",
                    f"share.coordinator.state.topic.min.isr={min_insync}",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    # Room for the hostile-input suite's large payloads (they are rejected later).
                    "message.max.bytes=16777216",
                    "log.retention.hours=168",
                    # The cleaner allocates its dedupe buffer (128 MiB by default) at start:
                    # a 256 MiB test broker died of it. Only the small compacted internal
                    # topics are cleaned here, and 16 MiB holds ~500k keys per pass.
                    "log.cleaner.dedupe.buffer.size=16777216",
                    *([] if q is None else _QUORUM_TIMEOUTS),
                ]
            )
            + "\n"
        )
        (self.data_dir / "log4j2.properties").write_text(_LOG4J.format(log=self.log_file))
        return props

    def _classpath(self) -> str:
        return f"{self.jars}/*"

    def _format_once(self, props: Path) -> None:
        if (self.data_dir / "log" / "meta.properties").exists():
            return
        cluster_id = new_cluster_id() if self.quorum is None else self.quorum.cluster_id
        result = subprocess.run(
            [
                str(self.java),
                "-cp",
                self._classpath(),
                "kafka.tools.StorageTool",
                "format",
                # "=" form: a base64 id may start with "-" and read as an option.
                f"--cluster-id={cluster_id}",
                "-c",
                str(props),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: {result.stdout}{result.stderr}")

    def _kill_stale(self) -> None:
        pid = read_pid(self._pid_file)
        if pid is not None and pid_alive(pid):
            terminate(pid, timeout=20)

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker (formatting storage on first use); return its bootstrap address."""
        self.launch()
        self.wait_ready(timeout)
        return self.bootstrap

    def launch(self) -> None:
        """Start the process without waiting: a cluster's nodes only get ready together."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._kill_stale()
        props = self._write_config()
        self._format_once(props)
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    str(self.java),
                    f"-Xmx{self.heap_mb}m",
                    f"-Xms{min(self.heap_mb, 256)}m",
                    "-XX:+UseG1GC",
                    f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                    "-cp",
                    self._classpath(),
                    "kafka.Kafka",
                    str(props),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the launcher, which stops us in order
                # Only a prctl() call on an already-loaded libc: safe after fork.
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )
        self._pid_file.write_text(str(self._proc.pid))

    def wait_ready(self, timeout: float) -> None:
        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000, "log_level": 0}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise StackError(
                    f"Kafka broker exited with code {self._proc.returncode}; "
                    f"last log lines:\n{log_tail(self.log_file)}"
                )
            try:
                meta = admin.list_topics(timeout=2)
            except Exception:
                time.sleep(0.3)
                continue
            # Ready: this node serves as a broker and the quorum has elected a controller.
            controller = meta.controller_id is not None and meta.controller_id >= 0
            if self.node_id in meta.brokers and controller:
                return
            time.sleep(0.3)
        raise StackError(
            f"Kafka broker not ready after {timeout:.0f}s; log: {self.log_file}\n"
            + log_tail(self.log_file)
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; :meth:`start` brings it back on its ports."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._proc = None
        self._pid_file.unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker gracefully (SIGTERM), killing it after ``timeout`` seconds."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            terminate(self._proc.pid, timeout)
            self._proc.wait()
        self._proc = None
        self._pid_file.unlink(missing_ok=True)
