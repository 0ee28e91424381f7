"""One SparkSession (local[2]) for the whole test session, and helpers to drive the queries.

Spark tests run each query with ``availableNow`` (process what is in the topic,
then stop), so every step is deterministic: produce, run, look at the tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
import pytest
from confluent_kafka import Producer

from infra.settings import Settings, Topics
from infra.tracking import TrackedCoins
from spark_batch.jobs import Analytics
from spark_batch.settings import SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

TEST_SPARK = SparkSettings(master="local[2]", shuffle_partitions=2, log_level="ERROR")


@pytest.fixture(scope="session")
def spark(stack: Settings) -> Iterator[SparkSession]:
    """The one SparkSession of the test session (jars from the same cache as the stack)."""
    from spark_batch.session import build_session

    session = build_session(TEST_SPARK, stack.cache_dir)
    yield session
    session.stop()


@dataclass
class Harness:
    """Topics, database and state directory of one test, and how to run the queries."""

    spark: SparkSession
    settings: Settings
    cfg: SparkSettings
    bootstrap: str

    @property
    def topics(self) -> Topics:
        """This test's fresh topics (``rawarticle`` and ``rawticker`` are its own)."""
        return self.settings.kafka.topics

    @property
    def url(self) -> str:
        assert self.settings.database.url is not None
        return self.settings.database.url

    def produce(self, topic: str, messages: Sequence[dict[str, Any]]) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap})
        for message in messages:
            # Keyed like the producers (symbol or id), so per-key order is kept.
            key = str(message.get("pair") or message.get("id") or "")
            producer.produce(topic, json.dumps(message).encode(), key=key.encode())
        assert producer.flush(30) == 0

    def run(
        self,
        *names: str,
        state_dir: Path | None = None,
        wrap_sink: Callable[[str, Any], Any] | None = None,
        tracking: TrackedCoins | None = None,
    ) -> dict[str, Any]:
        """Run the named queries once over everything in their topics (availableNow);
        return each query's last progress report."""
        settings = self.settings
        if state_dir is not None:
            settings = msgspec.structs.replace(settings, state_dir=state_dir)
        analytics = Analytics(
            self.spark, settings, self.cfg, wrap_sink=wrap_sink, tracking=tracking
        )
        queries = analytics.start(names, available_now=True)
        errors: list[Exception] = []
        try:
            for query in queries:
                try:
                    query.awaitTermination()
                except Exception as exc:  # every query ends before raising
                    errors.append(exc)
        finally:
            # A failed query must not leave the others running on these checkpoints.
            for query in queries:
                query.stop()
            analytics.close()
        if errors:
            raise errors[0]
        return {name: query.lastProgress for name, query in zip(names, queries, strict=True)}

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(query, params).fetchall()


@pytest.fixture
def harness(
    spark: SparkSession,
    stack: Settings,
    fresh_db: str,
    new_topic: Callable[..., str],
    tmp_path: Path,
) -> Harness:
    """Fresh topics, a fresh migrated database and a fresh state directory for one test."""
    topics = msgspec.structs.replace(
        stack.kafka.topics, rawarticle=new_topic("rawarticle"), rawticker=new_topic("rawticker")
    )
    settings = (
        msgspec.structs.replace(stack, state_dir=tmp_path / "state")
        .with_servers(database=fresh_db)
        .with_topics(topics)
    )
    assert stack.kafka.bootstrap_servers is not None
    return Harness(
        spark=spark, settings=settings, cfg=TEST_SPARK, bootstrap=stack.kafka.bootstrap_servers
    )
