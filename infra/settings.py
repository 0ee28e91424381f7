"""Typed settings, read once from the environment.

Every component (flows, Spark jobs, the API, the embedded stack) receives a
:class:`Settings` built by :func:`load_settings`. The structs themselves never
look at ``os.environ``: tests build them directly, and only the process edges
call :func:`load_settings`.

Environment variables (all optional):

===============================  ====================================================
``DATABASE_URL``                 existing PostgreSQL/TimescaleDB; nothing is started
``KAFKA_BOOTSTRAP_SERVERS``      existing Kafka brokers; nothing is started
``CRYPTOVIZ_STATE_DIR``          local state (broker log, PG cluster, recovery, checkpoints)
``CRYPTOVIZ_CACHE_DIR``          downloaded jars (outside the repo by default)
``CRYPTOVIZ_KAFKA_PARTITIONS``   partitions per raw topic (default 3)
``CRYPTOVIZ_DEAD_LETTER_TOPIC``  dead-letter topic name (default ``deadletter``)
``CRYPTOVIZ_SENTIMENT_TOPIC``    Spark's sentiment rows for live views (default ``sentiment``)
``CRYPTOVIZ_PREDICTION_TOPIC``   Spark's prediction rows for live views (default ``prediction``)
``CRYPTOVIZ_COINS_FILE``         coin/alias table (default ``infra/coins.toml``)
``CRYPTOVIZ_BATCH_SIZE``         max messages per ingestion batch (default 5000)
``OTEL_EXPORTER_OTLP_ENDPOINT``  export traces (OTLP/HTTP) to this collector
===============================  ====================================================
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

import msgspec

from handlers import CoinTable, ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
RAW_TOPICS: tuple[str, ...] = ("rawticker", "rawtrade", "rawarticle", "rawalert")


class SettingsError(ConfigError):
    """A setting is missing or malformed; ``detail`` says which and how to fix it."""


class KafkaSettings(msgspec.Struct, frozen=True, kw_only=True):
    bootstrap_servers: str | None = None
    """``None`` means: start the embedded broker and use its address."""
    partitions: int = 3
    replication_factor: int = 1
    dead_letter_topic: str = "deadletter"
    raw_topics: tuple[str, ...] = RAW_TOPICS
    sentiment_topic: str = "sentiment"
    """Spark's committed sentiment rows, for the API's live routes."""
    prediction_topic: str = "prediction"
    """Spark's committed prediction rows, for the API's live routes."""

    @property
    def all_topics(self) -> tuple[str, ...]:
        return (*self.raw_topics, self.dead_letter_topic, self.sentiment_topic,
                self.prediction_topic)  # fmt: skip


class DatabaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str | None = None
    """``None`` means: start the embedded PostgreSQL server and use its address."""


class IngestSettings(msgspec.Struct, frozen=True, kw_only=True):
    batch_size: int = 5000
    """Upper bound of one database write. A batch is whatever one Kafka poll returns
    (at most this many), so at low rates every message is written within a poll
    interval (about 1 ms) instead of waiting for a full batch."""
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    state_dir: Path
    cache_dir: Path
    coins_file: Path
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    ingest: IngestSettings = IngestSettings()
    otlp_endpoint: str | None = None
    """OpenTelemetry collector (OTLP/HTTP); spans are exported only when set."""

    def coin_table(self) -> CoinTable:
        """The coin/alias table named by :attr:`coins_file`."""
        return load_coin_table(self.coins_file)

    def with_servers(self, *, kafka: str | None = None, database: str | None = None) -> Settings:
        """A copy pointing at servers started after the settings were read."""
        return msgspec.structs.replace(
            self,
            kafka=msgspec.structs.replace(
                self.kafka, bootstrap_servers=kafka or self.kafka.bootstrap_servers
            ),
            database=msgspec.structs.replace(self.database, url=database or self.database.url),
        )


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be >= {minimum}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from environment variables (``os.environ`` by default)."""
    env = os.environ if env is None else env
    cache_default = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cryptoviz"
    return Settings(
        state_dir=Path(env.get("CRYPTOVIZ_STATE_DIR") or REPO_ROOT / ".state").resolve(),
        cache_dir=Path(env.get("CRYPTOVIZ_CACHE_DIR") or cache_default).resolve(),
        coins_file=Path(env.get("CRYPTOVIZ_COINS_FILE") or REPO_ROOT / "infra" / "coins.toml"),
        kafka=KafkaSettings(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            partitions=_int(env, "CRYPTOVIZ_KAFKA_PARTITIONS", 3),
            dead_letter_topic=env.get("CRYPTOVIZ_DEAD_LETTER_TOPIC") or "deadletter",
            sentiment_topic=env.get("CRYPTOVIZ_SENTIMENT_TOPIC") or "sentiment",
            prediction_topic=env.get("CRYPTOVIZ_PREDICTION_TOPIC") or "prediction",
        ),
        database=DatabaseSettings(url=env.get("DATABASE_URL") or None),
        ingest=IngestSettings(
            batch_size=_int(env, "CRYPTOVIZ_BATCH_SIZE", 5000),
        ),
        otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
    )


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
