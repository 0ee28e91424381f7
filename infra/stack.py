"""The local stack: embedded Kafka and PostgreSQL, migrations, topics, supervised workers.

    python -m infra.stack up          # everything, until Ctrl-C (what `make up` runs)
    python -m infra.stack services    # only Kafka + PostgreSQL + migrations + topics
    python -m infra.stack migrate     # only the migrations

With ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` set, those servers are used
and nothing is started for them. Workers run under supervisord (restarted when
they crash, reported on the console) with their logs in ``<state>/logs/``; which
programs, on which metrics ports, is :mod:`infra.programs`.
Exit statuses: :mod:`infra.cli` (``up`` and ``services`` stopped by Ctrl-C exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import msgspec

from handlers import ConfigError
from infra._console import step
from infra.cli import ExitCode, run_program
from infra.programs import PROFILE_ENVIRONMENT, Profile, Program, profile
from infra.settings import Settings, environment_of, load_settings

if TYPE_CHECKING:
    from infra.kafka_broker import EmbeddedKafka
    from infra.postgres_server import EmbeddedPostgres


class Stack:
    """Starts the servers the settings do not point at, in order, and stops them in reverse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._kafka: object | None = None
        self._postgres: object | None = None

    def start(self, *, kafka: bool = True, database: bool = True) -> Settings:
        """Start what is needed (``kafka``/``database``: False leaves that server out);
        return settings pointing at the running servers."""
        from infra.jars import ensure_jars
        from infra.java import find_java
        from infra.kafka_broker import EmbeddedKafka
        from infra.postgres_server import EmbeddedPostgres

        s = self.settings
        bootstrap = s.kafka.bootstrap_servers
        url = s.database.url
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
        if url is None and database:
            step("starting PostgreSQL (embedded)")
            postgres = EmbeddedPostgres(s.state_dir / "postgres")
            self._postgres = postgres
            url = postgres.start()
            step(f"PostgreSQL ready at {url}")
        elif url is not None:
            step("using PostgreSQL from DATABASE_URL")
        self.settings = s.with_servers(kafka=bootstrap, database=url)
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
    def bootstrap(self) -> str:
        """The address of the running Kafka brokers (after :meth:`start`)."""
        bootstrap = self.settings.kafka.bootstrap_servers
        assert bootstrap is not None, "Kafka is not running: start() first"
        return bootstrap

    @property
    def database_url(self) -> str:
        """The URL of the running database (after :meth:`start`)."""
        url = self.settings.database.url
        assert url is not None, "PostgreSQL is not running: start() first"
        return url

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
        """Environment for child processes: the running servers, this stack's state and
        its topic map (so a stack whose topics were renamed in code hands them down)."""
        s = self.settings
        env = dict(os.environ)
        env["KAFKA_BOOTSTRAP_SERVERS"] = s.kafka.bootstrap_servers or ""
        env["DATABASE_URL"] = s.database.url or ""
        env["CRYPTOVIZ_STATE_DIR"] = str(s.state_dir)
        env["CRYPTOVIZ_CACHE_DIR"] = str(s.cache_dir)
        env.update(environment_of(s.kafka.topics))
        return env


@contextlib.contextmanager
def temporary_stack(
    state_dir: Path | None = None,
    *,
    prefix: str = "cryptoviz-",
    settings: Settings | None = None,
    embedded: bool = False,
    kafka: bool = True,
    database: bool = True,
    prepare: bool = True,
    keep: bool = False,
) -> Iterator[Stack]:
    """A started stack in its own state directory, stopped when the block ends.

    The servers are those of ``settings`` (default: the environment's), started where
    they point nowhere (``embedded``: always start them; ``kafka``/``database``: False
    leaves that one out); ``prepare`` migrates and creates the topics. The state
    directory is ``state_dir`` or a new temporary one, deleted at the end unless
    ``keep`` or the block failed (then its path is printed, for the logs).
    """
    temporary = state_dir is None
    state = Path(tempfile.mkdtemp(prefix=prefix)) if state_dir is None else state_dir
    base = load_settings() if settings is None else settings
    if embedded:
        base = msgspec.structs.replace(
            base,
            kafka=msgspec.structs.replace(base.kafka, bootstrap_servers=None),
            database=msgspec.structs.replace(base.database, url=None),
        )
    stack = Stack(msgspec.structs.replace(base, state_dir=state))
    failed = True
    try:
        stack.start(kafka=kafka, database=database)
        if prepare:
            stack.prepare()
        yield stack
        failed = False
    finally:
        stack.stop()
        if temporary and (keep or failed):
            step(f"state and logs kept in {state}")
        elif temporary:
            shutil.rmtree(state, ignore_errors=True)


def unreachable(url: str, timeout: float = 3.0) -> str | None:
    """Why ``url`` cannot be reached from here (DNS or TCP), or ``None`` when it can."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme in ("wss", "https") else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc}"


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


def supervisor_programs(programs: Sequence[Program]) -> dict[str, list[str]]:
    """``programs`` as supervisord runs them for ``make up``: name -> argv."""
    return {p.name: p.command() for p in programs}


def _announce(program: Program, env: dict[str, str]) -> str | None:
    """The line ``program`` prints for the console (``None`` when it says nothing).

    Raises :class:`ConfigError` with the program's own message when it refuses its
    settings (a replay file that does not exist): better said now than as a worker
    that supervisord keeps restarting.
    """
    if program.announce is None:
        return None
    done = subprocess.run(
        [sys.executable, "-m", program.module, *program.announce],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode == ExitCode.USAGE:
        raise ConfigError(done.stderr.strip() or f"{program.name}: bad settings")
    return done.stdout.strip() or None


def _up(settings: Settings, replay: bool) -> int:
    from infra.jars import ensure_jars

    stack = Stack(settings)
    supervisor: subprocess.Popen[bytes] | None = None

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        settings = stack.start()
        stack.prepare()
        name: Profile = "replay" if replay else "live"
        programs = profile(name)
        env = {**stack.env(), **PROFILE_ENVIRONMENT[name]}
        for program in programs:
            problem = unreachable(program.reaches) if program.reaches else None
            if problem is not None:
                step(f"network unreachable ({problem}): {program.name} keeps retrying; "
                     "`make up REPLAY=1` replays recorded data offline")  # fmt: skip
        announcements = [_announce(program, env) for program in programs]
        ensure_jars("spark", settings.cache_dir)
        conf = supervisor_config(settings, env, supervisor_programs(programs))
        step(f"starting under supervisord: {', '.join(p.name for p in programs)}")
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            env=env,
            start_new_session=True,
        )
        for line in announcements:
            if line:
                step(line)
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
