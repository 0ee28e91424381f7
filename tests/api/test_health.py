"""``health/`` checks the database and Kafka for real; outages give fast 503s and heal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
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
