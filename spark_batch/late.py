"""Late articles: which articles the sentiment windows dropped, in ``analytics_late_events``.

Spark drops an article when its published time is at or before the watermark
(the newest published time seen in *earlier* micro-batches minus the sentiment
watermark delay), and only reports a per-batch count. This lightweight stateless
query reads the same topic with the same parsing and applies the same rule, so
every dropped article is recorded with its coin, window and the watermark it
missed.

Its own watermark is kept in ``analytics_watermarks`` in the same transaction
as the late rows: the max event time before and through the last batch, so a
replayed batch is judged against exactly the watermark it saw the first time.
A new checkpoint (new Spark query id) starts afresh, as Spark's watermark does.

The two queries see the same Kafka data but may cut it into different
micro-batches while running live; an article arriving right as the watermark
moves can then be judged differently by the two (a boundary effect of at most
one trigger interval). With the same batches (as in the tests) they agree exactly.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from spark_batch.settings import SentimentSettings
from spark_batch.timeutil import from_micros, to_micros
from spark_batch.writer import LATE_EVENTS, Database, Value, upsert

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

QUERY_NAME = "late_articles"
WATCHED_QUERY = "sentiment"
log = logging.getLogger(__name__)


def late_columns(articles: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    return articles.select(
        "article_id", F.unix_micros("event_time").alias("event_time_us"), "coins"
    )


def tumbling_window(moment: datetime, window_s: int) -> tuple[datetime, datetime]:
    """Spark's tumbling window (aligned on the epoch) containing ``moment``."""
    size = window_s * 1_000_000
    start = to_micros(moment) // size * size
    return from_micros(start), from_micros(start + size)


def watermark_before(
    state: tuple[str, int, datetime | None, datetime | None] | None,
    checkpoint_id: str,
    batch_id: int,
) -> datetime | None:
    """Max event time of the batches before ``batch_id`` (``None``: nothing seen yet)."""
    if state is None:
        return None
    stored_checkpoint, stored_batch, before, through = state
    if stored_checkpoint != checkpoint_id or batch_id < stored_batch:
        return None  # a new checkpoint: Spark's watermark starts again from nothing
    if batch_id == stored_batch:
        return before  # a replay of the last batch
    return through


def late_rows(
    rows: list[tuple[str, datetime, list[str]]],
    *,
    watermark: datetime | None,
    window_s: int,
    batch_id: int,
) -> list[tuple[Value, ...]]:
    """``analytics_late_events`` rows for the articles at or before ``watermark``."""
    if watermark is None:
        return []
    out: list[tuple[Value, ...]] = []
    for article_id, event_time, coins in rows:
        if event_time > watermark:
            continue
        start, end = tumbling_window(event_time, window_s)
        for coin in coins:
            out.append(
                (WATCHED_QUERY, article_id, coin, event_time, start, end, watermark, batch_id)
            )
    return out


class LateArticleSink:
    """``foreachBatch`` function of the late-article query."""

    def __init__(self, database_url: str, cfg: SentimentSettings, checkpoint_dir: Path) -> None:
        self._db = Database(database_url)
        self._cfg = cfg
        self._checkpoint_dir = checkpoint_dir
        self._checkpoint_id: str | None = None
        self.last_rows = 0
        """Articles the last batch held (for logs and tests)."""

    def _query_id(self) -> str:
        # Spark writes <checkpoint>/metadata ({"id": ...}) before the first batch runs.
        if self._checkpoint_id is None:
            meta = json.loads((self._checkpoint_dir / "metadata").read_text().splitlines()[0])
            self._checkpoint_id = str(meta["id"])
        return self._checkpoint_id

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        rows = [
            (str(r["article_id"]), from_micros(int(r["event_time_us"])), list(r["coins"] or []))
            for r in batch.collect()
        ]
        self.last_rows = len(rows)
        checkpoint_id = self._query_id()
        delay = timedelta(seconds=self._cfg.watermark_s)

        def work(conn: psycopg.Connection[Any]) -> int:
            found = conn.execute(
                "SELECT checkpoint_id, batch_id, max_event_before, max_event_through "
                "FROM analytics_watermarks WHERE query_name = %s FOR UPDATE",
                (QUERY_NAME,),
            ).fetchone()
            state = None if found is None else (str(found[0]), int(found[1]), found[2], found[3])
            before = watermark_before(state, checkpoint_id, batch_id)
            through = max(
                [t for t in (before, *(event for _, event, _ in rows)) if t is not None],
                default=None,
            )
            conn.execute(
                "INSERT INTO analytics_watermarks AS w (query_name, checkpoint_id, batch_id, "
                "max_event_before, max_event_through) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (query_name) DO UPDATE SET checkpoint_id = EXCLUDED.checkpoint_id, "
                "batch_id = EXCLUDED.batch_id, max_event_before = EXCLUDED.max_event_before, "
                "max_event_through = EXCLUDED.max_event_through, updated_at = now()",
                (QUERY_NAME, checkpoint_id, batch_id, before, through),
            )
            watermark = None if before is None else before - delay
            late = late_rows(
                rows, watermark=watermark, window_s=self._cfg.window_s, batch_id=batch_id
            )
            return upsert(conn, LATE_EVENTS, late)

        written = self._db.transaction(work)
        if written:
            log.warning("late articles batch %d: %d late (article, coin) rows", batch_id, written)

    def close(self) -> None:
        self._db.close()
