"""Kraken Spot WebSocket v2 market feed as a Bytewax source (ticker + trade).

Same shape as Bytewax's WebSocket order-book example: a ``FixedPartitionedSource``
whose partition owns the connection. Here a daemon thread (:class:`KrakenClient`)
owns the socket, because the protocol work (subscribe, ack checks, ping, watchdogs,
reconnects) must go on while Bytewax is busy elsewhere; ``next_batch`` only drains
what the thread parsed, sequences trades (:mod:`flows.producers.trades`) and returns
them. The partition's recovery state is the per-pair trade sequence, so a restart
neither re-sends nor silently skips trades.

Which pairs: the tracked coins' pairs (:mod:`infra.tracking`: the
``crypto_configuration`` table, followed live), unless ``CRYPTOVIZ_KRAKEN_PAIRS``
fixes them. When the tracked set changes, the connection sends ``unsubscribe`` for
the pairs that left it and ``subscribe`` for those that joined, on the live socket
(no reconnect); data of a pair no longer tracked is dropped from then on, and its
trade sequence is forgotten, so tracking it again starts afresh instead of
"filling" the time it was not tracked.

Protocol handling:

* one ``subscribe`` per channel for all pairs, ``snapshot`` explicit, ``req_id``
  tracked; every per-symbol ack is checked, rejections logged with Kraken's text;
* ``status`` (online / maintenance / cancel_only / post_only), ``heartbeat``,
  ``pong`` and ack frames are control events, never data;
* watchdogs: no frame at all for ``heartbeat_timeout_s`` -> reconnect; an acked
  symbol silent for ``data_timeout_s`` -> unsubscribe + subscribe it again, and if it
  stays silent -> reconnect; an unanswered application ``ping`` -> reconnect;
* reconnects wait a capped exponential backoff with jitter, stay inside Kraken's
  connection budget (150 per 10 minutes) and at least 5 s after maintenance.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import websocket
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.producers import _metrics as m
from flows.producers._util import Backoff
from flows.producers.settings import KrakenSettings
from flows.producers.trades import (
    FetchPage,
    GapFiller,
    PairSequence,
    TradeSequencer,
    make_rest_fetcher,
)
from handlers import (
    CoinTable,
    HandlerContext,
    KrakenEvent,
    KrakenHeartbeat,
    KrakenMessage,
    KrakenPong,
    KrakenStatus,
    KrakenSubscription,
    TradeMessage,
    parse_kraken_v2,
)
from infra.tracking import TrackedCoins

log = logging.getLogger(__name__)

MAX_BATCH = 5000
IDLE_WAKE = timedelta(milliseconds=10)

SourceState = dict[str, PairSequence]


class ConnectBudget:
    """At most ``limit`` connection attempts in any ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float) -> None:
        self._limit = limit
        self._window = window_s
        self._times: deque[float] = deque()

    def wait_time(self, now: float) -> float:
        while self._times and self._times[0] <= now - self._window:
            self._times.popleft()
        if len(self._times) < self._limit:
            return 0.0
        return self._times[0] + self._window - now

    def record(self, now: float) -> None:
        self._times.append(now)


def _channel(msg: KrakenMessage) -> str:
    return "trade" if isinstance(msg, TradeMessage) else "ticker"


class _Reconnect(Exception):
    """The session must end: ``str(exc)`` says why."""


class KrakenClient:
    """The connection thread: connects, subscribes, watches, reconnects; parsed data to ``out``."""

    def __init__(
        self,
        settings: KrakenSettings,
        pairs: tuple[str, ...],
        coins: CoinTable,
        out: queue.Queue[KrakenMessage],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._s = settings
        self._wanted = tuple(pairs)
        self._wanted_lock = threading.Lock()
        self._coins = coins
        self._out = out
        self._clock = clock
        self._backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s, rng)
        self._budget = ConnectBudget(settings.connect_budget, settings.connect_window_s)
        self._stop = threading.Event()
        self._req_ids = itertools.count(1)
        self._system: str | None = None
        self._thread = threading.Thread(target=self._run, name="kraken-ws", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def wanted(self) -> tuple[str, ...]:
        """The pairs to stream now (the session follows every change)."""
        with self._wanted_lock:
            return self._wanted

    def want(self, pairs: tuple[str, ...]) -> None:
        """Stream these pairs from now on: the live session (un)subscribes the difference."""
        with self._wanted_lock:
            self._wanted = tuple(pairs)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- connection loop -------------------------------------------------------------

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            wait = max(delay, self._budget.wait_time(self._clock()))
            if wait > 0:
                log.info("kraken: reconnecting in %.1f s", wait)
                if self._stop.wait(wait):
                    return
            self._budget.record(self._clock())
            started = self._clock()
            reason = self._connect_and_run()
            m.KRAKEN_DISCONNECTS.labels(reason.split(":")[0]).inc()
            if self._stop.is_set():
                return
            log.warning("kraken: connection ended: %s", reason)
            if self._clock() - started >= self._s.healthy_after_s:
                self._backoff.reset()
            delay = self._backoff.next()
            if self._system is not None and self._system != "online":
                # Kraken asks for no more than one connect every 5 s around maintenance.
                delay = max(delay, self._s.after_maintenance_s)

    def _connect_and_run(self) -> str:
        try:
            ws = websocket.create_connection(
                self._s.ws_url, timeout=self._s.connect_timeout_s, skip_utf8_validation=True
            )
        except (websocket.WebSocketException, OSError) as exc:
            return f"connect failed: {type(exc).__name__}: {exc}"
        m.KRAKEN_CONNECTS.inc()
        log.info("kraken: connected to %s", self._s.ws_url)
        try:
            _Session(self, ws).run()
        except _Reconnect as exc:
            return str(exc)
        except websocket.WebSocketConnectionClosedException:
            return "closed: connection dropped"
        except (websocket.WebSocketException, OSError) as exc:
            return f"error: {type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(websocket.WebSocketException, OSError):
                ws.close(timeout=0.5)
        return "stopped"

    # -- used by the session ---------------------------------------------------------

    def next_req_id(self) -> int:
        return next(self._req_ids)

    def system_status(self, status: KrakenStatus) -> None:
        self._system = status.system
        online = status.system == "online"
        m.KRAKEN_SYSTEM.set(1 if online else 0)
        m.KRAKEN_STATUS.labels(status.system).inc()
        # maintenance: Kraken closes the connection soon; cancel_only/post_only:
        # market data keeps flowing but trading is restricted.
        log.log(logging.INFO if online else logging.WARNING,
                "kraken: system status %s (api %s)", status.system, status.api_version)  # fmt: skip


@dataclass(slots=True)
class _Sub:
    channel: str
    symbol: str
    since: float
    """Ack time, or the last data time: the data watchdog's clock."""
    resubscribed: bool = False


class _Session:
    """One connection's life: subscribe, read, watch; raises :class:`_Reconnect` to end it."""

    def __init__(self, client: KrakenClient, ws: websocket.WebSocket) -> None:
        self._c = client
        self._s = client._s
        self._ws = ws
        self._clock = client._clock
        self._requests: dict[int, str] = {}
        self._pending: dict[tuple[str, str], float] = {}
        self._subs: dict[tuple[str, str], _Sub] = {}
        self._ping: tuple[int, float] | None = None
        self._resubscribed: set[tuple[str, str]] = set()
        self._renewals: set[tuple[str, str]] = set()
        self._pairs: tuple[str, ...] = ()
        """What this connection asked for (its subscriptions follow ``client.wanted``)."""
        self._streaming: frozenset[str] = frozenset()
        now = self._clock()
        self._last_frame = now
        self._next_ping = now + self._s.ping_interval_s

    def run(self) -> None:
        s = self._s
        tick = min(s.heartbeat_timeout_s, s.data_timeout_s, s.ping_interval_s, s.pong_timeout_s)
        self._ws.settimeout(max(0.01, min(0.5, tick / 4)))
        while not self._c._stop.is_set():
            self._follow_wanted()
            try:
                opcode, data = self._ws.recv_data()
            except websocket.WebSocketTimeoutException:
                opcode, data = None, None
            now = self._clock()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise _Reconnect("closed: by server")
            if data is not None:
                self._last_frame = now
                self._handle(data if isinstance(data, bytes) else data.encode(), now)
            self._watch(now)

    def _follow_wanted(self) -> None:
        """Subscribe the pairs that joined ``client.wanted``, unsubscribe those that left."""
        wanted = self._c.wanted
        if wanted == self._pairs:
            return
        had, now = set(self._pairs), set(wanted)
        joined = [p for p in wanted if p not in had]
        left = [p for p in self._pairs if p not in now]
        self._pairs, self._streaming = wanted, frozenset(wanted)
        for channel in self._s.channels:
            if left:
                self._unsubscribe(channel, left)
            if joined:
                self._subscribe(channel, joined)
        if left:
            log.info("kraken: no longer tracked, unsubscribed: %s", ", ".join(left))

    def _unsubscribe(self, channel: str, symbols: list[str]) -> None:
        req_id = self._c.next_req_id()
        self._requests[req_id] = channel
        for symbol in symbols:
            key = (channel, symbol)
            self._pending.pop(key, None)
            self._subs.pop(key, None)
            self._renewals.discard(key)
            self._resubscribed.discard(key)
        params = {"channel": channel, "symbol": symbols}
        self._send({"method": "unsubscribe", "params": params, "req_id": req_id})

    def _send(self, request: dict[str, object]) -> None:
        self._ws.send(msgspec.json.encode(request).decode())

    def _subscribe(self, channel: str, symbols: list[str]) -> None:
        req_id = self._c.next_req_id()
        self._requests[req_id] = channel
        now = self._clock()
        for symbol in symbols:
            self._pending[(channel, symbol)] = now
        params = {"channel": channel, "symbol": symbols, "snapshot": self._s.snapshot}
        self._send({"method": "subscribe", "params": params, "req_id": req_id})

    def _resubscribe(self, key: tuple[str, str], sub: _Sub) -> None:
        req_id = self._c.next_req_id()
        self._requests[req_id] = sub.channel
        params = {"channel": sub.channel, "symbol": [sub.symbol]}
        self._send({"method": "unsubscribe", "params": params, "req_id": req_id})
        del self._subs[key]
        self._subscribe(sub.channel, [sub.symbol])
        self._resubscribed.add(key)

    def _handle(self, frame: bytes, now: float) -> None:
        ctx = HandlerContext(coins=self._c._coins, now=datetime.now(UTC))
        event: KrakenEvent = parse_kraken_v2(frame, ctx)
        for control in event.control:
            if isinstance(control, KrakenSubscription):
                self._ack(control, now)
            elif isinstance(control, KrakenStatus):
                self._c.system_status(control)
            elif isinstance(control, KrakenPong):
                if self._ping is not None and control.req_id == self._ping[0]:
                    self._ping = None
                    m.KRAKEN_PONGS.inc()
            elif isinstance(control, KrakenHeartbeat):
                pass  # its arrival already fed the heartbeat watchdog
        for msg in event.messages:
            if msg.pair not in self._streaming:
                continue  # in flight when its pair stopped being tracked
            key = (_channel(msg), msg.pair)
            sub = self._subs.get(key)
            if sub is not None:
                sub.since = now
                if sub.resubscribed:
                    sub.resubscribed = False
                    m.KRAKEN_RECOVERED.labels(*key).inc()
                    log.info("kraken: %s %s is streaming again", *key)
            self._c._out.put(msg)
        for rejection in event.rejections:
            m.KRAKEN_REJECTIONS.inc()
            log.warning("kraken: frame refused: %s (%.200s)", rejection.reason, frame)

    def _ack(self, ack: KrakenSubscription, now: float) -> None:
        if ack.method == "unsubscribe" and not ack.success:
            log.warning("kraken: unsubscribe of %s refused: %s", ack.symbol, ack.error)
        if ack.method != "subscribe":
            return
        channel = ack.channel or self._requests.get(ack.req_id or -1) or "?"
        symbol = ack.symbol or "?"
        self._pending.pop((channel, symbol), None)
        if not ack.success:
            m.KRAKEN_REJECTED.labels(channel).inc()
            log.error("kraken: %s subscription for %s rejected: %s", channel, symbol, ack.error)
            return
        pair = self._c._coins.pair(symbol) or symbol
        if pair not in self._streaming:
            return  # untracked meanwhile: its unsubscribe is on the way
        key = (channel, pair)
        resubscribed = key in self._resubscribed
        self._resubscribed.discard(key)
        self._subs[key] = _Sub(channel, symbol, now, resubscribed=resubscribed)
        log.info("kraken: subscribed to %s %s", channel, symbol)

    def _watch(self, now: float) -> None:
        s = self._s
        if now - self._last_frame > s.heartbeat_timeout_s:
            raise _Reconnect(f"heartbeat: no frame for {now - self._last_frame:.1f} s")
        if self._ping is not None and now - self._ping[1] > s.pong_timeout_s:
            raise _Reconnect(f"ping: no pong for request {self._ping[0]}")
        if self._ping is None and now >= self._next_ping:
            req_id = self._c.next_req_id()
            self._send({"method": "ping", "req_id": req_id})
            self._ping = (req_id, now)
            self._next_ping = now + s.ping_interval_s
        for (channel, symbol), sent in list(self._pending.items()):
            if now - sent > s.ack_timeout_s:
                raise _Reconnect(f"ack: {channel} {symbol} not acknowledged in {s.ack_timeout_s} s")
        for key, sub in list(self._subs.items()):
            if now - sub.since <= s.data_timeout_s:
                continue
            if key in self._renewals:
                # Renewing did not help (the snapshot after a renewal may have come,
                # updates did not): the connection itself is suspect.
                raise _Reconnect(f"silent: {key[0]} {key[1]} silent again after resubscribing")
            # Kraken can keep a connection and its heartbeats alive while one
            # subscription stops delivering: renew just that one first.
            self._renewals.add(key)
            m.KRAKEN_SILENT.labels(*key).inc()
            log.warning(
                "kraken: %s %s silent for %.0f s; resubscribing", key[0], key[1], now - sub.since
            )
            self._resubscribe(key, sub)


class KrakenPartition(StatefulSourcePartition[KrakenMessage, SourceState]):
    def __init__(
        self,
        *,
        settings: KrakenSettings,
        coins: CoinTable,
        pairs: tuple[str, ...],
        tracking: TrackedCoins | None,
        resume: SourceState | None,
        fetch_page: FetchPage | None,
    ) -> None:
        self._seq = TradeSequencer(resume, settings.gap_fill_max)
        self._queue: queue.Queue[KrakenMessage] = queue.Queue()
        fetch = fetch_page or make_rest_fetcher(
            settings.rest_trades_url, settings.rest_timeout_s, settings.rest_asset_names
        )
        self._filler = GapFiller(
            fetch, coins, attempts=settings.rest_attempts, retry_s=settings.rest_retry_s
        )
        self._client = KrakenClient(settings, pairs, coins, self._queue)
        self._tracking = tracking
        self._untrack: Callable[[], None] | None = None
        if tracking is not None:
            tracking.acquire()
            self._untrack = tracking.subscribe(lambda table: self._client.want(table.tracked))
        self._retained = self._client.wanted
        for pair in self._seq.retain(self._retained):
            log.info("kraken: %s is not tracked: its trade sequence is forgotten", pair)
        for gap in self._seq.open_gaps():
            log.info("kraken: resuming the fill of %s trades %d..%d", gap.pair, gap.first, gap.last)
            self._filler.request(gap)
        self._client.start()
        self._deadline = (
            None if settings.run_for_s is None else time.monotonic() + settings.run_for_s
        )
        self._idle = False

    def next_batch(self) -> list[KrakenMessage]:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self.close()
            raise StopIteration
        wanted = self._client.wanted
        if wanted is not self._retained:
            self._retained = wanted
            self._seq.retain(wanted)
        out: list[KrakenMessage] = []
        for _ in range(MAX_BATCH):
            try:
                msg = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(msg, TradeMessage):
                if msg.pair not in wanted:
                    continue  # parsed before its pair stopped being tracked
                emit, gap = self._seq.accept(msg)  # counts gaps and duplicates
                if gap is not None:
                    self._filler.request(gap)
                if not emit:
                    continue
            out.append(msg)
        for result in self._filler.drain():
            for trade in result.trades:
                if self._seq.fill(trade):  # counts the trades filled
                    out.append(trade)
            lost = self._seq.abandon(result.gap)  # counts the trades lost
            if lost:
                log.error(
                    "kraken: %d trades of %s (ids %d..%d) could not be recovered: %s",
                    lost, result.gap.pair, result.gap.first, result.gap.last,
                    result.error or "REST did not return them",
                )  # fmt: skip
        self._idle = not out
        return out

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + IDLE_WAKE if self._idle else None

    def snapshot(self) -> SourceState:
        return self._seq.snapshot()

    def close(self) -> None:
        if self._untrack is not None and self._tracking is not None:
            self._untrack()
            self._untrack = None
            self._tracking.release()
        self._client.stop()
        self._filler.stop()


class KrakenSource(FixedPartitionedSource[KrakenMessage, SourceState]):
    """Live Kraken v2 ticker and trade messages; one partition (one connection).

    The pairs: ``settings.pairs`` when set (fixed), else the tracked coins' pairs,
    followed live through ``tracking`` (default: the coin table's defaults, fixed).
    """

    def __init__(
        self,
        settings: KrakenSettings,
        coins: CoinTable,
        *,
        tracking: TrackedCoins | None = None,
        fetch_page: FetchPage | None = None,
    ) -> None:
        for pair in settings.pairs:
            if coins.pair(pair) != pair:
                raise ValueError(f"Kraken pair {pair!r} is not a canonical pair (like 'BTC/USD')")
        self._settings = settings
        self._coins = coins
        self._pairs = tuple(settings.pairs)
        self._tracking: TrackedCoins | None = None
        if not self._pairs:
            self._tracking = tracking or TrackedCoins.fixed(coins)
        elif tracking is not None and tracking.follows_database:
            log.info(
                "kraken: CRYPTOVIZ_KRAKEN_PAIRS fixes the pairs (%s); crypto_configuration "
                "does not change them",
                ", ".join(self._pairs),
            )
        self._fetch_page = fetch_page

    def list_parts(self) -> list[str]:
        return ["kraken"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: SourceState | None
    ) -> KrakenPartition:
        return KrakenPartition(
            settings=self._settings,
            coins=self._coins,
            pairs=self._pairs,
            tracking=self._tracking,
            resume=resume_state,
            fetch_page=self._fetch_page,
        )
