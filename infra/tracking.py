"""Which coins are tracked: the ``crypto_configuration`` table, followed live.

The table behind ``/api/v1/config/crypto/`` is the source of truth for what the
pipeline collects and analyses. A coin is *tracked* when its row is ``active`` and
the coin table (``infra/coins.toml``) knows it. Two cases decide themselves:

* **no row at all** means "never configured": the coin table's defaults (the bases
  of its ``tracked`` pairs: BTC, ETH, SOL, ADA, DOT, LINK), which is also what the
  migrations seed, so a fresh ``make up`` collects what it always did. Rows that are
  all inactive mean what they say: nothing is tracked;
* a row naming a coin the coin table does not know (the API refuses to store one,
  psql does not) is ignored, with a warning: nothing could canonicalise or tag it.

What "tracked" changes, per program: the Kraken producer subscribes to the tracked
coins' pairs (:meth:`CoinTable.pairs_of`) and unsubscribes from the others on its
live socket; the news producer tags articles with tracked coins only; the Spark job
writes sentiment and predictions of tracked coins only. Each follows the table with
a :class:`TrackedCoins`: a daemon thread that holds one connection, ``LISTEN``\\ s on
:data:`CHANNEL` (a trigger notifies every committed change, whoever makes it: see
``sql/migrations/0007_config_notify.sql``) and re-reads the table on a notification,
and every ``poll_s`` seconds anyway (a missed notification, a pooler that drops
``LISTEN``). A change therefore reaches every program within about a second, and at
worst within ``CRYPTOVIZ_CONFIG_POLL_S``; nothing restarts. Without a database
(``DATABASE_URL`` unset: a producer run on its own, most tests) the defaults are
fixed; while the database is unreachable the last set read stays in force (at start:
the defaults) and the thread keeps retrying.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec
import psycopg
from prometheus_client import Counter, Gauge

from handlers import CoinTable

log = logging.getLogger(__name__)

CHANNEL = "cryptoviz_config"
"""The ``NOTIFY`` channel of ``crypto_configuration`` changes."""
READ = "SELECT symbol, active FROM crypto_configuration ORDER BY symbol"
STOP_CHECK_S = 0.5
"""Longest wait for a notification before the thread looks at its stop flag."""
FIRST_READ_S = 5.0
"""How long :meth:`TrackedCoins.start` waits for the first read before using the defaults."""

TRACKED = Gauge(
    "cryptoviz_tracked_coins",
    "Coins this program tracks now (crypto_configuration, or the coin table's defaults)",
)
READS = Counter(
    "cryptoviz_tracking_reads",
    "Reads of crypto_configuration by outcome (unchanged, changed, failed)",
    ["outcome"],
)

Source = Literal["table", "defaults"]


class Tracked(msgspec.Struct, frozen=True, kw_only=True):
    """The tracked coins, and where that answer came from."""

    coins: tuple[str, ...]
    """Canonical symbols, in coin-table order."""
    source: Source
    """``table``: the active rows of ``crypto_configuration``; ``defaults``: the coin
    table's (the configuration is empty, or could not be read yet)."""
    ignored: tuple[str, ...] = ()
    """Symbols of rows the coin table does not know."""


def default_tracked(table: CoinTable) -> Tracked:
    return Tracked(coins=table.default_coins, source="defaults")


def tracked_from_rows(rows: Iterable[tuple[str, bool]], table: CoinTable) -> Tracked:
    """What ``(symbol, active)`` rows of ``crypto_configuration`` track (rules: module doc)."""
    rows = list(rows)
    if not rows:
        return default_tracked(table)
    known = {coin.symbol for coin in table.coins}
    active = {symbol for symbol, on in rows if on}
    return Tracked(
        coins=tuple(c.symbol for c in table.coins if c.symbol in active),
        source="table",
        ignored=tuple(sorted(symbol for symbol, _ in rows if symbol not in known)),
    )


def read_tracked(conn: psycopg.Connection[Any], table: CoinTable) -> Tracked:
    rows = conn.execute(READ).fetchall()
    return tracked_from_rows(((str(s), bool(a)) for s, a in rows), table)


Listener = Callable[[CoinTable], None]
"""Called with the table tracking the new set (:meth:`CoinTable.tracking`)."""


class TrackedCoins:
    """The tracked coins of one program, kept current from ``crypto_configuration``.

    :attr:`table` is the coin table tracking them (its ``tracked`` pairs, its
    ``mentions``); :meth:`subscribe` calls back on every change. Shared by the parts
    of a program: :meth:`acquire` starts the watcher on first use, :meth:`release`
    stops it after the last.
    """

    def __init__(
        self,
        table: CoinTable,
        database_url: str | None,
        *,
        poll_s: float = 10.0,
        program: str = "",
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._base = table
        self._url = database_url
        self._poll_s = poll_s
        self._program = program or "this program"
        self._connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._tracked = default_tracked(table)
        self._table = table.tracking(self._tracked.coins)
        self._listeners: list[Listener] = []
        self._users = 0
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: tuple[str, ...] = ()

    @classmethod
    def fixed(cls, table: CoinTable) -> TrackedCoins:
        """The coin table's defaults, never re-read (no database)."""
        return cls(table, None)

    @property
    def table(self) -> CoinTable:
        """The coin table tracking the current set."""
        return self._table

    @property
    def tracked(self) -> Tracked:
        return self._tracked

    @property
    def follows_database(self) -> bool:
        return self._url is not None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` now with :attr:`table`, then on each change; returns the undo."""
        with self._lock:
            self._listeners.append(listener)
            table = self._table
        listener(table)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    # -- lifecycle ---------------------------------------------------------------------

    def acquire(self) -> TrackedCoins:
        """Start following the table (first user), waiting up to :data:`FIRST_READ_S`."""
        with self._lock:
            self._users += 1
            start = self._users == 1 and self._url is not None
        TRACKED.set(len(self._tracked.coins))
        if start:
            self._stop.clear()
            self._first.clear()
            self._thread = threading.Thread(target=self._run, name="tracked-coins", daemon=True)
            self._thread.start()
            if not self._first.wait(FIRST_READ_S + self._connect_timeout_s):
                log.warning(
                    "tracking: crypto_configuration not read yet; %s tracks the coin "
                    "table's defaults (%s) until it is",
                    self._program,
                    ", ".join(self._tracked.coins),
                )
        return self

    def release(self) -> None:
        """Stop following the table once the last user released it."""
        with self._lock:
            self._users = max(0, self._users - 1)
            last = self._users == 0
        if last and self._thread is not None:
            self._stop.set()
            if self._thread is not threading.current_thread():
                self._thread.join(STOP_CHECK_S * 4 + self._connect_timeout_s)
            self._thread = None

    def __enter__(self) -> TrackedCoins:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- the watcher thread ------------------------------------------------------------

    def _run(self) -> None:
        assert self._url is not None
        delay = min(1.0, self._poll_s)
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._url, autocommit=True, connect_timeout=int(max(1, self._connect_timeout_s))
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._refresh(conn)  # after LISTEN: no change can fall in between
                    delay = min(1.0, self._poll_s)
                    self._listen(conn)
            except psycopg.Error as exc:
                READS.labels("failed").inc()
                log.warning(
                    "tracking: cannot read crypto_configuration (%s); %s keeps tracking %s, "
                    "retrying in %.0f s",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    self._program,
                    ", ".join(self._tracked.coins) or "nothing",
                    delay,
                )
            finally:
                self._first.set()
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, max(self._poll_s, 1.0))

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        next_read = time.monotonic() + self._poll_s
        while not self._stop.is_set():
            wait = max(0.0, min(STOP_CHECK_S, next_read - time.monotonic()))
            notified = any(True for _ in conn.notifies(timeout=wait, stop_after=1))
            if notified or time.monotonic() >= next_read:
                self._refresh(conn)
                next_read = time.monotonic() + self._poll_s

    def _refresh(self, conn: psycopg.Connection[Any]) -> None:
        tracked = read_tracked(conn, self._base)
        self._first.set()
        if tracked.ignored and tracked.ignored != self._warned:
            log.warning(
                "tracking: crypto_configuration names %s, which the coin table does not "
                "know; ignored (add it to the coin table, CRYPTOVIZ_COINS_FILE)",
                ", ".join(tracked.ignored),
            )
        self._warned = tracked.ignored
        if tracked == self._tracked:
            READS.labels("unchanged").inc()
            return
        READS.labels("changed").inc()
        self._apply(tracked)

    def _apply(self, tracked: Tracked) -> None:
        table = self._base.tracking(tracked.coins)
        with self._lock:
            self._tracked, self._table = tracked, table
            listeners = list(self._listeners)
        TRACKED.set(len(tracked.coins))
        origin = (
            "crypto_configuration" if tracked.source == "table" else "the coin table's defaults"
        )
        log.info(
            "tracking: %s now tracks %s (from %s)",
            self._program,
            ", ".join(tracked.coins) or "nothing",
            origin,
        )
        for listener in listeners:
            try:
                listener(table)
            except Exception:  # one bad listener must not stop the others or the watcher
                log.exception("tracking: a listener failed on the new set")
