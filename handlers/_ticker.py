"""rawticker: seed, prototype (``pct_change``) and producer (v2-based) ticker messages.

Two changes, each under its own name: ``pct_change``, the prototype's change from the
previous price of the pair (in percent), and ``change_24h_pct``, the exchange's change
over 24 hours (read from ``change_pct`` too, its name in our earlier messages).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Context, Decimal

from handlers import _fields as F
from handlers._context import HandlerContext
from handlers._payload import fields_handler
from handlers._records import Rejection, TickerRecord


def _first_known(exchange_time: datetime | None, timestamp: datetime) -> datetime:
    return timestamp if exchange_time is None else exchange_time


FIELDS = F.Fields(
    TickerRecord,
    F.Field("pair", ("pair", "symbol"), F.check_pair, required=True),
    F.Field("last", ("last",), "price", required=True),
    F.Field("exchange_time", ("exchange_ts",), F.check_time),
    F.Field("time", ("timestamp",), F.check_time, required=True, unless="exchange_time"),
    F.Field("bid", ("bid",), "price"),
    F.Field("ask", ("ask",), "price"),
    F.Field("volume_24h", ("volume_24h",), "amount"),
    F.Field("bid_qty", ("bid_qty",), "amount"),
    F.Field("ask_qty", ("ask_qty",), "amount"),
    F.Field("vwap", ("vwap",), "amount"),
    F.Field("low", ("low",), "amount"),
    F.Field("high", ("high",), "amount"),
    F.Field("change_24h_pct", ("change_24h_pct", "change_pct"), "signed"),
    F.Field("pct_change", ("pct_change",), "signed"),
    F.Field("receive_time", ("receive_ts",), F.check_time),
    F.Field("source", ("source",), F.check_source),
    # The record's time is the exchange time when known, else the message's timestamp.
    derived=(F.Derived("time", ("exchange_time", "time"), _first_known),),
)

ticker_from_object = FIELDS.parse
"""Validate one decoded ticker message; raises ``Invalid`` (see ``Fields.parse``)."""


_handle = fields_handler(FIELDS)


def parse_ticker(payload: bytes, ctx: HandlerContext) -> TickerRecord | Rejection:
    """A ``rawticker`` payload as a :class:`TickerRecord`, or why not."""
    # ticker_from_object looked up here, at each call: a replacement (a test's) holds.
    return _handle(payload, ctx, ticker_from_object)


PCT_CHANGE_UNIT = Decimal("0.000001")
"""Tick-to-tick moves are small: six decimals of a percent (the handlers accept 18)."""
_WIDE = Context(prec=60)


def pct_change(before: Decimal | None, last: Decimal) -> Decimal | None:
    """A ticker's ``pct_change``: the percent change from its pair's previous price (the
    prototype's field); ``None`` for a pair's first tick (no ``before``) and where the
    handlers would refuse it (a junk price)."""
    if before is None or before == 0:
        return None
    change = ((last - before) / before * 100).quantize(PCT_CHANGE_UNIT, context=_WIDE)
    return None if change.copy_abs() > F.MAX_SIGNED else change
