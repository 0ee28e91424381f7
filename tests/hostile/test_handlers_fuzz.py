"""bench.fuzz at CI size: every handler and Kraken parser, zero crashes, every reject explained."""

from __future__ import annotations

import random
from datetime import datetime
from decimal import Decimal

import pytest

from bench import fuzz
from handlers import HANDLERS, HandlerContext, Rejection, TickerRecord

FRAMES = 30_000


@pytest.fixture(scope="module")
def report() -> fuzz.Report:
    return fuzz.run(FRAMES, seed=6)


def test_no_crash_in_any_parser(report: fuzz.Report) -> None:
    problems = "\n".join(c.reproducer() for c in report.crashes)
    assert report.total_crashes == 0, problems


def test_every_target_saw_both_accepts_and_rejects(report: fuzz.Report) -> None:
    assert set(report.counts) == {*HANDLERS, fuzz.KRAKEN_V2, fuzz.KRAKEN_V1}
    for name, counts in report.counts.items():
        assert counts.accepted > 0, f"{name}: the accept path was never reached"
        assert counts.rejected > counts.accepted, f"{name}: most mutants should be rejected"
    calls = sum(c.accepted + c.rejected + c.crashes for c in report.counts.values())
    assert calls == report.calls >= FRAMES


def test_every_rejection_has_a_reason() -> None:
    ctx = fuzz.context()
    seen = 0
    for target, frame in fuzz.generate(3_000, seed=7):
        if target not in HANDLERS:
            continue
        result = HANDLERS[target](frame, ctx)
        if isinstance(result, Rejection):
            seen += 1
            assert result.reason.strip(), frame[:200]
            assert not result.reason.startswith("internal error"), (result.reason, frame[:200])
    assert seen > 1_000


def test_generation_is_deterministic_and_hostile() -> None:
    first = list(fuzz.generate(2_000, seed=11))
    assert first == list(fuzz.generate(2_000, seed=11))
    frames = [f for _, f in first]
    assert any(
        len(f) > 10 * 1024 * 1024 for f in fuzz.Mutator(fuzz._load_seeds(), random.Random(0)).big
    )
    hostile = (b"NaN", b"Infinity", b"1e400", fuzz.HUGE_INT.encode())
    for token in hostile:
        assert any(token in f for f in frames), token
    assert any(not _utf8(f) for f in frames), "no invalid UTF-8 generated"


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_the_fuzzer_catches_a_broken_parser() -> None:
    """The judge must fail on exceptions, internal errors, empty reasons and bad accepts."""

    def raising(frame: bytes, ctx: HandlerContext) -> tuple[bool, str | None]:
        if b"pair" in frame:
            raise ValueError("boom")
        return fuzz.judges()["rawticker"](frame, ctx)

    table = dict(fuzz.judges())
    table["rawticker"] = raising
    report = fuzz.run(600, seed=6, table=table)
    assert report.counts["rawticker"].crashes > 0
    assert all(c.target == "rawticker" for c in report.crashes)
    assert "raised ValueError: boom" in report.crashes[0].problem

    now = fuzz.NOW
    ctx = fuzz.context()
    assert fuzz._rejection_problem(Rejection(reason="")) is not None
    assert fuzz._rejection_problem(Rejection(reason="internal error: KeyError: 'x'")) is not None
    assert fuzz._rejection_problem(Rejection(reason="missing field 'last'")) is None
    future = datetime(2999, 1, 1, tzinfo=now.tzinfo)
    bad = TickerRecord(pair="BTC/USD", time=future, last=Decimal(1))
    assert fuzz._record_problem(bad, ctx) is not None
    negative = TickerRecord(pair="BTC/USD", time=now, last=Decimal(-1))
    assert fuzz._record_problem(negative, ctx) is not None
    nan = TickerRecord(pair="BTC/USD", time=now, last=Decimal(1), bid=Decimal("NaN"))
    assert fuzz._record_problem(nan, ctx) is not None
    assert (
        fuzz._record_problem(TickerRecord(pair="BTC/USD", time=now, last=Decimal(1)), ctx) is None
    )


HUGE_EXPONENTS = [
    b'{"pair":"BTC/USD","last":1E+1000000000000000000,"timestamp":1764310291}',
    b'{"event":"heartbeat","reqid":5e99999999999999999999}',
    b"[1E+9999999999999999999]",
]


@pytest.mark.parametrize("frame", HUGE_EXPONENTS)
def test_numbers_beyond_decimal_range_are_ordinary_rejections(frame: bytes) -> None:
    ctx = fuzz.context()
    problems = [
        fuzz.judges()[target](frame, ctx)[1]
        for target in (*HANDLERS, fuzz.KRAKEN_V2, fuzz.KRAKEN_V1)
    ]
    assert problems == [None] * len(problems), problems
