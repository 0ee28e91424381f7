"""Dead letters: a rejected message, byte for byte, with why and where it came from.

The dead-letter record keeps the original key and value untouched and carries
its context in headers (the convention of Kafka Connect's DLQ):

=========================  ================================================
``dlq.reason``             the handler's (or the database's) reason
``dlq.reason.code``        that reason in a few words from a closed list
                           (:func:`reason_code`: ``missing pair``,
                           ``malformed payload``...), for counting and grouping
``dlq.stage``              ``parse``, ``kafka`` or ``database``
``dlq.source.topic``       topic the message was read from
``dlq.source.partition``   its partition
``dlq.source.offset``      its offset: (topic, partition, offset) identifies it
``dlq.failed_at``          ISO-8601 UTC time of the rejection
``dlq.truncated``          only when the payload was cut to fit: its full size
=========================  ================================================
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from confluent_kafka import Producer

MAX_REASON = 1000
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest message the dead-letter producers send; the embedded broker accepts 16 MiB."""
MAX_PAYLOAD_BYTES = MAX_MESSAGE_BYTES - 64 * 1024
"""Room for key and headers; a longer payload is cut and says so (``dlq.truncated``)."""
PRODUCER_CONFIG = {"message.max.bytes": str(MAX_MESSAGE_BYTES)}
_FIELD_NAME = re.compile(r"[A-Za-z_][\w.]{0,39}")
"""What a field name looks like; anything else is not used in a reason code."""


_STAGE_CODES = {"kafka": "kafka error", "database": "refused by the database"}
_PARSE_CODES = (
    (("payload", "empty payload"), "malformed payload"),
    (("empty message value",), "tombstone"),
    (("internal error",), "internal error"),
)


def reason_code(stage: str, reason: str, field: str | None = None) -> str:
    """Why a message was dead-lettered, from a closed list: the ``reason`` label of
    ``cryptoviz_dead_letters_total`` and the ``dlq.reason.code`` header.

    The free-text reason names values and positions, so it cannot be a metric label;
    this keeps what an operator groups by: the stage, and for a parse rejection the
    field at fault (the handlers' field names, a fixed set) or the kind of problem.
    The prefixes read here are the handlers' (``handlers._fields``, ``_payload``);
    ``tests/flows/test_dead_letter_reasons.py`` runs the handlers to keep them agreed.
    """
    if stage in _STAGE_CODES:
        return _STAGE_CODES[stage]
    if field is not None and _FIELD_NAME.fullmatch(field):
        return f"missing {field}" if reason.startswith("missing field") else f"invalid {field}"
    return next((code for starts, code in _PARSE_CODES if reason.startswith(starts)),
                "invalid message")  # fmt: skip


def dead_letter(
    msg: KafkaSourceMessage[bytes | None, bytes | None],
    *,
    reason: str,
    stage: str,
    topic: str,
    now: datetime | None = None,
    code: str | None = None,
) -> KafkaSinkMessage[bytes | None, bytes | None]:
    """The dead letter of ``msg``; ``code`` defaults to :func:`reason_code` of the stage
    and reason (give it when the rejection named its field)."""
    failed_at = (now or datetime.now(UTC)).isoformat()
    value = msg.value
    extra: list[tuple[str, bytes]] = []
    if value is not None and len(value) > MAX_PAYLOAD_BYTES:
        # Keeping the message whole would fail the producer and stall the flow on it.
        extra = [("dlq.truncated", str(len(value)).encode())]
        value = value[:MAX_PAYLOAD_BYTES]
    headers = [
        ("dlq.reason", reason[:MAX_REASON].encode()),
        ("dlq.reason.code", (code or reason_code(stage, reason)).encode()),
        ("dlq.stage", stage.encode()),
        ("dlq.source.topic", str(msg.topic).encode()),
        ("dlq.source.partition", str(msg.partition).encode()),
        ("dlq.source.offset", str(msg.offset).encode()),
        ("dlq.failed_at", failed_at.encode()),
        *extra,
    ]
    return KafkaSinkMessage(key=msg.key, value=value, topic=topic, headers=headers)


def header_map(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    """Decode dead-letter headers (for consumers and tests)."""
    return {k: v.decode(errors="replace") for k, v in headers or []}


class DeadLetterPublisher:
    """Publishes dead letters outside the flow's own error stream (rows the database refused)."""

    def __init__(self, bootstrap: str) -> None:
        self._producer: Producer | None = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                **PRODUCER_CONFIG,
            }
        )

    def publish(self, letters: list[KafkaSinkMessage[bytes | None, bytes | None]]) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError("dead-letter publisher closed")
        for letter in letters:
            assert letter.topic is not None
            headers: list[tuple[str, str | bytes | None]] = list(letter.headers)
            producer.produce(
                topic=letter.topic, key=letter.key, value=letter.value, headers=headers
            )
        remaining = producer.flush(30)
        if remaining:
            raise RuntimeError(f"{remaining} dead letters not acknowledged by Kafka within 30 s")

    def close(self) -> None:
        """Drop the producer: the last reference goes, and with it the client's threads
        (every publish already waited for its acknowledgements)."""
        self._producer = None
