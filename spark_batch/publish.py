"""Publish each micro-batch's result rows to Kafka, after they are committed.

The database is the record; these topics (``analyzed-sentiment``, ``predicted-price``
by default, the names STRATEGIE_INTEGRATION.md gives them) feed the
API's live WebSocket routes (``/ws/sentiment/{symbol}/``, ``/ws/prediction/{symbol}/``).
A row is published after its transaction commits, keyed by its coin, as a JSON
object of the table's columns. Delivery is at-least-once: a replayed micro-batch
publishes its rows again, with identical content, so a consumer can keep the
latest row per (coin, window) or (coin, model, horizon, issue time). A publishing
failure is logged and counted, never fails the batch: live views catch up at the
next update.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec
from confluent_kafka import KafkaException, Producer

log = logging.getLogger(__name__)


# Datetimes become RFC 3339 strings (UTC as "Z"), decimals exact JSON numbers.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


class ResultPublisher:
    """One Kafka producer per sink; ``publish(rows)`` after the rows are committed."""

    def __init__(self, bootstrap: str, topic: str, columns: Sequence[str]) -> None:
        self.topic = topic
        self._columns = tuple(columns)
        self._key = self._columns.index("crypto_symbol")
        self._producer: Producer | None = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"}
        )
        self.failures = 0

    def encode(self, row: Sequence[Any]) -> bytes:
        values = {c: (float(v) if isinstance(v, Decimal) and not v.is_finite() else v)
                  for c, v in zip(self._columns, row, strict=True)}  # fmt: skip
        return _ENCODER.encode(values)

    def publish(self, rows: Sequence[Sequence[Any]]) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError(f"{self.topic}: publisher closed")
        try:
            for row in rows:
                producer.produce(
                    self.topic, value=self.encode(row), key=str(row[self._key]).encode()
                )
                producer.poll(0)
            left = producer.flush(10)
        except (KafkaException, BufferError) as exc:
            left, reason = len(rows), str(exc)
        else:
            reason = "not acknowledged within 10 s"
        if left:
            self.failures += left
            log.warning("%s: %d result rows not published (%s)", self.topic, left, reason)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(5)
        # Dropping the last reference destroys the client (its threads and connections).
        # Spark keeps the sink, and so this publisher, referenced after its query ends:
        # a producer it held would reconnect to the broker for the life of the process.
