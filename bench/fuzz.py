"""Deterministic mutation fuzzer for every raw-topic handler and the Kraken frame parsers.

    .venv/bin/python -m bench.fuzz [--frames 1000000] [--seed 6] [--quiet]

Frames are generated from valid seeds of each target (the four raw topics of
:data:`handlers.HANDLERS` plus Kraken WebSocket v2 and v1 frames) and mutated:
truncated JSON, wrong types, NaN/Infinity, huge numbers (``1e400``, 400-digit
integers), negative prices, far-future and ancient timestamps, 10 MB payloads,
invalid UTF-8, 10,000-level nesting, random bytes, deleted and duplicated keys,
spliced frames. Seeded ``random`` only: the same ``--seed`` and ``--frames``
give the same frames, so a crash is reproducible from its index.

Each frame goes to its target's parser (and every 8th one also to a random other
target). A **crash** is an exception escaping a parser, a rejection whose reason
is empty or starts with ``internal error`` (the parsers' catch-all for a bug), or
an accepted record that breaks an invariant (a non-finite number, a non-positive
price, a time after ``now + max_future``). Prints accepted/rejected/crashes per
target and frames/s; exits 1 on any crash (the first few are printed with a
reproducer).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from handlers import (
    HANDLERS,
    AlertRecord,
    ArticleRecord,
    CoinTable,
    HandlerContext,
    KrakenEvent,
    Rejection,
    TickerRecord,
    TradeRecord,
    parse_kraken_v1,
    parse_kraken_v2,
)
from infra.cli import run_program

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "handlers"
NOW = datetime(2026, 10, 1, tzinfo=UTC)
KRAKEN_V2 = "kraken_v2"
KRAKEN_V1 = "kraken_v1"
TARGETS: tuple[str, ...] = (*sorted(HANDLERS), KRAKEN_V2, KRAKEN_V1)
TICKER_DECIMALS = ("bid", "ask", "bid_qty", "ask_qty", "vwap", "low", "high", "change_24h_pct",
                   "pct_change")  # fmt: skip

# -- seeds -----------------------------------------------------------------------------


def _load_seeds() -> dict[str, list[Any]]:
    """Valid example messages per target, parsed as JSON values (floats as written)."""
    raw = json.loads((FIXTURES / "seed_messages.json").read_text())
    seeds: dict[str, list[Any]] = {t: list(raw[t].values()) for t in HANDLERS}
    for target, name in ((KRAKEN_V2, "kraken_v2.jsonl"), (KRAKEN_V1, "kraken_v1.jsonl")):
        lines = (FIXTURES / name).read_text().splitlines()
        seeds[target] = [json.loads(line) for line in lines if line.strip()]
    return seeds


# -- hostile values ---------------------------------------------------------------------


class Raw:
    """JSON text inserted verbatim (for what ``json.dumps`` will not write: 1e400...)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


HUGE_INT = "9" * 400
RAW_NUMBERS: tuple[str, ...] = (
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", HUGE_INT, "-" + HUGE_INT,
    "0." + "0" * 399 + "1", "1e-400", "-0.0", "0", "-1", "-30000.5", "1.7976931348623157e308",
    "18446744073709551616", "-9223372036854775809", "1E+999999999", "0e0", "00", "01", "1.",
    ".5", "+1", "0x10", "1_000",
)  # fmt: skip
TIMESTAMPS: tuple[object, ...] = (
    99999999999, 1e15, 253402300800, 32503680000, -62135596801, -1e12, 0, -1, 1e-9,
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "10000-01-01T00:00:00Z",
    "2026-13-45T25:61:61Z", "2026-10-01T00:00:00+99:00", "", "now", "1764310291",
    "1764310291.5", "NaN", "2026-10-01", "2026-10-01T00:00:00", "2027-01-01T00:00:00Z",
)  # fmt: skip
WRONG_TYPES: tuple[object, ...] = (
    None, True, False, "", " ", "abc", "NaN", "Infinity", "-1", "1e400", HUGE_INT, [], [1],
    {}, {"a": 1}, 0, -1, 1.5, -0.0, "\u0000", "\ud800", "\U0001f4a9" * 50, "x" * 5000,
    "<script>alert(1)</script>", "'; DROP TABLE ticker_data; --", "../../etc/passwd",
)  # fmt: skip
INVALID_UTF8: tuple[bytes, ...] = (
    b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80",
    b"\xe2\x82", b"\xf0\x9f\x92",
)  # fmt: skip


def _dumps(value: object) -> bytes:
    """JSON with :class:`Raw` leaves written verbatim."""
    raws: list[str] = []

    def default(obj: object) -> str:
        if isinstance(obj, Raw):
            raws.append(obj.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        raise TypeError(type(obj).__name__)

    text = json.dumps(value, default=default, separators=(",", ":"), allow_nan=True)
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000RAW{i}\\u0000"', raw, 1)
    return text.encode("utf-8", "surrogatepass")


def _big_payloads() -> list[bytes]:
    """Built once: oversized and deeply nested frames (cheap to reuse, costly to rebuild)."""
    ten_mb = (
        b'{"pair":"BTC/USD","last":1,"timestamp":1764310291,"pad":"'
        + b"A" * (10 * 1024 * 1024)
        + b'"}'
    )
    just_over = b'{"pad":"' + b"B" * (1 << 20) + b'"}'
    just_under = (
        b'{"pair":"BTC/USD","last":1,"price":1,"volume":1,"side":"b","timestamp":1764310291,'
        b'"title":"t","url":"https://example.com/a","pad":"' + b"C" * ((1 << 20) - 300) + b'"}'
    )
    deep_obj = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    deep_list = b"[" * 10_000 + b"]" * 10_000
    deep_unclosed = b"[" * 100_000
    just_deep = b'{"pair":' + b"[" * 40 + b"]" * 40 + b"}"
    many_keys = b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(50_000)) + b"}"
    long_number = b'{"pair":"BTC/USD","last":' + b"7" * 500_000 + b',"timestamp":1764310291}'
    return [
        ten_mb, just_over, just_under, deep_obj, deep_list, deep_unclosed, just_deep,
        many_keys, long_number,
    ]  # fmt: skip


# -- mutation -------------------------------------------------------------------------------


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


class Mutator:
    def __init__(self, seeds: dict[str, list[Any]], rng: random.Random) -> None:
        self.rng = rng
        self.seeds = seeds
        self.paths = {t: [list(_paths(s)) for s in seeds[t]] for t in seeds}
        self.encoded = {t: [_dumps(s) for s in seeds[t]] for t in seeds}
        self.big = _big_payloads()

    # structural mutations of a decoded seed --------------------------------------------

    def _structural(self, doc: Any, paths: list[tuple[Any, ...]]) -> Any:
        rng = self.rng
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            if not paths:
                return rng.choice(WRONG_TYPES)
            path = rng.choice(paths)
            try:
                self._mutate_at(doc, path)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation replaced what the path went through
        return doc

    def _mutate_at(self, doc: Any, path: tuple[Any, ...]) -> None:
        rng = self.rng
        parent = _parent(doc, path)
        _ = parent[path[-1]]
        op = rng.randrange(9)
        if op == 0:  # delete the key / element
            del parent[path[-1]]
        elif op == 1:  # wrong type
            parent[path[-1]] = _copy(rng.choice(WRONG_TYPES))
        elif op in (2, 3):  # hostile number, raw
            parent[path[-1]] = Raw(rng.choice(RAW_NUMBERS))
        elif op == 4:  # hostile time
            parent[path[-1]] = rng.choice(TIMESTAMPS)
        elif op == 5:  # negate / scale a number
            old = parent[path[-1]]
            if isinstance(old, int | float) and not isinstance(old, bool):
                parent[path[-1]] = rng.choice((-old, old * 1e300, -abs(old) - 1, 0))
            else:
                parent[path[-1]] = Raw(rng.choice(RAW_NUMBERS))
        elif op == 6:  # number as string or string as number
            old = parent[path[-1]]
            if isinstance(old, str):
                parent[path[-1]] = Raw(rng.choice(RAW_NUMBERS))
            else:
                parent[path[-1]] = old.text if isinstance(old, Raw) else _dumps(old).decode()
        elif op == 7:  # wrap in a container
            parent[path[-1]] = rng.choice(([parent[path[-1]]], {"v": parent[path[-1]]}))
        elif isinstance(parent, dict):  # unknown extra key
            parent[rng.choice(("__proto__", "", "\ud800", "pair ", "x" * 300))] = 1

    def _duplicate_key(self, encoded: bytes, doc: Any) -> bytes:
        """Prepend a duplicate of a top-level key with a hostile value (JSON allows it)."""
        if not (isinstance(doc, dict) and doc and encoded.startswith(b"{")):
            return encoded
        key = self.rng.choice(list(doc))
        value = _dumps(self.rng.choice((*WRONG_TYPES, Raw(self.rng.choice(RAW_NUMBERS)))))
        dup = _dumps(key) + b":" + value
        if self.rng.random() < 0.5:
            return b"{" + dup + b"," + encoded[1:]
        return encoded[:-1] + b"," + dup + b"}"

    # byte-level mutations ----------------------------------------------------------------

    def _bytes(self, data: bytes) -> bytes:
        rng = self.rng
        op = rng.randrange(8)
        n = len(data)
        if op == 0 and n:  # truncate
            return data[: rng.randrange(n)]
        if op == 1 and n:  # flip bytes
            buf = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(n)] = rng.randrange(256)
            return bytes(buf)
        if op == 2:  # invalid UTF-8 inside a string or anywhere
            at = data.find(b'"', rng.randrange(max(n, 1))) + 1 if n else 0
            return data[:at] + rng.choice(INVALID_UTF8) + data[at:]
        if op == 3 and n:  # delete a slice
            a = rng.randrange(n)
            return data[:a] + data[a + rng.randint(1, 16) :]
        if op == 4 and n:  # repeat a slice
            a = rng.randrange(n)
            b = min(n, a + rng.randint(1, 32))
            return data[:b] + data[a:b] * rng.randint(2, 50) + data[b:]
        if op == 5:  # splice with another target's frame
            other = rng.choice(self.encoded[rng.choice(list(self.encoded))])
            return data[: rng.randrange(n + 1)] + other[rng.randrange(len(other)) :]
        if op == 6:  # random bytes
            return rng.randbytes(rng.randint(0, 64))
        # BOM, whitespace, NUL, trailing garbage
        return (
            rng.choice((b"\xef\xbb\xbf", b" \t\r\n", b"\x00", b""))
            + data
            + rng.choice((b"", b"}", b"]", b",", b"\x00", b" {}", b"garbage"))
        )

    def frame(self, target: str) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.0005:
            return rng.choice(self.big)
        pick = rng.randrange(len(self.seeds[target]))
        if roll < 0.03:  # an unmutated seed: the accept path must stay exercised
            return self.encoded[target][pick]
        if roll < 0.25:
            return self._bytes(self.encoded[target][pick])
        doc = self._structural(_copy(self.seeds[target][pick]), self.paths[target][pick])
        encoded = _dumps(doc)
        if roll < 0.33:
            return self._duplicate_key(encoded, doc)
        if roll < 0.45:
            return self._bytes(encoded)
        return encoded


# -- running and judging ---------------------------------------------------------------------


@dataclass
class Counts:
    accepted: int = 0
    rejected: int = 0
    crashes: int = 0


@dataclass
class Crash:
    target: str
    index: int
    problem: str
    frame: bytes

    def reproducer(self) -> str:
        shown = self.frame if len(self.frame) <= 300 else self.frame[:300] + b"..."
        head = f"[{self.index}] {self.target}: {self.problem}"
        return f"{head}\n    frame ({len(self.frame)} B): {shown!r}"


@dataclass
class Report:
    frames: int = 0
    calls: int = 0
    seconds: float = 0.0
    counts: dict[str, Counts] = field(default_factory=lambda: {t: Counts() for t in TARGETS})
    crashes: list[Crash] = field(default_factory=list)
    rejections_seen: int = 0

    @property
    def total_crashes(self) -> int:
        return sum(c.crashes for c in self.counts.values())


def _bad_decimal(value: Decimal | None) -> bool:
    return value is not None and not value.is_finite()


def _record_problem(record: object, ctx: HandlerContext) -> str | None:
    """An invariant an accepted record breaks, or None."""
    latest = ctx.now + ctx.max_future
    when = getattr(record, "time", None)
    if isinstance(when, datetime) and (when.utcoffset() is None or when > latest):
        return f"accepted a time out of range: {when!r}"
    if isinstance(record, TickerRecord):
        if record.last <= 0 or _bad_decimal(record.last):
            return f"accepted ticker last={record.last}"
        for name in TICKER_DECIMALS:
            if _bad_decimal(getattr(record, name)):
                return f"accepted non-finite ticker {name}"
    elif isinstance(record, TradeRecord):
        if record.price <= 0 or _bad_decimal(record.price) or _bad_decimal(record.volume):
            return f"accepted trade price={record.price} volume={record.volume}"
    elif isinstance(record, AlertRecord):
        for name in ("last_price", "change_percent", "threshold", "reference_price"):
            if _bad_decimal(getattr(record, name)):
                return f"accepted non-finite alert {name}"
    elif isinstance(record, ArticleRecord):
        if not math.isfinite(record.sentiment_score):
            return "accepted non-finite sentiment_score"
        if not record.title:  # a url is optional (the seeds' DOCUMENTATION_TECHNIQUE example)
            return "accepted an article without a title"
    return None


def _rejection_problem(rejection: Rejection) -> str | None:
    if not rejection.reason:
        return "rejection with an empty reason"
    if rejection.reason.startswith("internal error"):
        return f"rejection {rejection.reason[:300]!r}"
    try:  # the dead letter carries it as a UTF-8 header
        rejection.reason.encode()
    except UnicodeEncodeError:
        return f"rejection reason is not valid UTF-8 text: {rejection.reason[:300]!r}"
    return None


Judge = Callable[[bytes, HandlerContext], tuple[bool, str | None]]


def _judge_handler(topic: str) -> Judge:
    handler = HANDLERS[topic]

    def judge(frame: bytes, ctx: HandlerContext) -> tuple[bool, str | None]:
        result = handler(frame, ctx)
        if isinstance(result, Rejection):
            return False, _rejection_problem(result)
        return True, _record_problem(result, ctx)

    return judge


def _judge_kraken(parse: Callable[[bytes, HandlerContext], KrakenEvent]) -> Judge:
    def judge(frame: bytes, ctx: HandlerContext) -> tuple[bool, str | None]:
        event: object = parse(frame, ctx)
        if not isinstance(event, KrakenEvent):
            return False, f"returned {type(event).__name__}, not a KrakenEvent"
        for rejection in event.rejections:
            problem = _rejection_problem(rejection)
            if problem is not None:
                return False, problem
        for message in event.messages:
            try:  # what the producer does next with it: encode it for the raw topic
                msgspec.json.encode(message)
            except Exception as exc:
                return False, f"message does not encode: {type(exc).__name__}: {exc}"
        return not event.rejections, None

    return judge


def judges() -> dict[str, Judge]:
    out = {t: _judge_handler(t) for t in HANDLERS}
    out[KRAKEN_V2] = _judge_kraken(parse_kraken_v2)
    out[KRAKEN_V1] = _judge_kraken(parse_kraken_v1)
    return out


def context() -> HandlerContext:
    with (REPO / "infra" / "coins.toml").open("rb") as fh:
        coins = CoinTable.from_mapping(tomllib.load(fh))
    return HandlerContext(coins=coins, now=NOW)


def generate(frames: int, seed: int = 6) -> Iterator[tuple[str, bytes]]:
    """``frames`` (target, frame) pairs, deterministic for a seed."""
    rng = random.Random(seed)
    mutator = Mutator(_load_seeds(), rng)
    for i in range(frames):
        target = TARGETS[i % len(TARGETS)]
        yield target, mutator.frame(target)


def run(
    frames: int, seed: int = 6, keep: int = 20, table: Mapping[str, Judge] | None = None
) -> Report:
    """Fuzz ``frames`` frames; every crash is counted, the first ``keep`` kept in full.

    ``table`` replaces the parsers under test (the tests use it to check that a
    broken parser is caught).
    """
    ctx = context()
    table = judges() if table is None else table
    report = Report(frames=frames)
    cross = random.Random(seed + 1)
    start = time.perf_counter()
    for i, (target, frame) in enumerate(generate(frames, seed)):
        targets = [target]
        if i % 8 == 7:
            targets.append(cross.choice(TARGETS))
        for name in targets:
            counts = report.counts[name]
            report.calls += 1
            try:
                accepted, problem = table[name](frame, ctx)
            except BaseException as exc:  # what the fuzzer exists to find
                if isinstance(exc, KeyboardInterrupt):
                    raise
                accepted, problem = False, f"raised {type(exc).__name__}: {exc}"
            if problem is not None:
                counts.crashes += 1
                if len(report.crashes) < keep:
                    report.crashes.append(Crash(name, i, problem, frame))
            elif accepted:
                counts.accepted += 1
            else:
                counts.rejected += 1
    report.seconds = time.perf_counter() - start
    return report


def _print(report: Report) -> None:
    print(f"{'target':<12} {'accepted':>10} {'rejected':>10} {'crashes':>8}")
    for name, c in report.counts.items():
        print(f"{name:<12} {c.accepted:>10} {c.rejected:>10} {c.crashes:>8}")
    rate = report.frames / report.seconds if report.seconds else float("inf")
    print(
        f"{report.frames} frames ({report.calls} parser calls) in {report.seconds:.1f} s: "
        f"{rate:,.0f} frames/s; crashes: {report.total_crashes}"
    )
    for crash in report.crashes:
        print(crash.reproducer())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args(argv)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    report = run(args.frames, args.seed)
    _print(report)
    return 1 if report.total_crashes else 0


if __name__ == "__main__":
    sys.exit(run_program("bench.fuzz", main))
