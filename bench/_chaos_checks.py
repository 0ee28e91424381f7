"""What the chaos run compares: table digests, dead letters, alerts on the topic.

A table digest is its row count and an order-independent checksum: the md5 of
the sorted md5s of its rows, over every column except those that record *when*
something happened on this run's wall clock (ingest times, Kafka append times,
``updated_at``...). Everything else, including every price, score, window and
prediction, must be identical between the reference and the faulted run.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql

WALL_CLOCK_COLUMNS = frozenset({"ingest_time", "kafka_time", "updated_at", "detected_at",
                                "created_at"})  # fmt: skip
PER_TABLE_EXCLUDED: dict[str, frozenset[str]] = {
    # Saved feeds carry no receive time: the replay stamps articles when it reads them.
    "article_data": frozenset({"receive_time"}),
    # Which micro-batch saw a late article, and its watermark, depend on batch timing.
    "analytics_late_events": frozenset({"batch_id", "watermark"}),
}
_WALL_CLOCK = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
SKIPPED_TABLES = frozenset({"schema_migrations", "analytics_watermarks"})
"""Bookkeeping, not results: migration history and the late query's batch cursor."""


class Digest(msgspec.Struct, frozen=True):
    rows: int
    checksum: str


def table_columns(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, list[str]]:
    """Compared columns of every compared table in ``public``, in column order."""
    rows = conn.execute(
        """
        SELECT c.table_name, c.column_name
        FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
        ORDER BY c.table_name, c.ordinal_position
        """
    ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        assert isinstance(table, str)
        assert isinstance(column, str)
        if table in SKIPPED_TABLES or column in WALL_CLOCK_COLUMNS:
            continue
        if column in PER_TABLE_EXCLUDED.get(table, frozenset()):
            continue
        out.setdefault(table, []).append(column)
    return out


def table_digests(conninfo: str) -> dict[str, Digest]:
    with psycopg.connect(conninfo) as conn:
        digests: dict[str, Digest] = {}
        for table, columns in table_columns(conn).items():
            row = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
            query = sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') "
                "FROM (SELECT md5({row}) AS h FROM {table}) AS hashed"
            ).format(row=row, table=sql.Identifier(table))
            result = conn.execute(query).fetchone()
            assert result is not None
            digests[table] = Digest(rows=int(result[0]), checksum=str(result[1]))
        return digests


def table_counts(conninfo: str, tables: tuple[str, ...]) -> dict[str, int]:
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        return {
            t: int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t)))
                   .fetchone()[0])  # type: ignore[index]
            for t in tables
        }  # fmt: skip


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> Iterator[
    tuple[int, int, bytes | None, list[tuple[str, bytes]]]
]:  # fmt: skip
    """Every message of ``topic`` now: (partition, offset, value, headers)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "cryptoviz-chaos-check",
                         "enable.auto.commit": False, "log_level": 3})  # fmt: skip
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        ends: dict[int, int] = {}
        assign: list[TopicPartition] = []
        for partition in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout_s)
            if high > low:
                ends[partition] = high
                assign.append(TopicPartition(topic, partition, low))
        if not assign:
            return
        consumer.assign(assign)
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(ends)} stalled")
            # A short wait: consume() blocks until it has all 1000 or the timeout passes.
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is not None:
                    continue
                partition, offset = msg.partition(), msg.offset()
                assert partition is not None
                assert offset is not None
                headers: list[tuple[str, bytes]] = []
                for header in msg.headers() or []:
                    name, raw = header[0], header[1]
                    value = raw.encode() if isinstance(raw, str) else bytes(raw or b"")
                    headers.append((str(name), value))
                yield partition, offset, msg.value(), headers
                if offset + 1 >= ends.get(partition, 0):
                    ends.pop(partition, None)
    finally:
        consumer.close()


class DeadLetters(msgspec.Struct, frozen=True):
    records: int
    """Dead-letter records on the topic (a crash may repeat one: at-least-once)."""
    distinct: int
    """Distinct source messages, by (topic, partition, offset)."""
    by_reason: dict[str, int]
    """Distinct source messages per ``source topic: reason``."""


def dead_letters(bootstrap: str, topic: str) -> DeadLetters:
    seen: dict[tuple[str, str, str], str] = {}
    records = 0
    for _, _, _, headers in read_topic(bootstrap, topic):
        records += 1
        h = {k: v.decode(errors="replace") for k, v in headers}
        coords = (h.get("dlq.source.topic", "?"), h.get("dlq.source.partition", "?"),
                  h.get("dlq.source.offset", "?"))  # fmt: skip
        # "more than 1 day after now (<the wall clock>)": the same reason on any run.
        reason = _WALL_CLOCK.sub("<now>", h.get("dlq.reason", "?"))
        seen[coords] = f"{coords[0]}: {reason}"
    return DeadLetters(records=records, distinct=len(seen), by_reason=dict(Counter(seen.values())))


class _AlertKey(msgspec.Struct):
    pair: str
    timestamp: float
    alert_type: str


def alert_repeats(bootstrap: str, topic: str) -> tuple[int, int]:
    """(alert messages on the topic, how many of them repeat an earlier key)."""
    decoder = msgspec.json.Decoder(_AlertKey)
    keys: Counter[tuple[str, float, str]] = Counter()
    for _, _, value, _ in read_topic(bootstrap, topic):
        if value is None:
            continue
        try:
            key = decoder.decode(value)
        except msgspec.DecodeError:
            continue  # junk written by the chaos run itself
        keys[(key.pair, key.timestamp, key.alert_type)] += 1
    total = sum(keys.values())
    return total, total - len(keys)


def end_offsets(bootstrap: str, topics: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """High watermark of every partition: ``{topic: {"0": 123, ...}}`` (Spark's notation)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "cryptoviz-chaos-check",
                         "log_level": 3})  # fmt: skip
    try:
        out: dict[str, dict[str, int]] = {}
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=30).topics[topic]
            out[topic] = {
                str(p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in meta.partitions
            }
        return out
    finally:
        consumer.close()


def spark_lagging(checkpoints: Path, ends: dict[str, dict[str, int]]) -> list[str]:
    """Queries whose last *committed* batch has not read up to ``ends`` (empty: caught up).

    A batch's end offsets are the last line of ``offsets/<batch>``; it counts only
    once ``commits/<batch>`` exists, i.e. its output was written.
    """
    lagging: list[str] = []
    for query in sorted(p for p in checkpoints.iterdir() if p.is_dir()):
        commits = [int(c.name) for c in (query / "commits").glob("[0-9]*")]
        if not commits:
            lagging.append(query.name)
            continue
        lines = (query / "offsets" / str(max(commits))).read_text().splitlines()
        read: dict[str, dict[str, int]] = json.loads(lines[-1])
        for topic, partitions in read.items():
            if any(partitions.get(p, 0) < end for p, end in ends.get(topic, {}).items()):
                lagging.append(query.name)
                break
    return lagging
