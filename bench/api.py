"""API benchmark: latency at a fixed rate, and saturation throughput, of four endpoints.

    .venv/bin/python -m bench.api [--rows 10000000] [--rate 200] [--seconds 15] [--runs 3]
                                  [--endpoints ticker_24h_1000_rows ...] [--workers 1]

1. Loads ``--rows`` ticker rows over the last 30 days for 10 pairs into a fresh
   database (generate_series, then VACUUM ANALYZE as autovacuum would).
2. Serves the API with ``python -m api`` (rate limit and live relay off), one
   uvicorn worker and then more.
3. From this (second) process, a minimal keep-alive HTTP/1.1 load generator:
   * fixed rate: ``--rate`` requests/s, open loop (each request's latency counts
     from its scheduled start, so a stalled server cannot hide its queueing);
   * saturation: ``--concurrency`` connections in a closed loop, requests/s.
   Endpoints: ``ticker/BTC/USD/historique/?periode=24h`` (first page, 100 rows), the
   same with ``limit=1000`` (the prototype's request: its ticker history returned up
   to 1,000 rows), ``prix/BTC/temps_reel/`` and 1h candles over 30 days.
4. The uncached candles and the 1,000-row page without the row cache, at saturation
   with one worker (``UNCACHED``).
5. Each figure is measured ``--runs`` times in the session; the result is the median
   of each statistic over the runs (errors and timeouts: their sum), the runs beside
   it. With one worker, ``server_cpu_ms_per_request`` is the CPU the API process used
   per answered request: steadier than req/s on a shared machine; with the embedded
   server, ``postgres_cpu_ms_per_request`` is PostgreSQL's (all its processes).

Servers: the embedded PostgreSQL (started here) or DATABASE_URL. Results: printed and
written to bench/results/api.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench._results import provenance, report
from bench.ingest import new_database
from infra._procs import cpu_seconds, free_port, tree_cpu_seconds
from infra.cli import run_program
from infra.migrate import migrate
from infra.postgres_server import EmbeddedPostgres
from infra.stack import temporary_stack

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "api.json"
PAIRS = tuple(
    f"{s}/USD" for s in ("BTC", "ETH", "SOL", "ADA", "DOT", "LINK", "XRP", "DOGE", "LTC", "AVAX")
)
ENDPOINTS = {
    "ticker_24h_first_page": "/api/v1/ticker/BTC/USD/historique/?periode=24h",
    "ticker_24h_1000_rows": "/api/v1/ticker/BTC/USD/historique/?periode=24h&limit=1000",
    "latest_price": "/api/v1/prix/BTC/temps_reel/",
    "candles_1h_30d": "/api/v1/candles/BTC/USD/?interval=1h&periode=30d&limit=1000",
}


UNCACHED: dict[str, tuple[str, int | None]] = {
    "candles_1h_30d": ("CRYPTOVIZ_CANDLE_CACHE_S", 4),
    "ticker_24h_1000_rows": ("CRYPTOVIZ_API_ROW_CACHE_ROWS", None),
}
"""Endpoints also measured at saturation (one worker) with their cache off: the setting
that turns it off, and the connections (None: ``--concurrency``). Uncached 1h candles
aggregate 1M ticks per request: 4 connections are plenty."""


def load(admin_url: str, rows: int, *, migrate: Callable[[str], object] = migrate) -> str:
    """A new database of ``rows`` ticker rows, its schema made by ``migrate`` (default:
    this checkout's migrations; ``bench.compare`` passes each commit's own)."""
    url = new_database(admin_url, migrate=migrate, prefix="bench_api")
    per_pair = rows // len(PAIRS)
    step_s = 30 * 86400 / per_pair
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        # Pairs interleaved in time, as live ingestion writes them: without the ORDER BY
        # the join stores each pair's rows together, and a page of one pair then reads
        # a tenth of the heap pages it reads on a live table.
        conn.execute(
            """INSERT INTO ticker_data (timestamp, pair, last, bid, ask, volume_24h)
            SELECT now() - (%(n)s - g) * make_interval(secs => %(step)s), p.pair,
                   30000 + 1000 * sin(g / 5000.0) + p.i,
                   29999 + 1000 * sin(g / 5000.0) + p.i,
                   30001 + 1000 * sin(g / 5000.0) + p.i, 1200.5
            FROM generate_series(1, %(n)s) AS g,
                 unnest(%(pairs)s::text[]) WITH ORDINALITY AS p(pair, i)
            ORDER BY g, p.i""",
            {"n": per_pair, "step": step_s, "pairs": list(PAIRS)},
        )
        conn.execute("VACUUM ANALYZE ticker_data")
        # Flush the load's dirty pages now rather than during the measurements.
        conn.execute("CHECKPOINT")
    print(f"  {per_pair * len(PAIRS):,} rows in {time.monotonic() - started:.0f} s", flush=True)
    return url


class Connection:
    """One keep-alive HTTP/1.1 connection; requests are sent one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def get(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def request_bytes(path: str) -> bytes:
    """The bytes of a GET of ``path``, for :meth:`Connection.get` (keep-alive: HTTP/1.1)."""
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


def _summary(latencies: list[float], errors: int, elapsed: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "rps": round(len(ordered) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else 0.0,
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2) if ordered else 0.0,
        "errors": errors,
    }


async def fixed_rate(port: int, path: str, rate: int, seconds: float) -> dict[str, float]:
    """Open loop: request i is due at start + i/rate; its latency counts from then."""
    request = request_bytes(path)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    errors = 0

    async def one(due: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            status = await conn.get(request)
        finally:
            pool.put_nowait(conn)
        if status != 200:
            errors += 1
        latencies.append(time.perf_counter() - due)

    start = time.perf_counter()
    tasks = []
    total = int(rate * seconds)
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    # A server far slower than the rate would take forever to drain its queue: what
    # has not answered 10 s after the last request was due counts as timed out.
    _, pending = await asyncio.wait(tasks, timeout=10.0)
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().close()
    summary = _summary(latencies, errors, elapsed)
    summary["timeouts"] = len(pending)
    if pending:
        # Unanswered requests are slower than any answered one: p99 is at least this.
        summary["p99_ms"] = max(summary["p99_ms"], round(elapsed * 1000, 2))
    return summary


async def saturate(port: int, path: str, concurrency: int, seconds: float) -> dict[str, float]:
    """Closed loop: ``concurrency`` connections, each sending as soon as it has an answer."""
    request = request_bytes(path)
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        conn = await Connection.open(port)
        try:
            while time.perf_counter() < stop:
                sent = time.perf_counter()
                if await conn.get(request) != 200:
                    errors += 1
                latencies.append(time.perf_counter() - sent)
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return _summary(latencies, errors, time.perf_counter() - start)


COUNTS = ("errors", "timeouts")


def median_of(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Each statistic's median over ``runs`` (counts: their sum), with the runs."""
    merged: dict[str, Any] = {
        key: sum(r[key] for r in runs)
        if key in COUNTS
        else round(statistics.median(r[key] for r in runs), 3)
        for key in runs[0]
    }
    return {**merged, "runs": runs}


def measured_saturation(
    pid: int | None,
    port: int,
    path: str,
    concurrency: int,
    seconds: float,
    postmaster: int | None = None,
) -> dict[str, float]:
    """:func:`saturate`, plus the CPU per request of the server process ``pid`` (when
    it serves the requests itself: one worker; with more, child processes do) and of
    the PostgreSQL server ``postmaster`` (when started here)."""
    before = cpu_seconds(pid) if pid is not None else 0.0
    pg_before = tree_cpu_seconds(postmaster) if postmaster is not None else 0.0
    sat = asyncio.run(saturate(port, path, concurrency, seconds))
    answered = sat["rps"] * seconds
    if pid is not None and answered:
        used = cpu_seconds(pid) - before
        sat["server_cpu_ms_per_request"] = round(used / answered * 1000, 3)
    if postmaster is not None and answered:
        used = tree_cpu_seconds(postmaster) - pg_before
        sat["postgres_cpu_ms_per_request"] = round(used / answered * 1000, 3)
    return sat


def postmaster_pid(server: EmbeddedPostgres | None) -> int | None:
    """The postmaster's pid of the embedded server (None: DATABASE_URL's server)."""
    if server is None:
        return None
    return int((server.pgdata / "postmaster.pid").read_text().split()[0])


def serve(
    url: str, workers: int, extra_env: dict[str, str] | None = None, *, code: Path = REPO
) -> tuple[subprocess.Popen[bytes], int]:
    """``python -m api`` of the checkout in ``code`` (default: this one) on a free port,
    with ``extra_env`` over the benchmark's settings."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "DATABASE_URL": url,
        "CRYPTOVIZ_API_PORT": str(port),
        "CRYPTOVIZ_API_WORKERS": str(workers),
        "CRYPTOVIZ_RATE_LIMIT": "off",
        "CRYPTOVIZ_API_LIVE": "0",
        "CRYPTOVIZ_DB_POOL_MIN": "4",
        "CRYPTOVIZ_DB_POOL_MAX": "10",
        **(extra_env or {}),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "api"], cwd=code, env=env, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/cryptos/", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("python -m api did not start")
        time.sleep(0.3)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument(
        "--endpoints",
        nargs="+",
        choices=list(ENDPOINTS),
        default=list(ENDPOINTS),
        metavar="KEY",
        help=f"only these endpoints (default: all of {', '.join(ENDPOINTS)}); the uncached "
        "candles run only with candles_1h_30d. A run of some endpoints only is printed, "
        "not written to bench/results (it would replace the others' figures)",
    )
    parser.add_argument("--no-write", action="store_true", help="don't update bench/results")
    args = parser.parse_args()
    endpoints = {name: ENDPOINTS[name] for name in args.endpoints}

    result: dict[str, Any] = {"endpoints": {}, "saturation": {}}
    with temporary_stack(prefix="cryptoviz-bench-api-", kafka=False, prepare=False) as stack:
        settings = stack.settings
        assert settings.database.url is not None
        print(f"loading {args.rows:,} ticker rows ...", flush=True)
        url = load(settings.database.url, args.rows)
        postmaster = postmaster_pid(stack.postgres)

        proc, port = serve(url, 1)
        try:
            for name, path in endpoints.items():
                asyncio.run(saturate(port, path, 4, 2.0))  # warm-up: pool, caches, plans
                runs = []
                for _ in range(args.runs):
                    runs.append(asyncio.run(fixed_rate(port, path, args.rate, args.seconds)))
                    print(f"  {name} at {args.rate} rps, 1 worker: {runs[-1]}", flush=True)
                fixed = median_of(runs)
                result["endpoints"][name] = {"path": path, "target_rps": args.rate, **fixed}
        finally:
            stop(proc)

        for name, (setting, connections) in UNCACHED.items():
            if name not in endpoints:
                continue
            proc, port = serve(url, 1, {setting: "0"})
            try:
                path = ENDPOINTS[name]
                asyncio.run(saturate(port, path, 4, 2.0))
                concurrency = connections or args.concurrency
                uncached = median_of(
                    [
                        measured_saturation(
                            proc.pid, port, path, concurrency, args.seconds, postmaster
                        )
                        for _ in range(args.runs)
                    ]
                )
                print(f"  {name} with {setting}=0, saturation: {uncached}", flush=True)
                result[f"{name}_without_cache"] = {
                    "concurrency": concurrency,
                    "setting": f"{setting}=0",
                    **uncached,
                }
            finally:
                stop(proc)

        for workers in args.workers:
            proc, port = serve(url, workers)
            try:
                per_endpoint = {}
                for name, path in endpoints.items():
                    asyncio.run(saturate(port, path, 4, 2.0))
                    pid = proc.pid if workers == 1 else None
                    runs = []
                    for _ in range(args.runs):
                        runs.append(
                            measured_saturation(
                                pid, port, path, args.concurrency, args.seconds, postmaster
                            )
                        )
                        print(f"  {name} saturation, {workers} worker(s): {runs[-1]}", flush=True)
                    per_endpoint[name] = median_of(runs)
                result["saturation"][str(workers)] = per_endpoint
            finally:
                stop(proc)

    best = {
        name: max(
            ((int(w), r[name]["rps"]) for w, r in result["saturation"].items()),
            key=lambda item: item[1],
        )
        for name in endpoints
    }
    result["saturation_best"] = {
        name: {"workers": workers, "rps": rps} for name, (workers, rps) in best.items()
    }
    result.update(
        rows=args.rows,
        pairs=len(PAIRS),
        concurrency=args.concurrency,
        seconds_per_run=args.seconds,
        runs_per_figure=args.runs,
        command=" ".join(["python -m bench.api", *sys.argv[1:]]),
        database="PostgreSQL (plain flavour: ticker_ohlc_hourly is a view, not a continuous "
        "aggregate)",
        notes="Each figure is the median of runs_per_figure runs in this session (errors "
        "and timeouts: their sum). Server, PostgreSQL and load generator share the "
        "machine's cores, so one worker saturates it. Candles: completed buckets come "
        "from the per-process cache (CRYPTOVIZ_CANDLE_CACHE_S, 60 s), recomputed once a "
        "minute; without it, see candles_1h_30d_without_cache (1M ticks aggregated per "
        "request). Ticker pages: each row's JSON from the per-process row cache "
        "(CRYPTOVIZ_API_ROW_CACHE_ROWS), the page's stamps read every request; without "
        "it, see ticker_24h_1000_rows_without_cache. The table is not written during the "
        "runs, so every page after the first is served from the cache.",
        **provenance(),
    )
    complete = len(endpoints) == len(ENDPOINTS)
    report(result, RESULTS, write=complete and not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(run_program("bench.api", main))
