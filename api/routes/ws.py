"""WebSocket routes: the per-series sockets, the multiplexed ``/ws/live`` and
ARCHITECTURE.md's ``/ws/raw-ticker``.

Each message is a :class:`~api.live.LiveMessage` JSON text frame, except on
``/ws/raw-ticker``: every pair's ticks, each the producer's message itself. ``/ws/live``
takes JSON commands::

    {"action": "subscribe", "channels": ["ticker:XBT/USD", "sentiment:bitcoin", "alert"]}
    {"action": "unsubscribe", "channels": ["alert"]}

and answers each with ``{"type": "subscribed", "channels": [...]}`` (the canonical
names now followed) or ``{"type": "error", "detail": "..."}``; a bad command never
closes the socket. Channel names: ``ticker`` or ``ticker:PAIR``, ``trade:PAIR``, ``alert`` or
``alert:PAIR``, ``article`` or ``article:SYMBOL``, ``sentiment:SYMBOL``,
``prediction:SYMBOL``. An unknown symbol on a dedicated socket closes it with code
4404 and the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final, Literal

import msgspec
from litestar import WebSocket, websocket
from litestar.channels import ChannelsPlugin
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.handlers import WebsocketRouteHandler

from api.context import ApiContext
from api.errors import ApiError
from api.live import (
    MULTIPLEX_PATH,
    RAW_TICKER_PATH,
    SOCKETS,
    ClientFeed,
    LiveType,
    SocketSubject,
    Subscriptions,
    channel_of,
    parse_channel,
    unwrap,
)
from api.telemetry import route_of

log = logging.getLogger("api.ws")

CLOSE_UNKNOWN_SYMBOL: Final = 4404
MAX_COMMAND_BYTES: Final = 8192


class Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    action: Literal["subscribe", "unsubscribe"]
    channels: list[str]


class CommandReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    type: Literal["subscribed", "error"]
    channels: list[str] | None = None
    detail: str | None = None


_COMMAND = msgspec.json.Decoder(Command)
_REPLY = msgspec.json.Encoder()


async def _serve(
    socket: WebSocket[Any, Any, Any],
    ctx: ApiContext,
    channels: ChannelsPlugin,
    initial: list[str],
    *,
    multiplex: bool,
    raw: bool = False,
) -> None:
    """Relay the subscribed channels to ``socket`` until either side stops.

    ``raw``: send each message's ``data`` (the producer's message) without its envelope.
    """
    route = route_of(socket.scope)
    t = ctx.telemetry
    feed = ClientFeed(ctx.settings.ws_backlog, t.ws_dropped.labels(route).inc)
    subs = Subscriptions(channels, feed)
    try:
        # Subscribe before accepting: once a client sees the socket open, nothing
        # published from then on can be missed.
        await subs.add(initial)
        await socket.accept()
    except BaseException:
        await subs.close()
        raise
    t.ws_clients.labels(route).inc()
    ctx.live.clients += 1
    sent = t.ws_sent.labels(route)

    async def send_loop() -> None:
        while True:
            data = await feed.get()
            await socket.send_data(unwrap(data) if raw else data, mode="text")
            sent.inc()

    async def receive_loop() -> None:
        while True:
            raw = await socket.receive_data(mode="text")
            if multiplex:
                reply = await _command(raw, subs, ctx)
                # Replies share the feed's order with data, without competing sends.
                feed.push(_REPLY.encode(reply))

    tasks = [asyncio.create_task(send_loop()), asyncio.create_task(receive_loop())]
    try:
        # Either loop ends the session: the client left (receive) or cannot be
        # written to any more (send).
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, WebSocketDisconnect):
                pass  # cancelled above, or the client left: the usual ends
            except Exception:
                log.warning("%s: the socket ended on an error", route, exc_info=True)
        await subs.close()
        t.ws_clients.labels(route).dec()
        ctx.live.clients -= 1


async def _command(raw: str, subs: Subscriptions, ctx: ApiContext) -> CommandReply:
    if len(raw) > MAX_COMMAND_BYTES:
        return CommandReply(type="error", detail=f"command longer than {MAX_COMMAND_BYTES} bytes")
    try:
        command = _COMMAND.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return CommandReply(
            type="error",
            detail=f'expected {{"action": "subscribe"|"unsubscribe", "channels": [...]}}: {exc}',
        )
    try:
        names = [parse_channel(name, ctx.symbols) for name in command.channels]
        if command.action == "subscribe":
            await subs.add(names)
        else:
            await subs.remove(names)
    except ApiError as exc:
        return CommandReply(type="error", detail=exc.detail)
    except ValueError as exc:
        return CommandReply(type="error", detail=str(exc))
    return CommandReply(type="subscribed", channels=subs.names)


async def _refuse(socket: WebSocket[Any, Any, Any], exc: ApiError) -> None:
    await socket.accept()
    # A close reason is limited to 123 bytes.
    await socket.close(
        code=CLOSE_UNKNOWN_SYMBOL, reason=exc.detail.encode()[:120].decode(errors="ignore")
    )


Designate = Callable[[ApiContext, dict[str, Any]], str | None]
"""The pair or coin a socket's path parameters name (None: all); raises ApiError."""

_SUBJECTS: Final[dict[SocketSubject, tuple[str, Designate]]] = {
    "pair": (
        "{base:str}/{quote:str}/",
        lambda ctx, p: ctx.symbols.path_pair(p["base"], p["quote"]),
    ),
    "coin": ("{symbol:str}/", lambda ctx, p: ctx.symbols.coin(p["symbol"])),
    "all": ("", lambda _ctx, _p: None),
}


def series_socket(kind: LiveType, subject: SocketSubject) -> WebsocketRouteHandler:
    """The dedicated socket of one series (``/ws/ticker/BASE/QUOTE/``...).

    The path designates one channel; an unknown pair or coin closes the socket with
    :data:`CLOSE_UNKNOWN_SYMBOL` and the reason.
    """
    path, designate = _SUBJECTS[subject]

    async def handler(
        socket: WebSocket[Any, Any, Any],
        ctx: NamedDependency[ApiContext],
        channels: NamedDependency[ChannelsPlugin],
    ) -> None:
        try:
            key = designate(ctx, socket.path_params)
        except ApiError as exc:
            await _refuse(socket, exc)
            return
        await _serve(socket, ctx, channels, [channel_of(kind, key)], multiplex=False)

    handler.__name__ = handler.__qualname__ = f"ws_{kind}"
    return websocket(f"/ws/{kind}/{path}")(handler)


@websocket(MULTIPLEX_PATH)
async def ws_live(
    socket: WebSocket[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    channels: NamedDependency[ChannelsPlugin],
) -> None:
    await _serve(socket, ctx, channels, [], multiplex=True)


@websocket(RAW_TICKER_PATH)
async def ws_raw_ticker(
    socket: WebSocket[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    channels: NamedDependency[ChannelsPlugin],
) -> None:
    """Every pair's ticks, each the producer's ``rawticker`` message as is."""
    await _serve(socket, ctx, channels, [channel_of("ticker", None)], multiplex=False, raw=True)


WS_HANDLERS = [
    *(series_socket(kind, subject) for kind, subject in SOCKETS.items()),
    ws_live,
    ws_raw_ticker,
]
