"""The fast paths give exactly what the general code gives.

Each shortcut (one-pass field reading, in-range numbers, in-window epoch times,
the pair memo, the nesting pre-check, the per-context time window) is compared
with the general path it skips, on generated inputs as well as chosen edges.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers import (
    MAX_PAYLOAD_BYTES,
    AlertRecord,
    Coin,
    CoinTable,
    HandlerContext,
    Rejection,
    TickerRecord,
    TradeRecord,
    _alert,
    _symbols,
    _ticker,
    _trade,
    parse_alert,
    parse_ticker,
    parse_trade,
)
from handlers import _fields as F
from handlers._numbers import to_decimal
from handlers._payload import MAX_DEPTH, decode_json, run_handler
from handlers._time import TimeWindow, _from_epoch, parse_time_within
from tests.handlers._support import COINS, NOW, SEEDS, ctx, encode, ok, rejected, seed

PROPERTY = settings(max_examples=400, deadline=None)
DAY = timedelta(days=1)
IN_WINDOW = int(NOW.timestamp())
"""Epoch seconds inside the test window (NOW, NOW + 1 day]."""


# -- one-pass field reading ------------------------------------------------------------


def _reference(module: Any) -> Callable[[bytes, HandlerContext], object]:
    """The handler with its one-pass read switched off: the sequential reading only."""

    def build(obj: F.Obj, context: HandlerContext) -> object:
        return module.FIELDS.build(module.FIELDS.read_in_order(obj, context))

    return lambda payload, context: run_handler(build, payload, context)


REFERENCES = {
    "rawticker": (parse_ticker, _reference(_ticker)),
    "rawtrade": (parse_trade, _reference(_trade)),
    "rawalert": (parse_alert, _reference(_alert)),
}

numbers = (
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10, max_value=10**5)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [Decimal(t) for t in ("0", "-0.0", "1e-19", "1.000000000000000000000", "1E+3", "1e13")]
    )
    | st.integers(min_value=-5, max_value=10**16)
    | st.sampled_from(["71749.0", " 5 ", "abc", "", "NaN"])
)
times = (
    st.integers(min_value=IN_WINDOW - 10**9, max_value=IN_WINDOW + 2 * 86400)
    | st.integers(min_value=(IN_WINDOW - 10**9) * 1000, max_value=(IN_WINDOW + 86400) * 1000)
    | st.decimals(min_value=IN_WINDOW - 10**9, max_value=IN_WINDOW + 86400, places=7)
    | st.sampled_from(
        ["2025-11-28T06:11:31Z", "2025-11-28T06:11:31.123456789+01:00", "2026-10-03T00:00:00Z"]
    )
    | st.sampled_from(["1764310291.5", "yesterday", True, [1], Decimal("1e400")])
)
texts = st.sampled_from(["BTC/USD", "xbt-usd", "ETH/EUR", "BTC USD", "", " replay ", "x" * 70])
choices = st.sampled_from(["b", "buy", "SELL", " s ", "l", "Market", "x", 5])
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "pair": texts | st.integers(),
    "symbol": texts,
    "source": texts | st.integers(),
    "side": choices,
    "ord_type": choices,
    "trade_id": st.integers(min_value=-1, max_value=2**63) | st.sampled_from(["42", "4.5"]),
    "timestamp": times,
    "exchange_ts": times,
    "receive_ts": times,
    "alert_type": st.sampled_from(["up", "DOWN", "sideways", 1]),
    "type": st.sampled_from(["price_spike", "price_drop", "other"]),
    "window_s": st.integers(min_value=0, max_value=10**7 + 1) | st.sampled_from(["300", 1.5]),
}
FIELD_NAMES = sorted(
    {"pair", "symbol", "last", "exchange_ts", "timestamp", "bid", "ask", "volume_24h", "bid_qty"}
    | {"ask_qty", "vwap", "low", "high", "change_pct", "change_24h_pct", "pct_change"}
    | {"receive_ts", "source"}
    | {"price", "volume", "qty", "side", "trade_id", "ord_type", "unknown"}
    | {"alert_type", "type", "last_price", "change", "change_percent", "value", "threshold"}
    | {"reference_price", "window_s"}
)


@st.composite
def changes(draw: st.DrawFn) -> dict[str, Any]:
    """A few fields set (to valid, invalid or null values) or deleted."""
    names = draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=5, unique=True))
    return {
        name: draw(st.none() | st.just("<delete>") | FIELD_VALUES.get(name, numbers))
        for name in names
    }


def _apply(message: dict[str, Any], edits: dict[str, Any]) -> bytes:
    message = dict(message)
    for key, value in edits.items():
        if value == "<delete>":
            message.pop(key, None)
        else:
            message[key] = value
    return encode(message)


def _same(topic: str, payload: bytes) -> object:
    handler, reference = REFERENCES[topic]
    fast, slow = handler(payload, ctx()), reference(payload, ctx())
    assert type(fast) is type(slow)
    assert repr(fast) == repr(slow)  # repr: Decimal('1.0') == Decimal('1.00'), but not here
    return fast


@PROPERTY
@given(st.sampled_from(sorted(REFERENCES)), st.data(), changes())
def test_one_pass_reading_matches_the_sequential_reading(
    topic: str, data: st.DataObject, edits: dict[str, Any]
) -> None:
    name = data.draw(st.sampled_from(sorted(SEEDS[topic])))
    _same(topic, _apply(SEEDS[topic][name], edits))


@pytest.mark.parametrize(
    ("topic", "edits", "expected"),
    [
        # Two keys of one field: the first one listed wins, even if the other is invalid.
        ("rawticker", {"symbol": "ETH/EUR"}, "BTC/USD"),
        ("rawticker", {"symbol": 5}, "BTC/USD"),
        ("rawticker", {"change_24h_pct": 1, "change_pct": "x"}, "BTC/USD"),
        ("rawtrade", {"qty": -1}, "ETH/USD"),
        # A null key gives way to its alias.
        ("rawticker", {"pair": None, "symbol": "ETH/EUR"}, "ETH/EUR"),
        # Valid without a timestamp (its exchange_ts stands in).
        ("rawticker", {"timestamp": "<delete>", "exchange_ts": 1764310291}, "BTC/USD"),
        # Two bad fields: the first in field order is reported, whatever the key order.
        ("rawticker", {"source": "", "bid": -1}, "field 'bid': "),
        ("rawticker", {"bid": -1, "pair": "?"}, "field 'pair': "),
        ("rawticker", {"receive_ts": "x", "timestamp": "<delete>"}, "missing field 'timestamp'"),
        ("rawtrade", {"ord_type": "x", "side": "<delete>"}, "missing field 'side'"),
        ("rawtrade", {"trade_id": -1, "side": "x"}, "field 'side': "),
        # Alerts: rules across fields send the message the sequential way.
        ("rawalert", {"change": 0}, "field 'change': must be non-zero"),
        ("rawalert", {"change": -1}, "BTC/USD"),
        ("rawalert", {"alert_type": "up", "change": -1}, "field 'alert_type': says 'up'"),
        ("rawalert", {"type": "price_spike", "last": "<delete>"}, "BTC/USD"),
        ("rawalert", {"type": "price_drop"}, "field 'type': says 'down'"),
        ("rawalert", {"last": "<delete>"}, "missing field 'last' or 'last_price'"),
        ("rawalert", {"last": "<delete>", "window_s": 0}, "missing field 'last'"),
        ("rawalert", {"change": "<delete>", "value": 2, "change_percent": "x"}, "field 'change_"),
    ],
)
def test_one_pass_reading_edges(topic: str, edits: dict[str, Any], expected: str) -> None:
    result = _same(topic, _apply(SEEDS[topic]["seed"], edits))
    if isinstance(result, Rejection):
        assert result.reason.startswith(expected)
    else:
        assert isinstance(result, TickerRecord | TradeRecord | AlertRecord)
        assert result.pair == expected


@pytest.mark.parametrize(
    ("topic", "edits"),
    [
        *[(topic, {}) for topic in REFERENCES],
        ("rawticker", {"pair": "<delete>", "symbol": "XBTUSD"}),
        ("rawtrade", {"volume": "<delete>", "qty": 1, "symbol": "ETH/USD", "pair": None}),
        ("rawalert", {"last": "<delete>", "last_price": 1, "change": None, "value": -3}),
    ],
)
def test_common_messages_take_the_one_pass_reading(topic: str, edits: dict[str, Any]) -> None:
    module = {"rawticker": _ticker, "rawtrade": _trade, "rawalert": _alert}[topic]
    for message in SEEDS[topic].values():
        obj = decode_json(_apply(message, edits))
        assert isinstance(obj, dict)
        values = module.FIELDS.read(obj, ctx())
        assert values is not None, message
        if topic == "rawalert":  # the rules across fields hold (Invalid otherwise)
            at = _alert.FIELDS.index
            change, stated, spike = (
                values[at[n]] for n in ("change_percent", "alert_type", "spike")
            )
            _alert.sign_gives_direction("change", change, change, stated, spike)


def test_unknown_keys_are_ignored_by_both_readings() -> None:
    payload = _apply(SEEDS["rawticker"]["seed"], {"volume": "not a ticker field", "z": [1, {}]})
    ok(_same("rawticker", payload), TickerRecord)


class _AB(msgspec.Struct, frozen=True, kw_only=True):
    a: Decimal
    b: str | None = None


class _X(msgspec.Struct, frozen=True, kw_only=True):
    x: Any = None


def test_fast_fields_read() -> None:
    fields = F.Fields(
        _AB,
        F.Field("a", ("a", "alias"), "price", required=True),
        F.Field("b", ("b",), F.check_source),
    )
    context = ctx()
    assert fields.read({"a": 1, "x": "ignored"}, context) == [Decimal(1), None]
    assert fields.read({"alias": 1, "b": "s"}, context) == [Decimal(1), "s"]
    assert fields.read({"b": "s"}, context) is None  # required field missing
    assert fields.read({"a": 1, "alias": 2}, context) is None  # two keys of one field
    assert fields.read({"a": -1}, context) is None  # invalid: the sequential reading reports
    assert fields.read({"a": None, "alias": 2, "b": None}, context) == [Decimal(2), None]


# -- numbers ---------------------------------------------------------------------------


def _number_outcomes(raw: object, kind: F.NumberKind) -> tuple[str, str]:
    """(a one-pass Fields read, check_number) for one value: the checked value or a problem."""
    values = F.Fields(_X, F.Field("x", ("x",), kind)).read({"x": raw}, ctx())
    fast = "invalid" if values is None else repr(values[0])  # repr: 1.0 != 1.00 here
    try:
        full = repr(F.check_number("x", raw, kind))
    except F.Invalid:
        full = "invalid"
    return fast, full


@PROPERTY
@given(
    st.sampled_from(["price", "amount", "signed", "unit"]),
    st.decimals(allow_nan=True, allow_infinity=True)
    | st.decimals(min_value=-2, max_value=2, places=25)
    | st.decimals(min_value=-100, max_value=100, places=19)
    | st.integers()
    | st.floats()
    | st.text(max_size=25),
)
def test_number_fast_path_matches_the_full_check(kind: F.NumberKind, raw: object) -> None:
    fast, full = _number_outcomes(raw, kind)
    assert fast == full


@pytest.mark.parametrize("kind", ["price", "amount", "signed", "unit"])
@pytest.mark.parametrize(
    "raw",
    [
        "1.000000000000000001",
        "0.1234567890123456789",  # one character over the fast path's limit
        "1.0000000000000000000",
        "1234567890.1234567890",
        "0.000000000000000001",
        "1E+2",
        "-0",
        "-0.5",
        "1e-7",
        "1e12",
        "1000000000000.000001",
    ],
)
def test_number_fast_path_edges(raw: str, kind: F.NumberKind) -> None:
    fast, full = _number_outcomes(Decimal(raw), kind)
    assert fast == full


@pytest.mark.parametrize("raw", [7, 0, 10, -1, 11, True, Decimal("7.0"), "7", 7.5, 2**70])
def test_integer_fast_path(raw: object) -> None:
    check = F.integer_check(0, 10)
    try:
        expected: object = F.check_integer("n", raw, 0, 10)
    except F.Invalid as exc:
        expected = exc.reason
    try:
        got: object = check("n", raw, ctx())
    except F.Invalid as exc:
        got = exc.reason
    assert (type(got), got) == (type(expected), expected)


# -- epoch times -----------------------------------------------------------------------

WINDOWS = [
    TimeWindow(NOW, DAY),
    TimeWindow(NOW, timedelta(0)),
    TimeWindow(datetime(2009, 1, 3, tzinfo=UTC), timedelta(seconds=1)),
    TimeWindow(NOW, datetime(9999, 1, 1, tzinfo=UTC) - NOW),  # past 1e11 s: no seconds path
]


def _general(value: object, window: TimeWindow) -> object:
    number = to_decimal(value)
    assert number is not None
    try:
        return _from_epoch(number, window)
    except ValueError as exc:
        return str(exc)


def _fast(value: object, window: TimeWindow) -> object:
    try:
        return parse_time_within(value, window)
    except ValueError as exc:
        return str(exc)


def _edges(window: TimeWindow) -> list[object]:
    latest = window.latest_epoch
    values: list[object] = []
    for base in (Decimal(1230940800), latest, latest * 1000, Decimal(10**11)):
        for delta in (Decimal(-1), Decimal("-0.0000005"), 0, Decimal("0.0000005"), 1):
            values += [base + delta, int(base + delta)]
    # Half a microsecond plus a tie-breaker beyond 28 digits (the default precision).
    values += [Decimal("1764310291.1234565" + "0" * 20 + "1"), Decimal("1764310291.1234565")]
    return values


@pytest.mark.parametrize("window", WINDOWS)
def test_epoch_fast_path_edges(window: TimeWindow) -> None:
    for value in _edges(window):
        assert _fast(value, window) == _general(value, window), value


@PROPERTY
@given(
    st.sampled_from(WINDOWS),
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=1_230_000_000, max_value=1_800_000_000_000)
    | st.decimals(min_value=1_230_000_000, max_value=1_800_000_000, places=9)
    | st.decimals(allow_nan=False),
)
def test_epoch_fast_path_matches_the_general_path(window: TimeWindow, value: object) -> None:
    assert _fast(value, window) == _general(value, window)


def test_time_window_is_built_once_per_context() -> None:
    context = ctx()
    window = context.time_window
    assert context.time_window is window
    assert (window.now, window.latest) == (NOW, NOW + DAY)
    later = msgspec.structs.replace(context, max_future=2 * DAY)
    assert later.time_window.latest == NOW + 2 * DAY
    assert context == ctx()  # not a field: equality, hashing and repr are unchanged
    assert hash(context) == hash(ctx())
    assert "time_window" not in repr(context)


def test_too_late_text_is_built_once() -> None:
    window = TimeWindow(NOW, DAY)
    first, second = window.too_late(), window.too_late()
    assert str(first) == "must not be more than 1 day after now (2026-10-01T00:00:00.000000Z)"
    assert str(second) == str(first)


# -- pairs -----------------------------------------------------------------------------


def test_pair_memo_gives_the_same_answers() -> None:
    table = CoinTable([Coin(symbol="BTC", name="Bitcoin", aliases=("xbt",))], {"USD": ["zusd"]}, [])
    for _ in range(2):
        assert table.pair("XBT/USD") == "BTC/USD"
        assert table.pair("xbtzusd") == "BTC/USD"
        assert table.pair("BTC USD") is None
        assert table.pair(5) is None


def test_pair_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_symbols, "_PAIR_MEMO_SIZE", 3)
    table = CoinTable([Coin(symbol="BTC", name="Bitcoin")], {"USD": []}, [])
    for index in range(10):
        assert table.pair(f"BTC/X{index}") == f"BTC/X{index}"
        assert len(table._pair_memo) <= 3
    assert table.pair("BTC/X9") == "BTC/X9"


class _Text(str):
    __slots__ = ()


def test_long_and_subclassed_texts_are_not_remembered() -> None:
    table = CoinTable([Coin(symbol="BTC", name="Bitcoin")], {"USD": []}, [])
    assert table.pair(" " * 70 + "BTC/USD") == "BTC/USD"  # padding is stripped, as ever
    assert table.pair("BTC/" + "X" * 70) is None
    assert table.pair(_Text("btc/usd")) == "BTC/USD"
    assert table._pair_memo == {}
    assert COINS.pair(_Text("xbt/usd")) == "BTC/USD"


# -- nesting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        b'"text":"' + b"{[" * 40 + b'"',  # brackets inside a string
        b'"wide":[' + b",".join([b"[]"] * 40) + b"]",  # many containers, shallow
        b'"deep":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1),  # exactly at the limit
    ],
)
def test_many_brackets_but_shallow_nesting(extra: bytes) -> None:
    payload = encode(seed("rawticker", "seed"))[:-1] + b"," + extra + b"}"
    assert len(payload) < MAX_PAYLOAD_BYTES
    ok(parse_ticker(payload, ctx()), TickerRecord)
    ok(parse_ticker(b"  " + payload, ctx()), TickerRecord)


def test_one_level_too_deep_behind_leading_space() -> None:
    payload = b' {"a":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
    assert rejected(parse_ticker(payload, ctx())).reason == "payload nested deeper than 32 levels"
