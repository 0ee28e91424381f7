"""Every program CryptoViz runs, declared once.

A :class:`Program` is a command line and what running it takes: the port ``make up``
gives its Prometheus metrics, the profiles of ``make up`` that run it (``live``: the
Kraken and news producers; ``replay``: recorded data offline), the outside service it
needs. :data:`PROGRAMS` lists them all, in start order. ``make up``
(:mod:`infra.stack`) runs a profile's programs under supervisord, ``flows.registry``
attaches a dataflow to each ``flows.run`` program, the compose tests check that each
is a service of ``infra/docker-compose.yml``, and the benchmarks run them as ``make
up`` does. Deploying one more worker is an entry here and its dataflow in
``flows/registry.py``.

Every program that consumes Kafka leaves its position in a consumer group named after
it (:func:`consumer_group`), which the ``monitor`` program reads to compute the lag
(:mod:`infra.kafka_offsets`).

``infra`` is the bottom layer next to ``handlers``: it knows programs by their command
line, and imports none of ``api``, ``flows`` or ``spark_batch`` (a test checks).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal

import msgspec

from infra.settings import RAW_TOPICS

Profile = Literal["live", "replay"]
BOTH: frozenset[Profile] = frozenset(("live", "replay"))
KRAKEN_WS_URL = "wss://ws.kraken.com/v2"
"""Kraken's v2 WebSocket: what the live producer reaches (and its default URL)."""
CONSUMER_GROUP_PREFIX = "cryptoviz-"
"""Consumer groups named so are the pipeline's: the monitor reports their lag."""


def consumer_group(program: str, part: str | None = None) -> str:
    """The consumer group where ``program`` (one of its queries: ``part``) keeps its
    position: ``cryptoviz-ingest-rawticker``, ``cryptoviz-spark-analytics-sentiment``."""
    return CONSUMER_GROUP_PREFIX + program + (f"-{part}" if part else "")


def ingest_program(raw: str) -> str:
    """The program that ingests the logical raw topic ``raw``: ``ingest-rawticker``."""
    return f"ingest-{raw}"


class Program(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    module: str
    """Run as ``python -m <module> <args>``."""
    args: tuple[str, ...] = ()
    description: str
    metrics_port: int | None = None
    """Where ``make up`` has it serve Prometheus metrics (``--metrics-port``); ``None``
    for a program without that flag (the API serves ``/metrics`` on its own port)."""
    profiles: frozenset[Profile] = BOTH
    reaches: str | None = None
    """An outside address it needs; ``make up`` says so when it is unreachable."""
    announce: tuple[str, ...] | None = None
    """Arguments that make it print one line for ``make up``'s console instead of running
    (where to reach it; what it will play)."""

    def command(self, *, metrics_port: int | None = None, extra: Sequence[str] = ()) -> list[str]:
        """Its argv: ``extra`` flags, metrics on ``metrics_port`` (default: its own port)."""
        port = self.metrics_port if metrics_port is None else metrics_port
        metrics = ["--metrics-port", str(port)] if port is not None else []
        return [sys.executable, "-m", self.module, *self.args, *extra, *metrics]


def _flow(
    name: str,
    description: str,
    port: int,
    profiles: frozenset[Profile] = BOTH,
    *,
    announce: bool = False,
) -> Program:
    return Program(
        name=name,
        module="flows.run",
        args=(name,),
        description=description,
        metrics_port=port,
        profiles=profiles,
        reaches=KRAKEN_WS_URL if name == "producer-kraken" else None,
        announce=(name, "--announce") if announce else None,
    )


LIVE: frozenset[Profile] = frozenset(("live",))
REPLAY: frozenset[Profile] = frozenset(("replay",))

PROGRAMS: dict[str, Program] = {
    p.name: p
    for p in (
        *(
            _flow(ingest_program(raw), f"{raw} -> its table (dead letters aside)", port)
            for port, raw in enumerate(RAW_TOPICS, start=9200)
        ),
        _flow("producer-kraken", "Kraken v2 ticker + trade -> rawticker, rawtrade", 9204, LIVE),
        _flow("producer-rss", "news feeds -> rawarticle (sentiment, coin mentions)", 9205, LIVE),
        _flow(
            "producer-replay",
            "recorded Kraken frames, feeds and candle files -> raw topics",
            9207,
            REPLAY,
            announce=True,
        ),
        _flow("producer-synthetic", "generated market -> rawticker, rawtrade", 9208, REPLAY),
        _flow("producer-alerts", "rawticker -> price alerts -> rawalert", 9206),
        Program(
            name="spark-analytics",
            module="spark_batch.run",
            description="windowed sentiment per coin and price predictions (Spark)",
            metrics_port=9300,
        ),
        Program(
            name="monitor",
            module="infra.monitor",
            description="rows and newest row per table, consumer lag, trade gaps (metrics)",
            metrics_port=9209,
        ),
        Program(
            name="api",
            module="api",
            description="REST, live WebSocket, dashboard and /metrics (Litestar)",
            announce=("--urls",),
        ),
    )
}


PROFILE_ENVIRONMENT: dict[Profile, dict[str, str]] = {
    "live": {},
    # The synthetic market leaves the coins of the replayed candle files to the replay:
    # one price path per coin (the variable is declared in flows/producers/settings.py).
    "replay": {"CRYPTOVIZ_SYNTHETIC_BESIDE_REPLAY": "true"},
}
"""Variables ``make up`` sets for every program of a profile."""


def profile(name: Profile) -> tuple[Program, ...]:
    """The programs ``make up`` runs for a profile, in start order."""
    return tuple(p for p in PROGRAMS.values() if name in p.profiles)


def flow_programs() -> tuple[Program, ...]:
    """The Bytewax workers (``python -m flows.run NAME``)."""
    return tuple(p for p in PROGRAMS.values() if p.module == "flows.run")
