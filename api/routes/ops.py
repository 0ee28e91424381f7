"""Operations: ``health/`` (real checks of the database and Kafka) and ``/metrics``."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from confluent_kafka.admin import AdminClient
from litestar import Response, Router, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.context import ApiContext
from api.errors import ApiError
from api.models import DependencyHealth, Health, LiveHealth
from api.queries import PING

_KAFKA_LOG = logging.getLogger("api.kafka")


class KafkaProbe:
    """One admin client per app, reused by every health check (creating one is costly)."""

    def __init__(self, bootstrap: str | None) -> None:
        self._bootstrap = bootstrap
        self._admin: AdminClient | None = None

    def close(self) -> None:
        # AdminClient has no close(): dropping it stops its threads and reconnects.
        self._admin = None

    def check(self, timeout: float) -> int:
        """Number of topics the cluster reports; raises if it cannot be reached in time."""
        if self._bootstrap is None:
            raise RuntimeError("no Kafka bootstrap servers configured")
        if self._admin is None:
            config: dict[str, Any] = {
                "bootstrap.servers": self._bootstrap,
                "socket.connection.setup.timeout.ms": 2000,
                # librdkafka's own log lines go through Python logging, not stderr.
                "logger": _KAFKA_LOG,
            }
            self._admin = AdminClient(config)
        metadata = self._admin.list_topics(timeout=timeout)
        if not metadata.brokers:
            raise RuntimeError("no broker answered")
        return len(metadata.topics)


async def _check_database(ctx: ApiContext) -> DependencyHealth:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(ctx.settings.health_timeout_s):
            await ctx.db.fetch(PING)
    except (ApiError, TimeoutError):
        return DependencyHealth(status="down", latency_ms=None, error="database unreachable")
    return DependencyHealth(status="up", latency_ms=_ms(started), error=None)


async def _check_kafka(ctx: ApiContext, probe: KafkaProbe) -> DependencyHealth:
    started = time.perf_counter()
    timeout = ctx.settings.health_timeout_s
    try:
        await asyncio.wait_for(asyncio.to_thread(probe.check, timeout), timeout + 1.0)
    except Exception as exc:  # any failure of the probe means "down"; the reason is shown
        reason = "not configured" if ctx.kafka_bootstrap is None else "broker unreachable"
        if isinstance(exc, RuntimeError) and ctx.kafka_bootstrap is not None:
            reason = str(exc)
        return DependencyHealth(status="down", latency_ms=None, error=reason)
    return DependencyHealth(status="up", latency_ms=_ms(started), error=None)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


def make_ops_router(probe: KafkaProbe) -> Router:
    @get(
        "/api/v1/health/",
        summary="Health of the API and its dependencies",
        description="Checks the database (a query) and Kafka (cluster metadata) for real. "
        "503 when either is down, naming which.",
        responses={
            503: ResponseSpec(
                data_container=Health, description="A dependency is down (named in the body)"
            )
        },
        tags=["operations"],
    )
    async def health(ctx: NamedDependency[ApiContext]) -> Response[Health]:
        database, kafka = await asyncio.gather(_check_database(ctx), _check_kafka(ctx, probe))
        ok = database.status == "up" and kafka.status == "up"
        body = Health(
            status="ok" if ok else "down",
            database=database,
            kafka=kafka,
            live=LiveHealth(
                status=ctx.live.status,
                assigned_partitions=ctx.live.assigned_partitions,
                clients=ctx.live.clients,
            ),
        )
        return Response(body, status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE)

    @get("/metrics", include_in_schema=False, media_type=CONTENT_TYPE_LATEST)
    async def metrics(ctx: NamedDependency[ApiContext]) -> Response[Any]:
        return Response(generate_latest(ctx.telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    return Router(path="/", route_handlers=[health, metrics])
