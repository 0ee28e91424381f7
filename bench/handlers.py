"""Handler micro-benchmark: µs per message for each topic handler.

    .venv/bin/python -m bench.handlers [--seconds 0.2] [--repeat 5] [--filter ticker] [--wall]

Runs every handler on representative valid payloads (the shapes the seeds,
prototype and producers emit, 60 variants each) and on common invalid ones, with
one ``HandlerContext`` shared by all calls (the ingestion worker builds one per
batch). Prints the best of ``--repeat`` runs in µs per message, measured in CPU
time of the benchmarking thread (``--wall``: wall-clock time) so that a busy
machine skews the figures less. Pure CPU: no Kafka, no database. To compare two
versions, run it in each checkout.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from handlers import (
    CoinTable,
    HandlerContext,
    Rejection,
    parse_alert,
    parse_article,
    parse_ticker,
    parse_trade,
)
from infra.cli import run_program

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 10, 1, tzinfo=UTC)
PAIRS = ("BTC/USD", "ETH/USD", "SOL/USD", "ADA/USD", "DOT/USD", "LINK/USD")
VARIANTS = 60
"""Distinct payloads per case (prices, timestamps and pairs vary like a live stream)."""

Handler = Callable[[bytes, HandlerContext], object]


def _flat_ticker(i: int) -> bytes:
    price = 30_000 + (i % 5000) / 100
    ts = 1_764_310_291.123456 + i
    return (
        f'{{"pair":"{PAIRS[i % len(PAIRS)]}","last":{price:.2f},"bid":{price - 0.5:.2f},'
        f'"ask":{price + 0.5:.2f},"volume_24h":1200.5,"timestamp":{ts:.6f}}}'
    ).encode()


def _full_ticker(i: int) -> bytes:
    return (
        f'{{"pair":"{PAIRS[i % len(PAIRS)]}","last":71770.4,"bid":71770.3,"ask":71770.4,'
        f'"volume_24h":636.8977771,"timestamp":1773573919.{200068 + i},"bid_qty":0.03155564,'
        f'"ask_qty":1.72978253,"vwap":71318.4,"low":70510.9,"high":72000.0,"change_24h_pct":1.54,'
        f'"exchange_ts":"2026-03-15T11:25:19.{200068 + i}Z","receive_ts":1773573919.4}}'
    ).encode()


def _prototype_ticker(i: int) -> bytes:
    return (
        f'{{"pair":"XBT/USD","last":{99950.50 + i:.2f},"volume_24h":15000.5,'
        f'"timestamp":{1705312345678 + i},"pct_change":2.51}}'
    ).encode()


def _trade(i: int) -> bytes:
    return (
        f'{{"pair":"{PAIRS[i % len(PAIRS)]}","price":{71749.0 + i},"volume":0.00220616,'
        f'"timestamp":{1773573983.023215 + i:.6f},"side":"{"bs"[i % 2]}",'
        f'"trade_id":{97184416 + i},"ord_type":"l","receive_ts":1773573983.1}}'
    ).encode()


def _seed_trade(i: int) -> bytes:
    return (
        f'{{"pair":"ETH/USD","price":{2400.5 + i},"volume":2.1,'
        f'"timestamp":{1764310292 + i},"side":"b"}}'
    ).encode()


def _alert(i: int) -> bytes:
    return (
        f'{{"pair":"ETH/USD","last":{2350.25 + i},"change":-2.04,"threshold":1.5,'
        f'"timestamp":{1764310293.5 + i},"alert_type":"down","reference_price":2399.2,'
        f'"window_s":300,"receive_ts":1764310293.6}}'
    ).encode()


def _prototype_alert(i: int) -> bytes:
    return (
        f'{{"pair":"SOL/USD","type":"price_drop","value":-3.5,"timestamp":{1764310294 + i}}}'
    ).encode()


def _article(i: int) -> bytes:
    return (
        f'{{"id":"cointelegraph_{1764313285 + i}","title":"Bitcoiners accuse JPMorgan...",'
        f'"url":"https://cointelegraph.com/news/bitcoiners-accuse-jpmorgan",'
        f'"website":"cointelegraph.com","content":{{"summary":"..."}},'
        f'"cryptocurrencies_mentioned":["BTC","ETH"],'
        f'"sentiment":{{"score":0.993,"label":"positive"}},"timestamp":{1764313285 + i}}}'
    ).encode()


def _prose_article(i: int) -> bytes:
    return (
        f'{{"id":"https://coindesk.com/article-{i}","title":"Bitcoin hits new all-time high",'
        f'"url":"https://www.coindesk.com/article-{i}",'
        f'"summary":"Bitcoin rallied as ETF inflows grew; ETH and $sol followed.",'
        f'"published_at":"2024-01-15T14:30:00Z","sentiment":{{"score":0.8}}}}'
    ).encode()


def _broken(make: Callable[[int], bytes], old: bytes, new: bytes) -> Callable[[int], bytes]:
    """``make`` with the first ``old`` replaced by ``new`` (an invalid variant)."""
    return lambda i: make(i).replace(old, new, 1)


VALID: list[tuple[str, Handler, Callable[[int], bytes]]] = [
    ("ticker  flat producer", parse_ticker, _flat_ticker),
    ("ticker  full producer (ISO exchange_ts)", parse_ticker, _full_ticker),
    ("ticker  prototype (XBT, epoch ms)", parse_ticker, _prototype_ticker),
    ("trade   producer", parse_trade, _trade),
    ("trade   seed", parse_trade, _seed_trade),
    ("alert   producer", parse_alert, _alert),
    ("alert   prototype", parse_alert, _prototype_alert),
    ("article seed", parse_article, _article),
    ("article prose mentions", parse_article, _prose_article),
]
INVALID: list[tuple[str, Handler, Callable[[int], bytes]]] = [
    ("ticker  x negative last", parse_ticker, _broken(_flat_ticker, b'"last":', b'"last":-')),
    ("ticker  x unknown pair", parse_ticker, _broken(_flat_ticker, b'"pair":"', b'"pair":"?')),
    ("ticker  x future time", parse_ticker, _broken(_flat_ticker, b":1764", b":9764")),
    ("ticker  x no timestamp", parse_ticker, _broken(_flat_ticker, b'"timestamp"', b'"t"')),
    ("ticker  x not JSON", parse_ticker, _broken(_flat_ticker, b"}", b"")),
    ("trade   x bad side", parse_trade, _broken(_trade, b'"side":"', b'"side":"x')),
]
CASES = [(*case, True) for case in VALID] + [(*case, False) for case in INVALID]


def _coins() -> CoinTable:
    with (REPO / "infra" / "coins.toml").open("rb") as fh:
        return CoinTable.from_mapping(tomllib.load(fh))


def _per_message(
    handler: Handler,
    payloads: list[bytes],
    ctx: HandlerContext,
    seconds: float,
    repeat: int,
    clock: Callable[[], float],
) -> float:
    """Best-of-``repeat`` µs per call, each run lasting about ``seconds``."""

    def run(rounds: int) -> float:
        start = clock()
        for _ in range(rounds):
            for payload in payloads:
                handler(payload, ctx)
        return clock() - start

    rounds = 1
    while (elapsed := run(rounds)) < seconds / 4:  # calibrate
        rounds *= 2
    rounds = max(1, int(rounds * seconds / elapsed))
    best = min(run(rounds) for _ in range(repeat))
    return best / (rounds * len(payloads)) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="per timed run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--filter", default="", help="only cases whose name contains this")
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.wall else time.thread_time

    coins = _coins()
    ctx = HandlerContext(coins=coins, now=NOW)
    print(f"{'case':<42} {'µs/msg':>8}  result")
    for name, handler, make, valid in CASES:
        if args.filter not in name:
            continue
        payloads = [make(i) for i in range(VARIANTS)]
        results = [handler(payload, ctx) for payload in payloads]
        rejected = [r for r in results if isinstance(r, Rejection)]
        if valid and rejected:
            raise SystemExit(f"{name}: expected records, got {rejected[0]}")
        if not valid and len(rejected) != len(results):
            raise SystemExit(f"{name}: expected rejections, got {results[0]}")
        micros = _per_message(handler, payloads, ctx, args.seconds, args.repeat, clock)
        outcome = type(results[0]).__name__
        if isinstance(results[0], Rejection):
            outcome += f" ({results[0].reason[:40]})"
        print(f"{name:<42} {micros:8.2f}  {outcome}")
    start = clock()
    for _ in range(10_000):
        HandlerContext(coins=coins, now=NOW)
    context_us = (clock() - start) / 10_000 * 1e6
    print(f"{'HandlerContext(...) (once per batch)':<42} {context_us:8.2f}")


if __name__ == "__main__":
    sys.exit(run_program("bench.handlers", main))
