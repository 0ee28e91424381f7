"""Settings are read once from a mapping; bad values say which variable is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.settings import SettingsError, load_coin_table, load_settings


def test_defaults_start_everything_embedded() -> None:
    s = load_settings({})
    assert s.kafka.bootstrap_servers is None
    assert s.database.url is None
    assert s.kafka.partitions == 3
    assert s.kafka.topics.all == (
        "rawticker",
        "rawtrade",
        "rawarticle",
        "rawalert",
        "deadletter",
        "analyzed-sentiment",
        "predicted-price",
    )
    assert s.state_dir.name == ".state"
    assert s.ingest.batch_size == 5000


def test_environment_points_at_existing_servers(tmp_path: Path) -> None:
    s = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
            "DATABASE_URL": "postgresql://u@db/x",
            "CRYPTOVIZ_STATE_DIR": str(tmp_path),
            "CRYPTOVIZ_KAFKA_PARTITIONS": "6",
            "CRYPTOVIZ_DEAD_LETTER_TOPIC": "dlq",
            "CRYPTOVIZ_BATCH_SIZE": "100",
        }
    )
    assert s.kafka.bootstrap_servers == "kafka:9092"
    assert s.database.url == "postgresql://u@db/x"
    assert s.state_dir == tmp_path.resolve()
    assert s.kafka.partitions == 6
    assert s.kafka.topics.deadletter == "dlq"
    assert s.ingest.batch_size == 100


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "CRYPTOVIZ_KAFKA_PARTITIONS",
            "three",
            "CRYPTOVIZ_KAFKA_PARTITIONS='three' is not an integer",
        ),
        ("CRYPTOVIZ_KAFKA_PARTITIONS", "0", "CRYPTOVIZ_KAFKA_PARTITIONS=0 must be >= 1"),
        ("CRYPTOVIZ_BATCH_SIZE", "-5", "CRYPTOVIZ_BATCH_SIZE=-5 must be >= 1"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({name: value})
    assert info.value.detail == message


def test_with_servers_fills_in_started_addresses() -> None:
    s = load_settings({}).with_servers(kafka="127.0.0.1:1", database="postgresql://x")
    assert s.kafka.bootstrap_servers == "127.0.0.1:1"
    assert s.database.url == "postgresql://x"


def test_coin_table_comes_from_the_configured_file() -> None:
    coins = load_settings({}).coin_table()
    assert coins.coin("xbt") == "BTC"
    assert coins.pair("XBT/USD") == "BTC/USD"


def test_missing_or_broken_coin_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_coin_table(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[coins\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_coin_table(broken)
