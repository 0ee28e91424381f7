"""Load/soak harness (issue 6 §3): a synthetic market at 10x a busy real rate, for minutes.

    .venv/bin/python -m bench.soak [--rate 20000] [--minutes 10] [--api-rate 25] [--no-write]

1. Starts its own stack in a fresh temporary state dir (embedded Kafka and PostgreSQL,
   or the servers named by ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``), then the
   whole pipeline under supervisord as ``make up`` does: the four ingestion workers,
   ``producer-alerts``, the Spark analytics job (``--no-spark`` leaves it out) and the
   API, each worker on a free metrics port.
2. Load: ``--producers`` ``producer-synthetic`` processes (one tops out near 14.6k
   msgs/s alone), each at ``rate / producers`` on its own slice of the pairs
   (``CRYPTOVIZ_SYNTHETIC_PAIR_OFFSET``): ticker_data keys rows by (pair, time), so two
   producers on one pair could merge rows. After ``--minutes`` they are stopped and the
   harness waits for ingestion to catch up.
3. From a second process (``--api-client``), open-loop HTTP load on the API at
   ``--api-rate`` req/s (latest price, ticker and trade history, candles of the tracked
   pairs) from the end of warm-up to the end of the load.
4. Every ``--sample-s`` (every second while catching up) it samples what was produced,
   ingested, the lag of each ingestion worker and the memory of every process.

Definitions:

* produced: messages in the ticker + trade topics (Kafka high watermarks, minus what
  was there before);
* ingested: rows committed by the ingestion workers (``cryptoviz_ingest_rows_total``),
  checked at the end against ``count(*)`` of ticker_data and trade_data;
* lag of an ingestion worker: high watermarks minus the offsets in its Bytewax
  recovery store, i.e. what a restarted worker would resume from. Bytewax keeps no
  Kafka consumer group (it assigns partitions and commits offsets in its recovery
  store, once per epoch: every 5 s), so this is the committed position, and it moves
  in 5 s steps;
* catch-up: from stopping the producers to the first sample where every ingestion
  worker's lag is 0;
* memory: RSS of each worker's process tree (Spark's JVM included) and of the Kafka
  broker; PSS for PostgreSQL, whose backends map the same shared buffers (their RSS
  would count them once per backend). Start = first sample after ``--warmup-s``;
  flat = grew by less than ``max(5 %, 16 MB)`` from the middle to the end of the load
  (start -> middle includes caches filling up, a leak keeps growing after it);
* errors: ERROR/CRITICAL/FATAL lines (Spark's known code-generation fallback counted
  apart) and tracebacks in each worker's log, supervisor restarts (spawns after the
  first), dead letters, API non-2xx answers, connection errors and timeouts.

The API runs with its per-client rate limit off (one client sends all the load).
Results: printed (samples only in the file) and written to ``bench/results/soak.json``
(``--results``). Ctrl-C or a failure stops everything started; the state dir (worker
logs) is then kept and its path printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from bench._results import provenance, report
from bench._soak_api import api_load, start_api_client, wait_api
from bench._soak_plan import RESULTS, Options, plan, renamed_topics, write_config
from bench._soak_probe import Probe, count_rows, log_errors
from bench._soak_report import print_summary, summarize
from bench._soak_supervisor import Supervisor
from infra._console import step
from infra.cli import run_program
from infra.settings import load_settings
from infra.stack import Stack, temporary_stack

PER_PRODUCER_RATE = 7000.0
"""Default share of one producer process: half its solo ceiling, the cores are shared."""
UNSAVED_OPTIONS = ("write", "results", "keep_state")


class Soak:
    """One run on a running stack: its workers (:meth:`start`), the load, the catch-up,
    the figures.

    :meth:`close` stops every worker started, whatever happened before.
    """

    def __init__(self, opts: Options, stack: Stack) -> None:
        self.opts = opts
        self.stack = stack
        self.state = stack.settings.state_dir
        self.servers = {
            "kafka": "embedded" if stack.kafka is not None else "external",
            "postgres": "embedded" if stack.postgres is not None else "external",
        }
        self.sup: Supervisor | None = None
        self.client: subprocess.Popen[bytes] | None = None
        self.probe: Probe | None = None
        self.samples: list[dict[str, Any]] = []
        self.t0 = self.stopped_at = 0.0
        self.caught_up_at: float | None = None
        self.states_at_end: dict[str, str] = {}

    @property
    def url(self) -> str:
        assert self.stack.settings.database.url is not None
        return self.stack.settings.database.url

    def start(self) -> None:
        """Every worker but the producers, until ready."""
        settings = self.stack.settings
        if self.opts.spark:
            from infra.jars import ensure_jars

            ensure_jars("spark", settings.cache_dir)
        self.layout = plan(settings, self.opts)
        self.baseline_rows = count_rows(self.url)
        env = {**self.stack.env(), **self.layout.env}
        self.sup = Supervisor(write_config(settings, env, self.layout), self.state, env)
        others = [n for n in self.layout.programs if n not in self.layout.producers]
        step(f"starting under supervisord: {', '.join(others)}")
        self.sup.wait_running(others, timeout=180)
        wait_api(self.layout.api_port, timeout=120)
        self.probe = Probe(settings, self.layout, self.sup)

    def load(self) -> None:
        """Producers for ``--minutes``; the API client from the end of warm-up."""
        assert self.sup is not None
        assert self.probe is not None
        opts, layout = self.opts, self.layout
        each = opts.rate / opts.producers
        step(f"load: {opts.producers} producers x {each:,.0f} msgs/s for {opts.minutes:g} min")
        self.t0 = time.monotonic()
        self.sup.start(layout.producers)
        next_at = opts.sample_s
        while (now := time.monotonic() - self.t0) < opts.load_s:
            if self.client is None and now >= opts.warmup_s:
                self.client = start_api_client(layout.api_port, opts.api_rate, opts.load_s - now)
            if now >= next_at:
                last = self.probe.sample(now, "load")
                self.samples.append(last)
                made = sum(last["produced"][t] for t in self.probe.market)
                rows, lag = sum(last["rows"].values()), sum(last["lag"].values())
                step(f"t={now:5.0f} s produced {made:,} rows {rows:,} lag {lag:,}")
                next_at += opts.sample_s
            time.sleep(min(0.2, max(0.0, next_at - now)))
        self.samples.append(self.probe.sample(time.monotonic() - self.t0, "load"))
        self.states_at_end = {n: i["statename"] for n, i in self.sup.info().items()}
        self.stopped_at = time.monotonic() - self.t0
        self.sup.stop(layout.producers)

    def catch_up(self) -> None:
        """Sample every second until every Kafka-reading worker's lag is 0 (or the timeout):
        the ingestion workers and the alert worker."""
        assert self.probe is not None
        step("producers stopped; waiting for ingestion to catch up")
        deadline = self.t0 + self.stopped_at + self.opts.catchup_timeout_s
        while self.caught_up_at is None and time.monotonic() < deadline:
            time.sleep(1.0)
            every_10th = len(self.samples) % 10 == 0
            s = self.probe.sample(time.monotonic() - self.t0, "catch-up", memory=every_10th)
            self.samples.append(s)
            if len(s["lag"]) == len(self.layout.consumers) and not any(s["lag"].values()):
                self.caught_up_at = s["t"]

    def result(self) -> dict[str, Any]:
        assert self.sup is not None
        assert self.probe is not None
        api: dict[str, Any] = {"errors": 1, "failed": "the API client did not run"}
        if self.client is not None:
            out, _ = self.client.communicate(timeout=120)
            if self.client.returncode == 0:
                api = json.loads(out)
        produced = self.probe.produced(self.probe.kafka.high())
        rows = count_rows(self.url)
        market = self.probe.market
        final = {
            "market_topics": market,
            "produced": {"ticker_data": produced[market[0]], "trade_data": produced[market[1]]},
            "rows": {t: n - self.baseline_rows[t] for t, n in rows.items()},
            "dead_letters": produced[self.probe.dlq],
            "states_at_end_of_load": self.states_at_end,
            "restarts": {n: max(c - 1, 0) for n, c in self.sup.spawns().items()},
            "logs": log_errors(self.state / "logs", list(self.layout.programs)),
            "api": api,
        }
        o = self.opts
        summary = summarize(o, self.samples, self.stopped_at, self.caught_up_at, final)
        summary["rows_equal_produced"] = final["rows"] == final["produced"]
        return {
            **provenance(),
            "options": {k: v for k, v in asdict(o).items() if k not in UNSAVED_OPTIONS},
            "servers": self.servers,
            "final": final,
            "summary": summary,
            "samples": self.samples,
        }

    def close(self) -> None:
        if self.client is not None and self.client.poll() is None:
            self.client.kill()
            self.client.wait()
        if self.probe is not None:
            self.probe.kafka.close()
        if self.sup is not None:
            step("stopping the workers")
            self.sup.shutdown()


def run(opts: Options) -> dict[str, Any]:
    """One soak run on a stack of its own (its topics renamed on a shared broker)."""
    settings = load_settings()
    if settings.kafka.bootstrap_servers is not None:
        settings = renamed_topics(settings)
    with temporary_stack(
        prefix="cryptoviz-soak-", settings=settings, keep=opts.keep_state
    ) as stack:
        soak = Soak(opts, stack)
        try:
            soak.start()
            soak.load()
            soak.catch_up()
            return soak.result()
        finally:
            soak.close()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rate", type=float, default=20_000.0, help="ticks + trades per second")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--api-rate", type=float, default=25.0, help="API requests per second (see RELIABILITY.md)"
    )
    parser.add_argument(
        "--producers",
        type=int,
        default=None,
        help=f"synthetic producer processes (default: rate / {PER_PRODUCER_RATE:g})",
    )
    parser.add_argument("--pairs", type=int, default=12, help="pairs per producer")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=None,
        help="start figures after this (default: 10 %% of the load, <= 60 s)",
    )
    parser.add_argument("--catchup-timeout-s", type=float, default=600.0)
    parser.add_argument("--no-spark", action="store_true", help="leave the Spark job out")
    parser.add_argument("--no-write", action="store_true", help=f"don't write {RESULTS.name}")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--keep-state", action="store_true", help="keep the temp state dir")
    parser.add_argument("--api-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--api-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--api-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.api_client:
        print(json.dumps(asyncio.run(api_load(args.api_port, args.api_rate, args.api_seconds))))
        return 0
    opts = Options(
        rate=args.rate,
        minutes=args.minutes,
        api_rate=args.api_rate,
        producers=args.producers or max(1, math.ceil(args.rate / PER_PRODUCER_RATE)),
        pairs=args.pairs,
        sample_s=args.sample_s,
        warmup_s=args.warmup_s if args.warmup_s is not None else min(60.0, args.minutes * 6),
        catchup_timeout_s=args.catchup_timeout_s,
        spark=not args.no_spark,
        write=not args.no_write,
        results=args.results,
        keep_state=args.keep_state,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    return run_program("bench.soak", lambda: _soak(opts))


def _soak(opts: Options) -> None:
    result = run(opts)
    with contextlib.redirect_stdout(io.StringIO()):  # the samples are for the file only
        report(result, opts.results, write=opts.write)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    print_summary(result)


if __name__ == "__main__":
    sys.exit(main())
