"""API settings, read once from the environment by :func:`load_api_settings`.

Like :mod:`infra.settings`, the struct never reads ``os.environ`` itself: tests
build it directly and only the process edge (``python -m api``) loads it.

Environment variables (all optional):

=================================  =====================================================
``CRYPTOVIZ_API_HOST``             bind address of ``python -m api`` (default 127.0.0.1)
``CRYPTOVIZ_API_PORT``             port (default 8000)
``CRYPTOVIZ_API_WORKERS``          uvicorn worker processes (default 1)
``CRYPTOVIZ_API_KEYS``             comma-separated API keys allowed to write ``config/*``;
                                   none means every write is refused; ``key@2027-01-01T00:00Z``
                                   stops accepting that key at that (aware) time
``CRYPTOVIZ_CORS_ORIGINS``         comma-separated allowed origins (``*`` for any); none
                                   means no CORS headers
``CRYPTOVIZ_RATE_LIMIT``           ``N/second|minute|hour|day`` per client address
                                   (default ``1200/minute``); ``off`` disables it
``CRYPTOVIZ_API_MAX_RANGE_DAYS``   longest explicit date range accepted (default 90)
``CRYPTOVIZ_DB_POOL_MIN`` / ``_MAX`` database pool size (default 1 / 10)
``CRYPTOVIZ_DB_POOL_TIMEOUT``      seconds a request waits for a connection (default 2)
``CRYPTOVIZ_DB_STATEMENT_TIMEOUT_MS``  per-statement limit (default 5000)
``CRYPTOVIZ_CANDLE_CACHE_S``      seconds completed candles stay cached (default 60; 0 off)
``CRYPTOVIZ_CANDLE_SOURCE``        ``auto`` (default), ``aggregate`` or ``raw`` (see
                                   :attr:`ApiSettings.candle_source`)
``CRYPTOVIZ_API_LIVE``             ``0`` disables the Kafka -> WebSocket relay (default on)
``CRYPTOVIZ_CHANNELS_BACKEND``     ``memory`` (default, one process) or ``postgres``
                                   (LISTEN/NOTIFY, several API processes)
``CRYPTOVIZ_WS_BACKLOG``           messages buffered per WebSocket client (default 1000)
``CRYPTOVIZ_SENTIMENT_TOPIC``      Kafka topic relayed to ``/ws/sentiment`` (default
                                   ``sentiment``)
``CRYPTOVIZ_PREDICTION_TOPIC``     Kafka topic relayed to ``/ws/prediction`` (default
                                   ``prediction``)
``OTEL_EXPORTER_OTLP_ENDPOINT``    OTLP/HTTP collector; traces are exported only when set
``OTEL_SERVICE_NAME``              service name on the traces (default ``cryptoviz-api``)
=================================  =====================================================
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Literal, cast

import msgspec

from infra.settings import RAW_TOPICS, SettingsError

RateUnit = Literal["second", "minute", "hour", "day"]
ChannelsBackendName = Literal["memory", "postgres"]
CandleSource = Literal["auto", "aggregate", "raw"]

_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(second|minute|hour|day)\s*$")


class LiveTopics(msgspec.Struct, frozen=True, kw_only=True):
    """Kafka topic relayed to each live channel type (``None``: that channel is not fed)."""

    ticker: str | None = "rawticker"
    trade: str | None = "rawtrade"
    article: str | None = "rawarticle"
    alert: str | None = "rawalert"
    sentiment: str | None = "sentiment"
    prediction: str | None = "prediction"

    def by_topic(self) -> dict[str, str]:
        """``{topic: channel type}`` for the topics that are set."""
        pairs = {
            "ticker": self.ticker,
            "trade": self.trade,
            "article": self.article,
            "alert": self.alert,
            "sentiment": self.sentiment,
            "prediction": self.prediction,
        }
        return {topic: kind for kind, topic in pairs.items() if topic}


class RateLimit(msgspec.Struct, frozen=True, kw_only=True):
    requests: int
    per: RateUnit


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    api_key_digests: frozenset[str] = frozenset()
    """SHA-256 hex digests of the accepted API keys: the keys themselves are not kept,
    so the settings can be logged or repr'd without leaking them."""
    api_key_expiry: dict[str, datetime] = msgspec.field(default_factory=dict)
    """Digest -> the time from which that key is refused (keys absent never expire)."""
    cors_origins: tuple[str, ...] = ()
    rate_limit: RateLimit | None = RateLimit(requests=1200, per="minute")
    max_range_days: int = 90
    default_limit: int = 100
    max_limit: int = 1000
    pool_min: int = 1
    pool_max: int = 10
    pool_timeout_s: float = 2.0
    pool_reconnect_timeout_s: float = 5.0
    statement_timeout_ms: int = 5000
    health_timeout_s: float = 2.0
    candle_cache_s: float = 60.0
    """Seconds completed candles stay cached per process (0: no cache)."""
    candle_source: CandleSource = "auto"
    """Whole-hour candles from ticker_ohlc_hourly (``aggregate``), from ticker_data
    (``raw``), or ``auto``: the aggregate where it is a TimescaleDB continuous aggregate."""
    live_enabled: bool = True
    live_topics: LiveTopics = LiveTopics()
    channels_backend: ChannelsBackendName = "memory"
    ws_backlog: int = 1000
    otlp_endpoint: str | None = None
    service_name: str = "cryptoviz-api"

    def accepts_key(self, key: str) -> bool:
        """Whether ``key`` is one of the configured API keys."""
        return hash_api_key(key) in self.api_key_digests


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


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be >= {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, allow_zero: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not (value >= 0 if allow_zero else value > 0) or value == float("inf"):
        raise SettingsError(f"{name}={raw!r} must be {'>=' if allow_zero else '>'} 0")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def parse_rate_limit(raw: str) -> RateLimit | None:
    """``"100/minute"`` -> :class:`RateLimit`; ``"off"`` -> ``None``."""
    if raw.strip().lower() in {"off", "0", "none", "disabled"}:
        return None
    match = _RATE.match(raw.lower())
    if match is None or int(match[1]) < 1:
        raise SettingsError(
            f"CRYPTOVIZ_RATE_LIMIT={raw!r} must look like 100/minute "
            "(units: second, minute, hour, day) or be 'off'"
        )
    unit: RateUnit = match[2]  # type: ignore[assignment]  # the regex only admits the four units
    return RateLimit(requests=int(match[1]), per=unit)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} must be 1/0, true/false, yes/no or on/off")


def load_api_settings(
    env: Mapping[str, str] | None = None, raw_topics: tuple[str, ...] = RAW_TOPICS
) -> ApiSettings:
    """Build :class:`ApiSettings` from environment variables (``os.environ`` by default).

    ``raw_topics`` are the ticker, trade, article and alert topics, in that order
    (pass ``Settings.kafka.raw_topics`` so a renamed topic is relayed too).
    """
    env = os.environ if env is None else env
    backend = env.get("CRYPTOVIZ_CHANNELS_BACKEND", "").strip().lower() or "memory"
    if backend not in ("memory", "postgres"):
        raise SettingsError(f"CRYPTOVIZ_CHANNELS_BACKEND={backend!r} must be memory or postgres")
    candles = env.get("CRYPTOVIZ_CANDLE_SOURCE", "").strip().lower() or "auto"
    if candles not in ("auto", "aggregate", "raw"):
        raise SettingsError(f"CRYPTOVIZ_CANDLE_SOURCE={candles!r} must be auto, aggregate or raw")
    ticker, trade, article, alert = (tuple(raw_topics) + RAW_TOPICS[len(raw_topics) :])[:4]
    pool_min = _int(env, "CRYPTOVIZ_DB_POOL_MIN", 1, minimum=0)
    pool_max = _int(env, "CRYPTOVIZ_DB_POOL_MAX", 10)
    if pool_max < max(pool_min, 1):
        raise SettingsError(
            f"CRYPTOVIZ_DB_POOL_MAX={pool_max} must be >= CRYPTOVIZ_DB_POOL_MIN={pool_min}"
        )
    digests, expiry = parse_api_keys(_list(env, "CRYPTOVIZ_API_KEYS"))
    return ApiSettings(
        host=env.get("CRYPTOVIZ_API_HOST", "").strip() or "127.0.0.1",
        port=_int(env, "CRYPTOVIZ_API_PORT", 8000),
        workers=_int(env, "CRYPTOVIZ_API_WORKERS", 1),
        api_key_digests=digests,
        api_key_expiry=expiry,
        cors_origins=_list(env, "CRYPTOVIZ_CORS_ORIGINS"),
        rate_limit=parse_rate_limit(env.get("CRYPTOVIZ_RATE_LIMIT", "") or "1200/minute"),
        max_range_days=_int(env, "CRYPTOVIZ_API_MAX_RANGE_DAYS", 90),
        pool_min=pool_min,
        pool_max=pool_max,
        pool_timeout_s=_float(env, "CRYPTOVIZ_DB_POOL_TIMEOUT", 2.0),
        statement_timeout_ms=_int(env, "CRYPTOVIZ_DB_STATEMENT_TIMEOUT_MS", 5000),
        candle_cache_s=_float(env, "CRYPTOVIZ_CANDLE_CACHE_S", 60.0, allow_zero=True),
        candle_source=cast(CandleSource, candles),  # validated just above
        live_enabled=_flag(env, "CRYPTOVIZ_API_LIVE", True),
        live_topics=LiveTopics(
            ticker=ticker,
            trade=trade,
            article=article,
            alert=alert,
            sentiment=env.get("CRYPTOVIZ_SENTIMENT_TOPIC", "").strip() or "sentiment",
            prediction=env.get("CRYPTOVIZ_PREDICTION_TOPIC", "").strip() or "prediction",
        ),
        channels_backend="postgres" if backend == "postgres" else "memory",
        ws_backlog=_int(env, "CRYPTOVIZ_WS_BACKLOG", 1000),
        otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or None,
        service_name=env.get("OTEL_SERVICE_NAME", "").strip() or "cryptoviz-api",
    )
