"""Table specs: columns by name, the same columns as the migrated tables."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import get_args

import psycopg
import pytest
from psycopg.rows import dict_row

from flows._pg_writer import KAFKA_TIME, BatchWriter
from flows._tables import TABLES, TableSpec
from handlers import AlertRecord, ArticleRecord, Record, TickerRecord, TradeRecord
from handlers._wire import TOPICS as WIRE_TOPICS
from infra.settings import RAW_TOPICS, Topics

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
FILLED_BY_THE_DATABASE = {"ingest_time"}
"""Columns no record attribute feeds (DEFAULT now())."""

EXAMPLES: dict[str, Record] = {
    "rawticker": TickerRecord(
        pair="BTC/USD", time=T0, last=Decimal("71749.5"), bid=Decimal("71749.4"),
        volume_24h=Decimal("636.89"), change_24h_pct=Decimal("-1.25"),
        pct_change=Decimal("0.01"), exchange_time=T0, receive_time=T0, source="replay",
    ),
    "rawtrade": TradeRecord(
        pair="ETH/USD", time=T0, price=Decimal("2400.5"), volume=Decimal("0.25"), side="s",
        ord_type="m", receive_time=T0,
    ),
    "rawarticle": ArticleRecord(
        article_id="coindesk-1", time=T0, published_at=T0, title="Bitcoin rallies",
        url="https://x.com/1",
        website="x.com", summary="BTC up.", cryptocurrencies_mentioned=("BTC", "ETH"),
        sentiment_score=0.75, sentiment_label="positive", subjectivity=0.4, source="rss",
    ),
    "rawalert": AlertRecord(
        pair="SOL/USD", time=T0, last_price=Decimal("150.5"), change_percent=Decimal("-3.5"),
        threshold=Decimal("2"), alert_type="down", window_s=300,
    ),
}  # fmt: skip


def _table_columns(url: str, table: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
        ).fetchall()
    return {name for (name,) in rows}


@pytest.mark.parametrize("topic", sorted(TABLES))
def test_spec_columns_are_the_migrated_table_columns(topic: str, fresh_db: str) -> None:
    """A column added to the migration and not the record (or the other way round) fails."""
    spec = TABLES[topic]
    written = {*spec.columns, KAFKA_TIME}
    assert written | FILLED_BY_THE_DATABASE == _table_columns(fresh_db, spec.table)


@pytest.mark.parametrize("topic", sorted(TABLES))
def test_every_column_holds_its_attribute(topic: str, fresh_db: str) -> None:
    spec, record = TABLES[topic], EXAMPLES[topic]
    assert type(record) is spec.record
    writer = BatchWriter(fresh_db, spec)
    try:
        assert writer.write([record], [int(T0.timestamp() * 1000)]).inserted == 1
    finally:
        writer.close()
    with psycopg.connect(fresh_db, row_factory=dict_row) as conn:
        stored = conn.execute(f"SELECT * FROM {spec.table}").fetchone()
    assert stored is not None
    for column, attribute in spec.attributes.items():
        expected = getattr(record, attribute)
        if isinstance(expected, tuple):
            expected = list(expected)
        assert stored[column] == expected, column
    assert stored[KAFKA_TIME] == T0


def test_columns_follow_the_record_by_name() -> None:
    spec = TABLES["rawtrade"]
    record = EXAMPLES["rawtrade"]
    assert isinstance(record, TradeRecord)
    row = dict(zip(spec.columns, spec.to_row(record), strict=True))
    assert row["timestamp"] == record.time
    assert row["trade_key"] == record.trade_key
    assert row["side"] == "s"
    assert row["source"] == "kraken"
    article = TABLES["rawarticle"].to_row(EXAMPLES["rawarticle"])
    assert ["BTC", "ETH"] in article  # psycopg writes a list as text[]


def test_a_spec_naming_a_missing_attribute_fails_at_once() -> None:
    with pytest.raises(TypeError, match="trade_data: TradeRecord has no colour"):
        TableSpec("trade_data", TradeRecord, computed=("colour",))


def test_every_logical_raw_topic_has_its_handler_table_wire_message_and_kafka_topic() -> None:
    """The logical names (``rawticker``...) key the handlers, the table specs, the wire
    messages and the topic map: a message type added to one and not another fails here."""
    assert set(TABLES) == set(RAW_TOPICS) == set(WIRE_TOPICS.values())
    assert set(RAW_TOPICS) <= set(Topics.__struct_fields__)
    assert {TABLES[t].record for t in RAW_TOPICS} == set(get_args(Record))
