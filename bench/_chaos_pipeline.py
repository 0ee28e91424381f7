"""One run of the whole pipeline for the chaos suite, and the faults injected into it.

:class:`Pipeline` starts its own embedded Kafka and PostgreSQL (the faults stop
and restart them, so existing servers cannot be used), applies migrations, then
runs every worker under supervisord exactly as ``make up`` does: the four
ingestion flows, ``producer-replay`` and ``producer-alerts``, the Spark job and
the API. Supervisord restarts a killed worker; the servers are restarted here.
With ``cluster=True`` it is the scaled-out shape of ``make up CLUSTER=1``
(:mod:`infra.cluster`): three Kafka nodes, each ingestion flow as two processes,
the Spark master and worker, two API workers.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal

import msgspec

from flows.registry import INGEST_WORKERS
from infra._procs import descendants, free_port
from infra.kafka_cluster import EmbeddedKafkaCluster
from infra.programs import PROGRAMS as REGISTRY
from infra.settings import Settings, load_settings
from infra.stack import supervisor_config, temporary_stack

PRODUCERS: tuple[str, ...] = ("producer-replay", "producer-alerts")
SERVICES: tuple[str, ...] = ("spark-analytics", "api")
PROGRAMS: tuple[str, ...] = (*PRODUCERS, *INGEST_WORKERS, *SERVICES)
"""The programs of ``make up REPLAY=1`` but the synthetic market (the input is fixed)."""

FaultKind = Literal["kill", "kafka-restart", "postgres-stop"]


class Fault(msgspec.Struct, frozen=True):
    at_s: float
    """Seconds after the workers started."""
    kind: FaultKind
    target: str
    """Program killed, or the server."""


class FaultOutcome(msgspec.Struct):
    fault: Fault
    injected_at_s: float
    recovered_after_s: float
    """Until the program runs again under a new pid, or the server answers again."""


class Pipeline:
    def __init__(self, state_dir: Path, env: Mapping[str, str], *, cluster: bool = False) -> None:
        self.state_dir = state_dir
        self.cluster = cluster
        self.programs: tuple[str, ...] = PROGRAMS
        """The supervised programs' names (the scaled-out ones with ``cluster``)."""
        self.api_port = free_port()
        base = {k: v for k, v in os.environ.items()
                if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}  # fmt: skip
        base.update(env)
        base.update(CRYPTOVIZ_STATE_DIR=str(state_dir), CRYPTOVIZ_API_PORT=str(self.api_port))
        self._base_env = base
        self.settings: Settings = load_settings(base)
        self._servers = contextlib.ExitStack()
        self._supervisor: subprocess.Popen[bytes] | None = None
        self._conf: Path | None = None
        self.t0 = 0.0

    def __enter__(self) -> Pipeline:
        # Servers of its own (the faults stop and restart them), in the run's directory.
        self.stack = self._servers.enter_context(
            temporary_stack(self.state_dir, settings=self.settings, embedded=True,
                            cluster=self.cluster)
        )  # fmt: skip
        self.settings = self.stack.settings
        env = {**self.stack.env(), **{k: v for k, v in self._base_env.items()
                                      if k.startswith("CRYPTOVIZ_")}}  # fmt: skip
        env.update(KAFKA_BOOTSTRAP_SERVERS=self.bootstrap, DATABASE_URL=self.database_url)
        # Their own metrics ports: a `make up` may be running on the registry's.
        registered = tuple(REGISTRY[name] for name in (*INGEST_WORKERS, *PRODUCERS, *SERVICES))
        if self.stack.cluster is not None:
            registered = self.stack.cluster.programs(registered)
        self.programs = tuple(p.name for p in registered)
        programs = {
            p.name: p.command(metrics_port=free_port() if p.metrics_port else None)
            for p in registered
        }
        self._conf = supervisor_config(self.settings, env, programs)
        self._supervisor = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self._conf)],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
        )
        self.t0 = time.monotonic()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._supervisor is not None and self._supervisor.poll() is None:
            self._supervisor.send_signal(signal.SIGTERM)
            try:
                self._supervisor.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self._supervisor.kill()
        self._servers.close()

    @property
    def bootstrap(self) -> str:
        return self.stack.bootstrap

    @property
    def database_url(self) -> str:
        return self.stack.database_url

    @property
    def kafka_cluster(self) -> EmbeddedKafkaCluster:
        cluster = self.stack.kafka_cluster
        assert cluster is not None, "not a cluster pipeline"
        return cluster

    @property
    def spark_ui(self) -> str:
        assert self.stack.cluster is not None, "not a cluster pipeline"
        return self.stack.cluster.spark.master_ui

    @property
    def raw_topics(self) -> tuple[str, ...]:
        return self.settings.kafka.topics.raw

    @property
    def probe_topic(self) -> str:
        """Where the cluster scenario publishes live probe markers (no table reads it)."""
        return self.settings.kafka.topics.prediction

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def pid(self, program: str) -> int:
        """The program's pid now (0 when it is not running)."""
        assert self._conf is not None
        out = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self._conf), "pid",
             program],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        text = out.stdout.strip()
        return int(text) if text.isdigit() else 0

    def wait_running(self, program: str, timeout: float = 120.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid(program)
            if pid:
                return pid
            time.sleep(0.5)
        raise TimeoutError(f"{program} not running after {timeout:.0f} s")

    def inject(self, fault: Fault, postgres_down_s: float) -> FaultOutcome:
        started = time.monotonic()
        at = self.elapsed()
        if fault.kind == "kill":
            old = self.wait_running(fault.target)
            # The whole process tree: the Spark job's JVM dies with its driver.
            for pid in [old, *descendants(old)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 180
            while (pid := self.pid(fault.target)) in (0, old):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{fault.target} was not restarted")
                time.sleep(0.3)
        elif fault.kind == "kafka-restart":
            broker = self.stack.kafka
            assert broker is not None
            broker.kill()
            broker.start()
        else:
            postgres = self.stack.postgres
            assert postgres is not None
            postgres.stop(mode="immediate")
            time.sleep(postgres_down_s)
            started = time.monotonic()  # recovery counts from the restart
            postgres.start()
        return FaultOutcome(fault, round(at, 1), round(time.monotonic() - started, 1))

    def logs(self) -> Path:
        return self.state_dir / "logs"

    def restarts(self) -> dict[str, int]:
        """Times supervisord started each program again, whatever the reason."""
        text = (self.logs() / "supervisord.log").read_text(errors="replace")
        spawns = Counter(re.findall(r"spawned: '([^']+)'", text))
        return {name: spawns[name] - 1 for name in self.programs if spawns[name] > 1}


def fault_schedule(duration_s: float) -> list[Fault]:
    """Every fault once, spread over the replay: one kill per worker, then the servers."""
    kills = ("producer-replay", "ingest-rawticker", "producer-alerts", "ingest-rawtrade", "api",
             "ingest-rawarticle", "spark-analytics", "ingest-rawalert")  # fmt: skip
    start, end = 0.3 * duration_s, 0.6 * duration_s
    step = (end - start) / (len(kills) - 1)
    faults = [Fault(start + i * step, "kill", name) for i, name in enumerate(kills)]
    faults.append(Fault(0.65 * duration_s, "kafka-restart", "kafka"))
    faults.append(Fault(0.75 * duration_s, "postgres-stop", "postgres"))
    return faults
