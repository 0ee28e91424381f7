"""Property tests: no handler or Kraken parser ever raises, whatever the input."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers import (
    HANDLERS,
    AlertRecord,
    ArticleRecord,
    KrakenEvent,
    Rejection,
    TickerRecord,
    TradeRecord,
    parse_kraken_v1,
    parse_kraken_v2,
)
from tests.handlers._support import SEEDS, ctx, encode

PROPERTY = settings(max_examples=300, deadline=None)
RECORD_TYPES = (TickerRecord, TradeRecord, ArticleRecord, AlertRecord)
FIELD_NAMES = sorted(
    {key for shapes in SEEDS.values() for message in shapes.values() for key in message}
    | {"symbol", "qty", "change_percent", "last_price", "source", "link", "article_id"}
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.sampled_from([Decimal(t) for t in ("1e999999999", "-1e999999999", "1e-999999999")])
    | st.text(max_size=30)
    | st.sampled_from(
        ["BTC/USD", "XBT/USD", "buy", "s", "limit", "up", "price_drop", "2026-01-01T00:00:00Z",
         "1764310291", "1e400", "-0", "NaN", "", "\x00", "positive"]
    )
    | st.integers(min_value=1_230_000_000, max_value=1_800_000_000_000)
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=15,
)


def _check_handlers(payload: bytes) -> None:
    for topic, handler in HANDLERS.items():
        result = handler(payload, ctx())
        assert isinstance(result, (Rejection, *RECORD_TYPES)), (topic, result)
        if isinstance(result, Rejection):
            assert result.reason, topic
            assert not result.reason.startswith("internal error"), (topic, result)


def _check_kraken(frame: bytes) -> None:
    for parse in (parse_kraken_v1, parse_kraken_v2):
        event = parse(frame, ctx())
        assert isinstance(event, KrakenEvent)
        for rejection in event.rejections:
            assert not rejection.reason.startswith("internal error"), rejection


@PROPERTY
@given(st.binary(max_size=300))
def test_arbitrary_bytes(payload: bytes) -> None:
    _check_handlers(payload)
    _check_kraken(payload)


@PROPERTY
@given(json_values)
def test_arbitrary_json_values(value: Any) -> None:
    payload = encode(value)  # decimals as raw JSON numbers, whatever their exponent
    _check_handlers(payload)
    _check_kraken(payload)


@PROPERTY
@given(
    st.sampled_from([(topic, name) for topic in SEEDS for name in SEEDS[topic]]),
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=4),
)
def test_mutated_example_messages(example: tuple[str, str], changes: dict[str, Any]) -> None:
    topic, name = example
    message = {**SEEDS[topic][name], **changes}
    payload = encode(message)
    _check_handlers(payload)
    result = HANDLERS[topic](payload, ctx())
    assert isinstance(result, (Rejection, *RECORD_TYPES))


v1_frames = st.tuples(
    st.integers(0, 10_000),
    json_values,
    st.sampled_from(["ticker", "trade", "book-10", "spread"]) | st.text(max_size=5),
    st.sampled_from(["XBT/USD", "XMR/USD", "SC/EUR"]) | scalars,
).map(list)
v1_trade_entries = st.lists(
    st.lists(scalars | st.sampled_from(["354.1", "0.5", "1618678130.5", "b", "s", "l", "m"]),
             max_size=7),
    max_size=3,
).map(lambda entries: [1, entries, "trade", "XMR/USD"])  # fmt: skip
v1_ticker_payloads = st.dictionaries(
    st.sampled_from(["a", "b", "c", "v", "p", "t", "l", "h", "o"]),
    st.lists(scalars | st.sampled_from(["1.5", "0", "-1"]), max_size=3),
).map(lambda payload: [1, payload, "ticker", "XBT/USD"])
v2_entries = st.dictionaries(
    st.sampled_from(
        ["symbol", "bid", "ask", "last", "volume", "bid_qty", "ask_qty", "vwap", "low",
         "high", "change_pct", "timestamp", "side", "price", "qty", "ord_type", "trade_id",
         "system", "version"]
    ),
    scalars,
)  # fmt: skip
v2_frames = st.fixed_dictionaries(
    {
        "channel": st.sampled_from(["ticker", "trade", "status", "heartbeat", "book"]) | scalars,
        "data": st.lists(v2_entries | json_values, max_size=3) | json_values,
    },
    optional={
        "method": st.sampled_from(["subscribe", "unsubscribe", "pong"]) | scalars,
        "success": scalars,
        "result": json_values,
        "error": scalars,
        "req_id": scalars,
    },
)


@PROPERTY
@given(v1_frames | v1_trade_entries | v1_ticker_payloads | v2_frames)
def test_kraken_shaped_frames(frame: Any) -> None:
    _check_kraken(encode(frame))
