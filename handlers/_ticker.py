"""rawticker: seed, prototype (``pct_change``) and producer (v2-based) ticker messages."""

from __future__ import annotations

from typing import Any

from handlers import _fields as F
from handlers._context import HandlerContext
from handlers._payload import run_handler
from handlers._records import Rejection, TickerRecord

_FIELDS = F.FastFields(
    F.Field(("pair", "symbol"), F.check_pair, required=True),
    F.Field(("last",), "price", required=True),
    F.Field(("exchange_ts",), F.check_time),
    # Required here only: a message with an exchange_ts but no timestamp is valid too,
    # but rare enough to be left to the sequential reading.
    F.Field(("timestamp",), F.check_time, required=True),
    F.Field(("bid",), "price"),
    F.Field(("ask",), "price"),
    F.Field(("volume_24h",), "amount"),
    F.Field(("bid_qty",), "amount"),
    F.Field(("ask_qty",), "amount"),
    F.Field(("vwap",), "amount"),
    F.Field(("low",), "amount"),
    F.Field(("high",), "amount"),
    F.Field(("change_pct", "pct_change"), "signed"),
    F.Field(("receive_ts",), F.check_time),
    F.Field(("source",), F.check_source),
)


def _read_in_order(obj: F.Obj, ctx: HandlerContext) -> list[Any]:
    """The fields of ``_FIELDS``, one after the other: the first problem is raised."""
    pair = F.pair(obj, ctx)
    last = F.required_number(obj, "last", kind="price")
    exchange_time = F.time(obj, "exchange_ts", ctx=ctx)
    stamp = F.time(obj, "timestamp", ctx=ctx, required=exchange_time is None)
    return [
        pair,
        last,
        exchange_time,
        stamp,
        F.number(obj, "bid", kind="price"),
        F.number(obj, "ask", kind="price"),
        F.number(obj, "volume_24h", kind="amount"),
        F.number(obj, "bid_qty", kind="amount"),
        F.number(obj, "ask_qty", kind="amount"),
        F.number(obj, "vwap", kind="amount"),
        F.number(obj, "low", kind="amount"),
        F.number(obj, "high", kind="amount"),
        F.number(obj, "change_pct", "pct_change", kind="signed"),
        F.time(obj, "receive_ts", ctx=ctx),
        F.text(obj, "source", max_len=F.MAX_SOURCE),
    ]


def _record(values: list[Any]) -> TickerRecord:
    (pair, last, exchange_time, stamp, bid, ask, volume_24h, bid_qty, ask_qty, vwap, low, high,
     change_pct, receive_time, source) = values  # fmt: skip
    return TickerRecord(
        pair=pair,
        time=exchange_time or stamp,
        last=last,
        bid=bid,
        ask=ask,
        volume_24h=volume_24h,
        bid_qty=bid_qty,
        ask_qty=ask_qty,
        vwap=vwap,
        low=low,
        high=high,
        change_pct=change_pct,
        exchange_time=exchange_time,
        receive_time=receive_time,
        source=source or "kraken",
    )


def ticker_from_object(obj: F.Obj, ctx: HandlerContext) -> TickerRecord:
    """Validate one decoded ticker message; raises ``Invalid``."""
    # The one-pass read accepts the common valid message; anything else goes through
    # the sequential reading, which reports the first problem (see FastFields).
    return _record(_FIELDS.read(obj, ctx) or _read_in_order(obj, ctx))


def parse_ticker(payload: bytes, ctx: HandlerContext) -> TickerRecord | Rejection:
    """A ``rawticker`` payload as a :class:`TickerRecord`, or why not."""
    return run_handler(ticker_from_object, payload, ctx)
