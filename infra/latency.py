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

Rows are told apart by their ``source`` (``handlers._origin``): the report's figures
are those of the **live** rows (the exchange feed, the synthetic market); **replayed**
rows (``replay:*``, a candle file re-timed to the replay clock) are reported apart,
their hops being the pipeline's own delays for a market played now; rows of
**recorded history** (``history:*``: imported candles, candles replayed on their
original clock, replayed Kraken captures) are left out and counted, because their
event times are months or years old and no measure of any delay. The output says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg import sql

from handlers import HISTORY_PREFIX, REPLAY_PREFIX, ConfigError
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
Reported = Literal["live", "replay"]
ORIGINS: dict[Reported, str] = {
    "live": (
        f"NOT starts_with(source, '{REPLAY_PREFIX}') "
        f"AND NOT starts_with(source, '{HISTORY_PREFIX}')"
    ),
    "replay": f"starts_with(source, '{REPLAY_PREFIX}')",
}
"""The rows each part of the report covers, by ``source`` (fixed text, never input)."""
HISTORY = f"starts_with(source, '{HISTORY_PREFIX}')"
"""Rows of recorded history: left out of every figure, counted."""


@dataclass(frozen=True, slots=True)
class HopLatency:
    table: str
    hop: str
    rows: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def _hop_query(table: str, start: str, end: str, rows: str) -> sql.Composed:
    # start/end come from HOPS, rows from ORIGINS (fixed expressions), never from input.
    delta = sql.SQL("extract(epoch FROM ({end}) - ({start})) * 1000").format(
        end=sql.SQL(end), start=sql.SQL(start)
    )
    return sql.SQL(
        "SELECT count(*), "
        "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY {d}) "
        "FROM {t} WHERE ingest_time >= %s AND ingest_time < %s AND {rows} "
        "AND ({start}) IS NOT NULL AND ({end}) IS NOT NULL"
    ).format(
        d=delta, t=sql.Identifier(table), rows=sql.SQL(rows), start=sql.SQL(start),
        end=sql.SQL(end),
    )  # fmt: skip


def grafana_panel_sql() -> str:
    """The same figures as :func:`latency_report` (the live rows), as one query for the
    Grafana panel.

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
                f"WHERE $__timeFilter(ingest_time) AND {ORIGINS['live']} AND ({start}) IS NOT NULL "
                f"AND ({end}) IS NOT NULL) x"
            )
    return "\nUNION ALL\n".join(parts)


def latency_report(
    conninfo: str, start: datetime, end: datetime, origin: Reported = "live"
) -> list[HopLatency]:
    """p50/p95/p99 of every hop for every raw table over ``[start, end)`` (by ingest
    time), over the rows of ``origin`` (``live`` or ``replay``; see the module docstring)."""
    out: list[HopLatency] = []
    with psycopg.connect(conninfo) as conn:
        for table in RAW_TABLES:
            event = EVENT_TIME[table]
            for hop, first, second in HOPS:
                query = _hop_query(table, first.format(event=event), second, ORIGINS[origin])
                row = conn.execute(query, (start, end)).fetchone()
                assert row is not None
                count, quantiles = row
                p50, p95, p99 = quantiles if quantiles is not None else (None, None, None)
                out.append(HopLatency(table, hop, int(count), p50, p95, p99))
    return out


def history_rows(conninfo: str, start: datetime, end: datetime) -> dict[str, int]:
    """Rows of recorded history per raw table over ``[start, end)``: left out of the report."""
    out: dict[str, int] = {}
    with psycopg.connect(conninfo) as conn:
        for table in RAW_TABLES:
            query = sql.SQL(
                "SELECT count(*) FROM {t} WHERE ingest_time >= %s AND ingest_time < %s AND {h}"
            ).format(t=sql.Identifier(table), h=sql.SQL(HISTORY))
            row = conn.execute(query, (start, end)).fetchone()
            out[table] = int(row[0]) if row is not None else 0
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
    live = latency_report(url, start, end, "live")
    replay = latency_report(url, start, end, "replay")
    history = history_rows(url, start, end)
    if args.json:
        body: dict[str, Any] = {
            "live": [asdict(r) for r in live],
            "replay": [asdict(r) for r in replay],
            "history_rows_left_out": history,
        }
        print(json.dumps(body, indent=2))
        return
    print(f"latency per hop, rows ingested {start.isoformat()} .. {end.isoformat()}")
    print("live rows (the exchange feed, the synthetic market):")
    print(render(live) if any(r.rows for r in live) else "  none")
    if any(r.rows for r in replay):
        print(
            f"replayed rows, reported apart (source {REPLAY_PREFIX}*: a candle file re-timed "
            "to the replay clock; its hops are the pipeline's own delays):"
        )
        print(render(replay))
    left_out = sum(history.values())
    if left_out:
        print(
            f"left out: {left_out:,} rows of recorded history (source {HISTORY_PREFIX}*: "
            "imported candles, candles replayed on their original clock, replayed captures), "
            "whose event times are no delays"
        )


if __name__ == "__main__":
    sys.exit(main())
