"""The supervisor configuration `make up` runs the workers with."""

from __future__ import annotations

import configparser
from pathlib import Path

from flows.registry import INGEST_WORKERS
from infra.programs import PROGRAMS
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
