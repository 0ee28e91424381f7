"""An embedded Kafka cluster: three KRaft nodes on this machine, each a real broker process.

Every node is an :class:`~infra.kafka_broker.EmbeddedKafka` in combined mode (broker
and controller in one JVM): three JVMs give a three-voter controller quorum and
three brokers, where separate roles would need six JVMs for the same fault
tolerance on a 2-core machine. Losing any one node keeps both a controller
majority (2 of 3) and, with replication factor 3 and ``min.insync.replicas=2``
(:func:`~infra.topics.min_insync_for`, the brokers' default and set on every topic
the project creates), every partition writable with ``acks=all``.

Ports and the cluster id are kept in ``data_dir`` so a restarted node (or the
whole cluster) comes back on the same addresses with its log. Readiness is the
metadata listing every node as a broker, never a sleep.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._metadata import ClusterMetadata  # not re-exported in its stubs

from infra._console import StackError
from infra._procs import sticky_ports
from infra.kafka_broker import EmbeddedKafka, Quorum, new_cluster_id
from infra.topics import min_insync_for

NODES = 3
REPLICATION_FACTOR = 3
NODE_HEAP_MB = 512
"""Per node: the pipeline's traffic needs far less; three nodes fit in ~2.4 GB resident."""


class EmbeddedKafkaCluster:
    """Start, probe, fault and stop a local multi-node KRaft cluster."""

    def __init__(
        self,
        data_dir: Path,
        jars: Path,
        java: Path,
        *,
        nodes: int = NODES,
        heap_mb: int = NODE_HEAP_MB,
        replication_factor: int = REPLICATION_FACTOR,
    ) -> None:
        if not 1 <= replication_factor <= nodes:
            raise StackError(
                f"replication factor {replication_factor} does not fit a {nodes}-node cluster"
            )
        self.data_dir = data_dir
        self.replication_factor = replication_factor
        self.min_insync = min_insync_for(replication_factor)
        self.nodes: dict[int, EmbeddedKafka] = {
            n: EmbeddedKafka(data_dir / f"node-{n}", jars, java, heap_mb, node_id=n)
            for n in range(1, nodes + 1)
        }

    def _quorum(self) -> Quorum:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        names = tuple(f"{role}-{n}" for n in self.nodes for role in ("broker", "controller"))
        ports = sticky_ports(self.data_dir / "ports.json", names)
        id_file = self.data_dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(new_cluster_id())
        return Quorum(
            cluster_id=id_file.read_text().strip(),
            controllers={n: ports[f"controller-{n}"] for n in self.nodes},
            brokers={n: ports[f"broker-{n}"] for n in self.nodes},
            replication_factor=self.replication_factor,
            min_insync=self.min_insync,
        )

    @property
    def bootstrap(self) -> str:
        """Every node's address: clients keep working whichever node is down."""
        return ",".join(node.bootstrap for node in self.nodes.values())

    def start(self, timeout: float = 120.0) -> str:
        """Start every node (formatting storage on first use); return the bootstrap list."""
        quorum = self._quorum()
        for node in self.nodes.values():
            node.quorum = quorum
            node.launch()
        deadline = time.monotonic() + timeout
        for node in self.nodes.values():
            node.wait_ready(max(1.0, deadline - time.monotonic()))
        self.wait_brokers(len(self.nodes), max(1.0, deadline - time.monotonic()))
        return self.bootstrap

    def _admin(self) -> AdminClient:
        return AdminClient(
            {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000, "log_level": 0}
        )

    def _metadata(self, patience: float = 60.0) -> ClusterMetadata:
        """The cluster's metadata, asked again for up to ``patience`` seconds: on a starved
        machine (a chaos run beside other work) one 10 s question can go unanswered while
        the brokers are fine."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return self._admin().list_topics(timeout=10)
            except KafkaException:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)

    def brokers(self) -> list[int]:
        """Node ids the cluster's metadata lists as brokers now."""
        return sorted(self._metadata(patience=0).brokers)

    def wait_brokers(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        seen: list[int] = []
        while time.monotonic() < deadline:
            try:
                seen = self.brokers()
            except Exception:
                seen = []
            if len(seen) >= count:
                return
            time.sleep(0.3)
        raise StackError(f"Kafka cluster: {seen} registered after {timeout:.0f}s, wanted {count}")

    def leaders(self, topics: tuple[str, ...]) -> dict[int, int]:
        """Partitions of ``topics`` led by each node (nodes leading none are absent)."""
        meta = self._metadata()
        return dict(
            Counter(
                p.leader
                for name in topics
                if (t := meta.topics.get(name)) is not None
                for p in t.partitions.values()
                if p.leader >= 0
            )
        )

    def busiest_leader(self, topics: tuple[str, ...]) -> int:
        """The node leading the most partitions of ``topics`` (lowest id on a tie)."""
        counts = self.leaders(topics)
        if not counts:
            raise StackError(f"no partition of {', '.join(topics)} has a leader")
        return min(counts, key=lambda n: (-counts[n], n))

    def under_replicated(self, topics: tuple[str, ...]) -> list[str]:
        """``topic/partition`` whose in-sync replicas are fewer than its replicas."""
        meta = self._metadata()
        return [
            f"{name}/{pid}"
            for name in topics
            if (t := meta.topics.get(name)) is not None
            for pid, p in sorted(t.partitions.items())
            if len(p.isrs) < len(p.replicas)
        ]

    def wait_in_sync(self, topics: tuple[str, ...], timeout: float = 120.0) -> None:
        """Until every replica of ``topics`` is back in sync (before faulting another node)."""
        deadline = time.monotonic() + timeout
        lagging: list[str] = ["(not checked)"]
        while time.monotonic() < deadline:
            try:
                lagging = self.under_replicated(topics)
            except Exception as exc:
                lagging = [f"({type(exc).__name__})"]
            if not lagging:
                return
            time.sleep(0.5)
        raise StackError(f"Kafka cluster: still under-replicated after {timeout:.0f}s: {lagging}")

    def wait_topics(self, topics: tuple[str, ...], timeout: float = 60.0) -> None:
        """Until every node's metadata has ``topics`` with a leader for each partition.

        A topic is created by the controller; each broker learns it from the metadata
        log a moment later, and a client asking that broker meanwhile sees no partition.
        """
        deadline = time.monotonic() + timeout
        missing: list[str] = list(topics)
        while time.monotonic() < deadline:
            missing = []
            for node in self.nodes.values():
                try:
                    meta = AdminClient({"bootstrap.servers": node.bootstrap, "log_level": 0})
                    known = meta.list_topics(timeout=5).topics
                except Exception:
                    missing.append(f"node {node.node_id}")
                    continue
                missing += [
                    f"{t}@{node.node_id}"
                    for t in topics
                    if t not in known
                    or not known[t].partitions
                    or any(p.leader < 0 for p in known[t].partitions.values())
                ]
            if not missing:
                return
            time.sleep(0.3)
        raise StackError(f"Kafka cluster: topics not in every node's metadata: {missing}")

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would."""
        self.nodes[node_id].kill()

    def restart(self, node_id: int, timeout: float = 180.0) -> None:
        """Start one (killed or stopped) node again on its ports, with its log."""
        self.nodes[node_id].start(timeout)

    def stop_node(self, node_id: int, timeout: float = 30.0) -> None:
        """Stop one node gracefully (it hands its leaderships over first)."""
        self.nodes[node_id].stop(timeout)

    def pids(self) -> dict[int, int | None]:
        return {n: node.pid for n, node in self.nodes.items()}

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
