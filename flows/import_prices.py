"""Load exchange candle files into the database as price history.

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

The forecast models keep their state from what the Spark job reads from Kafka, not
from ``ticker_data``: an import gives charts and history, not a warm model (the
README, "Replayed and imported prices").
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from flows._pg_writer import BatchWriter
from flows._tables import TICKER
from flows.producers.replay import candle_file_pairs, read_candle_file
from flows.producers.settings import SHARED_MARKET, ReplaySettings, load_producer_settings
from handlers import Candle, ConfigError, TickerRecord, candle_ticks, history_source
from infra.cli import ExitCode, run_program
from infra.settings import Settings, load_settings

MAX_REPORTED = 20
"""Refused rows printed one by one per file; the rest are counted."""


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

    def __init__(self, name: str, total: int, out: TextIO) -> None:
        self._name = name
        self._total = max(total, 1)
        self._out = out
        self._tty = out.isatty()
        self._shown = -1
        self._last = 0.0

    def __call__(self, done: int, added: int) -> None:
        pct = min(100, done * 100 // self._total)
        line = (
            f"import {self._name}: {done:,}/{self._total:,} candles ({pct} %), "
            f"{added:,} ticks added"
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
    progress = Progress(path.name, _count_rows(path), out or sys.stdout)
    batch: list[TickerRecord] = []
    lines: list[int] = []

    def flush() -> None:
        result = writer.write(batch)
        report.added += result.inserted
        report.already += result.duplicates
        report.refused += [(lines[i], reason) for i, reason in result.refused]
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
            batch.append(TickerRecord(pair=pair, time=at, last=price, source=report.source))
            lines.append(number)
        if len(batch) >= batch_size:
            report.ticks += len(batch)
            flush()
            progress(report.candles, report.added)
    report.ticks += len(batch)
    flush()
    progress(report.candles + len(report.refused), report.added)
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
    refused = 0
    with _database(settings) as url:
        writer = BatchWriter(url, TICKER)
        try:
            for path in files:
                report = import_file(path, pairs[path], writer, settings.ingest.batch_size)
                print(report.summary(), flush=True)
                for number, reason in report.refused[:MAX_REPORTED]:
                    print(f"{path.name}:{number}: refused: {reason}", file=sys.stderr)
                if len(report.refused) > MAX_REPORTED:
                    print(f"{path.name}: ... and {len(report.refused) - MAX_REPORTED} more "
                          "refused rows", file=sys.stderr)  # fmt: skip
                refused += len(report.refused)
        finally:
            writer.close()
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
