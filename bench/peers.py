"""Ingestion against the peers: ours, quix-streams and Kafka Connect, same work, one run.

    .venv/bin/python -m bench.peers [--messages 1000000] [--only ours,quix,connect] [--no-write]

1. Pre-loads ``--messages`` producer-shaped ticker messages into a fresh
   3-partition topic (``bench.ingest.preload``), and the same messages as Connect
   JSON with a schema envelope into a second topic for Connect (untimed).
2. Raw ceilings: ``bench.ingest.copy_ceiling``, the same rows COPYed straight
   into an empty ``ticker_data`` through psycopg's ``write_row`` (``ratio`` is ours
   against this one, issue 14's yardstick), and the same COPY with its text encoded
   beforehand, untimed (the server's side alone: ``ratio_to_copy_text``).
3. For each system, one process on an empty, migrated database:

   - ``ours``: ``python -m flows.run ingest-rawticker`` (Bytewax, idempotent COPY);
   - ``quix``: a quix-streams application with its ``PostgreSQLSink``, upserting on
     the primary key (``bench/_peers_quix.py``, run from ``.venv/bench``);
   - ``connect``: a standalone Kafka Connect worker with Debezium's JDBC sink in
     upsert mode on the primary key (``bench/_peers_connect.py``).

   Throughput: rows committed between the first commit seen and the last, per
   second; CPU (user + system of the process tree) over the same window per
   million messages; peak RSS. Restart test, on another empty database: SIGKILL
   at half way, restart, then count what the table holds against the messages
   sent (duplicates, losses, wrong values).

Servers: the embedded stack (started here), or KAFKA_BOOTSTRAP_SERVERS/DATABASE_URL.
Results: printed, and written to bench/results/peers.json (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench._peers_connect import ConnectPeer, preload_envelopes
from bench._peers_run import System, restart_test, throughput
from bench._results import git_commit, provenance, report
from bench.ingest import copy_ceiling, new_database, preload, start_worker
from infra._procs import die_with_parent
from infra.cli import run_program
from infra.settings import Settings
from infra.stack import temporary_stack
from infra.topics import ensure_topics

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "peers.json"
BENCH_PYTHON = REPO / ".venv" / "bench" / "bin" / "python"
QUIX_APP = REPO / "bench" / "_peers_quix.py"
SYSTEMS = ("ours", "quix", "connect")
GUARANTEES = {
    "ours": "exactly one row per message: offsets in Bytewax recovery snapshots, each "
    "taken once the rows before it are committed; replays after a crash skipped by the "
    "idempotent COPY on the primary key",
    "quix": "at-least-once delivery (its docs); upsert on the primary key turns "
    "redeliveries into overwrites of the same row",
    "connect": "at-least-once delivery; Debezium JDBC sink upsert on the primary key "
    "turns redeliveries into overwrites of the same row",
}


@dataclass(frozen=True, slots=True)
class Workload:
    bootstrap: str
    topic: str
    """Producer-shaped messages: ours and quix read these."""
    envelope_topic: str | None
    """The same messages as Connect JSON with schema (only when Connect runs)."""
    n: int


def _ours(settings: Settings, env: dict[str, str], w: Workload, state: Path) -> System:
    def start(url: str, tag: str) -> subprocess.Popen[bytes]:
        run_env = {**env, "DATABASE_URL": url, "CRYPTOVIZ_STATE_DIR": str(state / f"ours-{tag}")}
        return start_worker(run_env, w.topic, state)

    versions = {d: version(d) for d in ("bytewax", "confluent-kafka", "psycopg")}
    return System(
        "ours",
        start,
        GUARANTEES["ours"],
        {"cryptoviz": git_commit(), **versions},
        state / f"worker-{w.topic}.log",
    )


def _quix(w: Workload, state: Path, commit_every: int) -> System:
    if not BENCH_PYTHON.exists():
        raise SystemExit(
            f"{BENCH_PYTHON} missing: `make venv` installs the peers "
            "(the bench dependency group of pyproject.toml)"
        )
    log = state / "quix.log"

    def start(url: str, tag: str) -> subprocess.Popen[bytes]:
        args = ["--broker", w.bootstrap, "--topic", w.topic, "--group", f"peers-quix-{tag}",
                "--database-url", url, "--state-dir", str(state / f"quix-{tag}"),
                "--commit-every", str(commit_every)]  # fmt: skip
        with log.open("ab") as out:
            return subprocess.Popen(
                [str(BENCH_PYTHON), str(QUIX_APP), *args],
                cwd=state,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )

    out = subprocess.run(
        [str(BENCH_PYTHON), str(QUIX_APP), "--versions"],
        capture_output=True,
        text=True,
        check=True,
    )
    return System("quix", start, GUARANTEES["quix"], json.loads(out.stdout), log)


def _connect(settings: Settings, w: Workload, state: Path) -> System:
    assert w.envelope_topic is not None
    peer = ConnectPeer.prepare(
        settings.cache_dir, w.bootstrap, w.envelope_topic, settings.ingest.batch_size
    )

    log = state / "connect.log"

    def start(url: str, tag: str) -> subprocess.Popen[bytes]:
        return peer.start(state / f"connect-{tag}", url, tag, log)

    return System("connect", start, GUARANTEES["connect"], peer.versions(), log)


def prepare_workload(
    bootstrap: str, n: int, *, connect: bool, partitions: int = 3
) -> tuple[Workload, dict[str, float]]:
    """Pre-load the topics; returns the workload and how long each pre-load took."""
    run = uuid.uuid4().hex[:6]
    topic, envelopes = f"peers-rawticker-{run}", f"peers-connect-{run}"
    ensure_topics(bootstrap, (topic, envelopes) if connect else (topic,), partitions)
    print(f"pre-loading {n:,} messages into {topic} ...", flush=True)
    started = time.perf_counter()
    preload(bootstrap, topic, n)
    timings = {"preload_s": time.perf_counter() - started}
    if connect:
        print(f"  ... and as Connect JSON with schema into {envelopes} (untimed)", flush=True)
        started = time.perf_counter()
        written = preload_envelopes(bootstrap, topic, envelopes, n)
        if written != n:
            raise RuntimeError(f"{written} envelopes written for {n} messages")
        timings["connect_preload_s"] = time.perf_counter() - started
    return Workload(bootstrap, topic, envelopes if connect else None, n), timings


def drop_database(admin_url: str, url: str) -> None:
    name = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextlib.contextmanager
def databases(admin_url: str) -> Iterator[list[str]]:
    """Collects the databases a run creates, and drops them at the end."""
    made: list[str] = []
    try:
        yield made
    finally:
        for url in made:
            drop_database(admin_url, url)


def compare(
    settings: Settings,
    n: int,
    state: Path,
    *,
    only: tuple[str, ...] = SYSTEMS,
    env: dict[str, str] | None = None,
    quix_commit_every: int = 0,
    stall_s: float = 120.0,
    kept: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The whole comparison on running servers; the result as peers.json holds it.

    ``settings.ingest.batch_size`` is the batch of our worker, of Connect's sink and
    of the COPY ceiling. ``quix_commit_every`` > 0 makes quix checkpoint every that
    many messages besides its 5-second default, so that on a small workload (which it
    drains within one checkpoint) the kill can land between two commits. ``stall_s``: how long a
    restarted system may add no row before what it stored is taken as final. With
    ``kept``, each system's restart-test database is kept (the caller drops it) and
    its URL recorded there by system name, for an independent look at what it holds.
    """
    bootstrap, admin = settings.kafka.bootstrap_servers, settings.database.url
    assert bootstrap is not None
    assert admin is not None
    # Our worker reads its batch size from the environment: the run's, as Connect's.
    env = {**(env or os.environ), "PYTHONPATH": str(REPO), "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "CRYPTOVIZ_BATCH_SIZE": str(settings.ingest.batch_size)}  # fmt: skip
    load_before = os.getloadavg()[0]
    workload, timings = prepare_workload(bootstrap, n, connect="connect" in only)
    makers = {
        "ours": lambda: _ours(settings, env, workload, state),
        "quix": lambda: _quix(workload, state, quix_commit_every),
        "connect": lambda: _connect(settings, workload, state),
    }
    systems = [makers[name]() for name in only]
    timeout = max(300.0, n / 1000)  # generous: the machine may be loaded
    result: dict[str, Any] = {
        "messages": n,
        "batch_size": settings.ingest.batch_size,
        "systems": {},
    }
    with databases(admin) as made:

        def fresh() -> str:
            made.append(new_database(admin))
            return made[-1]

        print("raw COPY ceiling ...", flush=True)
        ceiling = copy_ceiling(fresh(), n, settings.ingest.batch_size, settings)
        print(f"  {ceiling:,.0f} rows/s", flush=True)
        result["copy_rows_per_s"] = round(ceiling)
        print("COPY of pre-encoded text (the server's side alone) ...", flush=True)
        text_ceiling = copy_ceiling(
            fresh(), n, settings.ingest.batch_size, settings, pre_encoded=True
        )
        print(f"  {text_ceiling:,.0f} rows/s", flush=True)
        result["copy_text_rows_per_s"] = round(text_ceiling)
        for system in systems:
            tag = uuid.uuid4().hex[:6]
            print(f"{system.name}: throughput ...", flush=True)
            tp = throughput(system, fresh(), n, f"tp-{tag}", timeout)
            print(f"  {tp['msgs_per_s']:,.0f} msgs/s, {tp['cpu_s_per_million']:.0f} CPU s per "
                  f"million, peak RSS {tp['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
            print(f"{system.name}: kill -9 at half way, restart ...", flush=True)
            kill_db = new_database(admin)
            if kept is None:
                made.append(kill_db)
            else:
                kept[system.name] = kill_db
            kill = restart_test(system, kill_db, n, f"kill-{tag}", timeout, stall_s)
            print(f"  {kill['rows']:,} rows: {kill['duplicates']} duplicates, "
                  f"{kill['lost']} lost, {kill['wrong_values']} wrong", flush=True)  # fmt: skip
            result["systems"][system.name] = {
                "msgs_per_s": round(tp["msgs_per_s"]),
                "msgs_per_s_incl_startup": round(tp["msgs_per_s_incl_startup"]),
                "cpu_s_per_million": round(tp["cpu_s_per_million"], 1),
                "cpu_s_total": round(tp["cpu_s_total"], 1),
                "peak_rss_mb": round(tp["peak_rss_mb"], 1),
                "rows": kill["rows"],
                "rows_clean_run": tp["rows"],
                "duplicates_after_kill": kill["duplicates"],
                "lost_after_kill": kill["lost"],
                "restart_test": kill,
                "guarantee": system.guarantee,
                "versions": system.versions,
            }
    if "ours" in result["systems"]:
        ours = result["systems"]["ours"]["msgs_per_s"]
        result["ratio"] = round(ours / ceiling, 3)
        result["ratio_to_copy_text"] = round(ours / text_ceiling, 3)
    result["preload_s"] = {k: round(v, 1) for k, v in timings.items()}
    # Other work on the machine moves every rate: the 1-minute load before and after.
    result["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--only", default=",".join(SYSTEMS), help="comma-separated systems")
    parser.add_argument("--no-write", action="store_true", help="don't update bench/results")
    args = parser.parse_args()
    only = tuple(s for s in args.only.split(",") if s)
    if unknown := set(only) - set(SYSTEMS):
        parser.error(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")

    # The state goes after a good run (the broker's log holds every message).
    with temporary_stack(prefix="cryptoviz-peers-") as stack:
        settings = stack.settings
        result = compare(settings, args.messages, settings.state_dir, only=only, env=stack.env())
    result["command"] = " ".join(["python -m bench.peers", *sys.argv[1:]])
    result.update(provenance())
    report(result, RESULTS, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(run_program("bench.peers", main))
