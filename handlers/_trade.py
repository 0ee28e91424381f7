"""rawtrade: seed and producer trade messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers import _fields as F
from handlers._context import HandlerContext
from handlers._payload import run_handler
from handlers._records import OrdType, Rejection, Side, TradeRecord

MAX_TRADE_ID = 2**63 - 1
SIDES: Mapping[str, Side] = {"b": "b", "buy": "b", "s": "s", "sell": "s"}
ORD_TYPES: Mapping[str, OrdType] = {"l": "l", "limit": "l", "m": "m", "market": "m"}

_FIELDS = F.FastFields(
    F.Field(("pair", "symbol"), F.check_pair, required=True),
    F.Field(("price",), "price", required=True),
    F.Field(("volume", "qty"), "amount", required=True),
    F.Field(("timestamp",), F.check_time, required=True),
    F.Field(("side",), F.choice_check(SIDES), required=True),
    F.Field(("trade_id",), F.integer_check(0, MAX_TRADE_ID)),
    F.Field(("ord_type",), F.choice_check(ORD_TYPES)),
    F.Field(("receive_ts",), F.check_time),
    F.Field(("source",), F.check_source),
)


def side_of(obj: F.Obj) -> Side:
    side = F.choice(obj, "side", SIDES)
    if side is None:
        raise F.missing(("side",))
    return side


def _read_in_order(obj: F.Obj, ctx: HandlerContext) -> list[Any]:
    """The fields of ``_FIELDS``, one after the other: the first problem is raised."""
    return [
        F.pair(obj, ctx),
        F.required_number(obj, "price", kind="price"),
        F.required_number(obj, "volume", "qty", kind="amount"),
        F.required_time(obj, "timestamp", ctx=ctx),
        side_of(obj),
        F.integer(obj, "trade_id", minimum=0, maximum=MAX_TRADE_ID),
        F.choice(obj, "ord_type", ORD_TYPES),
        F.time(obj, "receive_ts", ctx=ctx),
        F.text(obj, "source", max_len=F.MAX_SOURCE),
    ]


def _record(values: list[Any]) -> TradeRecord:
    pair, price, volume, time, side, trade_id, ord_type, receive_time, source = values
    return TradeRecord(
        pair=pair,
        price=price,
        volume=volume,
        time=time,
        side=side,
        trade_id=trade_id,
        ord_type=ord_type,
        receive_time=receive_time,
        source=source or "kraken",
    )


def trade_from_object(obj: F.Obj, ctx: HandlerContext) -> TradeRecord:
    """Validate one decoded trade message; raises ``Invalid``."""
    # The one-pass read accepts the common valid message; anything else goes through
    # the sequential reading, which reports the first problem (see FastFields).
    return _record(_FIELDS.read(obj, ctx) or _read_in_order(obj, ctx))


def parse_trade(payload: bytes, ctx: HandlerContext) -> TradeRecord | Rejection:
    """A ``rawtrade`` payload as a :class:`TradeRecord`, or why not."""
    return run_handler(trade_from_object, payload, ctx)
