"""Run one registered worker as its own process.

    python -m flows.run ingest-rawticker [-w WORKERS] [-i PROCESS_ID -a ADDRESSES]

Scaling flags are Bytewax's own (``-w`` threads per process, ``-i/-a`` for a
cluster of processes). Recovery partitions are created on first start under
``<state>/recovery/<worker>/``; a worker killed at any point resumes from its
last snapshot (at most ``--snapshot-s`` seconds of input is replayed, and the
idempotent sinks make the replay harmless). Exit statuses: :mod:`infra.cli`
(2 for a configuration error such as an unknown topic, before anything starts).
In a cluster (``-i``) the main thread's signal checks are paced
(:mod:`flows._signal_pacer`; ``--signal-check bytewax`` leaves Bytewax's 1 ms loop).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main
from prometheus_client import start_http_server

from flows._recovery import ensure_recovery_dir
from flows._signal_pacer import SignalPacer
from flows.registry import WORKERS
from infra.cli import run_program
from infra.settings import load_settings

log = logging.getLogger("flows.run")

GC_THRESHOLDS = (50_000, 20, 10)
"""The cyclic collector's thresholds in a worker process (Python's are 700, 10, 10).

An ingestion worker makes and drops a few container objects per message (the consumed
messages, records, rows, lists of a batch), none of them in a cycle: at 700 the young
generation was collected several times per poll, and a batch's objects, still alive
then, were promoted and walked again by the older generations' collections. With the
start-up heap frozen and these thresholds, the ``ingest-rawticker`` worker spent a tenth
less CPU per message (13.08 -> 11.69 CPU s per million, medians of 4 alternated drains),
as little as with the collector off (docs/BENCHMARKS.md, "The write behind the flow").
Garbage in cycles waits at most 50,000 allocations."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.run", description=__doc__.split("\n")[1])
    parser.add_argument("worker", choices=sorted(WORKERS))
    parser.add_argument("-w", "--workers-per-process", type=int, default=1)
    parser.add_argument("-i", "--process-id", type=int, default=None)
    parser.add_argument("-a", "--addresses", default=None, help='"host:port;host:port"')
    parser.add_argument("--snapshot-s", type=float, default=5.0, help="epoch/snapshot interval")
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics")
    parser.add_argument("--partitions", type=int, default=1, help="recovery partitions on init")
    parser.add_argument("--topic", default=None, help="consume this topic instead of the default")
    parser.add_argument(
        "--recovery-dir", default=None, help="default: <state>/recovery/<worker>[-<topic>]"
    )
    parser.add_argument(
        "--signal-check",
        choices=("paced", "bytewax"),
        default="paced",
        help="in a cluster (-i): park the main thread between Bytewax's signal checks "
        "(paced, flows._signal_pacer) or leave its 1 ms loop as it is (bytewax, to measure)",
    )
    parser.add_argument(
        "--announce", action="store_true", help="print what the worker will do, and exit"
    )
    args = parser.parse_args(argv)
    if args.announce:
        return run_program(args.worker, lambda: _announce(args.worker))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_program(args.worker, lambda: _run(args))


def _announce(worker: str) -> None:
    announce = WORKERS[worker].announce
    if announce is not None:
        print(announce(load_settings()))


def _run(args: argparse.Namespace) -> None:
    settings = load_settings()
    spec = WORKERS[args.worker]
    flow = spec.build(settings, kafka_topic=args.topic, epoch_s=args.snapshot_s)
    recovery = None
    if spec.recovery:
        suffix = f"-{args.topic}" if args.topic else ""
        db_dir = (
            Path(args.recovery_dir)
            if args.recovery_dir
            else settings.state_dir / "recovery" / f"{args.worker}{suffix}"
        )
        ensure_recovery_dir(db_dir, args.partitions)
        recovery = RecoveryConfig(db_dir, backup_interval=timedelta(0))
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, addr="127.0.0.1")
    log.info("%s: starting (%s)", args.worker, spec.description)
    addresses = args.addresses.split(";") if args.addresses else None
    # Everything made so far (modules, the flow, the clients) lives as long as the process:
    # frozen, the cyclic collector stops walking it in every full collection. Cycles made
    # later are still freed, by collections that run less often (GC_THRESHOLDS).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

    def execute() -> None:
        cli_main(
            flow,
            workers_per_process=args.workers_per_process,
            process_id=args.process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=args.snapshot_s),
            recovery_config=recovery,
        )

    if paces_signal_checks(args.process_id, args.signal_check):
        SignalPacer().run(execute)
    else:
        execute()


def paces_signal_checks(process_id: int | None, signal_check: str) -> bool:
    """Whether Bytewax's main-thread signal loop is paced (:mod:`flows._signal_pacer`).

    Only with ``-i``: then ``cli_main`` runs ``cluster_main``, whose main thread loops
    while the worker thread works. Without it ``run_main`` runs the worker on the main
    thread itself, checking signals there: a pacer would park the worker.
    """
    return process_id is not None and signal_check == "paced"


if __name__ == "__main__":
    sys.exit(main())
