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

FIELDS = F.Fields(
    TradeRecord,
    F.Field("pair", ("pair", "symbol"), F.check_pair, required=True),
    F.Field("price", ("price",), "price", required=True),
    F.Field("volume", ("volume", "qty"), "amount", required=True),
    F.Field("time", ("timestamp",), F.check_time, required=True),
    F.Field("side", ("side",), F.choice_check(SIDES), required=True),
    F.Field("trade_id", ("trade_id",), F.integer_check(0, MAX_TRADE_ID)),
    F.Field("ord_type", ("ord_type",), F.choice_check(ORD_TYPES)),
    F.Field("receive_time", ("receive_ts",), F.check_time),
    F.Field("source", ("source",), F.check_source),
)


trade_from_object = FIELDS.parse
"""Validate one decoded trade message; raises ``Invalid`` (see ``Fields.parse``)."""


def parse_trade(payload: bytes, ctx: HandlerContext) -> TradeRecord | Rejection:
    """A ``rawtrade`` payload as a :class:`TradeRecord`, or why not."""
    return run_handler(trade_from_object, payload, ctx)
