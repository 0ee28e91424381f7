"""The clustered deployment (infra/docker-compose.cluster.yml over docker-compose.yml).

The two files are loaded together by compose-go, as ``docker compose -f
infra/docker-compose.yml -f infra/docker-compose.cluster.yml config`` would, and
the merged project goes through the checks of ``test_deployment.py`` that hold for
any shape of the deployment (imported below, so they run here on this project),
then through what the clustered shape promises: three KRaft nodes in one quorum
with replicated topics, two processes per ingestion flow sharing their recovery
state, a Spark master and worker sharing the checkpoints with the driver, and
API replicas behind a proxy, every process scraped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra._deploycheck import DeployCheck
from tests.infra.test_deployment import (  # the shape-independent checks, run on this project
    COMPOSE,
    ENV_EXAMPLE,
    INFRA,
    SECRETS,
    _command,
    _env,
    _flow_name,
    deploycheck,
    secrets_env,
    test_every_service_has_a_restart_policy_and_a_health_check,
    test_images_are_pinned_official_ones,
    test_kafka_runs_in_kraft_mode,
    test_mounted_files_exist_and_config_paths_match,
    test_one_shot_jobs_complete_before_the_workers_start,
    test_python_services_run_modules_of_the_image,
)

CLUSTER = INFRA / "docker-compose.cluster.yml"
FILES = (COMPOSE, CLUSTER)
PROMETHEUS = INFRA / "prometheus" / "prometheus.cluster.yml"
KAFKA_NODES = ("kafka", "kafka-2", "kafka-3")
BOOTSTRAP = "kafka:9092,kafka-2:9092,kafka-3:9092"

__all__ = [  # imported fixtures and tests: collected here too
    "deploycheck",
    "secrets_env",
    "test_every_service_has_a_restart_policy_and_a_health_check",
    "test_images_are_pinned_official_ones",
    "test_kafka_runs_in_kraft_mode",
    "test_mounted_files_exist_and_config_paths_match",
    "test_one_shot_jobs_complete_before_the_workers_start",
    "test_python_services_run_modules_of_the_image",
]


@pytest.fixture(scope="module")
def project(deploycheck: DeployCheck, secrets_env: Path) -> dict[str, Any]:
    outcome = deploycheck.compose(FILES, ENV_EXAMPLE, secrets_env)
    assert outcome.ok, f"compose-go refused the clustered deployment:\n{outcome.stderr}"
    loaded: dict[str, Any] = outcome.json()
    return loaded


@pytest.fixture(scope="module")
def services(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = project["services"]
    return found


def test_the_cluster_file_refuses_to_start_without_the_secrets(deploycheck: DeployCheck) -> None:
    outcome = deploycheck.compose(FILES, ENV_EXAMPLE)
    assert not outcome.ok
    for name in SECRETS:
        assert f"required variable {name} is missing a value" in outcome.stderr
    assert not re.search(r"PASSWORD|SECRET|TOKEN", CLUSTER.read_text()), "no secret in the override"


def test_three_kraft_nodes_form_one_quorum(services: dict[str, dict[str, Any]]) -> None:
    envs = {name: _env(services[name]) for name in KAFKA_NODES}
    assert sorted(e["KAFKA_NODE_ID"] for e in envs.values()) == ["1", "2", "3"]
    voters = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs.values()}
    assert voters == {"1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert len({e["CLUSTER_ID"] for e in envs.values()}) == 1
    for name, env in envs.items():
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, name
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092", name
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2", name
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false", name
    logs = [v["source"] for n in KAFKA_NODES for v in services[n]["volumes"]]
    assert len(set(logs)) == 3, f"each node needs its own log volume: {logs}"


def test_every_client_bootstraps_from_all_nodes_and_topics_are_replicated(
    services: dict[str, dict[str, Any]],
) -> None:
    from infra.settings import load_settings
    from infra.topics import min_insync_for

    for name, service in services.items():
        env = _env(service)
        if "KAFKA_BOOTSTRAP_SERVERS" in env:
            assert env["KAFKA_BOOTSTRAP_SERVERS"] == BOOTSTRAP, name
    topics = load_settings(_env(services["topics"])).kafka
    assert (topics.replication_factor, min_insync_for(topics.replication_factor)) == (3, 2)
    waits = services["topics"]["depends_on"]
    assert all(waits[n]["condition"] == "service_healthy" for n in KAFKA_NODES)


def test_each_ingestion_flow_is_a_cluster_of_two_processes(
    services: dict[str, dict[str, Any]],
) -> None:
    from flows.registry import INGEST_WORKERS

    processes: dict[str, list[str]] = {}
    for name, service in services.items():
        if (flow := _flow_name(service)) in INGEST_WORKERS:
            processes.setdefault(flow, []).append(name)
    assert sorted(processes) == sorted(INGEST_WORKERS)
    volumes: dict[str, str] = {}
    for flow, names in processes.items():
        assert sorted(names) == [flow, f"{flow}-1"], flow
        addresses = f"{flow}:2101;{flow}-1:2101"
        for index, name in enumerate(sorted(names)):
            cmd = _command(services[name])
            assert cmd[cmd.index("-i") + 1] == str(index), name
            assert cmd[cmd.index("-a") + 1] == addresses, name
            assert cmd[cmd.index("--partitions") + 1] == "2", name
            assert _env(services[name])["OTEL_SERVICE_NAME"] == flow, name
            state = _env(services[name])["CRYPTOVIZ_STATE_DIR"]
            (volume,) = [v for v in services[name]["volumes"] if v["target"] == state]
            assert volumes.setdefault(flow, volume["source"]) == volume["source"], (
                f"{name}: the processes of {flow} must share its recovery volume"
            )
    assert len(set(volumes.values())) == len(volumes), "two flows share a recovery volume"


def test_spark_runs_on_a_standalone_master_and_worker(
    services: dict[str, dict[str, Any]],
) -> None:
    from spark_batch.settings import load_spark_settings

    master, worker = _command(services["spark-master"]), _command(services["spark-worker"])
    assert master[:4] == ["python", "-m", "infra.spark_cluster", "master"]
    assert worker[:5] == ["python", "-m", "infra.spark_cluster", "worker",
                          "spark://spark-master:7077"]  # fmt: skip
    assert master[master.index("--port") + 1] == "7077"
    assert "recoveryMode=FILESYSTEM" in _env(services["spark-master"])["SPARK_MASTER_OPTS"]
    driver = services["spark-analytics"]
    assert load_spark_settings(_env(driver)).master == "spark://spark-master:7077"
    assert driver["hostname"] == "spark-analytics", "executors reach the driver by this name"
    assert driver["depends_on"]["spark-worker"]["condition"] == "service_healthy"
    # The executors (in the worker) write the state the driver's checkpoints point at.
    state = _env(driver)["CRYPTOVIZ_STATE_DIR"]
    mounts = [{(v["source"], v["target"]) for v in services[n]["volumes"]}
              for n in ("spark-analytics", "spark-worker")]  # fmt: skip
    assert ("spark-state", state) in mounts[0] & mounts[1]


def test_api_replicas_behind_a_proxy(
    project: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    from api.settings import load_api_settings
    from infra.settings import load_settings

    api = services["api"]
    assert not api.get("ports"), "replicas publish nothing: the proxy does"
    assert api["deploy"]["replicas"] > 1
    settings = load_api_settings(_env(api), topics=load_settings(_env(api)).kafka.topics)
    assert settings.workers > 1
    assert settings.channels_backend == "memory", "each worker reads Kafka itself"
    assert _env(api)["FORWARDED_ALLOW_IPS"], "the rate limit needs the client's address"
    published = {n: s["ports"] for n, s in services.items() if s.get("ports")}
    assert set(published) == {"api-proxy", "grafana", "prometheus", "jaeger"}
    for name, ports in published.items():
        assert all(p.get("host_ip") == "127.0.0.1" for p in ports), name
    # nginx as interpolated: every replica by DNS, re-resolved; WebSocket upgrades pass.
    conf = project["configs"]["api-proxy-conf"]["content"]
    assert "resolver 127.0.0.11 valid=10s" in conf
    assert "set $api http://api:8000;" in conf
    assert "proxy_pass $api;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    (mount,) = services["api-proxy"]["configs"]
    assert mount["target"] == "/etc/nginx/conf.d/default.conf"


def test_prometheus_scrapes_every_process(services: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    base = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {job["job_name"] for job in base["scrape_configs"]}, "same jobs"
    assert config["rule_files"] == base["rule_files"]
    static = {t for job in jobs.values() for g in job.get("static_configs", [])
              for t in g["targets"]}  # fmt: skip
    for name, service in services.items():
        if _flow_name(service) and not service.get("profiles"):
            assert f"{name}:3030" in static, f"{name} is not scraped"
    (api,) = jobs["api"]["dns_sd_configs"]
    assert (api["names"], api["port"]) == (["api"], 8000)
    command = services["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.cluster.yml" in command
