"""Offline replay of recorded Kraken frames, saved feeds and exchange candles.

Files (one partition each, so they replay side by side; all candle files share one):

* Kraken captures, one frame per line, v2 (JSON objects) or v1 (arrays and
  ``event`` objects), either bare or prefixed with the receive time as written by
  cryptofeed's recorder (``1618678142.59: [993, ...]``); lines of frames *sent*
  (``wss://... <- ...``) and connection markers are skipped. Each frame goes
  through ``parse_kraken_v2``/``parse_kraken_v1`` and the same trade sequencer
  as the live feed, with the recorded receive time as "now" when there is one.
  Their messages keep the recorded times and say ``source`` ``history:<file>``.
* ``.xml``/``.rss``/``.atom`` files: one saved feed document, through the same
  ``parse_feed`` and dedup as the live poller.
* ``.csv`` files: 1-minute candles (``datetime,open,high,low,close[,volume]``), each
  becoming four ticks inside its minute (:func:`handlers.candle_ticks`: open at +1 s,
  the extremes at +20 s and +40 s in the candle's direction, close at +59 s), on the
  pair its file name says (:func:`handlers.candle_pair`; ``BTCUSDT`` plays as
  ``BTC/USD`` unless ``CRYPTOVIZ_CANDLE_PAIRS=file``). Every candle file plays in one
  partition, merged in market time, so the ticks of several pairs come out
  interleaved in the market's own order. The clock (``CRYPTOVIZ_REPLAY_CLOCK``):
  ``now`` re-times the market to the replay: its first minute starts when the replay
  first starts and market time runs ``speed`` times faster than the wall clock, so a
  tick is stamped when it is played (source ``replay:<file>``); ``original`` keeps the
  market's times (source ``history:<file>``: the very rows ``python -m
  flows.import_prices`` writes). At speed 0 the original times are kept.

Pacing: recorded time differences divided by ``speed`` (0 = as fast as possible);
frames without a receive time are ``line_gap_s / speed`` apart. The partition's
recovery state is its position, sequencer and dedup keys (for candles: the ticks
played and the clock's anchor), so a restart continues where it stopped, with the
same stamps: a re-timed market keeps its schedule and catches up after a downtime.
"""

from __future__ import annotations

import heapq
import logging
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice
from pathlib import Path

import msgspec
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.producers import _metrics as m
from flows.producers.news import parse_feed
from flows.producers.rss import SeenKeys, new_articles
from flows.producers.settings import (
    SHARED_MARKET,
    FeedSpec,
    ReplaySettings,
    default_replay_files,
)
from flows.producers.trades import PairSequence, TradeSequencer
from handlers import (
    ArticleMessage,
    Candle,
    CoinTable,
    ConfigError,
    HandlerContext,
    KrakenEvent,
    KrakenMessage,
    KrakenStatus,
    KrakenSubscription,
    Rejection,
    TickerMessage,
    TradeMessage,
    candle_header_problem,
    candle_pair,
    candle_ticks,
    epoch_seconds,
    history_source,
    parse_candle,
    parse_kraken_v1,
    parse_kraken_v2,
    replay_source,
)

log = logging.getLogger(__name__)

FEED_SUFFIXES = frozenset({".xml", ".rss", ".atom"})
CANDLES_PART = "candles"
"""The partition that plays every candle file of the replay, merged in market time."""
MAX_BATCH = 2000
IDLE = timedelta(hours=1)
_TIMED = re.compile(rb"^(\d{9,11}(?:\.\d+)?):\s?(.*)$", re.S)

ReplayMessage = KrakenMessage | ArticleMessage


@dataclass(slots=True)
class ReplayState:
    lines: int = 0
    """Lines (or, for a feed file, documents) already replayed."""
    sequences: dict[str, PairSequence] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    anchor: float | None = None
    """Candles: the epoch time at which the market's first minute started playing."""


def capture_line(line: bytes) -> tuple[float | None, bytes] | None:
    """(recorded receive time or None, frame) of one capture line; None for non-frames."""
    text = line.strip()
    if not text or text.startswith((b"wss://", b"ws://", b"#")):
        return None
    timed = _TIMED.match(text)
    if timed is not None:
        return float(timed[1]), timed[2].strip()
    return None, text


def is_v1(frame: bytes) -> bool:
    """v1 frames are arrays or ``{"event": ...}`` objects; v2 ones have channel/method."""
    return frame.startswith(b"[") or b'"event"' in frame


def parse_frame(frame: bytes, ctx: HandlerContext) -> KrakenEvent:
    return parse_kraken_v1(frame, ctx) if is_v1(frame) else parse_kraken_v2(frame, ctx)


class _Partition(StatefulSourcePartition[ReplayMessage, ReplayState]):
    """What every replay partition does once its file is played: exit (``exit_at_end``)
    or idle, waking hourly."""

    _s: ReplaySettings
    _wake: datetime | None

    def _end(self) -> list[ReplayMessage]:
        if self._s.exit_at_end:
            raise StopIteration
        self._wake = datetime.now(UTC) + IDLE
        return []

    def next_awake(self) -> datetime | None:
        return self._wake


class _CapturePartition(_Partition):
    def __init__(
        self,
        path: Path,
        settings: ReplaySettings,
        coins: CoinTable,
        resume: ReplayState | None,
    ) -> None:
        state = resume or ReplayState()
        self._path = path
        self._s = settings
        self._coins = coins
        self._frames = m.REPLAY_FRAMES.labels(path.name)
        self._rejections = m.REPLAY_REJECTIONS.labels(path.name)
        self._source = history_source(path.name)
        self._done_lines = state.lines
        self._seq = TradeSequencer(state.sequences)
        self._lines: Iterator[bytes] = islice(self._read(), state.lines, None)
        self._wall0: float | None = None
        self._rec0: float | None = None
        self._offset = 0.0
        """Seconds after the first replayed frame at which the next untimed frame is due."""
        self._pending: tuple[float | None, bytes] | None = None
        self._finished = False
        self._wake: datetime | None = None

    def _read(self) -> Iterator[bytes]:
        with self._path.open("rb") as fh:
            yield from fh

    def _due(self, recorded: float | None) -> float:
        """Monotonic time at which a frame recorded at ``recorded`` is due."""
        if self._wall0 is None:
            self._wall0 = time.monotonic()
            self._rec0 = recorded
        if self._s.speed <= 0:
            return 0.0
        if recorded is not None and self._rec0 is not None:
            self._offset = (recorded - self._rec0) / self._s.speed
        elif recorded is not None:
            self._rec0 = recorded - self._offset * self._s.speed
        else:
            self._offset += self._s.line_gap_s / self._s.speed
        return self._wall0 + self._offset

    def next_batch(self) -> list[ReplayMessage]:
        self._wake = None
        if self._finished:
            return self._end()
        out: list[ReplayMessage] = []
        while len(out) < MAX_BATCH:
            if self._pending is None:
                line = next(self._lines, None)
                if line is None:
                    self._finished = True
                    log.info("replay %s: done (%d lines)", self._path.name, self._done_lines)
                    break
                self._done_lines += 1
                item = capture_line(line)
                if item is None:
                    continue
                due = self._due(item[0])
                if due > time.monotonic():
                    self._pending = item
                    self._wake = datetime.now(UTC) + timedelta(seconds=due - time.monotonic())
                    break
            else:
                item, self._pending = self._pending, None
            out += self._frame(*item)
        return out

    def _frame(self, recorded: float | None, frame: bytes) -> list[ReplayMessage]:
        now = datetime.fromtimestamp(recorded, UTC) if recorded is not None else datetime.now(UTC)
        event = parse_frame(frame, HandlerContext(coins=self._coins, now=now))
        self._frames.inc()
        for control in event.control:
            if isinstance(control, KrakenStatus):
                log.info("replay: recorded status %s", control.system)
            elif isinstance(control, KrakenSubscription) and not control.success:
                log.warning("replay: recorded rejection of %s: %s", control.symbol, control.error)
        for rejection in event.rejections:
            self._rejections.inc()
            log.warning("replay %s: frame refused: %s", self._path.name, rejection.reason)
        out: list[ReplayMessage] = []
        for msg in event.messages:
            if isinstance(msg, TradeMessage) and not self._seq.accept(msg)[0]:
                continue
            # Recorded at its own time: a price path of its own (handlers._origin).
            out.append(msgspec.structs.replace(msg, source=self._source))
        return out

    def snapshot(self) -> ReplayState:
        # A frame held back for pacing is not replayed yet: resume re-reads its line.
        lines = self._done_lines - (1 if self._pending is not None else 0)
        return ReplayState(lines=lines, sequences=self._seq.snapshot())


class _FeedPartition(_Partition):
    def __init__(
        self, path: Path, settings: ReplaySettings, coins: CoinTable, resume: ReplayState | None
    ) -> None:
        state = resume or ReplayState()
        self._path = path
        self._s = settings
        self._coins = coins
        self._done = state.lines > 0
        self._seen = SeenKeys(state.seen, 100_000)
        self._wake: datetime | None = None

    def next_batch(self) -> list[ReplayMessage]:
        if self._done:
            return self._end()
        self._done = True
        feed = FeedSpec(name=self._path.stem, url=self._path.resolve().as_uri())
        parsed = parse_feed(self._path.read_bytes(), feed, self._coins, datetime.now(UTC))
        articles = new_articles(parsed, self._seen, feed.name)
        log.info("replay %s: %d articles", self._path.name, len(articles))
        return list(articles)

    def snapshot(self) -> ReplayState:
        return ReplayState(lines=1 if self._done else 0, seen=self._seen.as_list())


class CandleTick(msgspec.Struct, frozen=True, array_like=True, order=True):
    """One tick derived from a candle, in market time (ordered by time, then file)."""

    at: float
    """Market time, epoch seconds."""
    file: int
    price: Decimal


def candle_file_pairs(settings: ReplaySettings, coins: CoinTable) -> dict[Path, str]:
    """The pair each candle file of ``settings`` plays; ConfigError for a nameless one."""
    as_usd = settings.candle_pairs == "usd"
    pairs: dict[Path, str] = {}
    for path in settings.candle_files:
        pair = candle_pair(path.name, coins, stablecoin_as_usd=as_usd)
        if pair is None:
            raise ConfigError(
                f"replay: no pair in the name of {path.name} (name a candle file after its "
                "market, e.g. binance_BTCUSDT_1m_2024-01.csv)"
            )
        pairs[path] = pair
    return pairs


def candle_coins(settings: ReplaySettings, coins: CoinTable) -> tuple[str, ...]:
    """The coins whose prices the candle files of ``settings`` play (their bases)."""
    bases = (pair.split("/", 1)[0] for pair in candle_file_pairs(settings, coins).values())
    return tuple(dict.fromkeys(bases))


def read_candle_file(path: Path) -> Iterator[tuple[int, Candle | Rejection]]:
    """(line number, candle or why not) for each data row of a candle file, in order.

    A row not after the previous one is refused (a file is one market, in time order).
    Raises ConfigError when the header is not a candle file's.
    """
    with path.open("rb") as fh:
        header = fh.readline()
        problem = candle_header_problem(header)
        if problem is not None:
            raise ConfigError(f"{path.name}: not a candle file: {problem}")
        last: datetime | None = None
        for number, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            candle = parse_candle(line)
            if isinstance(candle, Candle):
                if last is not None and candle.start <= last:
                    candle = Rejection(
                        reason=f"{candle.start:%Y-%m-%d %H:%M} is not after {last:%Y-%m-%d %H:%M}"
                    )
                else:
                    last = candle.start
            yield number, candle


class _CandlePartition(_Partition):
    """Every candle file of the replay as ticks, merged in market time (one partition)."""

    def __init__(
        self,
        paths: Sequence[Path],
        settings: ReplaySettings,
        coins: CoinTable,
        resume: ReplayState | None,
    ) -> None:
        state = resume or ReplayState()
        self._paths = tuple(paths)
        self._s = settings
        pairs = candle_file_pairs(settings, coins)
        self._pairs = tuple(pairs[p] for p in self._paths)
        retimed = settings.retimed
        label = replay_source if retimed else history_source
        self._sources = tuple(label(p.stem) for p in self._paths)
        self._retimed = retimed
        self._frames = tuple(m.REPLAY_FRAMES.labels(p.name) for p in self._paths)
        self._rejections = tuple(m.REPLAY_REJECTIONS.labels(p.name) for p in self._paths)
        self._played = state.lines
        self._quiet = True
        ticks = heapq.merge(*(self._ticks(i) for i in range(len(self._paths))))
        self._start: float | None = None
        """Market time of the first minute (the start of the earliest candle)."""
        self._ticks_left: Iterator[CandleTick] = ticks
        for _ in range(self._played):  # what was played before the restart
            next(self._ticks_left, None)
        self._quiet = False
        self._anchor = state.anchor
        self._last: dict[str, float] = {}
        self._pending: CandleTick | None = None
        self._finished = False
        self._wake: datetime | None = None
        if retimed:
            log.info("replay: %s re-timed to the replay clock at %gx (sources %s)",
                     ", ".join(p.name for p in self._paths), settings.speed,
                     ", ".join(self._sources))  # fmt: skip
        else:
            log.info("replay: %s at the market's own times (sources %s)",
                     ", ".join(p.name for p in self._paths), ", ".join(self._sources))  # fmt: skip

    def _ticks(self, index: int) -> Iterator[CandleTick]:
        path = self._paths[index]
        for number, candle in read_candle_file(path):
            if isinstance(candle, Rejection):
                if not self._quiet:
                    self._rejections[index].inc()
                    log.warning("replay %s:%d: candle refused: %s", path.name, number,
                                candle.reason)  # fmt: skip
                continue
            opened = epoch_seconds(candle.start)
            if self._start is None or opened < self._start:
                self._start = opened
            for at, price in candle_ticks(candle):
                yield CandleTick(epoch_seconds(at), index, price)

    def _due(self, tick: CandleTick) -> float:
        """Epoch time at which ``tick`` plays (0 at speed 0: at once).

        The schedule is anchored when the first tick plays (the anchor is recovery
        state): market time ``start + x`` plays at ``anchor + x / speed``.
        """
        if self._s.speed <= 0:
            return 0.0
        # Every file's first row is read by the merge before its first tick comes out,
        # so the start is the earliest candle's open time.
        assert self._start is not None
        offset = (tick.at - self._start) / self._s.speed
        if self._anchor is None:
            self._anchor = time.time() - offset
        return self._anchor + offset

    def next_batch(self) -> list[ReplayMessage]:
        self._wake = None
        if self._finished:
            return self._end()
        out: list[ReplayMessage] = []
        now = time.time()
        while len(out) < MAX_BATCH:
            tick = self._pending or next(self._ticks_left, None)
            self._pending = None
            if tick is None:
                self._finished = True
                log.info("replay: candles done (%d ticks)", self._played)
                break
            due = self._due(tick)
            if due > now:
                self._pending = tick
                self._wake = datetime.fromtimestamp(due, UTC)
                break
            self._played += 1
            message = self._message(tick, due, now)
            if message is not None:
                out.append(message)
        return out

    def _message(self, tick: CandleTick, due: float, now: float) -> TickerMessage | None:
        pair = self._pairs[tick.file]
        stamp = due if self._retimed else tick.at
        if stamp <= self._last.get(pair, -math.inf):
            # Two files of one pair that overlap: the later file's tick would go back in time.
            self._rejections[tick.file].inc()
            log.warning("replay %s: tick at %s overlaps an earlier file of %s: skipped",
                        self._paths[tick.file].name, tick.at, pair)  # fmt: skip
            return None
        self._last[pair] = stamp
        self._frames[tick.file].inc()
        return TickerMessage(
            pair=pair,
            last=tick.price,
            timestamp=stamp,
            receive_ts=now if self._retimed else None,
            source=self._sources[tick.file],
        )

    def snapshot(self) -> ReplayState:
        # A tick held back for pacing is not played yet (it is not counted).
        return ReplayState(lines=self._played, anchor=self._anchor)


def describe(settings: ReplaySettings, coins: CoinTable, *, beside_synthetic: bool) -> str:
    """One line on what the replay plays (``make up REPLAY=1`` prints it).

    ``beside_synthetic``: the synthetic market runs beside it, leaving it the candles' coins.
    """
    files = settings.files
    others = ", ".join(p.name for p in files if p not in settings.candle_files)
    if not settings.candle_files:
        why = (
            f"no candle file at hand ({SHARED_MARKET} is absent)"
            if files == default_replay_files()
            else "CRYPTOVIZ_REPLAY_FILES names no candle file"
        )
        captures = any(p.suffix.lower() not in FEED_SUFFIXES for p in files)
        recorded = " (Kraken captures at their recorded times)" if captures else ""
        return (
            f"replay: {why}: playing {others or 'nothing'}{recorded}; "
            "prices move with the synthetic market. Name candle files with "
            "`make up REPLAY=1 REPLAY_FILES=a.csv:b.csv`"
        )
    pairs = candle_file_pairs(settings, coins)
    played = ", ".join(f"{pairs[p]} ({p.name})" for p in settings.candle_files)
    clock = (
        f"re-timed to now at {settings.speed:g}x"
        if settings.retimed
        else "at the market's own times (history)"
    )
    beside = "; the synthetic market plays the other coins" if beside_synthetic else ""
    also = f"; also {others}" if others else ""
    return f"replay: real market {played}, 4 ticks a minute, {clock}{beside}{also}"


class ReplaySource(FixedPartitionedSource[ReplayMessage, ReplayState]):
    """Recorded Kraken frames and saved feeds, one partition per file; candle files
    together in one partition (:data:`CANDLES_PART`)."""

    def __init__(self, settings: ReplaySettings, coins: CoinTable) -> None:
        if not settings.files:
            raise ValueError("replay: no files to replay (CRYPTOVIZ_REPLAY_FILES)")
        self._s = settings
        self._coins = coins
        self._candles = settings.candle_files
        candle_file_pairs(settings, coins)  # a file without a pair stops the worker now
        self._files = {
            f"{i:03d}-{p.name}": p for i, p in enumerate(settings.files) if p not in self._candles
        }

    def list_parts(self) -> list[str]:
        # The market first: a feed's first batch parses the whole document (seconds of
        # sentiment scoring) and would hold back the first prices.
        return [*([CANDLES_PART] if self._candles else []), *self._files]

    def build_part(
        self, step_id: str, for_part: str, resume_state: ReplayState | None
    ) -> StatefulSourcePartition[ReplayMessage, ReplayState]:
        if for_part == CANDLES_PART:
            return _CandlePartition(self._candles, self._s, self._coins, resume_state)
        path = self._files[for_part]
        if path.suffix.lower() in FEED_SUFFIXES:
            return _FeedPartition(path, self._s, self._coins, resume_state)
        return _CapturePartition(path, self._s, self._coins, resume_state)
