"""The chaos run's fixed input: a recorded market, real news feeds, and junk.

* Market: :func:`~flows.producers.synthetic.record_capture` with a fixed seed and
  start time, so both runs replay byte-identical frames through ``producer-replay``
  (the live parsing path) at the recorded pace.
* News: the real saved feeds of ``../shared/fixtures/real/rss``.
* Junk: frames no handler accepts, written straight to the raw topics as a broken
  third-party producer would; each must come out as exactly one dead letter with
  the same reason in both runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flows.producers.settings import SHARED_REAL, SyntheticSettings
from flows.producers.synthetic import record_capture
from handlers import CoinTable

START = datetime(2026, 3, 2, 9, 29, 50, tzinfo=UTC)
"""Recorded time of the first market frame (a fixed time: it is never compared to now).

Ten seconds before a minute: the CI size's 100 recorded seconds then hold two whole
1-minute bars closed by the forecasts' 10 s watermark (09:29:50-09:30, 09:30-09:31),
enough for the forecasts' first issue, so Spark's state machine is compared too."""
SEED = 20260302

_JUNK_TEMPLATES: tuple[bytes, ...] = (
    b'{"pair": "BTC/USD", "last": ',  # truncated JSON
    b'{"pair": "BTC/USD", "last": "cheap", "timestamp": 1772443800}',  # wrong type
    b'{"pair": "BTC/USD", "last": -5, "price": -5, "timestamp": 1772443800}',  # negative
    b'{"pair": "BTC/USD", "last": NaN, "timestamp": 1772443800}',  # NaN is not JSON
    b'{"pair": "BTC/USD", "last": 1e400, "timestamp": 1772443800}',  # beyond float range
    b"\xff\xfe not utf-8 \xc3\x28",  # invalid UTF-8
    b"[1, 2, 3]",  # an array, not an object
    b"{}",  # nothing at all
    b'{"pair": "BTC/USD", "last": 1, "price": 1, "timestamp": 99999999999}',  # year 5138
)


@dataclass(frozen=True, slots=True)
class ChaosInput:
    files: tuple[Path, ...]
    """What ``producer-replay`` replays (``CRYPTOVIZ_REPLAY_FILES``)."""
    market_frames: int
    duration_s: float
    """Recorded span of the market capture: the replay's wall time at speed 1."""
    junk: tuple[tuple[str, bytes], ...]
    """(raw topic, value) pairs to write directly to Kafka."""


def junk_messages(topics: tuple[str, ...], copies: int) -> tuple[tuple[str, bytes], ...]:
    """``copies`` rounds of every junk template on every raw topic.

    Copies need not differ: a dead letter is identified by its source coordinates.
    """
    return tuple(
        (topic, template) for _ in range(copies) for topic in topics for template in _JUNK_TEMPLATES
    )


def build_input(
    directory: Path, coins: CoinTable, *, frames: int, rate: float, topics: tuple[str, ...],
    junk_rounds: int,
) -> ChaosInput:  # fmt: skip
    """Write the market capture into ``directory`` and list everything to replay."""
    directory.mkdir(parents=True, exist_ok=True)
    settings = SyntheticSettings(pairs=12, rate=rate, seed=SEED)
    capture = record_capture(settings, coins, START, frames, directory / "market.txt")
    feeds = tuple(sorted((SHARED_REAL / "rss").glob("*.xml")))
    if not feeds:
        raise FileNotFoundError(f"no saved news feeds under {SHARED_REAL / 'rss'}")
    return ChaosInput(
        files=(capture, *feeds),
        market_frames=frames,
        duration_s=frames / rate,
        junk=junk_messages(topics, junk_rounds),
    )
