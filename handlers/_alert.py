"""rawalert: seed, producer and prototype (``type``/``value``) alert messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers import _fields as F
from handlers._context import HandlerContext
from handlers._payload import run_handler
from handlers._records import AlertRecord, AlertType, Rejection

ALERT_TYPES: Mapping[str, AlertType] = {"up": "up", "down": "down"}
PROTOTYPE_TYPES: Mapping[str, AlertType] = {"price_spike": "up", "price_drop": "down"}
MAX_WINDOW_S = 10_000_000
_CHANGE_KEYS = ("change", "change_percent", "value")

_FIELDS = F.FastFields(
    F.Field(("pair", "symbol"), F.check_pair, required=True),
    F.Field(("alert_type",), F.choice_check(ALERT_TYPES)),
    F.Field(("type",), F.choice_check(PROTOTYPE_TYPES)),
    F.Field(("last", "last_price"), "price"),
    F.Field(_CHANGE_KEYS, "signed", required=True),
    F.Field(("timestamp",), F.check_time, required=True),
    F.Field(("threshold",), "amount"),
    F.Field(("reference_price",), "price"),
    F.Field(("window_s",), F.integer_check(1, MAX_WINDOW_S)),
    F.Field(("receive_ts",), F.check_time),
    F.Field(("source",), F.check_source),
)


def _read_in_order(obj: F.Obj, ctx: HandlerContext) -> list[Any]:
    """The fields of ``_FIELDS``, one after the other: the first problem is raised."""
    pair = F.pair(obj, ctx)
    declared = F.choice(obj, "alert_type", ALERT_TYPES)
    prototype = F.choice(obj, "type", PROTOTYPE_TYPES)
    last = F.number(obj, "last", "last_price", kind="price", required=prototype is None)
    hit = F.lookup(obj, _CHANGE_KEYS)
    if hit is None:
        raise F.missing(_CHANGE_KEYS)
    change = F.check_number(hit[0], hit[1], "signed")
    if change.is_zero():
        raise F.fail(hit[0], "must be non-zero (its sign gives the alert direction)", hit[1])
    direction: AlertType = "up" if change > 0 else "down"
    for key, stated in (("alert_type", declared), ("type", prototype)):
        if stated is not None and stated != direction:
            raise F.Invalid(f"field '{key}': says {stated!r} but '{hit[0]}' is {change}", key)
    return [
        pair,
        declared,
        prototype,
        last,
        change,
        F.required_time(obj, "timestamp", ctx=ctx),
        F.number(obj, "threshold", kind="amount"),
        F.number(obj, "reference_price", kind="price"),
        F.integer(obj, "window_s", minimum=1, maximum=MAX_WINDOW_S),
        F.time(obj, "receive_ts", ctx=ctx),
        F.text(obj, "source", max_len=F.MAX_SOURCE),
    ]


def _consistent(values: list[Any]) -> bool:
    """The rules across fields that :func:`_read_in_order` enforces, as a yes/no."""
    _pair, declared, prototype, last, change, *_ = values
    direction = "up" if change > 0 else "down"
    return (
        (last is not None or prototype is not None)
        and not change.is_zero()
        and declared in (None, direction)
        and prototype in (None, direction)
    )


def _record(values: list[Any]) -> AlertRecord:
    (pair, _declared, _prototype, last, change, time, threshold, reference_price, window_s,
     receive_time, source) = values  # fmt: skip
    return AlertRecord(
        pair=pair,
        time=time,
        last_price=last,
        change_percent=change,
        threshold=threshold,
        alert_type="up" if change > 0 else "down",
        reference_price=reference_price,
        window_s=window_s,
        receive_time=receive_time,
        source=source or "kraken",
    )


def alert_from_object(obj: F.Obj, ctx: HandlerContext) -> AlertRecord:
    """Validate one decoded alert message; raises ``Invalid``.

    The direction comes from the sign of the change; an explicit ``alert_type``
    (or prototype ``type``) must agree with it. A zero change is rejected.
    Only prototype alerts (with ``type``) may omit the last price.
    """
    # The one-pass read accepts the common valid message; anything else goes through
    # the sequential reading, which reports the first problem (see FastFields).
    values = _FIELDS.read(obj, ctx)
    if values is None or not _consistent(values):
        values = _read_in_order(obj, ctx)
    return _record(values)


def parse_alert(payload: bytes, ctx: HandlerContext) -> AlertRecord | Rejection:
    """A ``rawalert`` payload as an :class:`AlertRecord`, or why not."""
    return run_handler(alert_from_object, payload, ctx)
