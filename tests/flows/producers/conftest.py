"""Fixtures for the producer tests: settings with local URLs, Kafka read-back helpers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from flows.producers.settings import ProducerSettings
from handlers import CoinTable
from infra.settings import RAW_TOPICS, Settings, Topics, load_coin_table, load_settings
from tests._wait import wait_for
from tests.flows.conftest import Record, read_keyed

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def coins() -> CoinTable:
    return load_coin_table(load_settings().coins_file)


@pytest.fixture
def offline_settings(tmp_path: Path) -> Settings:
    """Shared settings for flows run on TestingSource/TestingSink (no servers)."""
    return msgspec.structs.replace(load_settings({}), state_dir=tmp_path / "state")


@pytest.fixture
def fresh_topics(new_topic: Callable[..., str]) -> Callable[[], Topics]:
    """A topic map whose raw topics are fresh, uniquely named topics."""

    def make() -> Topics:
        return msgspec.structs.replace(Topics(), **{t: new_topic(t) for t in RAW_TOPICS})

    return make


def read_records(
    bootstrap: str, topic: str, timeout: float = 10.0, at_least: int = 0
) -> list[Record]:
    """Every message now in ``topic`` as (key, value, headers), partition by partition.

    ``at_least``: wait (up to ``timeout``) until the topic holds that many messages;
    fewer by then fails the test.
    """

    def enough() -> list[Record] | None:
        records = read_keyed(bootstrap, topic, timeout, complete=True)
        return records if len(records) >= at_least else None

    if at_least == 0:  # an empty topic is an answer, not a reason to wait
        return read_keyed(bootstrap, topic, timeout, complete=True)
    return wait_for(enough, timeout, f"{at_least} messages in {topic}", interval=0.2)


def producer_settings(**parts: object) -> ProducerSettings:
    return ProducerSettings(**parts)  # type: ignore[arg-type]
