"""Bytes -> JSON value with hard limits, and the never-raise handler boundary."""

from __future__ import annotations

import decimal
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

import msgspec

from handlers._context import HandlerContext
from handlers._fields import Invalid, Obj
from handlers._records import Rejection

MAX_PAYLOAD_BYTES = 1 << 20
"""Payloads above 1 MiB are rejected unread."""
MAX_DEPTH = 32
"""Deepest JSON nesting accepted (the article message needs 3)."""

_DECODER = msgspec.json.Decoder(float_hook=Decimal)
_JSON_KIND = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}

T = TypeVar("T")


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


def decode_json(payload: object) -> object:
    """Decode UTF-8 JSON with exact decimals; raise :class:`Invalid` on any problem."""
    if type(payload) is not bytes:  # Kafka gives bytes: keep the isinstance checks off that path
        payload = _as_bytes(payload)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Invalid(f"payload too large: {len(payload)} bytes (limit {MAX_PAYLOAD_BYTES})")
    if not payload.strip():
        raise Invalid("empty payload")
    try:
        value = _DECODER.decode(payload)
    except RecursionError:
        raise Invalid(f"payload nested deeper than {MAX_DEPTH} levels") from None
    except decimal.InvalidOperation:
        # float_hook=Decimal on a number like 1E+1000000000000000000: beyond any exponent.
        raise Invalid("payload has a number beyond the decimal range") from None
    except (msgspec.DecodeError, ValueError) as exc:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise Invalid(f"payload is not valid UTF-8 (byte {bad.start})") from None
        raise Invalid(f"payload is not valid JSON: {exc}") from None
    # Walking the decoded value is costly and rarely needed. A flat object has no
    # bracket after its opening one (find() is a fast memchr); nesting deeper than
    # MAX_DEPTH needs more than MAX_DEPTH opening brackets (count() is cheap too).
    if (
        (payload.find(b"{", 1) >= 0 or payload.find(b"[") >= 0)
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
        return build(value, ctx)
    except Invalid as exc:
        return Rejection(reason=exc.reason, field=exc.field)
    except Exception as exc:  # handlers must never raise on input; tests assert this never fires
        return Rejection(reason=f"internal error: {type(exc).__name__}: {exc}")
