"""Ingestion benchmark: one `ingest-rawticker` worker against the raw COPY ceiling.

    .venv/bin/python -m bench.ingest [--messages 1000000] [--rate 2000] [--latency-s 30]
                                     [--latency-warmup-s 10]

1. Pre-loads ``--messages`` ticker messages into a fresh 3-partition topic.
2. Raw ceiling: the same rows (parsed beforehand, untimed) written straight into
   ``ticker_data`` of an empty database with COPY through psycopg's ``write_row``,
   in batches of the worker's batch size, one connection: a raw COPY with zero
   Kafka, parsing and Bytewax overhead (``ratio`` is the worker against it). Then
   the same COPY with its text encoded beforehand (untimed) by the worker's own
   encoder: the transfer and the server's work alone (``ratio_to_copy_text``).
3. Throughput: ``python -m flows.run ingest-rawticker`` on an empty database,
   timed from its first committed row to the last (and from process start).
4. Latency: a steady ``--rate`` msgs/s into a fresh topic with a running worker, for
   ``--latency-warmup-s`` seconds (servers and worker reaching their steady state;
   its p99 reported apart) then ``--latency-s`` seconds measured; latency =
   ``ingest_time`` (the writing transaction's start, PostgreSQL ``now()``) minus the
   message's own timestamp (set at produce time), so it covers produce -> Kafka ->
   poll -> parse -> write; and split at ``kafka_time`` (the broker's append) into the
   producer-and-Kafka hop and the worker's hop (:data:`HOPS`).

Servers: the embedded stack (started here), or KAFKA_BOOTSTRAP_SERVERS/DATABASE_URL.
Results: printed, and written to bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Producer
from psycopg import sql

from bench._results import provenance, report
from flows._copy import encode_columns
from flows._pg_writer import KAFKA_TIME
from flows._tables import TICKER, rows_for
from handlers import HandlerContext, Rejection, parse_ticker
from infra._procs import free_port
from infra.cli import run_program
from infra.migrate import migrate
from infra.settings import Settings
from infra.stack import temporary_stack
from infra.topics import ensure_topics

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "ingest.json"
PAIRS = ("BTC/USD", "ETH/USD", "SOL/USD", "ADA/USD", "DOT/USD", "LINK/USD")
BASE_TS = 1_764_310_291.0


def ticker_payload(i: int, ts: float) -> bytes:
    price = 30_000 + (i % 5000) / 100
    return (
        f'{{"pair":"{PAIRS[i % len(PAIRS)]}","last":{price:.2f},"bid":{price - 0.5:.2f},'
        f'"ask":{price + 0.5:.2f},"volume_24h":1200.5,"timestamp":{ts:.6f}}}'
    ).encode()


def new_database(
    admin_url: str, *, migrate: Callable[[str], object] = migrate, prefix: str = "bench"
) -> str:
    """A new database on ``admin_url``'s server, migrated by ``migrate`` (default: this
    checkout's migrations; another commit's code needs its own schema)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    migrate(url)
    return url


def preload(bootstrap: str, topic: str, n: int) -> float:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1000000,
        }
    )
    started = time.perf_counter()
    for i in range(n):
        payload = ticker_payload(i, BASE_TS + i / 1000)
        while True:
            try:
                producer.produce(topic, payload, key=PAIRS[i % len(PAIRS)].encode())
                break
            except BufferError:
                producer.poll(0.05)
        if i % 50000 == 0:
            producer.poll(0)
    producer.flush(120)
    return n / (time.perf_counter() - started)


def ceiling_rows(n: int, settings: Settings) -> list[tuple[Any, ...]]:
    """The workload's rows as the worker writes them (parsed, with a Kafka time)."""
    ctx = HandlerContext(coins=settings.coin_table(), now=datetime.now(UTC))
    records = []
    for i in range(n):
        rec = parse_ticker(ticker_payload(i, BASE_TS + i / 1000), ctx)
        assert not isinstance(rec, Rejection), rec
        records.append(rec)
    appended = datetime.now(UTC)
    return [(*row, appended) for row in rows_for(TICKER, records)]


def copy_ceiling(
    url: str, n: int, batch: int, settings: Settings, *, pre_encoded: bool = False
) -> float:
    """Rows per second of a COPY of the parsed rows into an empty ``ticker_data``.

    By default each row goes through psycopg's ``write_row`` (the raw COPY any client
    would write); with ``pre_encoded`` the COPY text is built beforehand (untimed,
    with the worker's own encoder), so only the transfer and the server's work count.
    """
    rows = ceiling_rows(n, settings)
    chunks = [rows[lo : lo + batch] for lo in range(0, n, batch)]
    texts = [encode_columns(list(zip(*chunk, strict=True))) for chunk in chunks]
    copy = sql.SQL("COPY ticker_data ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, (*TICKER.columns, KAFKA_TIME)))
    )
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for chunk, text in zip(chunks, texts, strict=True):
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy) as cp:
                if pre_encoded and text is not None:
                    cp.write(text)
                else:
                    for row in chunk:
                        cp.write_row(row)
        elapsed = time.perf_counter() - started
    return n / elapsed


def count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM ticker_data").fetchone()
        return int(row[0]) if row else 0


def start_worker(env: dict[str, str], topic: str, state: Path) -> subprocess.Popen[bytes]:
    log = (state / f"worker-{topic}.log").open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.run",
            "ingest-rawticker",
            "--topic",
            topic,
            "--metrics-port",
            str(free_port()),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def throughput(
    settings: Settings, env: dict[str, str], url: str, topic: str, n: int, state: Path
) -> dict[str, float]:
    env = {**env, "DATABASE_URL": url}
    started = time.perf_counter()
    proc = start_worker(env, topic, state)
    first: float | None = None
    try:
        while True:
            done = count(url)
            now = time.perf_counter()
            if first is None and done > 0:
                first = now
            if done >= n:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}; see {state}")
            time.sleep(0.05)
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    assert first is not None
    return {
        "msgs_per_s": n / (now - first),
        "msgs_per_s_incl_startup": n / (now - started),
        "worker_rss_mb": rss,
    }


HOPS = {
    "": ("timestamp", "ingest_time"),
    "_kafka": ("timestamp", KAFKA_TIME),
    "_worker": (KAFKA_TIME, "ingest_time"),
}
"""The latency figures' prefixes (``latency{hop}_p99_ms``) and the columns each spans: the
message's own time (set at produce) to the writing transaction's start (end to end),
to the broker's append (the producer and Kafka), and the append to the transaction (the
ingestion worker: poll, parse, write)."""
QUANTILES = {"p50": 0.5, "p99": 0.99, "p999": 0.999}
HOP_FIGURES = tuple(f"latency{hop}_{q}_ms" for hop in HOPS for q in QUANTILES)
WARMUP_FIGURE = "latency_warmup_p99_ms"


def latency_figures(url: str, measured_from: float) -> dict[str, float]:
    """Latency quantiles (ms) of the rows produced at or after ``measured_from`` (epoch
    seconds), per hop of :data:`HOPS`, and the end-to-end p99 of the rows before it (the
    warm-up: a broker and worker just started, reported apart)."""
    hop_sql = [
        sql.SQL(
            "percentile_cont({q}) WITHIN GROUP (ORDER BY extract(epoch FROM {b} - {a}) * 1000)"
            " FILTER (WHERE timestamp >= to_timestamp(%(t)s))"
        ).format(q=sql.Literal(q), a=sql.Identifier(a), b=sql.Identifier(b))
        for a, b in HOPS.values()
        for q in QUANTILES.values()
    ]
    query = sql.SQL(
        "SELECT {hops}, percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM "
        "ingest_time - timestamp) * 1000) FILTER (WHERE timestamp < to_timestamp(%(t)s)), "
        "count(*) FILTER (WHERE timestamp >= to_timestamp(%(t)s)), "
        "count(*) FILTER (WHERE timestamp < to_timestamp(%(t)s)) FROM ticker_data"
    ).format(hops=sql.SQL(", ").join(hop_sql))
    with psycopg.connect(url) as conn:
        row = conn.execute(query, {"t": measured_from}).fetchone()
    assert row is not None
    *values, warmup_p99, rows, warmup_rows = row
    figures = {name: float(v) for name, v in zip(HOP_FIGURES, values, strict=True) if v is not None}
    if warmup_p99 is not None:
        figures[WARMUP_FIGURE] = float(warmup_p99)
    return {**figures, "rows": rows, "warmup_rows": warmup_rows}


def steady_latency(
    bootstrap: str,
    proc: subprocess.Popen[bytes],
    url: str,
    topic: str,
    rate: int,
    seconds: float,
    warmup_s: float,
) -> dict[str, float]:
    """Produce ``rate`` msgs/s to ``topic`` for ``warmup_s`` then ``seconds``, with the
    worker ``proc`` writing them to ``url``; the figures of the second part.

    The warm-up is there because a broker and a worker just started are not in their
    steady state: a fresh JVM appends the first seconds of small produce requests slowly
    (measured: the first 2-3 s of traffic waited up to 1.3 s between the producer and
    the broker's append, while the worker's own hop stayed under 60 ms), which is the
    start-up of the servers, not the latency of the pipeline at a steady rate."""
    time.sleep(3)  # let the worker connect before the clock starts
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    warm, total = int(rate * warmup_s), int(rate * (warmup_s + seconds))
    started = time.perf_counter()
    measured_from = float("inf")
    for i in range(total):
        target = started + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        now = time.time()
        if i == warm:
            measured_from = now
        producer.produce(topic, ticker_payload(i, now), key=PAIRS[i % 6].encode())
        producer.poll(0)
    producer.flush(30)
    deadline = time.monotonic() + 60
    while count(url) < total and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}")
        time.sleep(0.2)
    return latency_figures(url, measured_from)


def latency(
    bootstrap: str,
    env: dict[str, str],
    url: str,
    topic: str,
    rate: int,
    seconds: float,
    warmup_s: float,
    state: Path,
) -> dict[str, float]:
    proc = start_worker({**env, "DATABASE_URL": url}, topic, state)
    try:
        return steady_latency(bootstrap, proc, url, topic, rate, seconds, warmup_s)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--latency-s", type=float, default=30.0)
    parser.add_argument(
        "--latency-warmup-s", type=float, default=10.0,
        help="traffic at --rate before the measured --latency-s (reported apart)",
    )  # fmt: skip
    parser.add_argument("--no-write", action="store_true", help="don't update bench/results")
    args = parser.parse_args()

    with temporary_stack(prefix="cryptoviz-bench-") as stack:
        settings = stack.settings
        state = settings.state_dir
        bootstrap, admin = stack.bootstrap, stack.database_url
        env = {**os.environ, **stack.env(), "PYTHONPATH": str(REPO)}
        env["CRYPTOVIZ_STATE_DIR"] = str(state / "workers")

        topic = f"bench-rawticker-{uuid.uuid4().hex[:6]}"
        ensure_topics(bootstrap, (topic,), 3)
        print(f"pre-loading {args.messages} messages into {topic} ...", flush=True)
        produce_rate = preload(bootstrap, topic, args.messages)
        print(f"  produced at {produce_rate:,.0f} msgs/s", flush=True)

        print("raw COPY ceiling ...", flush=True)
        ceiling = copy_ceiling(
            new_database(admin), args.messages, settings.ingest.batch_size, settings
        )
        print(f"  {ceiling:,.0f} rows/s", flush=True)
        text_ceiling = copy_ceiling(
            new_database(admin), args.messages, settings.ingest.batch_size, settings,
            pre_encoded=True,
        )  # fmt: skip
        print(f"  pre-encoded COPY text: {text_ceiling:,.0f} rows/s", flush=True)

        print("ingestion worker ...", flush=True)
        tp = throughput(settings, env, new_database(admin), topic, args.messages, state)
        print(
            f"  {tp['msgs_per_s']:,.0f} msgs/s, peak RSS {tp['worker_rss_mb']:.0f} MB", flush=True
        )

        print(f"latency at {args.rate} msgs/s for {args.latency_s:.0f} s ...", flush=True)
        lat_topic = f"bench-latency-{uuid.uuid4().hex[:6]}"
        ensure_topics(bootstrap, (lat_topic,), 3)
        lat = latency(
            bootstrap, env, new_database(admin), lat_topic, args.rate, args.latency_s,
            args.latency_warmup_s, state,
        )  # fmt: skip
        print(
            f"  p50 {lat['latency_p50_ms']:.1f} ms, p99 {lat['latency_p99_ms']:.1f} ms "
            f"(producer -> Kafka p99 {lat['latency_kafka_p99_ms']:.1f}, Kafka -> database "
            f"p99 {lat['latency_worker_p99_ms']:.1f}; warm-up p99 "
            f"{lat['latency_warmup_p99_ms']:.1f})",
            flush=True,
        )

    result: dict[str, Any] = {
        "msgs_per_s": round(tp["msgs_per_s"]),
        "msgs_per_s_incl_startup": round(tp["msgs_per_s_incl_startup"]),
        "copy_rows_per_s": round(ceiling),
        "ratio": round(tp["msgs_per_s"] / ceiling, 3),
        "copy_text_rows_per_s": round(text_ceiling),
        "ratio_to_copy_text": round(tp["msgs_per_s"] / text_ceiling, 3),
        "worker_rss_mb": round(tp["worker_rss_mb"], 1),
        **{k: round(v, 1) for k, v in lat.items() if k.startswith("latency_")},
        "latency_rate_msgs_per_s": args.rate,
        "latency_s": args.latency_s,
        "latency_warmup_s": args.latency_warmup_s,
        "messages": args.messages,
        "batch_size": settings.ingest.batch_size,
        **provenance(),
    }
    report(result, RESULTS, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(run_program("bench.ingest", main))
