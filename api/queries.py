"""Every SQL statement of the API (fixed text, values only as parameters) and the
small loops around them (keyset pages, candle windows).

Keyset pagination: rows come newest first, ordered by ``(timestamp, key...)``
descending, where the key columns make the order total (the rest of the primary
key). A page asks for ``limit + 1`` rows below the cursor position ``(cts, ck)``;
the extra row only says whether a next page exists. The position is written
``timestamp <= cts AND (timestamp < cts OR key < ck)`` rather than as a row
comparison so the ``timestamp`` bound stays an index condition on the
``(symbol, timestamp DESC)`` indexes, whose key columns do not include ``key``.
The first page uses ``cts = end + 1 µs``: every row up to ``end`` qualifies.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from psycopg import AsyncConnection

from api.db import Database, Flavour, Query, Row
from api.params import OPEN_END, OPEN_START, Page, floor_to

ONE_MICROSECOND: Final = timedelta(microseconds=1)

# -- history -------------------------------------------------------------------------

TICKER_PAGE = Query(
    "ticker_page",
    "SELECT",
    "ticker_data",
    """SELECT timestamp, last, bid, ask, volume_24h, bid_qty, ask_qty, vwap, low, high,
       change_pct
FROM ticker_data
WHERE pair = %(key)s AND timestamp >= %(lo)s AND timestamp < %(cts)s
ORDER BY timestamp DESC
LIMIT %(n)s""",
)

TRADE_PAGE = Query(
    "trade_page",
    "SELECT",
    "trade_data",
    """SELECT timestamp, price, volume, side, trade_id, ord_type, trade_key
FROM trade_data
WHERE pair = %(key)s AND timestamp >= %(lo)s
  AND timestamp <= %(cts)s AND (timestamp < %(cts)s OR trade_key < %(ck0)s)
ORDER BY timestamp DESC, trade_key DESC
LIMIT %(n)s""",
)

SENTIMENT_PAGE = Query(
    "sentiment_page",
    "SELECT",
    "sentiment_data",
    """SELECT timestamp, window_start, sentiment_score, sentiment_label, source, confidence,
       article_count
FROM sentiment_data
WHERE crypto_symbol = %(key)s AND timestamp >= %(lo)s
  AND timestamp <= %(cts)s AND (timestamp < %(cts)s OR source < %(ck0)s)
ORDER BY timestamp DESC, source DESC
LIMIT %(n)s""",
)

PREDICTION_PAGE = Query(
    "prediction_page",
    "SELECT",
    "prediction_data",
    """SELECT timestamp, window_start, model_name, predicted_price, actual_price,
       confidence_interval_low, confidence_interval_high, interval_level, horizon_s,
       target_time, last_price
FROM prediction_data
WHERE crypto_symbol = %(key)s AND timestamp >= %(lo)s
  AND timestamp <= %(cts)s AND (timestamp < %(cts)s OR model_name < %(ck0)s)
ORDER BY timestamp DESC, model_name DESC
LIMIT %(n)s""",
)

_ARTICLE_COLUMNS = """timestamp, article_id, title, url, website, summary,
       cryptocurrencies_mentioned, sentiment_score, sentiment_label, subjectivity"""

ARTICLE_PAGE = Query(
    "article_page",
    "SELECT",
    "article_data",
    f"""SELECT {_ARTICLE_COLUMNS}
FROM article_data
WHERE timestamp >= %(lo)s
  AND timestamp <= %(cts)s AND (timestamp < %(cts)s OR article_id < %(ck0)s)
ORDER BY timestamp DESC, article_id DESC
LIMIT %(n)s""",
)

# The GIN index on cryptocurrencies_mentioned serves "@>" (mentions are stored as
# canonical symbols by the ingestion handlers).
ARTICLE_BY_SYMBOL_PAGE = Query(
    "article_by_symbol_page",
    "SELECT",
    "article_data",
    f"""SELECT {_ARTICLE_COLUMNS}
FROM article_data
WHERE cryptocurrencies_mentioned @> ARRAY[%(key)s]::text[] AND timestamp >= %(lo)s
  AND timestamp <= %(cts)s AND (timestamp < %(cts)s OR article_id < %(ck0)s)
ORDER BY timestamp DESC, article_id DESC
LIMIT %(n)s""",
)

_ALERT_COLUMNS = """timestamp, pair, last_price, change_percent, threshold, alert_type,
       reference_price, window_s"""

ALERT_PAGE = Query(
    "alert_page",
    "SELECT",
    "alert_data",
    f"""SELECT {_ALERT_COLUMNS}
FROM alert_data
WHERE timestamp >= %(lo)s
  AND timestamp <= %(cts)s
  AND (timestamp < %(cts)s OR (pair, alert_type) < (%(ck0)s, %(ck1)s))
ORDER BY timestamp DESC, pair DESC, alert_type DESC
LIMIT %(n)s""",
)

ALERT_BY_PAIR_PAGE = Query(
    "alert_by_pair_page",
    "SELECT",
    "alert_data",
    f"""SELECT {_ALERT_COLUMNS}
FROM alert_data
WHERE pair = %(key)s AND timestamp >= %(lo)s
  AND timestamp <= %(cts)s AND (timestamp < %(cts)s OR alert_type < %(ck1)s)
ORDER BY timestamp DESC, alert_type DESC
LIMIT %(n)s""",
)


async def fetch_page(
    db: Database, query: Query, page: Page, key: str | None, key_count: int
) -> list[Row]:
    """Up to ``page.limit + 1`` rows of a keyset listing (see the module docstring)."""
    if page.after is not None:
        cts = page.after.ts
        keys = list(page.after.keys)
    else:
        cts = page.range.hi + ONE_MICROSECOND
        keys = []
    keys += [""] * (max(key_count, 2) - len(keys))
    params: dict[str, Any] = {
        "key": key,
        "lo": page.range.lo,
        "cts": cts,
        "n": page.limit + 1,
        "ck0": keys[0],
        "ck1": keys[1],
    }
    return await db.fetch(query, params)


# -- latest values -------------------------------------------------------------------

LATEST_PRICE = Query(
    "latest_price",
    "SELECT",
    "ticker_data",
    """SELECT l.timestamp, l.last, l.bid, l.ask, l.volume_24h, l.change_pct, r.timestamp, r.last
FROM (SELECT timestamp, last, bid, ask, volume_24h, change_pct
      FROM ticker_data WHERE pair = %(pair)s
      ORDER BY timestamp DESC LIMIT 1) AS l
LEFT JOIN LATERAL (
      SELECT timestamp, last FROM ticker_data
      WHERE pair = %(pair)s AND timestamp <= l.timestamp - INTERVAL '24 hours'
      ORDER BY timestamp DESC LIMIT 1) AS r ON true""",
)

# Latest prediction of each model: bounded to the day before the newest one so the
# DISTINCT ON sorts a day of rows, found through (crypto_symbol, timestamp DESC).
LATEST_PREDICTIONS = Query(
    "latest_predictions",
    "SELECT",
    "prediction_data",
    """SELECT DISTINCT ON (model_name)
       model_name, timestamp, window_start, predicted_price, confidence_interval_low,
       confidence_interval_high, interval_level, horizon_s, target_time, last_price
FROM prediction_data
WHERE crypto_symbol = %(symbol)s
  AND timestamp >= (SELECT max(timestamp) FROM prediction_data
                    WHERE crypto_symbol = %(symbol)s) - INTERVAL '1 day'
ORDER BY model_name, timestamp DESC""",
)

PREDICTION_ACCURACY = Query(
    "prediction_accuracy",
    "SELECT",
    "prediction_data",
    """SELECT model_name,
       count(*),
       avg(abs(predicted_price - actual_price)),
       avg(abs(predicted_price - actual_price) / nullif(abs(actual_price), 0)) * 100,
       avg(CASE WHEN actual_price BETWEEN confidence_interval_low
                                      AND confidence_interval_high
                THEN 1.0 ELSE 0.0 END)
           FILTER (WHERE confidence_interval_low IS NOT NULL
                     AND confidence_interval_high IS NOT NULL) * 100
FROM prediction_data
WHERE crypto_symbol = %(symbol)s AND timestamp >= %(since)s AND actual_price IS NOT NULL
GROUP BY model_name""",
)

# Freshness per symbol and per pair: each max() is one probe of a (key, timestamp)
# index, so the cost does not grow with the tables.
SYMBOL_FRESHNESS = Query(
    "symbol_freshness",
    "SELECT",
    "crypto_configuration",
    """SELECT c.symbol, c.name, c.active,
       (SELECT max(s.timestamp) FROM sentiment_data s WHERE s.crypto_symbol = c.symbol),
       (SELECT max(p.timestamp) FROM prediction_data p WHERE p.crypto_symbol = c.symbol)
FROM crypto_configuration c
ORDER BY c.symbol""",
)

PAIR_FRESHNESS = Query(
    "pair_freshness",
    "SELECT",
    "ticker_data",
    """SELECT p.pair,
       (SELECT max(t.timestamp) FROM ticker_data t WHERE t.pair = p.pair),
       (SELECT max(d.timestamp) FROM trade_data d WHERE d.pair = p.pair)
FROM unnest(%(pairs)s::text[]) AS p(pair)""",
)

PING = Query("ping", "SELECT", "", "SELECT 1")

# -- candles -------------------------------------------------------------------------
#
# Buckets are aligned on 2000-01-01 00:00 UTC, like the plain flavour's views;
# TimescaleDB's time_bucket aligns on 2000-01-03 (a Monday), which gives the same
# buckets for every interval offered here (all divide 48 hours).

_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"

RAW_CANDLES: Final[dict[Flavour, Query]] = {
    "plain": Query(
        "candles_raw",
        "SELECT",
        "ticker_data",
        f"""SELECT date_bin(%(width)s, timestamp, {_ORIGIN}) AS bucket,
       (array_agg(last ORDER BY timestamp))[1], max(last), min(last),
       (array_agg(last ORDER BY timestamp DESC))[1], count(*)
FROM ticker_data
WHERE pair = %(pair)s AND timestamp >= %(lo)s AND timestamp < %(hi)s
GROUP BY 1
ORDER BY 1 DESC
LIMIT %(n)s""",
    ),
    "timescale": Query(
        "candles_raw",
        "SELECT",
        "ticker_data",
        """SELECT time_bucket(%(width)s, timestamp) AS bucket,
       first(last, timestamp), max(last), min(last), last(last, timestamp), count(*)
FROM ticker_data
WHERE pair = %(pair)s AND timestamp >= %(lo)s AND timestamp < %(hi)s
GROUP BY 1
ORDER BY 1 DESC
LIMIT %(n)s""",
    ),
}

HOURLY_CANDLES: Final[dict[Flavour, Query]] = {
    "plain": Query(
        "candles_hourly",
        "SELECT",
        "ticker_ohlc_hourly",
        f"""SELECT date_bin(%(width)s, bucket, {_ORIGIN}) AS b,
       (array_agg(open ORDER BY bucket))[1], max(high), min(low),
       (array_agg(close ORDER BY bucket DESC))[1], sum(tick_count)::bigint
FROM ticker_ohlc_hourly
WHERE pair = %(pair)s AND bucket >= %(lo)s AND bucket < %(hi)s
GROUP BY 1
ORDER BY 1 DESC
LIMIT %(n)s""",
    ),
    "timescale": Query(
        "candles_hourly",
        "SELECT",
        "ticker_ohlc_hourly",
        """SELECT time_bucket(%(width)s, bucket) AS b,
       first(open, bucket), max(high), min(low), last(close, bucket),
       sum(tick_count)::bigint
FROM ticker_ohlc_hourly
WHERE pair = %(pair)s AND bucket >= %(lo)s AND bucket < %(hi)s
GROUP BY 1
ORDER BY 1 DESC
LIMIT %(n)s""",
    ),
}

RAW_VOLUMES: Final[dict[Flavour, Query]] = {
    "plain": Query(
        "candle_volumes_raw",
        "SELECT",
        "trade_data",
        f"""SELECT date_bin(%(width)s, timestamp, {_ORIGIN}), sum(volume), count(*)
FROM trade_data
WHERE pair = %(pair)s AND timestamp >= %(lo)s AND timestamp < %(hi)s
GROUP BY 1""",
    ),
    "timescale": Query(
        "candle_volumes_raw",
        "SELECT",
        "trade_data",
        """SELECT time_bucket(%(width)s, timestamp), sum(volume), count(*)
FROM trade_data
WHERE pair = %(pair)s AND timestamp >= %(lo)s AND timestamp < %(hi)s
GROUP BY 1""",
    ),
}

HOURLY_VOLUMES: Final[dict[Flavour, Query]] = {
    "plain": Query(
        "candle_volumes_hourly",
        "SELECT",
        "trade_volume_hourly",
        f"""SELECT date_bin(%(width)s, bucket, {_ORIGIN}), sum(volume), sum(trade_count)::bigint
FROM trade_volume_hourly
WHERE pair = %(pair)s AND bucket >= %(lo)s AND bucket < %(hi)s
GROUP BY 1""",
    ),
    "timescale": Query(
        "candle_volumes_hourly",
        "SELECT",
        "trade_volume_hourly",
        """SELECT time_bucket(%(width)s, bucket), sum(volume), sum(trade_count)::bigint
FROM trade_volume_hourly
WHERE pair = %(pair)s AND bucket >= %(lo)s AND bucket < %(hi)s
GROUP BY 1""",
    ),
}

# The newest data before a window that came back short: lets the page loop jump
# over a gap in one index probe instead of walking it window by window.
RAW_PREVIOUS = Query(
    "candles_raw_previous",
    "SELECT",
    "ticker_data",
    """SELECT max(timestamp) FROM ticker_data
WHERE pair = %(pair)s AND timestamp >= %(lo)s AND timestamp < %(hi)s""",
)
HOURLY_PREVIOUS = Query(
    "candles_hourly_previous",
    "SELECT",
    "ticker_ohlc_hourly",
    """SELECT max(bucket) FROM ticker_ohlc_hourly
WHERE pair = %(pair)s AND bucket >= %(lo)s AND bucket < %(hi)s""",
)

CandleRow = tuple[datetime, float, float, float, float, int, float, int]
"""bucket, open, high, low, close, tick_count, volume, trade_count"""


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
    conn: AsyncConnection[Row],
    *,
    pair: str,
    width: timedelta,
    lo: datetime,
    hi: datetime,
    need: int,
    hourly: bool,
) -> list[CandleRow]:
    """Up to ``need`` candles with buckets in ``[lo, hi)`` (bucket-aligned), newest first.

    Scans at most ``need`` buckets of ticks per query: the window below ``hi`` is
    aggregated, and if it holds fewer candles (gaps), the next window starts at the
    newest data before it, found with one index probe.
    """
    flavour: Flavour = db.flavour or "plain"
    candles_q = (HOURLY_CANDLES if hourly else RAW_CANDLES)[flavour]
    volumes_q = (HOURLY_VOLUMES if hourly else RAW_VOLUMES)[flavour]
    previous_q = HOURLY_PREVIOUS if hourly else RAW_PREVIOUS
    out: list[CandleRow] = []
    upper = hi
    while len(out) < need and upper > lo:
        remaining = need - len(out)
        window_lo = max(lo, _minus(upper, width * remaining))
        params = {"width": width, "pair": pair, "lo": window_lo, "hi": upper, "n": remaining}
        rows = await db.fetch(candles_q, params, conn)
        if rows:
            volumes = {
                r[0]: (float(r[1] or 0.0), int(r[2]))
                for r in await db.fetch(volumes_q, params, conn)
            }
            for bucket, o, h, low, c, ticks in rows:
                volume, trades = volumes.get(bucket, (0.0, 0))
                out.append((bucket, o, h, low, c, int(ticks), volume, trades))
        if len(out) >= need or window_lo <= lo:
            break
        prev = await db.fetch_one(previous_q, {"pair": pair, "lo": lo, "hi": window_lo}, conn)
        if prev is None or prev[0] is None:
            break
        upper = floor_to(prev[0], width) + width
    return out


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


# -- configuration -------------------------------------------------------------------

_CRYPTO_COLUMNS = "symbol, name, active, created_at, updated_at"

CRYPTO_CONFIG_LIST = Query(
    "crypto_config_list",
    "SELECT",
    "crypto_configuration",
    f"SELECT {_CRYPTO_COLUMNS} FROM crypto_configuration ORDER BY symbol",
)
CRYPTO_CONFIG_GET = Query(
    "crypto_config_get",
    "SELECT",
    "crypto_configuration",
    f"SELECT {_CRYPTO_COLUMNS} FROM crypto_configuration WHERE symbol = %(symbol)s",
)
CRYPTO_CONFIG_INSERT = Query(
    "crypto_config_insert",
    "INSERT",
    "crypto_configuration",
    f"""INSERT INTO crypto_configuration (symbol, name, active)
VALUES (%(symbol)s, %(name)s, %(active)s)
ON CONFLICT (symbol) DO NOTHING
RETURNING {_CRYPTO_COLUMNS}""",
)
CRYPTO_CONFIG_UPDATE = Query(
    "crypto_config_update",
    "UPDATE",
    "crypto_configuration",
    f"""UPDATE crypto_configuration
SET name = COALESCE(%(name)s, name), active = COALESCE(%(active)s, active)
WHERE symbol = %(symbol)s
RETURNING {_CRYPTO_COLUMNS}""",
)
CRYPTO_CONFIG_DELETE = Query(
    "crypto_config_delete",
    "DELETE",
    "crypto_configuration",
    "DELETE FROM crypto_configuration WHERE symbol = %(symbol)s RETURNING symbol",
)

_VIZ_COLUMNS = "id, name, symbol, time_range, chart_type, indicators, created_at, updated_at"

VIZ_CONFIG_LIST = Query(
    "viz_config_list",
    "SELECT",
    "visualization_parameters",
    f"SELECT {_VIZ_COLUMNS} FROM visualization_parameters ORDER BY id",
)
VIZ_CONFIG_LIST_BY_SYMBOL = Query(
    "viz_config_list_by_symbol",
    "SELECT",
    "visualization_parameters",
    f"SELECT {_VIZ_COLUMNS} FROM visualization_parameters WHERE symbol = %(symbol)s ORDER BY id",
)
VIZ_CONFIG_GET = Query(
    "viz_config_get",
    "SELECT",
    "visualization_parameters",
    f"SELECT {_VIZ_COLUMNS} FROM visualization_parameters WHERE id = %(id)s",
)
VIZ_CONFIG_INSERT = Query(
    "viz_config_insert",
    "INSERT",
    "visualization_parameters",
    f"""INSERT INTO visualization_parameters (name, symbol, time_range, chart_type, indicators)
VALUES (%(name)s, %(symbol)s, %(time_range)s, %(chart_type)s, %(indicators)s)
ON CONFLICT (name) DO NOTHING
RETURNING {_VIZ_COLUMNS}""",
)
VIZ_CONFIG_UPDATE = Query(
    "viz_config_update",
    "UPDATE",
    "visualization_parameters",
    f"""UPDATE visualization_parameters
SET name = COALESCE(%(name)s, name),
    symbol = COALESCE(%(symbol)s, symbol),
    time_range = COALESCE(%(time_range)s, time_range),
    chart_type = COALESCE(%(chart_type)s, chart_type),
    indicators = COALESCE(%(indicators)s, indicators)
WHERE id = %(id)s
RETURNING {_VIZ_COLUMNS}""",
)
VIZ_CONFIG_DELETE = Query(
    "viz_config_delete",
    "DELETE",
    "visualization_parameters",
    "DELETE FROM visualization_parameters WHERE id = %(id)s RETURNING id",
)
