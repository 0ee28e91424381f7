"""Operations: ``health/`` (real checks of the database and Kafka), ``health/pipeline/``
(dead letters and trade gaps, counted where they are kept) and ``/metrics``."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from confluent_kafka.admin import AdminClient
from litestar import Response, Router, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.context import ApiContext
from api.errors import ApiError
from api.models import (
    DeadLetterCount,
    DependencyHealth,
    Health,
    LiveHealth,
    PairTradeGaps,
    PipelineCounts,
    TradeGapCount,
)
from api.queries import PING, TRADE_GAPS
from handlers import CryptoVizError
from infra.db_state import GAP_WINDOW
from infra.kafka_offsets import KafkaOffsets

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


class DeadLetterProbe:
    """Counts the dead-letter topic's messages from its offsets (no message is read);
    one client per app, created on first use."""

    DAY = timedelta(hours=24)

    def __init__(self, bootstrap: str | None, topic: str) -> None:
        self._bootstrap = bootstrap
        self.topic = topic
        self._offsets: KafkaOffsets | None = None
        self._lock = threading.Lock()

    def count(self, now: datetime, timeout: float) -> DeadLetterCount:
        if self._bootstrap is None:
            return DeadLetterCount(topic=self.topic, retained=None, last_24h=None,
                                   error="Kafka not configured")  # fmt: skip
        with self._lock:  # one question at a time on the shared clients
            if self._offsets is None:
                self._offsets = KafkaOffsets(self._bootstrap, timeout=timeout)
            try:
                counted = self._offsets.count(self.topic, now - self.DAY)
            except CryptoVizError:
                return DeadLetterCount(topic=self.topic, retained=None, last_24h=None,
                                       error="broker unreachable")  # fmt: skip
        return DeadLetterCount(
            topic=self.topic, retained=counted.retained, last_24h=counted.since, error=None
        )

    def close(self) -> None:
        with self._lock:
            if self._offsets is not None:
                self._offsets.close()
                self._offsets = None


class PipelineProbe:
    """The counts of ``health/pipeline/``, computed at most every ``ttl_s`` seconds per
    process (a dashboard polls it; the gap count scans a day of trades)."""

    def __init__(self, dead_letters: DeadLetterProbe, ttl_s: float = 15.0) -> None:
        self.dead_letters = dead_letters
        self._ttl_s = ttl_s
        self._cached: tuple[float, PipelineCounts] | None = None
        self._lock = asyncio.Lock()

    async def counts(self, ctx: ApiContext) -> PipelineCounts:
        async with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self._ttl_s:
                return self._cached[1]
            now = ctx.now()
            timeout = ctx.settings.health_timeout_s
            letters, gaps = await asyncio.gather(
                asyncio.to_thread(self.dead_letters.count, now, timeout), _trade_gaps(ctx, now)
            )
            counts = PipelineCounts(checked_at=now, dead_letters=letters, trade_gaps=gaps)
            self._cached = (time.monotonic(), counts)
            return counts

    def close(self) -> None:
        self.dead_letters.close()


async def _trade_gaps(ctx: ApiContext, now: datetime) -> TradeGapCount:
    hours = int(GAP_WINDOW.total_seconds() // 3600)
    try:
        rows = await ctx.db.fetch(TRADE_GAPS, {"since": now - GAP_WINDOW})
    except ApiError:
        return TradeGapCount(window_hours=hours, gaps=None, missing_trades=None, pairs=[],
                             error="database unreachable")  # fmt: skip
    pairs = [PairTradeGaps(pair=r.pair, gaps=r.gaps, missing_trades=r.missing) for r in rows]
    return TradeGapCount(
        window_hours=hours,
        gaps=sum(p.gaps for p in pairs),
        missing_trades=sum(p.missing_trades for p in pairs),
        pairs=pairs,
        error=None,
    )


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


def make_ops_router(probe: KafkaProbe, pipeline: PipelineProbe) -> Router:
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

    @get(
        "/api/v1/health/pipeline/",
        summary="Dead letters and trade gaps, counted where they are kept",
        description="Dead letters: the messages of the dead-letter topic, from its offsets "
        "(all it retains, and those of the last 24 h). Trade gaps: holes in each pair's "
        "stored trade_id sequence over the last 24 h (Kraken numbers a book's trades "
        "consecutively), the count the monitor exports as cryptoviz_trade_id_gaps. A count "
        "that could not be made is null with its error; the answer is cached 15 s.",
        tags=["operations"],
    )
    async def pipeline_counts(ctx: NamedDependency[ApiContext]) -> PipelineCounts:
        return await pipeline.counts(ctx)

    @get("/metrics", include_in_schema=False, media_type=CONTENT_TYPE_LATEST)
    async def metrics(ctx: NamedDependency[ApiContext]) -> Response[Any]:
        return Response(generate_latest(ctx.telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    return Router(path="/", route_handlers=[health, pipeline_counts, metrics])
