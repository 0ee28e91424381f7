"""The supervisor configuration `make up` runs the workers with."""

from __future__ import annotations

import configparser
from pathlib import Path

from flows.registry import INGEST_WORKERS
from infra.programs import PROFILE_ENVIRONMENT, PROGRAMS
from infra.settings import Settings, load_settings
from infra.stack import supervisor_config, supervisor_programs, temporary_stack


def test_every_worker_is_supervised_with_restart_and_server_addresses(tmp_path: Path) -> None:
    settings = load_settings({"CRYPTOVIZ_STATE_DIR": str(tmp_path)})
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "DATABASE_URL": "postgresql://x@h/db"}
    conf = configparser.RawConfigParser()
    wanted = supervisor_programs([PROGRAMS[n] for n in (*INGEST_WORKERS, "spark-analytics", "api")])
    conf.read(supervisor_config(settings, env, wanted))
    programs = [s.removeprefix("program:") for s in conf.sections() if s.startswith("program:")]
    assert programs == [*INGEST_WORKERS, "spark-analytics", "api"]
    assert "-m spark_batch.run" in conf["program:spark-analytics"]["command"]
    assert conf["program:api"]["command"].endswith("-m api")
    for name in programs:
        section = conf[f"program:{name}"]
        assert section["autorestart"] == "true"
        if name.startswith("ingest-"):
            assert f"-m flows.run {name} --metrics-port" in section["command"]
        assert 'KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1"' in section["environment"]
        assert 'DATABASE_URL="postgresql://x@h/db"' in section["environment"]
        assert section["stdout_logfile"].startswith(str(tmp_path))


def test_a_temporary_stack_keeps_every_setting_but_its_state_dir(tmp_path: Path) -> None:
    # The copies it replaced rebuilt Settings field by field and lost otlp_endpoint.
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "DATABASE_URL": "postgresql://x@h/db",
        "CRYPTOVIZ_TOPIC_RAWALERT": "alerts-x",
        "CRYPTOVIZ_BATCH_SIZE": "7",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
    }
    original = load_settings(env)
    with temporary_stack(tmp_path / "state", settings=original, prepare=False) as stack:
        running = stack.settings
        assert stack.kafka is None  # the settings name servers: nothing was started
        assert stack.postgres is None
    assert running.state_dir == tmp_path / "state"
    for name in Settings.__struct_fields__:
        if name != "state_dir":
            assert getattr(running, name) == getattr(original, name), name
    assert running.otlp_endpoint == "http://collector:4318"


def test_each_profile_sets_only_declared_variables() -> None:
    from flows.producers.settings import ProducerSettings, load_producer_settings
    from infra.settings import variables

    declared = {v.name for v in variables(ProducerSettings)}
    for env in PROFILE_ENVIRONMENT.values():
        assert set(env) <= declared
    # make up REPLAY=1: the synthetic market leaves the replayed candles' coins alone.
    replay = load_producer_settings(PROFILE_ENVIRONMENT["replay"])
    assert replay.synthetic.beside_replay
    assert not load_producer_settings(PROFILE_ENVIRONMENT["live"]).synthetic.beside_replay


def test_the_replay_worker_announces_what_it_plays() -> None:
    assert PROGRAMS["producer-replay"].announce == ("producer-replay", "--announce")
    assert PROGRAMS["api"].announce == ("--urls",)


def test_a_named_replay_file_that_does_not_exist_stops_make_up_before_it_starts(
    tmp_path: Path,
) -> None:
    import os

    import pytest

    from handlers import ConfigError
    from infra.stack import _announce

    missing = tmp_path / "nope.csv"
    env = {**os.environ, "CRYPTOVIZ_REPLAY_FILES": str(missing)}
    with pytest.raises(ConfigError, match=rf"producer-replay: .*not a file: {missing}"):
        _announce(PROGRAMS["producer-replay"], env)
    candles = tmp_path / "binance_SOLUSDT_1m_2024-01.csv"
    candles.write_text("datetime,open,high,low,close\n")
    env = {**env, "CRYPTOVIZ_REPLAY_FILES": str(candles), **PROFILE_ENVIRONMENT["replay"]}
    assert _announce(PROGRAMS["producer-replay"], env) == (
        f"replay: real market SOL/USD ({candles.name}), 4 ticks a minute, re-timed to now "
        "at 1x; the synthetic market plays the other coins"
    )
