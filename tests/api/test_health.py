"""``health/`` checks the database and Kafka for real; outages give fast 503s and heal."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from confluent_kafka import Producer
from litestar import Litestar
from litestar.testing import TestClient

from infra.migrate import migrate
from infra.postgres_server import EmbeddedPostgres
from infra.settings import KafkaSettings, Settings
from tests._wait import wait_for
from tests.api.conftest import AppFactory, test_api_settings

TICKER = "/api/v1/ticker/BTC/USD/historique/"


def _timed_get(client: TestClient[Litestar], url: str) -> tuple[int, float, Any]:
    started = time.monotonic()
    r = client.get(url)
    return r.status_code, time.monotonic() - started, r.json()


def test_health_when_everything_is_up(client: TestClient[Litestar]) -> None:
    r = client.get("/api/v1/health/")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "up"
    assert body["kafka"]["status"] == "up"
    assert body["live"] == {"status": "disabled", "assigned_partitions": 0, "clients": 0}


def test_database_stopped_then_restarted(
    server_dir: Path, stack: Settings, app_factory: AppFactory
) -> None:
    server = EmbeddedPostgres(server_dir / "pg")
    url = server.start()
    try:
        migrate(url)
        app = app_factory(
            test_api_settings(pool_timeout_s=1.0), settings=stack.with_servers(database=url)
        )
        with TestClient(app) as client:
            assert client.get(TICKER).status_code == 200
            assert client.get("/api/v1/health/").status_code == 200

            server.stop()
            status, elapsed, body = _timed_get(client, "/api/v1/health/")
            assert status == 503
            assert body["status"] == "down"
            assert body["database"] == {
                "status": "down",
                "latency_ms": None,
                "error": "database unreachable",
            }
            assert body["kafka"]["status"] == "up"
            for _ in range(3):
                status, elapsed, body = _timed_get(client, TICKER)
                assert status == 503, body
                assert "database" in str(body["detail"])
                assert elapsed < 1.5
            assert client.get(TICKER).headers["Retry-After"] == "1"

            server.start()
            wait_for(
                lambda: client.get(TICKER).status_code == 200,
                20,
                "the API to recover",
                interval=0.2,
            )
            assert client.get("/api/v1/health/").status_code == 200
    finally:
        server.stop()


def test_database_down_at_startup_and_kafka_down(stack: Settings, app_factory: AppFactory) -> None:
    # Closed ports: nothing listens on port 1 of the loopback.
    settings = stack.with_servers(
        database="postgresql://postgres@127.0.0.1:1/cryptoviz", kafka="127.0.0.1:1"
    )
    app = app_factory(test_api_settings(health_timeout_s=1.0), settings=settings)
    with TestClient(app) as client:
        status, elapsed, body = _timed_get(client, "/api/v1/health/")
        assert status == 503
        assert body["database"]["status"] == "down"
        assert body["kafka"] == {
            "status": "down",
            "latency_ms": None,
            "error": "broker unreachable",
        }
        assert elapsed < 3.5
        status, elapsed, body = _timed_get(client, "/api/v1/cryptos/")
        assert status == 503
        assert elapsed < 1.5


def test_kafka_not_configured(stack: Settings, app_factory: AppFactory) -> None:
    settings = msgspec.structs.replace(stack, kafka=KafkaSettings())
    with TestClient(app_factory(settings=settings)) as client:
        body = client.get("/api/v1/health/").json()
    assert body["kafka"]["error"] == "not configured"
    assert body["database"]["status"] == "up"


# -- health/pipeline/: dead letters and trade gaps ------------------------------------

PIPELINE = "/api/v1/health/pipeline/"


def _trades(db: psycopg.Connection[tuple[object, ...]], pair: str, ids: list[int],
            at: datetime) -> None:  # fmt: skip
    db.cursor().executemany(
        "INSERT INTO trade_data (timestamp, pair, price, volume, side, trade_id, trade_key) "
        "VALUES (%s, %s, 1, 1, 'b', %s, %s)",
        [(at + timedelta(milliseconds=i), pair, i, str(i)) for i in ids],
    )


def test_pipeline_counts_dead_letters_and_trade_gaps(
    stack: Settings,
    fresh_db: str,
    db: psycopg.Connection[tuple[object, ...]],
    new_topic: Callable[..., str],
    app_factory: AppFactory,
) -> None:
    dlq = new_topic("deadletter")
    producer = Producer({"bootstrap.servers": stack.kafka.bootstrap_servers})
    for i in range(4):
        producer.produce(dlq, f"junk {i}".encode(), headers=[("dlq.reason.code", b"x")])
    assert producer.flush(30) == 0
    now = datetime.now(UTC)
    _trades(db, "BTC/USD", [1, 2, 5, 6, 9], now - timedelta(hours=1))  # 2 holes, 4 ids
    _trades(db, "ETH/USD", [7, 8, 9], now - timedelta(hours=1))
    _trades(db, "SOL/USD", [1, 9], now - timedelta(hours=30))  # older than the window
    topics = msgspec.structs.replace(stack.kafka.topics, deadletter=dlq)
    settings = stack.with_servers(database=fresh_db).with_topics(topics)
    app = app_factory(settings=settings, clock=lambda: datetime.now(UTC))
    with TestClient(app) as client:
        r = client.get(PIPELINE)
        assert r.status_code == 200
        body = r.json()
        assert body["dead_letters"] == {
            "topic": dlq, "retained": 4, "last_24h": 4, "error": None
        }  # fmt: skip
        assert body["trade_gaps"] == {
            "window_hours": 24,
            "gaps": 2,
            "missing_trades": 4,
            "pairs": [
                {"pair": "BTC/USD", "gaps": 2, "missing_trades": 4},
                {"pair": "ETH/USD", "gaps": 0, "missing_trades": 0},
            ],
            "error": None,
        }
        # Cached for a while: a dashboard polling it does not scan the trades each time.
        _trades(db, "ETH/USD", [20], now - timedelta(hours=1))
        assert client.get(PIPELINE).json() == body


def test_pipeline_counts_say_what_could_not_be_counted(
    stack: Settings, app_factory: AppFactory
) -> None:
    settings = stack.with_servers(
        database="postgresql://postgres@127.0.0.1:1/cryptoviz", kafka="127.0.0.1:1"
    )
    app = app_factory(test_api_settings(health_timeout_s=1.0), settings=settings)
    with TestClient(app) as client:
        status, elapsed, body = _timed_get(client, PIPELINE)
    assert status == 200
    assert body["dead_letters"]["retained"] is None
    assert body["dead_letters"]["error"] == "broker unreachable"
    assert body["trade_gaps"]["gaps"] is None
    assert body["trade_gaps"]["error"] == "database unreachable"
    assert elapsed < 15
