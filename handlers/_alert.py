"""rawalert: seed and producer alert messages, and the ``{pair, type, value, timestamp}``
shape (``type``: ``price_spike``/``price_drop``; no price), which no seed document shows
but which is accepted, its last price unknown."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from handlers import _fields as F
from handlers._context import HandlerContext
from handlers._payload import run_handler
from handlers._records import AlertRecord, AlertType, Rejection

ALERT_TYPES: Mapping[str, AlertType] = {"up": "up", "down": "down"}
SPIKE_TYPES: Mapping[str, AlertType] = {"price_spike": "up", "price_drop": "down"}
"""``type`` of the ``{pair, type, value, timestamp}`` shape (no seed document shows it)."""
MAX_WINDOW_S = 10_000_000


def _direction(change: Decimal) -> AlertType:
    return "up" if change > 0 else "down"


def sign_gives_direction(
    label: str,
    raw: object,
    change: Decimal,
    stated: AlertType | None,
    spike: AlertType | None,
) -> None:
    """A zero change is refused; a stated ``alert_type`` (or ``type``) must match its sign."""
    if change.is_zero():
        raise F.fail(label, "must be non-zero (its sign gives the alert direction)", raw)
    direction = _direction(change)
    for key, said in (("alert_type", stated), ("type", spike)):
        if said is not None and said != direction:
            raise F.Invalid(f"field '{key}': says {said!r} but '{label}' is {change}", key)


FIELDS = F.Fields(
    AlertRecord,
    F.Field("pair", ("pair", "symbol"), F.check_pair, required=True),
    F.Field("alert_type", ("alert_type",), F.choice_check(ALERT_TYPES)),
    F.Field("spike", ("type",), F.choice_check(SPIKE_TYPES)),
    F.Field("last_price", ("last", "last_price"), "price", required=True, unless="spike"),
    F.Field(
        "change_percent",
        ("change", "change_percent", "value"),
        "signed",
        required=True,
        then=F.Rule(("change_percent", "alert_type", "spike"), sign_gives_direction),
    ),
    F.Field("time", ("timestamp",), F.check_time, required=True),
    F.Field("threshold", ("threshold",), "amount"),
    F.Field("reference_price", ("reference_price",), "price"),
    F.Field("window_s", ("window_s",), F.integer_check(1, MAX_WINDOW_S)),
    F.Field("receive_time", ("receive_ts",), F.check_time),
    F.Field("source", ("source",), F.check_source),
    # The stated direction only has to agree (see the rule): the sign decides.
    derived=(F.Derived("alert_type", ("change_percent",), _direction),),
)


def alert_from_object(obj: F.Obj, ctx: HandlerContext) -> AlertRecord:
    """Validate one decoded alert message; raises ``Invalid``.

    The direction comes from the sign of the change; an explicit ``alert_type``
    (or ``type``) must agree with it. A zero change is rejected.
    Only alerts of the ``type``/``value`` shape may omit the last price.
    """
    return FIELDS.parse(obj, ctx)


def parse_alert(payload: bytes, ctx: HandlerContext) -> AlertRecord | Rejection:
    """A ``rawalert`` payload as an :class:`AlertRecord`, or why not."""
    return run_handler(alert_from_object, payload, ctx)
