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
from collections import Counter
from pathlib import Path

import msgspec
import psycopg
from psycopg import sql

from bench._kafka import Kafka
from flows._consumer import read_to_end
from flows.producers.alert_log import alert_key

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
            row = _row_text(columns)
            query = sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') "
                "FROM (SELECT md5({row}) AS h FROM {table}) AS hashed"
            ).format(row=row, table=sql.Identifier(table))
            result = conn.execute(query).fetchone()
            assert result is not None
            digests[table] = Digest(rows=int(result[0]), checksum=str(result[1]))
        return digests


def _row_text(columns: list[str]) -> sql.Composed:
    return sql.SQL("ROW({})::text").format(sql.SQL(", ").join(map(sql.Identifier, columns)))


def dump_rows(conninfo: str, folder: Path) -> None:
    """Every compared table's rows as text (compared columns only), sorted, one file a
    table in ``folder``: what :func:`row_differences` reads when two digests differ."""
    folder.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(conninfo) as conn:
        for table, columns in table_columns(conn).items():
            query = sql.SQL("SELECT {row} AS r FROM {table} ORDER BY r").format(
                row=_row_text(columns), table=sql.Identifier(table)
            )
            lines = [f"({','.join(columns)})", *(str(row[0]) for row in conn.execute(query))]
            (folder / f"{table}.txt").write_text("".join(f"{line}\n" for line in lines))


def row_differences(reference: Path, faulted: Path, table: str, limit: int = 5) -> list[str]:
    """Up to ``limit`` rows of ``table`` found only in each run's dump (:func:`dump_rows`),
    after the columns they are made of; empty when none differ or a dump is missing."""
    try:
        header, *ref_lines = (reference / f"{table}.txt").read_text().splitlines()
        _, *got_lines = (faulted / f"{table}.txt").read_text().splitlines()
    except (FileNotFoundError, ValueError):
        return []
    ref, got = Counter(ref_lines), Counter(got_lines)
    only_ref, only_got = sorted((ref - got).elements()), sorted((got - ref).elements())
    if not only_ref and not only_got:
        return []
    return [
        f"columns: {header}",
        *(f"only in the reference ({len(only_ref)}): {row}" for row in only_ref[:limit]),
        *(f"only in the faulted run ({len(only_got)}): {row}" for row in only_got[:limit]),
    ]


def table_counts(conninfo: str, tables: tuple[str, ...]) -> dict[str, int]:
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        return {
            t: int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t)))
                   .fetchone()[0])  # type: ignore[index]
            for t in tables
        }  # fmt: skip


class DeadLetters(msgspec.Struct, frozen=True):
    records: int
    """Dead-letter records on the topic (a crash may repeat one: at-least-once)."""
    distinct: int
    """Distinct source messages, by (topic, partition, offset)."""
    by_reason: dict[str, int]
    """Distinct source messages per ``source topic: reason``."""


def _text(value: str | bytes | None) -> str:
    return value if isinstance(value, str) else (value or b"").decode(errors="replace")


def dead_letters(bootstrap: str, topic: str) -> DeadLetters:
    seen: dict[tuple[str, str, str], str] = {}
    records = 0
    for msg in read_to_end(bootstrap, topic, group="cryptoviz-chaos-check", timeout_s=60):
        records += 1
        h = {str(header[0]): _text(header[1]) for header in msg.headers() or []}
        coords = (h.get("dlq.source.topic", "?"), h.get("dlq.source.partition", "?"),
                  h.get("dlq.source.offset", "?"))  # fmt: skip
        # "more than 1 day after now (<the wall clock>)": the same reason on any run.
        reason = _WALL_CLOCK.sub("<now>", h.get("dlq.reason", "?"))
        seen[coords] = f"{coords[0]}: {reason}"
    return DeadLetters(records=records, distinct=len(seen), by_reason=dict(Counter(seen.values())))


def alert_repeats(bootstrap: str, topic: str) -> tuple[int, int]:
    """(alert messages on the topic, how many of them repeat an earlier key)."""
    tail = read_to_end(bootstrap, topic, group="cryptoviz-chaos-check", timeout_s=60)
    # Junk the chaos run itself wrote is no alert: alert_key gives None and it is left out.
    keys = Counter(key for key in (alert_key(m.value()) for m in tail) if key is not None)
    total = sum(keys.values())
    return total, total - len(keys)


def end_offsets(bootstrap: str, topics: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """High watermark of every partition: ``{topic: {"0": 123, ...}}`` (Spark's notation)."""
    kafka = Kafka(bootstrap, list(topics))
    try:
        return {t: {str(p): end for p, end in ends.items()} for t, ends in kafka.high().items()}
    finally:
        kafka.close()


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
