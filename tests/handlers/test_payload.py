"""Payload-level rejections shared by every handler: size, encoding, shape, nesting."""

from __future__ import annotations

import pytest

from handlers import HANDLERS, MAX_PAYLOAD_BYTES, Handler, Rejection, TickerRecord, parse_ticker
from tests.handlers._support import ctx, encode, ok, rejected, seed

TOO_DEEP = b'{"a":' * 33 + b"1" + b"}" * 33
DEEP_OK = b'{"pair":"BTC/USD","last":1,"timestamp":1764310291,"x":' + b"[" * 30 + b"]" * 30 + b"}"

CASES: list[tuple[object, str]] = [
    (b"", "empty payload"),
    (b"  \n", "empty payload"),
    (b"[1, 2]", "payload must be a JSON object, got an array"),
    (b'"text"', "payload must be a JSON object, got a string"),
    (b"3.5", "payload must be a JSON object, got a number"),
    (b"null", "payload must be a JSON object, got null"),
    (b"true", "payload must be a JSON object, got a boolean"),
    (b'{"a":"\xff"}', "payload is not valid UTF-8 (byte 6)"),
    (b"\xff\xfe{}", "payload is not valid UTF-8 (byte 0)"),
    # The decoder's own wording varies across msgspec versions: only the prefix is ours.
    (b"{", "payload is not valid JSON: *"),
    (b'{"a":1}{}', "payload is not valid JSON: *"),
    (b'{"a":NaN}', "payload is not valid JSON: *"),
    (b'{"a":Infinity}', "payload is not valid JSON: *"),
    (b'\xef\xbb\xbf{"a":1}', "payload is not valid JSON: *"),
    (b'{"last":1E+1000000000000000000}', "payload has a number beyond the decimal range"),
    (b"[" * 100_000, "payload nested deeper than 32 levels"),
    (TOO_DEEP, "payload nested deeper than 32 levels"),
    (
        b" " * (MAX_PAYLOAD_BYTES + 1),
        f"payload too large: {MAX_PAYLOAD_BYTES + 1} bytes (limit 1048576)",
    ),
    (
        bytearray(MAX_PAYLOAD_BYTES + 1),
        f"payload too large: {MAX_PAYLOAD_BYTES + 1} bytes (limit 1048576)",
    ),
    ('{"pair": "BTC/USD"}', "payload must be bytes, got str"),
    (None, "payload must be bytes, got NoneType"),
]


@pytest.mark.parametrize("handler", list(HANDLERS.values()), ids=list(HANDLERS))
@pytest.mark.parametrize(("payload", "reason"), CASES)
def test_payload_rejections(handler: Handler, payload: object, reason: str) -> None:
    rejection = rejected(handler(payload, ctx()))  # type: ignore[arg-type]
    assert rejection.field is None
    if reason.endswith("*"):
        assert rejection.reason.startswith(reason[:-1])
        assert len(rejection.reason) > len(reason)
    else:
        assert rejection == Rejection(reason=reason)


def test_bytearray_and_memoryview_are_accepted() -> None:
    payload = encode(seed("rawticker", "seed"))
    expected = parse_ticker(payload, ctx())
    assert parse_ticker(bytearray(payload), ctx()) == expected  # type: ignore[arg-type]
    assert parse_ticker(memoryview(payload), ctx()) == expected  # type: ignore[arg-type]


def test_nesting_up_to_the_limit_is_fine() -> None:
    ok(parse_ticker(DEEP_OK, ctx()), TickerRecord)


def test_just_under_the_size_limit_is_read() -> None:
    body = encode(seed("rawticker", "seed"))
    padded = body[:-1] + b',"pad":"' + b"x" * (MAX_PAYLOAD_BYTES - len(body) - 9) + b'"}'
    assert len(padded) == MAX_PAYLOAD_BYTES
    ok(parse_ticker(padded, ctx()), TickerRecord)


def test_unexpected_errors_become_rejections(monkeypatch: pytest.MonkeyPatch) -> None:
    import handlers._ticker as ticker_module

    def boom(*_: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(ticker_module, "ticker_from_object", boom)
    rejection = rejected(ticker_module.parse_ticker(encode(seed("rawticker", "seed")), ctx()))
    assert rejection.reason == "internal error: RuntimeError: bug"
