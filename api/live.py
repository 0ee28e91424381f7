"""Live updates: a Kafka consumer thread feeding Litestar's channels, relayed to sockets.

Kafka -> channels. :class:`LiveRelay` runs one ``confluent_kafka`` consumer in a
thread started by the app's lifespan. Each message is routed by its type (the
topic) and canonical symbol to channel names (``ticker:BTC/USD``, ``alert``,
``sentiment:BTC``...) and published through the channels plugin, wrapped in a
:class:`LiveMessage` whose ``data`` is the producer's JSON, byte for byte. The
producer's W3C trace context (Kafka headers) becomes the parent of a ``process
<topic>`` span, whose own ``traceparent`` travels in the message so a client can
continue the trace. The thread hands each batch to the event loop and waits for it
to be taken, so a burst cannot pile up unbounded memory.

With the memory backend every API process needs every message, so each process
has its own consumer group; with a shared backend (postgres) the processes share
one group and the backend fans messages out to all of them.

Channels -> sockets. :class:`ClientFeed` is a client's bounded backlog: the
channel subscribers only append to it (never wait), and when it is full the
oldest message is dropped and counted. One slow socket therefore only ever loses
its own oldest messages; it never delays the relay or another client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec
from confluent_kafka import Consumer, KafkaError, Message
from litestar.channels import ChannelsPlugin, Subscriber
from opentelemetry.trace import SpanKind

from api.settings import ApiSettings
from api.symbols import Symbols
from api.telemetry import Telemetry, context_from_kafka_headers, traceparent_of

log = logging.getLogger("api.live")

LiveType = Literal["ticker", "trade", "article", "alert", "sentiment", "prediction"]
LIVE_TYPES: Final[tuple[LiveType, ...]] = (
    "ticker",
    "trade",
    "article",
    "alert",
    "sentiment",
    "prediction",
)
PAIR_TYPES: Final = frozenset({"ticker", "trade", "alert"})
SYMBOL_TYPES: Final = frozenset({"article", "sentiment", "prediction"})
# Types with an "all symbols" channel: alerts (/ws/alert/), articles, and ticks (every
# pair's, ARCHITECTURE.md's /ws/raw-ticker).
GLOBAL_TYPES: Final = frozenset({"alert", "article", "ticker"})
SocketSubject = Literal["pair", "coin", "all"]
SOCKETS: Final[dict[LiveType, SocketSubject]] = {
    "ticker": "pair",
    "trade": "pair",
    "sentiment": "coin",
    "prediction": "coin",
    "alert": "all",
}
"""The dedicated sockets (ours: the seeds name only ``/ws/raw-ticker``): one series of
one pair (``/ws/ticker/BTC/USD/``) or coin (``/ws/sentiment/BTC/``), or of all of them
(``/ws/alert/``). Other series (articles) are followed on the multiplexed ``/ws/live``."""
MULTIPLEX_PATH: Final = "/ws/live"
RAW_TICKER_PATH: Final = "/ws/raw-ticker"
"""ARCHITECTURE.md's external socket: every pair's ticks, each the producer's message
itself (the seed's ``rawticker`` shape), without the :class:`LiveMessage` envelope."""
BATCH_SIZE: Final = 500
POLL_TIMEOUT_S: Final = 0.2
HANDOFF_TIMEOUT_S: Final = 30.0


class LiveMessage(msgspec.Struct, frozen=True, kw_only=True):
    """What a WebSocket client receives for each relayed Kafka message."""

    type: str
    key: str | None
    """Canonical pair (``BTC/USD``) or symbol (``BTC``) the message is about."""
    traceparent: str | None
    data: msgspec.Raw
    """The producer's message, unchanged."""


class _Routing(msgspec.Struct, frozen=True):
    """The only fields the relay reads from a message (the rest is passed through)."""

    pair: str | None = None
    crypto_symbol: str | None = None
    symbol: str | None = None
    cryptocurrencies_mentioned: list[str] | None = None


class _Envelope(msgspec.Struct, frozen=True):
    data: msgspec.Raw


_ROUTING = msgspec.json.Decoder(_Routing)


class _Issued(msgspec.Struct, frozen=True):
    """When a forecast was issued (the prediction topic's ``timestamp``)."""

    timestamp: datetime


_ISSUED = msgspec.json.Decoder(_Issued)

_ENVELOPE = msgspec.json.Decoder(_Envelope)


def unwrap(envelope: bytes) -> bytes:
    """The producer's message inside a :class:`LiveMessage` (``data``), byte for byte."""
    return bytes(_ENVELOPE.decode(envelope).data)


_ENCODER = msgspec.json.Encoder()


def channel_names(kind: str, routing: _Routing, symbols: Symbols) -> tuple[str | None, list[str]]:
    """(canonical key, channels) of one message; no channels if it cannot be routed."""
    table = symbols.table
    if kind in PAIR_TYPES:
        pair = table.pair(routing.pair) if routing.pair else None
        if pair is None or pair.split("/", 1)[0] not in symbols.coin_symbols:
            return None, []
        names = [f"{kind}:{pair}"]
        if kind in GLOBAL_TYPES:
            names.append(kind)
        return pair, names
    if kind == "article":
        mentioned = {table.coin(m) for m in routing.cryptocurrencies_mentioned or ()}
        coins = sorted(c for c in mentioned if c is not None)
        return None, ["article", *(f"article:{c}" for c in coins)]
    coin = table.coin(routing.crypto_symbol or routing.symbol or "")
    if coin is None:
        return None, []
    return coin, [f"{kind}:{coin}"]


def channel_of(kind: LiveType, key: str | None) -> str:
    """The channel of one series: ``ticker:BTC/USD``, or ``alert`` for all of them."""
    return kind if key is None else f"{kind}:{key}"


def socket_path(kind: LiveType, key: str | None) -> str:
    """The dedicated socket of a series (see :data:`SOCKETS`), else the multiplexed one."""
    subject = SOCKETS.get(kind)
    if subject is None:
        return MULTIPLEX_PATH
    return f"/ws/{kind}/" if subject == "all" or key is None else f"/ws/{kind}/{key}/"


def parse_channel(raw: object, symbols: Symbols) -> str:
    """A client's channel name (``ticker:XBT/USD``) in canonical form; ValueError if bad."""
    if not isinstance(raw, str) or not raw or len(raw) > 64:
        raise ValueError(f"channel {str(raw)[:64]!r} must be a string such as 'ticker:BTC/USD'")
    kind, _, target = raw.partition(":")
    kind = kind.strip().lower()
    if kind not in LIVE_TYPES:
        raise ValueError(f"unknown channel type {kind!r}; accepted: {', '.join(LIVE_TYPES)}")
    if not target:
        if kind in GLOBAL_TYPES:
            return kind
        needs = "a pair (ticker:BTC/USD)" if kind in PAIR_TYPES else "a symbol (sentiment:BTC)"
        raise ValueError(f"channel type {kind!r} needs {needs}")
    if kind in PAIR_TYPES:
        return f"{kind}:{symbols.pair(target)}"
    return f"{kind}:{symbols.coin(target)}"


class LiveRelay:
    """Kafka consumer thread publishing into the channels plugin."""

    def __init__(
        self,
        *,
        bootstrap: str | None,
        settings: ApiSettings,
        symbols: Symbols,
        telemetry: Telemetry,
        channels: ChannelsPlugin,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._bootstrap = bootstrap
        self._clock = clock
        self._settings = settings
        self._symbols = symbols
        self._telemetry = telemetry
        self._channels = channels
        self._kinds = settings.live_topics.by_topic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.status: Literal["running", "starting", "disabled", "failed"] = "disabled"
        self.assigned_partitions = 0
        self.clients = 0

    def _config(self) -> dict[str, Any]:
        shared = self._settings.channels_backend != "memory"
        group = "cryptoviz-api-live" if shared else f"cryptoviz-api-live-{uuid.uuid4().hex[:12]}"
        return {
            "bootstrap.servers": self._bootstrap,
            "group.id": group,
            # Live means from now on: history is what the REST endpoints are for.
            "auto.offset.reset": "latest",
            "enable.auto.commit": shared,
            "client.id": "cryptoviz-api",
            "topic.metadata.refresh.interval.ms": 10000,
            "logger": logging.getLogger("api.kafka"),
        }

    async def start(self) -> None:
        if not self._settings.live_enabled or not self._bootstrap or not self._kinds:
            self.status = "disabled"
            return
        self._loop = asyncio.get_running_loop()
        self.status = "starting"
        self._thread = threading.Thread(target=self._run, name="api-live-relay", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join, 15.0)
        self._thread = None

    def _on_assign(self, _: Consumer, partitions: list[Any]) -> None:
        self.assigned_partitions += len(partitions)
        self.status = "running"

    def _on_revoke(self, _: Consumer, partitions: list[Any]) -> None:
        self.assigned_partitions = max(0, self.assigned_partitions - len(partitions))

    def _run(self) -> None:
        try:
            consumer = Consumer(self._config())
            consumer.subscribe(
                list(self._kinds), on_assign=self._on_assign, on_revoke=self._on_revoke
            )
        except Exception:
            log.exception("live relay: cannot create the Kafka consumer")
            self.status = "failed"
            return
        try:
            while not self._stop.is_set():
                messages = consumer.consume(num_messages=BATCH_SIZE, timeout=POLL_TIMEOUT_S)
                batch = [routed for m in messages if (routed := self._route(m)) is not None]
                if batch:
                    self._hand_off(batch)
        except Exception:
            log.exception("live relay stopped by an unexpected error")
            self.status = "failed"
        finally:
            try:
                consumer.close()
            except Exception:
                log.warning("live relay: closing the Kafka consumer failed", exc_info=True)

    def _hand_off(self, batch: list[tuple[bytes, list[str]]]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self._publish(batch), loop)
        try:
            future.result(timeout=HANDOFF_TIMEOUT_S)
        except Exception:
            if not self._stop.is_set():
                log.warning("live relay: a batch of %d messages was not published", len(batch))

    async def _publish(self, batch: list[tuple[bytes, list[str]]]) -> None:
        for data, names in batch:
            try:
                await self._channels.wait_published(data, names)
            except Exception:
                # One message the backend refuses (e.g. over PostgreSQL's 8000-byte
                # NOTIFY limit) must not cost the rest of the batch.
                self._telemetry.live_skipped.labels("publish").inc()
                log.warning("live relay: the channels backend refused a message", exc_info=True)
            # Let the fan-out and the sockets' senders run between messages: a batch
            # pushed in one go would reach each client's backlog as a single burst.
            await asyncio.sleep(0)

    def _route(self, message: Message) -> tuple[bytes, list[str]] | None:
        error = message.error()
        if error is not None:
            if error.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                log.warning("live relay: Kafka error %s", error)
            return None
        topic = message.topic() or ""
        kind = self._kinds.get(topic)
        value = message.value()
        if kind is None or not value:
            return None
        t = self._telemetry
        parent = context_from_kafka_headers(message.headers())
        with t.tracer.start_as_current_span(
            f"process {topic}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.name": "process",
                "messaging.operation.type": "process",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(message.partition()),
                "messaging.kafka.offset": message.offset() or 0,
                "cryptoviz.live.type": kind,
            },
        ) as span:
            try:
                routing = _ROUTING.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                t.live_skipped.labels(topic).inc()
                span.set_attribute("cryptoviz.live.skipped", "unparsable")
                return None
            if kind == "prediction" and not self._issued_by_now(value):
                # A forecast stamped after the clock (ticks from the future made its bar):
                # the API serves none, here as in its REST routes.
                t.live_skipped.labels(topic).inc()
                span.set_attribute("cryptoviz.live.skipped", "issued in the future")
                return None
            key, names = channel_names(kind, routing, self._symbols)
            if not names:
                t.live_skipped.labels(topic).inc()
                span.set_attribute("cryptoviz.live.skipped", "unknown symbol")
                return None
            span.set_attribute("cryptoviz.live.channels", names)
            envelope = LiveMessage(
                type=kind, key=key, traceparent=traceparent_of(span), data=msgspec.Raw(value)
            )
            t.live_relayed.labels(kind).inc()
            return _ENCODER.encode(envelope), names

    def _issued_by_now(self, value: bytes) -> bool:
        try:
            issued = _ISSUED.decode(value).timestamp
        except (msgspec.DecodeError, msgspec.ValidationError):
            return True  # not a forecast of this job's: relayed unchanged, as before
        return issued.tzinfo is None or issued <= self._clock()


class ClientFeed:
    """One client's bounded backlog: appending never waits; when full, the oldest goes."""

    def __init__(self, capacity: int, on_drop: Callable[[], None]) -> None:
        self._queue: deque[bytes] = deque(maxlen=capacity)
        self._ready = asyncio.Event()
        self._on_drop = on_drop

    def push(self, data: bytes) -> None:
        if len(self._queue) == self._queue.maxlen:
            self._on_drop()
        self._queue.append(data)
        self._ready.set()

    async def get(self) -> bytes:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def __len__(self) -> int:
        return len(self._queue)


class Subscriptions:
    """The channels one socket follows, each pumped into the socket's :class:`ClientFeed`."""

    def __init__(self, channels: ChannelsPlugin, feed: ClientFeed, limit: int = 50) -> None:
        self._plugin = channels
        self._feed = feed
        self._limit = limit
        self._subs: dict[str, tuple[Subscriber, asyncio.Task[None]]] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self._subs)

    async def add(self, names: Iterable[str]) -> None:
        for name in names:
            if name in self._subs:
                continue
            if len(self._subs) >= self._limit:
                raise ValueError(f"at most {self._limit} channels per connection")
            subscriber = await self._plugin.subscribe([name])
            task = asyncio.create_task(self._pump(subscriber))
            self._subs[name] = (subscriber, task)

    async def remove(self, names: Iterable[str]) -> None:
        for name in names:
            entry = self._subs.pop(name, None)
            if entry is not None:
                await self._drop(*entry)

    async def close(self) -> None:
        await self.remove(list(self._subs))

    async def _drop(self, subscriber: Subscriber, task: asyncio.Task[None]) -> None:
        # unsubscribe() ends the subscriber's event stream, which ends the pump.
        await self._plugin.unsubscribe(subscriber)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _pump(self, subscriber: Subscriber) -> None:
        async for event in subscriber.iter_events():
            self._feed.push(event)
