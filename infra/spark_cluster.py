"""A Spark standalone cluster on this machine: a master and workers from the ``pyspark`` package.

    python -m infra.spark_cluster master [--host H --port 7077 --webui-port 8080]
    python -m infra.spark_cluster worker spark://H:7077 [--cores N --memory 1536m ...]

The daemons are Spark's own (``spark-class org.apache.spark.deploy.master.Master``,
``...deploy.worker.Worker``) from the ``bin/`` of the installed ``pyspark``, so they
are exactly the version the job links against; the command above replaces itself
with ``spark-class`` (same process, so a supervisor's signals reach the JVM) and
passes its arguments on. :class:`SparkClusterLayout` says how they run on this
machine (commands, environment, ports, sizes); :class:`SparkStandalone` runs them
as child processes (tests, benchmarks), and the clustered compose file runs the
same commands as services. The analytics job joins the cluster by its master URL
(``CRYPTOVIZ_SPARK_MASTER=spark://127.0.0.1:<port>``).

The master keeps its state (registered workers and applications) in a recovery
directory (``spark.deploy.recoveryMode=FILESYSTEM``): a restarted master takes
the running job and the workers back instead of forgetting them, so the job
survives a master crash without restarting. Executors die with their worker
(they watch it); the job's tasks wait for a new executor and the streaming
queries go on from their checkpoints.

On one machine every node reads the checkpoints in ``<state>/spark/checkpoints``
directly. On several hosts that directory (and the master's recovery directory,
for a standby master) must be shared storage mounted at the same path everywhere
(NFS, or an ``hdfs://``/``s3a://`` checkpoint location).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from infra._console import StackError
from infra._procs import descendants, die_with_parent, free_port, log_tail, pid_alive, terminate

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DAEMONS = {"master": MASTER_CLASS, "worker": WORKER_CLASS}
DAEMON_MEMORY = "256m"
"""Heap of the master and of each worker daemon (they only schedule; executors do the work)."""
WORKER_MEMORY = "1536m"
"""What one worker offers its executors: one executor of ``spark.executor.memory`` (1g)."""
WORKER_CORES = 2


def spark_home() -> Path:
    """The installed ``pyspark`` package: it carries ``bin/spark-class`` and Spark's jars."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class SparkClusterLayout:
    """Ports, directories and sizes of one local standalone cluster, and its commands."""

    state_dir: Path
    """``<state>/spark``: the master's recovery data and the workers' work dirs live here."""
    master_port: int
    master_ui_port: int
    worker_ui_ports: tuple[int, ...]
    worker_cores: int = WORKER_CORES
    worker_memory: str = WORKER_MEMORY
    daemon_memory: str = DAEMON_MEMORY
    host: str = "127.0.0.1"

    @classmethod
    def with_free_ports(cls, state_dir: Path, workers: int = 1) -> SparkClusterLayout:
        return cls(state_dir, free_port(), free_port(), tuple(free_port() for _ in range(workers)))

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"

    @property
    def master_ui(self) -> str:
        return f"http://{self.host}:{self.master_ui_port}"

    @property
    def worker_names(self) -> tuple[str, ...]:
        return tuple(f"spark-worker-{i}" for i in range(len(self.worker_ui_ports)))

    def master_command(self) -> list[str]:
        return [sys.executable, "-m", "infra.spark_cluster", "master",
                "--host", self.host, "--port", str(self.master_port),
                "--webui-port", str(self.master_ui_port)]  # fmt: skip

    def worker_command(self, index: int) -> list[str]:
        work = self.state_dir / "work" / f"worker-{index}"
        return [sys.executable, "-m", "infra.spark_cluster", "worker", self.master_url,
                "--host", self.host, "--cores", str(self.worker_cores),
                "--memory", self.worker_memory, "--work-dir", str(work),
                "--webui-port", str(self.worker_ui_ports[index])]  # fmt: skip

    def env(self, java: Path) -> dict[str, str]:
        """Environment of the daemons (and of the job's driver: ``SPARK_LOCAL_IP``)."""
        recovery = self.state_dir / "master-recovery"
        return {
            "SPARK_HOME": str(spark_home()),
            "JAVA_HOME": str(java.resolve().parent.parent),
            "SPARK_LOCAL_IP": self.host,
            "SPARK_NO_DAEMONIZE": "1",
            "SPARK_DAEMON_MEMORY": self.daemon_memory,
            "SPARK_LOG_DIR": str(self.state_dir / "logs"),
            "SPARK_MASTER_OPTS": "-Dspark.deploy.recoveryMode=FILESYSTEM "
            f"-Dspark.deploy.recoveryDirectory={recovery}",
            # Executors start Python workers for the UDFs with the job's interpreter.
            "PYSPARK_PYTHON": sys.executable,
        }

    def programs(self) -> dict[str, list[str]]:
        """``name -> argv`` of the master and every worker, for a supervisor."""
        return {
            "spark-master": self.master_command(),
            **{name: self.worker_command(i) for i, name in enumerate(self.worker_names)},
        }


def master_status(ui: str, timeout: float = 5.0) -> dict[str, Any]:
    """The master's own JSON status (``/json/``): its state, workers and applications."""
    if not ui.startswith("http://"):
        raise ValueError(f"not a Spark master UI address: {ui!r}")
    with urllib.request.urlopen(f"{ui}/json/", timeout=timeout) as response:  # noqa: S310
        status: dict[str, Any] = json.loads(response.read())
    return status


def alive_workers(ui: str) -> list[dict[str, Any]]:
    return [w for w in master_status(ui).get("workers", []) if w.get("state") == "ALIVE"]


def wait_workers(ui: str, count: int, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Until the master (answering at ``ui``) has ``count`` ALIVE workers; returns them."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            seen = alive_workers(ui)
        except OSError:
            seen = []
        if len(seen) >= count:
            return seen
        time.sleep(0.5)
    raise StackError(f"Spark master at {ui}: {len(seen)} workers alive after {timeout:.0f}s")


@dataclass
class SparkStandalone:
    """Runs a :class:`SparkClusterLayout` as child processes (no supervisor)."""

    layout: SparkClusterLayout
    java: Path
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def _launch(self, name: str, command: list[str]) -> None:
        logs = self.layout.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{name}.out").open("ab") as log:
            self._procs[name] = subprocess.Popen(
                command,
                env={**os.environ, **self.layout.env(self.java)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (prctl only; see infra._procs)
            )

    def start(self, timeout: float = 180.0) -> str:
        """Start the master, then the workers; return the master URL once all registered."""
        for name, command in self.layout.programs().items():
            self._launch(name, command)
        self.wait_ready(timeout)
        return self.layout.master_url

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        count = len(self.layout.worker_ui_ports)
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    log = self.layout.state_dir / "logs" / f"{name}.out"
                    raise StackError(f"{name} exited with {proc.returncode}:\n{log_tail(log)}")
            try:
                if len(alive_workers(self.layout.master_ui)) >= count:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise StackError(f"Spark cluster not ready after {timeout:.0f}s")

    def pid(self, name: str) -> int | None:
        proc = self._procs.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    def kill(self, name: str) -> None:
        """SIGKILL one daemon and every process it started (a worker's executors)."""
        proc = self._procs.pop(name)
        for pid in [proc.pid, *descendants(proc.pid)]:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()

    def restart(self, name: str) -> None:
        self._launch(name, self.layout.programs()[name])

    def stop(self) -> None:
        # Workers first: a worker outliving its master only retries the connection.
        for name in sorted(self._procs, key=lambda n: n == "spark-master"):
            proc = self._procs.pop(name)
            children = descendants(proc.pid)
            terminate(proc.pid, timeout=20)
            proc.wait()
            for child in children:
                terminate(child, timeout=5)


def main(argv: list[str] | None = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in DAEMONS:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        raise SystemExit(2)
    spark_class = str(spark_home() / "bin" / "spark-class")
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_NO_DAEMONIZE": "1"}
    # In the foreground, as this very process: the supervisor's signals reach the JVM.
    os.execve(spark_class, [spark_class, DAEMONS[args[0]], *args[1:]], env)  # noqa: S606


if __name__ == "__main__":
    main()
