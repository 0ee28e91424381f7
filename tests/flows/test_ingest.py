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
