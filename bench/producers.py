"""Producer benchmark: parse cost per Kraken frame, synthetic -> Kafka throughput, replay speed.

    .venv/bin/python -m bench.producers [--messages 200000] [--no-write]

1. Parse cost: ``parse_kraken_v2``/``parse_kraken_v1`` per frame (with its
   ``HandlerContext``), and parse + ``encode_message`` per message, on frames of
   the bundled samples and the real v2 capture's shape.
2. Synthetic -> Kafka: the ``producer-synthetic`` dataflow (generate a v2 frame,
   parse it, encode, trace, produce with acks=all + idempotence) run flat out for
   ``--messages`` messages into fresh 3-partition topics; msgs/s and process CPU
   (all threads, librdkafka's included) per 1,000 messages, with a traceparent on
   every message (the default), and with every publish span also built and exported
   to a local OTLP/HTTP collector. The same flow into a ``TestingSink`` gives the
   cost without Kafka.
3. Replay at max speed: the ``producer-replay`` dataflow over the real Kraken v1
   captures of ``../shared/fixtures/real`` as they are (28 frames of market data)
   and concatenated 200 times (the bundled v1 sample when ../shared is absent),
   into Kafka.

Servers: an embedded Kafka broker (started here) or KAFKA_BOOTSTRAP_SERVERS.
Results: printed, and written to bench/results/producers.json.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from confluent_kafka import Consumer, TopicPartition

from bench._results import provenance, report
from flows._consumer import when_led
from flows.producers.kafka_edge import Keyed
from flows.producers.settings import (
    SAMPLES,
    SHARED_REAL,
    OutputSettings,
    ProducerSettings,
    ReplaySettings,
    SyntheticSettings,
)
from flows.producers.workers import build_producer_flow
from handlers import CoinTable, HandlerContext, encode_message, parse_kraken_v1, parse_kraken_v2
from infra.cli import run_program
from infra.settings import RAW_TOPICS, Settings
from infra.stack import temporary_stack
from infra.topics import ensure_topics

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "producers.json"

V2_TICKER = (
    b'{"channel":"ticker","type":"update","data":[{"symbol":"ADA/USD","bid":0.10034,'
    b'"bid_qty":15000.00000000,"ask":0.10036,"ask_qty":2500.5,"last":0.10035,'
    b'"volume":12345678.90123456,"vwap":0.10100,"low":0.09980,"high":0.10250,'
    b'"change":-0.00120,"change_pct":-1.18,"timestamp":"2026-05-01T10:00:02.123456Z"}]}'
)
V2_TRADE = (
    b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sell",'
    b'"price":71749.0,"qty":0.00220616,"ord_type":"limit","trade_id":97184416,'
    b'"timestamp":"2026-03-15T11:26:23.023215Z"}]}'
)
V1_TICKER = (
    b'[340,{"a":["95010.10000",1,"1.000"],"b":["95010.00000",2,"2.000"],'
    b'"c":["95010.00000","0.01000000"],"v":["120.5","980.25"],"p":["95010.00000","95010.00000"],'
    b'"t":[1000,8000],"l":["93109.80000","92159.70000"],"h":["95960.10000","96910.20000"],'
    b'"o":["94000.00000","94000.00000"]},"ticker","XBT/USD"]'
)
V1_TRADE = b'[993,[["354.11000000","0.89594024","1618678142.557535","s","l",""]],"trade","XMR/USD"]'


def v2_trade_batch(n: int) -> bytes:
    entries = ",".join(
        f'{{"symbol":"BTC/USD","side":"buy","price":71749.{i % 10},"qty":0.0022061{i % 10},'
        f'"ord_type":"market","trade_id":{97184416 + i},"timestamp":"2026-03-15T11:26:23.0232Z"}}'
        for i in range(n)
    )
    return f'{{"channel":"trade","type":"update","data":[{entries}]}}'.encode()


def best_of(runs: int, fn: Callable[[], None]) -> float:
    """Fastest of ``runs`` timings: the least disturbed by other processes on the machine."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


class Collector:
    """A local OTLP/HTTP endpoint that accepts and counts span exports (no network)."""

    def __init__(self) -> None:
        self.posts = 0
        self.bytes = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                collector.posts += 1
                collector.bytes += len(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def parse_cost(coins: CoinTable, n: int = 20_000) -> dict[str, Any]:
    frames: dict[str, tuple[Callable[..., Any], bytes]] = {
        "v2_ticker": (parse_kraken_v2, V2_TICKER),
        "v2_trade": (parse_kraken_v2, V2_TRADE),
        "v2_trade_batch_10": (parse_kraken_v2, v2_trade_batch(10)),
        "v2_heartbeat": (parse_kraken_v2, b'{"channel":"heartbeat"}'),
        "v1_ticker": (parse_kraken_v1, V1_TICKER),
        "v1_trade": (parse_kraken_v1, V1_TRADE),
    }
    now = datetime.now(UTC)
    out: dict[str, Any] = {}
    for name, (parse, frame) in frames.items():
        event = parse(frame, HandlerContext(coins=coins, now=now))
        assert not event.rejections, (name, event.rejections)

        def parse_only(parse: Callable[..., Any] = parse, frame: bytes = frame) -> None:
            for _ in range(n):
                parse(frame, HandlerContext(coins=coins, now=now))

        def parse_encode(parse: Callable[..., Any] = parse, frame: bytes = frame) -> None:
            for _ in range(n):
                for msg in parse(frame, HandlerContext(coins=coins, now=now)).messages:
                    encode_message(msg)

        per_frame = best_of(3, parse_only) / n
        with_encode = best_of(3, parse_encode) / n
        out[name] = {
            "parse_us_per_frame": round(per_frame * 1e6, 2),
            "parse_and_encode_us_per_frame": round(with_encode * 1e6, 2),
            "messages_per_frame": len(event.messages),
            "frame_bytes": len(frame),
        }
    return out


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def topic_count(bootstrap: str, topics: list[str]) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"})
    try:
        total = 0
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            for partition in meta.partitions:
                watermarks = partial(
                    consumer.get_watermark_offsets, TopicPartition(topic, partition), timeout=10
                )
                low, high = when_led(watermarks, time.monotonic() + 10)
                total += high - low
        return total
    finally:
        consumer.close()


OUTPUT = OutputSettings(trace_sample_ratio=1.0)


def fresh_topics(settings: Settings, otlp_endpoint: str | None = None) -> Settings:
    """``settings`` writing fresh raw topics (created here), exporting spans if asked."""
    suffix = uuid.uuid4().hex[:6]
    topics = msgspec.structs.replace(
        settings.kafka.topics, **{t: f"bench-{t}-{suffix}" for t in RAW_TOPICS}
    )
    ensure_topics(settings.kafka.bootstrap_servers or "", topics.raw, 3)
    return msgspec.structs.replace(settings.with_topics(topics), otlp_endpoint=otlp_endpoint)


def timed(flow: Dataflow) -> tuple[float, float]:
    cpu, started = cpu_seconds(), time.perf_counter()
    run_main(flow, epoch_interval=timedelta(seconds=1))
    return time.perf_counter() - started, cpu_seconds() - cpu


def synthetic(settings: Settings, n: int, to_kafka: bool) -> dict[str, Any]:
    """``n`` synthetic messages into Kafka (the topics of ``settings``) or a list."""
    producer = ProducerSettings(
        output=OUTPUT,
        synthetic=SyntheticSettings(pairs=50, rate=10_000_000, seed=1, max_messages=n),
    )
    sink: list[Keyed] = []
    flow = build_producer_flow(
        "producer-synthetic", settings, producer, sink=None if to_kafka else TestingSink(sink)
    )
    wall, cpu = timed(flow)
    if to_kafka:
        bootstrap = settings.kafka.bootstrap_servers or ""
        landed = topic_count(bootstrap, list(settings.kafka.topics.raw))
        assert landed == n, f"{landed} of {n} messages in Kafka"
    else:
        assert len(sink) == n
    return {
        "messages": n,
        "msgs_per_s": round(n / wall),
        "cpu_ms_per_1000_msgs": round(cpu / n * 1000 * 1000, 1),
        "cpu_cores_busy": round(cpu / wall, 2),
    }


def replay(settings: Settings, files: tuple[Path, ...]) -> dict[str, Any]:
    """``files`` replayed at full speed into the topics of ``settings``."""
    replay_settings = ReplaySettings(files=files, speed=0.0, exit_at_end=True)
    flow = build_producer_flow(
        "producer-replay", settings, ProducerSettings(output=OUTPUT, replay=replay_settings)
    )
    lines = sum(len(f.read_bytes().splitlines()) for f in files)
    wall, cpu = timed(flow)
    landed = topic_count(settings.kafka.bootstrap_servers or "", list(settings.kafka.topics.raw))
    return {
        "files": [f.name for f in files],
        "lines": lines,
        "messages": landed,
        "seconds": round(wall, 3),
        "lines_per_s": round(lines / wall),
        "msgs_per_s": round(landed / wall),
        "cpu_ms_per_1000_msgs": round(cpu / max(landed, 1) * 1e6, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.producers")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--no-write", action="store_true", help="don't update bench/results")
    args = parser.parse_args()

    # Only Kafka is needed.
    with temporary_stack(
        prefix="cryptoviz-bench-producers-", database=False, prepare=False
    ) as stack:
        settings = stack.settings
        state = settings.state_dir
        coins = settings.coin_table()

        print("parse cost per Kraken frame ...", flush=True)
        parse = parse_cost(coins)
        for name, row in parse.items():
            print(f"  {name}: {row['parse_us_per_frame']} us", flush=True)

        print(f"synthetic, {args.messages} messages ...", flush=True)
        no_kafka = synthetic(settings, args.messages, to_kafka=False)
        print(f"  without Kafka: {no_kafka['msgs_per_s']:,} msgs/s", flush=True)
        to_kafka = synthetic(fresh_topics(settings), args.messages, to_kafka=True)
        print(f"  into Kafka (traceparent only): {to_kafka['msgs_per_s']:,} msgs/s", flush=True)
        collector = Collector()
        try:
            spans = synthetic(fresh_topics(settings, collector.url), args.messages, to_kafka=True)
        finally:
            collector.close()
        spans["otlp_posts"], spans["otlp_bytes"] = collector.posts, collector.bytes
        print(f"  into Kafka, every span exported: {spans['msgs_per_s']:,} msgs/s", flush=True)

        print("replay at max speed ...", flush=True)
        real = SHARED_REAL / "kraken" / "v1"
        captures = (
            tuple(sorted(real.glob("*.txt")))
            if real.is_dir()
            else (SAMPLES / "kraken_v1_session.txt",)
        )
        as_is = replay(fresh_topics(settings), captures)
        big = state / "capture_x200.txt"
        with big.open("wb") as fh:
            for _ in range(200):
                for capture in captures:
                    fh.write(capture.read_bytes())
        enlarged = replay(fresh_topics(settings), (big,))
        enlarged["files"] = [f"{'+'.join(f.name for f in captures)} x200"]
        print(
            f"  as is: {as_is['messages']} msgs in {as_is['seconds']} s; "
            f"x200: {enlarged['msgs_per_s']:,} msgs/s",
            flush=True,
        )

    result: dict[str, Any] = {
        "parse": parse,
        "synthetic_no_kafka": no_kafka,
        "synthetic_to_kafka": to_kafka,
        "synthetic_to_kafka_otlp_every_span": spans,
        "replay_real_capture": as_is,
        "replay_real_capture_x200": enlarged,
        "real_captures_available": real.is_dir(),
        **provenance(),
    }
    report(result, RESULTS, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(run_program("bench.producers", main))
