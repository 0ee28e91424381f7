"""The ingestion dataflow on TestingSource/TestingSink: parsing, routing, dead letters."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main

from flows._dead_letter import header_map
from flows._parse import ParsedBatch
from flows.ingest import build_ingest_flow
from handlers import TickerRecord
from infra.settings import Settings, load_settings
from tests.flows._payloads import INVALID, VALID


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings({})


def _msg(
    value: bytes | None, offset: int, topic: str = "rawticker"
) -> KafkaSourceMessage[Any, Any]:
    return KafkaSourceMessage(key=b"k", value=value, topic=topic, partition=0, offset=offset)


def _run(topic: str, values: list[bytes | None], settings: Settings) -> tuple[list[Any], list[Any]]:
    batches: list[ParsedBatch] = []
    letters: list[KafkaSinkMessage[Any, Any]] = []
    flow = build_ingest_flow(
        topic,
        settings,
        source=TestingSource([_msg(v, i, topic) for i, v in enumerate(values)], batch_size=4),
        db_sink=TestingSink(batches),
        dlq_sink=TestingSink(letters),
    )
    run_main(flow)
    return [r for b in batches for r in b.records], letters


@pytest.mark.parametrize("topic", sorted(VALID))
def test_valid_and_invalid_messages_are_split_and_counted(topic: str, settings: Settings) -> None:
    valid = [VALID[topic](i) for i in range(10)]
    values: list[bytes | None] = [*valid, *INVALID, None]
    records, letters = _run(topic, values, settings)
    assert len(records) == 10
    assert len(letters) == len(INVALID) + 1
    for letter in letters:
        headers = header_map(letter.headers)
        assert headers["dlq.stage"] == "parse"
        assert headers["dlq.source.topic"] == topic
        assert headers["dlq.reason"]
        assert letter.topic == settings.kafka.topics.deadletter
    # The dead letter keeps the original bytes and says where they came from.
    offsets = sorted(int(header_map(x.headers)["dlq.source.offset"]) for x in letters)
    assert offsets == list(range(10, 10 + len(INVALID) + 1))
    assert {x.value for x in letters} == {*INVALID, None}


def test_records_are_canonical_and_exact(settings: Settings) -> None:
    raw = (
        b'{"pair":"XBT/USD","last":0.10035,"bid":0.1,"ask":0.2,"volume_24h":5,'
        b'"timestamp":1764310291}'
    )
    records, letters = _run("rawticker", [raw], settings)
    assert letters == []
    (record,) = records
    assert isinstance(record, TickerRecord)
    assert record.pair == "BTC/USD"
    assert record.last == Decimal("0.10035")
    assert record.time.utcoffset() is not None


def test_a_dead_letter_too_large_for_kafka_is_cut_and_says_so() -> None:
    from flows._dead_letter import MAX_PAYLOAD_BYTES, dead_letter

    huge = b"x" * (MAX_PAYLOAD_BYTES + 10)
    letter = dead_letter(_msg(huge, 3), reason="too big", stage="parse", topic="dlq")
    assert letter.value == huge[:MAX_PAYLOAD_BYTES]
    assert header_map(letter.headers)["dlq.truncated"] == str(len(huge))
    small = dead_letter(_msg(b"{}", 4), reason="bad", stage="parse", topic="dlq")
    assert small.value == b"{}"
    assert "dlq.truncated" not in header_map(small.headers)


def test_an_undated_article_is_stamped_with_its_kafka_record_time(settings: Settings) -> None:
    from datetime import UTC, datetime, timedelta

    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

    from flows._parse import BatchParser, RawBatch
    from handlers import STAMPED_TOPICS, ArticleRecord, handler_for

    assert "rawarticle" in STAMPED_TOPICS
    now = datetime(2026, 10, 1, 12, tzinfo=UTC)
    seen = now - timedelta(minutes=5)
    value = b'{"id":"a-1","title":"Bitcoin up","sentiment":{"score":0.7}}'

    def msg(offset: int, at: datetime | None) -> KafkaSourceMessage[Any, Any]:
        stamp = None if at is None else (TIMESTAMP_LOG_APPEND_TIME, int(at.timestamp() * 1000))
        return KafkaSourceMessage(
            key=None, value=value, topic="rawarticle", partition=0, offset=offset, timestamp=stamp
        )

    parser = BatchParser(
        "rawarticle", handler_for("rawarticle"), settings.coin_table(), "deadletter",
        clock=lambda: now, stamped=True,
    )  # fmt: skip
    # Its own record time; one set ahead of the batch's clock is capped at the clock; none:
    # the clock.
    batch = parser(RawBatch("0", [msg(0, seen), msg(1, now + timedelta(hours=3)), msg(2, None)]))
    assert batch.dead_letters == []
    assert all(isinstance(r, ArticleRecord) for r in batch.records)
    times = [r.time for r in batch.records if isinstance(r, ArticleRecord)]
    assert times == [seen, now, now]
    assert all(r.published_at is None for r in batch.records if isinstance(r, ArticleRecord))
    # Unstamped (the other topics' way), the same message has no time: a dead letter.
    plain = BatchParser(
        "rawarticle", handler_for("rawarticle"), settings.coin_table(), "deadletter",
        clock=lambda: now,
    )  # fmt: skip
    batch = plain(RawBatch("0", [msg(0, seen)]))
    assert batch.records == []
    assert len(batch.dead_letters) == 1
