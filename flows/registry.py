"""The workers this project can deploy, by name.

A worker is a Bytewax dataflow plus how it runs. Each runs as its own process
(``python -m flows.run NAME``); deploying one more means adding an entry here,
not new plumbing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from bytewax.dataflow import Dataflow

from flows._tables import TABLES
from flows.ingest import build_ingest_flow


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    name: str
    build: Callable[..., Dataflow]
    """``build(settings, kafka_topic=None)``: the dataflow, optionally on another topic."""
    description: str
    recovery: bool = True
    """Bytewax recovery (offsets and state snapshots) under ``<state>/recovery/<name>``."""


def _ingest_workers() -> dict[str, WorkerSpec]:
    return {
        f"ingest-{topic}": WorkerSpec(
            name=f"ingest-{topic}",
            build=partial(build_ingest_flow, topic),
            description=f"{topic} -> {spec.table} (dead letters to the DLQ topic)",
        )
        for topic, spec in TABLES.items()
    }


def _producer(name: str) -> Callable[..., Dataflow]:
    """Imports the producer code only when that worker is built (ingest workers never pay)."""

    def build(settings: Any, kafka_topic: str | None = None) -> Dataflow:
        from flows.producers.workers import producer_worker

        return producer_worker(name, settings, kafka_topic)

    return build


def _producer_workers() -> dict[str, WorkerSpec]:
    specs = (
        ("producer-kraken", "Kraken v2 ticker + trade -> rawticker, rawtrade"),
        ("producer-rss", "news feeds -> rawarticle (sentiment, coin mentions)"),
        ("producer-alerts", "rawticker -> price alerts -> rawalert"),
        ("producer-replay", "recorded Kraken frames and feeds -> raw topics"),
        ("producer-synthetic", "generated market -> rawticker, rawtrade"),
    )
    return {
        name: WorkerSpec(name=name, build=_producer(name), description=text) for name, text in specs
    }


WORKERS: dict[str, WorkerSpec] = {**_ingest_workers(), **_producer_workers()}
INGEST_WORKERS: tuple[str, ...] = tuple(_ingest_workers())
