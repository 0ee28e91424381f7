"""Print the forecast accuracy report, per coin, horizon and model, for a time range.

    python -m spark_batch.report --last 24h            # trailing window (default 24h)
    python -m spark_batch.report --from 2026-01-01T00:00:00Z --to 2026-01-02T00:00:00Z
        [--horizon 300] [--database-url URL] [--quote USD] [--no-backfill] [--json]

Covers the forecasts issued in ``[from, to)`` (``--last D``: the trailing ``D`` up
to now; ``90m``, ``24h``, ``7d``) whose actual price is known. The actual prices
are filled in first (``--no-backfill`` skips that), so the report is complete
even when the analytics job is not running. The measures are those of the
offline backtest (``bench/backtest.py``), from the same code: MAE, RMSE, skill
against the naive forecast, directional accuracy, and per interval level the
coverage, mean width and interval score; see :mod:`spark_batch.accuracy`.
Exit status: 0, 1 when the database fails, 2 for bad arguments (the scheme
of :mod:`infra.cli`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg

from handlers import ConfigError
from infra.cli import ExitCode, run_program
from spark_batch.accuracy import NAIVE, SHOWN_FIRST, Accuracy, accuracy, fetch_scored
from spark_batch.backfill import backfill_actual_prices
from spark_batch.timeutil import parse_iso


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([mhd])$")
_UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> timedelta:
    """``90m``, ``24h``, ``7d`` -> timedelta."""
    m = _DURATION.match(text.strip())
    if m is None or float(m[1]) <= 0:
        raise ValueError(f"{text!r} is not a duration such as 90m, 24h or 7d")
    return timedelta(seconds=float(m[1]) * _UNITS[m[2]])


def _interval_cells(r: Accuracy, levels: Sequence[float]) -> str:
    cells = []
    for level in levels:
        i = r.interval(level)
        if i is None:
            cells.append(f"{'-':>6} {'-':>12} {'-':>12}")
        else:
            cells.append(f"{i.coverage:>6.3f} {i.mean_width:>12.6g} {i.interval_score:>12.6g}")
    return "  ".join(cells)


def format_report(rows: Sequence[Accuracy], start: datetime, end: datetime) -> str:
    """The report as aligned text: per coin and horizon, the models, shown-first, naive."""
    head = f"forecast accuracy for forecasts issued in [{start.isoformat()}, {end.isoformat()})"
    if not rows:
        return head + "\nno forecast in this range has a known actual price yet\n"
    levels = sorted({i.level for r in rows for i in r.intervals if i.level >= 0.75})
    level_heads = "  ".join(
        f"{'cov' + format(lv * 100, 'g'):>6} {'width':>12} {'int. score':>12}" for lv in levels
    )
    header = (
        f"{'coin':<6} {'h':>4} {'model':<21} {'n':>6} {'MAE':>12} {'RMSE':>12} "
        f"{'skill':>8} {'dir':>6}  {level_heads}"
    )
    lines = [head, header, "-" * len(header)]
    for r in rows:
        skill = "(base)" if r.model == NAIVE else _fmt(r.skill_vs_naive, "+.4f")
        lines.append(
            f"{r.symbol:<6} {r.horizon_s // 60:>3}m {r.model:<21} {r.predictions:>6} "
            f"{r.mae:>12.6g} {r.rmse:>12.6g} {skill:>8} "
            f"{_fmt(r.directional_accuracy, '.3f'):>6}  {_interval_cells(r, levels)}"
        )
    lines.append(
        f"skill = 1 - MAE / naive MAE (naive: the price stays); dir: share of right up/down "
        f"calls where the price moved; cov: share of actual prices inside the interval of that "
        f"nominal level; int. score: mean interval (Winkler) score, lower is better; "
        f"{SHOWN_FIRST}: the model flagged to show first when each forecast was issued."
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spark_batch.report",
        description="Forecast accuracy per coin, horizon and model.",
    )
    parser.add_argument("--from", dest="start", help="ISO-8601 with zone")
    parser.add_argument("--to", dest="end", help="ISO-8601 with zone")
    parser.add_argument(
        "--last", help="trailing window up to now instead of --from/--to (default 24h)"
    )
    parser.add_argument("--horizon", type=int, help="only this horizon, in seconds")
    parser.add_argument("--database-url", help="default: $DATABASE_URL")
    parser.add_argument("--quote", help="quote currency of the priced pairs (default: settings)")
    parser.add_argument("--no-backfill", action="store_true", help="do not fill actual prices")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    return run_program("report", lambda: _report(args))


def _report(args: argparse.Namespace) -> int:
    try:
        if args.start is not None or args.end is not None:
            if args.last is not None or args.start is None or args.end is None:
                raise ValueError("give --from and --to together, or --last")
            start, end = parse_iso(args.start), parse_iso(args.end)
        else:
            end = datetime.now(UTC)
            start = end - parse_duration(args.last or "24h")
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
            rows = accuracy(fetch_scored(conn, start, end, args.horizon))
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
