"""Fill ``prediction_data.actual_price`` from real ticks once the horizon has passed.

The actual price of a prediction is the ``last`` of the latest ``ticker_data``
row of ``<coin>/<quote>`` at or before ``target_time``, if that tick is at most
``max_staleness_s`` old. "The horizon has passed" is judged in data time, not
wall-clock time: a tick at or after ``target_time`` must exist, so a tick still
on its way cannot change the answer afterwards, and a replay of old data is
scored like live data. Rows without such ticks (a feed gap) stay NULL.

Idempotent: only NULL rows are touched, with a value that depends on
``ticker_data`` alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from handlers import GENESIS

_BACKFILL = """
UPDATE prediction_data AS p
SET actual_price = tick.last, updated_at = now()
FROM prediction_data AS q
CROSS JOIN LATERAL (
    SELECT t.last
    FROM ticker_data AS t
    WHERE t.pair = q.crypto_symbol || '/' || %(quote)s
      AND t.timestamp <= q.target_time
      AND t.timestamp >= q.target_time - make_interval(secs => %(stale)s)
    ORDER BY t.timestamp DESC
    LIMIT 1
) AS tick
WHERE p.crypto_symbol = q.crypto_symbol
  AND p.model_name = q.model_name
  AND p.horizon_s = q.horizon_s
  AND p.timestamp = q.timestamp
  AND q.actual_price IS NULL
  AND q.target_time >= %(since)s
  AND q.target_time < %(until)s
  AND EXISTS (
      SELECT 1 FROM ticker_data AS after
      WHERE after.pair = q.crypto_symbol || '/' || %(quote)s
        AND after.timestamp >= q.target_time
  )
"""

_FAR_FUTURE = datetime.fromisoformat("9999-01-01T00:00:00+00:00")


def backfill_actual_prices(
    conn: psycopg.Connection[Any],
    *,
    quote: str,
    max_staleness_s: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Fill the actual prices of predictions with ``since <= target_time < until``.

    Returns the number of predictions filled. Runs in the caller's transaction.
    """
    for bound in (since, until):
        if bound is not None and bound.tzinfo is None:
            raise ValueError("since/until must be timezone-aware")
    cur = conn.execute(
        _BACKFILL,
        {
            "quote": quote,
            "stale": max_staleness_s,
            "since": since or GENESIS,
            "until": until or _FAR_FUTURE,
        },
    )
    return cur.rowcount
