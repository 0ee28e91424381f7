"""The Kafka edge: keys, trace headers, acknowledgements, and loud delivery failures."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from flows.producers.kafka_edge import (
    DeliveryFailed,
    KafkaProducerSink,
    Keyed,
    to_record,
)
from flows.producers.settings import OutputSettings
from handlers import (
    AlertMessage,
    ArticleMessage,
    ArticleSentiment,
    TickerMessage,
    TradeMessage,
)
from infra._procs import free_port
from infra.settings import Topics
from tests.flows.producers._observe import Counters, logged
from tests.flows.producers._servers import HttpServer
from tests.flows.producers.conftest import read_records

TS = datetime(2026, 5, 1, 10, tzinfo=UTC).timestamp()
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def messages() -> list[TickerMessage | TradeMessage | ArticleMessage | AlertMessage]:
    return [
        TickerMessage(pair="BTC/USD", last=Decimal("95000.1"), timestamp=TS, receive_ts=TS),
        TradeMessage(pair="ETH/USD", price=Decimal("3001.15"), volume=Decimal("0.5"),
                     timestamp=TS, side="b", trade_id=7),
        ArticleMessage(id="a1", title="t", url="https://n.example.com/a", website="n.example.com",
                       timestamp=TS, cryptocurrencies_mentioned=("SOL", "BTC"),
                       sentiment=ArticleSentiment(score=0.5, label="neutral")),
        ArticleMessage(id="a2", title="t", url="https://n.example.com/b", website="n.example.com",
                       timestamp=TS, sentiment=ArticleSentiment(score=0.5, label="neutral")),
    ]  # fmt: skip


def flow_of(records: list[Keyed], sink: KafkaProducerSink) -> Dataflow:
    flow = Dataflow("edge")
    op.output("kafka", op.input("in", flow, TestingSource(records)), sink)
    return flow


def test_keys_values_and_trace_headers_land_in_kafka(
    kafka_bootstrap: str, fresh_topics: Callable[[], Topics]
) -> None:
    topics = fresh_topics()
    output = OutputSettings(linger_ms=1)
    alert = AlertMessage(pair="ADA/USD", last=Decimal("0.10035"), change=Decimal("-0.6"),
                         timestamp=TS, alert_type="down")  # fmt: skip
    records = [to_record(m, topics) for m in messages()] + [to_record(alert, topics, PARENT)]
    counted = Counters()
    run_main(flow_of(records, KafkaProducerSink(kafka_bootstrap, output)))
    assert (
        counted("cryptoviz_producer_messages_total"),
        counted("cryptoviz_producer_delivery_failures_total"),
        counted("cryptoviz_producer_delivery_retries_total"),
    ) == (5, 0, 0)

    got = {
        topic: read_records(kafka_bootstrap, topics.of(topic))
        for topic in ("rawticker", "rawtrade", "rawarticle", "rawalert")
    }
    assert [k for k, _v, _h in got["rawticker"]] == [b"BTC/USD"]
    assert [k for k, _v, _h in got["rawtrade"]] == [b"ETH/USD"]
    assert sorted(k or b"" for k, _v, _h in got["rawarticle"]) == [b"SOL", b"n.example.com"]
    (key, value, headers) = got["rawalert"][0]
    assert key == b"ADA/USD"
    assert b'"last":0.10035' in (value or b"")
    # The alert continues the trace of the ticker it came from.
    assert headers["traceparent"].split("-")[1] == PARENT.split("-")[1]
    trace_ids = {h["traceparent"].split("-")[1] for rows in got.values() for _k, _v, h in rows}
    assert len(trace_ids) == 5, "a new trace per source message, plus the continued one"
    assert all(
        re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", h["traceparent"])
        for rows in got.values()
        for _k, _v, h in rows
    )


def test_failed_deliveries_are_counted_retried_and_fail_the_worker_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens on this port: every delivery times out after 300 ms.
    output = OutputSettings(retries=2, flush_timeout_s=20, config={"message.timeout.ms": "300"})
    counted = Counters()
    sink = KafkaProducerSink(f"127.0.0.1:{free_port()}", output)
    record = to_record(messages()[0], Topics())
    with pytest.raises(Exception) as raised:
        run_main(flow_of([record], sink))
    chain: list[BaseException] = []
    error: BaseException | None = raised.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    failure = next(e for e in chain if isinstance(e, DeliveryFailed))
    assert "delivery to rawticker failed (attempt 3)" in str(failure)
    assert (
        counted("cryptoviz_producer_delivery_failures_total"),
        counted("cryptoviz_producer_delivery_retries_total"),
        counted("cryptoviz_producer_messages_total"),
    ) == (3, 2, 0)
    errors = [str(e[0]) for e in logged(caplog.records, "%s; ")]  # producing it again/giving up
    assert len(errors) == 3
    assert all("timed out" in error for error in errors)


def test_sampled_publish_spans_are_exported_over_otlp(
    kafka_bootstrap: str, fresh_topics: Callable[[], Topics]
) -> None:
    with HttpServer() as collector:
        topics = fresh_topics()
        output = OutputSettings(linger_ms=1, trace_sample_ratio=1.0)
        records = [to_record(m, topics) for m in messages()]
        sink = KafkaProducerSink(kafka_bootstrap, output, otlp_endpoint=collector.base)
        run_main(flow_of(records, sink))
        posts = list(collector.posts)
    assert posts, "the exporter flushed when the sink closed"
    assert {path for path, _body in posts} == {"/v1/traces"}
    body = b"".join(b for _p, b in posts)
    assert body.count(b"publish ") == len(records)
    landed = read_records(kafka_bootstrap, topics.rawticker)
    trace_id = bytes.fromhex(landed[0][2]["traceparent"].split("-")[1])
    assert trace_id in body, "the header names the exported span's trace"
