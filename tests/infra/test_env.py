"""One reader, one vocabulary, one declaration per variable, and the README's tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from api.settings import ApiSettings, load_api_settings
from flows.producers.settings import ProducerSettings, load_producer_settings
from infra.monitor import MonitorSettings
from infra.settings import (
    BOOLEAN_WORDS,
    Settings,
    SettingsError,
    Topics,
    environment_of,
    load_settings,
    markdown_table,
    read_env,
    variables,
)
from spark_batch.settings import SparkSettings, load_spark_settings

REPO = Path(__file__).resolve().parents[2]
SECTIONS: tuple[tuple[str, type[msgspec.Struct]], ...] = (
    ("Shared by every program (`infra/settings.py`)", Settings),
    ("API (`api/settings.py`)", ApiSettings),
    ("Spark analytics job (`spark_batch/settings.py`)", SparkSettings),
    ("Producers (`flows/producers/settings.py`)", ProducerSettings),
    ("Monitor (`infra/monitor.py`)", MonitorSettings),
)
BEGIN = "<!-- variables: generated from the settings declarations (tests/infra/test_env.py) -->"
END = "<!-- end of the generated variables -->"


def generated_tables() -> str:
    parts = [BEGIN]
    for title, cls in SECTIONS:
        parts += ["", f"#### {title}", "", markdown_table(list(variables(cls)))]
    return "\n".join([*parts, "", END])


def test_the_readme_tables_are_the_declarations() -> None:
    readme = (REPO / "README.md").read_text()
    assert BEGIN in readme, "README.md lost its generated variables block"
    assert END in readme, "README.md lost the end of its generated variables block"
    documented = BEGIN + readme.split(BEGIN, 1)[1].split(END, 1)[0] + END
    expected = generated_tables()
    assert documented == expected, (
        "README.md's variables differ from the declarations; replace the block with:\n\n" + expected
    )


def test_each_variable_is_declared_once() -> None:
    names = [v.name for _title, cls in SECTIONS for v in variables(cls) if v.doc]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    assert all(v.doc for _title, cls in SECTIONS for v in variables(cls) if v.name in names)


TRUE = ["1", "true", "TRUE", "yes", "Yes", "on", "ON", " on "]
FALSE = ["0", "false", "False", "no", "NO", "off", "Off"]


@pytest.mark.parametrize("word", TRUE)
def test_every_boolean_speaks_the_same_true(word: str) -> None:
    # Once three dialects: CRYPTOVIZ_SPARK_UI=on was off, CRYPTOVIZ_REPLAY_EXIT=true false.
    assert load_spark_settings({"CRYPTOVIZ_SPARK_UI": word}).ui is True
    assert load_producer_settings({"CRYPTOVIZ_REPLAY_EXIT": word}).replay.exit_at_end is True


@pytest.mark.parametrize("word", FALSE)
def test_every_boolean_speaks_the_same_false(word: str) -> None:
    assert load_api_settings({"CRYPTOVIZ_API_LIVE": word}, topics=Topics()).live_enabled is False
    assert load_spark_settings({"CRYPTOVIZ_SPARK_UI": word}).ui is False


@pytest.mark.parametrize(
    "name", ["CRYPTOVIZ_SPARK_UI", "CRYPTOVIZ_REPLAY_EXIT", "CRYPTOVIZ_API_LIVE"]
)
def test_anything_else_is_refused_naming_the_variable_and_the_words(name: str) -> None:
    loaders: dict[str, Callable[[dict[str, str]], object]] = {
        "CRYPTOVIZ_SPARK_UI": load_spark_settings,
        "CRYPTOVIZ_REPLAY_EXIT": load_producer_settings,
        "CRYPTOVIZ_API_LIVE": lambda env: load_api_settings(env, topics=Topics()),
    }
    with pytest.raises(SettingsError) as info:
        loaders[name]({name: "enabled"})
    assert info.value.detail == f"{name}='enabled' must be one of {BOOLEAN_WORDS}"


LEVELS = "ALL, DEBUG, INFO, WARN, ERROR, FATAL or OFF"


@pytest.mark.parametrize(
    ("name", "value", "detail"),
    [
        ("CRYPTOVIZ_SPARK_TRIGGER_S", "fast", "'fast' is not a number"),
        ("CRYPTOVIZ_SPARK_TRIGGER_S", "nan", "'nan' must be a finite number"),
        ("CRYPTOVIZ_SPARK_TRIGGER_S", "0", "0 must be > 0"),
        ("CRYPTOVIZ_SPARK_LOG_LEVEL", "loud", f"'loud' must be {LEVELS}"),
        ("CRYPTOVIZ_SPARK_OUTPUT_MODE", "complete", "'complete' must be update or append"),
        ("CRYPTOVIZ_PREDICTION_INTERVAL_LEVEL", "1", "1 must be < 1"),
        ("CRYPTOVIZ_PREDICTION_HORIZONS_S", "60;300", "'60;300' is not an integer"),
    ],
)
def test_refusals_name_the_variable_the_value_and_what_it_accepts(
    name: str, value: str, detail: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_spark_settings({name: value})
    assert info.value.detail == f"{name}={detail}"


def test_choices_ignore_case_and_keep_the_declared_spelling() -> None:
    cfg = load_spark_settings(
        {"CRYPTOVIZ_SPARK_LOG_LEVEL": "error", "CRYPTOVIZ_SPARK_STATE_STORE": "RocksDB"}
    )
    assert (cfg.log_level, cfg.state_store) == ("ERROR", "rocksdb")


def test_blank_means_unset() -> None:
    assert load_settings({"CRYPTOVIZ_KAFKA_PARTITIONS": "  ", "DATABASE_URL": ""}) == load_settings(
        {}
    )


def test_lists_read_each_item_as_their_type_and_travel_back() -> None:
    cfg = load_spark_settings({"CRYPTOVIZ_PREDICTION_HORIZONS_S": " 120, ,3600 "})
    assert cfg.prediction.horizons_s == (120, 3600)
    assert read_env(SparkSettings, environment_of(cfg)) == cfg


def test_a_renamed_map_travels_to_a_child_process_through_the_environment() -> None:
    topics = Topics().with_suffix("-x")
    assert read_env(Topics, environment_of(topics)) == topics
    assert load_settings(environment_of(topics)).kafka.topics == topics


def test_copies_keep_every_field(tmp_path: Path) -> None:
    # Six copies once rebuilt Settings field by field and lost otlp_endpoint (and more).
    coins = tmp_path / "coins.toml"
    coins.write_bytes((REPO / "infra" / "coins.toml").read_bytes())
    env = {
        "CRYPTOVIZ_STATE_DIR": str(tmp_path / "a"),
        "CRYPTOVIZ_CACHE_DIR": str(tmp_path / "cache"),
        "CRYPTOVIZ_COINS_FILE": str(coins),
        "KAFKA_BOOTSTRAP_SERVERS": "k:1",
        "DATABASE_URL": "postgresql://d",
        "CRYPTOVIZ_KAFKA_PARTITIONS": "7",
        "CRYPTOVIZ_TOPIC_RAWTRADE": "trades-x",
        "CRYPTOVIZ_BATCH_SIZE": "10",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "CRYPTOVIZ_CONFIG_POLL_S": "2.5",
    }
    original = load_settings(env)
    assert all(
        getattr(original, f) != getattr(load_settings({}), f) for f in Settings.__struct_fields__
    )
    copies = {
        "with_servers": (original.with_servers(kafka="k:2"), {"kafka"}),
        "with_topics": (original.with_topics(Topics()), {"kafka"}),
        "state_dir": (msgspec.structs.replace(original, state_dir=tmp_path / "b"), {"state_dir"}),
    }
    for how, (copy, changed) in copies.items():
        for name in Settings.__struct_fields__:
            if name not in changed:
                assert getattr(copy, name) == getattr(original, name), (how, name)
    servers = copies["with_servers"][0].kafka
    assert (servers.partitions, servers.topics) == (7, original.kafka.topics)
