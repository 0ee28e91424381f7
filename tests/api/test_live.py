"""Live relay: Kafka -> channels -> WebSocket clients, trace continued, slow clients isolated."""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from litestar import Litestar
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient, WebSocketTestSession
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from websockets.sync.client import connect

from api.settings import LiveTopics
from tests._wait import wait_for
from tests.api.conftest import NOW, AppFactory, serve, test_api_settings


def wait_live(client: TestClient[Litestar], partitions: int, timeout: float = 30.0) -> None:
    """Until the relay's consumer owns every partition of its topics."""
    wait_for(
        lambda: relay_ready(client.get("/api/v1/health/").json(), partitions),
        timeout,
        "the live relay",
        interval=0.2,
    )


def relay_ready(health: dict[str, Any], partitions: int) -> bool:
    """Whether a health body says the relay's consumer owns ``partitions`` partitions."""
    live = health["live"]
    return bool(live["status"] == "running" and live["assigned_partitions"] >= partitions)


def receiver(ws: WebSocketTestSession) -> Callable[[float], dict[str, Any] | None]:
    """``receive(timeout)``: the socket's next JSON message, or None if none came in time."""

    def receive(timeout: float) -> dict[str, Any] | None:
        try:
            return ws.receive_json(timeout=timeout)  # type: ignore[no-any-return]
        except Exception:
            return None

    return receive


def traceparent(trace_id: int, span_id: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def produce_until(
    producer: Producer,
    topic: str,
    make: Callable[[int], tuple[bytes, list[tuple[str, str | bytes | None]]]],
    received: Callable[[float], dict[str, Any] | None],
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Produce message 0, 1, 2... until one arrives: a consumer that has just been
    assigned its partitions may still be resolving the "latest" offset."""
    sequence = itertools.count()

    def attempt() -> dict[str, Any] | None:
        value, headers = make(next(sequence))
        producer.produce(topic, value, headers=headers)
        producer.flush(5)
        return received(1.0)

    return wait_for(attempt, timeout, "a message to reach the client", interval=0)


def test_kafka_message_reaches_subscribed_client_with_its_trace(
    app_factory: AppFactory, new_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    topic = new_topic("rawticker", 1)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    api = test_api_settings(
        live_enabled=True, live_topics=LiveTopics(**{**_none(), "ticker": topic})
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    with (
        TestClient(app_factory(api, tracer_provider=provider)) as client,
        client.websocket_connect("/ws/ticker/XBT/USD/") as ws,
    ):
        wait_live(client, 1)
        sent: dict[int, bytes] = {}

        def make(seq: int) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
            value = json.dumps(
                {"pair": "XBT/USD", "last": 42000.5 + seq, "timestamp": 1768478400.0, "seq": seq}
            ).encode()
            sent[seq] = value
            return value, [("traceparent", traceparent(0xABC000 + seq, 0x1234).encode())]

        received = receiver(ws)

        # A message for another pair is not delivered to this socket.
        producer.produce(topic, b'{"pair": "ETH/USD", "last": 1, "timestamp": 1}')
        message = produce_until(producer, topic, make, received)
    seq = message["data"]["seq"]
    assert message["type"] == "ticker"
    assert message["key"] == "BTC/USD"
    assert json.dumps(message["data"]).encode() == sent[seq]
    spans = [s for s in exporter.get_finished_spans() if s.name == f"process {topic}"]
    relay = next(s for s in spans if s.context.trace_id == 0xABC000 + seq)
    # The relay span continues the producer's trace, and the client gets its context.
    assert relay.kind == SpanKind.CONSUMER
    assert relay.parent is not None
    assert relay.parent.span_id == 0x1234
    assert relay.attributes is not None
    assert relay.attributes["messaging.system"] == "kafka"
    assert relay.attributes["messaging.destination.name"] == topic
    channels = tuple(relay.attributes["cryptoviz.live.channels"])  # type: ignore[arg-type]
    assert channels == ("ticker:BTC/USD", "ticker")
    assert message["traceparent"] == traceparent(0xABC000 + seq, relay.context.span_id)


def test_raw_ticker_socket_streams_every_pair_in_the_producer_shape(
    app_factory: AppFactory, new_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    topic = new_topic("rawticker", 1)
    api = test_api_settings(
        live_enabled=True, live_topics=LiveTopics(**{**_none(), "ticker": topic})
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    with (
        TestClient(app_factory(api)) as client,
        client.websocket_connect("/ws/raw-ticker") as ws,
    ):
        wait_live(client, 1)

        def make(seq: int) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
            return f'{{"pair": "BTC/USD", "last": 34000.12, "timestamp": {seq}}}'.encode(), []

        def received(timeout: float) -> dict[str, Any] | None:
            try:
                return ws.receive_json(timeout=timeout)  # type: ignore[no-any-return]
            except Exception:
                return None

        first = produce_until(producer, topic, make, received)
        # Then other pairs, in order, each exactly as produced: no envelope.
        others = [b'{"pair":"ETH/USD","last":2400.5,"timestamp":1764310292}',
                  b'{"pair": "XBT/USD", "last": 1, "timestamp": 1}',
                  b'{"pair": "NOPE/USD", "last": 1, "timestamp": 1}',
                  b'{"pair":"SOL/USD","last":150,"timestamp":1764310293}']  # fmt: skip
        for value in others:
            producer.produce(topic, value)
        producer.flush(5)
        got: list[bytes] = []
        while len(got) < 3:
            text = ws.receive_text(timeout=10)
            if '"BTC/USD"' not in text:  # (a late one of the first attempts)
                got.append(text.encode())
    assert set(first) == {"pair", "last", "timestamp"}
    # NOPE is no coin of the table: not relayed, as on every socket.
    assert got == [others[0], others[1], others[3]]


def _none() -> dict[str, str | None]:
    return dict.fromkeys(LiveTopics.__struct_fields__)


def test_multiplexed_socket_subscriptions(
    app_factory: AppFactory, new_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    alerts, sentiments = new_topic("rawalert", 1), new_topic("sentiment", 1)
    api = test_api_settings(
        live_enabled=True,
        live_topics=LiveTopics(**{**_none(), "alert": alerts, "sentiment": sentiments}),
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    with (
        TestClient(app_factory(api)) as client,
        client.websocket_connect("/ws/live") as ws,
    ):
        wait_live(client, 2)
        ws.send_text("not json")
        assert ws.receive_json(timeout=5)["type"] == "error"
        ws.send_json({"action": "subscribe", "channels": ["ticker:FOO/USD"]})
        error = ws.receive_json(timeout=5)
        assert error["type"] == "error"
        assert "unknown pair" in error["detail"]
        ws.send_json({"action": "subscribe", "channels": ["weather:BTC"]})
        assert "unknown channel type" in ws.receive_json(timeout=5)["detail"]
        ws.send_json(
            {"action": "subscribe", "channels": ["alert", "sentiment:bitcoin", "ticker:xbt/usd"]}
        )
        assert ws.receive_json(timeout=5) == {
            "type": "subscribed",
            "channels": ["alert", "sentiment:BTC", "ticker:BTC/USD"],
        }

        receive = receiver(ws)

        alert = produce_until(
            producer,
            alerts,
            lambda n: (
                json.dumps({"pair": "SOLUSD", "last": 100, "change": 2, "n": n}).encode(),
                [],
            ),
            receive,
        )
        assert (alert["type"], alert["key"]) == ("alert", "SOL/USD")
        sentiment = produce_until(
            producer,
            sentiments,
            lambda n: (
                json.dumps({"crypto_symbol": "bitcoin", "sentiment_score": 0.7}).encode(),
                [],
            ),
            lambda timeout: _skip_type(receive, "alert", timeout),
        )
        assert (sentiment["type"], sentiment["key"]) == ("sentiment", "BTC")
        assert sentiment["data"] == {"crypto_symbol": "bitcoin", "sentiment_score": 0.7}
        ws.send_json({"action": "unsubscribe", "channels": ["alert"]})
        reply = _skip_type(receive, "sentiment", 5.0)
        assert reply == {"type": "subscribed", "channels": ["sentiment:BTC", "ticker:BTC/USD"]}


def _skip_type(
    receive: Callable[[float], dict[str, Any] | None], skipped: str, timeout: float
) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = receive(max(0.05, deadline - time.monotonic()))
        if got is None or got.get("type") != skipped:
            return got
    return None


def test_shared_postgres_channels_backend(
    app_factory: AppFactory, new_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    # Several API processes share one backend (LISTEN/NOTIFY) and one consumer group.
    topic = new_topic("rawtrade", 1)
    api = test_api_settings(
        live_enabled=True,
        channels_backend="postgres",
        live_topics=LiveTopics(**{**_none(), "trade": topic}),
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    with (
        TestClient(app_factory(api)) as client,
        client.websocket_connect("/ws/trade/ETH/USD/") as ws,
    ):
        wait_live(client, 1)

        receive = receiver(ws)

        message = produce_until(
            producer,
            topic,
            lambda n: (json.dumps({"pair": "ETHUSD", "price": 2500, "n": n}).encode(), []),
            receive,
        )
    assert (message["type"], message["key"]) == ("trade", "ETH/USD")
    assert message["data"]["price"] == 2500


def test_a_forecast_issued_after_the_clock_is_not_relayed(
    app_factory: AppFactory, new_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    # The app's clock is NOW: a forecast stamped a minute later (its bar made of ticks
    # from the future) is skipped, as the REST routes skip it; one issued by NOW passes.
    topic = new_topic("prediction", 1)
    api = test_api_settings(
        live_enabled=True, live_topics=LiveTopics(**{**_none(), "prediction": topic})
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def forecast(at: datetime, n: int) -> bytes:
        return json.dumps(
            {"crypto_symbol": "BTC", "model_name": "random_walk", "horizon_s": 60, "n": n,
             "timestamp": at.isoformat().replace("+00:00", "Z")}
        ).encode()  # fmt: skip

    def make(n: int) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
        # Same partition, produced first: were it relayed, it would arrive first.
        producer.produce(topic, forecast(NOW + timedelta(minutes=1), n))
        return forecast(NOW, n), []

    with (
        TestClient(app_factory(api)) as client,
        client.websocket_connect("/ws/prediction/BTC/") as ws,
    ):
        wait_live(client, 1)

        receive = receiver(ws)

        message = produce_until(producer, topic, make, receive)
        later = receive(1.0)
    assert (message["type"], message["key"]) == ("prediction", "BTC")
    assert message["data"]["timestamp"] == "2026-01-15T12:00:00Z"
    assert later is None or later["data"]["timestamp"] == "2026-01-15T12:00:00Z"


def test_unknown_symbol_closes_the_socket(app_factory: AppFactory) -> None:
    with TestClient(app_factory()) as client:
        for path in ("/ws/ticker/FOO/USD/", "/ws/sentiment/nothing/"):
            with client.websocket_connect(path) as ws, pytest.raises(WebSocketDisconnect) as exc:
                ws.receive_text(timeout=5)
            assert exc.value.code == 4404


# -- a real server: a slow reader must not stall a fast one ---------------------------


class RawWebSocket:
    """A client that reads nothing until asked: its socket buffers fill up and the
    server's sends to it block, as with a real slow consumer."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(1)
        assert self.buffer.startswith(b"HTTP/1.1 101"), self.buffer
        self.buffer = b""

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def receive(self) -> bytes:
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        payload = self._read(length)
        if first & 0x0F == 0x1:  # text frame; pings and others are skipped
            return payload
        return self.receive()

    def close(self) -> None:
        self.sock.close()


def test_slow_client_loses_its_oldest_messages_and_never_stalls_a_fast_one(
    app_factory: AppFactory, new_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    topic = new_topic("rawticker", 1)
    total, backlog = 4000, 200
    api = test_api_settings(
        live_enabled=True,
        ws_backlog=backlog,
        live_topics=LiveTopics(**{**_none(), "ticker": topic}),
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    padding = "x" * 4000  # 16 MB in all: far more than the socket buffers hold
    with serve(app_factory(api)) as port:
        url = f"ws://127.0.0.1:{port}"
        slow = RawWebSocket(port, "/ws/ticker/BTC/USD/")
        fast_seqs: list[int] = []
        with connect(f"{url}/ws/ticker/BTC/USD/", max_size=None) as fast:
            health = f"http://127.0.0.1:{port}/api/v1/health/"
            wait_for(
                lambda: httpx.get(health).json()["live"]["assigned_partitions"] >= 1,
                30,
                "the relay's partition",
                interval=0.2,
            )
            # Warm-up message until the relay delivers (its offset may still be resolving).
            for _ in range(100):
                producer.produce(topic, json.dumps({"pair": "BTC/USD", "seq": -1}).encode())
                producer.flush(5)
                try:
                    json.loads(fast.recv(timeout=0.5))
                    break
                except TimeoutError:
                    continue
            started = time.monotonic()
            for seq in range(total):
                producer.produce(
                    topic, json.dumps({"pair": "BTC/USD", "seq": seq, "pad": padding}).encode()
                )
                if seq % 100 == 99:
                    producer.flush(5)
                    time.sleep(0.05)
            producer.flush(10)
            while not fast_seqs or fast_seqs[-1] != total - 1:
                message = json.loads(fast.recv(timeout=20))
                seq = message["data"]["seq"]
                if seq >= 0:
                    fast_seqs.append(seq)
            fast_elapsed = time.monotonic() - started
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        slow.sock.settimeout(20)
        slow_seqs: list[int] = []
        while not slow_seqs or slow_seqs[-1] != total - 1:
            seq = json.loads(slow.receive())["data"]["seq"]
            if seq >= 0:
                slow_seqs.append(seq)
        slow.close()
    # The fast client got everything, in order, while the slow one was stuck.
    assert fast_seqs == list(range(total))
    assert fast_elapsed < 30
    counter = 'cryptoviz_api_ws_dropped_messages_total{route="/ws/ticker/{base}/{quote}"}'
    dropped = [line for line in metrics.splitlines() if line.startswith(counter)]
    assert dropped
    assert float(dropped[0].split()[-1]) > 0
    # The slow client kept the newest messages: in order, ending with the last one, with
    # the oldest unsent ones dropped in between.
    assert slow_seqs == sorted(slow_seqs)
    assert slow_seqs[-1] == total - 1
    assert len(slow_seqs) < total
    assert slow_seqs[-backlog:] == list(range(total - backlog, total))
