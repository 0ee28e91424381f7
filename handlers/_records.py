"""The typed records handlers produce, and the rejection they return instead."""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Context, Decimal
from typing import Literal, TypeAlias

import msgspec

Side: TypeAlias = Literal["b", "s"]
OrdType: TypeAlias = Literal["l", "m"]
SentimentLabel: TypeAlias = Literal["positive", "neutral", "negative"]
AlertType: TypeAlias = Literal["up", "down"]

_WIDE = Context(prec=80)


def _plain(value: Decimal) -> str:
    """A canonical text for a decimal: ``71749.0`` and ``71749`` give the same string."""
    return format(value.normalize(_WIDE), "f")


class TickerRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One ticker update. ``time`` is the exchange time when known, else the message time.

    ``pct_change``: percent change from the pair's previous price (the prototype's
    field); ``change_24h_pct``: the exchange's percent change over 24 hours.
    """

    pair: str
    time: datetime
    last: Decimal
    bid: Decimal | None = None
    ask: Decimal | None = None
    volume_24h: Decimal | None = None
    bid_qty: Decimal | None = None
    ask_qty: Decimal | None = None
    vwap: Decimal | None = None
    low: Decimal | None = None
    high: Decimal | None = None
    change_24h_pct: Decimal | None = None
    pct_change: Decimal | None = None
    exchange_time: datetime | None = None
    receive_time: datetime | None = None
    source: str = "kraken"


class TradeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One executed trade; ``time`` is the exchange time."""

    pair: str
    time: datetime
    price: Decimal
    volume: Decimal
    side: Side
    trade_id: int | None = None
    ord_type: OrdType | None = None
    receive_time: datetime | None = None
    source: str = "kraken"

    @property
    def trade_key(self) -> str:
        """The database idempotency key.

        ``str(trade_id)`` when the exchange gave one, else the SHA-1 hex digest of
        ``pair|price|volume|time|side`` (decimals normalised, time as ISO-8601 UTC).
        """
        if self.trade_id is not None:
            return str(self.trade_id)
        content = "|".join(
            (self.pair, _plain(self.price), _plain(self.volume), self.time.isoformat(), self.side)
        )
        return hashlib.sha1(content.encode(), usedforsecurity=False).hexdigest()


class ArticleRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One news article with its sentiment.

    ``time`` is the article's own time (``published_at``) when it has one, else when
    the pipeline first saw it (its Kafka record time).
    """

    article_id: str
    time: datetime
    published_at: datetime | None = None
    title: str
    url: str | None = None
    website: str | None = None
    summary: str = ""
    cryptocurrencies_mentioned: tuple[str, ...] = ()
    sentiment_score: float
    sentiment_label: SentimentLabel
    subjectivity: float | None = None
    receive_time: datetime | None = None
    source: str


class AlertRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A significant price move. ``last_price`` is ``None`` only for alerts of the
    ``{pair, type, value, timestamp}`` shape, which carries no price."""

    pair: str
    time: datetime
    last_price: Decimal | None
    change_percent: Decimal
    threshold: Decimal | None = None
    alert_type: AlertType
    reference_price: Decimal | None = None
    window_s: int | None = None
    receive_time: datetime | None = None
    source: str = "kraken"


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """Why a payload was not accepted; ``field`` names the offending field when there is one."""

    reason: str
    field: str | None = None


Record: TypeAlias = TickerRecord | TradeRecord | ArticleRecord | AlertRecord
