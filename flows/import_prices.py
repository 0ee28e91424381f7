"""Load exchange candle files into the database as price history and warm the models.

    python -m flows.import_prices [FILE.csv ...] [--database-url URL]
    make import [FILES="a.csv b.csv"]

Each 1-minute candle (``datetime,open,high,low,close[,volume]``) becomes the four
ticks the replay producer plays for it (:func:`handlers.candle_ticks`: open at +1 s,
the extremes at +20 s and +40 s in the candle's direction, close at +59 s), at the
market's own time, in ``ticker_data``: pair from the file name (``BTCUSDT`` ->
``BTC/USD``, or ``BTC/USDT`` with ``CRYPTOVIZ_CANDLE_PAIRS=file``), ``source``
``history:<file name without .csv>``. A replay of the same file on its original
clock (``CRYPTOVIZ_REPLAY_CLOCK=original``) writes the very same rows.

Idempotent: the rows are written with the ingestion sink's writer
(:class:`flows._pg_writer.BatchWriter`), so ``ticker_data``'s key (pair, timestamp)
keeps a second import, or an import after such a replay, from adding anything; the
summary says how many rows were added and how many were already there. A progress
line follows each file (rewritten in place on a terminal). A row that is no candle
(or that the database refuses) is reported with its line number and the reason,
the rest is imported, and the exit status is 1.

Default files: the real month of ``../shared/fixtures/real/market``. Database:
``DATABASE_URL``, else the embedded server of ``make up``'s state directory: the
running one when ``make up`` runs (left running), else started for the import,
migrated, and stopped at the end. Exit statuses: :mod:`infra.cli`.

After a file's ticks are written, the import warms the forecast models with the
very code the Spark job runs (:func:`warm_models`): the 1-minute bars of the same
ticks (:func:`spark_batch.models.bars_from_ticks`, the bars Spark's aggregate
builds), fed to :func:`spark_batch.prediction.apply_bars` with the job's settings
(:mod:`spark_batch.settings`), a day of bars per transaction, for the coin Spark
prices the pair under (:func:`spark_batch.symbols.tick_symbol`: ``BTC/USD`` ->
``BTC`` when ``CRYPTOVIZ_PREDICTION_QUOTE`` is ``USD``; a pair of another quote warms
nothing, as Spark ignores its ticks). ``forecast_state`` then holds the coin's
state at the file's last minute, ``prediction_data`` the forecasts of every minute
of the file, with their actual prices (the job's backfill) where the file has them,
so the charts, the accuracy report and the live forecasts start warm. Bars at or
before the stored state's last bar are skipped, as Spark skips a replayed batch: a
second import changes no forecast and no state, and a file older than the state
warms nothing. A progress line per file and a "model state" line follow its
summary.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import psycopg

from flows._pg_writer import BatchWriter
from flows._tables import TICKER
from flows.producers.replay import candle_file_pairs, read_candle_file
from flows.producers.settings import SHARED_MARKET, ReplaySettings, load_producer_settings
from handlers import Candle, ConfigError, TickerRecord, candle_ticks, history_source, pct_change
from infra.cli import ExitCode, run_program
from infra.settings import Settings, load_settings
from spark_batch.backfill import backfill_actual_prices
from spark_batch.models import STATE_VERSION, Bar, bars_from_ticks
from spark_batch.prediction import apply_bars, model_config
from spark_batch.settings import SparkSettings, load_spark_settings
from spark_batch.symbols import load_symbols, tick_symbol
from spark_batch.timeutil import from_micros, to_micros
from spark_batch.writer import Database

MAX_REPORTED = 20
"""Refused rows printed one by one per file; the rest are counted."""
WARM_BARS_PER_TRANSACTION = 1440
"""Bars applied to the models per transaction: a day. Each transaction leaves the
state matching the forecasts (as a Spark micro-batch does), so progress shows and
an interrupted import continues from the stored state when run again."""
_BAR_US = 60_000_000


@dataclass(slots=True)
class WarmReport:
    """What warming the models with a file's bars did."""

    symbol: str | None
    """The coin whose forecasts the file's pair feeds (``None``: the job prices no such pair)."""
    quote: str
    bars: int = 0
    applied: int = 0
    """Bars newer than the state the import found (older ones are skipped, as Spark skips them)."""
    forecasts: int = 0
    actual: int = 0
    """Forecasts given their actual price from the imported ticks."""
    state_end: datetime | None = None
    """The end of the state's last bar after the import."""

    def summary(self, pair: str) -> str:
        if self.symbol is None:
            return f"model state: none ({pair} is not a COIN/{self.quote} pair the forecasts price)"
        if self.state_end is None:
            return f"model state of {self.symbol}: none (no bar)"
        last = self.state_end - timedelta(microseconds=_BAR_US)
        return (
            f"model state of {self.symbol}: last bar {last:%Y-%m-%d %H:%M} UTC; "
            f"{self.applied:,} of {self.bars:,} bars applied, {self.forecasts:,} forecasts "
            f"added, {self.actual:,} given their actual price"
        )


@dataclass(slots=True)
class FileReport:
    path: Path
    pair: str
    source: str
    candles: int = 0
    ticks: int = 0
    added: int = 0
    already: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(line number, reason) of rows that are no candle or that the database refused."""
    first: datetime | None = None
    last: datetime | None = None
    written: list[tuple[int, float]] = field(default_factory=list, repr=False)
    """``(µs, price)`` of the ticks now in ``ticker_data`` (added or already there), the
    tick stream Spark reads: what the models are warmed with."""

    def summary(self) -> str:
        span = (
            f", {self.first:%Y-%m-%d %H:%M} .. {self.last:%Y-%m-%d %H:%M} UTC"
            if self.first and self.last
            else ""
        )
        return (
            f"imported {self.path.name} as {self.pair} (source {self.source}): "
            f"{self.candles:,} candles -> {self.ticks:,} ticks{span}; {self.added:,} added, "
            f"{self.already:,} already there, {len(self.refused):,} rows refused"
        )


class Progress:
    """One progress line per file: rewritten in place on a terminal, else every 10 %."""

    def __init__(
        self, name: str, total: int, out: TextIO, unit: str = "candles", done: str = "ticks added"
    ) -> None:
        self._name = name
        self._unit = unit
        self._done = done
        self._total = max(total, 1)
        self._out = out
        self._tty = out.isatty()
        self._shown = -1
        self._last = 0.0

    def __call__(self, done: int, added: int) -> None:
        pct = min(100, done * 100 // self._total)
        line = (
            f"{self._name}: {done:,}/{self._total:,} {self._unit} ({pct} %), {added:,} {self._done}"
        )
        if self._tty:
            now = time.monotonic()
            if now - self._last >= 0.2 or pct == 100:
                self._last = now
                print(f"\r{line}", end="\n" if pct == 100 else "", file=self._out, flush=True)
        elif pct // 10 > self._shown // 10 or (pct == 100 and self._shown < 100):
            self._shown = pct
            print(line, file=self._out, flush=True)


def _count_rows(path: Path) -> int:
    with path.open("rb") as fh:
        return max(sum(1 for line in fh if line.strip()) - 1, 0)


def import_file(
    path: Path, pair: str, writer: BatchWriter, batch_size: int, out: TextIO | None = None
) -> FileReport:
    """Import one candle file's ticks (see the module docstring); its report."""
    report = FileReport(path=path, pair=pair, source=history_source(path.stem))
    progress = Progress(f"import {path.name}", _count_rows(path), out or sys.stdout)
    batch: list[TickerRecord] = []
    lines: list[int] = []
    previous: Decimal | None = None

    def flush() -> None:
        result = writer.write(batch)
        report.added += result.inserted
        report.already += result.duplicates
        report.refused += [(lines[i], reason) for i, reason in result.refused]
        refused = {i for i, _ in result.refused}
        report.written += [
            (to_micros(r.time), float(r.last)) for i, r in enumerate(batch) if i not in refused
        ]
        batch.clear()
        lines.clear()

    for number, candle in read_candle_file(path):
        if not isinstance(candle, Candle):
            report.refused.append((number, candle.reason))
            continue
        report.candles += 1
        report.first = report.first or candle.start
        report.last = candle.start
        for at, price in candle_ticks(candle):
            # pct_change as the replay producer sets it (from the previous tick of the
            # file's pair), so an import and a replay on the original clock write one row.
            change = pct_change(previous, price)
            previous = price
            batch.append(
                TickerRecord(
                    pair=pair, time=at, last=price, pct_change=change, source=report.source
                )
            )
            lines.append(number)
        if len(batch) >= batch_size:
            report.ticks += len(batch)
            flush()
            progress(report.candles, report.added)
    report.ticks += len(batch)
    flush()
    progress(report.candles + len(report.refused), report.added)
    return report


def _state_end(db: Database, symbol: str) -> datetime | None:
    row = db.transaction(
        lambda conn: conn.execute(
            "SELECT bar_end FROM forecast_state WHERE crypto_symbol = %s AND state_version = %s",
            (symbol, STATE_VERSION),
        ).fetchone()
    )
    return None if row is None else row[0]


def warm_models(
    db: Database,
    symbol: str | None,
    ticks: Sequence[tuple[int, float]],
    spark: SparkSettings,
    *,
    out: TextIO | None = None,
) -> WarmReport:
    """Run the forecast models over the 1-minute bars of ``ticks`` (µs, price), as Spark does.

    The bars are :func:`spark_batch.models.bars_from_ticks`'s (the bars Spark's
    aggregate builds from the same ticks), applied with the job's own
    :func:`spark_batch.prediction.apply_bars` and ``model_config`` of the job's
    settings, :data:`WARM_BARS_PER_TRANSACTION` per transaction: forecasts into
    ``prediction_data``, the state into ``forecast_state``. In the same transaction
    the job's :func:`spark_batch.backfill.backfill_actual_prices` gives those
    forecasts whose target is in the history their actual price (the running job
    only looks back two days). Bars at or before the stored state's last bar are
    skipped, so a second import changes nothing.
    """
    prediction = spark.prediction
    report = WarmReport(symbol=symbol, quote=prediction.quote)
    if symbol is None:
        return report
    cfg = model_config(prediction)
    reach_us = max(prediction.horizons_s) * 1_000_000
    bars: list[Bar] = bars_from_ticks(ticks)
    report.bars = len(bars)
    before = _state_end(db, symbol)
    since = None if before is None else to_micros(before)
    report.applied = sum(1 for b in bars if since is None or b.end_us > since)
    progress = Progress(
        f"warm {symbol}", len(bars), out or sys.stdout, unit="bars", done="forecasts added"
    )

    def apply(conn: psycopg.Connection[Any], chunk: Sequence[Bar]) -> tuple[int, int]:
        rows = apply_bars(conn, {symbol: chunk}, cfg)
        filled = backfill_actual_prices(
            conn,
            quote=prediction.quote,
            max_staleness_s=spark.backfill.max_staleness_s,
            since=from_micros(chunk[0].end_us),
            until=from_micros(chunk[-1].end_us + reach_us + 1),
        )
        return len(rows), filled

    for start in range(0, len(bars), WARM_BARS_PER_TRANSACTION):
        chunk = bars[start : start + WARM_BARS_PER_TRANSACTION]
        added, filled = db.transaction(partial(apply, chunk=chunk))
        report.forecasts += added
        report.actual += filled
        progress(start + len(chunk), report.forecasts)
    report.state_end = _state_end(db, symbol)
    return report


def default_files() -> tuple[Path, ...]:
    return tuple(sorted(SHARED_MARKET.glob("*.csv"))) if SHARED_MARKET.is_dir() else ()


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[str]:
    """The database URL for the import; an embedded server started here is stopped after."""
    from infra.migrate import migrate
    from infra.postgres_server import EmbeddedPostgres
    from infra.stack import Stack

    url = settings.database.url
    stack: Stack | None = None
    if url is None:
        url = EmbeddedPostgres(settings.state_dir / "postgres").running_url()
        if url is not None:
            print(f"using the running embedded PostgreSQL ({url})", flush=True)
    if url is None:
        stack = Stack(settings)
        url = stack.start(kafka=False).database.url
        assert url is not None
    try:
        migrate(url)
        yield url
    finally:
        if stack is not None:
            stack.stop()


def _import(args: argparse.Namespace) -> int:
    settings = load_settings()
    files = tuple(Path(f) for f in args.files) or default_files()
    if not files:
        raise ConfigError(
            f"no candle file named, and {SHARED_MARKET} is absent: "
            "python -m flows.import_prices FILE.csv ..."
        )
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ConfigError(f"not a file: {', '.join(missing)}")
    replay = load_producer_settings().replay
    pairs = candle_file_pairs(
        ReplaySettings(files=files, candle_pairs=replay.candle_pairs), settings.coin_table()
    )
    unknown = [f.name for f in files if f not in pairs]
    if unknown:
        raise ConfigError(f"not candle files (.csv): {', '.join(unknown)}")
    if args.database_url:
        settings = settings.with_servers(database=args.database_url)
    spark = load_spark_settings()
    maps = load_symbols(settings.coins_file).maps
    refused = 0
    with _database(settings) as url:
        writer = BatchWriter(url, TICKER)
        db = Database(url)
        try:
            for path in files:
                report = import_file(path, pairs[path], writer, settings.ingest.batch_size)
                print(report.summary(), flush=True)
                symbol = tick_symbol(pairs[path], maps, spark.prediction.quote)
                warm = warm_models(db, symbol, report.written, spark)
                print(warm.summary(report.pair), flush=True)
                for number, reason in report.refused[:MAX_REPORTED]:
                    print(f"{path.name}:{number}: refused: {reason}", file=sys.stderr)
                if len(report.refused) > MAX_REPORTED:
                    print(f"{path.name}: ... and {len(report.refused) - MAX_REPORTED} more "
                          "refused rows", file=sys.stderr)  # fmt: skip
                refused += len(report.refused)
        finally:
            writer.close()
            db.close()
    return ExitCode.FAILED if refused else ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.import_prices", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "files", nargs="*", help="candle CSV files (default: ../shared/fixtures/real/market)"
    )
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL or embedded")
    args = parser.parse_args(argv)
    return run_program("import_prices", lambda: _import(args))


if __name__ == "__main__":
    sys.exit(main())
