"""Exchange candles (1-minute OHLCV rows) and the ticks derived from them.

A candle file is CSV with a header, ``datetime,open,high,low,close[,volume]``: the
candle's open time (ISO-8601; without a zone it is UTC, as Binance Data Vision
publishes it), its prices, and optionally its volume (ignored: a minute's volume is
no ticker field). ``../shared/fixtures/real/market/`` holds a real month of them.

Candles are not ticks. The replay producer and the price import turn each candle
into the same four ticks inside its minute (:func:`candle_ticks`), so an import
and a replay of one file give the same rows, and both the rows the forecast
backtest builds its bars from:

==========  ===========================================================
``+1 s``    the open
``+20 s``   the extreme on the side of the candle's direction first:
            the low of an up (or flat) candle, the high of a down one
``+40 s``   the other extreme
``+59 s``   the close
==========  ===========================================================

so the path open -> low -> high -> close of an up candle (open -> high -> low ->
close of a down one) reaches both extremes and the minute's bar has the candle's
own high, low and close. The path inside the minute is not known; this is the
shortest one that goes through every price the candle states, in a plausible order.

The pair comes from the file name: the first ``_``-separated part the coin table
reads as a pair (``binance_BTCUSDT_1m_2024-01.csv`` -> ``BTC/USDT``).
:func:`candle_pair` maps a USD stablecoin quote to ``USD`` when asked (the
replay's and the import's default, ``CRYPTOVIZ_CANDLE_PAIRS=usd``).

Like every handler, :func:`parse_candle` returns a value for any input and never
raises; the reading of files is the caller's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec

from handlers._fields import MAX_PRICE
from handlers._numbers import to_decimal
from handlers._records import Rejection
from handlers._symbols import CoinTable
from handlers._time import GENESIS

CANDLE_COLUMNS: tuple[str, ...] = ("datetime", "open", "high", "low", "close")
"""The leading columns of a candle file's header (``volume`` may follow)."""
CANDLE_TICK_OFFSETS_S: tuple[int, int, int, int] = (1, 20, 40, 59)
"""Seconds after the candle's open time of its open, first extreme, second extreme, close."""
CANDLE_S = 60
USD_STABLECOINS = frozenset({"USDT", "USDC"})
"""Quotes that :func:`candle_pair` maps to ``USD`` when asked."""
_MAX_LINE = 512


class Candle(msgspec.Struct, frozen=True, kw_only=True):
    """One 1-minute candle; ``start`` is its open time (aware UTC, on the minute)."""

    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


def candle_header_problem(line: bytes) -> str | None:
    """Why ``line`` is not a candle file's header, or ``None`` when it is one."""
    columns = [c.strip().lower() for c in line.decode("utf-8", "replace").strip().split(",")]
    if tuple(columns[: len(CANDLE_COLUMNS)]) != CANDLE_COLUMNS:
        return f"header {line[:80]!r} must start with {','.join(CANDLE_COLUMNS)}"
    return None


def _price(name: str, text: str) -> Decimal:
    value = to_decimal(text)
    if value is None or not value.is_finite():
        raise ValueError(f"{name} {text[:40]!r} is not a number")
    if not 0 < value < MAX_PRICE:
        raise ValueError(f"{name} {text[:40]!r} must be positive and below 1e12")
    return value


def _start(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"datetime {text[:40]!r} is not ISO-8601") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment < GENESIS:
        raise ValueError(f"datetime {text[:40]!r} is before 2009-01-03")
    if moment.second or moment.microsecond:
        raise ValueError(f"datetime {text[:40]!r} is not on the minute")
    return moment


def parse_candle(line: bytes) -> Candle | Rejection:
    """One data row of a candle file as a :class:`Candle`, or why not."""
    if len(line) > _MAX_LINE:
        return Rejection(reason=f"line of {len(line)} bytes (at most {_MAX_LINE})")
    cells = line.decode("utf-8", "replace").strip().split(",")
    if len(cells) < len(CANDLE_COLUMNS):
        return Rejection(reason=f"{len(cells)} columns, expected at least {len(CANDLE_COLUMNS)}")
    try:
        start = _start(cells[0].strip())
        named = zip(CANDLE_COLUMNS[1:], cells[1:5], strict=True)
        o, h, lo, c = (_price(name, text.strip()) for name, text in named)
    except ValueError as exc:
        return Rejection(reason=str(exc))
    if not (lo <= min(o, c) and max(o, c) <= h):
        return Rejection(reason=f"low {lo} / high {h} do not bracket open {o} and close {c}")
    return Candle(start=start, open=o, high=h, low=lo, close=c)


def candle_ticks(candle: Candle) -> tuple[tuple[datetime, Decimal], ...]:
    """The four (time, price) ticks of a candle (see the module docstring)."""
    first, second = (
        (candle.high, candle.low) if candle.close < candle.open else (candle.low, candle.high)
    )
    prices = (candle.open, first, second, candle.close)
    return tuple(
        (candle.start + timedelta(seconds=offset), price)
        for offset, price in zip(CANDLE_TICK_OFFSETS_S, prices, strict=True)
    )


def candle_pair(file_name: str, coins: CoinTable, *, stablecoin_as_usd: bool) -> str | None:
    """The pair a candle file is about, from its name; ``None`` when no part names one.

    ``stablecoin_as_usd``: a USD stablecoin quote (:data:`USD_STABLECOINS`) becomes
    ``USD`` (``BTC/USDT`` -> ``BTC/USD``).
    """
    stem = file_name.rsplit("/", 1)[-1].split(".", 1)[0]
    for part in stem.split("_"):
        pair = coins.pair(part)
        if pair is not None:
            base, quote = pair.split("/", 1)
            if stablecoin_as_usd and quote in USD_STABLECOINS:
                return f"{base}/USD"
            return pair
    return None
