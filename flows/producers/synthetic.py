"""Synthetic market for load tests and offline demos: many pairs, steady rate, trends and jumps.

Each message is built as a Kraken v2 ``ticker`` or ``trade`` frame and goes through
``parse_kraken_v2``, so the generator exercises (and its benchmark measures) the
same parse -> encode -> produce path as the live feed. Price paths are geometric
random walks with a drift that switches regime now and then, plus rare 1-3 % jumps,
so the alert worker and the analytics have something to react to. Simulated time
advances a fixed step per message (deterministic for a given seed); message times
are the wall clock, so the data looks live, and every message says ``source``
``synthetic``, so its rows and alerts are never taken for the exchange's.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.producers.settings import SyntheticSettings
from handlers import (
    SYNTHETIC_SOURCE,
    CoinTable,
    HandlerContext,
    KrakenMessage,
    iso_utc,
    parse_kraken_v2,
)

BASE_PRICES: dict[str, float] = {
    "BTC": 95_000.0, "ETH": 3_000.0, "SOL": 150.0, "ADA": 0.45, "DOT": 4.5, "LINK": 15.0,
    "XRP": 2.2, "DOGE": 0.2, "LTC": 90.0, "POL": 0.25, "AVAX": 25.0, "XMR": 300.0,
}  # fmt: skip
MAX_BATCH = 5000
_ENCODER = msgspec.json.Encoder(decimal_format="number")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def synthetic_pairs(
    coins: CoinTable, count: int, offset: int = 0, exclude: Collection[str] = ()
) -> list[str]:
    """``count`` pairs of the sequence: the tracked pairs first, then the other coins
    against USD, then ``SYNnn/USD``; skipping the first ``offset``, and every pair of
    the coins in ``exclude`` (their prices come from another producer).

    Producers given offsets 0, N, 2N, ... with N pairs each make disjoint pairs, so
    their ticks never share ``ticker_data``'s key (pair, timestamp).
    """
    pairs = [p for p in coins.tracked if p.split("/", 1)[0] not in exclude]
    for coin in coins.coins:
        pair = f"{coin.symbol}/USD"
        if pair not in pairs and coin.symbol not in ("USDT", "USDC", *exclude):
            pairs.append(pair)
    index = 1
    while len(pairs) < offset + count:
        pairs.append(f"SYN{index:02d}/USD")
        index += 1
    return pairs[offset : offset + count]


def _epoch_us(moment: datetime) -> int:
    """Exact microseconds since the epoch (no float rounding)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _decimals(price: float) -> int:
    """Six significant digits, like Kraken's price precision, at least one decimal."""
    digits = math.floor(math.log10(price)) + 1 if price >= 1 else 0
    return max(1, min(8, 6 - digits))


@dataclass(slots=True)
class PairPath:
    pair: str
    price: float
    opened: float
    trend: float = 0.0
    """Drift of the log price per simulated second."""
    low: float = math.inf
    high: float = 0.0
    volume: float = 0.0
    trade_id: int = 0


@dataclass(slots=True)
class SyntheticState:
    paths: dict[str, PairPath] = field(default_factory=dict)
    rng: tuple[object, ...] | None = None
    emitted: int = 0


class SyntheticPartition(StatefulSourcePartition[KrakenMessage, SyntheticState]):
    def __init__(
        self, settings: SyntheticSettings, coins: CoinTable, resume: SyntheticState | None
    ) -> None:
        self._s = settings
        self._coins = coins
        self._rng = random.Random(settings.seed)  # noqa: S311 (simulation, not cryptography)
        state = resume or SyntheticState()
        if state.rng is not None:
            self._rng.setstate(state.rng)
        names = synthetic_pairs(coins, settings.pairs, settings.pair_offset, settings.exclude_coins)
        self._paths = {name: state.paths.get(name) or self._new_path(name) for name in names}
        self._order = names
        self._emitted = state.emitted
        self._base = self._emitted
        self._t0 = time.monotonic()
        self._deadline = None if settings.run_for_s is None else self._t0 + settings.run_for_s
        self._dt = len(names) / settings.rate
        """Simulated seconds between two messages of one pair."""
        self._wake: datetime | None = None
        self._last_us = _epoch_us(datetime.now(UTC))
        """Time of the last frame sent, in µs since the epoch (stamps strictly increase)."""

    def _new_path(self, pair: str) -> PairPath:
        base = pair.split("/", maxsplit=1)[0]
        price = BASE_PRICES.get(base) or 10 ** self._rng.uniform(-2, 3)
        return PairPath(pair=pair, price=price, opened=price, trade_id=self._rng.randrange(10**6))

    def _step(self, path: PairPath) -> None:
        s, rng, dt = self._s, self._rng, self._dt
        if rng.random() < s.trend_switch_per_s * dt:
            # New regime: a drift of up to ~1 % per minute either way, or none.
            path.trend = rng.choice((0.0, 1.0, -1.0)) * rng.uniform(0.002, 0.01) / 60
        sigma = s.volatility / math.sqrt(3600)
        log_return = path.trend * dt + sigma * math.sqrt(dt) * rng.gauss(0, 1)
        if rng.random() < s.jump_per_s * dt:
            log_return += rng.choice((1, -1)) * rng.uniform(0.01, 0.03)
        path.price *= math.exp(log_return)
        path.low = min(path.low, path.price)
        path.high = max(path.high, path.price)

    def _frame(self, path: PairPath, now: datetime) -> bytes:
        rng = self._rng
        places = _decimals(path.price)

        def dec(value: float) -> Decimal:
            return Decimal(f"{value:.{places}f}")

        stamp = iso_utc(now)
        if rng.random() < self._s.trade_share:
            qty = round(rng.lognormvariate(-2, 1.5), 8) or 0.00000001
            path.volume += qty
            path.trade_id += 1
            side = "buy" if rng.random() < 0.5 else "sell"
            entry: dict[str, object] = {
                "symbol": path.pair, "side": side, "price": dec(path.price),
                "qty": Decimal(f"{qty:.8f}"), "ord_type": rng.choice(("limit", "market")),
                "trade_id": path.trade_id, "timestamp": stamp,
            }  # fmt: skip
            return _ENCODER.encode({"channel": "trade", "type": "update", "data": [entry]})
        spread = path.price * 0.0002
        entry = {
            "symbol": path.pair, "bid": dec(path.price - spread / 2),
            "bid_qty": Decimal(f"{rng.uniform(0.01, 50):.8f}"),
            "ask": dec(path.price + spread / 2),
            "ask_qty": Decimal(f"{rng.uniform(0.01, 50):.8f}"), "last": dec(path.price),
            "volume": Decimal(f"{path.volume:.8f}"), "vwap": dec((path.low + path.high) / 2),
            "low": dec(path.low), "high": dec(path.high),
            "change": dec(path.price - path.opened),
            "change_pct": Decimal(f"{(path.price / path.opened - 1) * 100:.2f}"),
            "timestamp": stamp,
        }  # fmt: skip
        return _ENCODER.encode({"channel": "ticker", "type": "update", "data": [entry]})

    def next_batch(self) -> list[KrakenMessage]:
        now_mono = time.monotonic()
        limit = self._s.max_messages
        if (self._deadline is not None and now_mono >= self._deadline) or (
            limit is not None and self._emitted >= limit
        ):
            raise StopIteration
        due = int((now_mono - self._t0) * self._s.rate) - (self._emitted - self._base)
        if limit is not None:
            due = min(due, limit - self._emitted)
        due = min(due, MAX_BATCH)
        if due <= 0:
            self._wake = datetime.now(UTC) + timedelta(seconds=min(0.05, 1 / self._s.rate))
            return []
        self._wake = None
        now = datetime.now(UTC)
        ctx = HandlerContext(coins=self._coins, now=now)
        out: list[KrakenMessage] = []
        for stamp in self._stamps(now, due):
            out += parse_kraken_v2(self.next_frame(stamp), ctx).messages
        # One label for the generated path: its rows say they are not the exchange's.
        return [msgspec.structs.replace(msg, source=SYNTHETIC_SOURCE) for msg in out]

    def _stamps(self, now: datetime, count: int) -> list[datetime]:
        """``count`` strictly increasing times spread over (last frame's time, ``now``].

        One time for a whole batch would give a pair several ticks at the same
        instant, and ``ticker_data`` keeps one row per (pair, timestamp): at high
        rates (big batches) ticks would silently merge. At least 1 µs apart, so a
        stamp may pass ``now`` by ``count`` µs when a batch is due faster than that.
        """
        end = _epoch_us(now)
        span = max(end - self._last_us, 0)
        stamps: list[datetime] = []
        last = self._last_us
        for index in range(1, count + 1):
            last = max(self._last_us + span * index // count, last + 1)
            stamps.append(_EPOCH + timedelta(microseconds=last))
        self._last_us = last
        return stamps

    def next_frame(self, now: datetime) -> bytes:
        """The next pair's next v2 frame, stamped ``now``."""
        path = self._paths[self._order[self._emitted % len(self._order)]]
        self._emitted += 1
        self._step(path)
        return self._frame(path, now)

    def next_awake(self) -> datetime | None:
        return self._wake

    def snapshot(self) -> SyntheticState:
        return SyntheticState(dict(self._paths), self._rng.getstate(), self._emitted)


class SyntheticSource(FixedPartitionedSource[KrakenMessage, SyntheticState]):
    def __init__(self, settings: SyntheticSettings, coins: CoinTable) -> None:
        if settings.rate <= 0:
            raise ValueError("synthetic rate must be positive")
        self._s = settings
        self._coins = coins

    def list_parts(self) -> list[str]:
        return ["synthetic"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: SyntheticState | None
    ) -> SyntheticPartition:
        return SyntheticPartition(self._s, self._coins, resume_state)


def record_capture(
    settings: SyntheticSettings, coins: CoinTable, start: datetime, count: int, out: Path
) -> Path:
    """Write ``count`` frames on a simulated clock as a replayable capture file.

    One line per frame, prefixed with its receive time as ``producer-replay`` reads
    it (``1764000000.000000: {...}``); frames are ``1 / rate`` simulated seconds
    apart and stamped with that time. With a fixed ``seed`` and ``start`` the file
    is byte-for-byte reproducible: a fixed, recorded input for runs that must be
    compared (the chaos suite), however long it took to write.
    """
    if settings.seed is None:
        raise ValueError("record_capture needs a fixed seed to be reproducible")
    part = SyntheticPartition(settings, coins, None)
    t0 = start.timestamp()
    with out.open("wb") as fh:
        for index in range(count):
            t = t0 + index / settings.rate
            frame = part.next_frame(datetime.fromtimestamp(t, UTC))
            fh.write(f"{t:.6f}: ".encode() + frame + b"\n")
    return out
