"""The socket session loop: a session ended by an unexpected error says so in the log."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from opentelemetry.sdk.trace import TracerProvider

from api.live import SOCKETS, socket_path
from api.routes import ws
from api.telemetry import Telemetry


class _BrokenSocket:
    """Accepts, then fails on the first send; never receives anything."""

    def __init__(self) -> None:
        self.scope = {"path_template": "/ws/alert/"}

    async def accept(self) -> None:
        return None

    async def send_data(self, data: Any, mode: str) -> None:
        raise RuntimeError("the transport broke")

    async def receive_data(self, mode: str) -> str:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_a_session_ended_by_an_error_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    ctx: Any = SimpleNamespace(
        telemetry=Telemetry(TracerProvider()),
        settings=SimpleNamespace(ws_backlog=10),
        live=SimpleNamespace(clients=0),
    )

    async def scenario() -> None:
        channels = ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True)
        async with channels:
            session = asyncio.create_task(
                ws._serve(_BrokenSocket(), ctx, channels, ["alert"], multiplex=False)  # type: ignore[arg-type]
            )
            while ctx.live.clients == 0:
                await asyncio.sleep(0.01)
            await channels.wait_published(b"{}", ["alert"])
            await asyncio.wait_for(session, 10)

    with caplog.at_level(logging.WARNING, logger="api.ws"):
        asyncio.run(scenario())
    assert ctx.live.clients == 0
    [record] = [r for r in caplog.records if r.name == "api.ws"]
    assert record.getMessage() == "/ws/alert/: the socket ended on an error"
    assert record.exc_info is not None
    assert "the transport broke" in str(record.exc_info[1])


def test_one_socket_per_series_from_one_table() -> None:
    paths = sorted(path for h in ws.WS_HANDLERS for path in h.paths)
    assert paths == sorted([
        "/ws/alert", "/ws/live", "/ws/prediction/{symbol:str}", "/ws/raw-ticker",
        "/ws/sentiment/{symbol:str}",
        "/ws/ticker/{base:str}/{quote:str}", "/ws/trade/{base:str}/{quote:str}",
    ])  # fmt: skip
    assert set(SOCKETS) == {"ticker", "trade", "sentiment", "prediction", "alert"}
    assert socket_path("ticker", "BTC/USD") == "/ws/ticker/BTC/USD/"
    assert socket_path("alert", "BTC/USD") == "/ws/alert/"
    assert socket_path("article", "BTC") == "/ws/live"
