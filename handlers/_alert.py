"""rawalert: seed, producer and prototype (``type``/``value``) alert messages."""

from __future__ import annotations

from collections.abc import Mapping

from handlers import _fields as F
from handlers._context import HandlerContext
from handlers._payload import run_handler
from handlers._records import AlertRecord, AlertType, Rejection

ALERT_TYPES: Mapping[str, AlertType] = {"up": "up", "down": "down"}
PROTOTYPE_TYPES: Mapping[str, AlertType] = {"price_spike": "up", "price_drop": "down"}
MAX_WINDOW_S = 10_000_000


def alert_from_object(obj: F.Obj, ctx: HandlerContext) -> AlertRecord:
    """Validate one decoded alert message; raises ``Invalid``.

    The direction comes from the sign of the change; an explicit ``alert_type``
    (or prototype ``type``) must agree with it. A zero change is rejected.
    Only prototype alerts (with ``type``) may omit the last price.
    """
    pair = F.pair(obj, ctx)
    declared = F.choice(obj, "alert_type", ALERT_TYPES)
    prototype = F.choice(obj, "type", PROTOTYPE_TYPES)
    last = F.number(obj, "last", "last_price", kind="price", required=prototype is None)
    change_keys = ("change", "change_percent", "value")
    hit = F.lookup(obj, change_keys)
    if hit is None:
        raise F.missing(change_keys)
    change = F.check_number(hit[0], hit[1], "signed")
    if change.is_zero():
        raise F.fail(hit[0], "must be non-zero (its sign gives the alert direction)", hit[1])
    direction: AlertType = "up" if change > 0 else "down"
    for key, stated in (("alert_type", declared), ("type", prototype)):
        if stated is not None and stated != direction:
            raise F.Invalid(f"field '{key}': says {stated!r} but '{hit[0]}' is {change}", key)
    return AlertRecord(
        pair=pair,
        time=F.required_time(obj, "timestamp", ctx=ctx),
        last_price=last,
        change_percent=change,
        threshold=F.number(obj, "threshold", kind="amount"),
        alert_type=direction,
        reference_price=F.number(obj, "reference_price", kind="price"),
        window_s=F.integer(obj, "window_s", minimum=1, maximum=MAX_WINDOW_S),
        receive_time=F.time(obj, "receive_ts", ctx=ctx),
        source=F.source(obj, "kraken"),
    )


def parse_alert(payload: bytes, ctx: HandlerContext) -> AlertRecord | Rejection:
    """A ``rawalert`` payload as an :class:`AlertRecord`, or why not."""
    return run_handler(alert_from_object, payload, ctx)
