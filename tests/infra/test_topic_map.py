"""One topic map: rename every topic and the whole pipeline follows, on the real stack.

Every program runs as its own process from nothing but the environment, as under
``make up`` or compose: the stack creates the renamed topics, ``producer-replay``
writes them, the ingestion flows read them and dead-letter into the renamed
dead-letter topic, the Spark job reads the renamed article topic and publishes to
the renamed sentiment topic, and the API relays both live.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Producer
from websockets.sync.client import ClientConnection, connect

from flows.producers.settings import SAMPLES
from infra._procs import free_port
from infra.settings import RAW_TOPICS, Settings, environment_of
from infra.stack import Stack
from tests._wait import wait_for
from tests.flows.conftest import read_all

pytestmark = [pytest.mark.integration, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rows(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        found = conn.execute(query).fetchone()
    assert found is not None
    return int(found[0])


def received(ws: ClientConnection, kind: str) -> dict[str, Any] | None:
    """The next live message of ``kind`` on ``ws`` within a second, if any."""
    try:
        while True:
            message: dict[str, Any] = json.loads(ws.recv(timeout=1))
            if message.get("type") == kind:
                return message
    except TimeoutError:
        return None


def test_a_renamed_topic_map_moves_every_component(
    stack: Settings, fresh_db: str, tmp_path: Path
) -> None:
    settings = stack.with_servers(database=fresh_db).with_topics(
        stack.kafka.topics.with_suffix(f"-renamed{uuid.uuid4().hex[:6]}")
    )
    topics = settings.kafka.topics
    bootstrap = settings.kafka.bootstrap_servers or ""
    assert all(topic not in RAW_TOPICS for topic in topics.all)
    Stack(settings).prepare()  # migrations, and the topic creation of `make up`
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": fresh_db,
        "CRYPTOVIZ_STATE_DIR": str(tmp_path / "state"),
        "CRYPTOVIZ_CACHE_DIR": str(settings.cache_dir),
        **environment_of(topics),
        "CRYPTOVIZ_API_PORT": str(port),
        "CRYPTOVIZ_RATE_LIMIT": "off",
        "CRYPTOVIZ_REPLAY_FILES": os.pathsep.join(
            str(SAMPLES / name) for name in ("kraken_v2_session.jsonl", "news_feed.xml")
        ),
        "CRYPTOVIZ_REPLAY_SPEED": "0",
        "CRYPTOVIZ_REPLAY_EXIT": "true",
        "CRYPTOVIZ_SPARK_MASTER": "local[2]",
        "CRYPTOVIZ_SPARK_SHUFFLE_PARTITIONS": "2",
        "CRYPTOVIZ_SPARK_DRIVER_MEMORY": "512m",
        "CRYPTOVIZ_SPARK_LOG_LEVEL": "error",
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    base = f"http://127.0.0.1:{port}"
    relayed = len(topics.all) - 1  # every topic but the dead letters
    with (
        running(["-m", "api"], env, tmp_path / "api.log") as api,
        running(["-m", "flows.run", "ingest-rawticker"], env, tmp_path / "ticker.log"),
        running(["-m", "flows.run", "ingest-rawarticle"], env, tmp_path / "article.log"),
    ):

        def relay_ready() -> bool:
            assert api.poll() is None, (tmp_path / "api.log").read_text()[-3000:]
            try:
                live = httpx.get(f"{base}/api/v1/health/", timeout=5).json()["live"]
            except httpx.TransportError:
                return False
            return bool(
                live["status"] == "running"
                and live["assigned_partitions"] >= relayed * settings.kafka.partitions
            )

        wait_for(relay_ready, 120, "the API's live relay on the renamed topics")
        with connect(f"ws://127.0.0.1:{port}/ws/live") as ws:
            channels = ["ticker:BTC/USD", "sentiment:BTC"]
            ws.send(json.dumps({"action": "subscribe", "channels": channels}))
            assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"

            # A producer writes the renamed topics; the relay may still be resolving its
            # "latest" offsets for the first messages, so replay again until one shows.
            def replayed_tick() -> dict[str, Any] | None:
                state = tmp_path / f"replay-{uuid.uuid4().hex[:6]}"
                done = subprocess.run(
                    [sys.executable, "-m", "flows.run", "producer-replay"],
                    cwd=REPO, env={**env, "CRYPTOVIZ_STATE_DIR": str(state)},
                    capture_output=True, text=True, timeout=180, check=False,
                )  # fmt: skip
                assert done.returncode == 0, done.stderr[-3000:]
                return received(ws, "ticker")

            tick = wait_for(replayed_tick, 300, "a replayed tick relayed live", interval=0)
            assert tick["key"] == "BTC/USD"

            # Ingested from the renamed topics.
            wait_for(lambda: rows(fresh_db, "SELECT count(*) FROM ticker_data"), 120, "ticks")
            wait_for(lambda: rows(fresh_db, "SELECT count(*) FROM article_data"), 120, "articles")

            # A message no handler accepts lands in the renamed dead-letter topic.
            junk = Producer({"bootstrap.servers": bootstrap})
            junk.produce(topics.rawticker, b"not a ticker")
            assert junk.flush(30) == 0
            letters = wait_for(
                lambda: [value for value, _h in read_all(bootstrap, topics.deadletter)],
                120,
                "the dead letter",
            )
            assert b"not a ticker" in letters

            # Spark reads the renamed article topic and publishes to the renamed result
            # topic; the API relays that too.
            spark = subprocess.run(
                [sys.executable, "-m", "spark_batch.run", "--once", "--query", "sentiment"],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
            assert spark.returncode == 0, spark.stderr[-3000:]
            assert rows(fresh_db, "SELECT count(*) FROM sentiment_data WHERE crypto_symbol = 'BTC'")
            sentiment = wait_for(lambda: received(ws, "sentiment"), 60, "sentiment relayed")
            assert sentiment["key"] == "BTC"
    published = read_all(bootstrap, topics.sentiment)
    assert published, "Spark published to the renamed sentiment topic"
