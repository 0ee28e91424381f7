"""What our producers put on the raw topics: one contract, parsed by the handlers.

Producers build these structs and send :func:`encode_message` bytes; the
handlers (``parse_ticker`` ...) read them back. Decimals are written as plain
JSON numbers with their exact digits; times as float epoch seconds, plus
ISO-8601 UTC strings where noted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import TypeAlias, TypeVar, get_args, overload

import msgspec

from handlers._alert import FIELDS as ALERT_FIELDS
from handlers._errors import HandlerError
from handlers._fields import Fields, R
from handlers._generated import generated
from handlers._origin import LIVE_SOURCE
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
from handlers._ticker import FIELDS as TICKER_FIELDS
from handlers._time import epoch_seconds, iso_utc
from handlers._trade import FIELDS as TRADE_FIELDS


class TickerMessage(msgspec.Struct, frozen=True, kw_only=True):
    """``rawticker``. ``timestamp`` is the exchange time when known, else the receive time.

    ``pct_change`` is the change from the pair's previous price (the producer sets it,
    see ``flows.producers.workers``); ``change_24h_pct`` the exchange's 24-hour change.
    """

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
    change_24h_pct: Decimal | None = None
    pct_change: Decimal | None = None
    exchange_ts: str | None = None
    receive_ts: float | None = None
    source: str | None = None
    """The price path (``handlers._origin``); unset means the live exchange feed."""


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
    source: str | None = None
    """The price path (``handlers._origin``); unset means the live exchange feed."""


class ArticleContent(msgspec.Struct, frozen=True, kw_only=True):
    summary: str = ""


class ArticleSentiment(msgspec.Struct, frozen=True, kw_only=True):
    score: float
    label: SentimentLabel
    subjectivity: float | None = None


class ArticleMessage(msgspec.Struct, frozen=True, kw_only=True):
    """``rawarticle``. ``summary`` is in ``content`` (the seeds' shape) and repeated at
    top level, flat like ``article_data.summary``, for consumers that read it there.

    ``published_at`` and ``timestamp`` are the publication time (ISO-8601, epoch
    seconds), both null when the feed gave none: ingestion then stamps the article
    with its Kafka record time.
    """

    id: str
    title: str
    url: str | None = None
    website: str | None = None
    content: ArticleContent = ArticleContent()
    summary: str = ""
    published_at: str | None = None
    timestamp: float | None = None
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
    source: str | None = None
    """The price path the alert was raised on (the ticks' ``source``)."""


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


def _label(source: str) -> str | None:
    return None if source == LIVE_SOURCE else source


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_utc(moment)


M = TypeVar("M", bound=msgspec.Struct)


def wire_form(fields: Fields[R], message: type[M]) -> Callable[[R], M]:
    """record -> wire message, by name, from the handler's field declaration.

    Each wire field is the first key of one declared field, which names the record
    attribute it carries (``exchange_ts`` <- ``exchange_time``); a record time
    becomes epoch seconds, or ISO-8601 text where the wire field is a string; the
    live feed's ``source`` is left unset. A wire field that no declared field reads
    fails here, at import. (Generated: see :mod:`handlers._generated`.)
    """
    attribute = {field.keys[0]: field.name for field in fields.fields}
    record_types = {f.name: f.type for f in msgspec.structs.fields(fields.record)}
    arguments: list[str] = []
    for wire in msgspec.structs.fields(message):
        if wire.name not in attribute:
            raise TypeError(f"{message.__name__}.{wire.name}: no declared field reads it")
        name = attribute[wire.name]
        value = f"record.{name}"
        kinds = get_args(record_types[name]) or (record_types[name],)
        if datetime in kinds:
            text = str in (get_args(wire.type) or (wire.type,))
            optional = type(None) in kinds
            convert = ("iso" if text else "epoch") + ("_or_none" if optional else "")
            value = f"{convert}({value})"
        elif wire.name == "source":
            # The live feed's label is what an unset one reads back as: live messages
            # carry none (handlers._origin).
            value = f"label({value})"
        arguments.append(f"{wire.name}={value}")
    namespace = {
        "message": message,
        "epoch": epoch_seconds,
        "epoch_or_none": _epoch,
        "iso": iso_utc,
        "iso_or_none": _iso,
        "label": _label,
    }
    return generated("to_message", "record", f"message({', '.join(arguments)})", namespace)


_TICKER = wire_form(TICKER_FIELDS, TickerMessage)
_TRADE = wire_form(TRADE_FIELDS, TradeMessage)
_ALERT = wire_form(ALERT_FIELDS, AlertMessage)


@overload
def to_message(record: TickerRecord) -> TickerMessage: ...
@overload
def to_message(record: TradeRecord) -> TradeMessage: ...
@overload
def to_message(record: ArticleRecord) -> ArticleMessage: ...
@overload
def to_message(record: AlertRecord) -> AlertMessage: ...
def to_message(record: Record) -> WireMessage:
    """The wire message that parses back to ``record``.

    Its ``source`` is left unset for the live feed's (``kraken``, what an unset one
    reads back as), so live messages carry no label.

    Raises :class:`HandlerError` for an alert without a last price (``type``/``value``
    alerts cannot be re-encoded).
    """
    if isinstance(record, TickerRecord):
        return _TICKER(record)
    if isinstance(record, TradeRecord):
        return _TRADE(record)
    if isinstance(record, ArticleRecord):
        return ArticleMessage(
            id=record.article_id,
            title=record.title,
            url=record.url,
            website=record.website,
            content=ArticleContent(summary=record.summary),
            summary=record.summary,
            published_at=_iso(record.published_at),
            timestamp=_epoch(record.published_at),
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
    return _ALERT(record)
