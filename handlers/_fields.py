"""Typed field readers over a decoded JSON object; problems raise :class:`Invalid`.

Every reader takes the object, the accepted key names (first present, non-null
one wins) and returns the converted value, or raises :class:`Invalid` with a
reason of the form ``field 'last': must be a finite positive number, got -3``.
The ``check_*`` functions do the same for one value already looked up, and
:class:`Fields` declares the fields of one message type once and reads them, in one
pass over a message (the hot path) or one field after the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Context, Decimal
from operator import itemgetter
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import msgspec

from handlers._context import HandlerContext
from handlers._generated import generated, generated_body
from handlers._numbers import to_decimal
from handlers._time import parse_time_within

Obj = Mapping[str, object]
NumberKind = Literal["price", "amount", "signed", "unit"]
FieldCheck = Callable[[str, object, HandlerContext], object]
"""``check(label, raw, ctx)``: the value of a present field, checked; else raises Invalid."""
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
_RANGES: dict[NumberKind, tuple[Decimal, Decimal]] = {
    "price": (Decimal(0), MAX_PRICE),
    "amount": (Decimal(0), MAX_AMOUNT),
    "signed": (-MAX_SIGNED, MAX_SIGNED),
    "unit": (Decimal(0), Decimal(1)),
}
"""Per kind, the closed range in which a non-zero value needs no sign or magnitude check."""
_SHORT_PLAIN = MAX_SCALE + 2
"""A decimal whose ``str`` has no exponent and at most this many characters (a digit,
the point, then MAX_SCALE digits at most) has at most MAX_SCALE decimal places."""


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
    # Strings and numbers first: isinstance(value, Mapping) is slow (an ABC check).
    if isinstance(value, str):
        rendered = repr(_clip(value))
    elif value is None or isinstance(value, bool):
        rendered = {None: "null", True: "true", False: "false"}[value]
    elif isinstance(value, int | float | Decimal):
        rendered = _clip(str(value))
    elif isinstance(value, Mapping):
        rendered = "an object"
    elif isinstance(value, list | tuple):
        rendered = "an array"
    else:
        rendered = type(value).__name__
    return rendered


def fail(label: str, problem: str, value: object) -> Invalid:
    return Invalid(f"field '{label}': {problem}, got {show(value)}", label)


def missing(keys: tuple[str, ...], prefix: str = "") -> Invalid:
    names = " or ".join(f"'{prefix}{key}'" for key in keys)
    return Invalid(f"missing field {names}", prefix + keys[0])


def _found(obj: Obj, keys: tuple[str, ...], required: bool, prefix: str) -> tuple[str, object]:
    for key in keys:  # lookup(), inlined: one call less per field
        value = obj.get(key)
        if value is not None:
            return prefix + key, value
    if required:
        raise missing(keys, prefix)
    return "", None


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
    label, raw = _found(obj, keys, True, prefix)
    return check_number(label, raw, kind)


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
    label, raw = _found(obj, keys, True, prefix)
    return check_text(label, raw, max_len=max_len)


def time(
    obj: Obj, *keys: str, ctx: HandlerContext, required: bool = False, prefix: str = ""
) -> datetime | None:
    label, raw = _found(obj, keys, required, prefix)
    if raw is None:
        return None
    return check_time(label, raw, ctx)


def check_time(label: str, raw: object, ctx: HandlerContext) -> datetime:
    try:
        return parse_time_within(raw, ctx.time_window)
    except ValueError as exc:
        raise fail(label, str(exc), raw) from None


def check_pair(label: str, raw: object, ctx: HandlerContext) -> str:
    if not isinstance(raw, str):
        raise fail(label, "must be a string", raw)
    canonical = ctx.coins.pair(raw)
    if canonical is None:
        raise fail(label, "must be a trading pair like 'BTC/USD'", raw)
    return canonical


def source(obj: Obj, default: str) -> str:
    """The optional ``source`` label (bounded), else ``default``."""
    return text(obj, "source", max_len=MAX_SOURCE) or default


def check_source(label: str, raw: object, _ctx: HandlerContext) -> str:
    return check_text(label, raw, max_len=MAX_SOURCE)


def check_integer(label: str, raw: object, minimum: int, maximum: int) -> int:
    value = to_decimal(raw)
    if value is None or not value.is_finite() or value != value.to_integral_value():
        raise fail(label, "must be an integer", raw)
    if not minimum <= value <= maximum:
        raise fail(label, f"must be between {minimum} and {maximum}", raw)
    return int(value)


def integer_check(minimum: int, maximum: int) -> FieldCheck:
    """:func:`check_integer` as a :class:`Field` check."""

    def check(label: str, raw: object, _ctx: HandlerContext) -> int:
        if type(raw) is int and minimum <= raw <= maximum:  # a JSON integer: nothing to do
            return raw
        return check_integer(label, raw, minimum, maximum)

    return check


def choice(obj: Obj, key: str, options: Mapping[str, L], *, prefix: str = "") -> L | None:
    """``obj[key]`` mapped case-insensitively through ``options`` (``None`` if absent)."""
    raw = obj.get(key)
    return None if raw is None else check_choice(prefix + key, raw, options)


def check_choice(label: str, raw: object, options: Mapping[str, L]) -> L:
    value = options.get(raw.strip().lower()) if isinstance(raw, str) else None
    if value is None:
        allowed = ", ".join(f"'{option}'" for option in options)
        raise fail(label, f"must be one of {allowed}", raw)
    return value


def choice_check(options: Mapping[str, L]) -> FieldCheck:
    """:func:`check_choice` as a :class:`Field` check."""
    # A value spelt exactly like an option (the usual case) needs no strip().lower().
    exact = {key: value for key, value in options.items() if key == key.strip().lower()}

    def check(label: str, raw: object, _ctx: HandlerContext) -> L:
        value = exact.get(raw) if type(raw) is str else None
        return check_choice(label, raw, options) if value is None else value

    return check


def mapping(obj: Obj, key: str, *, prefix: str = "") -> Obj | None:
    raw = obj.get(key)
    if raw is None:
        return None
    if type(raw) is not dict and not isinstance(raw, Mapping):  # (an ABC check is slow)
        raise fail(prefix + key, "must be an object", raw)
    return raw


class Rule(NamedTuple):
    """A check across fields, carried by the field after which it runs.

    ``check(label, raw, *values)`` gets that field's key and raw value (for the
    reason) and the values of ``reads``, by name; it raises :class:`Invalid` when
    they disagree. It may only read fields declared up to its own.
    """

    reads: tuple[str, ...]
    check: Callable[..., None]


class Field(NamedTuple):
    """One field of a message type, as a :class:`Fields` table declares it."""

    name: str
    """The record attribute it fills (unless a :class:`Derived` of that name does), or a
    name that a derivation, rule or ``unless`` reads."""
    keys: tuple[str, ...]
    """Accepted keys; the first one present with a non-null value wins. The first one is
    the key of the wire form (see ``handlers._wire``)."""
    check: NumberKind | FieldCheck
    """A kind for :func:`check_number`, or any other check."""
    required: bool = False
    unless: str | None = None
    """With ``required``: required only while this field (declared before) has no value."""
    then: Rule | None = None


class Derived(NamedTuple):
    """A record attribute computed from the values read: ``compute(*values of reads)``."""

    name: str
    reads: tuple[str, ...]
    compute: Callable[..., object]


R = TypeVar("R", bound=msgspec.Struct)
Values = list[Any]
"""The values of one message, in the table's field order (None: absent or null)."""
_Spec = tuple[int, FieldCheck, Decimal | None, Decimal]
"""(index, check, low, high): numbers carry their kind's range, other fields None for low."""


class Fields(Generic[R]):
    """The fields of one message type, declared once, and the record they build.

    Two readings derive from the one declaration. :meth:`read_in_order` looks the
    fields up one by one in declaration order, which is the order in which problems
    are reported: the first one raises. :meth:`read` goes the other way round, in a
    single pass over the message's keys through a key -> field table, with the same
    checks: most fields are absent from most messages, and looking each one up (plus
    a call per field) used to cost more than checking the present ones. It reports no
    problems: when its pass is not conclusive it returns None, and :meth:`parse` runs
    the sequential reading, which stays the reference for valid messages and for what
    is reported on bad ones. A third, :attr:`read_flat`, is :meth:`read` over a message
    decoded straight into the Struct :attr:`flat` of the accepted keys, and
    :attr:`record_flat` the same reading ending in the record (the ticker handler's
    shortcut, ``handlers._payload.fields_handler``).

    Values reach the record by name: :meth:`build` passes each record attribute as a
    keyword, from the field or :class:`Derived` of that name (an absent value takes
    the record's default). The declaration is checked when the table is made: every
    record attribute must be given and every field used, so a field added to the
    record and not here (or here and not there) fails at import.
    """

    __slots__ = (
        "_build",
        "_by_key",
        "_conclusive",
        "_in_order",
        "_size",
        "fields",
        "flat",
        "index",
        "read_flat",
        "record",
        "record_flat",
    )

    def __init__(self, record: type[R], *fields: Field, derived: tuple[Derived, ...] = ()) -> None:
        self.record = record
        self.fields = fields
        self._size = len(fields)
        self.index: Mapping[str, int] = {field.name: i for i, field in enumerate(fields)}
        _check_declaration(record, fields, derived, self.index)
        self._by_key: dict[str, _Spec] = {}
        checks: list[FieldCheck] = []
        for index, field in enumerate(fields):
            spec: _Spec
            if isinstance(field.check, str):
                low, high = _RANGES[field.check]
                spec = (index, _number_field(field.check), low, high)
            else:
                spec = (index, field.check, None, Decimal(0))
            checks.append(spec[1])
            for key in field.keys:
                self._by_key[key] = spec
        at = self.index
        self._in_order = tuple(
            (
                i,
                field.keys,
                check,
                None if field.unless is None else at[field.unless],
                field.required,
                None if field.then is None else (field.then.check, _getter(field.then.reads, at)),
            )
            for i, (field, check) in enumerate(zip(fields, checks, strict=True))
        )
        self._conclusive: Callable[[Values], bool] = _conclusive(fields, at)
        self._build: Callable[[Values], R] = _builder(record, at, derived)
        keys = list(dict.fromkeys(key for field in fields for key in field.keys))
        self.flat: type[msgspec.Struct] = msgspec.defstruct(
            f"{record.__name__}Keys",
            [(f"k{n}", Any, None) for n in range(len(keys))],
            rename={f"k{n}": key for n, key in enumerate(keys)},
            forbid_unknown_fields=True,
        )
        """A Struct of every accepted key (any value, null when absent), nothing else:
        what :attr:`read_flat` reads (see ``handlers._payload.fields_handler``)."""
        read_flat, record_flat = _flat_readers(record, fields, checks, keys, at, derived)
        self.read_flat: Callable[[msgspec.Struct, HandlerContext], Values | None] = read_flat
        """``read_flat(flat, ctx)``: :meth:`read` of a message decoded as :attr:`flat`,
        or None where :meth:`read` gives None; it may also raise (any exception) where
        :meth:`read_in_order` reports a problem, and then says nothing about which.

        Generated (see :mod:`handlers._generated`): each field's keys are looked up in
        declaration order, the first non-null one wins (as in :meth:`read_in_order`),
        and the checks are those of :meth:`read`, spelt out per field. A decoded Struct
        has no keys to walk, look up and dispatch, which cost about as much as the
        checks. (An attribute, not a method: one call less.)"""
        self.record_flat: Callable[[msgspec.Struct, HandlerContext], R | None] = record_flat
        """``record_flat(flat, ctx)``: ``build(read_flat(flat, ctx))``, or None where
        :attr:`read_flat` gives None (and it raises where that raises), in one generated
        function: the values stay in local variables from the Struct to the record's
        keywords, with no list of values, no call to test them and none to build (about a
        fifth of the ticker handler's time on the producers' messages; docs/BENCHMARKS.md)."""

    def parse(self, obj: Obj, ctx: HandlerContext) -> R:
        """The record of one decoded message; raises :class:`Invalid` (the first problem)."""
        values = self.read(obj, ctx)
        if values is None:
            values = self.read_in_order(obj, ctx)
        return self._build(values)

    def build(self, values: Values) -> R:
        """The record of the values either reading returned."""
        return self._build(values)

    def read(self, obj: Obj, ctx: HandlerContext) -> Values | None:
        """Checked values in field order (None for absent or null fields), or None when a
        value is invalid, a required field is missing, two keys of a field are given or a
        rule across fields fails.
        """
        values: Values = [None] * self._size
        by_key = self._by_key
        window = ctx.time_window
        try:
            for key, raw in obj.items():
                spec = by_key.get(key)
                if spec is None or raw is None:
                    continue  # not a field of this message (ignored, as always), or null
                index, check, low, high = spec
                if values[index] is not None:
                    return None  # which key wins is the sequential reading's business
                # Numbers first (the most common field, so inlined): a finite non-zero
                # Decimal in range with a short plain str has at most MAX_SCALE decimals
                # and no negative zero, so check_number would return it unchanged
                # (skipping it saves as_tuple(), costlier than all of this).
                if (
                    low is not None
                    and type(raw) is Decimal
                    and raw.is_finite()
                    and raw
                    and low <= raw <= high
                ):
                    text = str(raw)
                    if len(text) <= _SHORT_PLAIN and "E" not in text:
                        values[index] = raw
                        continue
                elif check is check_time:
                    # check_time without its frame (a ticker has two or three times);
                    # the problem it would word is the sequential reading's business.
                    try:
                        values[index] = parse_time_within(raw, window)
                    except ValueError:
                        return None
                    continue
                values[index] = check(key, raw, ctx)
            if not self._conclusive(values):
                return None
        except Invalid:
            return None
        return values

    def read_in_order(self, obj: Obj, ctx: HandlerContext) -> Values:
        """The fields one after the other, in declaration order: the first problem raises."""
        values: Values = [None] * self._size
        for index, keys, check, unless, required, then in self._in_order:
            for key in keys:  # _found(), inlined: one call less per field
                raw = obj.get(key)
                if raw is not None:
                    break
            else:
                if required and (unless is None or values[unless] is None):
                    raise missing(keys)
                continue
            values[index] = check(key, raw, ctx)
            if then is not None:
                rule, reads = then
                rule(key, raw, *reads(values))
        return values


def _conclusive(fields: tuple[Field, ...], at: Mapping[str, int]) -> Callable[[Values], bool]:
    """``conclusive(values)``: whether the required fields are there; the rules across
    fields run too (an :class:`Invalid` they raise means no). Generated (see
    :mod:`handlers._generated`): it runs after every one-pass read."""
    test, namespace = _conclusive_test(fields, at, "values[{}]".format)
    return generated("conclusive", "values", test, namespace)


def _conclusive_test(
    fields: tuple[Field, ...], at: Mapping[str, int], value: Callable[[int], str]
) -> tuple[str, dict[str, object]]:
    """The expression of :func:`_conclusive`, the value of field ``i`` spelt ``value(i)``,
    and the names it needs."""
    namespace: dict[str, object] = {}
    tests: list[str] = []
    for field in fields:
        own = value(at[field.name])
        if field.required and field.unless is None:
            tests.append(f"{own} is not None")
        elif field.required and field.unless is not None:
            tests.append(f"({own} is not None or {value(at[field.unless])} is not None)")
    for index, field in enumerate(fields):
        if field.then is not None:
            namespace[f"rule_{index}"] = field.then.check
            own = value(at[field.name])
            reads = ", ".join(value(at[name]) for name in field.then.reads)
            call = f"rule_{index}({field.keys[0]!r}, {own}, {reads})"
            tests.append(f"({own} is None or {call} is None)")
    return " and ".join(tests) or "True", namespace


def _flat_readers(  # noqa: PLR0917 (one private call site, as the other builders)
    record: type[R],
    fields: tuple[Field, ...],
    checks: list[FieldCheck],
    keys: list[str],
    at: Mapping[str, int],
    derived: tuple[Derived, ...],
) -> tuple[
    Callable[[msgspec.Struct, HandlerContext], Values | None],
    Callable[[msgspec.Struct, HandlerContext], R | None],
]:
    """``read_flat(wire, ctx)`` and ``record_flat(wire, ctx)``: see
    :attr:`Fields.read_flat` and :attr:`Fields.record_flat`. Both run the same
    statements, which leave field ``i``'s value in the local ``v<i>``."""
    attribute = {key: f"k{n}" for n, key in enumerate(keys)}
    namespace: dict[str, object] = {
        "Decimal": Decimal,
        "parse_time_within": parse_time_within,
        "SHORT_PLAIN": _SHORT_PLAIN,
    }
    body = ["window = ctx.time_window"]
    for index, (field, check) in enumerate(zip(fields, checks, strict=True)):
        own = f"v{index}"
        for n, key in enumerate(field.keys):
            # (the key is only needed for a check's reason, and only varies with aliases)
            lookup = f"{own} = wire.{attribute[key]}"
            lookup += f"; key = {key!r}" if len(field.keys) > 1 else ""
            body += [lookup] if n == 0 else [f"if {own} is None:", f"    {lookup}"]
        key = "key" if len(field.keys) > 1 else repr(field.keys[0])
        namespace[f"check_{index}"] = check
        if isinstance(field.check, str):  # the in-range number shortcut of Fields.read
            low, high = _RANGES[field.check]
            namespace[f"low_{index}"], namespace[f"high_{index}"] = low, high
            # Unlike Fields.read: no is_finite(), as comparing a NaN raises (the caller
            # then goes the general way); and a zero low bound, excluded, stands for the
            # non-zero test (a zero takes the check: a price refuses it, -0 loses its sign).
            in_range = (
                f"low_{index} < {own} <= high_{index}"
                if low == 0
                else f"{own} and low_{index} <= {own} <= high_{index}"
            )
            body += [
                f"if {own} is not None and not (type({own}) is Decimal and {in_range}"
                f" and len(text := str({own})) <= SHORT_PLAIN and 'E' not in text):",
                f"    {own} = check_{index}({key}, {own}, ctx)",
            ]
        elif field.check is check_time:  # check_time less its frame, as in Fields.read
            body += [f"if {own} is not None:", f"    {own} = parse_time_within({own}, window)"]
        else:
            body += [f"if {own} is not None:", f"    {own} = check_{index}({key}, {own}, ctx)"]
    local = "v{}".format
    test, tested = _conclusive_test(fields, at, local)
    build, built = _build_call(record, at, derived, local)
    values = ", ".join(local(index) for index in range(len(fields)))
    read_flat = generated_body(
        "read_flat",
        "wire, ctx",
        [*body, f"return [{values}] if {test} else None"],
        {**namespace, **tested},
    )
    record_flat = generated_body(
        "record_flat",
        "wire, ctx",
        [*body, f"if not ({test}):", "    return None", f"return {build}"],
        {**namespace, **tested, **built},
    )
    return read_flat, record_flat


def _getter(names: tuple[str, ...], at: Mapping[str, int]) -> Callable[[Values], tuple[Any, ...]]:
    """The values of ``names``, as a tuple, from a values list."""
    indices = [at[name] for name in names]
    if len(indices) == 1:
        (only,) = indices
        return lambda values: (values[only],)
    return itemgetter(*indices)


def _check_declaration(
    record: type[msgspec.Struct],
    fields: tuple[Field, ...],
    derived: tuple[Derived, ...],
    at: Mapping[str, int],
) -> None:
    """Raise TypeError unless the table gives every record attribute and uses every field."""
    problems: list[str] = []
    attributes = set(record.__struct_fields__)
    if len(at) != len(fields):
        problems.append("a field name is declared twice")
    read = {name for d in derived for name in d.reads}
    read |= {name for f in fields if f.then is not None for name in f.then.reads}
    read |= {f.unless for f in fields if f.unless is not None}
    problems += [f"reads unknown field {name!r}" for name in sorted(read - set(at))]
    for index, field in enumerate(fields):  # the sequential reading has only earlier values
        earlier = {f.name for f in fields[: index + 1]}
        later = ({field.unless} if field.unless else set()) | set(
            field.then.reads if field.then else ()
        )
        problems += [
            f"{field.name!r} reads {name!r}, declared after it" for name in sorted(later - earlier)
        ]
    problems += [
        f"derives {d.name!r}, not an attribute" for d in derived if d.name not in attributes
    ]
    given = set(at) | {d.name for d in derived}
    problems += [f"gives no {name!r}" for name in sorted(attributes - given)]
    problems += [f"uses no field {name!r}" for name in sorted(set(at) - attributes - read)]
    if problems:
        raise TypeError(f"the {record.__name__} table {'; '.join(problems)}")


def _builder(
    record: type[R], at: Mapping[str, int], derived: tuple[Derived, ...]
) -> Callable[[Values], R]:
    """``build(values)``: ``record(name=values[i], ...)`` for every attribute, by name
    (generated: see :mod:`handlers._generated`)."""
    call, namespace = _build_call(record, at, derived, "values[{}]".format)
    return generated("build", "values", call, namespace)


def _build_call(
    record: type[R],
    at: Mapping[str, int],
    derived: tuple[Derived, ...],
    value: Callable[[int], str],
) -> tuple[str, dict[str, object]]:
    """The call of :func:`_builder`, the value of field ``i`` spelt ``value(i)``, and
    the names it needs."""
    namespace: dict[str, object] = {"record": record}
    computed = {d.name: d for d in derived}
    arguments: list[str] = []
    for info in msgspec.structs.fields(record):
        name = info.name
        if name in computed:
            namespace[f"derive_{name}"] = computed[name].compute
            inputs = ", ".join(value(at[read]) for read in computed[name].reads)
            arguments.append(f"{name}=derive_{name}({inputs})")
        elif info.required or info.default is None:
            arguments.append(f"{name}={value(at[name])}")
        else:  # an absent value takes the record's default
            own = value(at[name])
            if info.default_factory is msgspec.NODEFAULT:
                namespace[f"default_{name}"] = info.default
                default = f"default_{name}"
            else:
                namespace[f"factory_{name}"] = info.default_factory
                default = f"factory_{name}()"
            arguments.append(f"{name}={default} if {own} is None else {own}")
    return f"record({', '.join(arguments)})", namespace


def _number_field(kind: NumberKind) -> FieldCheck:
    def check(label: str, raw: object, _ctx: HandlerContext) -> Decimal:
        return check_number(label, raw, kind)

    return check
