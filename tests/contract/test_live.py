"""The seeds' live socket: ARCHITECTURE.md's ``ws://...:8000/ws/raw-ticker``.

The API's relay reads the ticker topic of the real broker; the seed's own rawticker
message, produced verbatim, reaches a ``/ws/raw-ticker`` client byte for byte (the
prototype's external socket relayed raw Kafka messages, without an envelope).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from confluent_kafka import Producer
from litestar.testing import TestClient

from api.settings import LiveTopics
from tests.api.conftest import AppFactory, test_api_settings
from tests.api.test_live import produce_until, wait_live
from tests.contract.conftest import FOUND, only, params
from tests.contract.seeds import Example

pytestmark = pytest.mark.integration


SOCKETS = params("websocket", where=lambda e: not e.placeholder)
"""The concrete socket URLs; a ``/ws/...`` placeholder names no route to replay
(test_seeds checks that it stands for this one)."""


@pytest.mark.parametrize("example", SOCKETS)
def test_raw_ticker_socket_relays_the_seed_ticker_verbatim(
    example: Example | None,
    app_factory: AppFactory,
    new_topic: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    path = urlsplit(only(example).text).path
    [ticker] = [
        e
        for e in FOUND
        if e.kind == "message" and e.topic == "rawticker" and e.document == only(example).document
    ]
    payload = ticker.text.encode()  # as the document shows it, whitespace included
    topic = new_topic("rawticker", 1)
    api = test_api_settings(
        live_enabled=True,
        live_topics=LiveTopics(
            ticker=topic, trade=None, article=None, alert=None, sentiment=None, prediction=None
        ),
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    with TestClient(app_factory(api)) as client, client.websocket_connect(path) as ws:
        wait_live(client, 1)

        def received(timeout: float) -> dict[str, Any] | None:
            try:
                return {"text": ws.receive_text(timeout=timeout)}
            except Exception:
                return None

        got = produce_until(producer, topic, lambda _seq: (payload, []), received)
    assert got["text"].encode() == payload
