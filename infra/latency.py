"""Per-hop latency of market events, from the timestamps stored with every row.

    python -m infra.latency [--from ISO] [--to ISO] [--json]

Every raw row records when it happened and when it passed each hop:

==========================  ===============================================
event time                  when it happened at the source: Kraken's time of a
                            tick (``exchange_time``) or trade (``timestamp``),
                            an article's publication, an alert's tick
``receive_time``            the producer read it (WebSocket, feed)
``kafka_time``              the broker appended it (LogAppendTime, migration 0005)
``ingest_time``             the ingestion transaction that wrote it started
==========================  ===============================================

so each hop is the difference of two columns, and end to end is the event time
(or the producer's receive time, when the source gives none) to ingestion. The range
selects rows by ``ingest_time`` (default: the last hour). The API's WebSocket
delivery hop is measured by the API itself (Prometheus) and traced by
OpenTelemetry; it is not stored per row.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from handlers import ConfigError
from infra.cli import run_program
from infra.settings import SettingsError, load_settings

EVENT_TIME = {
    "ticker_data": "exchange_time",  # its `timestamp` falls back to receive time (v1)
    "trade_data": "timestamp",
    "article_data": "timestamp",
    "alert_data": "timestamp",
}
RAW_TABLES = tuple(EVENT_TIME)
EVENT = "{event}"
HOPS: tuple[tuple[str, str, str], ...] = (
    ("source -> producer", EVENT, "receive_time"),
    ("producer -> kafka", "receive_time", "kafka_time"),
    ("kafka -> database", "kafka_time", "ingest_time"),
    ("end to end", f"coalesce({EVENT}, receive_time)", "ingest_time"),
)


@dataclass(frozen=True, slots=True)
class HopLatency:
    table: str
    hop: str
    rows: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def _hop_query(table: str, start: str, end: str) -> sql.Composed:
    # start/end come from HOPS (fixed expressions), never from input.
    delta = sql.SQL("extract(epoch FROM ({end}) - ({start})) * 1000").format(
        end=sql.SQL(end), start=sql.SQL(start)
    )
    return sql.SQL(
        "SELECT count(*), "
        "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY {d}) "
        "FROM {t} WHERE ingest_time >= %s AND ingest_time < %s "
        "AND ({start}) IS NOT NULL AND ({end}) IS NOT NULL"
    ).format(d=delta, t=sql.Identifier(table), start=sql.SQL(start), end=sql.SQL(end))


def grafana_panel_sql() -> str:
    """The same figures as :func:`latency_report`, as one query for the Grafana panel.

    ``infra/grafana/dashboards/latency.json`` embeds this text (a test keeps them
    equal); Grafana substitutes ``$__timeFilter`` with the dashboard's range.
    """
    parts = []
    for table in RAW_TABLES:
        for hop, first, second in HOPS:
            start, end = first.format(event=EVENT_TIME[table]), second
            parts.append(
                f"SELECT '{table}' AS data, '{hop}' AS hop, count(*) AS rows, "
                f"percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS p50_ms, "
                f"percentile_cont(0.95) WITHIN GROUP (ORDER BY d) AS p95_ms, "
                f"percentile_cont(0.99) WITHIN GROUP (ORDER BY d) AS p99_ms "
                f"FROM (SELECT extract(epoch FROM ({end}) - ({start})) * 1000 AS d FROM {table} "
                f"WHERE $__timeFilter(ingest_time) AND ({start}) IS NOT NULL "
                f"AND ({end}) IS NOT NULL) x"
            )
    return "\nUNION ALL\n".join(parts)


def latency_report(conninfo: str, start: datetime, end: datetime) -> list[HopLatency]:
    """p50/p95/p99 of every hop for every raw table over ``[start, end)`` (by ingest time)."""
    out: list[HopLatency] = []
    with psycopg.connect(conninfo) as conn:
        for table in RAW_TABLES:
            event = EVENT_TIME[table]
            for hop, first, second in HOPS:
                query = _hop_query(table, first.format(event=event), second)
                row = conn.execute(query, (start, end)).fetchone()
                assert row is not None
                count, quantiles = row
                p50, p95, p99 = quantiles if quantiles is not None else (None, None, None)
                out.append(HopLatency(table, hop, int(count), p50, p95, p99))
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render(report: list[HopLatency]) -> str:
    lines = [f"{'table':<13} {'hop':<22} {'rows':>9} {'p50 ms':>10} {'p95 ms':>10} {'p99 ms':>10}"]
    lines += [
        f"{r.table:<13} {r.hop:<22} {r.rows:>9,} {_fmt(r.p50_ms):>10} {_fmt(r.p95_ms):>10} "
        f"{_fmt(r.p99_ms):>10}"
        for r in report
        if r.rows
    ]
    return "\n".join(lines)


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone, e.g. {text}+00:00")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.latency", description=__doc__)
    parser.add_argument("--from", dest="start", type=_aware, help="ISO-8601 with zone")
    parser.add_argument("--to", dest="end", type=_aware, help="ISO-8601 with zone (default now)")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    return run_program("latency", lambda: _latency(args))


def _latency(args: argparse.Namespace) -> None:
    url = args.database_url or load_settings().database.url
    if url is None:
        raise SettingsError("set DATABASE_URL or pass --database-url")
    end: datetime = args.end or datetime.now(UTC)
    start: datetime = args.start or end - timedelta(hours=1)
    if start >= end:
        raise ConfigError("--from must be before --to")
    report = latency_report(url, start, end)
    if args.json:
        rows: list[dict[str, Any]] = [asdict(r) for r in report]
        print(json.dumps(rows, indent=2))
    else:
        print(f"latency per hop, rows ingested {start.isoformat()} .. {end.isoformat()}")
        print(render(report))


if __name__ == "__main__":
    sys.exit(main())
