"""Shared expectations for both flavours: the schema contract and known rollup results.

The plain-PostgreSQL tests (test_migrate.py) and the TimescaleDB-on-PGlite tests
(test_timescale_pglite.py) insert the same rows and assert the same expected values,
so a query written against ``ticker_ohlc_hourly`` & co. behaves identically on both.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import psycopg

# --------------------------------------------------------------------------- schema

# table -> [(column, data_type as in information_schema, nullable)], in table order.
TABLE_COLUMNS: dict[str, list[tuple[str, str, bool]]] = {
    "ticker_data": [
        ("timestamp", "timestamp with time zone", False),
        ("pair", "text", False),
        ("last", "numeric", False),
        ("bid", "numeric", True),
        ("ask", "numeric", True),
        ("volume_24h", "numeric", True),
        ("bid_qty", "numeric", True),
        ("ask_qty", "numeric", True),
        ("vwap", "numeric", True),
        ("low", "numeric", True),
        ("high", "numeric", True),
        ("change_24h_pct", "numeric", True),
        ("exchange_time", "timestamp with time zone", True),
        ("receive_time", "timestamp with time zone", True),
        ("ingest_time", "timestamp with time zone", False),
        ("source", "text", False),
        ("kafka_time", "timestamp with time zone", True),
        ("pct_change", "numeric", True),
    ],
    "trade_data": [
        ("timestamp", "timestamp with time zone", False),
        ("pair", "text", False),
        ("price", "numeric", False),
        ("volume", "numeric", False),
        ("side", "character", False),
        ("trade_id", "bigint", True),
        ("ord_type", "text", True),
        ("trade_key", "text", False),
        ("receive_time", "timestamp with time zone", True),
        ("ingest_time", "timestamp with time zone", False),
        ("source", "text", False),
        ("kafka_time", "timestamp with time zone", True),
    ],
    "article_data": [
        ("timestamp", "timestamp with time zone", False),
        ("article_id", "text", False),
        ("title", "text", False),
        ("url", "text", True),
        ("website", "text", True),
        ("summary", "text", True),
        ("cryptocurrencies_mentioned", "ARRAY", False),
        ("sentiment_score", "double precision", True),
        ("sentiment_label", "text", True),
        ("subjectivity", "double precision", True),
        ("receive_time", "timestamp with time zone", True),
        ("ingest_time", "timestamp with time zone", False),
        ("source", "text", False),
        ("kafka_time", "timestamp with time zone", True),
        ("published_at", "timestamp with time zone", True),
    ],
    "alert_data": [
        ("timestamp", "timestamp with time zone", False),
        ("pair", "text", False),
        ("last_price", "numeric", True),
        ("change_percent", "numeric", False),
        ("threshold", "numeric", True),
        ("alert_type", "text", False),
        ("reference_price", "numeric", True),
        ("window_s", "integer", True),
        ("receive_time", "timestamp with time zone", True),
        ("ingest_time", "timestamp with time zone", False),
        ("source", "text", False),
        ("kafka_time", "timestamp with time zone", True),
    ],
    "sentiment_data": [
        ("timestamp", "timestamp with time zone", False),
        ("window_start", "timestamp with time zone", False),
        ("crypto_symbol", "text", False),
        ("sentiment_score", "double precision", False),
        ("sentiment_label", "text", False),
        ("source", "text", False),
        ("confidence", "double precision", False),
        ("article_count", "integer", False),
        ("updated_at", "timestamp with time zone", True),
    ],
    "prediction_data": [
        ("timestamp", "timestamp with time zone", False),
        ("window_start", "timestamp with time zone", True),
        ("crypto_symbol", "text", False),
        ("model_name", "text", False),
        ("predicted_price", "numeric", False),
        ("actual_price", "numeric", True),
        ("confidence_interval_low", "numeric", True),
        ("confidence_interval_high", "numeric", True),
        ("interval_level", "double precision", True),
        ("horizon_s", "integer", False),
        ("target_time", "timestamp with time zone", False),
        ("last_price", "numeric", True),
        ("updated_at", "timestamp with time zone", True),
        ("outer_interval_low", "numeric", True),
        ("outer_interval_high", "numeric", True),
        ("outer_interval_level", "double precision", True),
        ("trailing_skill", "double precision", True),
        ("preferred", "boolean", False),
    ],
    "forecast_state": [
        ("crypto_symbol", "text", False),
        ("bar_end", "timestamp with time zone", False),
        ("state_version", "integer", False),
        ("state", "bytea", False),
        ("updated_at", "timestamp with time zone", False),
    ],
    "crypto_configuration": [
        ("symbol", "text", False),
        ("name", "text", False),
        ("active", "boolean", False),
        ("created_at", "timestamp with time zone", False),
        ("updated_at", "timestamp with time zone", False),
    ],
    "visualization_parameters": [
        ("id", "bigint", False),
        ("name", "text", False),
        ("symbol", "text", False),
        ("time_range", "text", False),
        ("chart_type", "text", False),
        ("indicators", "ARRAY", False),
        ("created_at", "timestamp with time zone", False),
        ("updated_at", "timestamp with time zone", False),
    ],
}

PRIMARY_KEYS: dict[str, list[str]] = {
    "ticker_data": ["pair", "timestamp"],
    "trade_data": ["pair", "timestamp", "trade_key"],
    "article_data": ["article_id", "timestamp"],
    "alert_data": ["pair", "timestamp", "alert_type"],
    "sentiment_data": ["crypto_symbol", "source", "timestamp"],
    "prediction_data": ["crypto_symbol", "model_name", "horizon_s", "timestamp"],
    "forecast_state": ["crypto_symbol"],
    "crypto_configuration": ["symbol"],
    "visualization_parameters": ["id"],
}

TIME_SERIES_TABLES = (
    "ticker_data",
    "trade_data",
    "article_data",
    "alert_data",
    "sentiment_data",
    "prediction_data",
)

ROLLUP_COLUMNS: dict[str, list[str]] = {
    "ticker_ohlc_hourly": [
        "bucket",
        "pair",
        "open",
        "high",
        "low",
        "close",
        "volume_24h",
        "tick_count",
    ],
    "trade_volume_hourly": [
        "bucket",
        "pair",
        "volume",
        "buy_volume",
        "sell_volume",
        "vwap",
        "trade_count",
    ],
    "sentiment_hourly": [
        "bucket",
        "crypto_symbol",
        "avg_sentiment_score",
        "article_count",
        "window_count",
    ],
}

SEEDED_CRYPTOS = {
    "BTC": "Bitcoin",
    "ETH": "Ethereum",
    "SOL": "Solana",
    "ADA": "Cardano",
    "DOT": "Polkadot",
    "LINK": "Chainlink",
}

Conn = psycopg.Connection[tuple[object, ...]]


def table_columns(conn: Conn, table: str) -> list[tuple[str, str, bool]]:
    rows = conn.execute(
        """SELECT column_name, data_type, is_nullable = 'YES'
           FROM information_schema.columns
           WHERE table_schema = 'public' AND table_name = %s
           ORDER BY ordinal_position""",
        (table,),
    ).fetchall()
    return [(str(c), str(t), bool(n)) for c, t, n in rows]


def primary_key(conn: Conn, table: str) -> list[str]:
    rows = conn.execute(
        """SELECT a.attname
           FROM pg_index i
           CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE i.indrelid = %s::regclass AND i.indisprimary
           ORDER BY k.n""",
        (f"public.{table}",),
    ).fetchall()
    return [str(r[0]) for r in rows]


# --------------------------------------------------------------------------- rollups


def ts(hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2024, 3, 14, hour, minute, second, micro, tzinfo=UTC)


# (timestamp, pair, last, volume_24h)
TICKS: list[tuple[datetime, str, Decimal, Decimal | None]] = [
    (ts(10, 0), "XBT/USD", Decimal("100.5"), Decimal("1000")),
    (ts(10, 15, 30), "XBT/USD", Decimal("103.25"), Decimal("1010.5")),
    (ts(10, 30), "XBT/USD", Decimal("101"), None),
    (ts(10, 59, 59, 999000), "XBT/USD", Decimal("99.125"), Decimal("1020.25")),
    (ts(11, 0), "XBT/USD", Decimal("98"), Decimal("1021")),  # on the boundary: next hour
    (ts(11, 45), "XBT/USD", Decimal("105.75"), None),  # close of 11:00 has no volume
    (ts(10, 5), "ETH/USD", Decimal("2000.123456789"), Decimal("50000.000001")),
    (ts(10, 6), "ETH/USD", Decimal("1999.99"), Decimal("50001")),
]
TICK_PAIRS = ("ETH/USD", "XBT/USD")

# (bucket, pair, open, high, low, close, volume_24h, tick_count), ordered by pair, bucket.
EXPECTED_OHLC: list[tuple[object, ...]] = [
    (
        ts(10),
        "ETH/USD",
        Decimal("2000.123456789"),
        Decimal("2000.123456789"),
        Decimal("1999.99"),
        Decimal("1999.99"),
        Decimal("50001"),
        2,
    ),
    (
        ts(10),
        "XBT/USD",
        Decimal("100.5"),
        Decimal("103.25"),
        Decimal("99.125"),
        Decimal("99.125"),
        Decimal("1020.25"),
        4,
    ),
    (
        ts(11),
        "XBT/USD",
        Decimal("98"),
        Decimal("105.75"),
        Decimal("98"),
        Decimal("105.75"),
        None,
        2,
    ),
]

# (timestamp, pair, price, volume, side, trade_key)
TRADES: list[tuple[datetime, str, Decimal, Decimal, str, str]] = [
    (ts(10, 1), "XBT/USD", Decimal("100"), Decimal("2"), "b", "t1"),
    (ts(10, 2), "XBT/USD", Decimal("110"), Decimal("1"), "s", "t2"),
    (ts(10, 2), "XBT/USD", Decimal("105"), Decimal("1"), "b", "t3"),  # same instant
    (ts(11, 30), "XBT/USD", Decimal("90.5"), Decimal("0.25"), "s", "t4"),
]

# (bucket, pair, volume, buy_volume, sell_volume, vwap, trade_count)
EXPECTED_TRADE_VOLUME: list[tuple[object, ...]] = [
    (ts(10), "XBT/USD", Decimal("4"), Decimal("3"), Decimal("1"), Decimal("103.75"), 3),
    (ts(11), "XBT/USD", Decimal("0.25"), Decimal("0"), Decimal("0.25"), Decimal("90.5"), 1),
]

# (window end, crypto_symbol, sentiment_score, source, article_count)
SENTIMENTS: list[tuple[datetime, str, float, str, int]] = [
    (ts(10, 5), "BTC", 0.5, "rss", 3),
    (ts(10, 5), "BTC", -0.25, "reddit", 1),
    (ts(10, 35), "BTC", 0.5, "rss", 2),
    (ts(11, 0), "BTC", 0.75, "rss", 4),  # window ending on the hour: next bucket
    (ts(10, 10), "ETH", -0.5, "rss", 5),
]
SENTIMENT_SYMBOLS = ("BTC", "ETH")

# (bucket, crypto_symbol, avg_sentiment_score, article_count, window_count)
EXPECTED_SENTIMENT: list[tuple[object, ...]] = [
    (ts(10), "BTC", 0.25, 6, 3),
    (ts(11), "BTC", 0.75, 4, 1),
    (ts(10), "ETH", -0.5, 5, 1),
]


def insert_known_rows(conn: Conn) -> None:
    """Insert TICKS, TRADES and SENTIMENTS with plain INSERTs, in a shuffled order.

    Shuffling proves that open/close come from the timestamps, not insertion order.
    """
    rng = random.Random(20240314)
    ticks = TICKS[:]
    rng.shuffle(ticks)
    trades = TRADES[:]
    rng.shuffle(trades)
    sentiments = SENTIMENTS[:]
    rng.shuffle(sentiments)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ticker_data (timestamp, pair, last, volume_24h) VALUES (%s, %s, %s, %s)",
            ticks,
        )
        cur.executemany(
            """INSERT INTO trade_data (timestamp, pair, price, volume, side, trade_key)
               VALUES (%s, %s, %s, %s, %s, %s)""",
            trades,
        )
        cur.executemany(
            """INSERT INTO sentiment_data (timestamp, window_start, crypto_symbol,
                   sentiment_score, sentiment_label, source, confidence, article_count)
               VALUES (%(end)s, %(end)s - interval '5 minutes', %(symbol)s, %(score)s,
                   CASE WHEN %(score)s > 0 THEN 'positive' ELSE 'negative' END,
                   %(source)s, 0.9, %(n)s)""",
            [
                {"end": end, "symbol": symbol, "score": score, "source": source, "n": n}
                for end, symbol, score, source, n in sentiments
            ],
        )


def fetch_ohlc(conn: Conn) -> list[tuple[object, ...]]:
    return conn.execute(
        """SELECT bucket, pair, open, high, low, close, volume_24h, tick_count
           FROM ticker_ohlc_hourly WHERE pair = ANY(%s) ORDER BY pair, bucket""",
        (list(TICK_PAIRS),),
    ).fetchall()


def fetch_trade_volume(conn: Conn) -> list[tuple[object, ...]]:
    return conn.execute(
        """SELECT bucket, pair, volume, buy_volume, sell_volume, vwap, trade_count
           FROM trade_volume_hourly WHERE pair = ANY(%s) ORDER BY pair, bucket""",
        (list(TICK_PAIRS),),
    ).fetchall()


def fetch_sentiment(conn: Conn) -> list[tuple[object, ...]]:
    return conn.execute(
        """SELECT bucket, crypto_symbol, avg_sentiment_score, article_count, window_count
           FROM sentiment_hourly WHERE crypto_symbol = ANY(%s) ORDER BY crypto_symbol, bucket""",
        (list(SENTIMENT_SYMBOLS),),
    ).fetchall()


def assert_rollups_match(conn: Conn) -> None:
    """The three hourly rollups return exactly the expected rows."""
    assert fetch_ohlc(conn) == EXPECTED_OHLC
    assert fetch_trade_volume(conn) == EXPECTED_TRADE_VOLUME
    assert fetch_sentiment(conn) == EXPECTED_SENTIMENT


def assert_pk_dedup(conn: Conn) -> None:
    """Re-inserting the same keys with ON CONFLICT DO NOTHING keeps one row each."""
    tick = (ts(9), "DEDUP/USD", Decimal("1.5"))
    trade = (ts(9), "DEDUP/USD", Decimal("1.5"), Decimal("3"), "b", "k1")
    article = (ts(9), "dedup-article", "A title", ["BTC", "ETH"])
    alert = (ts(9), "DEDUP/USD", Decimal("1.5"), Decimal("5.2"), "up")
    for _ in range(2):
        conn.execute(
            """INSERT INTO ticker_data (timestamp, pair, last) VALUES (%s, %s, %s)
               ON CONFLICT DO NOTHING""",
            tick,
        )
        conn.execute(
            """INSERT INTO trade_data (timestamp, pair, price, volume, side, trade_key)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            trade,
        )
        conn.execute(
            """INSERT INTO article_data (timestamp, article_id, title, cryptocurrencies_mentioned)
               VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            article,
        )
        conn.execute(
            """INSERT INTO alert_data (timestamp, pair, last_price, change_percent, alert_type)
               VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            alert,
        )
    counts = [
        conn.execute("SELECT count(*) FROM ticker_data WHERE pair = 'DEDUP/USD'").fetchone(),
        conn.execute("SELECT count(*) FROM trade_data WHERE pair = 'DEDUP/USD'").fetchone(),
        conn.execute(
            "SELECT count(*) FROM article_data WHERE article_id = 'dedup-article'"
        ).fetchone(),
        conn.execute("SELECT count(*) FROM alert_data WHERE pair = 'DEDUP/USD'").fetchone(),
    ]
    assert counts == [(1,), (1,), (1,), (1,)]
    # A second trade at the same instant with another trade_key is kept.
    conn.execute(
        """INSERT INTO trade_data (timestamp, pair, price, volume, side, trade_key)
           VALUES (%s, %s, %s, %s, %s, 'k2') ON CONFLICT DO NOTHING""",
        trade[:5],
    )
    row = conn.execute("SELECT count(*) FROM trade_data WHERE pair = 'DEDUP/USD'").fetchone()
    assert row == (2,)


# --------------------------------------------------------------------------- API queries

# (query, index that must serve it without a Sort node). On TimescaleDB the chunk
# indexes carry a prefix ("1_1_ticker_data_pkey"), hence a substring match.
API_QUERIES: list[tuple[str, str]] = [
    (
        "SELECT * FROM ticker_data WHERE pair = 'XBT/USD' ORDER BY timestamp DESC LIMIT 10",
        "ticker_data_pkey",
    ),
    (
        "SELECT * FROM trade_data WHERE pair = 'XBT/USD' ORDER BY timestamp DESC LIMIT 10",
        "trade_data_pkey",
    ),
    (
        "SELECT * FROM alert_data WHERE pair = 'XBT/USD' ORDER BY timestamp DESC LIMIT 10",
        "alert_data_pkey",
    ),
    (
        "SELECT * FROM alert_data WHERE alert_type = 'up' ORDER BY timestamp DESC LIMIT 10",
        "alert_data_alert_type_idx",
    ),
    (
        "SELECT * FROM sentiment_data WHERE crypto_symbol = 'BTC' ORDER BY timestamp DESC LIMIT 10",
        "sentiment_data_symbol_timestamp_idx",
    ),
    (
        "SELECT * FROM prediction_data WHERE crypto_symbol = 'BTC' "
        "ORDER BY timestamp DESC LIMIT 10",
        "prediction_data_symbol_timestamp_idx",
    ),
    (
        "SELECT * FROM prediction_data WHERE crypto_symbol = 'BTC' AND model_name = 'ma' "
        "ORDER BY timestamp DESC LIMIT 1",
        "prediction_data_",  # the primary key or the model index: both avoid a Sort
    ),
    (
        "SELECT * FROM article_data ORDER BY timestamp DESC LIMIT 10",
        "article_data_timestamp_idx",
    ),
    (
        "SELECT * FROM article_data WHERE sentiment_label = 'positive' "
        "ORDER BY timestamp DESC LIMIT 10",
        "article_data_sentiment_label_idx",
    ),
    (
        "SELECT * FROM article_data WHERE cryptocurrencies_mentioned @> ARRAY['BTC'] "
        "ORDER BY timestamp DESC LIMIT 10",
        "article_data",  # GIN or the timestamp index: either, but never a Sort of all rows
    ),
]


def insert_plan_rows(conn: Conn) -> None:
    """One row in each time-series table (an empty hypertable plans as "no chunks")."""
    at = ts(8)
    statements = [
        "INSERT INTO ticker_data (timestamp, pair, last) VALUES (%(at)s, 'PLAN/USD', 1)",
        """INSERT INTO trade_data (timestamp, pair, price, volume, side, trade_key)
           VALUES (%(at)s, 'PLAN/USD', 1, 1, 'b', 'p')""",
        """INSERT INTO alert_data (timestamp, pair, last_price, change_percent, alert_type)
           VALUES (%(at)s, 'PLAN/USD', 1, 1, 'up')""",
        """INSERT INTO article_data (timestamp, article_id, title, sentiment_label,
               cryptocurrencies_mentioned)
           VALUES (%(at)s, 'plan', 't', 'positive', '{PLAN}')""",
        """INSERT INTO sentiment_data (timestamp, window_start, crypto_symbol, sentiment_score,
               sentiment_label, source, confidence, article_count)
           VALUES (%(at)s, %(at)s, 'PLAN', 0, 'neutral', 'rss', 1, 1)""",
        """INSERT INTO prediction_data (timestamp, crypto_symbol, model_name, predicted_price,
               horizon_s, target_time)
           VALUES (%(at)s, 'PLAN', 'ma', 1, 60, %(at)s)""",
    ]
    for statement in statements:
        conn.execute(f"{statement} ON CONFLICT DO NOTHING".encode(), {"at": at})


def explain(conn: Conn, query: str) -> str:
    """EXPLAIN of ``query`` with sequential and bitmap scans discouraged.

    The test tables are tiny, where a scan-and-sort would win; disabling those shows
    which index the planner can use for the production-sized case.
    """
    conn.execute("SET enable_seqscan = off")
    conn.execute("SET enable_bitmapscan = off")
    try:
        return "\n".join(str(r[0]) for r in conn.execute(f"EXPLAIN {query}".encode()))
    finally:
        conn.execute("RESET enable_seqscan")
        conn.execute("RESET enable_bitmapscan")
