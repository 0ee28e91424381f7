"""What our producers put on the raw topics: one contract, parsed by the handlers.

Producers build these structs and send :func:`encode_message` bytes; the
handlers (``parse_ticker`` ...) read them back. Decimals are written as plain
JSON numbers with their exact digits; times as float epoch seconds, plus
ISO-8601 UTC strings where noted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import TypeAlias, overload

import msgspec

from handlers._errors import HandlerError
from handlers._records import (
    AlertRecord,
    AlertType,
    ArticleRecord,
    OrdType,
    Record,
    SentimentLabel,
    Side,
    TickerRecord,
    TradeRecord,
)
from handlers._time import epoch_seconds, iso_utc


class TickerMessage(msgspec.Struct, frozen=True, kw_only=True):
    """``rawticker``. ``timestamp`` is the exchange time when known, else the receive time."""

    pair: str
    last: Decimal
    bid: Decimal | None = None
    ask: Decimal | None = None
    volume_24h: Decimal | None = None
    timestamp: float
    bid_qty: Decimal | None = None
    ask_qty: Decimal | None = None
    vwap: Decimal | None = None
    low: Decimal | None = None
    high: Decimal | None = None
    change_pct: Decimal | None = None
    exchange_ts: str | None = None
    receive_ts: float | None = None


class TradeMessage(msgspec.Struct, frozen=True, kw_only=True):
    """``rawtrade``. ``timestamp`` is the exchange time of the trade."""

    pair: str
    price: Decimal
    volume: Decimal
    timestamp: float
    side: Side
    trade_id: int | None = None
    ord_type: OrdType | None = None
    receive_ts: float | None = None


class ArticleContent(msgspec.Struct, frozen=True, kw_only=True):
    summary: str = ""


class ArticleSentiment(msgspec.Struct, frozen=True, kw_only=True):
    score: float
    label: SentimentLabel
    subjectivity: float | None = None


class ArticleMessage(msgspec.Struct, frozen=True, kw_only=True):
    """``rawarticle``. ``summary`` is repeated at top level for prototype consumers."""

    id: str
    title: str
    url: str
    website: str
    content: ArticleContent = ArticleContent()
    summary: str = ""
    published_at: str | None = None
    timestamp: float
    cryptocurrencies_mentioned: tuple[str, ...] = ()
    sentiment: ArticleSentiment
    receive_ts: float | None = None


class AlertMessage(msgspec.Struct, frozen=True, kw_only=True):
    """``rawalert``. ``change`` is the percent move; its sign must match ``alert_type``."""

    pair: str
    last: Decimal
    change: Decimal
    threshold: Decimal | None = None
    timestamp: float
    alert_type: AlertType
    reference_price: Decimal | None = None
    window_s: int | None = None
    receive_ts: float | None = None


WireMessage: TypeAlias = TickerMessage | TradeMessage | ArticleMessage | AlertMessage

TOPICS: Mapping[type[msgspec.Struct], str] = MappingProxyType(
    {
        TickerMessage: "rawticker",
        TradeMessage: "rawtrade",
        ArticleMessage: "rawarticle",
        AlertMessage: "rawalert",
    }
)

_ENCODER = msgspec.json.Encoder(decimal_format="number")


def encode_message(msg: WireMessage) -> bytes:
    """``msg`` as compact JSON; decimals become plain JSON numbers, ``None`` becomes null."""
    return _ENCODER.encode(msg)


def message_topic(msg: WireMessage) -> str:
    """The raw Kafka topic a wire message belongs on."""
    return TOPICS[type(msg)]


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else epoch_seconds(moment)


@overload
def to_message(record: TickerRecord) -> TickerMessage: ...
@overload
def to_message(record: TradeRecord) -> TradeMessage: ...
@overload
def to_message(record: ArticleRecord) -> ArticleMessage: ...
@overload
def to_message(record: AlertRecord) -> AlertMessage: ...
def to_message(record: Record) -> WireMessage:
    """The wire message that parses back to ``record`` (``source`` is not on the wire).

    Raises :class:`HandlerError` for an alert without a last price (prototype
    alerts cannot be re-encoded).
    """
    if isinstance(record, TickerRecord):
        return TickerMessage(
            pair=record.pair,
            last=record.last,
            bid=record.bid,
            ask=record.ask,
            volume_24h=record.volume_24h,
            timestamp=epoch_seconds(record.time),
            bid_qty=record.bid_qty,
            ask_qty=record.ask_qty,
            vwap=record.vwap,
            low=record.low,
            high=record.high,
            change_pct=record.change_pct,
            exchange_ts=None if record.exchange_time is None else iso_utc(record.exchange_time),
            receive_ts=_epoch(record.receive_time),
        )
    if isinstance(record, TradeRecord):
        return TradeMessage(
            pair=record.pair,
            price=record.price,
            volume=record.volume,
            timestamp=epoch_seconds(record.time),
            side=record.side,
            trade_id=record.trade_id,
            ord_type=record.ord_type,
            receive_ts=_epoch(record.receive_time),
        )
    if isinstance(record, ArticleRecord):
        return ArticleMessage(
            id=record.article_id,
            title=record.title,
            url=record.url,
            website=record.website,
            content=ArticleContent(summary=record.summary),
            summary=record.summary,
            published_at=iso_utc(record.time),
            timestamp=epoch_seconds(record.time),
            cryptocurrencies_mentioned=record.cryptocurrencies_mentioned,
            sentiment=ArticleSentiment(
                score=record.sentiment_score,
                label=record.sentiment_label,
                subjectivity=record.subjectivity,
            ),
            receive_ts=_epoch(record.receive_time),
        )
    if record.last_price is None:
        raise HandlerError("an alert without a last price has no wire form")
    return AlertMessage(
        pair=record.pair,
        last=record.last_price,
        change=record.change_percent,
        threshold=record.threshold,
        timestamp=epoch_seconds(record.time),
        alert_type=record.alert_type,
        reference_price=record.reference_price,
        window_s=record.window_s,
        receive_ts=_epoch(record.receive_time),
    )
