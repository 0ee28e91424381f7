"""The parse step of an ingestion flow: one Kafka poll in, one :class:`ParsedBatch` out.

Parsing a whole poll per call keeps Bytewax's per-item overhead off the hot path:
the Kafka source (:mod:`flows._kafka_source`) hands over each poll of a partition
as one :class:`RawBatch` of librdkafka's own messages, and a flow fed by another
source (tests: ``TestingSource`` of ``KafkaSourceMessage``) groups its items with
:func:`raw_batches`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeAlias, cast

from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from flows import _metrics as m
from flows._dead_letter import dead_letter, reason_code
from handlers import CoinTable, Handler, HandlerContext, Record, Rejection, record_context

SourceMsg = KafkaSourceMessage[bytes | None, bytes | None]
SinkMsg = KafkaSinkMessage[bytes | None, bytes | None]
Origin: TypeAlias = SourceMsg | Message
"""A consumed message as the flow holds it: librdkafka's own (the ingestion flows' Kafka
source) or Bytewax's dataclass (any other source)."""


@dataclass(slots=True)
class RawBatch:
    """Consumed messages of one Kafka partition, in offset order, not yet parsed."""

    key: str
    """The partition they were read from: routes the parsed batch to a sink partition."""
    messages: Sequence[Origin]


def raw_batches(messages: list[SourceMsg]) -> list[RawBatch]:
    """Items of a ``KafkaSourceMessage`` source as one batch (``flat_map_batch``)."""
    if not messages:
        return []
    return [RawBatch(str(messages[0].partition or 0), messages)]


def as_source_message(msg: Origin) -> SourceMsg:
    """Bytewax's dataclass for a consumed message (for dead letters and tracing)."""
    if isinstance(msg, KafkaSourceMessage):
        return msg
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = [(k, v) for k, v in pairs if isinstance(v, bytes)]
    return KafkaSourceMessage(
        key=msg.key(), value=msg.value(), topic=msg.topic(), headers=headers,
        latency=msg.latency(), offset=msg.offset(), partition=msg.partition(),
        timestamp=msg.timestamp(),
    )  # fmt: skip


@dataclass(slots=True)
class ParsedBatch:
    key: str = "0"
    """The Kafka partition of the messages (see :class:`RawBatch`)."""
    records: list[Record] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    """The consumed message of each record (same index), for dead-lettering later."""
    kafka_ms: list[int | None] = field(default_factory=list)
    """The Kafka timestamp of each record's message (ms since the epoch), if it has one."""
    dead_letters: list[SinkMsg] = field(default_factory=list)


def kafka_time(msg: SourceMsg) -> datetime | None:
    """The message's Kafka timestamp (append time on the raw topics), if it has one."""
    stamp = msg.timestamp
    if stamp is None or stamp[0] == TIMESTAMP_NOT_AVAILABLE:
        return None
    return datetime.fromtimestamp(stamp[1] / 1000, tz=UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


_NO_STAMP = (TIMESTAMP_NOT_AVAILABLE, 0)
_TOMBSTONE = Rejection(reason="empty message value (tombstone)")


class BatchParser:
    """Runs the topic's handler over a batch; rejects become dead letters.

    With ``stamped`` (the topics of ``handlers.STAMPED_TOPICS``) each message gets its
    own context, ``record_context`` of its Kafka time (capped at the batch's clock, in
    case a producer set a CreateTime ahead of it), as the Spark job does; the others
    share one context per batch.
    """

    def __init__(
        self,
        topic: str,
        handler: Handler,
        coins: CoinTable,
        dead_letter_topic: str,
        clock: Callable[[], datetime] = _utcnow,
        *,
        stamped: bool = False,
    ) -> None:
        self._topic = topic
        self._handler = handler
        self._coins = coins
        self._dlq = dead_letter_topic
        self._clock = clock
        self._stamped = stamped

    def _context_of(self, kind: int, stamp: int, batch: HandlerContext) -> HandlerContext:
        """The context of one stamped message: its Kafka time, capped at the batch's clock
        (the clock itself when the message has no Kafka time)."""
        if kind == TIMESTAMP_NOT_AVAILABLE:
            return record_context(self._coins, batch.now)
        seen = datetime.fromtimestamp(stamp / 1000, tz=UTC)
        return record_context(self._coins, min(seen, batch.now))

    def __call__(self, batch: RawBatch) -> ParsedBatch:
        now = self._clock()
        ctx = HandlerContext(coins=self._coins, now=now)
        messages = batch.messages
        # Each field read once per batch, in C, whichever kind of message it is.
        errors: list[object] | None = None
        if messages and isinstance(messages[0], KafkaSourceMessage):
            sourced = cast("Sequence[SourceMsg]", messages)
            values = [msg.value for msg in sourced]
            times = [msg.timestamp or _NO_STAMP for msg in sourced]
        else:
            consumed = cast("Sequence[Message]", messages)
            values = [msg.value() for msg in consumed]
            times = [msg.timestamp() for msg in consumed]
            errors = [msg.error() for msg in consumed]
            if errors.count(None) == len(errors):  # (identity: fast) no consumer error
                errors = None
        handler = self._handler
        if self._stamped:
            results = [
                _TOMBSTONE if value is None else handler(value, self._context_of(kind, at, ctx))
                for value, (kind, at) in zip(values, times, strict=True)
            ]
        else:
            results = [_TOMBSTONE if value is None else handler(value, ctx) for value in values]
        stamps = [stamp if kind != TIMESTAMP_NOT_AVAILABLE else None for kind, stamp in times]
        out = ParsedBatch(batch.key)
        codes: Counter[tuple[str, str]] = Counter()  # (stage, reason code) -> dead letters
        if errors is None and Rejection not in set(map(type, results)):  # the common batch
            out.records = cast("list[Record]", results)
            out.origins = list(messages)
            out.kafka_ms = stamps
        else:
            for index, result in enumerate(results):
                msg = messages[index]
                error = None if errors is None else errors[index]
                if error is not None:  # librdkafka reported an error instead of a message
                    code = reason_code("kafka", "")
                    codes["kafka", code] += 1
                    out.dead_letters.append(
                        dead_letter(as_source_message(msg), reason=f"kafka consumer error: {error}",
                                    stage="kafka", topic=self._dlq, now=now, code=code)
                    )  # fmt: skip
                elif isinstance(result, Rejection):
                    code = reason_code("parse", result.reason, result.field)
                    codes["parse", code] += 1
                    out.dead_letters.append(
                        dead_letter(as_source_message(msg), reason=result.reason, stage="parse",
                                    topic=self._dlq, now=now, code=code)
                    )  # fmt: skip
                else:
                    out.records.append(result)
                    out.origins.append(msg)
                    out.kafka_ms.append(stamps[index])
        consumer_errors = sum(n for (stage, _), n in codes.items() if stage == "kafka")
        m.MESSAGES.labels(self._topic).inc(len(messages) - consumer_errors)
        for (stage, code), count in codes.items():
            m.DEAD_LETTERS.labels(self._topic, stage, code).inc(count)
        return out
