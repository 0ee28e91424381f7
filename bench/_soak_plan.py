"""What a soak run starts: its options, and the programs supervisord runs for it.

:func:`plan` lays out the workers (each on a free metrics port), the synthetic producers
(each on its own slice of the pairs) and the API; :func:`write_config` writes the
supervisord config ``make up`` would, with the producers held back for the load.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from flows.registry import INGEST_WORKERS
from infra._procs import free_port
from infra.programs import PROGRAMS
from infra.settings import RAW_TOPICS, Settings, environment_of
from infra.stack import supervisor_config

RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"


@dataclass(frozen=True)
class Options:
    rate: float = 20_000.0
    minutes: float = 10.0
    api_rate: float = 100.0
    producers: int = 3
    pairs: int = 12
    """Per producer."""
    sample_s: float = 10.0
    warmup_s: float = 60.0
    catchup_timeout_s: float = 600.0
    spark: bool = True
    write: bool = True
    results: Path = RESULTS
    keep_state: bool = False

    @property
    def load_s(self) -> float:
        return self.minutes * 60.0


@dataclass(frozen=True)
class IngestWorker:
    name: str
    kafka_topic: str
    recovery: Path
    metrics_port: int


@dataclass
class Layout:
    """What runs under supervisord, and where to look at it."""

    programs: dict[str, list[str]] = field(default_factory=dict)
    producers: list[str] = field(default_factory=list)
    ingest: list[IngestWorker] = field(default_factory=list)
    consumers: list[tuple[str, str, Path]] = field(default_factory=list)
    """(program, topic, recovery dir) of every Bytewax worker reading Kafka: their lag."""
    api_port: int = 0
    env: dict[str, str] = field(default_factory=dict)


def renamed_topics(settings: Settings) -> Settings:
    """Settings whose topics carry a unique suffix, so a shared broker's other users don't
    count in our watermarks (every program follows the topic map, Spark and the API too)."""
    return settings.with_topics(settings.kafka.topics.with_suffix(f"-soak{uuid.uuid4().hex[:6]}"))


def _flow(program: str, recovery: Path, *args: str, metrics_port: int | None = None) -> list[str]:
    """A registered flow as ``make up`` runs it, with its own recovery and metrics port."""
    return PROGRAMS[program].command(
        metrics_port=metrics_port or free_port(), extra=("--recovery-dir", str(recovery), *args)
    )


def plan(settings: Settings, opts: Options) -> Layout:
    state, topics = settings.state_dir, settings.kafka.topics
    topic = {raw: topics.of(raw) for raw in RAW_TOPICS}
    layout = Layout(api_port=free_port())
    layout.env = {
        **environment_of(topics),
        "CRYPTOVIZ_API_PORT": str(layout.api_port),
        # A per-client limit (1200/minute by default) would answer the load with 429s.
        "CRYPTOVIZ_RATE_LIMIT": "off",
        "CRYPTOVIZ_SYNTHETIC_PAIRS": str(opts.pairs),
    }
    for name in INGEST_WORKERS:
        raw = name.removeprefix("ingest-")
        w = IngestWorker(name, topic[raw], state / "recovery" / name, free_port())
        layout.ingest.append(w)
        layout.consumers.append((name, w.kafka_topic, w.recovery))
        layout.programs[name] = _flow(
            name, w.recovery, "--topic", w.kafka_topic, metrics_port=w.metrics_port
        )
    alerts = "producer-alerts"
    layout.programs[alerts] = _flow(
        alerts, state / "recovery" / alerts, "--topic", topic["rawticker"]
    )
    layout.consumers.append((alerts, topic["rawticker"], state / "recovery" / alerts))
    env_cmd = shutil.which("env") or "/usr/bin/env"
    for index in range(opts.producers):
        name = f"producer-synthetic-{index + 1}"
        layout.producers.append(name)
        # Per-process settings: supervisord gives all its programs the same environment.
        layout.programs[name] = [
            env_cmd,
            f"CRYPTOVIZ_SYNTHETIC_RATE={opts.rate / opts.producers:g}",
            f"CRYPTOVIZ_SYNTHETIC_PAIR_OFFSET={index * opts.pairs}",
            *_flow("producer-synthetic", state / "recovery" / name),
        ]
    if opts.spark:
        layout.programs["spark-analytics"] = PROGRAMS["spark-analytics"].command(
            metrics_port=free_port()
        )
    layout.programs["api"] = PROGRAMS["api"].command()
    return layout


def write_config(settings: Settings, env: dict[str, str], layout: Layout) -> Path:
    """supervisord's config as ``make up`` writes it; producers wait for :meth:`start`."""
    conf = supervisor_config(settings, env, layout.programs)
    text = conf.read_text()
    for name in layout.producers:
        text = text.replace(f"[program:{name}]\n", f"[program:{name}]\nautostart=false\n")
    conf.write_text(text)
    return conf
