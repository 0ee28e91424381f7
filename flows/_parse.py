"""The parse step of an ingestion flow: one Kafka batch in, one :class:`ParsedBatch` out.

Parsing a whole batch per call keeps Bytewax's per-item overhead off the hot path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bytewax.connectors.kafka import KafkaError, KafkaSinkMessage, KafkaSourceMessage
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

from flows import _metrics as m
from flows._dead_letter import dead_letter, reason_code
from handlers import CoinTable, Handler, HandlerContext, Record, Rejection, record_context

SourceMsg = KafkaSourceMessage[bytes | None, bytes | None]
SinkMsg = KafkaSinkMessage[bytes | None, bytes | None]


@dataclass(slots=True)
class ParsedBatch:
    records: list[Record] = field(default_factory=list)
    origins: list[SourceMsg] = field(default_factory=list)
    """The consumed message of each record (same index), for dead-lettering later."""
    dead_letters: list[SinkMsg] = field(default_factory=list)


def kafka_time(msg: SourceMsg) -> datetime | None:
    """The message's Kafka timestamp (append time on the raw topics), if it has one."""
    stamp = msg.timestamp
    if stamp is None or stamp[0] == TIMESTAMP_NOT_AVAILABLE:
        return None
    return datetime.fromtimestamp(stamp[1] / 1000, tz=UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


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

    def _context_of(self, msg: SourceMsg, batch: HandlerContext) -> HandlerContext:
        seen = kafka_time(msg)
        if seen is None or seen > batch.now:
            seen = batch.now
        return record_context(self._coins, seen)

    def __call__(self, batch: list[SourceMsg]) -> list[ParsedBatch]:
        now = self._clock()
        ctx = HandlerContext(coins=self._coins, now=now)
        out = ParsedBatch()
        handler = self._handler
        codes: Counter[str] = Counter()
        stamped = self._stamped
        for msg in batch:
            value = msg.value
            if value is None:
                result: Record | Rejection = Rejection(reason="empty message value (tombstone)")
            elif stamped:
                result = handler(value, self._context_of(msg, ctx))
            else:
                result = handler(value, ctx)
            if isinstance(result, Rejection):
                code = reason_code("parse", result.reason, result.field)
                codes[code] += 1
                out.dead_letters.append(
                    dead_letter(msg, reason=result.reason, stage="parse", topic=self._dlq,
                                now=now, code=code)
                )  # fmt: skip
            else:
                out.records.append(result)
                out.origins.append(msg)
        m.MESSAGES.labels(self._topic).inc(len(batch))
        for code, count in codes.items():
            m.DEAD_LETTERS.labels(self._topic, "parse", code).inc(count)
        return [out]


def kafka_error_letter(
    topic: str, dead_letter_topic: str
) -> Callable[[KafkaError[bytes | None, bytes | None]], SinkMsg]:
    def convert(err: KafkaError[bytes | None, bytes | None]) -> SinkMsg:
        letter = dead_letter(
            err.msg,
            reason=f"kafka consumer error: {err.err}",
            stage="kafka",
            topic=dead_letter_topic,
        )
        m.DEAD_LETTERS.labels(topic, "kafka", reason_code("kafka", "")).inc()
        return letter

    return convert
