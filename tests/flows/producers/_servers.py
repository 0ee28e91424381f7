"""Local servers for the producer tests: a Kraken v2 WebSocket market and an HTTP server.

Nothing here touches the network: both bind 127.0.0.1 on a free port.

:class:`FakeKraken` keeps one market (per-symbol trade history with consecutive
trade ids, a ticker per symbol) that a thread advances; every connection streams
from it what the scenario of that connection says. The same history is served
by the REST ``Trades`` route of :class:`HttpServer` (see :func:`kraken_trades_route`)
for gap fills, so "every trade exactly once" can be checked against the truth.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class Trade:
    symbol: str
    trade_id: int
    price: Decimal
    qty: Decimal
    side: str
    ts: float
    hidden: bool = False
    """Never sent over the WebSocket (a gap only REST can fill)."""


@dataclass(slots=True)
class ConnectionScript:
    """What one connection (by its index, from 0) does."""

    drop_after_s: float | None = None
    """Close the TCP connection abruptly (no close frame) after this long."""
    mute: bool = False
    """Send the status frame, then nothing at all (no acks, no heartbeats): a dead link."""
    status: str = "online"
    """What the ``status`` frame sent on connect says (``maintenance``, ``cancel_only``...)."""
    silence: tuple[tuple[str, str], ...] = ()
    """(channel, symbol) that stop streaming after their first data until resubscribed."""


@dataclass(slots=True)
class Market:
    symbols: tuple[str, ...]
    prices: dict[str, Decimal]
    trade_every_s: float = 0.02
    ticker_every_s: float = 0.1
    hide: dict[str, tuple[int, int]] = field(default_factory=dict)
    """symbol -> (first, last) trade-id offsets (from the first trade) hidden from the WS."""
    trades: dict[str, list[Trade]] = field(default_factory=dict)
    rest_requests: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for symbol in self.symbols:
            self.trades[symbol] = []

    def step(self, now: float) -> None:
        with self.lock:
            for index, symbol in enumerate(self.symbols):
                history = self.trades[symbol]
                first_id = 1000 * (index + 1)
                tid = history[-1].trade_id + 1 if history else first_id
                hidden = self.hide.get(symbol)
                offset = tid - first_id
                self.trades[symbol].append(
                    Trade(
                        symbol=symbol,
                        trade_id=tid,
                        price=self.prices[symbol],
                        qty=Decimal("0.01000000"),
                        side="buy" if tid % 2 else "sell",
                        ts=now,
                        hidden=hidden is not None and hidden[0] <= offset <= hidden[1],
                    )
                )

    def since(self, symbol: str, index: int) -> list[Trade]:
        with self.lock:
            return self.trades[symbol][index:]

    def all_ids(self, symbol: str) -> list[int]:
        with self.lock:
            return [t.trade_id for t in self.trades[symbol]]


def _num(value: Decimal) -> object:
    # Raw JSON numbers with the exact digits, as Kraken writes them.
    return RawNumber(str(value))


class RawNumber(str):
    """A string that :func:`_dump` writes as a bare JSON number."""


def _dump(obj: object) -> str:
    if isinstance(obj, RawNumber):
        return str(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dump(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_dump(v) for v in obj) + "]"
    return json.dumps(obj)


class FakeKraken:
    """A Kraken v2 WebSocket endpoint over a :class:`Market`, scripted per connection."""

    def __init__(
        self,
        market: Market,
        *,
        scripts: dict[int, ConnectionScript] | None = None,
        rejected: dict[str, str] | None = None,
        heartbeat_s: float = 0.1,
        snapshot_depth: int = 50,
    ) -> None:
        self.market = market
        self.snapshot_depth = snapshot_depth
        self.scripts = scripts or {}
        self.rejected = rejected or {}
        self.heartbeat_s = heartbeat_s
        self.connections: list[float] = []
        """Monotonic time of each accepted connection."""
        self.requests: list[dict[str, object]] = []
        self.request_times: list[float] = []
        """Wall-clock time each of :attr:`requests` arrived."""
        self._stop = threading.Event()
        self._server: Server = serve(self._handle, "127.0.0.1", 0, compression=None)
        self.port = self._server.socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/v2"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._tick, daemon=True),
        ]

    def __enter__(self) -> FakeKraken:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()

    def _tick(self) -> None:
        while not self._stop.wait(self.market.trade_every_s):
            self.market.step(time.time())

    def _handle(self, conn: ServerConnection) -> None:
        index = len(self.connections)
        self.connections.append(time.monotonic())
        script = self.scripts.get(index, ConnectionScript())
        with contextlib.suppress(ConnectionClosed, OSError):
            _Stream(self, conn, script).run()


class _Stream:
    def __init__(self, server: FakeKraken, conn: ServerConnection, script: ConnectionScript):
        self.s = server
        self.conn = conn
        self.script = script
        self.started = time.monotonic()
        self.cursor: dict[str, int] = {}
        self.tickers: dict[str, float] = {}
        self.silenced: set[tuple[str, str]] = set()
        self.streamed: set[tuple[str, str]] = set()
        self.renewed: set[tuple[str, str]] = set()
        """Subscriptions renewed (unsubscribed) on this connection: never silenced again."""

    def send(self, obj: object) -> None:
        self.conn.send(_dump(obj))

    def run(self) -> None:
        status = {"api_version": "v2", "connection_id": 42, "system": self.script.status,
                  "version": "2.0.10"}  # fmt: skip
        self.send({"channel": "status", "type": "update", "data": [status]})
        next_heartbeat = time.monotonic()
        while not self.s._stop.is_set():
            try:
                raw = self.conn.recv(timeout=0.01)
            except TimeoutError:
                raw = None
            if raw is not None and not self.script.mute:
                self.request(json.loads(raw))
            now = time.monotonic()
            if (
                self.script.drop_after_s is not None
                and now - self.started >= self.script.drop_after_s
            ):
                # Abrupt loss: no close frame, as when a network path dies.
                self.conn.socket.shutdown(socket.SHUT_RDWR)
                self.conn.socket.close()
                return
            if self.script.mute:
                continue
            if now >= next_heartbeat:
                self.send({"channel": "heartbeat"})
                next_heartbeat = now + self.s.heartbeat_s
            self.stream(now)

    def request(self, req: dict[str, object]) -> None:
        self.s.request_times.append(time.time())
        self.s.requests.append(req)
        method = req.get("method")
        req_id = req.get("req_id")
        stamp = iso(time.time())
        if method == "ping":
            self.send({"method": "pong", "req_id": req_id, "time_in": stamp, "time_out": stamp})
            return
        params = req.get("params")
        assert isinstance(params, dict)
        channel = params["channel"]
        for symbol in params["symbol"]:
            if method == "unsubscribe":
                self.cursor.pop(f"{channel}:{symbol}", None)
                self.silenced.discard((channel, symbol))
                self.renewed.add((channel, symbol))
                result = {"channel": channel, "symbol": symbol}
                self.send({"method": "unsubscribe", "result": result, "success": True,
                           "req_id": req_id, "time_in": stamp, "time_out": stamp})  # fmt: skip
                continue
            if symbol in self.s.rejected or symbol not in self.s.market.symbols:
                error = self.s.rejected.get(symbol, f"Currency pair not supported {symbol}")
                self.send({"error": error, "method": "subscribe", "success": False,
                           "symbol": symbol, "req_id": req_id, "time_in": stamp,
                           "time_out": stamp})  # fmt: skip
                continue
            result = {
                "channel": channel,
                "snapshot": params.get("snapshot", True),
                "symbol": symbol,
            }
            self.send({"method": "subscribe", "result": result, "success": True,
                       "req_id": req_id, "time_in": stamp, "time_out": stamp})  # fmt: skip
            if channel == "trade":
                history = self.s.market.since(symbol, 0)
                visible = [t for t in history if not t.hidden][-self.s.snapshot_depth :]
                if params.get("snapshot", True) and visible:
                    self.send({"channel": "trade", "type": "snapshot",
                               "data": [self.trade(t) for t in visible]})  # fmt: skip
                self.cursor[f"trade:{symbol}"] = len(history)
            else:
                self.cursor[f"ticker:{symbol}"] = 0
                self.send_ticker(symbol, "snapshot")

    def trade(self, t: Trade) -> dict[str, object]:
        return {"symbol": t.symbol, "side": t.side, "price": _num(t.price), "qty": _num(t.qty),
                "ord_type": "limit", "trade_id": t.trade_id, "timestamp": iso(t.ts)}  # fmt: skip

    def send_ticker(self, symbol: str, kind: str) -> None:
        price = self.s.market.prices[symbol]
        entry = {"symbol": symbol, "bid": _num(price), "bid_qty": _num(Decimal("1.5")),
                 "ask": _num(price), "ask_qty": _num(Decimal("2.25")), "last": _num(price),
                 "volume": _num(Decimal("1234.5")), "vwap": _num(price), "low": _num(price),
                 "high": _num(price), "change": _num(Decimal("0.0")),
                 "change_pct": _num(Decimal("0.00")), "timestamp": iso(time.time())}  # fmt: skip
        self.send({"channel": "ticker", "type": kind, "data": [entry]})
        self.tickers[symbol] = time.monotonic()

    def stream(self, now: float) -> None:
        for key, index in list(self.cursor.items()):
            channel, symbol = key.split(":", 1)
            sub = (channel, symbol)
            if sub in self.silenced:
                continue
            if sub in self.script.silence and sub in self.streamed and sub not in self.renewed:
                self.silenced.add(sub)  # acked, delivered once, then nothing
                continue
            if channel == "trade":
                fresh = self.s.market.since(symbol, index)
                self.cursor[key] = index + len(fresh)
                visible = [self.trade(t) for t in fresh if not t.hidden]
                if visible:
                    self.send({"channel": "trade", "type": "update", "data": visible})
                    self.streamed.add(sub)
            elif now - self.tickers.get(symbol, 0) >= self.s.market.ticker_every_s:
                self.send_ticker(symbol, "update")
                self.streamed.add(sub)


# -- HTTP ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Route = Callable[[str, dict[str, str]], Reply]
"""``route(query string, request headers) -> Reply``."""


class HttpServer:
    """``ThreadingHTTPServer`` on 127.0.0.1 with per-path routes; records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[tuple[str, dict[str, str]]] = []
        self.posts: list[tuple[str, bytes]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.hits.append((parts.path, headers))
                route = server.routes.get(parts.path)
                reply = route(parts.query, headers) if route else Reply(404, b"not found")
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if reply.body:
                        self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (timeout test): nothing to answer

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                server.posts.append((self.path, self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> HttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, path: str) -> int:
        return sum(1 for hit, _ in self.hits if hit == path)


def kraken_trades_route(market: Market, rest_names: dict[str, str]) -> Route:
    """``/0/public/Trades`` over ``market``: rows with a trade id, ``since`` in s or ns."""

    def route(query: str, headers: dict[str, str]) -> Reply:
        params = dict(urllib.parse.parse_qsl(query))
        market.rest_requests.append(params)
        symbol = rest_names.get(params.get("pair", ""))
        if symbol is None:
            body = {"error": [f"EQuery:Unknown asset pair {params.get('pair')}"]}
            return Reply(200, json.dumps(body).encode())
        since = float(params.get("since", "0"))
        since_s = since / 1e9 if since > 1e12 else since
        rows = [t for t in market.since(symbol, 0) if t.ts > since_s][:1000]
        data = [
            [str(t.price), str(t.qty), RawNumber(f"{t.ts:.7f}"), t.side[0], "l", "", t.trade_id]
            for t in rows
        ]
        last = str(int(rows[-1].ts * 1e9)) if rows else str(int(since_s * 1e9))
        reply: dict[str, object] = {
            "error": [],
            "result": {"X" + params["pair"]: data, "last": last},
        }
        return Reply(200, _dump(reply).encode(), {"Content-Type": "application/json"})

    return route
