"""Session-wide real servers for the integration tests.

The suite starts one real Kafka broker (KRaft) and one real PostgreSQL server
for the whole session, exactly as ``make up`` does, unless
``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` point at existing ones. Tests
isolate themselves with fresh topics (:func:`new_topic`) and fresh databases
cloned from a migrated template (:func:`fresh_db`), so they can run in any order.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import psycopg
import pytest
from psycopg import sql

from infra.settings import Settings
from tests._kafka_clients import assert_kafka_clients_closed

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
SHARED_FIXTURES = SHARED / "fixtures" / "real"


def pytest_configure(config: pytest.Config) -> None:
    # A run ended by SIGTERM (a CI timeout, `kill`) tears its fixtures down as Ctrl-C
    # does: by default it dies at once, leaving the session's broker and PostgreSQL,
    # and a chaos test's supervisord and workers, running (they are not all our children).
    signal.signal(signal.SIGTERM, _interrupted)


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """The real captures in ../shared/fixtures/real (skips when the clone has no ../shared)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real captures not available: {SHARED_FIXTURES} is missing (needs ../shared)")
    return SHARED_FIXTURES


@pytest.fixture
def market_slice(shared_fixtures: Path, tmp_path: Path) -> Callable[[int], tuple[Path, ...]]:
    """``make(n)``: the first ``n`` minutes of each real candle file of
    ``../shared/fixtures/real/market``, as files of the same names (so the same pairs)."""

    def make(minutes: int) -> tuple[Path, ...]:
        out = tmp_path / f"market-{minutes}"
        out.mkdir(exist_ok=True)
        files = []
        for real in sorted((shared_fixtures / "market").glob("*.csv")):
            with real.open("rb") as fh:
                head = [fh.readline() for _ in range(minutes + 1)]
            (out / real.name).write_bytes(b"".join(head))
            files.append(out / real.name)
        assert len(files) == 2, files
        return tuple(files)

    return make


def _server_dir(prefix: str) -> Path:
    # Not under pytest's basetemp: another pytest session on the machine may reset
    # /tmp/pytest-of-<user> to 0700, locking out the unprivileged PostgreSQL user.
    return Path(tempfile.mkdtemp(prefix=f"cryptoviz-{prefix}-"))


@pytest.fixture(scope="session")
def server_dirs() -> Iterator[Callable[[str], Path]]:
    """``server_dirs("pg")``: a private directory for a server's data, removed at the end."""
    made: list[Path] = []

    def make(prefix: str) -> Path:
        made.append(_server_dir(prefix))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server_dir(server_dirs: Callable[[str], Path]) -> Path:
    """A private directory for one test's own server."""
    return server_dirs("test")


@pytest.fixture(scope="session")
def stack(server_dirs: Callable[[str], Path]) -> Iterator[Settings]:
    """Settings pointing at a running Kafka broker and a migrated PostgreSQL server."""
    from infra.stack import temporary_stack

    with temporary_stack(server_dirs("stack")) as running:
        yield running.settings
        assert_kafka_clients_closed()  # before the broker goes (tests/_kafka_clients.py)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Settings) -> str:
    assert stack.kafka.bootstrap_servers is not None
    return stack.kafka.bootstrap_servers


@pytest.fixture(scope="session")
def database_url(stack: Settings) -> str:
    assert stack.database.url is not None
    return stack.database.url


def _with_dbname(url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


@pytest.fixture(scope="session")
def _template_db(database_url: str) -> str:
    """A database migrated once, cloned by every :func:`fresh_db`."""
    from infra.migrate import migrate

    name = f"cv_template_{os.getpid()}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(_with_dbname(database_url, name))
    return name


@pytest.fixture
def fresh_db(database_url: str, _template_db: str) -> Iterator[str]:
    """URL of a new, migrated, empty database for this test."""
    name = f"cv_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(_template_db)
            )
        )
    yield _with_dbname(database_url, name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Callable[..., str]:
    """Create a uniquely named topic: ``new_topic("rawticker")`` -> ``rawticker-1a2b3c``."""
    from infra.topics import ensure_topics

    def create(prefix: str, partitions: int = 3) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        ensure_topics(kafka_bootstrap, (name,), partitions)
        return name

    return create
