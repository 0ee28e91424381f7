"""Fixtures of the contract tests: the seed examples, and the real stack to replay them on.

The examples are read from ``../shared/seeds/`` at collection time (see
:mod:`tests.contract.seeds`); without that folder every contract test is skipped
with the reason. The stack is the session's real Kafka broker and PostgreSQL server
(``tests/conftest.py``), with topics and a database of this module's own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from infra.settings import Settings, Topics
from infra.topics import ensure_topics
from tests.api.conftest import app_factory, module_db  # noqa: F401  (fixtures)
from tests.contract.seeds import SEEDS, Example, Kind, examples

REPO = Path(__file__).resolve().parents[2]
MISSING = f"the seed documents are not available: {SEEDS} is missing (needs ../shared)"
FOUND = examples()


def params(*kinds: Kind, where: Callable[[Example], bool] = lambda _e: True) -> list[Any]:
    """The examples of ``kinds`` (those ``where`` keeps) as pytest params (id:
    document:line:kind), or one skipped param saying why there are none."""
    found = [pytest.param(e, id=e.id) for e in FOUND if e.kind in kinds and where(e)]
    if found:
        return found
    return [pytest.param(None, id="no-seeds", marks=pytest.mark.skip(reason=MISSING))]


def only(example: Example | None) -> Example:
    assert example is not None  # the skip mark keeps None from running
    return example


@pytest.fixture(scope="module")
def module_database(module_db: str) -> str:  # noqa: F811  (the fixture imported above)
    """A migrated database of this module's own (``tests.api.conftest.module_db``)."""
    return module_db


@pytest.fixture(scope="module")
def module_topics(stack: Settings) -> Topics:
    """Every topic of the map under a suffix of this module's own, created."""
    topics = stack.kafka.topics.with_suffix(f"-contract{uuid.uuid4().hex[:6]}")
    assert stack.kafka.bootstrap_servers is not None
    ensure_topics(stack.kafka.bootstrap_servers, topics.all, stack.kafka.partitions)
    return topics


@pytest.fixture(scope="module")
def module_env(
    stack: Settings, module_database: str, module_topics: Topics, tmp_path_factory: Any
) -> dict[str, str]:
    """The environment of a program on this module's database and topics."""
    from infra.settings import environment_of

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka.bootstrap_servers or "",
        "DATABASE_URL": module_database,
        "CRYPTOVIZ_STATE_DIR": str(tmp_path_factory.mktemp("state")),
        "CRYPTOVIZ_CACHE_DIR": str(stack.cache_dir),
        **environment_of(module_topics),
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return env


def rows(url: str, query: str, *args: object) -> list[dict[str, Any]]:
    """``query``'s rows as dicts."""
    from psycopg.rows import dict_row

    with psycopg.connect(url, row_factory=dict_row) as conn:
        return list(conn.execute(query, args).fetchall())


Rows = Callable[..., list[dict[str, Any]]]
