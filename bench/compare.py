"""Several commits measured side by side in one run: the API's or the ingestion worker's cost.

    .venv/bin/python -m bench.compare api    --ref REF --ref REF [--ref ...] [--rows 1000000]
                                             [--rounds 3] [--seconds 8]
    .venv/bin/python -m bench.compare ingest --ref REF --ref REF [--ref ...] [--messages 300000]
                                             [--rounds 3]
    .venv/bin/python -m bench.compare latency --ref REF --ref REF [--ref ...] [--rate 2000]
                                             [--seconds 30] [--warmup-s 10] [--rounds 3]
    both: [--results PATH] [--no-write]

Each ``--ref`` is a git ref exported with ``git archive`` into a temporary folder, or
``.``: this working tree as it is, uncommitted changes included (labelled ``this``). Every
side runs with this virtualenv's Python in its own folder, and its databases are
migrated by its own migrations (``bench._checkouts``).

``api``: one embedded PostgreSQL, a database of ``--rows`` ticker rows per side
(``bench.api.load``), one ``python -m api`` per side (one worker), all up at once. For
each endpoint of ``bench.api.ENDPOINTS``: a warm-up of each side, then ``--rounds``
rounds in which each side in turn is saturated for ``--seconds`` by
``bench.api.measured_saturation`` (10 connections), the order rotated each round.
Recorded: req/s, p99, the API process's and PostgreSQL's CPU ms per request (the
steady figures on a shared machine), the load average.

``ingest``: one embedded stack, one topic pre-loaded with ``--messages`` ticker
messages (``bench.ingest.preload``); in each round each side's ``ingest-rawticker``
worker drains it into a fresh database (``bench._peers_run.throughput``: CPU seconds per
million messages, msgs/s, peak RSS), the order rotated each round.

``latency``: one embedded stack; in each round each side's ``ingest-rawticker`` worker
is started on a fresh topic and database and fed a steady ``--rate`` msgs/s for
``--warmup-s`` then ``--seconds`` (``bench.ingest.steady_latency``): the produce ->
commit latency of the measured part, end to end and split at the broker's append (the
worker's own hop), the order rotated each round.

Results: printed, and ``bench/results/compare-<kind>.json`` (``--results``): the
per-side medians, each side's CPU relative to the first side's, every run, each ref and
its short commit, the command line and the run's provenance.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench import api
from bench._checkouts import THIS, Checkout, checkouts, ingest_worker, migrator
from bench._peers_run import throughput
from bench._results import provenance, report
from bench.ingest import HOP_FIGURES, WARMUP_FIGURE, new_database, preload, steady_latency
from infra.cli import run_program
from infra.stack import temporary_stack
from infra.topics import ensure_topics

REPO = Path(__file__).resolve().parent.parent
CONNECTIONS = 10
WARMUP_S = 2.0
API_FIGURES = ("rps", "p99_ms", "server_cpu_ms_per_request", "postgres_cpu_ms_per_request")
INGEST_FIGURES = ("cpu_s_per_million", "msgs_per_s", "peak_rss_mb")
LATENCY_FIGURES = (*HOP_FIGURES, WARMUP_FIGURE)
CPU_FIGURE = {"api": "server_cpu_ms_per_request", "ingest": "cpu_s_per_million"}
"""The figure each side is set against the first side's with (``cpu_ratio_to_first``)."""
LATENCY_RATIO_FIGURE = "latency_worker_p99_ms"
"""The latency figure set against the first side's (``latency_ratio_to_first``): the
worker's own hop, the part the code on each side decides."""


def rotated(sides: list[Checkout], round_: int) -> list[Checkout]:
    """The order of the sides in ``round_``: each round starts one side later, so no side
    always runs first (warmer caches) or last (a busier machine)."""
    shift = round_ % len(sides)
    return sides[shift:] + sides[:shift]


def _medians(runs: list[dict[str, Any]], figures: tuple[str, ...]) -> dict[str, float]:
    # A figure some runs lack (PostgreSQL's CPU when DATABASE_URL is not ours) is left out.
    return {
        key: round(statistics.median(r[key] for r in runs), 3)
        for key in figures
        if all(key in r for r in runs)
    }


def _record(run: dict[str, Any], side: Checkout, round_: int, **where: str) -> dict[str, Any]:
    record = {"side": side.label, **where, "round": round_, **run}
    record["load"] = round(os.getloadavg()[0], 2)
    print(f"  {side.label} ({side.commit}) {' '.join(where.values())} round {round_}: "
          + ", ".join(f"{k} {run[k]:.3f}" for k in run if isinstance(run[k], float)),
          flush=True)  # fmt: skip
    return record


def compare_api(sides: list[Checkout], rows: int, rounds: int, seconds: float) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with temporary_stack(prefix="cryptoviz-compare-api-", kafka=False, prepare=False) as stack:
        admin = stack.settings.database.url
        assert admin is not None
        postmaster = api.postmaster_pid(stack.postgres)
        servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            for side in sides:
                print(f"loading {rows:,} ticker rows for {side.label} ({side.commit}) ...")
                url = api.load(admin, rows, migrate=migrator(side.code))
                servers[side.label] = api.serve(url, 1, code=side.code)
            for name, path in api.ENDPOINTS.items():
                for _, port in servers.values():  # warm-up: pool, caches, plans
                    asyncio.run(api.saturate(port, path, 4, min(WARMUP_S, seconds)))
                for round_ in range(rounds):
                    for side in rotated(sides, round_):
                        proc, port = servers[side.label]
                        run = api.measured_saturation(
                            proc.pid, port, path, CONNECTIONS, seconds, postmaster
                        )
                        runs.append(_record(run, side, round_, endpoint=name))
        finally:
            for proc, _ in servers.values():
                api.stop(proc)
    medians = {
        side.label: {
            name: _medians(
                [r for r in runs if r["side"] == side.label and r["endpoint"] == name],
                API_FIGURES,
            )
            for name in api.ENDPOINTS
        }
        for side in sides
    }
    first = sides[0].label
    key = CPU_FIGURE["api"]
    return {
        "rows": rows,
        "rounds": rounds,
        "seconds_per_run": seconds,
        "connections": CONNECTIONS,
        "endpoints": api.ENDPOINTS,
        "medians": medians,
        "cpu_ratio_to_first": {
            label: {name: round(m[key] / medians[first][name][key], 3) for name, m in per.items()}
            for label, per in medians.items()
        },
        "runs": runs,
    }


def compare_ingest(sides: list[Checkout], messages: int, rounds: int) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with temporary_stack(prefix="cryptoviz-compare-ingest-") as stack:
        state = stack.settings.state_dir
        env = {**os.environ, **stack.env()}
        topic = f"bench-compare-{uuid.uuid4().hex[:6]}"
        ensure_topics(stack.bootstrap, (topic,), 3)
        print(f"pre-loading {messages:,} messages into {topic} ...", flush=True)
        preload(stack.bootstrap, topic, messages)
        systems = {s.label: ingest_worker(s.label, s.code, topic, env, state) for s in sides}
        for round_ in range(rounds):
            for side in rotated(sides, round_):
                url = new_database(stack.database_url, migrate=migrator(side.code))
                run = throughput(systems[side.label], url, messages, f"{round_}", timeout=900)
                runs.append(_record(run, side, round_))
    medians = {
        side.label: _medians([r for r in runs if r["side"] == side.label], INGEST_FIGURES)
        for side in sides
    }
    key = CPU_FIGURE["ingest"]
    first = medians[sides[0].label][key]
    return {
        "messages": messages,
        "rounds": rounds,
        "medians": medians,
        "cpu_ratio_to_first": {label: round(m[key] / first, 3) for label, m in medians.items()},
        "runs": runs,
    }


def compare_latency(
    sides: list[Checkout], rate: int, seconds: float, warmup_s: float, rounds: int
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with temporary_stack(prefix="cryptoviz-compare-latency-") as stack:
        state = stack.settings.state_dir
        env = {**os.environ, **stack.env()}
        for round_ in range(rounds):
            for side in rotated(sides, round_):
                # A fresh topic each run: a worker without recovery state reads from the
                # beginning, and must see only its own run's messages.
                topic = f"bench-latency-{uuid.uuid4().hex[:6]}"
                ensure_topics(stack.bootstrap, (topic,), 3)
                url = new_database(stack.database_url, migrate=migrator(side.code))
                worker = ingest_worker(side.label, side.code, topic, env, state)
                proc = worker.start(url, f"latency-{round_}")
                try:
                    run = steady_latency(stack.bootstrap, proc, url, topic, rate, seconds, warmup_s)
                finally:
                    proc.terminate()
                    proc.wait(30)
                print(
                    f"  round {round_} {side.label}: p99 {run['latency_p99_ms']:.1f} ms, "
                    f"worker hop p99 {run['latency_worker_p99_ms']:.1f} ms",
                    flush=True,
                )
                runs.append(_record(run, side, round_, load=f"{os.getloadavg()[0]:.1f}"))
    medians = {
        side.label: _medians([r for r in runs if r["side"] == side.label], LATENCY_FIGURES)
        for side in sides
    }
    first = medians[sides[0].label][LATENCY_RATIO_FIGURE]
    return {
        "rate_msgs_per_s": rate,
        "seconds": seconds,
        "warmup_s": warmup_s,
        "rounds": rounds,
        "medians": medians,
        "latency_ratio_to_first": {
            label: round(m[LATENCY_RATIO_FIGURE] / first, 3) for label, m in medians.items()
        },
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare")
    kinds = parser.add_subparsers(dest="kind", required=True)
    api_args = kinds.add_parser("api", help="the API's CPU per request, endpoint by endpoint")
    api_args.add_argument("--rows", type=int, default=1_000_000)
    api_args.add_argument("--seconds", type=float, default=8.0, help="per saturation run")
    ingest_args = kinds.add_parser("ingest", help="ingest-rawticker's CPU per message")
    ingest_args.add_argument("--messages", type=int, default=300_000)
    latency_args = kinds.add_parser("latency", help="ingest-rawticker's produce -> commit latency")
    latency_args.add_argument("--rate", type=int, default=2000, help="msgs/s")
    latency_args.add_argument("--seconds", type=float, default=30.0, help="measured, per run")
    latency_args.add_argument("--warmup-s", type=float, default=10.0, help="before each run")
    for sub in (api_args, ingest_args, latency_args):
        sub.add_argument(
            "--ref",
            action="append",
            required=True,
            dest="refs",
            help=f"a git ref to measure (twice or more); {THIS!r}: this working tree",
        )
        sub.add_argument("--rounds", type=int, default=3)
        sub.add_argument("--results", type=Path, help="default: bench/results/compare-KIND.json")
        sub.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if len(args.refs) < 2:
        parser.error("give --ref at least twice: the sides to compare")

    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        sides = checkouts(args.refs, Path(tmp))
        if args.kind == "api":
            result = compare_api(sides, args.rows, args.rounds, args.seconds)
        elif args.kind == "ingest":
            result = compare_ingest(sides, args.messages, args.rounds)
        else:
            result = compare_latency(sides, args.rate, args.seconds, args.warmup_s, args.rounds)
    result = {
        "kind": args.kind,
        "command": " ".join(["python -m bench.compare", *sys.argv[1:]]),
        "sides": [{"label": s.label, "ref": s.ref, "commit": s.commit} for s in sides],
        **result,
        "load_average": [round(x, 1) for x in os.getloadavg()],
        **provenance(),
    }
    path = args.results or REPO / "bench" / "results" / f"compare-{args.kind}.json"
    report(result, path, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(run_program("bench.compare", main))
