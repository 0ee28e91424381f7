"""The embedded servers keep their data across restarts and stop cleanly."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import psycopg
import pytest

from infra.jars import ensure_jars, jar_dir
from infra.java import find_java
from infra.kafka_broker import EmbeddedKafka
from infra.postgres_server import SERVICE_USER, EmbeddedPostgres
from infra.settings import Settings
from infra.topics import ensure_topics
from tests.flows.conftest import produce, read_all

pytestmark = pytest.mark.integration


def test_postgres_restart_keeps_data_and_runs_unprivileged(server_dir: Path) -> None:
    server = EmbeddedPostgres(server_dir / "pg")
    url = server.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")
            owner = conn.execute("SELECT current_setting('data_directory')").fetchone()
        assert owner is not None
        if os.geteuid() == 0:
            # PostgreSQL refuses root: the cluster belongs to the service user.
            assert (server_dir / "pg" / "pgdata").stat().st_uid == pwd.getpwnam(SERVICE_USER).pw_uid
        server.stop()
        assert not server.is_running()
        assert server.start() == url  # same port again: clients keep working
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
    finally:
        server.stop()


def test_kafka_restart_keeps_the_log(tmp_path: Path, stack: Settings) -> None:
    jars = ensure_jars("kafka", stack.cache_dir)
    broker = EmbeddedKafka(tmp_path / "kafka", jars, find_java(), heap_mb=256)
    bootstrap = broker.start()
    try:
        ensure_topics(bootstrap, ("kept",), 2)
        produce(bootstrap, "kept", [b"one", b"two", b"three"])
        broker.stop()
        assert broker.start() == bootstrap
        assert sorted(v or b"" for v, _h in read_all(bootstrap, "kept")) == [
            b"one",
            b"three",
            b"two",
        ]
        assert ensure_topics(bootstrap, ("kept",), 2) == []  # idempotent
    finally:
        broker.stop()


def test_jars_are_cached_per_pom_digest(stack: Settings) -> None:
    path = ensure_jars("kafka", stack.cache_dir)
    assert path == jar_dir("kafka", stack.cache_dir)
    names = {p.name for p in path.glob("*.jar")}
    assert "kafka_2.13-4.1.1.jar" in names
    assert ensure_jars("kafka", stack.cache_dir) == path  # second call: no Maven run
