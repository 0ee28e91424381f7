"""The local stack: embedded Kafka and PostgreSQL, migrations, topics, supervised workers.

    python -m infra.stack up          # everything, until Ctrl-C (what `make up` runs)
    python -m infra.stack services    # only Kafka + PostgreSQL + migrations + topics
    python -m infra.stack migrate     # only the migrations

With ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` set, those servers are used
and nothing is started for them. Workers run under supervisord (restarted when
they crash, reported on the console) with their logs in ``<state>/logs/``.
Exit statuses: :mod:`infra.cli` (``up`` and ``services`` stopped by Ctrl-C exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from infra._console import step
from infra.cli import ExitCode, run_program
from infra.settings import Settings, load_settings

if TYPE_CHECKING:
    from infra.kafka_broker import EmbeddedKafka
    from infra.postgres_server import EmbeddedPostgres


class Stack:
    """Starts the servers the settings do not point at, in order, and stops them in reverse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._kafka: object | None = None
        self._postgres: object | None = None

    def start(self, *, kafka: bool = True) -> Settings:
        """Start what is needed; return settings pointing at the running servers."""
        from infra.jars import ensure_jars
        from infra.java import find_java
        from infra.kafka_broker import EmbeddedKafka
        from infra.postgres_server import EmbeddedPostgres

        s = self.settings
        bootstrap = s.kafka.bootstrap_servers
        database = s.database.url
        if bootstrap is None and kafka:
            java = find_java()
            jars = ensure_jars("kafka", s.cache_dir)
            step("starting Kafka broker (KRaft, embedded)")
            broker = EmbeddedKafka(s.state_dir / "kafka", jars, java)
            self._kafka = broker
            bootstrap = broker.start()
            step(f"Kafka ready at {bootstrap}")
        elif bootstrap is not None:
            step(f"using Kafka at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
        if database is None:
            step("starting PostgreSQL (embedded)")
            postgres = EmbeddedPostgres(s.state_dir / "postgres")
            self._postgres = postgres
            database = postgres.start()
            step(f"PostgreSQL ready at {database}")
        else:
            step("using PostgreSQL from DATABASE_URL")
        self.settings = s.with_servers(kafka=bootstrap, database=database)
        return self.settings

    def prepare(self) -> None:
        """Apply migrations and create topics on the running servers."""
        from infra.migrate import migrate
        from infra.topics import ensure_topics

        s = self.settings
        assert s.database.url is not None
        assert s.kafka.bootstrap_servers is not None
        step("applying database migrations")
        report = migrate(s.database.url)
        applied = ", ".join(f"{m.version:04d}_{m.name}" for m in report.applied) or "none"
        step(
            f"database schema at version {report.current_version:04d} "
            f"({report.flavour}; applied now: {applied})"
        )
        created = ensure_topics(
            s.kafka.bootstrap_servers,
            s.kafka.topics.all,
            s.kafka.partitions,
            s.kafka.replication_factor,
        )
        step(
            f"Kafka topics ready ({', '.join(s.kafka.topics.all)}; "
            f"{len(created)} created, {s.kafka.partitions} partitions each)"
        )

    @property
    def kafka(self) -> EmbeddedKafka | None:
        """The broker this stack started (``None`` when it uses KAFKA_BOOTSTRAP_SERVERS)."""
        from infra.kafka_broker import EmbeddedKafka

        return self._kafka if isinstance(self._kafka, EmbeddedKafka) else None

    @property
    def postgres(self) -> EmbeddedPostgres | None:
        """The server this stack started (``None`` when it uses DATABASE_URL)."""
        from infra.postgres_server import EmbeddedPostgres

        return self._postgres if isinstance(self._postgres, EmbeddedPostgres) else None

    def stop(self) -> None:
        from infra.kafka_broker import EmbeddedKafka
        from infra.postgres_server import EmbeddedPostgres

        if isinstance(self._kafka, EmbeddedKafka):
            step("stopping Kafka broker")
            self._kafka.stop()
        if isinstance(self._postgres, EmbeddedPostgres):
            step("stopping PostgreSQL")
            self._postgres.stop()

    def env(self) -> dict[str, str]:
        """Environment for child processes: point them at the running servers."""
        s = self.settings
        env = dict(os.environ)
        env["KAFKA_BOOTSTRAP_SERVERS"] = s.kafka.bootstrap_servers or ""
        env["DATABASE_URL"] = s.database.url or ""
        env["CRYPTOVIZ_STATE_DIR"] = str(s.state_dir)
        env["CRYPTOVIZ_CACHE_DIR"] = str(s.cache_dir)
        return env


SPARK_METRICS_PORT = 9300


def worker_programs(workers: list[str], first_port: int = 9200) -> dict[str, list[str]]:
    """Registered Bytewax workers as supervisor programs, each with a metrics port."""
    return {
        name: [sys.executable, "-m", "flows.run", name, "--metrics-port", str(first_port + index)]
        for index, name in enumerate(workers)
    }


def service_programs(
    *, analytics: bool = True, api: bool = True, spark_metrics_port: int = SPARK_METRICS_PORT
) -> dict[str, list[str]]:
    """The Spark analytics job and the API (with the dashboard), as supervisor programs."""
    programs: dict[str, list[str]] = {}
    if analytics:
        programs["spark-analytics"] = [
            sys.executable, "-m", "spark_batch.run", "--metrics-port", str(spark_metrics_port)
        ]  # fmt: skip
    if api:
        programs["api"] = [sys.executable, "-m", "api"]
    return programs


def supervisor_config(
    settings: Settings, env: dict[str, str], programs: dict[str, list[str]]
) -> Path:
    """Write supervisord's config for ``programs`` (name -> argv) and return its path."""
    state = settings.state_dir
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    keep = {k: env[k] for k in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "CRYPTOVIZ_STATE_DIR",
                                "CRYPTOVIZ_CACHE_DIR") if env.get(k)}  # fmt: skip
    environment = ",".join(f'{k}="{v}"' for k, v in keep.items())
    lines = [
        "[supervisord]",
        "nodaemon=true",
        f"logfile={logs / 'supervisord.log'}",
        f"pidfile={state / 'supervisord.pid'}",
        f"childlogdir={logs}",
        "loglevel=info",
        *(["user=root"] if os.geteuid() == 0 else []),  # says "yes, on purpose" to supervisord
        "",
        "[unix_http_server]",
        f"file={state / 'supervisor.sock'}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{state / 'supervisor.sock'}",
    ]
    for name, command in programs.items():
        lines += [
            "",
            f"[program:{name}]",
            f"command={shlex.join(command)}",
            f"directory={Path(__file__).resolve().parent.parent}",
            f"environment={environment}",
            "autorestart=true",
            "startsecs=3",
            "startretries=100",
            "stopsignal=TERM",
            "stopwaitsecs=15",
            "redirect_stderr=true",
            f"stdout_logfile={logs / (name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
        ]
    path = state / "supervisord.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def _up(settings: Settings, replay: bool) -> int:
    from api.settings import load_api_settings
    from flows.producers.workers import live_network_problem, producer_workers
    from flows.registry import INGEST_WORKERS
    from infra.jars import ensure_jars

    stack = Stack(settings)
    supervisor: subprocess.Popen[bytes] | None = None

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        settings = stack.start()
        stack.prepare()
        problem = None if replay else live_network_problem()
        if problem is not None:
            step(f"network unreachable ({problem}): live producers keep retrying; "
                 "`make up REPLAY=1` replays recorded data offline")  # fmt: skip
        ensure_jars("spark", settings.cache_dir)
        workers = [*INGEST_WORKERS, *producer_workers(replay)]
        programs = {**worker_programs(workers), **service_programs()}
        conf = supervisor_config(settings, stack.env(), programs)
        step(f"starting under supervisord: {', '.join(programs)}")
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            env=stack.env(),
            start_new_session=True,
        )
        api = load_api_settings(topics=settings.kafka.topics)
        base = f"http://{api.host}:{api.port}"
        step(f"dashboard {base}/  ·  API docs {base}/docs  ·  metrics {base}/metrics")
        step(f"running; logs in {settings.state_dir / 'logs'}")
        step("press Ctrl-C to stop everything")
        supervisor.wait()
        return ExitCode.FAILED  # supervisord only exits on its own when something is badly wrong
    except KeyboardInterrupt:  # Ctrl-C is how `make up` is meant to stop
        step("stopping")
        return ExitCode.OK
    finally:
        if supervisor is not None and supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                supervisor.wait(timeout=60)
        stack.stop()


def _services(settings: Settings) -> int:
    stack = Stack(settings)
    try:
        settings = stack.start()
        stack.prepare()
        step(f"KAFKA_BOOTSTRAP_SERVERS={settings.kafka.bootstrap_servers}")
        step(f"DATABASE_URL={settings.database.url}")
        step("press Ctrl-C to stop")
        signal.pause()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


def _migrate(settings: Settings) -> int:
    from infra.migrate import migrate

    stack = Stack(settings)
    try:
        if settings.database.url is None:
            settings = stack.start(kafka=False)
        assert settings.database.url is not None
        report = migrate(settings.database.url)
        step(f"database schema at version {report.current_version:04d} ({report.flavour})")
        return 0
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the whole system until Ctrl-C")
    up.add_argument("--replay", action="store_true", help="offline: replay recorded data")
    sub.add_parser("services", help="run Kafka + PostgreSQL only")
    sub.add_parser("migrate", help="apply database migrations")
    args = parser.parse_args(argv)
    return run_program(f"infra.stack {args.command}", lambda: _command(args))


def _command(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.command == "up":
        return _up(settings, args.replay)
    if args.command == "services":
        return _services(settings)
    return _migrate(settings)


if __name__ == "__main__":
    sys.exit(main())
