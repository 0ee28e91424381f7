"""The tracked coins: the rules of ``crypto_configuration``, and following it on real PostgreSQL."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from handlers import CoinTable
from infra.settings import load_settings
from infra.tracking import TrackedCoins, tracked_from_rows
from infra.tracking import __doc__ as TRACKING_DOC
from tests._wait import wait_for

COINS = load_settings({}).coin_table()
DEFAULTS = ("BTC", "ETH", "SOL", "ADA", "DOT", "LINK")


def test_the_rules_of_the_table() -> None:
    empty = tracked_from_rows([], COINS)
    assert (empty.coins, empty.source) == (DEFAULTS, "defaults")
    rows = [("XRP", True), ("BTC", True), ("DOT", False), ("PEPE", True)]
    mixed = tracked_from_rows(rows, COINS)
    # Coin-table order; inactive rows and coins the table does not know are left out.
    assert (mixed.coins, mixed.source, mixed.ignored) == (("BTC", "XRP"), "table", ("PEPE",))
    nothing = tracked_from_rows([("BTC", False), ("ETH", False)], COINS)
    assert (nothing.coins, nothing.source) == ((), "table")
    assert "no row at all" in (TRACKING_DOC or "")


def test_without_a_database_the_defaults_are_fixed() -> None:
    tracking = TrackedCoins.fixed(COINS)
    seen: list[tuple[str, ...]] = []
    with tracking:
        undo = tracking.subscribe(lambda table: seen.append(table.tracked))
        undo()
    assert seen == [("BTC/USD", "ETH/USD", "SOL/USD", "ADA/USD", "DOT/USD", "LINK/USD")]
    assert not tracking.follows_database
    assert tracking.tracked.source == "defaults"


class Changes:
    """What a listener saw: each table's tracked coins, with the time it arrived."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, tuple[str, ...]]] = []
        self.lock = threading.Lock()

    def __call__(self, table: CoinTable) -> None:
        with self.lock:
            self.seen.append((time.monotonic(), table.tracked_coins))

    def latest(self) -> tuple[str, ...]:
        with self.lock:
            return self.seen[-1][1]

    def arrival_of(self, coins: tuple[str, ...]) -> float | None:
        with self.lock:
            return next((t for t, c in self.seen if c == coins), None)


@pytest.mark.integration
def test_changes_arrive_by_notification_and_by_polling(fresh_db: str) -> None:
    # A long poll: whatever arrives within seconds came by NOTIFY.
    tracking = TrackedCoins(COINS, fresh_db, poll_s=120, program="test")
    changes = Changes()
    with tracking, psycopg.connect(fresh_db, autocommit=True) as db:
        tracking.subscribe(changes)
        # The six seeded rows.
        assert (tracking.tracked.coins, tracking.tracked.source) == (DEFAULTS, "table")
        assert changes.latest() == DEFAULTS

        written = time.monotonic()
        db.execute("INSERT INTO crypto_configuration (symbol, name) VALUES ('XRP', 'XRP')")
        wait_for(lambda: changes.latest() == (*DEFAULTS, "XRP"), 10, "XRP tracked by NOTIFY")
        heard = changes.arrival_of((*DEFAULTS, "XRP"))
        assert heard is not None
        assert heard - written < 5, "a notified change is read at once, not at the next poll"
        assert tracking.table.tracked[-1] == "XRP/USD"
        assert tracking.table.mentions("XRP and bitcoin jump") == ("XRP", "BTC")

        db.execute("UPDATE crypto_configuration SET active = false WHERE symbol <> 'ETH'")
        wait_for(lambda: changes.latest() == ("ETH",), 10, "only ETH tracked")
        db.execute("UPDATE crypto_configuration SET active = false")
        wait_for(lambda: changes.latest() == (), 10, "nothing tracked: all rows inactive")
        assert tracking.table.tracked == ()
        db.execute("TRUNCATE crypto_configuration")
        wait_for(lambda: changes.latest() == DEFAULTS, 10, "an empty table: the defaults")
        assert (tracking.tracked.coins, tracking.tracked.source) == (DEFAULTS, "defaults")

    # The fallback: a change that notifies nobody is read at the next poll.
    tracking = TrackedCoins(COINS, fresh_db, poll_s=1, program="test")
    changes = Changes()
    with tracking, psycopg.connect(fresh_db, autocommit=True) as db:
        tracking.subscribe(changes)
        db.execute("ALTER TABLE crypto_configuration DISABLE TRIGGER crypto_configuration_notify")
        db.execute("INSERT INTO crypto_configuration (symbol, name) VALUES ('DOGE', 'Dogecoin')")
        wait_for(lambda: changes.latest() == ("DOGE",), 10, "DOGE tracked by polling")
        # A row naming a coin the coin table does not know is ignored.
        db.execute("INSERT INTO crypto_configuration (symbol, name) VALUES ('PEPE', 'Pepe')")
        wait_for(lambda: tracking.tracked.ignored == ("PEPE",), 10, "PEPE ignored")
        assert changes.latest() == ("DOGE",)


@pytest.mark.integration
def test_an_unreachable_database_keeps_the_defaults_and_never_blocks() -> None:
    tracking = TrackedCoins(
        COINS,
        "postgresql://nobody@127.0.0.1:1/none",
        poll_s=0.5,
        program="test",
        connect_timeout_s=1,
    )
    started = time.monotonic()
    with tracking:
        assert time.monotonic() - started < 10
        assert tracking.tracked.coins == DEFAULTS
        assert tracking.tracked.source == "defaults"
    stopped = time.monotonic()
    assert stopped - started < 15
