"""The job's metrics and Kafka positions, read from progress reports as Spark writes them."""

from __future__ import annotations

import json
from typing import Any

from spark_batch.metrics import kafka_positions

SOURCE: dict[str, Any] = {
    "description": "KafkaV2[Subscribe[rawarticle]]",
    "startOffset": {"rawarticle": {"0": 3, "1": 0}},
    "endOffset": {"rawarticle": {"0": 7, "1": 2}},
    "latestOffset": {"rawarticle": {"0": 9, "1": 2}},
}
PROGRESS: dict[str, Any] = {
    "name": "sentiment",
    "sources": [SOURCE],
}


def test_kafka_positions_are_the_end_offsets_decoded_or_not() -> None:
    assert kafka_positions(PROGRESS) == {("rawarticle", 0): 7, ("rawarticle", 1): 2}
    as_text = {"sources": [{**SOURCE, "endOffset": json.dumps({"rawarticle": {"0": 7}})}]}
    assert kafka_positions(as_text) == {("rawarticle", 0): 7}


def test_sources_without_kafka_offsets_give_none() -> None:
    assert kafka_positions({}) == {}
    assert kafka_positions({"sources": [{"endOffset": None}, {"endOffset": "not json"}]}) == {}
    assert kafka_positions({"sources": [{"endOffset": "1234"}]}) == {}


def test_pyspark_progress_objects_are_read_through_their_json() -> None:
    from pyspark.sql.streaming.listener import StreamingQueryProgress

    report = {"id": "00000000-0000-0000-0000-000000000001", "runId":
              "00000000-0000-0000-0000-000000000002", "name": "sentiment",
              "timestamp": "2026-01-01T00:00:00.000Z", "batchId": 3, "batchDuration": 10,
              "durationMs": {}, "eventTime": {}, "stateOperators": [],
              "sources": [{**SOURCE, "numInputRows": 4, "inputRowsPerSecond": 1.0,
                           "processedRowsPerSecond": 1.0}],
              "sink": {"description": "ForeachBatchSink", "numOutputRows": -1},
              "numInputRows": 4, "inputRowsPerSecond": 1.0, "processedRowsPerSecond": 1.0,
              "observedMetrics": {}}  # fmt: skip
    progress = StreamingQueryProgress.fromJson(report)
    assert progress["sources"][0]["endOffset"] == str(SOURCE["endOffset"]), "not JSON"
    assert kafka_positions(progress) == {("rawarticle", 0): 7, ("rawarticle", 1): 2}
