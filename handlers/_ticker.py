"""rawticker: seed, prototype (``pct_change``) and producer (v2-based) ticker messages."""

from __future__ import annotations

from handlers import _fields as F
from handlers._context import HandlerContext
from handlers._payload import run_handler
from handlers._records import Rejection, TickerRecord


def ticker_from_object(obj: F.Obj, ctx: HandlerContext) -> TickerRecord:
    """Validate one decoded ticker message; raises ``Invalid``."""
    pair = F.pair(obj, ctx)
    last = F.required_number(obj, "last", kind="price")
    exchange_time = F.time(obj, "exchange_ts", ctx=ctx)
    stamp = F.time(obj, "timestamp", ctx=ctx, required=exchange_time is None)
    time = exchange_time or stamp
    assert time is not None
    return TickerRecord(
        pair=pair,
        time=time,
        last=last,
        bid=F.number(obj, "bid", kind="price"),
        ask=F.number(obj, "ask", kind="price"),
        volume_24h=F.number(obj, "volume_24h", kind="amount"),
        bid_qty=F.number(obj, "bid_qty", kind="amount"),
        ask_qty=F.number(obj, "ask_qty", kind="amount"),
        vwap=F.number(obj, "vwap", kind="amount"),
        low=F.number(obj, "low", kind="amount"),
        high=F.number(obj, "high", kind="amount"),
        change_pct=F.number(obj, "change_pct", "pct_change", kind="signed"),
        exchange_time=exchange_time,
        receive_time=F.time(obj, "receive_ts", ctx=ctx),
        source=F.source(obj, "kraken"),
    )


def parse_ticker(payload: bytes, ctx: HandlerContext) -> TickerRecord | Rejection:
    """A ``rawticker`` payload as a :class:`TickerRecord`, or why not."""
    return run_handler(ticker_from_object, payload, ctx)
