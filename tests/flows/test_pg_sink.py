"""The database sink in a real ingestion flow: refused rows become dead letters, outages wait.

Real PostgreSQL and Kafka; the flow's input is a ``TestingSource`` so the tests see
exactly how far the flow has read when the sink blocks, and the sink's ``sleep`` is
injected, so an outage costs no wall-clock time and its waits are observable.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main

from flows._parse import BatchParser, ParsedBatch, RawBatch
from flows._pg_sink import PARTITIONS, QUEUED, PostgresSink, WriterFailed
from flows._pg_writer import SERVER_BUSY_RETRY_S
from flows._tables import TABLES
from flows.ingest import build_ingest_flow
from handlers import handler_for
from infra._procs import free_port
from infra.settings import IngestSettings, Settings
from tests._wait import wait_for
from tests.flows._payloads import VALID
from tests.flows.conftest import count_rows, read_all
from tests.flows.producers._observe import Counters

pytestmark = pytest.mark.integration

N = 40


def source_messages(n: int, seen: list[int]) -> Iterator[KafkaSourceMessage[Any, Any]]:
    """Ticker messages at offsets 0..n-1; ``seen`` grows as the flow reads them."""
    for offset in range(n):
        seen.append(offset)
        yield KafkaSourceMessage(
            key=b"k", value=VALID["rawticker"](offset), topic="rawticker-in", partition=0,
            offset=offset,
        )  # fmt: skip


def run_flow(
    settings: Settings, sink: PostgresSink, n: int, seen: list[int], batch_size: int = 10
) -> None:
    flow = build_ingest_flow(
        "rawticker",
        settings,
        source=TestingSource(source_messages(n, seen), batch_size=batch_size),
        db_sink=sink,
        dlq_sink=TestingSink([]),
    )
    run_main(flow)


def test_a_row_the_database_refuses_becomes_a_dead_letter_with_stage_database(
    stack: Settings, fresh_db: str, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """The README's promise: a row the handler accepted but the database refuses is not
    retried forever nor lost: it is a dead letter naming the database's reason."""
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE ticker_data ADD CONSTRAINT no_30017 CHECK (last <> 30000.17)")
    dlq = new_topic("deadletter", 1)
    sink = PostgresSink(fresh_db, TABLES["rawticker"], "rawticker", stack.ingest,
                        dead_letter_topic=dlq, bootstrap=kafka_bootstrap)  # fmt: skip
    counted = Counters()
    run_flow(stack, sink, N, [])
    assert count_rows(fresh_db, "ticker_data") == N - 1
    [(value, headers)] = read_all(kafka_bootstrap, dlq)
    assert value == VALID["rawticker"](17), "the original bytes, untouched"
    assert headers["dlq.stage"] == "database"
    assert headers["dlq.reason"].startswith("database refused row: 23514 "), headers
    assert "no_30017" in headers["dlq.reason"]
    assert (headers["dlq.source.topic"], headers["dlq.source.offset"]) == ("rawticker-in", "17")
    assert headers["dlq.reason.code"] == "refused by the database"
    assert counted("cryptoviz_dead_letters_total", topic="rawticker", stage="database",
                   reason="refused by the database") == 1  # fmt: skip
    assert counted("cryptoviz_ingest_rows_total", topic="rawticker") == N - 1


class Outage:
    """A TCP door to the real PostgreSQL server: closed (connections refused) until
    :meth:`open`, then every connection is forwarded."""

    def __init__(self, database_url: str) -> None:
        params = psycopg.conninfo.conninfo_to_dict(database_url)
        self.target = (str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
        self.port = free_port()
        self.url = psycopg.conninfo.make_conninfo(database_url, host="127.0.0.1", port=self.port)
        self._server: socket.socket | None = None

    def open(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for end in (src, dst):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


def test_an_outage_waits_with_capped_backoff_and_the_flow_reads_no_further_ahead(
    stack: Settings, fresh_db: str, kafka_bootstrap: str
) -> None:
    door = Outage(fresh_db)
    seen: list[int] = []
    waits: list[float] = []
    read_at_each_wait: list[int] = []

    def sleep(seconds: float) -> None:  # the database comes back after six failed tries
        waits.append(seconds)
        read_at_each_wait.append(len(seen))
        if len(waits) == 6:
            door.open()

    retry = IngestSettings(retry_initial_s=0.5, retry_max_s=3.0)
    sink = PostgresSink(
        door.url, TABLES["rawticker"], "rawticker", retry,
        dead_letter_topic="unused", bootstrap=kafka_bootstrap, sleep=sleep,
    )  # fmt: skip
    counted = Counters()
    try:
        run_flow(stack, sink, 4 * N, seen)
    finally:
        door.close()
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0], "doubling from 0.5 s, capped at 3 s"
    # The first write blocked the flow: while the database was out, the flow read on only
    # until the writer's pipeline was full (the write being retried, which holds at most
    # the QUEUED hand-overs that waited when it began; QUEUED more behind it; the one the
    # flow was handing over; and one more Bytewax may have polled before the sink
    # blocked), not the whole input.
    assert max(read_at_each_wait) <= (2 * QUEUED + 2) * 10 < 4 * N
    assert count_rows(fresh_db, "ticker_data") == 4 * N, "everything landed once it was back"
    assert counted("cryptoviz_ingest_db_retries_total", topic="rawticker") == 6


def writer_idle(url: str) -> bool:
    """The first half is stored and every other session of the database is idle."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM ticker_data), (SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle')"
        ).fetchone()
    return row == (N // 2, 0)


def test_a_server_that_ends_the_session_is_given_its_retry_after(
    stack: Settings, fresh_db: str, kafka_bootstrap: str
) -> None:
    """A server shutting down or restarting ends sessions with 57P01 (admin shutdown):
    ``DatabaseUnavailable`` then carries ``retry_after`` and the sink waits at least that
    long, though its own backoff starts lower."""
    seen: list[int] = []
    waits: list[float] = []

    def messages() -> Iterator[KafkaSourceMessage[Any, Any]]:
        for msg in source_messages(N, seen):
            if msg.offset == N // 2:  # once the first half is written, end the writer's session
                # (the sink writes behind the flow: wait until its session has committed and
                # is idle, so that the session ends between two writes, not in a commit)
                wait_for(lambda: writer_idle(fresh_db), 60, "the first half committed")
                with psycopg.connect(fresh_db, autocommit=True) as conn:
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
            yield msg

    retry = IngestSettings(retry_initial_s=0.25, retry_max_s=8.0)
    sink = PostgresSink(
        fresh_db, TABLES["rawticker"], "rawticker", retry,
        dead_letter_topic="unused", bootstrap=kafka_bootstrap, sleep=waits.append,
    )  # fmt: skip
    source = TestingSource(messages(), batch_size=N // 2)
    flow = build_ingest_flow("rawticker", stack, source=source, db_sink=sink,
                             dlq_sink=TestingSink([]))  # fmt: skip
    run_main(flow)
    assert waits == [SERVER_BUSY_RETRY_S], "max(backoff 0.25 s, retry_after 1 s)"
    assert retry.retry_initial_s < SERVER_BUSY_RETRY_S
    assert count_rows(fresh_db, "ticker_data") == N


# -- writing behind the flow ----------------------------------------------------------


def parsed(stack: Settings, n: int, first: int = 0) -> ParsedBatch:
    """``n`` valid tickers as the parse step hands them to the sink."""
    parser = BatchParser("rawticker", handler_for("rawticker"), stack.coin_table(), "unused")
    return parser(RawBatch("0", list(source_messages_from(first, n))))


def source_messages_from(first: int, n: int) -> Iterator[KafkaSourceMessage[Any, Any]]:
    for offset in range(first, first + n):
        yield KafkaSourceMessage(key=b"k", value=VALID["rawticker"](offset), topic="rawticker-in",
                                 partition=0, offset=offset)  # fmt: skip


def test_the_sink_hands_over_at_once_and_a_snapshot_waits_for_the_commit(
    stack: Settings, fresh_db: str
) -> None:
    """What keeps recovery exact: Bytewax snapshots the sink at the end of each epoch, and
    that snapshot returns only once every batch handed over is committed."""
    sink = PostgresSink(fresh_db, TABLES["rawticker"], "rawticker", stack.ingest,
                        dead_letter_topic="unused", bootstrap=None)  # fmt: skip
    part = sink.build_part("db", "0", None)
    snapshotted = threading.Event()
    with psycopg.connect(fresh_db) as locker:  # holds the table until the block ends
        locker.execute("LOCK TABLE ticker_data IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        part.write_batch([parsed(stack, 20)])
        assert time.monotonic() - started < 5, "the write happens behind the flow"

        def snapshot() -> None:
            part.snapshot()
            snapshotted.set()

        thread = threading.Thread(target=snapshot)
        thread.start()
        assert not snapshotted.wait(2.0), "the snapshot returned before the rows were committed"
        locker.rollback()  # the lock goes: the writer's COPY proceeds
    assert snapshotted.wait(60), "the snapshot never returned"
    thread.join()
    assert count_rows(fresh_db, "ticker_data") == 20
    part.close()


def test_hand_overs_waiting_behind_a_write_share_the_next_transaction(
    stack: Settings, fresh_db: str
) -> None:
    """At a low rate every poll is a small hand-over; those that queue up while a write is
    in progress go into one transaction (one commit), up to the batch size in rows, in
    the order they were handed over. Rows written by one transaction share its ``xmin``."""
    retry = IngestSettings(batch_size=25)
    sink = PostgresSink(fresh_db, TABLES["rawticker"], "rawticker", retry,
                        dead_letter_topic="unused", bootstrap=None)  # fmt: skip
    part = sink.build_part("db", "0", None)
    with psycopg.connect(fresh_db) as locker:
        locker.execute("LOCK TABLE ticker_data IN ACCESS EXCLUSIVE MODE")
        part.write_batch([parsed(stack, 10)])
        with psycopg.connect(fresh_db, autocommit=True) as watcher:
            wait_for(lambda: watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()").fetchone() == (1,),
                30, "the writer waiting on the lock")  # fmt: skip
        for first in (10, 20, 30):  # QUEUED of them wait behind the blocked write
            part.write_batch([parsed(stack, 10, first=first)])
        locker.rollback()
    part.snapshot()
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        rows = conn.execute(
            'SELECT xmin::text::bigint, count(*), min("timestamp"), max("timestamp")'
            " FROM ticker_data"
            " GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert [count for _, count, _, _ in rows] == [10, 20, 10], rows
    spans = [(low, high) for _, _, low, high in rows]
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans)), "in hand-over order"
    part.close()


def test_a_writer_failure_stops_the_flow_instead_of_dropping_batches(
    stack: Settings, fresh_db: str
) -> None:
    """An error that is not an outage (here the table is gone) is not retried and not
    swallowed: the next hand-over, snapshot or close raises it, so Bytewax stops the
    worker before any snapshot records the offsets of the lost batch."""
    sink = PostgresSink(fresh_db, TABLES["rawticker"], "rawticker", stack.ingest,
                        dead_letter_topic="unused", bootstrap=None)  # fmt: skip
    part = sink.build_part("db", "0", None)
    part.write_batch([parsed(stack, 10)])
    part.snapshot()
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE ticker_data RENAME TO ticker_data_gone")
    part.write_batch([parsed(stack, 10, first=10)])
    with pytest.raises(WriterFailed) as failed:
        part.snapshot()
    assert isinstance(failed.value.__cause__, psycopg.errors.UndefinedTable)
    assert "ticker_data" in failed.value.detail
    with pytest.raises(WriterFailed):
        part.write_batch([parsed(stack, 10, first=20)])
    part.close()  # already reported: closing while Bytewax unwinds must not raise again


def test_a_flow_whose_writer_fails_ends_with_the_error(
    stack: Settings, fresh_db: str, kafka_bootstrap: str
) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE ticker_data RENAME TO ticker_data_gone")
    sink = PostgresSink(fresh_db, TABLES["rawticker"], "rawticker", stack.ingest,
                        dead_letter_topic="unused", bootstrap=kafka_bootstrap)  # fmt: skip
    with pytest.raises(Exception) as raised:  # Bytewax's error, caused by the sink's
        run_flow(stack, sink, N, [])
    chain: list[BaseException] = []
    error: BaseException | None = raised.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(e, WriterFailed) and "UndefinedTable" in e.detail for e in chain), chain


def test_batches_are_routed_by_kafka_partition_to_stable_sink_partitions() -> None:
    sink = PostgresSink("postgresql://unused", TABLES["rawticker"], "rawticker",
                        IngestSettings(), dead_letter_topic="unused", bootstrap=None)  # fmt: skip
    parts = sink.list_parts()
    assert parts == [str(i) for i in range(PARTITIONS)]
    ordered = sorted(parts)  # Bytewax indexes the sorted partition names with part_fn
    for partition in range(3 * PARTITIONS):
        assert ordered[sink.part_fn(str(partition))] == str(partition % PARTITIONS)
