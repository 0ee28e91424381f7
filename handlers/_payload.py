"""Bytes -> JSON value with hard limits, and the never-raise handler boundary."""

from __future__ import annotations

import decimal
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

import msgspec

from handlers._context import HandlerContext
from handlers._fields import Fields, Invalid, Obj
from handlers._records import Rejection

MAX_PAYLOAD_BYTES = 1 << 20
"""Payloads above 1 MiB are rejected unread."""
MAX_DEPTH = 32
"""Deepest JSON nesting accepted (the article message needs 3)."""

_DECODER = msgspec.json.Decoder(float_hook=Decimal)
_JSON_KIND = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}

T = TypeVar("T")
R = TypeVar("R", bound=msgspec.Struct)
FieldsHandler = Callable[[bytes, HandlerContext, Callable[[Obj, HandlerContext], R]], R | Rejection]
"""``handler(payload, ctx, build)``: see :func:`fields_handler`."""


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return _JSON_KIND.get(type(value), "a number")


def _too_deep(value: dict[str, object] | list[object]) -> bool:
    stack: list[tuple[dict[str, object] | list[object], int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth >= MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _as_bytes(payload: object) -> bytes:
    if isinstance(payload, bytearray | memoryview):
        size = memoryview(payload).nbytes
        if size > MAX_PAYLOAD_BYTES:
            raise Invalid(f"payload too large: {size} bytes (limit {MAX_PAYLOAD_BYTES})")
        payload = bytes(payload)
    if not isinstance(payload, bytes):
        raise Invalid(f"payload must be bytes, got {type(payload).__name__}")
    return payload


def _flat(payload: bytes) -> bool:
    """No bracket after the opening one: at most a flat object (find() is a fast memchr)."""
    return payload.find(b"{", 1) < 0 and payload.find(b"[") < 0


def _undecodable(payload: bytes, exc: Exception) -> Invalid:
    """Why ``payload`` failed to decode (``exc``, the decoder's error)."""
    # An empty payload fails to decode too: testing for it only here spares every
    # valid message a copy of itself (strip()).
    if not payload.strip():
        return Invalid("empty payload")
    if isinstance(exc, RecursionError):
        return Invalid(f"payload nested deeper than {MAX_DEPTH} levels")
    if isinstance(exc, decimal.InvalidOperation):
        # float_hook=Decimal on a number like 1E+1000000000000000000: beyond any exponent.
        return Invalid("payload has a number beyond the decimal range")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Invalid(f"payload is not valid UTF-8 (byte {bad.start})")
    return Invalid(f"payload is not valid JSON: {exc}")


def decode_json(payload: object) -> object:
    """Decode UTF-8 JSON with exact decimals; raise :class:`Invalid` on any problem."""
    if type(payload) is not bytes:  # Kafka gives bytes: keep the isinstance checks off that path
        payload = _as_bytes(payload)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Invalid(f"payload too large: {len(payload)} bytes (limit {MAX_PAYLOAD_BYTES})")
    try:
        value = _DECODER.decode(payload)
    except (RecursionError, decimal.InvalidOperation, msgspec.DecodeError, ValueError) as exc:
        raise _undecodable(payload, exc) from None
    # Walking the decoded value is costly and rarely needed: never for a flat payload;
    # nesting deeper than MAX_DEPTH needs more than MAX_DEPTH opening brackets
    # (count() is cheap too).
    if (
        not _flat(payload)
        and payload.count(b"{") + payload.count(b"[") > MAX_DEPTH
        and isinstance(value, dict | list)
        and _too_deep(value)
    ):
        raise Invalid(f"payload nested deeper than {MAX_DEPTH} levels")
    return value


def run_handler(
    build: Callable[[Obj, HandlerContext], T], payload: bytes, ctx: HandlerContext
) -> T | Rejection:
    """Decode ``payload`` and ``build`` a record; every failure becomes a Rejection."""
    try:
        value = decode_json(payload)
        if not isinstance(value, dict):
            raise Invalid(f"payload must be a JSON object, got {_kind(value)}")
    except Invalid as exc:
        return Rejection(reason=exc.reason, field=exc.field)
    return _built(build, value, ctx)


def _built(
    build: Callable[[Obj, HandlerContext], T], obj: Obj, ctx: HandlerContext
) -> T | Rejection:
    """``build(obj, ctx)``, a failure as a Rejection."""
    try:
        return build(obj, ctx)
    except Invalid as exc:
        return Rejection(reason=exc.reason, field=exc.field)
    except Exception as exc:  # handlers must never raise on input; tests assert this never fires
        return Rejection(reason=f"internal error: {type(exc).__name__}: {exc}")


def fields_handler(fields: Fields[R]) -> FieldsHandler[R]:
    """``run_handler(build, ...)`` as a handler, with a shortcut for flat messages while
    ``build`` is ``fields.parse`` (the module's own reading, unless replaced).

    A flat JSON object (no bracket after its opening one: no depth to check) of known
    keys only is decoded straight into ``fields.flat`` and made a record by
    :attr:`~handlers._fields.Fields.record_flat`, skipping the dict of the general
    decoding and the per-key dispatch of :meth:`~handlers._fields.Fields.read`. Where
    that reading does not give values (a problem, a missing field), the sequential
    reading of the same keys decides and words it; where the flat decoding fails (an
    unknown key, bad JSON) the payload goes the general way. So the shortcut returns
    what the general way returns, only sooner (tests/handlers/test_parse_sameness.py).
    """
    decoder = msgspec.json.Decoder(fields.flat, float_hook=_DECODER.float_hook)
    keys = tuple(info.encode_name for info in msgspec.structs.fields(fields.flat))
    astuple = msgspec.structs.astuple
    record_flat, build_record, parse = fields.record_flat, fields.build, fields.parse

    def in_order(obj: Obj, ctx: HandlerContext) -> R:
        # What parse() ends with when read() gives None, as it would here; and where
        # read() gives values, read_in_order() gives the same (tests/handlers/test_fast_paths).
        return build_record(fields.read_in_order(obj, ctx))

    def handler(
        payload: bytes, ctx: HandlerContext, build: Callable[[Obj, HandlerContext], R]
    ) -> R | Rejection:
        if (
            build == parse  # (a bound method: equal, not the same object)
            and type(payload) is bytes
            and len(payload) <= MAX_PAYLOAD_BYTES
            and payload.find(b"{", 1) < 0  # _flat(payload), inlined: one call less
            and payload.find(b"[") < 0
        ):
            try:
                flat = decoder.decode(payload)
            except Exception:  # noqa: S110 (the general way below decides and words it)
                pass
            else:
                try:
                    record = record_flat(flat, ctx)
                    if record is not None:
                        return record
                except Exception:  # noqa: S110 (in_order decides and words it)
                    pass
                # The general decoding would give these keys and values (null where
                # absent): the sequential reading of them decides and words the problem.
                return _built(in_order, dict(zip(keys, astuple(flat), strict=True)), ctx)
        return run_handler(build, payload, ctx)

    return handler
