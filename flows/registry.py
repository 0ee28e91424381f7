"""The dataflow of each Bytewax worker, by program name.

The workers themselves (name, command, metrics port, ``make up`` profile) are
declared once in :mod:`infra.programs`; this module attaches to each
``python -m flows.run NAME`` program the dataflow it runs. Each runs as its own
process; deploying one more means an entry there and its dataflow here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from bytewax.dataflow import Dataflow

from flows.ingest import build_ingest_flow
from infra.programs import flow_programs


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    name: str
    build: Callable[..., Dataflow]
    """``build(settings, kafka_topic=None, epoch_s=None)``: the dataflow, optionally on
    another topic; ``epoch_s`` is the epoch interval it will run with (the ingestion
    flows' Kafka input paces itself by it; producers ignore it)."""
    description: str
    recovery: bool = True
    """Bytewax recovery (offsets and state snapshots) under ``<state>/recovery/<name>``."""
    announce: Callable[[Any], str] | None = None
    """``announce(settings)``: the line ``make up`` prints about the worker (``--announce``)."""


def _producer(name: str) -> Callable[..., Dataflow]:
    """Imports the producer code only when that worker is built (ingest workers never pay)."""

    def build(
        settings: Any, kafka_topic: str | None = None, epoch_s: float | None = None
    ) -> Dataflow:
        del epoch_s  # a producer's source is not Kafka: nothing to pace
        from flows.producers.workers import producer_worker

        return producer_worker(name, settings, kafka_topic)

    return build


def _dataflow(name: str) -> Callable[..., Dataflow]:
    """``ingest-<topic>`` ingests that raw topic; every other worker is a producer."""
    topic = name.removeprefix("ingest-")
    return partial(build_ingest_flow, topic) if topic != name else _producer(name)


def _announce_replay(settings: Any) -> str:
    from flows.producers.replay import describe
    from flows.producers.settings import load_producer_settings

    producer = load_producer_settings()
    return describe(
        producer.replay, settings.coin_table(), beside_synthetic=producer.synthetic.beside_replay
    )


ANNOUNCEMENTS: dict[str, Callable[[Any], str]] = {"producer-replay": _announce_replay}

WORKERS: dict[str, WorkerSpec] = {
    p.name: WorkerSpec(
        name=p.name,
        build=_dataflow(p.name),
        description=p.description,
        announce=ANNOUNCEMENTS.get(p.name),
    )
    for p in flow_programs()
}
INGEST_WORKERS: tuple[str, ...] = tuple(name for name in WORKERS if name.startswith("ingest-"))
