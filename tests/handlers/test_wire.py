"""The producer wire contract: field names, number encoding, and record round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers import (
    HANDLERS,
    AlertMessage,
    AlertRecord,
    ArticleContent,
    ArticleMessage,
    ArticleRecord,
    ArticleSentiment,
    HandlerContext,
    HandlerError,
    Record,
    TickerMessage,
    TickerRecord,
    TradeMessage,
    TradeRecord,
    WireMessage,
    _alert,
    _ticker,
    _trade,
    encode_message,
    message_topic,
    to_message,
)
from handlers import _fields as F
from handlers._wire import wire_form
from tests.handlers._support import COINS, NOW, ctx, encode, seed

D = Decimal
TICKER = TickerMessage(
    pair="USDT/USD",
    last=D("0.99981"),
    bid=D("0.99980"),
    ask=D("0.99981"),
    volume_24h=D("270638277.50461281"),
    timestamp=1790222058.054886,
    bid_qty=D("44620.68691883"),
    ask_qty=D("1087605.70466858"),
    vwap=D("0.99983"),
    low=D("0.99959"),
    high=D("1.00000"),
    change_24h_pct=D("0.01"),
    pct_change=D("-0.000014"),
    exchange_ts="2026-09-24T03:54:18.054886Z",
    receive_ts=1790222058.2,
)
TRADE = TradeMessage(
    pair="BTC/USD",
    price=D("71749.0"),
    volume=D("0.00220616"),
    timestamp=1773573983.023215,
    side="s",
    trade_id=97184416,
    ord_type="l",
    receive_ts=1773573983.1,
)
ARTICLE = ArticleMessage(
    id="coindesk-1",
    title="Bitcoin rallies",
    url="https://www.coindesk.com/markets/1",
    website="coindesk.com",
    content=ArticleContent(summary="BTC up."),
    summary="BTC up.",
    published_at="2026-09-30T17:16:31.000000Z",
    timestamp=1790788591.0,
    cryptocurrencies_mentioned=("BTC",),
    sentiment=ArticleSentiment(score=0.75, label="positive", subjectivity=0.4),
    receive_ts=1790788600.5,
)
ALERT = AlertMessage(
    pair="ETH/USD",
    last=D("2350.25"),
    change=D("-2.04"),
    threshold=D("1.5"),
    timestamp=1764310293.5,
    alert_type="down",
    reference_price=D("2399.2"),
    window_s=300,
    receive_ts=1764310293.6,
)

FIELDS: list[tuple[WireMessage, str, list[str]]] = [
    (
        TICKER,
        "rawticker",
        [
            "pair", "last", "bid", "ask", "volume_24h", "timestamp", "bid_qty", "ask_qty",
            "vwap", "low", "high", "change_24h_pct", "pct_change", "exchange_ts", "receive_ts",
            "source",
        ],
    ),
    (
        TRADE,
        "rawtrade",
        [
            "pair", "price", "volume", "timestamp", "side", "trade_id", "ord_type", "receive_ts",
            "source",
        ],
    ),
    (
        ARTICLE,
        "rawarticle",
        [
            "id", "title", "url", "website", "content", "summary", "published_at", "timestamp",
            "cryptocurrencies_mentioned", "sentiment", "receive_ts",
        ],
    ),
    (
        ALERT,
        "rawalert",
        [
            "pair", "last", "change", "threshold", "timestamp", "alert_type",
            "reference_price", "window_s", "receive_ts", "source",
        ],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("message", "topic", "fields"), FIELDS)
def test_field_names_and_topics(message: WireMessage, topic: str, fields: list[str]) -> None:
    decoded = json.loads(encode_message(message))
    assert list(decoded) == fields
    assert message_topic(message) == topic


def test_nested_article_fields() -> None:
    decoded = json.loads(encode_message(ARTICLE))
    assert decoded["content"] == {"summary": "BTC up."}
    assert decoded["sentiment"] == {"score": 0.75, "label": "positive", "subjectivity": 0.4}


def test_decimals_are_plain_json_numbers_with_their_digits() -> None:
    raw = encode_message(TICKER)
    assert b'"bid":0.99980,' in raw
    assert b'"high":1.00000,' in raw
    assert b'"volume_24h":270638277.50461281,' in raw
    assert b'"exchange_ts":"2026-09-24T03:54:18.054886Z"' in raw
    assert isinstance(json.loads(raw)["bid"], float)  # a number, not a string
    assert b'"threshold":null' in encode_message(msgspec.structs.replace(ALERT, threshold=None))


@pytest.mark.parametrize(("message", "topic", "fields"), FIELDS)
def test_every_wire_message_parses_and_converts_back(
    message: WireMessage, topic: str, fields: list[str]
) -> None:
    record = HANDLERS[topic](encode_message(message), ctx())
    assert isinstance(record, TickerRecord | TradeRecord | ArticleRecord | AlertRecord), record
    assert to_message(record) == message


@pytest.mark.parametrize(
    ("topic", "name"),
    [
        ("rawticker", "seed"),
        ("rawticker", "prototype"),
        ("rawticker", "producer"),
        ("rawtrade", "seed"),
        ("rawtrade", "producer"),
        ("rawarticle", "seed"),
        ("rawarticle", "prototype"),
        ("rawarticle", "architecture"),
        ("rawarticle", "documentation"),
        ("rawalert", "seed"),
        ("rawalert", "producer"),
    ],
)
def test_example_records_round_trip(topic: str, name: str) -> None:
    handler = HANDLERS[topic]
    seen = HandlerContext(coins=COINS, now=NOW, record_time=NOW)
    record = handler(encode(seed(topic, name)), seen)
    assert isinstance(record, TickerRecord | TradeRecord | ArticleRecord | AlertRecord)
    assert handler(encode_message(to_message(record)), seen) == record


@pytest.mark.parametrize("message", [TICKER, TRADE, ALERT])
def test_a_price_path_label_travels_and_the_live_one_stays_off_the_wire(
    message: TickerMessage | TradeMessage | AlertMessage,
) -> None:
    handler = HANDLERS[message_topic(message)]
    live = handler(encode_message(message), ctx())
    assert isinstance(live, TickerRecord | TradeRecord | AlertRecord)
    assert live.source == "kraken"
    assert b'"source":null' in encode_message(to_message(live))
    replayed = msgspec.structs.replace(message, source="replay:binance_BTCUSDT_1m_2024-01")
    record = handler(encode_message(replayed), ctx())
    assert isinstance(record, TickerRecord | TradeRecord | AlertRecord)
    assert record.source == "replay:binance_BTCUSDT_1m_2024-01"
    assert to_message(record) == replayed


def test_prototype_alert_has_no_wire_form() -> None:
    record = HANDLERS["rawalert"](encode(seed("rawalert", "prototype")), ctx())
    assert isinstance(record, AlertRecord)
    with pytest.raises(HandlerError, match="no wire form"):
        to_message(record)


# -- property: any valid record survives record -> message -> bytes -> record ----------

times = st.datetimes(
    min_value=datetime(2009, 1, 3),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=datetime(2026, 10, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
pairs = st.sampled_from(["BTC/USD", "ETH/EUR", "SOL/USDT", "WAVES/EUR", "ADA/BTC"])
prices = st.decimals(min_value=D("1e-8"), max_value=D("1e12"), places=8)
amounts = st.decimals(min_value=D(0), max_value=D("1e15"), places=8)
signed = st.decimals(min_value=D("-1e6"), max_value=D("1e6"), places=2)
unit = st.floats(min_value=0, max_value=1)
words = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40)
clean = words.map(str.strip).filter(bool)

tickers = st.builds(
    TickerRecord,
    pair=pairs,
    time=times,
    last=prices,
    bid=st.none() | prices,
    ask=st.none() | prices,
    volume_24h=st.none() | amounts,
    bid_qty=st.none() | amounts,
    ask_qty=st.none() | amounts,
    vwap=st.none() | amounts,
    low=st.none() | amounts,
    high=st.none() | amounts,
    change_24h_pct=st.none() | signed,
    pct_change=st.none() | signed,
    exchange_time=st.none() | times,
    receive_time=st.none() | times,
).map(lambda r: msgspec.structs.replace(r, time=r.exchange_time or r.time))
trades = st.builds(
    TradeRecord,
    pair=pairs,
    time=times,
    price=prices,
    volume=amounts,
    side=st.sampled_from(["b", "s"]),
    trade_id=st.none() | st.integers(0, 2**63 - 1),
    ord_type=st.sampled_from([None, "l", "m"]),
    receive_time=st.none() | times,
)


def _article(draw_site: str, published: bool, **fields: Any) -> ArticleRecord:
    published_at = fields["time"] if published else None
    return ArticleRecord(website=draw_site, source=draw_site, published_at=published_at, **fields)


articles = st.builds(
    _article,
    st.sampled_from(["coindesk.com", "cointelegraph.com"]),
    st.booleans(),
    article_id=clean,
    time=times,
    title=clean,
    url=st.from_regex(r"https://[a-z]{1,10}\.com/[a-z0-9/-]{0,30}", fullmatch=True),
    summary=clean,
    cryptocurrencies_mentioned=st.lists(
        st.sampled_from(["BTC", "ETH", "SOL", "ADA"]), unique=True
    ).map(tuple),
    sentiment_score=unit,
    sentiment_label=st.sampled_from(["positive", "neutral", "negative"]),
    subjectivity=st.none() | unit,
    receive_time=st.none() | times,
)
alerts = st.builds(
    AlertRecord,
    pair=pairs,
    time=times,
    last_price=prices,
    change_percent=signed.filter(lambda d: not d.is_zero()),
    threshold=st.none() | amounts,
    alert_type=st.just("up"),
    reference_price=st.none() | prices,
    window_s=st.none() | st.integers(1, 10_000_000),
    receive_time=st.none() | times,
).map(lambda r: msgspec.structs.replace(r, alert_type="up" if r.change_percent > 0 else "down"))


@settings(max_examples=200, deadline=None)
@given(st.one_of(tickers, trades, articles, alerts))
def test_records_round_trip_through_the_wire(record: Record) -> None:
    message = to_message(record)
    # An article without a time of its own is stamped with its record time.
    seen = HandlerContext(coins=COINS, now=NOW, record_time=record.time)
    parsed = HANDLERS[message_topic(message)](encode_message(message), seen)
    assert parsed == record


# -- one declaration: the handler's field table names both sides --------------------

DECLARED = [
    (_ticker.FIELDS, TickerMessage, set()),
    (_trade.FIELDS, TradeMessage, set()),
    (_alert.FIELDS, AlertMessage, {"type"}),  # prototype alerts only: never written
]


@pytest.mark.parametrize(("fields", "message", "read_only"), DECLARED)
def test_record_wire_and_field_table_name_the_same_fields(
    fields: F.Fields[Any], message: type[msgspec.Struct], read_only: set[str]
) -> None:
    """Adding a field to the record, the wire message or the table alone fails here."""
    declared = {field.name for field in fields.fields}
    record = set(fields.record.__struct_fields__)
    assert record <= declared, f"record attributes no field reads: {record - declared}"
    wire = set(message.__struct_fields__)
    first_keys = {field.keys[0] for field in fields.fields}
    assert wire == first_keys - read_only


def test_a_field_table_gives_every_attribute_and_uses_every_field() -> None:
    fields = _trade.FIELDS.fields
    with pytest.raises(TypeError, match="table gives no 'source'; uses no field 'colour'"):
        F.Fields(TradeRecord, *fields[:-1], F.Field("colour", ("colour",), F.check_source))
    with pytest.raises(TypeError, match="reads unknown field 'colour'"):
        F.Fields(TradeRecord, *fields, derived=(F.Derived("side", ("colour",), str),))


def test_a_wire_field_no_table_reads_is_refused() -> None:
    class Extended(msgspec.Struct, frozen=True, kw_only=True):
        pair: str
        colour: str

    with pytest.raises(TypeError, match=r"Extended\.colour: no declared field reads it"):
        wire_form(_trade.FIELDS, Extended)


# -- the article: no field table (its content and sentiment are nested), so a record ---
# with every attribute set is its check that record, wire message and handler agree.

FULL_ARTICLE = ArticleRecord(
    article_id="full-1",
    time=datetime(2026, 9, 30, 12, 0, 0, 250000, tzinfo=UTC),
    published_at=datetime(2026, 9, 30, 12, 0, 0, 250000, tzinfo=UTC),
    title="Markets rally",
    url="https://markets.example.com/full-1",  # not the website: a dropped one would show
    website="coindesk.com",
    summary="Prices up.",
    cryptocurrencies_mentioned=("BTC", "ETH"),  # not in the text: a dropped list would show
    sentiment_score=0.6,
    sentiment_label="negative",  # not what the score alone says: the label travels too
    subjectivity=0.3,
    receive_time=datetime(2026, 9, 30, 12, 0, 1, 500000, tzinfo=UTC),
    source="coindesk.com",  # no source on the wire: an article's label is its website
)
REQUIRED = {"id", "title", "sentiment"}
"""Wire fields whose absence is a rejection (tests/handlers/test_article.py)."""
COPIES = [("content", "summary"), ("published_at", "timestamp")]
"""Wire fields that carry one attribute twice: each is read when the other is missing."""


def test_a_full_article_sets_every_attribute() -> None:
    """An attribute added to ArticleRecord is set here, so the tests below cover it."""
    defaulted = [
        f.name
        for f in msgspec.structs.fields(ArticleRecord)
        if f.default is not msgspec.NODEFAULT and getattr(FULL_ARTICLE, f.name) == f.default
    ]
    assert defaulted == [], "give FULL_ARTICLE a value that is not the default"


def _parse_without(wire: dict[str, Any], *names: str) -> object:
    kept = {k: v for k, v in wire.items() if k not in names}
    return HANDLERS["rawarticle"](json.dumps(kept).encode(), ctx())


def test_every_article_attribute_survives_the_wire_and_every_wire_field_is_read() -> None:
    """Adding an article attribute to the record, the wire message or the handler alone
    fails here (``to_message`` and ``article_from_object`` name them by hand)."""
    message = to_message(FULL_ARTICLE)
    wire: dict[str, Any] = msgspec.to_builtins(message)
    assert [k for k, v in wire.items() if v in (None, "", [], {})] == [], "a field left unset"
    assert HANDLERS["rawarticle"](encode_message(message), ctx()) == FULL_ARTICLE
    copied = {name for pair in COPIES for name in pair}
    for name in set(ArticleMessage.__struct_fields__) - REQUIRED - copied:
        assert _parse_without(wire, name) != FULL_ARTICLE, f"the handler never reads {name!r}"
    for first, second in COPIES:
        assert _parse_without(wire, first) == FULL_ARTICLE, f"{second!r} is not read alone"
        assert _parse_without(wire, second) == FULL_ARTICLE, f"{first!r} is not read alone"
        assert _parse_without(wire, first, second) != FULL_ARTICLE, (first, second)
