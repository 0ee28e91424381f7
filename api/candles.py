"""OHLCV candles of a pair: the SQL, the gap-skipping window loop, the cached split.

Buckets are aligned on 2000-01-01 00:00 UTC, like the plain flavour's views;
TimescaleDB's time_bucket aligns on 2000-01-03 (a Monday), which gives the same
buckets for every interval offered here (all divide 48 hours). Whole-hour
intervals come from ``ticker_ohlc_hourly`` where it is the cheaper source (see
:func:`use_hourly_aggregate`). Buckets that ended at least ``GRACE`` ago come from
the per-process :class:`~api.candle_cache.CandleCache`; newer ones are computed on
every request.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import msgspec

from api.candle_cache import GRACE
from api.context import ApiContext
from api.db import Connection, Database, One, Query
from api.models import Candle
from api.params import OPEN_END, OPEN_START, Page, floor_to
from infra.migrate import FLAVOURS, Flavour


class CandleTicks(msgspec.Struct, frozen=True, kw_only=True):
    """One bucket of ticker prices (the candle without its traded volume)."""

    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    tick_count: int


class BucketVolume(msgspec.Struct, frozen=True, kw_only=True):
    timestamp: datetime
    volume: float | None
    trade_count: int


_BUCKET: Final[dict[Flavour, str]] = {
    "plain": "date_bin(%(width)s, {time}, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
    "timescale": "time_bucket(%(width)s, {time})",
}
_FIRST: Final[dict[Flavour, str]] = {
    "plain": "(array_agg({value} ORDER BY {time}))[1]",
    "timescale": "first({value}, {time})",
}
_LAST: Final[dict[Flavour, str]] = {
    "plain": "(array_agg({value} ORDER BY {time} DESC))[1]",
    "timescale": "last({value}, {time})",
}


def _candles(
    name: str, table: str, time: str, ohlc: tuple[str, str, str, str], ticks: str
) -> dict[Flavour, Query[CandleTicks]]:
    """Per flavour: the candles of ``table`` (whose prices are ``ohlc``) in ``[lo, hi)``."""
    o, h, low, c = ohlc

    def sql(flavour: Flavour) -> str:
        first = _FIRST[flavour].format(value=o, time=time)
        last = _LAST[flavour].format(value=c, time=time)
        return f"""SELECT {_BUCKET[flavour].format(time=time)} AS timestamp,
       {first} AS open, max({h}) AS high, min({low}) AS low,
       {last} AS close, {ticks} AS tick_count
FROM {table}
WHERE pair = %(pair)s AND {time} >= %(lo)s AND {time} < %(hi)s
GROUP BY 1
ORDER BY 1 DESC
LIMIT %(n)s"""

    return {f: Query(name, "SELECT", table, sql(f), CandleTicks) for f in FLAVOURS}


def _volumes(name: str, table: str, time: str, trades: str) -> dict[Flavour, Query[BucketVolume]]:
    """Per flavour: the traded volume of ``table`` per bucket in ``[lo, hi)``."""

    def sql(flavour: Flavour) -> str:
        return f"""SELECT {_BUCKET[flavour].format(time=time)} AS timestamp,
       sum(volume) AS volume, {trades} AS trade_count
FROM {table}
WHERE pair = %(pair)s AND {time} >= %(lo)s AND {time} < %(hi)s
GROUP BY 1"""

    return {f: Query(name, "SELECT", table, sql(f), BucketVolume) for f in FLAVOURS}


RAW_CANDLES = _candles(
    "candles_raw", "ticker_data", "timestamp", ("last", "last", "last", "last"), "count(*)"
)
HOURLY_CANDLES = _candles(
    "candles_hourly",
    "ticker_ohlc_hourly",
    "bucket",
    ("open", "high", "low", "close"),
    "sum(tick_count)::bigint",
)
RAW_VOLUMES = _volumes("candle_volumes_raw", "trade_data", "timestamp", "count(*)")
HOURLY_VOLUMES = _volumes(
    "candle_volumes_hourly", "trade_volume_hourly", "bucket", "sum(trade_count)::bigint"
)


def _previous(name: str, table: str, time: str) -> Query[One[datetime | None]]:
    """The newest data of ``table`` in ``[lo, hi)``: lets the page loop jump over a gap
    before a window that came back short in one index probe, not window by window."""
    sql = f"""SELECT max({time}) AS value FROM {table}
WHERE pair = %(pair)s AND {time} >= %(lo)s AND {time} < %(hi)s"""
    return Query(name, "SELECT", table, sql, One[datetime | None])


RAW_PREVIOUS = _previous("candles_raw_previous", "ticker_data", "timestamp")
HOURLY_PREVIOUS = _previous("candles_hourly_previous", "ticker_ohlc_hourly", "bucket")


def use_hourly_aggregate(flavour: Flavour, width: timedelta, force: bool | None) -> bool:
    """Whether ``ticker_ohlc_hourly`` serves candles of ``width``.

    Only whole-hour intervals can be rebuilt from hourly candles. On TimescaleDB the
    relation is a materialized continuous aggregate, far cheaper than the raw ticks.
    On plain PostgreSQL it is a view over ticker_data that cannot push a time filter
    below its GROUP BY, so the raw table (same definition, filtered) is cheaper and
    gives identical candles. ``force`` overrides the choice (tests use both paths).
    """
    whole_hours = width >= timedelta(hours=1) and width % timedelta(hours=1) == timedelta(0)
    if not whole_hours:
        return False
    return flavour == "timescale" if force is None else force


async def fetch_candles(
    db: Database,
    conn: Connection,
    *,
    pair: str,
    width: timedelta,
    lo: datetime,
    hi: datetime,
    need: int,
    hourly: bool,
) -> list[Candle]:
    """Up to ``need`` candles with buckets in ``[lo, hi)`` (bucket-aligned), newest first.

    Scans at most ``need`` buckets of ticks per query: the window below ``hi`` is
    aggregated, and if it holds fewer candles (gaps), the next window starts at the
    newest data before it, found with one index probe.
    """
    flavour: Flavour = db.flavour or "plain"
    candles_q = (HOURLY_CANDLES if hourly else RAW_CANDLES)[flavour]
    volumes_q = (HOURLY_VOLUMES if hourly else RAW_VOLUMES)[flavour]
    previous_q = HOURLY_PREVIOUS if hourly else RAW_PREVIOUS
    out: list[Candle] = []
    upper = hi
    while len(out) < need and upper > lo:
        remaining = need - len(out)
        window_lo = max(lo, _minus(upper, width * remaining))
        params = {"width": width, "pair": pair, "lo": window_lo, "hi": upper, "n": remaining}
        ticks = await db.fetch(candles_q, params, conn)
        if ticks:
            volumes = {v.timestamp: v for v in await db.fetch(volumes_q, params, conn)}
            out += [_candle(t, volumes.get(t.timestamp)) for t in ticks]
        if len(out) >= need or window_lo <= lo:
            break
        prev = await db.fetch_one(previous_q, {"pair": pair, "lo": lo, "hi": window_lo}, conn)
        if prev is None or prev.value is None:
            break
        upper = floor_to(prev.value, width) + width
    return out


def _candle(ticks: CandleTicks, volume: BucketVolume | None) -> Candle:
    return Candle(
        timestamp=ticks.timestamp,
        open=ticks.open,
        high=ticks.high,
        low=ticks.low,
        close=ticks.close,
        volume=0.0 if volume is None else float(volume.volume or 0.0),
        trade_count=0 if volume is None else int(volume.trade_count),
        tick_count=int(ticks.tick_count),
    )


def _minus(moment: datetime, span: timedelta) -> datetime:
    try:
        return max(moment - span, OPEN_START)
    except OverflowError:
        return OPEN_START


def candle_bounds(
    start: datetime | None, end: datetime | None, width: timedelta
) -> tuple[datetime, datetime]:
    """``[lo, hi)`` bucket-aligned: every bucket overlapping ``[start, end]``, in full.

    Whole buckets make the edges independent of the source: a candle built from the
    hourly aggregate and one built from the raw ticks cover the same ticks.
    OPEN_START and OPEN_END are whole days after the origin, so aligned for every
    interval offered.
    """
    lo = floor_to(start, width) if start is not None else OPEN_START
    hi = floor_to(end, width) + width if end is not None else OPEN_END
    return lo, hi


class CandlePage(msgspec.Struct, frozen=True, kw_only=True):
    candles: list[Candle]
    """Up to ``page.limit + 1`` candles, newest first (one more: there is a next page)."""
    hourly: bool
    """Whether ``ticker_ohlc_hourly`` served them (else ``ticker_data``)."""


async def candle_page(ctx: ApiContext, pair: str, width: timedelta, page: Page) -> CandlePage:
    """One page of candles of ``pair``, the settled buckets through the cache."""
    lo, hi = candle_bounds(page.range.start, page.range.end, width)
    if page.after is not None:
        hi = page.after.ts  # the last bucket served, exclusive
    async with ctx.db.connection() as conn:
        source = ctx.settings.candle_source
        force = None if source == "auto" else source == "aggregate"
        hourly = use_hourly_aggregate(ctx.db.flavour or "plain", width, force)
        need = page.limit + 1
        # Buckets before `settled` ended at least GRACE ago: they come from the cache
        # (computed once per TTL); newer ones are computed on every request.
        settled = max(lo, min(hi, floor_to(ctx.now() - GRACE, width)))
        candles: list[Candle] = []
        if hi > settled:
            candles = await fetch_candles(
                ctx.db, conn, pair=pair, width=width, lo=settled, hi=hi, need=need, hourly=hourly
            )
        if len(candles) < need and settled > lo:
            # Always `need` older candles, so the key does not depend on how many recent
            # ones this request happened to have.
            async def older() -> list[Candle]:
                return await fetch_candles(
                    ctx.db, conn, pair=pair, width=width, lo=lo, hi=settled, need=need,
                    hourly=hourly,
                )  # fmt: skip

            key = (pair, width, hourly, lo, settled, need)
            candles = candles + (await ctx.candles.get(key, older))[: need - len(candles)]
    return CandlePage(candles=candles, hourly=hourly)
