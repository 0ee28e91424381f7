"""The API's settings, read once from the environment by :func:`load_api_settings`.

Like :mod:`infra.settings`, the struct never reads ``os.environ`` itself: tests
build it directly and only the process edge (``python -m api``) loads it, with the
shared reader of :mod:`infra.settings` (each variable is declared on its field; the
README's "Configuration" tables list them). The topics relayed live come from the
one topic map, ``Settings.kafka.topics``; the OTLP endpoint from
``Settings.otlp_endpoint``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from infra.settings import SettingsError, Topics, env, read_env

RateUnit = Literal["second", "minute", "hour", "day"]
ChannelsBackendName = Literal["memory", "postgres"]
CandleSource = Literal["auto", "aggregate", "raw"]

_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(second|minute|hour|day)\s*$")
_DEFAULT_TOPICS = Topics()


class LiveTopics(msgspec.Struct, frozen=True, kw_only=True):
    """Kafka topic relayed to each live channel type (``None``: that channel is not fed)."""

    ticker: str | None = _DEFAULT_TOPICS.rawticker
    trade: str | None = _DEFAULT_TOPICS.rawtrade
    article: str | None = _DEFAULT_TOPICS.rawarticle
    alert: str | None = _DEFAULT_TOPICS.rawalert
    sentiment: str | None = _DEFAULT_TOPICS.sentiment
    prediction: str | None = _DEFAULT_TOPICS.prediction

    @classmethod
    def from_topics(cls, topics: Topics) -> LiveTopics:
        """Every channel fed from the topic map."""
        return cls(
            ticker=topics.rawticker,
            trade=topics.rawtrade,
            article=topics.rawarticle,
            alert=topics.rawalert,
            sentiment=topics.sentiment,
            prediction=topics.prediction,
        )

    def by_topic(self) -> dict[str, str]:
        """``{topic: channel type}`` for the topics that are set."""
        pairs = {kind: getattr(self, kind) for kind in self.__struct_fields__}
        return {topic: kind for kind, topic in pairs.items() if topic}


class RateLimit(msgspec.Struct, frozen=True, kw_only=True):
    requests: int
    per: RateUnit


def parse_api_keys(raw: tuple[str, ...]) -> tuple[frozenset[str], dict[str, datetime]]:
    """``("k1", "k2@2027-01-01T00:00Z")`` -> (digests, digest -> expiry)."""
    digests: set[str] = set()
    expiry: dict[str, datetime] = {}
    for item in raw:
        key, at, until = item.rpartition("@")
        if not at or not _EXPIRY.match(until):
            key, until = item, ""  # an '@' inside the key itself
        digest = hash_api_key(key)
        digests.add(digest)
        if until:
            try:
                moment = datetime.fromisoformat(until)
            except ValueError:
                raise SettingsError(f"CRYPTOVIZ_API_KEYS: bad expiry time {until!r}") from None
            if moment.tzinfo is None:
                raise SettingsError(
                    f"CRYPTOVIZ_API_KEYS: expiry {until!r} needs a time zone (Z or +hh:mm)"
                )
            expiry[digest] = moment
    return frozenset(digests), expiry


_EXPIRY = re.compile(r"^\d{4}-\d\d-\d\d")


def hash_api_key(key: str) -> str:
    """The digest stored in :attr:`ApiSettings.api_key_digests` for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def _keys(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _key_digests(raw: str) -> frozenset[str]:
    return parse_api_keys(_keys(raw))[0]


def _key_expiry(raw: str) -> dict[str, datetime]:
    return parse_api_keys(_keys(raw))[1]


def parse_rate_limit(raw: str) -> RateLimit | None:
    """``"100/minute"`` -> :class:`RateLimit`; ``"off"`` -> ``None``."""
    if raw.strip().lower() in {"off", "0", "none", "disabled"}:
        return None
    match = _RATE.match(raw.lower())
    if match is None or int(match[1]) < 1:
        raise ValueError("must look like 100/minute (units: second, minute, hour, day) or be 'off'")
    unit: RateUnit = match[2]  # type: ignore[assignment]  # the regex only admits the four units
    return RateLimit(requests=int(match[1]), per=unit)


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: Annotated[str, env("CRYPTOVIZ_API_HOST", "bind address of `python -m api`")] = "127.0.0.1"
    port: Annotated[int, env("CRYPTOVIZ_API_PORT", "port of `python -m api`", ge=1, le=65535)] = (
        8000
    )
    workers: Annotated[int, env("CRYPTOVIZ_API_WORKERS", "uvicorn worker processes", ge=1)] = 1
    api_key_digests: Annotated[
        frozenset[str],
        env(
            "CRYPTOVIZ_API_KEYS",
            "comma-separated API keys allowed to write `config/*` (none: every write is "
            "refused); `key@2027-01-01T00:00Z` stops accepting that key at that aware time",
            parse=_key_digests,
            default="none",
        ),
    ] = frozenset()
    """SHA-256 hex digests of the accepted API keys: the keys themselves are not kept,
    so the settings can be logged or repr'd without leaking them."""
    api_key_expiry: Annotated[
        dict[str, datetime], env("CRYPTOVIZ_API_KEYS", "", parse=_key_expiry)
    ] = msgspec.field(default_factory=dict)
    """Digest -> the time from which that key is refused (keys absent never expire)."""
    cors_origins: Annotated[
        tuple[str, ...],
        env(
            "CRYPTOVIZ_CORS_ORIGINS", "comma-separated allowed origins (`*` for any); none: no CORS"
        ),
    ] = ()
    rate_limit: Annotated[
        RateLimit | None,
        env(
            "CRYPTOVIZ_RATE_LIMIT",
            "`N/unit` per client address (unit: second, minute, hour, day); `off` disables it",
            parse=parse_rate_limit,
            default="`1200/minute`",
        ),
    ] = RateLimit(requests=1200, per="minute")
    max_range_days: Annotated[
        int, env("CRYPTOVIZ_API_MAX_RANGE_DAYS", "longest explicit date range accepted", ge=1)
    ] = 90
    default_limit: int = 100
    max_limit: int = 1000
    pool_min: Annotated[int, env("CRYPTOVIZ_DB_POOL_MIN", "smallest database pool", ge=0)] = 1
    pool_max: Annotated[int, env("CRYPTOVIZ_DB_POOL_MAX", "largest database pool", ge=1)] = 10
    pool_timeout_s: Annotated[
        float,
        env("CRYPTOVIZ_DB_POOL_TIMEOUT", "seconds a request waits for a connection", gt=0),
    ] = 2.0
    pool_reconnect_timeout_s: float = 5.0
    statement_timeout_ms: Annotated[
        int, env("CRYPTOVIZ_DB_STATEMENT_TIMEOUT_MS", "per-statement limit (ms)", ge=1)
    ] = 5000
    health_timeout_s: float = 2.0
    candle_cache_s: Annotated[
        float,
        env("CRYPTOVIZ_CANDLE_CACHE_S", "seconds completed candles stay cached (0: off)", ge=0),
    ] = 60.0
    """Seconds completed candles stay cached per process (0: no cache)."""
    row_cache_rows: Annotated[
        int,
        env(
            "CRYPTOVIZ_API_ROW_CACHE_ROWS",
            "ticker history rows kept encoded per API process, ~0.35 kB each (0: off)",
            ge=0,
        ),
    ] = 50_000
    """Rows of immutable history (ticker pages) kept encoded per process
    (:mod:`api.row_cache`): ~17 MB, fifty pages of 1,000 rows."""
    candle_source: Annotated[
        CandleSource,
        env(
            "CRYPTOVIZ_CANDLE_SOURCE",
            "whole-hour candles from `ticker_ohlc_hourly` (`aggregate`), `ticker_data` "
            "(`raw`), or `auto`: the aggregate where it is a continuous aggregate",
        ),
    ] = "auto"
    """Whole-hour candles from ticker_ohlc_hourly (``aggregate``), from ticker_data
    (``raw``), or ``auto``: the aggregate where it is a TimescaleDB continuous aggregate."""
    live_enabled: Annotated[
        bool, env("CRYPTOVIZ_API_LIVE", "the Kafka -> WebSocket relay of the live routes")
    ] = True
    live_topics: LiveTopics = LiveTopics()
    channels_backend: Annotated[
        ChannelsBackendName,
        env(
            "CRYPTOVIZ_CHANNELS_BACKEND",
            "`memory` (one process) or `postgres` (LISTEN/NOTIFY, several API processes)",
        ),
    ] = "memory"
    ws_backlog: Annotated[
        int, env("CRYPTOVIZ_WS_BACKLOG", "messages buffered per WebSocket client", ge=1)
    ] = 1000
    service_name: Annotated[str, env("OTEL_SERVICE_NAME", "service name on the API's traces")] = (
        "cryptoviz-api"
    )
    metrics_dir: Annotated[
        Path | None,
        env(
            "PROMETHEUS_MULTIPROC_DIR",
            "metrics directory the uvicorn workers share, so `/metrics` sums them "
            "(emptied at start)",
            default="a temporary one when workers > 1",
        ),
    ] = None
    """Shared by the worker processes, whose metrics ``/metrics`` then sums (see
    :mod:`api.telemetry`); ``None``: one process, its own registry."""

    def __post_init__(self) -> None:
        if self.pool_max < max(self.pool_min, 1):
            raise SettingsError(
                f"CRYPTOVIZ_DB_POOL_MAX={self.pool_max} must be >= "
                f"CRYPTOVIZ_DB_POOL_MIN={self.pool_min}"
            )

    def accepts_key(self, key: str) -> bool:
        """Whether ``key`` is one of the configured API keys."""
        return hash_api_key(key) in self.api_key_digests


def load_api_settings(env: Mapping[str, str] | None = None, *, topics: Topics) -> ApiSettings:
    """Build :class:`ApiSettings` from environment variables (``os.environ`` by default).

    ``topics`` is the topic map (pass ``Settings.kafka.topics``): every live channel
    relays its topic from there.
    """
    settings = read_env(ApiSettings, os.environ if env is None else env)
    return msgspec.structs.replace(settings, live_topics=LiveTopics.from_topics(topics))
