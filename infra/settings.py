"""The settings every program shares, read once from the environment.

Every component (flows, Spark jobs, the API, the embedded stack) receives a
:class:`Settings` built by :func:`load_settings`. The structs themselves never
look at ``os.environ``: tests build them directly, and only the process edges
call :func:`load_settings`. Each field that comes from a variable declares it
where it is defined (:func:`env`); the README's "Configuration" tables are
generated from those declarations, so the variables, their defaults and their
meaning are written down once. Programs add their own sections:
:mod:`api.settings`, :mod:`spark_batch.settings`, :mod:`flows.producers.settings`,
all read by the same reader (:mod:`infra._env`: one vocabulary, one error shape).

:class:`Topics` is the one topic map: the Kafka topic behind each logical name.
Producers, ingestion flows, dead letters, the Spark job and its result topics, the
API's live relay and the stack's topic creation all take their topic names from
``Settings.kafka.topics``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import msgspec

from handlers import HANDLERS, CoinTable
from infra._env import (
    BOOLEAN_WORDS,
    SettingsError,
    Variable,
    check_bounds,
    env,
    environment_of,
    markdown_table,
    read_env,
    variables,
)
from infra.tracking import TrackedCoins

__all__ = [
    "BOOLEAN_WORDS",
    "RAW_TOPICS",
    "REPO_ROOT",
    "DatabaseSettings",
    "IngestSettings",
    "KafkaSettings",
    "Settings",
    "SettingsError",
    "Topics",
    "Variable",
    "check_bounds",
    "env",
    "environment_of",
    "load_coin_table",
    "load_settings",
    "markdown_table",
    "read_env",
    "variables",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
RAW_TOPICS: tuple[str, ...] = tuple(HANDLERS)
"""The logical raw topics, one per handler: ``rawticker``, ``rawtrade``, ``rawarticle``,
``rawalert``. :class:`Topics` says which Kafka topic each one is."""


class Topics(msgspec.Struct, frozen=True, kw_only=True):
    """The Kafka topic behind each logical name (the names handlers and tables use)."""

    rawticker: Annotated[
        str, env("CRYPTOVIZ_TOPIC_RAWTICKER", "Kafka topic of the ticker messages")
    ] = "rawticker"
    rawtrade: Annotated[
        str, env("CRYPTOVIZ_TOPIC_RAWTRADE", "Kafka topic of the trade messages")
    ] = "rawtrade"
    rawarticle: Annotated[
        str, env("CRYPTOVIZ_TOPIC_RAWARTICLE", "Kafka topic of the news articles")
    ] = "rawarticle"
    rawalert: Annotated[str, env("CRYPTOVIZ_TOPIC_RAWALERT", "Kafka topic of the price alerts")] = (
        "rawalert"
    )
    deadletter: Annotated[
        str, env("CRYPTOVIZ_DEAD_LETTER_TOPIC", "dead-letter topic of every ingestion flow")
    ] = "deadletter"
    # The result topics keep the names STRATEGIE_INTEGRATION.md gives them.
    sentiment: Annotated[
        str,
        env(
            "CRYPTOVIZ_SENTIMENT_TOPIC", "Spark's committed sentiment rows, relayed live by the API"
        ),
    ] = "analyzed-sentiment"
    prediction: Annotated[
        str,
        env(
            "CRYPTOVIZ_PREDICTION_TOPIC",
            "Spark's committed prediction rows, relayed live by the API",
        ),
    ] = "predicted-price"

    def of(self, logical: str) -> str:
        """The Kafka topic of a logical name (``"rawticker"``, ``"deadletter"``...)."""
        if logical not in self.__struct_fields__:
            raise SettingsError(
                f"no topic is called {logical!r} (known: {', '.join(self.__struct_fields__)})"
            )
        topic: str = getattr(self, logical)
        return topic

    @property
    def raw(self) -> tuple[str, ...]:
        """The Kafka topics of :data:`RAW_TOPICS`, in that order."""
        return tuple(self.of(name) for name in RAW_TOPICS)

    @property
    def all(self) -> tuple[str, ...]:
        """Every topic of the pipeline (what the stack creates)."""
        return tuple(self.of(name) for name in self.__struct_fields__)

    def with_suffix(self, suffix: str) -> Topics:
        """Every topic renamed ``<topic><suffix>`` (fresh topics for a test or a run)."""
        return Topics(**{name: self.of(name) + suffix for name in self.__struct_fields__})


class KafkaSettings(msgspec.Struct, frozen=True, kw_only=True):
    bootstrap_servers: Annotated[
        str | None,
        env(
            "KAFKA_BOOTSTRAP_SERVERS",
            "use these Kafka brokers; nothing is started",
            default="embedded broker",
        ),
    ] = None
    """``None`` means: start the embedded broker and use its address."""
    partitions: Annotated[
        int, env("CRYPTOVIZ_KAFKA_PARTITIONS", "partitions per topic when created", ge=1)
    ] = 3
    replication_factor: Annotated[
        int,
        env(
            "CRYPTOVIZ_KAFKA_REPLICATION",
            "replicas of each topic the project creates (`min.insync.replicas`: a majority)",
            ge=1,
        ),
    ] = 1
    topics: Topics = Topics()


class DatabaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: Annotated[
        str | None,
        env(
            "DATABASE_URL",
            "use this PostgreSQL/TimescaleDB; nothing is started",
            default="embedded server",
        ),
    ] = None
    """``None`` means: start the embedded PostgreSQL server and use its address."""


class IngestSettings(msgspec.Struct, frozen=True, kw_only=True):
    batch_size: Annotated[
        int, env("CRYPTOVIZ_BATCH_SIZE", "maximum rows per database write", ge=1)
    ] = 5000
    """Upper bound of one database write. A batch is whatever one Kafka poll returns
    (at most this many), so at low rates every message is written within a poll
    interval (about 1 ms) instead of waiting for a full batch."""
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0


def _state_dir(environ: Mapping[str, str]) -> Path:
    return (REPO_ROOT / ".state").resolve()


def _cache_dir(environ: Mapping[str, str]) -> Path:
    home = environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return (Path(home) / "cryptoviz").resolve()


def _coins_file(environ: Mapping[str, str]) -> Path:
    return REPO_ROOT / "infra" / "coins.toml"


def _resolved(raw: str) -> Path:
    return Path(raw).resolve()


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    state_dir: Annotated[
        Path,
        env(
            "CRYPTOVIZ_STATE_DIR",
            "broker log, database cluster, recovery, checkpoints, logs",
            parse=_resolved,
            fallback=_state_dir,
            default="`./.state`",
        ),
    ]
    cache_dir: Annotated[
        Path,
        env(
            "CRYPTOVIZ_CACHE_DIR",
            "downloaded jars (outside the repo)",
            parse=_resolved,
            fallback=_cache_dir,
            default="`~/.cache/cryptoviz`",
        ),
    ]
    coins_file: Annotated[
        Path,
        env(
            "CRYPTOVIZ_COINS_FILE",
            "coins, aliases (`xbt` = `bitcoin` = `BTC`), tracked pairs",
            fallback=_coins_file,
            default="`infra/coins.toml`",
        ),
    ]
    config_poll_s: Annotated[
        float,
        env(
            "CRYPTOVIZ_CONFIG_POLL_S",
            "how often the producers and Spark re-read `crypto_configuration` without a "
            "change notification (s)",
            gt=0,
        ),
    ] = 10.0
    """Fallback re-read interval of :class:`infra.tracking.TrackedCoins` (changes are
    notified at once; this bounds how late a missed notification is noticed)."""
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    ingest: IngestSettings = IngestSettings()
    otlp_endpoint: Annotated[
        str | None,
        env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OpenTelemetry collector (OTLP/HTTP): every program exports its spans there",
        ),
    ] = None
    """OpenTelemetry collector (OTLP/HTTP); spans are exported only when set."""

    def coin_table(self) -> CoinTable:
        """The coin/alias table named by :attr:`coins_file`."""
        return load_coin_table(self.coins_file)

    def tracked_coins(self, program: str, table: CoinTable | None = None) -> TrackedCoins:
        """The coins ``program`` tracks, following ``crypto_configuration`` when there is a
        database (:mod:`infra.tracking`); not started (:meth:`TrackedCoins.acquire`)."""
        return TrackedCoins(
            table or self.coin_table(),
            self.database.url,
            poll_s=self.config_poll_s,
            program=program,
        )

    def with_servers(self, *, kafka: str | None = None, database: str | None = None) -> Settings:
        """A copy pointing at servers started after the settings were read."""
        return msgspec.structs.replace(
            self,
            kafka=msgspec.structs.replace(
                self.kafka, bootstrap_servers=kafka or self.kafka.bootstrap_servers
            ),
            database=msgspec.structs.replace(self.database, url=database or self.database.url),
        )

    def with_topics(self, topics: Topics) -> Settings:
        """A copy whose components all use ``topics`` (fresh topics for a test or a run)."""
        return msgspec.structs.replace(
            self, kafka=msgspec.structs.replace(self.kafka, topics=topics)
        )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from environment variables (``os.environ`` by default)."""
    return read_env(Settings, os.environ if env is None else env)


def load_coin_table(path: Path) -> CoinTable:
    """Read the coin/alias TOML file (see ``infra/coins.toml`` for the format)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"coin table {path} not found (set CRYPTOVIZ_COINS_FILE)") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"coin table {path} is not valid TOML: {exc}") from None
    try:
        return CoinTable.from_mapping(data)
    except ValueError as exc:
        raise SettingsError(f"coin table {path}: {exc}") from None
