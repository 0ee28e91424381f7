"""The workers this project can deploy, by name.

A worker is a Bytewax dataflow plus how it runs. Each runs as its own process
(``python -m flows.run NAME``); deploying one more means adding an entry here,
not new plumbing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

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


WORKERS: dict[str, WorkerSpec] = {**_ingest_workers()}
INGEST_WORKERS: tuple[str, ...] = tuple(_ingest_workers())
