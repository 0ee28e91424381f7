"""The alert worker alone under a synthetic ticker load: its memory, lag and heap over time.

    .venv/bin/python -m bench.alert_memory [--rate 12600] [--minutes 10] [--producers 3]
        [--pairs 12] [--heap-every-s 0] [--results bench/results/alert-memory.json]

What ``make soak`` runs for the alert worker, without the rest of the pipeline:
an embedded Kafka (or ``KAFKA_BOOTSTRAP_SERVERS``, on fresh topic names), then
``python -m flows.run producer-alerts`` and ``--producers`` ``producer-synthetic``
processes (each at ``rate / producers`` msgs/s on its own ``--pairs`` pairs, 30 % of
them tickers), as the soak starts them. The defaults are the soak's 10-minute run:
12,600 msgs/s, about 3,800 tickers/s, 36 pairs.

Every ``--sample-s`` it records the alert worker's RSS (process tree), the tickers
produced, and its lag: tickers produced minus the offsets committed in its Bytewax
recovery store (what a restart resumes from). Flat: the RSS grew by less than
``max(5 %, 16 MB)`` from the middle to the end of the load, as ``make soak`` rules.

``--backlog N`` first writes N tickers (``--backlog-rate`` per second of ticker time, on
the same pairs) and starts the worker from the topic's beginning, so it works behind
its input from the first second (the soak's alert worker fell behind, and its memory
grew while it was): the quickest way to see that regime without the CPU of the
producers.

``--heap-every-s N`` runs the worker under tracemalloc (:mod:`bench._heap`) and dumps
its Python heap every N s into ``--heap-dir``; the result then lists the allocation
sites that grew most between the middle and the last dump. tracemalloc slows the
worker down several times, so figures from such a run are not its speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka import KafkaException, Producer

from bench._heap import compare
from bench._kafka import Kafka
from bench._results import provenance, report
from bench._soak_probe import committed_offsets, tree_mb
from flows.producers.synthetic import synthetic_pairs
from handlers import CoinTable, TickerMessage, encode_message
from infra._console import StackError, step
from infra._procs import process_table
from infra.cli import run_program
from infra.settings import load_settings
from infra.stack import Stack, temporary_stack
from infra.topics import ensure_topics

RESULTS = Path(__file__).resolve().parent / "results" / "alert-memory.json"
WORKER = "producer-alerts"


def produce_backlog(
    bootstrap: str, topic: str, count: int, rate: float, pairs: int, coins: CoinTable
) -> None:
    """``count`` tickers on ``pairs`` synthetic pairs (random walks), ``1 / rate`` s of ticker
    time apart and ending now, keyed and traced as the producers write them."""
    names = synthetic_pairs(coins, pairs)
    rng = random.Random(1)
    prices = dict.fromkeys(names, 100.0)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "acks": "all",
                         "enable.idempotence": True, "compression.type": "lz4"})  # fmt: skip
    t0 = time.time() - count / rate
    try:
        for index in range(count):
            pair = names[index % len(names)]
            prices[pair] *= math.exp(rng.gauss(0.0, 0.0005))
            stamp = t0 + index / rate
            msg = TickerMessage(pair=pair, last=Decimal(f"{prices[pair]:.4f}"),
                                timestamp=stamp, receive_ts=stamp)  # fmt: skip
            header = f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"
            while True:
                try:
                    producer.produce(topic, encode_message(msg), pair.encode(),
                                     headers=[("traceparent", header)])  # fmt: skip
                    break
                except BufferError:
                    producer.poll(0.05)
            if index % 10_000 == 0:
                producer.poll(0)
        if producer.flush(120):
            raise StackError("the backlog was not acknowledged by Kafka within 120 s")
    finally:
        producer.flush(5)


def _flat(start: float, middle: float, end: float) -> bool:
    return end - middle < max(0.05 * middle, 16.0)


class Run:
    """One run on a running stack (Kafka only; its topics renamed on a shared broker)."""

    def __init__(self, args: argparse.Namespace, stack: Stack) -> None:
        self.args = args
        self.settings = stack.settings
        self.state = self.settings.state_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kafka: Kafka | None = None
        self.samples: list[dict[str, Any]] = []
        self.bootstrap = stack.bootstrap
        self.ticker_topic = self.settings.kafka.topics.rawticker
        self.env = {**stack.env(), "CRYPTOVIZ_SYNTHETIC_PAIRS": str(args.pairs)}

    def start(self) -> None:
        s = self.settings
        bootstrap = self.bootstrap
        topics = s.kafka.topics
        ensure_topics(bootstrap, (topics.rawticker, topics.rawtrade, topics.rawalert),
                      s.kafka.partitions)  # fmt: skip
        self.recovery = self.state / "recovery" / WORKER
        runner = ["-m", "flows.run"]
        if self.args.heap_every_s:
            self.heap_dir = Path(self.args.heap_dir or self.state / "heap")
            runner = ["-m", "bench._heap", str(self.heap_dir), str(self.args.heap_every_s),
                      str(self.args.heap_frames), "flows.run"]  # fmt: skip
        if self.args.memray:
            runner = ["-m", "memray", "run", "--native", "--aggregate", "-f", "-o",
                      str(self.args.memray), "-m", "flows.run"]  # fmt: skip
        command = [sys.executable, *runner, WORKER, "--recovery-dir", str(self.recovery)]
        self.kafka = Kafka(bootstrap, [self.ticker_topic])
        deadline = time.monotonic() + 60
        while True:  # new topics: their partitions may have no leader yet
            try:
                self.base = self.kafka.high()[self.ticker_topic]
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        if self.args.backlog:
            step(f"writing a backlog of {self.args.backlog:,} tickers")
            produce_backlog(bootstrap, self.ticker_topic, self.args.backlog,
                            self.args.backlog_rate, self.args.pairs * max(self.args.producers, 1),
                            s.coin_table())  # fmt: skip
            self.env["CRYPTOVIZ_ALERT_FROM"] = "beginning"
        self._spawn(WORKER, command, self.env)
        time.sleep(5)  # the worker reads the alert topic back and subscribes

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = (self.state / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    def sample(self, t: float, phase: str) -> dict[str, Any]:
        assert self.kafka is not None
        high = self.kafka.high()[self.ticker_topic]
        produced = sum(high.values()) - sum(self.base.values())
        lag: int | None = None
        with contextlib.suppress(Exception):  # a store being written: the next sample reads it
            done = committed_offsets(self.recovery)
            lag = sum(max(h - max(done.get(p, -1), self.base[p]), 0) for p, h in high.items())
        return {
            "t": round(t, 1),
            "phase": phase,
            "tickers": produced,
            "lag": lag,
            "rss_mb": tree_mb(self.procs[WORKER].pid, process_table()),
        }

    def load(self) -> None:
        a = self.args
        each = a.rate / max(a.producers, 1)
        step(f"load: {a.producers} producers x {each:,.0f} msgs/s for {a.minutes:g} min")
        for index in range(a.producers):
            env = {**self.env, "CRYPTOVIZ_SYNTHETIC_RATE": f"{each:g}",
                   "CRYPTOVIZ_SYNTHETIC_PAIR_OFFSET": str(index * a.pairs)}  # fmt: skip
            recovery = self.state / "recovery" / f"synthetic-{index}"
            self._spawn(f"producer-synthetic-{index + 1}", [sys.executable, "-m", "flows.run",
                        "producer-synthetic", "--recovery-dir", str(recovery)], env)  # fmt: skip
        self.t0 = time.monotonic()
        while (now := time.monotonic() - self.t0) < a.minutes * 60:
            time.sleep(min(a.sample_s, a.minutes * 60 - now))
            self.samples.append(self.sample(time.monotonic() - self.t0, "load"))
            last = self.samples[-1]
            step(f"t={last['t']:5.0f} s tickers {last['tickers']:,} lag {last['lag']} "
                 f"rss {last['rss_mb']} MB")  # fmt: skip
            if self.procs[WORKER].poll() is not None:
                raise StackError(f"{WORKER} exited; see {self.state / (WORKER + '.log')}")
        for name, proc in self.procs.items():
            if name != WORKER:
                proc.terminate()

    def result(self) -> dict[str, Any]:
        a = self.args
        load = [s for s in self.samples if s["phase"] == "load"]
        warm = [s for s in load if s["t"] >= a.warmup_s] or load
        start, middle, end = warm[0], warm[len(warm) // 2], warm[-1]
        lags = [s["lag"] for s in load if s["lag"] is not None]
        summary: dict[str, Any] = {
            "tickers_per_s": round(load[-1]["tickers"] / load[-1]["t"]),
            "rss_mb": {
                "start": start["rss_mb"],
                "middle": middle["rss_mb"],
                "end": end["rss_mb"],
                "peak": max(s["rss_mb"] for s in warm),
            },
            "flat": _flat(start["rss_mb"], middle["rss_mb"], end["rss_mb"]),
            "lag_end": lags[-1] if lags else None,
            "lag_max": max(lags) if lags else None,
        }
        if a.heap_every_s:
            dumps = sorted(self.heap_dir.glob("heap-*.tracemalloc"))
            if len(dumps) >= 2:
                summary["heap_growth_middle_to_end"] = compare(
                    dumps[len(dumps) // 2], dumps[-1], top=8
                ).splitlines()
            heap = self.heap_dir / "heap.jsonl"
            if heap.exists():
                summary["heap"] = [json.loads(x) for x in heap.read_text().splitlines()]
        options = {k: str(v) if isinstance(v, Path) else v
                   for k, v in vars(a).items() if k not in ("no_write", "results")}  # fmt: skip
        return {**provenance(), "options": options, "summary": summary, "samples": self.samples}

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                # SIGINT: Bytewax stops at once and the process exits normally (profilers
                # write their reports at exit).
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.kafka is not None:
            self.kafka.close()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alert_memory",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--rate", type=float, default=12_600.0, help="ticks + trades per second")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=12, help="pairs per producer")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--backlog", type=int, default=0, help="tickers written before the start")
    parser.add_argument(
        "--backlog-rate", type=float, default=3_800.0, help="tickers/s of ticker time"
    )
    parser.add_argument("--heap-every-s", type=float, default=0.0, help="tracemalloc dumps")
    parser.add_argument("--heap-frames", type=int, default=8)
    parser.add_argument("--heap-dir", type=Path, default=None)
    parser.add_argument(
        "--memray", type=Path, default=None, help="run the worker under memray into this file"
    )
    parser.add_argument("--keep-state", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    return run_program("bench.alert_memory", lambda: _measure(args))


def _measure(args: argparse.Namespace) -> None:
    settings = load_settings()
    if settings.kafka.bootstrap_servers is not None:  # others' messages stay out of the lag
        settings = settings.with_topics(
            settings.kafka.topics.with_suffix(f"-alertmem{uuid.uuid4().hex[:6]}")
        )
    with temporary_stack(
        prefix="cryptoviz-alert-memory-",
        settings=settings,
        database=False,
        prepare=False,
        keep=args.keep_state,
    ) as stack:
        run = Run(args, stack)
        try:
            run.start()
            run.load()
            result = run.result()
        finally:
            run.close()
    report(result, args.results, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
