"""The peers benchmark (``python -m bench.peers``) at a reduced size, and its accounting.

``test_every_system_stores_every_message_once_across_a_kill`` runs the whole
harness once on 40,000 messages: ours, quix-streams and Kafka Connect (the jars
fetched by Maven on first use), each timed and then SIGKILLed half way and
restarted. What each restart-test table holds is then read back and compared
with the messages, independently of the harness's own accounting.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec
import psycopg
import pytest

from bench._peers_run import account
from bench.ingest import BASE_TS, ticker_payload
from bench.peers import SYSTEMS, compare, drop_database
from flows._tables import TICKER, rows_for
from handlers import HandlerContext, TickerRecord, parse_ticker
from infra.settings import Settings

N = 40_000


def _records(settings: Settings, n: int) -> list[TickerRecord]:
    """The workload's messages through our own handler: the rows they should become."""
    ctx = HandlerContext(coins=settings.coin_table(), now=datetime.now(UTC))
    out = []
    for i in range(n):
        rec = parse_ticker(ticker_payload(i, BASE_TS + i / 1000), ctx)
        assert isinstance(rec, TickerRecord), rec
        out.append(rec)
    return out


def _copy(url: str, rows: list[tuple[object, ...]]) -> None:
    cols = ", ".join(f'"{c}"' for c in TICKER.columns)
    copy = f"COPY ticker_data ({cols}) FROM STDIN"
    with psycopg.connect(url) as conn, conn.cursor() as cur, cur.copy(copy) as cp:
        for row in rows:
            cp.write_row(row)


@pytest.mark.integration
def test_accounting_finds_lost_duplicated_wrong_and_foreign_rows(
    fresh_db: str, stack: Settings
) -> None:
    rows = rows_for(TICKER, _records(stack, 100))
    assert account(fresh_db, 100).lost == 100  # an empty table lost everything

    _copy(fresh_db, rows)
    assert account(fresh_db, 100).as_dict() == {
        "rows": 100, "stored": 100, "duplicates": 0, "lost": 0, "wrong_values": 0,
        "unexpected": 0,
    }  # fmt: skip

    with psycopg.connect(fresh_db) as conn:
        # A table without the key, as a peer in append mode would write it.
        conn.execute("ALTER TABLE ticker_data DROP CONSTRAINT ticker_data_pkey")
        conn.execute(
            "DELETE FROM ticker_data WHERE timestamp IN (SELECT timestamp FROM ticker_data "
            "ORDER BY timestamp LIMIT 3)"
        )
        # The prices of one message changed, its key kept.
        conn.execute(
            "UPDATE ticker_data SET last = last + 1 WHERE timestamp = "
            "(SELECT max(timestamp) FROM ticker_data)"
        )
    _copy(fresh_db, rows[10:12] + rows[20:21] + rows[20:21])  # 2 stored twice, 1 three times
    shifted = list(rows[50])
    shifted[0] += timedelta(hours=1)  # a time-zone slip
    _copy(fresh_db, [tuple(shifted)])

    got = account(fresh_db, 100)
    assert got.lost == 3
    assert got.duplicates == 4
    assert got.wrong_values == 1
    assert got.unexpected == 1
    assert got.rows == 100 - 3 + 4 + 1
    assert got.stored == 97
    # Rows of messages beyond the first n are no message's too: of the 102 rows, those of
    # messages 3..59 (57) and the 4 extra copies of messages 10, 11 and 20 are in 0..59.
    assert account(fresh_db, 60).unexpected == 102 - 57 - 4


def _stored(url: str) -> list[tuple[str, datetime, Decimal, Decimal | None, Decimal | None]]:
    with psycopg.connect(url) as conn:
        return [
            (pair, ts, last, bid, ask)
            for pair, ts, last, bid, ask in conn.execute(
                "SELECT pair, timestamp, last, bid, ask FROM ticker_data"
            )
        ]


@pytest.mark.integration
def test_every_system_stores_every_message_once_across_a_kill(
    stack: Settings, server_dirs: Callable[[str], Path]
) -> None:
    kept: dict[str, str] = {}
    admin = stack.database.url
    assert admin is not None
    state = server_dirs("peers")
    # Batches of 1,000 (ours, Connect) and quix checkpointing every 1,000 messages (it
    # would drain these within its one 5-second checkpoint): the kill at 20,000 stored
    # rows lands between two commits of every system. 40,000, not fewer: ours stores
    # 10,000 in a quarter of a second, within one or two polls of a loaded harness, and
    # a kill after the last row tests nothing.
    small = msgspec.structs.replace(stack.ingest, batch_size=1000)
    settings = msgspec.structs.replace(stack, ingest=small)
    try:
        # A restarted JVM on a loaded machine can take a minute before its first row:
        # the stall limit only ends a run that lost messages, so it can be generous.
        result = compare(settings, N, state, quix_commit_every=1000, stall_s=180.0, kept=kept)
        expected = sorted((r.pair, r.time, r.last, r.bid, r.ask) for r in _records(stack, N))
        for name in SYSTEMS:
            got = result["systems"][name]
            kill = got["restart_test"]
            assert 0 < kill["rows_at_kill"] < N, (name, got)
            assert kill["killed_mid_way"], (name, got)
            assert got["rows_clean_run"] == N, (name, got)
            assert (got["rows"], got["duplicates_after_kill"], got["lost_after_kill"]) == (
                N, 0, 0), (name, got)  # fmt: skip
            assert kill["wrong_values"] == kill["unexpected"] == 0, (name, got)
            # What the table holds, read back: one row per message, the message's values.
            stored = _stored(kept[name])
            assert len(stored) == N, name
            assert sorted(stored) == expected, name
            assert got["msgs_per_s"] > 0
            assert got["cpu_s_per_million"] > 0
            assert got["peak_rss_mb"] > 10
            assert got["versions"], name
        assert result["systems"]["quix"]["versions"]["quixstreams"] == "3.28.1"
        assert result["systems"]["connect"]["versions"]["connect-runtime"] == "4.1.1"
        assert result["batch_size"] == 1000
        assert result["copy_rows_per_s"] > 0
        assert result["ratio"] == pytest.approx(
            result["systems"]["ours"]["msgs_per_s"] / result["copy_rows_per_s"], abs=0.001
        )
    finally:
        for url in kept.values():
            drop_database(admin, url)
