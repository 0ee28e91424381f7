"""CPU per message of the ``ingest-rawticker`` worker, two checkouts alternated in one run.

    .venv/bin/python -m bench.ingest_ab [--messages 250000] [--rounds 3] [--ref main] [DIR]

Compares the worker of this checkout (or ``DIR``) with the one of git ref ``--ref``
(exported with ``git archive`` into a temporary folder), both run by this virtualenv's
Python, each in its own folder and into databases of its own migrations
(``bench._checkouts``). One embedded stack; one topic pre-loaded with ``--messages``
producer-shaped ticker messages (``bench.ingest.preload``); then, in each round, each
worker drains the whole topic into an empty database, the two in turn (ABBA: each
round reverses the order). ``python -m bench.compare ingest`` does the same for any
number of refs. The figure is the worker's CPU seconds (user + system of its process tree,
``/proc``) per million messages over the timed window of ``bench.peers`` (first commit
to last), so the other work on the machine moves it far less than the rates it also
records. Results: printed, and ``bench/results/ingest_ab.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench._checkouts import export, ingest_worker, migrator
from bench._peers_run import throughput
from bench._results import provenance, report
from bench.ingest import new_database, preload
from infra.cli import run_program
from infra.stack import temporary_stack
from infra.topics import ensure_topics

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "ingest_ab.json"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_ab")
    parser.add_argument("--messages", type=int, default=250_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ref", default="main", help="the git ref to compare with")
    parser.add_argument("code", nargs="?", default=str(REPO), help="the checkout measured")
    parser.add_argument("--no-write", action="store_true", help="don't update bench/results")
    args = parser.parse_args()

    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="ingest-ab-") as tmp,
        temporary_stack(prefix="cryptoviz-ingest-ab-") as stack,
    ):
        ref_commit = export(args.ref, Path(tmp))
        state = stack.settings.state_dir
        env = {**os.environ, **stack.env()}
        topic = f"bench-ab-{uuid.uuid4().hex[:6]}"
        ensure_topics(stack.bootstrap, (topic,), 3)
        print(f"pre-loading {args.messages} messages into {topic} ...", flush=True)
        preload(stack.bootstrap, topic, args.messages)
        codes = {"ref": Path(tmp), "this": Path(args.code).resolve()}
        systems = [ingest_worker(name, code, topic, env, state) for name, code in codes.items()]
        for round_ in range(args.rounds):
            for system in systems if round_ % 2 == 0 else systems[::-1]:
                url = new_database(stack.database_url, migrate=migrator(codes[system.name]))
                run = throughput(system, url, args.messages, f"{round_}", timeout=900)
                runs.append({"code": system.name, "round": round_, **run})
                print(f"  {system.name} round {round_}: {run['cpu_s_per_million']:.2f} CPU s"
                      f" per million, {run['msgs_per_s']:,.0f} msgs/s", flush=True)  # fmt: skip

    def median(code: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs if r["code"] == code))

    result: dict[str, Any] = {
        "messages": args.messages,
        "rounds": args.rounds,
        "ref": args.ref,
        "ref_commit": ref_commit,
        "cpu_s_per_million": {c: round(median(c, "cpu_s_per_million"), 2) for c in ("ref", "this")},
        "msgs_per_s": {c: round(median(c, "msgs_per_s")) for c in ("ref", "this")},
        "cpu_ratio": round(
            median("this", "cpu_s_per_million") / median("ref", "cpu_s_per_million"), 3
        ),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "runs": runs,
        **provenance(),
    }
    report(result, RESULTS, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(run_program("bench.ingest_ab", main))
