"""ApiSettings are read once from the environment, validated, and hold no plain keys."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.settings import (
    ApiSettings,
    LiveTopics,
    RateLimit,
    hash_api_key,
    load_api_settings,
    parse_api_keys,
    parse_rate_limit,
)
from infra.settings import RAW_TOPICS, SettingsError, Topics, load_settings


def test_defaults() -> None:
    settings = load_api_settings({}, topics=Topics())
    assert settings == ApiSettings()
    assert settings.rate_limit == RateLimit(requests=1200, per="minute")
    assert settings.api_key_digests == frozenset()
    assert settings.cors_origins == ()
    assert load_settings({}).otlp_endpoint is None  # shared by every program
    assert settings.live_topics == LiveTopics()


def test_every_variable() -> None:
    env = {
        "CRYPTOVIZ_API_HOST": "0.0.0.0",
        "CRYPTOVIZ_API_PORT": "9000",
        "CRYPTOVIZ_API_WORKERS": "4",
        "CRYPTOVIZ_API_KEYS": " first-key , second-key,",
        "CRYPTOVIZ_CORS_ORIGINS": "https://a.example, https://b.example",
        "CRYPTOVIZ_RATE_LIMIT": "50/second",
        "CRYPTOVIZ_API_MAX_RANGE_DAYS": "30",
        "CRYPTOVIZ_DB_POOL_MIN": "2",
        "CRYPTOVIZ_DB_POOL_MAX": "20",
        "CRYPTOVIZ_DB_POOL_TIMEOUT": "0.5",
        "CRYPTOVIZ_DB_STATEMENT_TIMEOUT_MS": "1000",
        "CRYPTOVIZ_CANDLE_SOURCE": "raw",
        "CRYPTOVIZ_API_LIVE": "off",
        "CRYPTOVIZ_CHANNELS_BACKEND": "postgres",
        "CRYPTOVIZ_WS_BACKLOG": "64",
        "CRYPTOVIZ_SENTIMENT_TOPIC": "analyzed-sentiment",
        "CRYPTOVIZ_PREDICTION_TOPIC": "predicted-price",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_SERVICE_NAME": "api-1",
    }
    renamed = dict(zip(RAW_TOPICS, ("t1", "t2", "t3", "t4"), strict=True))
    shared = load_settings(
        {**env, **{f"CRYPTOVIZ_TOPIC_{raw.upper()}": t for raw, t in renamed.items()}}
    )
    s = load_api_settings(env, topics=shared.kafka.topics)
    assert (s.host, s.port, s.workers) == ("0.0.0.0", 9000, 4)
    assert s.api_key_digests == {hash_api_key("first-key"), hash_api_key("second-key")}
    assert s.accepts_key("second-key")
    assert not s.accepts_key("second-key ")
    assert "first-key" not in repr(s)
    assert s.cors_origins == ("https://a.example", "https://b.example")
    assert s.rate_limit == RateLimit(requests=50, per="second")
    assert (s.max_range_days, s.pool_min, s.pool_max) == (30, 2, 20)
    assert (s.pool_timeout_s, s.statement_timeout_ms) == (0.5, 1000)
    assert s.candle_source == "raw"
    assert s.live_enabled is False
    assert s.channels_backend == "postgres"
    assert s.ws_backlog == 64
    assert s.live_topics == LiveTopics(
        ticker="t1", trade="t2", article="t3", alert="t4",
        sentiment="analyzed-sentiment", prediction="predicted-price",
    )  # fmt: skip
    assert s.live_topics.by_topic()["predicted-price"] == "prediction"
    assert (shared.otlp_endpoint, s.service_name) == ("http://collector:4318", "api-1")


@pytest.mark.parametrize(
    ("env", "mentions"),
    [
        ({"CRYPTOVIZ_API_PORT": "http"}, "CRYPTOVIZ_API_PORT"),
        ({"CRYPTOVIZ_API_WORKERS": "0"}, ">= 1"),
        ({"CRYPTOVIZ_RATE_LIMIT": "many"}, "100/minute"),
        ({"CRYPTOVIZ_RATE_LIMIT": "10/fortnight"}, "units"),
        ({"CRYPTOVIZ_DB_POOL_TIMEOUT": "-1"}, "> 0"),
        ({"CRYPTOVIZ_DB_POOL_MIN": "5", "CRYPTOVIZ_DB_POOL_MAX": "2"}, "POOL_MAX"),
        ({"CRYPTOVIZ_API_LIVE": "maybe"}, "CRYPTOVIZ_API_LIVE"),
        ({"CRYPTOVIZ_CHANNELS_BACKEND": "redis"}, "memory or postgres"),
        ({"CRYPTOVIZ_CANDLE_SOURCE": "magic"}, "auto, aggregate or raw"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], mentions: str) -> None:
    with pytest.raises(SettingsError) as exc:
        load_api_settings(env, topics=Topics())
    assert mentions in exc.value.detail


def test_rate_limit_can_be_turned_off() -> None:
    assert parse_rate_limit("off") is None
    assert load_api_settings({"CRYPTOVIZ_RATE_LIMIT": "off"}, topics=Topics()).rate_limit is None
    assert parse_rate_limit(" 5 / hour ") == RateLimit(requests=5, per="hour")


def test_api_keys_may_carry_an_expiry_time() -> None:
    digests, expiry = parse_api_keys(
        ("plain", "rotating@2027-01-01T00:00:00Z", "with@sign", "x@2027-01-01T00:00+02:00")
    )
    assert digests == {hash_api_key(k) for k in ("plain", "rotating", "with@sign", "x")}
    assert expiry == {
        hash_api_key("rotating"): datetime(2027, 1, 1, tzinfo=UTC),
        hash_api_key("x"): datetime(2026, 12, 31, 22, 0, tzinfo=UTC),
    }


@pytest.mark.parametrize("raw", ["k@2027-01-01", "k@2027-01-01T00:00", "k@2027-13-01T00:00Z"])
def test_an_expiry_must_be_a_valid_aware_time(raw: str) -> None:
    with pytest.raises(SettingsError, match="CRYPTOVIZ_API_KEYS"):
        parse_api_keys((raw,))
