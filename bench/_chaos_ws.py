"""A live WebSocket client that reconnects, as the dashboard does, and counts what it saw."""

from __future__ import annotations

import threading
import time

import websocket


class LiveWatcher:
    """Follows ``url`` on a thread; each connection's message count is kept in order."""

    def __init__(self, url: str, retry_s: float = 0.5) -> None:
        self.url = url
        self.retry_s = retry_s
        self.connections: list[int] = []
        """Messages received per successful connection, oldest first."""
        self.failed_attempts = 0
        self.local_port: int | None = None
        """The current connection's local port (``None`` while disconnected): which
        API worker serves it can be read from ``/proc``."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-watcher", daemon=True)

    def start(self) -> LiveWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def reconnects(self) -> int:
        return max(0, len(self.connections) - 1)

    def messages_after_first_reconnect(self) -> int:
        return sum(self.connections[1:])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ws = websocket.create_connection(self.url, timeout=2)
            except (OSError, websocket.WebSocketException):
                self.failed_attempts += 1
                time.sleep(self.retry_s)
                continue
            self.connections.append(0)
            self.local_port = int(ws.sock.getsockname()[1]) if ws.sock is not None else None
            try:
                while not self._stop.is_set():
                    try:
                        ws.recv()
                    except websocket.WebSocketTimeoutException:
                        continue  # quiet moment: keep listening
                    self.connections[-1] += 1
            except (OSError, websocket.WebSocketException):
                pass  # the server went away: reconnect
            finally:
                self.local_port = None
                ws.close()
