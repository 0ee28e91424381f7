"""Print the prediction accuracy report for a time range.

    python -m spark_batch.report --from 2026-01-01T00:00:00Z --to 2026-01-02T00:00:00Z
        [--database-url URL] [--quote USD] [--no-backfill] [--json]

Covers the predictions made in ``[from, to)`` whose actual price is known. The
actual prices are filled in first (``--no-backfill`` skips that), so the report
is complete even when the analytics job is not running. See
:mod:`spark_batch.accuracy` for the definitions. Exit status: 0, 1 when the
database fails, 2 for bad arguments (the scheme of :mod:`infra.cli`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime

import msgspec
import psycopg

from handlers import ConfigError
from infra.cli import ExitCode, run_program
from spark_batch.accuracy import NAIVE, Accuracy, accuracy, fetch_scored
from spark_batch.backfill import backfill_actual_prices
from spark_batch.timeutil import parse_iso


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_report(rows: Sequence[Accuracy], start: datetime, end: datetime) -> str:
    """The report as aligned text, one line per (coin, model), naive forecast last per coin."""
    head = f"prediction accuracy for predictions made in [{start.isoformat()}, {end.isoformat()})"
    if not rows:
        return head + "\nno prediction in this range has a known actual price yet\n"
    header = (
        f"{'coin':<6} {'model':<18} {'n':>6} {'MAE':>14} {'MAPE %':>9} {'direction':>9} "
        f"{'coverage':>8} {'nominal':>7} {'skill vs naive':>14}"
    )
    lines = [head, header, "-" * len(header)]
    for r in rows:
        skill = "(baseline)" if r.model == NAIVE else _fmt(r.skill_vs_naive, "+.3f")
        lines.append(
            f"{r.symbol:<6} {r.model:<18} {r.predictions:>6} {_fmt(r.mae, '.6f'):>14} "
            f"{_fmt(r.mape_pct, '.4f'):>9} {_fmt(r.directional_accuracy, '.3f'):>9} "
            f"{_fmt(r.coverage, '.3f'):>8} {_fmt(r.nominal_level, '.3f'):>7} {skill:>14}"
        )
    lines.append(
        "direction: share of correct up/down calls where the price moved; coverage: share of "
        "actual prices inside the interval (compare with nominal); skill = 1 - MAE / naive MAE."
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spark_batch.report", description="Prediction accuracy per model and coin."
    )
    parser.add_argument("--from", dest="start", required=True, help="ISO-8601 with zone")
    parser.add_argument("--to", dest="end", required=True, help="ISO-8601 with zone")
    parser.add_argument("--database-url", help="default: $DATABASE_URL")
    parser.add_argument("--quote", help="quote currency of the priced pairs (default: settings)")
    parser.add_argument("--no-backfill", action="store_true", help="do not fill actual prices")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    return run_program("report", lambda: _report(args))


def _report(args: argparse.Namespace) -> int:
    try:
        start, end = parse_iso(args.start), parse_iso(args.end)
    except ValueError as exc:
        raise ConfigError(f"bad time: {exc}") from None
    if end <= start:
        raise ConfigError("--to must be after --from")

    from infra.settings import load_settings
    from spark_batch.settings import load_spark_settings

    url = args.database_url or load_settings().database.url
    spark_cfg = load_spark_settings()
    if not url:
        raise ConfigError("no database; pass --database-url or set DATABASE_URL")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            if not args.no_backfill:
                with conn.transaction():
                    backfill_actual_prices(
                        conn,
                        quote=args.quote or spark_cfg.prediction.quote,
                        max_staleness_s=spark_cfg.backfill.max_staleness_s,
                        since=start,
                    )
            rows = accuracy(fetch_scored(conn, start, end))
    except psycopg.Error as exc:
        print(f"report: database error: {exc}".strip(), file=sys.stderr)
        return ExitCode.FAILED
    if args.json:
        sys.stdout.write(msgspec.json.encode(rows).decode() + "\n")
    else:
        sys.stdout.write(format_report(rows, start, end))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
