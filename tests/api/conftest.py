"""Fixtures of the API tests: apps on a fresh migrated database, a pinned clock, seeding.

Apps run in-process through Litestar's TestClient (lifespan included) against the
session's real PostgreSQL (``fresh_db``) and Kafka broker (``stack``).
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import msgspec
import psycopg
import pytest
import uvicorn
from litestar import Litestar
from litestar.testing import TestClient
from opentelemetry.sdk.trace import TracerProvider
from psycopg import sql

from api import create_app
from api.settings import ApiSettings, hash_api_key
from infra.settings import Settings
from tests._wait import wait_for

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
# Generated per run: the suite holds no fixed credential.
API_KEY = secrets.token_urlsafe(24)
EXPIRED_KEY = secrets.token_urlsafe(24)
"""Configured, but it expired at the start of 2026."""

AppFactory = Callable[..., Litestar]


def test_api_settings(**overrides: object) -> ApiSettings:
    """Settings for tests: no rate limit, no live relay, one valid and one expired API key."""
    base = ApiSettings(
        rate_limit=None,
        live_enabled=False,
        api_key_digests=frozenset({hash_api_key(API_KEY), hash_api_key(EXPIRED_KEY)}),
        api_key_expiry={hash_api_key(EXPIRED_KEY): datetime(2026, 1, 1, tzinfo=UTC)},
        pool_timeout_s=2.0,
    )
    return msgspec.structs.replace(base, **overrides)


test_api_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture
def app_factory(stack: Settings, fresh_db: str) -> AppFactory:
    """``make(api_settings=None, *, database_url=None, tracer_provider=None, clock=...)``."""

    def make(
        api_settings: ApiSettings | None = None,
        *,
        database_url: str | None = None,
        settings: Settings | None = None,
        tracer_provider: TracerProvider | None = None,
        clock: Callable[[], datetime] = lambda: NOW,
    ) -> Litestar:
        base = settings or stack.with_servers(database=database_url or fresh_db)
        return create_app(
            base,
            api_settings or test_api_settings(),
            tracer_provider=tracer_provider or TracerProvider(),
            clock=clock,
        )

    return make


@pytest.fixture(scope="module")
def module_db(database_url: str, _template_db: str) -> Iterator[str]:
    """Like ``fresh_db``, shared by a module's read-only tests (saves a clone per test)."""
    name = f"cv_api_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(_template_db)
            )
        )
    yield psycopg.conninfo.make_conninfo(database_url, dbname=name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def module_client(stack: Settings, module_db: str) -> Iterator[TestClient[Litestar]]:
    """A client on :func:`module_db`, for tests that only read and need no seeded rows."""
    app = create_app(
        stack.with_servers(database=module_db),
        test_api_settings(),
        tracer_provider=TracerProvider(),
        clock=lambda: NOW,
    )
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def client(app_factory: AppFactory) -> Iterator[TestClient[Litestar]]:
    with TestClient(app_factory()) as test_client:
        yield test_client


@contextmanager
def serve(app: Litestar) -> Iterator[int]:
    """Serve ``app`` with uvicorn on a free loopback port (yielded) until the block ends."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, ws="auto", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def started() -> bool:
        assert thread.is_alive(), "uvicorn stopped while starting"
        return bool(server.started)

    wait_for(started, 20, "uvicorn to start", interval=0.05)
    port: int = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def db(fresh_db: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A direct connection to the test's database, for seeding and checking."""
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        yield conn
