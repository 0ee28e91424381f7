"""The ``foreachBatch`` function of the sentiment query (predictions have their own).

Each micro-batch's changed windows become table rows (a pure function of the
collected aggregate rows), are upserted in one transaction (a replayed batch
changes nothing), and only then published for the live views.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from spark_batch.publish import ResultPublisher
from spark_batch.writer import Database, UpsertSpec, Value, upsert

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)


class UpsertSink:
    def __init__(
        self,
        name: str,
        database_url: str,
        spec: UpsertSpec,
        to_rows: Callable[[Sequence[Any]], list[tuple[Value, ...]]],
        publisher: ResultPublisher | None = None,
    ) -> None:
        self._name = name
        self._db = Database(database_url)
        self._spec = spec
        self._to_rows = to_rows
        self._publisher = publisher
        self.last_rows = 0
        """Rows the last batch produced (for logs and tests)."""

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        rows = self._to_rows(batch.collect())
        self.last_rows = len(rows)
        written = self._db.transaction(lambda conn: upsert(conn, self._spec, rows))
        if self._publisher is not None and rows:
            self._publisher.publish(rows)
        log.info("%s batch %d: %d rows, %d written", self._name, batch_id, len(rows), written)

    def close(self) -> None:
        self._db.close()
        if self._publisher is not None:
            self._publisher.close()
