"""Offline replay of recorded Kraken frames and saved feeds, through the live parsing path.

Files (one partition each, so they replay side by side):

* Kraken captures, one frame per line, v2 (JSON objects) or v1 (arrays and
  ``event`` objects), either bare or prefixed with the receive time as written by
  cryptofeed's recorder (``1618678142.59: [993, ...]``); lines of frames *sent*
  (``wss://... <- ...``) and connection markers are skipped. Each frame goes
  through ``parse_kraken_v2``/``parse_kraken_v1`` and the same trade sequencer
  as the live feed, with the recorded receive time as "now" when there is one.
* ``.xml``/``.rss``/``.atom`` files: one saved feed document, through the same
  ``parse_feed`` and dedup as the live poller.

Pacing: recorded time differences divided by ``speed`` (0 = as fast as possible);
frames without a receive time are ``line_gap_s / speed`` apart. The partition's
recovery state is its position, sequencer and dedup keys, so a restart continues
where it stopped.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.producers import _metrics as m
from flows.producers.news import parse_feed
from flows.producers.rss import SeenKeys, new_articles
from flows.producers.settings import FeedSpec, ReplaySettings
from flows.producers.trades import PairSequence, TradeSequencer
from handlers import (
    ArticleMessage,
    CoinTable,
    HandlerContext,
    KrakenEvent,
    KrakenMessage,
    KrakenStatus,
    KrakenSubscription,
    TradeMessage,
    parse_kraken_v1,
    parse_kraken_v2,
)

log = logging.getLogger(__name__)

FEED_SUFFIXES = frozenset({".xml", ".rss", ".atom"})
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


class _CapturePartition(StatefulSourcePartition[ReplayMessage, ReplayState]):
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
            out.append(msg)
        return out

    def _end(self) -> list[ReplayMessage]:
        if self._s.exit_at_end:
            raise StopIteration
        self._wake = datetime.now(UTC) + IDLE
        return []

    def next_awake(self) -> datetime | None:
        return self._wake

    def snapshot(self) -> ReplayState:
        # A frame held back for pacing is not replayed yet: resume re-reads its line.
        lines = self._done_lines - (1 if self._pending is not None else 0)
        return ReplayState(lines=lines, sequences=self._seq.snapshot())


class _FeedPartition(StatefulSourcePartition[ReplayMessage, ReplayState]):
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
            if self._s.exit_at_end:
                raise StopIteration
            self._wake = datetime.now(UTC) + IDLE
            return []
        self._done = True
        feed = FeedSpec(name=self._path.stem, url=self._path.resolve().as_uri())
        parsed = parse_feed(self._path.read_bytes(), feed, self._coins, datetime.now(UTC))
        articles = new_articles(parsed, self._seen, feed.name)
        log.info("replay %s: %d articles", self._path.name, len(articles))
        return list(articles)

    def next_awake(self) -> datetime | None:
        return self._wake

    def snapshot(self) -> ReplayState:
        return ReplayState(lines=1 if self._done else 0, seen=self._seen.as_list())


class ReplaySource(FixedPartitionedSource[ReplayMessage, ReplayState]):
    """Recorded Kraken frames and saved feeds; one partition per file."""

    def __init__(self, settings: ReplaySettings, coins: CoinTable) -> None:
        if not settings.files:
            raise ValueError("replay: no files to replay (CRYPTOVIZ_REPLAY_FILES)")
        self._s = settings
        self._coins = coins
        self._files = {f"{i:03d}-{p.name}": p for i, p in enumerate(settings.files)}

    def list_parts(self) -> list[str]:
        return list(self._files)

    def build_part(
        self, step_id: str, for_part: str, resume_state: ReplayState | None
    ) -> StatefulSourcePartition[ReplayMessage, ReplayState]:
        path = self._files[for_part]
        if path.suffix.lower() in FEED_SUFFIXES:
            return _FeedPartition(path, self._s, self._coins, resume_state)
        return _CapturePartition(path, self._s, self._coins, resume_state)
