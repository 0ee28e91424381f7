"""Typed field readers over a decoded JSON object; problems raise :class:`Invalid`.

Every reader takes the object, the accepted key names (first present, non-null
one wins) and returns the converted value, or raises :class:`Invalid` with a
reason of the form ``field 'last': must be a finite positive number, got -3``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Context, Decimal
from typing import Literal, TypeVar

from handlers._context import HandlerContext
from handlers._numbers import to_decimal
from handlers._time import parse_time

Obj = Mapping[str, object]
NumberKind = Literal["price", "amount", "signed", "unit"]
L = TypeVar("L", bound=str)

MAX_PRICE = Decimal(10) ** 12
MAX_AMOUNT = Decimal(10) ** 15
MAX_SIGNED = Decimal(10) ** 12
MAX_SCALE = 18
MAX_SOURCE = 64
_SHOW_MAX = 60
_WIDE = Context(prec=80)
_SCALE_UNIT = Decimal(1).scaleb(-MAX_SCALE)

_KIND_TEXT: dict[NumberKind, str] = {
    "price": "a finite positive number",
    "amount": "a finite non-negative number",
    "signed": "a finite number",
    "unit": "a finite number between 0 and 1",
}


_LIMITS: dict[NumberKind, tuple[Decimal, str]] = {
    "price": (MAX_PRICE, "1e12"),
    "amount": (MAX_AMOUNT, "1e15"),
    "signed": (MAX_SIGNED, "1e12"),
    "unit": (Decimal(1), "1"),
}


class Invalid(Exception):
    """A field failed validation; turned into a ``Rejection`` at the handler boundary."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def _clip(text: str) -> str:
    return text if len(text) <= _SHOW_MAX else text[:_SHOW_MAX] + "..."


def show(value: object) -> str:
    """A short, safe rendering of an offending value for a rejection reason."""
    if value is None or isinstance(value, bool):
        rendered = {None: "null", True: "true", False: "false"}[value]
    elif isinstance(value, Mapping):
        rendered = "an object"
    elif isinstance(value, list | tuple):
        rendered = "an array"
    elif isinstance(value, str):
        rendered = repr(_clip(value))
    elif isinstance(value, int | float | Decimal):
        rendered = _clip(str(value))
    else:
        rendered = type(value).__name__
    return rendered


def fail(label: str, problem: str, value: object) -> Invalid:
    return Invalid(f"field '{label}': {problem}, got {show(value)}", label)


def lookup(obj: Obj, keys: tuple[str, ...]) -> tuple[str, object] | None:
    """The first of ``keys`` present in ``obj`` with a non-null value."""
    for key in keys:
        value = obj.get(key)
        if value is not None:
            return key, value
    return None


def missing(keys: tuple[str, ...], prefix: str = "") -> Invalid:
    names = " or ".join(f"'{prefix}{key}'" for key in keys)
    return Invalid(f"missing field {names}", prefix + keys[0])


def _found(obj: Obj, keys: tuple[str, ...], required: bool, prefix: str) -> tuple[str, object]:
    hit = lookup(obj, keys)
    if hit is None:
        if required:
            raise missing(keys, prefix)
        return "", None
    return prefix + hit[0], hit[1]


def _bounded_scale(value: Decimal) -> Decimal | None:
    """``value`` with at most MAX_SCALE decimals (trailing zeros dropped), or None."""
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if exponent >= -MAX_SCALE:
        return value
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if exponent + trailing < -MAX_SCALE and any(digits):
        return None
    return value.quantize(_SCALE_UNIT, context=_WIDE)


def check_number(label: str, raw: object, kind: NumberKind) -> Decimal:
    """Convert and validate one numeric value (see ``NumberKind``)."""
    value = to_decimal(raw)
    if value is None:
        raise fail(label, "must be a number or a numeric string", raw)
    if not value.is_finite():
        raise fail(label, f"must be {_KIND_TEXT[kind]}", raw)
    if (
        (kind == "price" and value <= 0)
        or (kind == "amount" and value < 0)
        or (kind == "unit" and not 0 <= value <= 1)
    ):
        raise fail(label, f"must be {_KIND_TEXT[kind]}", raw)
    limit, limit_text = _LIMITS[kind]
    if value.copy_abs() > limit:
        raise fail(label, f"must be at most {limit_text} in magnitude", raw)
    if kind == "unit":  # becomes a float: any scale is fine
        return value
    bounded = _bounded_scale(value)
    if bounded is None:
        raise fail(label, f"must have at most {MAX_SCALE} decimal places", raw)
    if bounded.is_zero() and bounded.is_signed():
        bounded = bounded.copy_abs()
    return bounded


def number(
    obj: Obj, *keys: str, kind: NumberKind, required: bool = False, prefix: str = ""
) -> Decimal | None:
    label, raw = _found(obj, keys, required, prefix)
    return None if raw is None else check_number(label, raw, kind)


def required_number(obj: Obj, *keys: str, kind: NumberKind, prefix: str = "") -> Decimal:
    value = number(obj, *keys, kind=kind, required=True, prefix=prefix)
    assert value is not None
    return value


def check_text(label: str, raw: object, *, max_len: int, allow_empty: bool = False) -> str:
    if not isinstance(raw, str):
        raise fail(label, "must be a string", raw)
    value = raw.strip()
    if not value and not allow_empty:
        raise fail(label, "must not be empty", raw)
    if len(value) > max_len:
        raise Invalid(
            f"field '{label}': must be at most {max_len} characters, got {len(value)}", label
        )
    if "\x00" in value:
        raise Invalid(f"field '{label}': must not contain NUL characters", label)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"field '{label}': must be valid Unicode text", label) from None
    return value


def text(
    obj: Obj,
    *keys: str,
    max_len: int,
    required: bool = False,
    allow_empty: bool = False,
    prefix: str = "",
) -> str | None:
    label, raw = _found(obj, keys, required, prefix)
    if raw is None:
        return None
    return check_text(label, raw, max_len=max_len, allow_empty=allow_empty)


def required_text(obj: Obj, *keys: str, max_len: int, prefix: str = "") -> str:
    value = text(obj, *keys, max_len=max_len, required=True, prefix=prefix)
    assert value is not None
    return value


def time(
    obj: Obj, *keys: str, ctx: HandlerContext, required: bool = False, prefix: str = ""
) -> datetime | None:
    label, raw = _found(obj, keys, required, prefix)
    if raw is None:
        return None
    try:
        return parse_time(raw, now=ctx.now, max_future=ctx.max_future)
    except ValueError as exc:
        raise fail(label, str(exc), raw) from None


def required_time(obj: Obj, *keys: str, ctx: HandlerContext, prefix: str = "") -> datetime:
    value = time(obj, *keys, ctx=ctx, required=True, prefix=prefix)
    assert value is not None
    return value


def pair(obj: Obj, ctx: HandlerContext) -> str:
    """The canonical trading pair from ``pair`` (or ``symbol``)."""
    label, raw = _found(obj, ("pair", "symbol"), True, "")
    if not isinstance(raw, str):
        raise fail(label, "must be a string", raw)
    canonical = ctx.coins.pair(raw)
    if canonical is None:
        raise fail(label, "must be a trading pair like 'BTC/USD'", raw)
    return canonical


def source(obj: Obj, default: str) -> str:
    """The optional ``source`` label (bounded), else ``default``."""
    return text(obj, "source", max_len=MAX_SOURCE) or default


def integer(
    obj: Obj, *keys: str, minimum: int, maximum: int, required: bool = False, prefix: str = ""
) -> int | None:
    label, raw = _found(obj, keys, required, prefix)
    if raw is None:
        return None
    value = to_decimal(raw)
    if value is None or not value.is_finite() or value != value.to_integral_value():
        raise fail(label, "must be an integer", raw)
    if not minimum <= value <= maximum:
        raise fail(label, f"must be between {minimum} and {maximum}", raw)
    return int(value)


def choice(obj: Obj, key: str, options: Mapping[str, L], *, prefix: str = "") -> L | None:
    """``obj[key]`` mapped case-insensitively through ``options`` (``None`` if absent)."""
    hit = lookup(obj, (key,))
    if hit is None:
        return None
    raw = hit[1]
    value = options.get(raw.strip().lower()) if isinstance(raw, str) else None
    if value is None:
        allowed = ", ".join(f"'{option}'" for option in options)
        raise fail(prefix + key, f"must be one of {allowed}", raw)
    return value


def mapping(obj: Obj, key: str, *, prefix: str = "") -> Obj | None:
    raw = obj.get(key)
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise fail(prefix + key, "must be an object", raw)
    return raw
