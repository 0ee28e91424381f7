"""The Kafka Connect peer: a standalone Connect worker running Debezium's JDBC sink.

Connect's JDBC sinks write only records that carry a schema, so this peer reads a
topic of its own: the same messages re-encoded as Connect's JSON with a schema
envelope (``JsonConverter`` with ``schemas.enable=true``), written by
:func:`preload_envelopes` before the clock starts. The connector upserts on the
table's primary key ``(pair, timestamp)``.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from confluent_kafka import Producer

from flows._consumer import read_to_end
from infra._procs import die_with_parent, free_port
from infra.jars import ensure_jars
from infra.java import find_java
from infra.kafka_broker import _LOG4J as KAFKA_LOG4J

CONNECTOR = "io.debezium.connector.jdbc.JdbcSinkConnector"
PRIMARY_KEY = ("pair", "timestamp")
# Timestamps travel as Debezium's ZonedTimestamp (ISO-8601 text with its offset), which the
# sink binds as timestamptz: no time-zone guess between Connect, the JVM and the session.
_FIELDS = [
    {"field": "pair", "type": "string", "optional": False},
    {"field": "timestamp", "type": "string", "optional": False,
     "name": "io.debezium.time.ZonedTimestamp", "version": 1},
    {"field": "last", "type": "double", "optional": False},
    {"field": "bid", "type": "double", "optional": True},
    {"field": "ask", "type": "double", "optional": True},
    {"field": "volume_24h", "type": "double", "optional": True},
]  # fmt: skip
_SCHEMA = json.dumps(
    {"type": "struct", "name": "cryptoviz.rawticker", "optional": False, "fields": _FIELDS},
    separators=(",", ":"),
)
_VERSIONED = re.compile(r"^(?P<name>.+?)-(?P<version>\d[\w.\-]*)\.jar$")
VERSIONED_JARS = ("connect-runtime", "debezium-connector-jdbc", "postgresql", "hibernate-core")


def envelope(payload: bytes) -> bytes:
    """One producer-shaped ticker message as Connect JSON with its schema envelope."""
    msg = json.loads(payload)
    row = {
        "pair": msg["pair"],
        "timestamp": datetime.fromtimestamp(msg["timestamp"], UTC).isoformat(),
        "last": msg["last"],
        "bid": msg.get("bid"),
        "ask": msg.get("ask"),
        "volume_24h": msg.get("volume_24h"),
    }
    return f'{{"schema":{_SCHEMA},"payload":{json.dumps(row, separators=(",", ":"))}}}'.encode()


def preload_envelopes(bootstrap: str, source: str, target: str, n: int) -> int:
    """Copy the ``n`` messages of ``source`` into ``target`` as envelopes, same keys.

    Same keys and the same (librdkafka) partitioner: every envelope lands in the
    partition its message is in. Returns the number written.
    """
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1000000,
        }
    )
    written = 0
    for msg in read_to_end(bootstrap, source, timeout_s=max(60.0, n / 5000)):
        value = msg.value()
        assert value is not None
        while True:
            try:
                producer.produce(target, envelope(value), key=msg.key())
                break
            except BufferError:
                producer.poll(0.05)
        written += 1
        if written % 50000 == 0:
            producer.poll(0)
    producer.flush(120)
    return written


@dataclass(frozen=True, slots=True)
class ConnectPeer:
    """How to start one standalone Connect worker with the JDBC sink on a topic."""

    jars: Path
    java: Path
    bootstrap: str
    topic: str
    batch_size: int
    """Records per write: our worker's (``IngestSettings.batch_size``)."""
    heap_mb: int = 2048
    """connect-standalone.sh's default heap (-Xmx2G)."""

    @classmethod
    def prepare(cls, cache_dir: Path, bootstrap: str, topic: str, batch_size: int) -> ConnectPeer:
        """Fetch the pinned jars once (Maven, ``infra/jars/connect/pom.xml``)."""
        return cls(ensure_jars("connect", cache_dir), find_java(), bootstrap, topic, batch_size)

    def versions(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for jar in self.jars.glob("*.jar"):
            match = _VERSIONED.match(jar.name)
            if match and match["name"] in VERSIONED_JARS:
                found[match["name"]] = match["version"]
        out = subprocess.run(
            [str(self.java), "-version"], capture_output=True, text=True, check=False
        )
        found["java"] = (out.stderr or out.stdout).splitlines()[0] if out.returncode == 0 else "?"
        return dict(sorted(found.items()))

    def write_config(
        self, workdir: Path, database_url: str, group_tag: str, log: Path
    ) -> list[Path]:
        """The worker's and the connector's properties; the same ``group_tag`` resumes."""
        workdir.mkdir(parents=True, exist_ok=True)
        db = psycopg.conninfo.conninfo_to_dict(database_url)
        host, port = db.get("host", "127.0.0.1"), db.get("port", 5432)
        jdbc = f"jdbc:postgresql://{host}:{port}/{db['dbname']}"
        worker = {
            "bootstrap.servers": self.bootstrap,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "true",
            "offset.storage.file.filename": str(workdir / "connect.offsets"),
            "listeners": f"http://127.0.0.1:{free_port()}",
            # Connectors are on the classpath (one jar folder), not in a plugin.path; found
            # through their ServiceLoader manifests, not by scanning every class (slow).
            "plugin.discovery": "service_load",
            # A SIGKILLed member holds its partitions until its session expires: 6 s (the
            # broker's minimum) instead of 45 s, so the restart test does not wait on it.
            "consumer.session.timeout.ms": "6000",
            "consumer.heartbeat.interval.ms": "2000",
            # The sink's batch.size is capped by what one poll returns (its docs).
            "consumer.max.poll.records": str(self.batch_size),
        }
        connector = {
            "name": f"cryptoviz-peers-{group_tag}",
            "connector.class": CONNECTOR,
            "tasks.max": "1",
            "topics": self.topic,
            "connection.url": jdbc,
            "connection.username": str(db.get("user", "postgres")),
            "connection.password": str(db.get("password", "")),
            "insert.mode": "upsert",
            "primary.key.mode": "record_value",
            "primary.key.fields": ",".join(PRIMARY_KEY),
            "schema.evolution": "none",
            "collection.name.format": "ticker_data",
            "delete.enabled": "false",
            # Throughput settings the connector documents for PostgreSQL: batches as large as
            # our worker's, written as one INSERT ... SELECT FROM unnest(...) ON CONFLICT per
            # batch instead of one JDBC-batched statement per record.
            "batch.size": str(self.batch_size),
            "dialect.postgres.unnest.insert.enabled": "true",
        }
        log4j = workdir / "log4j2.properties"
        # The broker's log settings: warnings and errors, to one file.
        log4j.write_text(KAFKA_LOG4J.format(log=log))
        paths = []
        for name, props in (("worker", worker), ("connector", connector)):
            path = workdir / f"{name}.properties"
            path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
            paths.append(path)
        return paths

    def start(
        self, workdir: Path, database_url: str, group_tag: str, log: Path
    ) -> subprocess.Popen[bytes]:
        """One Connect worker; its log (and the JVM's own output) appended to ``log``."""
        worker, connector = self.write_config(workdir, database_url, group_tag, log)
        with log.open("ab") as out:
            return subprocess.Popen(
                [
                    str(self.java),
                    f"-Xmx{self.heap_mb}m",
                    "-XX:+UseG1GC",
                    f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
                    "-cp",
                    f"{self.jars}/*",
                    "org.apache.kafka.connect.cli.ConnectStandalone",
                    str(worker),
                    str(connector),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )
