"""Known rows for the API tests, written straight into a test database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import psycopg

Conn = psycopg.Connection[tuple[Any, ...]]


def _insert(conn: Conn, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY ``rows`` into ``table`` (fast enough for the large pagination sets)."""
    count = 0
    cols = ", ".join(columns)
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


TICKER_COLUMNS = (
    "timestamp",
    "pair",
    "last",
    "bid",
    "ask",
    "volume_24h",
    "bid_qty",
    "ask_qty",
    "vwap",
    "low",
    "high",
    "change_24h_pct",
    "pct_change",
)


def tickers(conn: Conn, rows: Iterable[Sequence[Any]]) -> int:
    """Rows of (timestamp, pair, last[, bid, ask, volume_24h, ...]), missing ones NULL."""
    full = (tuple(r) + (None,) * (len(TICKER_COLUMNS) - len(r)) for r in rows)
    return _insert(conn, "ticker_data", TICKER_COLUMNS, full)


def trades(conn: Conn, rows: Iterable[Sequence[Any]]) -> int:
    """Rows of (timestamp, pair, price, volume, side, trade_id, trade_key)."""
    return _insert(
        conn,
        "trade_data",
        ("timestamp", "pair", "price", "volume", "side", "trade_id", "trade_key"),
        rows,
    )


def sentiments(conn: Conn, rows: Iterable[Sequence[Any]]) -> int:
    """(timestamp, window_start, crypto_symbol, score, label, source, confidence, count)."""
    return _insert(
        conn,
        "sentiment_data",
        (
            "timestamp",
            "window_start",
            "crypto_symbol",
            "sentiment_score",
            "sentiment_label",
            "source",
            "confidence",
            "article_count",
        ),
        rows,
    )


PREDICTION_COLUMNS = (
    "timestamp",
    "window_start",
    "crypto_symbol",
    "model_name",
    "predicted_price",
    "actual_price",
    "confidence_interval_low",
    "confidence_interval_high",
    "interval_level",
    "horizon_s",
    "target_time",
    "last_price",
)


def predictions(conn: Conn, rows: Iterable[Sequence[Any]]) -> int:
    """Rows in :data:`PREDICTION_COLUMNS` order."""
    return _insert(conn, "prediction_data", PREDICTION_COLUMNS, rows)


FORECAST_COLUMNS = (
    *PREDICTION_COLUMNS,
    "outer_interval_low",
    "outer_interval_high",
    "outer_interval_level",
    "trailing_skill",
    "preferred",
)


def forecasts(conn: Conn, rows: Iterable[Mapping[str, Any]]) -> int:
    """Rows of the forecast job (migration 0006), keyed by column; absent columns are NULL
    (``preferred``: false; ``target_time``: ``timestamp + horizon_s``)."""

    def row(r: Mapping[str, Any]) -> list[Any]:
        full = {"preferred": False, **r}
        full.setdefault("target_time", r["timestamp"] + timedelta(seconds=r["horizon_s"]))
        unknown = set(full) - set(FORECAST_COLUMNS)
        assert not unknown, unknown
        return [full.get(c) for c in FORECAST_COLUMNS]

    return _insert(conn, "prediction_data", FORECAST_COLUMNS, (row(r) for r in rows))


def articles(conn: Conn, rows: Iterable[Sequence[Any]]) -> int:
    """(timestamp, article_id, title, url, website, summary, mentions, score, label,
    subjectivity)."""
    return _insert(
        conn,
        "article_data",
        (
            "timestamp",
            "article_id",
            "title",
            "url",
            "website",
            "summary",
            "cryptocurrencies_mentioned",
            "sentiment_score",
            "sentiment_label",
            "subjectivity",
        ),
        rows,
    )


def alerts(conn: Conn, rows: Iterable[Sequence[Any]]) -> int:
    """(timestamp, pair, last_price, change_percent, threshold, alert_type,
    reference_price, window_s)."""
    return _insert(
        conn,
        "alert_data",
        (
            "timestamp",
            "pair",
            "last_price",
            "change_percent",
            "threshold",
            "alert_type",
            "reference_price",
            "window_s",
        ),
        rows,
    )
