"""Kraken WebSocket frames (v2 JSON objects, v1 arrays) -> wire messages + control events.

Pure: the receive time is ``ctx.now``. Every emitted message went through the
same validation as the topic handlers, so it parses back on the consumer side.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Context, Decimal
from typing import TypeAlias

import msgspec

from handlers import _fields as F
from handlers._context import HandlerContext
from handlers._payload import decode_json
from handlers._records import Rejection
from handlers._ticker import ticker_from_object
from handlers._time import epoch_seconds
from handlers._trade import trade_from_object
from handlers._wire import TickerMessage, TradeMessage, to_message

MAX_TEXT = 512
_CENT = Decimal("0.01")
_WIDE = Context(prec=80)


class KrakenStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Exchange system state (``online``, ``maintenance``, ``cancel_only``...)."""

    system: str
    version: str | None = None
    api_version: str | None = None
    connection_id: int | None = None


class KrakenHeartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """Keep-alive; carries nothing."""


class KrakenSubscription(msgspec.Struct, frozen=True, kw_only=True):
    """A (un)subscribe acknowledgement; ``success`` false means ``error`` says why."""

    method: str
    success: bool
    channel: str | None = None
    symbol: str | None = None
    error: str | None = None
    req_id: int | None = None
    channel_id: int | None = None


class KrakenPong(msgspec.Struct, frozen=True, kw_only=True):
    """Answer to our ping."""

    req_id: int | None = None


KrakenControl: TypeAlias = KrakenStatus | KrakenHeartbeat | KrakenSubscription | KrakenPong
KrakenMessage: TypeAlias = TickerMessage | TradeMessage


class KrakenEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one frame said: market messages, control events, and problems.

    ``ignored`` names a channel or event this parser deliberately skips (book,
    ohlc...). A frame that is not understood at all gives one rejection.
    """

    messages: tuple[KrakenMessage, ...] = ()
    control: tuple[KrakenControl, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    ignored: str | None = None


# -- shared helpers ----------------------------------------------------------------


def _opt_text(value: object) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) else None


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ticker(flat: F.Obj, ctx: HandlerContext) -> TickerMessage:
    return to_message(ticker_from_object(flat, ctx))


def _trade(flat: F.Obj, ctx: HandlerContext) -> TradeMessage:
    return to_message(trade_from_object(flat, ctx))


def _entries(
    label: str, items: list[object], build: Callable[[object], KrakenMessage]
) -> KrakenEvent:
    messages: list[KrakenMessage] = []
    rejections: list[Rejection] = []
    for index, item in enumerate(items):
        try:
            messages.append(build(item))
        except F.Invalid as exc:
            rejections.append(Rejection(reason=f"{label}[{index}]: {exc.reason}", field=exc.field))
    return KrakenEvent(messages=tuple(messages), rejections=tuple(rejections))


def _guarded(
    parse: Callable[[object, HandlerContext], KrakenEvent], frame: bytes, ctx: HandlerContext
) -> KrakenEvent:
    try:
        return parse(decode_json(frame), ctx)
    except F.Invalid as exc:
        return KrakenEvent(rejections=(Rejection(reason=exc.reason, field=exc.field),))
    except Exception as exc:  # parsers must never raise on input; tests assert this never fires
        reason = f"internal error: {type(exc).__name__}: {exc}"
        return KrakenEvent(rejections=(Rejection(reason=reason),))


# -- v2 ---------------------------------------------------------------------------


def _v2_ticker(ctx: HandlerContext) -> Callable[[object], KrakenMessage]:
    def build(entry: object) -> KrakenMessage:
        if not isinstance(entry, dict):
            raise F.Invalid("must be an object")
        flat = {**entry, "volume_24h": entry.get("volume"), "exchange_ts": entry.get("timestamp")}
        flat["timestamp"] = epoch_seconds(ctx.now)
        flat["receive_ts"] = epoch_seconds(ctx.now)
        return _ticker(flat, ctx)

    return build


def _v2_trade(ctx: HandlerContext) -> Callable[[object], KrakenMessage]:
    def build(entry: object) -> KrakenMessage:
        if not isinstance(entry, dict):
            raise F.Invalid("must be an object")
        return _trade({**entry, "receive_ts": epoch_seconds(ctx.now)}, ctx)

    return build


def _v2_status(entry: object) -> KrakenStatus:
    if not isinstance(entry, dict) or not isinstance(entry.get("system"), str):
        raise F.Invalid("status data entry must be an object with a 'system' string")
    return KrakenStatus(
        system=entry["system"][:MAX_TEXT],
        version=_opt_text(entry.get("version")),
        api_version=_opt_text(entry.get("api_version")),
        connection_id=_opt_int(entry.get("connection_id")),
    )


def _v2_method(frame: dict[str, object], method: str) -> KrakenEvent:
    if method == "pong":
        return KrakenEvent(control=(KrakenPong(req_id=_opt_int(frame.get("req_id"))),))
    if method not in ("subscribe", "unsubscribe"):
        return KrakenEvent(ignored=f"method {method[:MAX_TEXT]!r} not handled")
    if not isinstance(frame.get("success"), bool):
        return KrakenEvent(ignored=f"{method} request (no 'success'): not a server response")
    result = frame.get("result")
    result = result if isinstance(result, dict) else {}
    ack = KrakenSubscription(
        method=method,
        success=frame["success"] is True,
        channel=_opt_text(result.get("channel")),
        symbol=_opt_text(result.get("symbol")) or _opt_text(frame.get("symbol")),
        error=_opt_text(frame.get("error")),
        req_id=_opt_int(frame.get("req_id")),
    )
    return KrakenEvent(control=(ack,))


def _data(frame: dict[str, object], channel: str) -> list[object]:
    data = frame.get("data")
    if not isinstance(data, list):
        raise F.Invalid(f"{channel} frame: field 'data' must be an array", "data")
    return data


def _v2_status_frame(frame: dict[str, object]) -> KrakenEvent:
    try:
        statuses = tuple(_v2_status(entry) for entry in _data(frame, "status"))
    except F.Invalid as exc:
        return KrakenEvent(rejections=(Rejection(reason=exc.reason),))
    return KrakenEvent(control=statuses)


def _v2_channel(frame: dict[str, object], channel: str, ctx: HandlerContext) -> KrakenEvent:
    if channel == "heartbeat":
        return KrakenEvent(control=(KrakenHeartbeat(),))
    if channel == "status":
        return _v2_status_frame(frame)
    if channel == "ticker":
        return _entries("ticker data", _data(frame, "ticker"), _v2_ticker(ctx))
    if channel == "trade":
        return _entries("trade data", _data(frame, "trade"), _v2_trade(ctx))
    return KrakenEvent(ignored=f"channel {channel[:MAX_TEXT]!r} not handled")


def _parse_kraken_v2(frame: object, ctx: HandlerContext) -> KrakenEvent:
    if not isinstance(frame, dict):
        raise F.Invalid("a Kraken v2 frame must be a JSON object")
    method, channel = frame.get("method"), frame.get("channel")
    if isinstance(method, str):
        return _v2_method(frame, method)
    if isinstance(channel, str):
        return _v2_channel(frame, channel, ctx)
    error = _opt_text(frame.get("error"))
    if error is not None:
        return KrakenEvent(rejections=(Rejection(reason=f"kraken error: {error}"),))
    raise F.Invalid("a Kraken v2 frame needs a 'channel' or 'method'")


# -- v1 ---------------------------------------------------------------------------


def _at(payload: dict[str, object], key: str, index: int) -> object:
    values = payload.get(key)
    if isinstance(values, list) and len(values) > index:
        return values[index]
    return None


def _v1_ticker(payload: object, pair: object, ctx: HandlerContext) -> TickerMessage:
    if not isinstance(payload, dict):
        raise F.Invalid("ticker payload must be an object")
    now = epoch_seconds(ctx.now)
    flat: dict[str, object] = {
        "pair": pair,
        "last": _at(payload, "c", 0),
        "ask": _at(payload, "a", 0),
        "ask_qty": _at(payload, "a", 2),
        "bid": _at(payload, "b", 0),
        "bid_qty": _at(payload, "b", 2),
        "volume_24h": _at(payload, "v", 1),
        "vwap": _at(payload, "p", 1),
        "low": _at(payload, "l", 1),
        "high": _at(payload, "h", 1),
        "timestamp": now,
        "receive_ts": now,
    }
    opening = F.number({"open": _at(payload, "o", 1)}, "open", kind="amount")
    message = _ticker(flat, ctx)
    if opening:
        change = ((message.last - opening) / opening * 100).quantize(_CENT, context=_WIDE)
        if change.copy_abs() <= F.MAX_SIGNED:
            message = msgspec.structs.replace(message, change_24h_pct=change)
    return message


def _v1_trades(payload: object, pair: object, ctx: HandlerContext) -> KrakenEvent:
    if not isinstance(payload, list):
        raise F.Invalid("trade payload must be an array")
    now = epoch_seconds(ctx.now)

    def build(entry: object) -> KrakenMessage:
        if not isinstance(entry, list) or len(entry) < 4:
            raise F.Invalid("must be [price, volume, time, side, ordType, misc]")
        flat = {
            "pair": pair,
            "price": entry[0],
            "volume": entry[1],
            "timestamp": entry[2],
            "side": entry[3],
            "ord_type": entry[4] if len(entry) > 4 and entry[4] != "" else None,
            "receive_ts": now,
        }
        return _trade(flat, ctx)

    return _entries(f"trade {str(pair)[:40]}", payload, build)


def _v1_event(frame: dict[str, object]) -> KrakenEvent:
    event = frame.get("event")
    if event == "heartbeat":
        return KrakenEvent(control=(KrakenHeartbeat(),))
    if event == "pong":
        return KrakenEvent(control=(KrakenPong(req_id=_opt_int(frame.get("reqid"))),))
    if event == "systemStatus" and isinstance(frame.get("status"), str):
        status = KrakenStatus(
            system=str(frame["status"])[:MAX_TEXT],
            version=_opt_text(frame.get("version")),
            connection_id=_opt_int(frame.get("connectionID")),
        )
        return KrakenEvent(control=(status,))
    if event == "subscriptionStatus":
        state = frame.get("status")
        subscription = frame.get("subscription")
        name = subscription.get("name") if isinstance(subscription, dict) else None
        ack = KrakenSubscription(
            method="unsubscribe" if state == "unsubscribed" else "subscribe",
            success=state in ("subscribed", "unsubscribed"),
            channel=_opt_text(frame.get("channelName")) or _opt_text(name),
            symbol=_opt_text(frame.get("pair")),
            error=_opt_text(frame.get("errorMessage")),
            req_id=_opt_int(frame.get("reqid")),
            channel_id=_opt_int(frame.get("channelID")),
        )
        return KrakenEvent(control=(ack,))
    if event == "error":
        message = _opt_text(frame.get("errorMessage")) or "no errorMessage"
        return KrakenEvent(rejections=(Rejection(reason=f"kraken error: {message}"),))
    if isinstance(event, str):
        return KrakenEvent(ignored=f"event {event[:MAX_TEXT]!r} not handled")
    raise F.Invalid("a Kraken v1 object frame needs a string 'event'")


def _parse_kraken_v1(frame: object, ctx: HandlerContext) -> KrakenEvent:
    if isinstance(frame, dict):
        return _v1_event(frame)
    if not isinstance(frame, list) or len(frame) < 4 or not isinstance(frame[-2], str):
        raise F.Invalid("a Kraken v1 frame must be an object or [channelID, data..., name, pair]")
    channel, pair = frame[-2], frame[-1]
    if channel == "ticker":
        try:
            return KrakenEvent(messages=(_v1_ticker(frame[1], pair, ctx),))
        except F.Invalid as exc:
            reason = f"ticker {str(pair)[:40]}: {exc.reason}"
            return KrakenEvent(rejections=(Rejection(reason=reason, field=exc.field),))
    if channel == "trade":
        return _v1_trades(frame[1], pair, ctx)
    return KrakenEvent(ignored=f"channel {channel[:MAX_TEXT]!r} not handled")


def parse_kraken_v2(frame: bytes, ctx: HandlerContext) -> KrakenEvent:
    """One Kraken WebSocket v2 frame (a JSON object) as messages and control events.

    Ticker and trade data become :class:`TickerMessage`/:class:`TradeMessage`
    (receive time ``ctx.now``); status, heartbeat, (un)subscribe acks and pong
    become control events; other channels are ``ignored``. Never raises.
    """
    return _guarded(_parse_kraken_v2, frame, ctx)


def parse_kraken_v1(frame: bytes, ctx: HandlerContext) -> KrakenEvent:
    """One legacy Kraken WebSocket v1 frame (event object or channel array); never raises.

    v1 tickers carry no exchange time, so their ``timestamp`` is ``ctx.now``; their
    ``change_24h_pct`` is computed against the 24h open, rounded to 0.01.
    """
    return _guarded(_parse_kraken_v1, frame, ctx)
