"""The ticker parse's shortcuts give exactly what the general way gives, and what it gave.

``parse_ticker`` takes two shortcuts (``handlers._payload.fields_handler``: a flat
message decoded straight into a Struct and read by generated code; and in
``parse_time_within`` the producers' ISO form read without the general ISO path).
Three proofs, over the same corpus: every ticker message of the real Kraken captures
(as the producers encode them), the bench shapes, the seeds, and a few thousand
seeded variants, broken ones included:

- the handler equals its general way (``run_handler(FIELDS.parse, ...)``, the path
  every payload took before) on every payload, by ``repr``;
- its results hash to the digest the handler gave before the shortcuts (commit
  1ba225f): a change to what any of these payloads gives fails here;
- the ISO shortcut equals the general ISO path on odd and random forms.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import handlers as bench
from handlers import (
    HandlerContext,
    Rejection,
    TickerMessage,
    TickerRecord,
    encode_message,
    parse_kraken_v1,
    parse_kraken_v2,
    parse_ticker,
)
from handlers import _fields as F
from handlers._numbers import to_decimal
from handlers._payload import decode_json, run_handler
from handlers._ticker import FIELDS
from handlers._time import TimeWindow, _from_iso, parse_time_within
from tests.handlers._support import NOW, SEEDS, SHARED_KRAKEN, ctx, encode
from tests.handlers.test_kraken_real import received_frames

CONTEXTS = (
    ctx(),
    # A window that ends inside the bench's full shape (exchange_ts .200068 + i): the
    # edge between in and out of the window.
    ctx(now=datetime(2026, 3, 15, 11, 25, 19, 200100, tzinfo=UTC), max_future=timedelta(0)),
)
FULL = SEEDS["rawticker"]["producer"]
ISO = "2026-03-15T11:25:19.200068Z"
ODD_TIMES: list[object] = [
    ISO,
    "2026-03-15T11:25:19.200068z",
    "2026-03-15T11:25:19.200068+02:00",
    "2026-03-15T11:25:19.200068-00:00",
    "2026-03-15T11:25:19Z",
    "2026-03-15T11:25:19.200068123Z",
    "2026-03-15T11:25:19.2000681Z",
    "2026-03-15T11:25:19.2Z",
    "2026-03-15 11:25:19.200068Z",
    "2026-03-15t11:25:19.200068Z",
    "2026-03-15T11:25:19,200068Z",
    "2026-W11-1T11:25:19.200068Z",
    "20260315T112519.200068000Z",
    "20260315T11:25:19.2000681Z",
    " 2026-03-15T11:25:19.20006Z",
    "2026-03-15T11:25:19.20006 Z",
    "2026-03-15T11:25:19.200068",
    "2026-03-15T11:25:19.20006aZ",
    "2026-03-15T11:25:19.2000.8Z",
    "2026-02-30T11:25:19.200068Z",
    "2026-03-15T24:00:00.000000Z",
    "2008-12-31T23:59:59.999999Z",
    "2009-01-03T00:00:00.000000Z",
    "2009-01-02T23:59:59.999999Z",
    "2026-10-01T23:59:59.999999Z",
    "2026-10-02T00:00:00.000000Z",
    "2026-10-02T00:00:00.000001Z",
    "9999-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00.000000Z",
    "2026-03-15T11:25:19.200068+14:00",
    "yesterday",
    "",
    "1773573919.2",
    " 1773573919 ",
    1773573919,
    1773573919200,
    Decimal("1773573919.2000685"),
    Decimal("1773573919.200068"),
    Decimal("1E+400"),
    -1,
    0,
    True,
]
ODD_NUMBERS: list[object] = [
    0,
    Decimal("-0.0"),
    Decimal("-1.5"),
    Decimal("1e12"),
    Decimal("1000000000000.1"),
    Decimal("1e15"),
    Decimal("1E+16"),
    Decimal("1e-19"),
    Decimal("0.1234567890123456789"),
    Decimal("1.000000000000000000000"),
    Decimal("123456789.123456789"),
    Decimal("0.000000000000000001"),
    10**20,
    2**64,
    -5,
    "71749.0",
    " 5 ",
    "abc",
    "",
    True,
    "NaN",
]
ODD_TEXTS: list[object] = ["BTC/USD", "XBT/USD", "xbt-usd", "XBTUSD", "?", "", 5, "x" * 70]
ODD_SOURCES: list[object] = ["kraken", " replay ", "", "x" * 70, 5, "a\x00b"]
NUMBER_KEYS = [
    *("last", "bid", "ask", "volume_24h", "bid_qty", "ask_qty", "vwap", "low", "high"),
    *("change_24h_pct", "change_pct", "pct_change"),
]
TIME_KEYS = ["timestamp", "exchange_ts", "receive_ts"]
BYTE_EDITS = [
    (b'"last":71770.4', b'"last":1E+1000000000000000000'),
    (b'"last":71770.4', b'"last":1e5'),
    (b'"last":71770.4', b'"last":71770.40000000000000000000'),
    (b"{", b'{"last":-1,'),  # a duplicate key: the later one wins
    (b"{", b'{"z":1,'),  # an unknown key
    (b"{", b"  {"),
    (b"}", b"}  "),
    (b"}", b""),
    (b"}", b",}"),
    (b'"pair"', b'"symbol"'),
    (b'"BTC/USD"', b'"\xff"'),
    (b":", b": "),
]


def _kraken_tickers() -> Iterator[bytes]:
    """Every ticker of the real captures, encoded as the producers encode them."""
    v1 = SHARED_KRAKEN / "v1" / "cryptofeed_KRAKEN.ws.49.0_ticker.txt"
    events = []
    if v1.exists():
        events += [parse_kraken_v1(frame, ctx(now)) for now, frame in received_frames(v1)]
    for path in sorted((SHARED_KRAKEN / "v2").glob("*.jsonl")):
        events += [parse_kraken_v2(line, ctx()) for line in path.read_bytes().splitlines()]
    for event in events:
        for message in event.messages:
            if isinstance(message, TickerMessage):
                yield encode_message(message)


def _bench_payloads() -> Iterator[bytes]:
    for _name, handler, make in (*bench.VALID, *bench.INVALID):
        if handler is parse_ticker:
            yield from (make(i) for i in range(bench.VARIANTS))


def _variants(count: int) -> Iterator[bytes]:
    """Seeded variants of the producers' shape: odd values, deleted fields, broken bytes."""
    rng = random.Random(14)
    for _ in range(count):
        message: dict[str, Any] = dict(FULL)
        for _edit in range(rng.randint(1, 3)):
            kind = rng.random()
            if kind < 0.35:
                message[rng.choice(TIME_KEYS)] = rng.choice(ODD_TIMES)
            elif kind < 0.6:
                message[rng.choice(NUMBER_KEYS)] = rng.choice(ODD_NUMBERS)
            elif kind < 0.7:
                message[rng.choice(["pair", "symbol"])] = rng.choice(ODD_TEXTS)
            elif kind < 0.75:
                message["source"] = rng.choice(ODD_SOURCES)
            elif kind < 0.85:
                message.pop(rng.choice(sorted(message)), None)
            else:
                message[rng.choice(sorted(message))] = None
        payload = encode(message)
        if rng.random() < 0.15:
            old, new = rng.choice(BYTE_EDITS)
            payload = payload.replace(old, new, 1)
        yield payload


def corpus() -> list[bytes]:
    seeds = [encode(message) for message in SEEDS["rawticker"].values()]
    extras = [b"", b"   ", b"null", b"[]", b"{}", b"\xff", b'{"pair":"BTC/USD"}']
    return [*_kraken_tickers(), *_bench_payloads(), *seeds, *extras, *_variants(3000)]


def _general(payload: bytes, context: HandlerContext) -> TickerRecord | Rejection:
    """The general way: what parse_ticker did with every payload before the shortcuts."""
    return run_handler(FIELDS.parse, payload, context)


def test_the_corpus_covers_the_real_captures_and_the_shortcut() -> None:
    if not SHARED_KRAKEN.exists():
        pytest.skip(f"{SHARED_KRAKEN} not available (../shared is not beside this clone)")
    assert len(list(_kraken_tickers())) == 18 + 2  # v1: 18 tickers; v2: one snapshot each
    results = [parse_ticker(payload, ctx()) for payload in corpus()]
    kinds = {type(result).__name__ for result in results}
    assert kinds == {"TickerRecord", "Rejection"}
    assert sum(isinstance(result, Rejection) for result in results) > 1000


def test_the_shortcut_equals_the_general_way_on_the_corpus() -> None:
    for payload in corpus():
        for context in CONTEXTS:
            fast, general = parse_ticker(payload, context), _general(payload, context)
            assert repr(fast) == repr(general), payload  # repr: 1.0 != 1.00 here


OLD_DIGEST = "fc5a05da93184a9ff997d58ee99718d9b62580643cb9e85111f3ff658d6f70e7"


def _digest() -> str:
    results = hashlib.sha256()
    for payload in corpus():
        for context in CONTEXTS:
            results.update(repr(parse_ticker(payload, context)).encode() + b"\n")
    return results.hexdigest()


def test_results_are_those_of_before() -> None:
    """The corpus's results, as the handler gave them before the shortcuts (1ba225f).

    Regenerate only for a change of behaviour meant as such: print ``_digest()`` on
    the commit before it and after, and say why in the commit.
    """
    if not SHARED_KRAKEN.exists():
        pytest.skip(f"{SHARED_KRAKEN} not available: the digest covers the real captures")
    assert _digest() == OLD_DIGEST


def test_producer_shapes_take_the_shortcut() -> None:
    """The shortcut applies where it is meant to (else it would only cost)."""
    decoder = msgspec.json.Decoder(FIELDS.flat, float_hook=Decimal)
    shapes = [*_kraken_tickers(), *(make(i) for _, _, make in bench.VALID[:3] for i in range(9))]
    for payload in [encode(FULL), *shapes]:
        obj = decode_json(payload)
        assert isinstance(obj, dict)
        values = FIELDS.read_flat(decoder.decode(payload), ctx())
        assert values is not None, payload
        assert values == FIELDS.read(obj, ctx())
        assert FIELDS.record_flat(decoder.decode(payload), ctx()) == FIELDS.build(values)


def _outcome(read: Any, flat: msgspec.Struct, context: HandlerContext) -> object:
    try:
        return read(flat, context)
    except Exception as exc:
        return type(exc)


def test_the_fused_reading_is_the_flat_reading_then_build() -> None:
    """record_flat (the handler's) gives build(read_flat), None or the same exception."""
    decoder = msgspec.json.Decoder(FIELDS.flat, float_hook=Decimal)
    checked = 0
    for payload in corpus():
        try:
            flat = decoder.decode(payload)
        except Exception:  # the handler goes the general way: not this test's
            continue
        for context in CONTEXTS:
            values = _outcome(FIELDS.read_flat, flat, context)
            record = _outcome(FIELDS.record_flat, flat, context)
            if isinstance(values, list):
                assert record == FIELDS.build(values), payload
            else:
                assert record == values, payload
            checked += 1
    assert checked > 1000


def test_the_handler_takes_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    """parse_ticker reads a flat message of known keys without the general reading."""
    calls: list[object] = []
    general_read = F.Fields.read

    def read(self: F.Fields[Any], obj: F.Obj, context: HandlerContext) -> F.Values | None:
        calls.append(obj)
        return general_read(self, obj, context)

    monkeypatch.setattr(F.Fields, "read", read)
    for payload in [encode(FULL), *(make(7) for _, _, make in bench.VALID[:3])]:
        assert isinstance(parse_ticker(payload, ctx()), TickerRecord)
    assert calls == []
    unknown = encode({**FULL, "unknown": 1})  # goes the general way, which reads it
    assert parse_ticker(unknown, ctx()) == _general(unknown, ctx())
    assert len(calls) == 2


# -- edits at random -------------------------------------------------------------------

values = (
    st.sampled_from(ODD_TIMES + ODD_NUMBERS + ODD_TEXTS + ODD_SOURCES)
    | st.none()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.integers()
    | st.text(max_size=30)
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*NUMBER_KEYS, *TIME_KEYS, "pair", "symbol", "source", "other"]),
        values | st.just("<delete>"),
        max_size=5,
    ),
    st.sampled_from(sorted(SEEDS["rawticker"])),
)
def test_the_shortcut_equals_the_general_way_on_edits(edits: dict[str, Any], name: str) -> None:
    message = dict(SEEDS["rawticker"][name])
    for key, value in edits.items():
        if value == "<delete>":
            message.pop(key, None)
        else:
            message[key] = value
    payload = encode(message)
    for context in CONTEXTS:
        assert repr(parse_ticker(payload, context)) == repr(_general(payload, context))


# -- the ISO shortcut ------------------------------------------------------------------

WINDOWS = [TimeWindow(NOW, timedelta(days=1)), CONTEXTS[1].time_window]


def _general_time(value: object, window: TimeWindow) -> object:
    """parse_time_within's general way for a string (numeric ones are epochs)."""
    try:
        if isinstance(value, str) and to_decimal(value) is None:
            parsed = _from_iso(value, window)
            return (parsed, parsed.tzinfo is UTC)
        return (parse_time_within(value, window), True)
    except ValueError as exc:
        return str(exc)


def _fast_time(value: object, window: TimeWindow) -> object:
    try:
        parsed = parse_time_within(value, window)
        return (parsed, parsed.tzinfo is UTC)
    except ValueError as exc:
        return str(exc)


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("value", ODD_TIMES)
def test_iso_shortcut_odd_forms(value: object, window: TimeWindow) -> None:
    assert _fast_time(value, window) == _general_time(value, window)


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(WINDOWS),
    st.lists(st.tuples(st.integers(0, 26), st.sampled_from("0123456789-:.,TZz+ W")), max_size=3),
    st.datetimes(timezones=st.just(UTC)),  # (years 1 to 9999)
)
def test_iso_shortcut_on_random_texts(
    window: TimeWindow, edits: list[tuple[int, str]], moment: datetime
) -> None:
    text = list(moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z")
    for at, char in edits:
        text[at] = char
    value = "".join(text)
    assert _fast_time(value, window) == _general_time(value, window)
