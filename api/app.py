"""The app factory: wires settings, pool, live relay, telemetry and routes together."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.psycopg import PsycoPgChannelsBackend
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from opentelemetry.sdk.trace import TracerProvider

from api.context import ApiContext, utc_now
from api.dashboard import dashboard_router
from api.db import Database
from api.errors import exception_handlers
from api.live import LiveRelay
from api.routes.config import config_router
from api.routes.history import history_router
from api.routes.market import market_router
from api.routes.ops import DeadLetterProbe, KafkaProbe, PipelineProbe, make_ops_router
from api.routes.ws import WS_HANDLERS
from api.settings import ApiSettings
from api.symbols import Symbols
from api.telemetry import Telemetry, TelemetryMiddleware, build_tracer_provider
from infra.settings import Settings, SettingsError

API_VERSION = "1.0.0"
# Operational endpoints and sockets are not rate limited: probes and scrapers must
# always get through, and a socket is one long-lived request.
RATE_LIMIT_EXEMPT = [r"^/metrics", r"^/api/v1/health", r"^/docs", r"^/ws/"]


def _channels_backend(settings: Settings, api: ApiSettings) -> ChannelsBackend:
    if api.channels_backend == "postgres":
        assert settings.database.url is not None
        return PsycoPgChannelsBackend(settings.database.url)
    return MemoryChannelsBackend()


def create_app(
    settings: Settings,
    api_settings: ApiSettings,
    *,
    tracer_provider: TracerProvider | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Litestar:
    """The API for the database and Kafka of ``settings``.

    ``tracer_provider`` defaults to one built from ``api_settings`` (OTLP export only
    when ``settings.otlp_endpoint`` is configured); tests pass one with an in-memory exporter.
    ``clock`` is where "now" comes from (relative periodes, data age; no forecast issued
    after it is served).
    """
    if settings.database.url is None:
        raise SettingsError("the API needs a database: set DATABASE_URL")
    owns_provider = tracer_provider is None
    telemetry = Telemetry(
        tracer_provider or build_tracer_provider(api_settings, settings.otlp_endpoint),
        api_settings.metrics_dir,
    )
    symbols = Symbols(settings.coin_table())
    db = Database(settings.database.url, api_settings, telemetry)
    channels = ChannelsPlugin(
        backend=_channels_backend(settings, api_settings),
        arbitrary_channels_allowed=True,
        # No bound here: each plugin subscriber is drained at once into its socket's
        # ClientFeed, where the per-client bound applies and drops are counted.
    )
    live = LiveRelay(
        bootstrap=settings.kafka.bootstrap_servers,
        settings=api_settings,
        symbols=symbols,
        telemetry=telemetry,
        channels=channels,
        clock=clock,
    )
    ctx = ApiContext(
        settings=api_settings,
        db=db,
        symbols=symbols,
        telemetry=telemetry,
        live=live,
        kafka_bootstrap=settings.kafka.bootstrap_servers,
        clock=clock,
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        # The channels plugin is entered here rather than registered as a plugin so
        # that it starts before the relay publishes into it and stops after it.
        async with channels:
            await db.open()
            await live.start()
            try:
                yield
            finally:
                await live.stop()
                await db.close()
                probe.close()
                pipeline.close()
                if owns_provider:
                    telemetry.shutdown()

    probe = KafkaProbe(settings.kafka.bootstrap_servers)
    pipeline = PipelineProbe(
        DeadLetterProbe(settings.kafka.bootstrap_servers, settings.kafka.topics.deadletter)
    )
    middleware: list[DefineMiddleware] = [
        DefineMiddleware(TelemetryMiddleware, telemetry=telemetry)
    ]
    if api_settings.rate_limit is not None:
        limit = api_settings.rate_limit
        middleware.append(
            RateLimitConfig(
                rate_limit=(limit.per, limit.requests), exclude=RATE_LIMIT_EXEMPT
            ).middleware
        )
    cors = (
        CORSConfig(
            allow_origins=list(api_settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Content-Type", "Authorization", "X-API-Key", "traceparent"],
            expose_headers=[
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
                "Retry-After",
                "X-Candle-Source",
            ],
        )
        if api_settings.cors_origins
        else None
    )
    return Litestar(
        route_handlers=[
            history_router,
            market_router,
            config_router,
            make_ops_router(probe, pipeline),
            *WS_HANDLERS,
            dashboard_router(),  # the dashboard page at / (api/dashboard/)
        ],
        dependencies={
            "ctx": Provide(lambda: ctx, use_cache=True, sync_to_thread=False),
            "channels": Provide(lambda: channels, use_cache=True, sync_to_thread=False),
        },
        lifespan=[lifespan],
        middleware=middleware,
        cors_config=cors,
        exception_handlers=exception_handlers(),
        state=State({"api_settings": api_settings, "ctx": ctx}),
        openapi_config=OpenAPIConfig(
            title="CryptoViz API",
            version=API_VERSION,
            description="Market data, news sentiment and predictions stored by the CryptoViz "
            "pipeline, with live updates over WebSocket. Writes on config/* need an API key.",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/")],
            components=Components(
                security_schemes={
                    "ApiKey": SecurityScheme(
                        type="apiKey", name="X-API-Key", security_scheme_in="header"
                    )
                }
            ),
        ),
        debug=False,
    )
