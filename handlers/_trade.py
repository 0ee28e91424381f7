"""rawtrade: seed and producer trade messages."""

from __future__ import annotations

from collections.abc import Mapping

from handlers import _fields as F
from handlers._context import HandlerContext
from handlers._payload import run_handler
from handlers._records import OrdType, Rejection, Side, TradeRecord

MAX_TRADE_ID = 2**63 - 1
SIDES: Mapping[str, Side] = {"b": "b", "buy": "b", "s": "s", "sell": "s"}
ORD_TYPES: Mapping[str, OrdType] = {"l": "l", "limit": "l", "m": "m", "market": "m"}


def side_of(obj: F.Obj) -> Side:
    side = F.choice(obj, "side", SIDES)
    if side is None:
        raise F.missing(("side",))
    return side


def trade_from_object(obj: F.Obj, ctx: HandlerContext) -> TradeRecord:
    """Validate one decoded trade message; raises ``Invalid``."""
    return TradeRecord(
        pair=F.pair(obj, ctx),
        price=F.required_number(obj, "price", kind="price"),
        volume=F.required_number(obj, "volume", "qty", kind="amount"),
        time=F.required_time(obj, "timestamp", ctx=ctx),
        side=side_of(obj),
        trade_id=F.integer(obj, "trade_id", minimum=0, maximum=MAX_TRADE_ID),
        ord_type=F.choice(obj, "ord_type", ORD_TYPES),
        receive_time=F.time(obj, "receive_ts", ctx=ctx),
        source=F.source(obj, "kraken"),
    )


def parse_trade(payload: bytes, ctx: HandlerContext) -> TradeRecord | Rejection:
    """A ``rawtrade`` payload as a :class:`TradeRecord`, or why not."""
    return run_handler(trade_from_object, payload, ctx)
