"""Where each record type lands: table, columns, idempotency key, row builder.

One :class:`TableSpec` per raw topic. The ingestion sink is generic; adding a
topic means adding a handler in ``handlers`` and a spec here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from handlers import AlertRecord, ArticleRecord, Record, TickerRecord, TradeRecord


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: str
    columns: tuple[str, ...]
    to_row: Callable[[Any], tuple[Any, ...]]
    dedup_on: tuple[str, ...] | None = None
    """Extra idempotency check beyond the primary key: skip rows whose values in
    these columns already exist (article ids, whose publication time may differ
    between two deliveries of the same story)."""

    @property
    def optimistic_copy(self) -> bool:
        """Straight COPY is safe only when the primary key alone guarantees idempotency."""
        return self.dedup_on is None


def _ticker(r: TickerRecord) -> tuple[Any, ...]:
    return (
        r.time, r.pair, r.last, r.bid, r.ask, r.volume_24h, r.bid_qty, r.ask_qty,
        r.vwap, r.low, r.high, r.change_pct, r.exchange_time, r.receive_time, r.source,
    )  # fmt: skip


def _trade(r: TradeRecord) -> tuple[Any, ...]:
    return (
        r.time, r.pair, r.price, r.volume, r.side, r.trade_id, r.ord_type, r.trade_key,
        r.receive_time, r.source,
    )  # fmt: skip


def _article(r: ArticleRecord) -> tuple[Any, ...]:
    return (
        r.time, r.article_id, r.title, r.url, r.website, r.summary,
        list(r.cryptocurrencies_mentioned), r.sentiment_score, r.sentiment_label,
        r.subjectivity, r.receive_time, r.source,
    )  # fmt: skip


def _alert(r: AlertRecord) -> tuple[Any, ...]:
    return (
        r.time, r.pair, r.last_price, r.change_percent, r.threshold, r.alert_type,
        r.reference_price, r.window_s, r.receive_time, r.source,
    )  # fmt: skip


TICKER = TableSpec(
    "ticker_data",
    (
        "timestamp", "pair", "last", "bid", "ask", "volume_24h", "bid_qty", "ask_qty",
        "vwap", "low", "high", "change_pct", "exchange_time", "receive_time", "source",
    ),
    _ticker,
)  # fmt: skip
TRADE = TableSpec(
    "trade_data",
    (
        "timestamp", "pair", "price", "volume", "side", "trade_id", "ord_type", "trade_key",
        "receive_time", "source",
    ),
    _trade,
)  # fmt: skip
ARTICLE = TableSpec(
    "article_data",
    (
        "timestamp", "article_id", "title", "url", "website", "summary",
        "cryptocurrencies_mentioned", "sentiment_score", "sentiment_label", "subjectivity",
        "receive_time", "source",
    ),
    _article,
    dedup_on=("article_id",),
)  # fmt: skip
ALERT = TableSpec(
    "alert_data",
    (
        "timestamp", "pair", "last_price", "change_percent", "threshold", "alert_type",
        "reference_price", "window_s", "receive_time", "source",
    ),
    _alert,
)  # fmt: skip

TABLES: dict[str, TableSpec] = {
    "rawticker": TICKER,
    "rawtrade": TRADE,
    "rawarticle": ARTICLE,
    "rawalert": ALERT,
}
_BY_TYPE: dict[type, TableSpec] = {
    TickerRecord: TICKER,
    TradeRecord: TRADE,
    ArticleRecord: ARTICLE,
    AlertRecord: ALERT,
}


def spec_for_record(record: Record) -> TableSpec:
    return _BY_TYPE[type(record)]


def rows_for(spec: TableSpec, records: Sequence[Record]) -> list[tuple[Any, ...]]:
    to_row = spec.to_row
    return [to_row(r) for r in records]
