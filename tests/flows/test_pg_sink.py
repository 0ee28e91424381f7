"""The database sink in a real ingestion flow: refused rows become dead letters, outages wait.

Real PostgreSQL and Kafka; the flow's input is a ``TestingSource`` so the tests see
exactly how far the flow has read when the sink blocks, and the sink's ``sleep`` is
injected, so an outage costs no wall-clock time and its waits are observable.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main

from flows._pg_sink import PostgresSink
from flows._pg_writer import SERVER_BUSY_RETRY_S
from flows._tables import TABLES
from flows.ingest import build_ingest_flow
from infra._procs import free_port
from infra.settings import IngestSettings, Settings
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


def test_an_outage_waits_with_capped_backoff_and_the_flow_does_not_read_ahead(
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
        run_flow(stack, sink, N, seen)
    finally:
        door.close()
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0], "doubling from 0.5 s, capped at 3 s"
    # The first batch blocked the flow: nothing more was read while the database was out.
    assert len(set(read_at_each_wait)) == 1
    assert read_at_each_wait[0] < N
    assert count_rows(fresh_db, "ticker_data") == N, "everything landed once it was back"
    assert counted("cryptoviz_ingest_db_retries_total", topic="rawticker") == 6


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
            if msg.offset == N // 2:  # the first half is written: end the writer's session
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
