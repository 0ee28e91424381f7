"""Dead letters are counted per reason: a closed list of codes, agreed with the handlers."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main
from prometheus_client import REGISTRY

from flows import _dead_letter as dead_letter_module
from flows._dead_letter import header_map, reason_code
from flows._parse import ParsedBatch
from flows.ingest import build_ingest_flow
from handlers import HandlerContext, Rejection, handler_for
from infra.settings import Settings, load_settings

TS = 1_764_310_291
BAD_SIDE = b'{"pair": "BTC/USD", "price": 1, "volume": 1, "side": "q", "timestamp": %d}' % TS

# (topic, payload, the code its rejection gets): the handlers' real reasons.
CASES: list[tuple[str, bytes, str]] = [
    ("rawticker", b"", "malformed payload"),
    ("rawticker", b"not json", "malformed payload"),
    ("rawticker", b"\xff\xfe", "malformed payload"),
    ("rawticker", b"[1, 2]", "malformed payload"),
    ("rawticker", b'{"truncated": ', "malformed payload"),
    ("rawticker", b"{}", "missing pair"),
    ("rawticker", b'{"pair": "BTC/USD", "last": 3}', "missing timestamp"),
    ("rawticker", b'{"pair": "BTC/USD", "last": -3, "timestamp": %d}' % TS, "invalid last"),
    ("rawtrade", BAD_SIDE, "invalid side"),
    ("rawarticle", b'{"title": "no id"}', "missing id"),
]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings({})


@pytest.mark.parametrize(("topic", "payload", "code"), CASES)
def test_each_handler_rejection_gets_its_code(
    topic: str, payload: bytes, code: str, settings: Settings
) -> None:
    ctx = HandlerContext(coins=settings.coin_table(), now=datetime.now(UTC))
    rejection = handler_for(topic)(payload, ctx)
    assert isinstance(rejection, Rejection), rejection
    assert reason_code("parse", rejection.reason, rejection.field) == code


def test_codes_of_the_other_stages_and_odd_fields() -> None:
    assert reason_code("kafka", "kafka consumer error: _PARTITION_EOF") == "kafka error"
    assert reason_code("database", "value too long") == "refused by the database"
    assert reason_code("parse", "empty message value (tombstone)") == "tombstone"
    assert reason_code("parse", "internal error: KeyError: 'x'") == "internal error"
    assert reason_code("parse", "a Kraken v2 frame needs a 'channel'") == "invalid message"
    # A field that is not a field name (it could carry input) is not put in a label.
    assert reason_code("parse", "field 'x': bad", "a b c") == "invalid message"
    assert reason_code("parse", "field 'x': bad", "x" * 80) == "invalid message"


def _count(topic: str, stage: str, reason: str) -> float:
    labels = {"topic": topic, "stage": stage, "reason": reason}
    return REGISTRY.get_sample_value("cryptoviz_dead_letters_total", labels) or 0.0


def test_the_flow_counts_and_labels_its_dead_letters_by_code(settings: Settings) -> None:
    payloads: list[bytes | None] = [b"{}", b"{}", b"not json", None, b"{}"]
    before = {code: _count("rawticker", "parse", code) for code in
              ("missing pair", "malformed payload", "tombstone")}  # fmt: skip
    letters: list[KafkaSinkMessage[Any, Any]] = []
    batches: list[ParsedBatch] = []
    messages: list[KafkaSourceMessage[bytes | None, bytes | None]] = [
        KafkaSourceMessage(key=b"k", value=v, topic="rawticker", partition=0, offset=i)
        for i, v in enumerate(payloads)
    ]
    flow = build_ingest_flow(
        "rawticker",
        settings,
        source=TestingSource(messages, batch_size=10),
        db_sink=TestingSink(batches),
        dlq_sink=TestingSink(letters),
    )
    run_main(flow)
    codes = [header_map(letter.headers)["dlq.reason.code"] for letter in letters]
    assert sorted(codes) == sorted(
        ["missing pair", "missing pair", "malformed payload", "tombstone", "missing pair"]
    )
    after = {code: _count("rawticker", "parse", code) for code in before}
    assert {code: after[code] - before[code] for code in before} == {
        "missing pair": 3,
        "malformed payload": 1,
        "tombstone": 1,
    }


def test_the_codes_the_docs_give_as_examples_are_codes_the_handlers_give() -> None:
    """README.md and the dead-letter docstring show a few codes: each is one a real
    rejection gets (an article without a time is no longer one: it is stamped)."""
    repo = Path(__file__).resolve().parents[2]
    readme = (repo / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"closed list: (.*?)\.\.\.\)", readme, re.S)
    assert listed is not None
    shown = re.findall(r"`([^`]+)`", listed[1])
    docstring = dead_letter_module.__doc__ or ""
    shown += re.findall(r"``([a-z][a-z ]+)``", docstring.split("reason_code`:", 1)[1][:80])
    assert len(shown) >= 4, shown
    assert set(shown) <= {code for _topic, _payload, code in CASES}, shown
