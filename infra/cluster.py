"""The scaled-out shape of the embedded stack: ``make up CLUSTER=1``.

The programs of ``make up`` (:mod:`infra.programs`), scaled out on this one
machine, every node a real process of the real engine:

* **Kafka**: 3 KRaft nodes, each broker + controller (:mod:`infra.kafka_cluster`,
  started by the stack), topics with replication factor 3 and min.insync 2.
  512 MB heap each, 0.4-0.6 GB resident.
* **Ingestion flows**: 2 processes per flow, ``ingest-<topic>-0`` and ``-1``: one
  Bytewax cluster (``-i``/``-a``) sharing its recovery partitions, each process
  supervised and scraped on its own metrics port. ~0.1-0.2 GB each.
* **Spark**: ``spark-master`` and ``spark-worker-0`` (:mod:`infra.spark_cluster`),
  the job's driver submitting to the master. 256 MB heap per daemon (~0.2 GB
  resident); the worker offers 1536 MB to one 1 GB executor; the driver 1 GB.
* **API**: ``python -m api`` with 2 uvicorn workers, metrics summed, each relaying
  Kafka to its own clients. ~0.1-0.2 GB each.
* **Producers** as ``make up`` (one process each), one embedded **PostgreSQL**.

About 4.4 GB resident in all (measured: docs/DEPLOYMENT.md), a fifth of the 24 GiB
machine, leaving the rest for the test suite's own servers.

Ports are chosen free once and remembered under the state directory, so that a
node restarted by supervisord (or a second ``make up CLUSTER=1``) comes back
where its peers look for it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra._procs import sticky_ports
from infra.programs import Program
from infra.spark_cluster import SparkClusterLayout

FLOW_PROCESSES = 2
"""Processes of each ingestion flow's Bytewax cluster (and its recovery partitions)."""
API_WORKERS = 2
SPARK_WORKERS = 1
KAFKA_REPLICATION = 3
PROCESS_PORT_STEP = 10
"""Process ``i`` of a flow serves its metrics on the flow's port + ``10 * i``."""


def is_clustered(program: Program) -> bool:
    """The programs that run as a Bytewax cluster: the ingestion flows."""
    return program.module == "flows.run" and program.name.startswith("ingest-")


@dataclass(frozen=True, slots=True)
class ClusterShape:
    """Where the scaled-out shape's nodes listen, and what it adds to the programs."""

    spark: SparkClusterLayout
    flow_addresses: dict[str, str]
    """``-a`` of each ingestion flow's Bytewax cluster (``host:port;host:port``)."""

    @classmethod
    def for_state(cls, state_dir: Path, programs: Sequence[Program]) -> ClusterShape:
        spark_dir = state_dir / "spark"
        spark_dir.mkdir(parents=True, exist_ok=True)
        names = ("master", "master-ui", *(f"worker-{i}-ui" for i in range(SPARK_WORKERS)))
        ports = sticky_ports(spark_dir / "cluster-ports.json", names)
        layout = SparkClusterLayout(
            spark_dir,
            ports["master"],
            ports["master-ui"],
            tuple(ports[f"worker-{i}-ui"] for i in range(SPARK_WORKERS)),
        )
        flows = [p.name for p in programs if is_clustered(p)]
        recovery = state_dir / "recovery"
        recovery.mkdir(parents=True, exist_ok=True)
        processes = tuple(f"{flow}-{i}" for flow in flows for i in range(FLOW_PROCESSES))
        timely = sticky_ports(recovery / "cluster-ports.json", processes)
        addresses = {
            flow: ";".join(f"127.0.0.1:{timely[f'{flow}-{i}']}" for i in range(FLOW_PROCESSES))
            for flow in flows
        }
        return cls(layout, addresses)

    def programs(self, programs: Sequence[Program]) -> tuple[Program, ...]:
        """``programs`` scaled out: each ingestion flow as its processes, and Spark's
        master and worker before the job."""
        out: list[Program] = []
        for program in programs:
            if program.name in self.flow_addresses:
                out += [self._process(program, i) for i in range(FLOW_PROCESSES)]
                continue
            if program.module == "spark_batch.run":
                out += self._spark_daemons()
            out.append(program)
        return tuple(out)

    def _process(self, flow: Program, index: int) -> Program:
        port = None if flow.metrics_port is None else flow.metrics_port + PROCESS_PORT_STEP * index
        return Program(
            name=f"{flow.name}-{index}",
            module=flow.module,
            args=(*flow.args, "-i", str(index), "-a", self.flow_addresses[flow.name],
                  "--partitions", str(FLOW_PROCESSES)),
            description=f"{flow.description} (process {index} of {FLOW_PROCESSES})",
            metrics_port=port,
            profiles=flow.profiles,
        )  # fmt: skip

    def _spark_daemons(self) -> list[Program]:
        return [
            Program(name=name, module=argv[2], args=tuple(argv[3:]),
                    description=f"Spark standalone {name.removeprefix('spark-')}")
            for name, argv in self.spark.programs().items()
        ]  # fmt: skip

    def env(self, java: Path) -> dict[str, str]:
        """What the shape adds to every program's environment."""
        return {
            **self.spark.env(java),
            "CRYPTOVIZ_SPARK_MASTER": self.spark.master_url,
            "CRYPTOVIZ_API_WORKERS": str(API_WORKERS),
            "CRYPTOVIZ_KAFKA_REPLICATION": str(KAFKA_REPLICATION),
            "PYSPARK_PYTHON": sys.executable,
        }
