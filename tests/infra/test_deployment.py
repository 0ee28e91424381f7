"""The production deployment in infra/, validated without a Docker engine.

* infra/docker-compose.yml is loaded by compose-go, the library ``docker compose``
  loads files with (Compose Specification schema, interpolation, references),
  then checked for what the deployment promises: pinned official images, every
  registered flow as its own service, secrets only from the env file, health
  checks, restart policies, migrations before the workers, an environment the
  code's own settings loaders accept.
* infra/prometheus/alerts.yml is parsed by Prometheus's rulefmt (what
  ``promtool check rules`` runs); every PromQL expression of the rules and the
  dashboards by Prometheus's parser.
* THE KEY CHECK: every metric (and label) named by the alert rules and the
  dashboards is emitted by the code, as read at test time from the sources, the
  registries and a running Bytewax flow (:mod:`tests.infra._metric_catalog`).
* The Grafana dashboards are well-formed, reference provisioned datasources only,
  and their SQL runs on a migrated database as Grafana's read-only role.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from infra.programs import PROGRAMS, flow_programs
from tests.infra import _metric_catalog as mc
from tests.infra._deploycheck import DeployCheck, build, go_or_skip

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
COMPOSE = INFRA / "docker-compose.yml"
ENV_EXAMPLE = INFRA / "compose.env.example"
DOCKERFILE = INFRA / "Dockerfile"
PROMETHEUS_DIR = INFRA / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
GRAFANA = INFRA / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
OTEL = INFRA / "otel-collector.yaml"

SECRETS = ("POSTGRES_PASSWORD", "GRAFANA_DB_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
ONE_SHOT = frozenset({"migrate", "topics"})
# Services Docker cannot probe from inside, and why (see the compose file).
NO_HEALTHCHECK = {"otel-collector": "distroless image: no shell or HTTP client inside"}
# Labels every scraped series carries: the target's, set by Prometheus.
TARGET_LABELS = frozenset({"job", "instance", "service"})
# Series Prometheus itself writes for every target.
PROMETHEUS_BUILTINS = frozenset(
    {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
)
# Which code serves the metrics of each scrape job (see _metric_catalog).
JOB_GROUPS = {
    "ingest": "flows",
    "producers": "flows",
    "producers-offline": "flows",
    "api": "api",
    "spark": "spark",
    "monitor": "monitor",
    "node": "node-exporter",
    "kafka": "kafka-exporter",
    "postgres": "postgres-exporter",
}
# The exporters of DOCUMENTATION_TECHNIQUE.md: service, image, scrape port.
EXPORTERS = {
    "node-exporter": ("prom/node-exporter:v1.", 9100),
    "kafka-exporter": ("danielqsj/kafka-exporter:v1.", 9308),
    "postgres-exporter": ("quay.io/prometheuscommunity/postgres-exporter:v0.", 9187),
}
RUNTIME_BYTEWAX = (
    "bytewax_item_out_count_total",
    "bytewax_flat_map_batch_duration_seconds_bucket",
    "bytewax_out_part_write_batch_duration_seconds_bucket",
    "cryptoviz_ingest_messages_total",
)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def deploycheck(tmp_path_factory: pytest.TempPathFactory) -> DeployCheck:
    go = go_or_skip()
    return DeployCheck(build(go, tmp_path_factory.mktemp("deploycheck") / "deploycheck"))


@pytest.fixture(scope="module")
def secrets_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose-env") / "secrets.env"
    path.write_text("".join(f"{name}=test-only-{name.lower()}\n" for name in SECRETS))
    return path


@pytest.fixture(scope="module")
def project(deploycheck: DeployCheck, secrets_env: Path) -> dict[str, Any]:
    """The compose project as ``docker compose config`` would print it (every profile)."""
    outcome = deploycheck.compose(COMPOSE, ENV_EXAMPLE, secrets_env)
    assert outcome.ok, f"compose-go refused infra/docker-compose.yml:\n{outcome.stderr}"
    loaded: dict[str, Any] = outcome.json()
    return loaded


@pytest.fixture(scope="module")
def services(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = project["services"]
    return found


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    loaded: dict[str, Any] = _yaml(PROMETHEUS_DIR / "prometheus.yml")
    return loaded


@pytest.fixture(scope="module")
def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = _yaml(ALERTS)["groups"]
    return groups


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    assert DASHBOARDS, "no dashboard in infra/grafana/dashboards"
    return {p.name: json.loads(p.read_text()) for p in DASHBOARDS}


@pytest.fixture(scope="module")
def datasources() -> dict[str, dict[str, Any]]:
    config = _yaml(GRAFANA / "provisioning" / "datasources" / "datasources.yml")
    return {ds["uid"]: ds for ds in config["datasources"]}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> mc.Catalog:
    """Every series the code emits (see tests/infra/_metric_catalog.py)."""
    catalog = mc.Catalog()
    assert mc.source_metrics(catalog) > 0
    mc.flow_process_metrics(catalog)
    mc.api_metrics(catalog)
    mc.monitor_metrics(catalog)
    mc.exporter_metrics(catalog)
    scrape = mc.scrape_bytewax_probe(tmp_path_factory.mktemp("bytewax-probe"), RUNTIME_BYTEWAX)
    mc.add_scrape(catalog, scrape, "bytewax_", "flows", "running Bytewax flow")
    return catalog


# ------------------------------------------------------------------ helpers


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return list(command) if isinstance(command, list) else shlex.split(command)


def _flow_name(service: dict[str, Any]) -> str | None:
    cmd = _command(service)
    if cmd[:3] == ["python", "-m", "flows.run"] and len(cmd) > 3:
        return cmd[3]
    return None


def _python_module(service: dict[str, Any]) -> str | None:
    cmd = _command(service)
    return cmd[2] if cmd[:2] == ["python", "-m"] and len(cmd) > 2 else None


def _is_python(service: dict[str, Any]) -> bool:
    return "build" in service


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in (service.get("environment") or {}).items()}


@dataclass(frozen=True)
class Expr:
    origin: str
    text: str
    label: str | None = None
    """For ``label_values(selector, label)``: the label the variable lists."""


_RANGE_VARS = re.compile(r"\$\{?(__rate_interval|__interval|__range)(?:_ms|_s)?\}?")
_VAR = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),\s*)?(\w+)\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\((.*)\)\s*$", re.S)


def _vars_used(text: str) -> set[str]:
    return {a or b or c for a, b, c in _VAR.findall(text)}


def _promql_for_parsing(text: str) -> str:
    """Grafana's variables replaced by values PromQL parses (ranges; label values)."""
    text = _RANGE_VARS.sub("5m", text)
    return _VAR.sub("x", text)


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return str(query.get("query", "")) if isinstance(query, dict) else str(query)


def _rule_exprs(groups: list[dict[str, Any]]) -> list[Expr]:
    return [
        Expr(f"alerts.yml {rule['alert']}", rule["expr"])
        for group in groups
        for rule in group["rules"]
    ]


def _dashboard_exprs(
    dashboards: dict[str, dict[str, Any]], datasources: dict[str, dict[str, Any]]
) -> list[Expr]:
    prometheus = {uid for uid, ds in datasources.items() if ds["type"] == "prometheus"}
    exprs = []
    for name, board in dashboards.items():
        for panel in _panels(board):
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("uid") in prometheus:
                    exprs.append(Expr(f"{name} panel {panel['title']!r}", target["expr"]))
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("datasource", {}).get("uid") not in prometheus:
                continue
            query = _variable_query(variable)
            origin = f"{name} variable {variable['name']}"
            if match := _LABEL_VALUES.match(query):
                assert match[1], f"{origin}: label_values without a metric"
                exprs.append(Expr(origin, match[1], label=match[2]))
            elif match := _QUERY_RESULT.match(query):
                exprs.append(Expr(origin, match[1]))
            else:
                pytest.fail(f"{origin}: unsupported Prometheus variable query {query!r}")
    return exprs


def _jobs_matched(matcher: dict[str, str], jobs: set[str]) -> set[str]:
    kind, value = matcher["type"], matcher["value"]
    if kind == "=":
        return {value} & jobs
    if kind == "=~":
        return {j for j in jobs if re.fullmatch(value, j)}
    if kind == "!=":
        return jobs - {value}
    return {j for j in jobs if not re.fullmatch(value, j)}


def _selector_problems(
    selector: dict[str, Any], catalog: mc.Catalog, jobs: set[str], origin: str
) -> list[str]:
    name: str = selector["metric"]
    if not name:
        return [f"{origin}: a selector without a metric name"]
    job_matchers = [m for m in selector["matchers"] if m["name"] == "job"]
    problems = []
    for matcher in job_matchers:
        if not _jobs_matched(matcher, jobs):
            problems.append(f"{origin}: {name}: job {matcher['value']!r} is no scrape job")
    allowed: set[str] | frozenset[str]
    if name in PROMETHEUS_BUILTINS:
        allowed = TARGET_LABELS
    else:
        series = catalog.get(name)
        if series is None:
            similar = catalog.names("_".join(name.split("_")[:2]))
            return [f"{origin}: {name} is not emitted by the code (similar: {similar[:12]})"]
        allowed = series.labels | TARGET_LABELS
        for matcher in job_matchers:
            for job in _jobs_matched(matcher, jobs):
                group = JOB_GROUPS.get(job)
                if group not in series.groups:
                    problems.append(
                        f"{origin}: {name} is emitted by {sorted(series.groups)} code, "
                        f"not by job {job!r} ({group})"
                    )
    problems += [
        f"{origin}: {name} has no label {m['name']!r} (it has {sorted(allowed)})"
        for m in selector["matchers"]
        if m["name"] not in allowed
    ]
    return problems


# ------------------------------------------------------------------ compose


def test_compose_loads_with_the_real_loader_and_every_service(project: dict[str, Any]) -> None:
    expected = {"kafka", "timescaledb", "migrate", "topics", "spark-analytics", "api"}
    expected |= {"otel-collector", "jaeger", "prometheus", "grafana", "monitor", *EXPORTERS}
    assert expected <= set(project["services"])


def test_compose_refuses_to_start_without_the_secrets(deploycheck: DeployCheck) -> None:
    outcome = deploycheck.compose(COMPOSE, ENV_EXAMPLE)
    assert not outcome.ok, "compose loaded with the example env file: a secret has a default"
    for name in SECRETS:
        assert f"required variable {name} is missing a value" in outcome.stderr


def test_example_env_file_carries_no_secret_value() -> None:
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    for name in (*SECRETS, "CRYPTOVIZ_API_KEYS"):
        assert values.get(name, "") == "", f"{name} has a value in compose.env.example"


def test_secrets_come_only_from_required_variables() -> None:
    raw = _yaml(COMPOSE)
    text = COMPOSE.read_text()
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN")
    for name, service in raw["services"].items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment must be a mapping"
        for key, value in env.items():
            if secretish.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", str(value)), (
                    f"{name}.{key}: a secret must be ${{VAR:?...}}, got {value!r}"
                )
    # The database URL embeds the password: only ever from the required variable.
    for url in re.findall(r"postgresql://\S+", text):
        assert "${POSTGRES_PASSWORD:?" in url, url
    for name in SECRETS:
        assert not re.search(rf"\${{{name}:-", text), f"{name} has a default in the compose file"


def test_images_are_pinned_official_ones(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image: str = service["image"]
        if _is_python(service):
            assert service["build"]["dockerfile"] == "infra/Dockerfile", name
            continue
        tag = image.partition(":")[2]
        assert tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"
    assert re.fullmatch(r"apache/kafka:4\.1\.\d+", services["kafka"]["image"])
    assert re.fullmatch(
        r"timescale/timescaledb:2\.\d+\.\d+-pg\d+", services["timescaledb"]["image"]
    )
    assert services["prometheus"]["image"].startswith("prom/prometheus:v3.5.")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert services["otel-collector"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    for name, (image, _) in EXPORTERS.items():
        assert services[name]["image"].startswith(image), name
    # The prototype's Redis exporter goes with a Redis, which this deployment has not.
    assert not any("redis" in s["image"] for s in services.values() if not _is_python(s))


def test_kafka_runs_in_kraft_mode(services: dict[str, dict[str, Any]]) -> None:
    env = _env(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in env)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert any(v["target"] == env["KAFKA_LOG_DIRS"] for v in services["kafka"]["volumes"])


def test_every_service_has_a_restart_policy_and_a_health_check(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name}: a one-shot job must not restart"
            continue
        assert service.get("restart") in {"unless-stopped", "always"}, name
        health = service.get("healthcheck") or {}
        if name in NO_HEALTHCHECK:
            assert health.get("disable") is True, name
            continue
        assert health.get("test"), f"{name}: no health check"
        assert not health.get("disable"), f"{name}: health check disabled"
        assert health.get("interval"), name
        assert health.get("start_period"), name


def test_one_shot_jobs_complete_before_the_workers_start(
    services: dict[str, dict[str, Any]],
) -> None:
    def waits(service: dict[str, Any], dep: str, condition: str) -> bool:
        depends: dict[str, dict[str, str]] = service.get("depends_on") or {}
        return depends.get(dep, {}).get("condition") == condition

    for name, service in services.items():
        env = _env(service)
        if name not in ONE_SHOT and "DATABASE_URL" in env:
            assert waits(service, "migrate", "service_completed_successfully"), name
            assert waits(service, "timescaledb", "service_healthy"), name
        if name not in ONE_SHOT and "KAFKA_BOOTSTRAP_SERVERS" in env:
            assert waits(service, "topics", "service_completed_successfully"), name
            assert waits(service, "kafka", "service_healthy"), name
    assert waits(services["migrate"], "timescaledb", "service_healthy")
    assert waits(services["topics"], "kafka", "service_healthy")
    assert _python_module(services["migrate"]) == "infra.migrate"


def test_every_registered_worker_is_its_own_service(services: dict[str, dict[str, Any]]) -> None:
    workers = {p.name for p in flow_programs()}

    flows = {flow: name for name, s in services.items() if (flow := _flow_name(s))}
    missing = sorted(set(workers) - set(flows))
    assert not missing, (
        f"workers registered in infra/programs.py without a service in "
        f"infra/docker-compose.yml: {missing} (copy an ingest-*/producer-* service, give it "
        "its own state volume, and add its target to infra/prometheus/prometheus.yml)"
    )
    unknown = sorted(set(flows) - set(workers))
    assert not unknown, f"services run unregistered workers: {unknown}"
    volumes = []
    for worker, name in flows.items():
        service = services[name]
        env = _env(service)
        assert name == worker, f"service {name} runs {worker}: name it after the worker"
        assert env["BYTEWAX_DATAFLOW_API_ENABLED"] == "true", name
        assert env["BYTEWAX_DATAFLOW_API_PORT"] == "3030", name
        assert env["OTEL_SERVICE_NAME"] == worker, name
        state = [v for v in service.get("volumes", []) if v["target"] == env["CRYPTOVIZ_STATE_DIR"]]
        assert len(state) == 1, f"{name}: no state volume"
        assert state[0]["type"] == "volume", f"{name}: the state must be a named volume"
        volumes.append(state[0]["source"])
        assert "3030" in service["healthcheck"]["test"][-1], name
    assert len(volumes) == len(set(volumes)), "two flows share a recovery volume"


def test_every_registered_program_is_the_service_of_its_name(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, program in PROGRAMS.items():
        assert name in services, f"{name} (infra/programs.py) is no service of the compose file"
        command = _command(services[name])
        assert command[: 3 + len(program.args)] == ["python", "-m", program.module, *program.args]
        if "--metrics-port" in command:
            port = command[command.index("--metrics-port") + 1]
            assert int(port) == program.metrics_port, f"{name} serves metrics on another port"


def test_python_services_run_modules_of_the_image(services: dict[str, dict[str, Any]]) -> None:
    copied = set(re.findall(r"^COPY (\w+) \./\1$", DOCKERFILE.read_text(), re.M))
    for name, service in services.items():
        if not _is_python(service):
            continue
        module = _python_module(service)
        if module is None:
            assert _command(service)[:2] == ["python", "-c"], name
            source = _command(service)[2]
            compile(source, f"{name} command", "exec")
            modules = re.findall(r"^from ([\w.]+) import", source, re.M)
        else:
            modules = [module]
        for mod in modules:
            assert importlib.util.find_spec(mod) is not None, f"{name}: no module {mod}"
            assert mod.split(".")[0] in copied, f"{name}: {mod} is not copied into the image"


def test_service_environments_are_accepted_by_the_settings_loaders(
    services: dict[str, dict[str, Any]],
) -> None:
    from api.settings import load_api_settings
    from flows.producers.settings import load_producer_settings
    from flows.producers.workers import FOLLOWS_CONFIGURATION
    from infra.settings import load_settings
    from spark_batch.settings import load_spark_settings

    for name, service in services.items():
        if not _is_python(service):
            continue
        env = _env(service)
        settings = load_settings(env)
        assert settings.kafka.bootstrap_servers == "kafka:9092", name
        if name == "api":
            api = load_api_settings(env, topics=settings.kafka.topics)
            assert api.host == "0.0.0.0"
            assert api.workers > 1, "the API runs several uvicorn workers"
            assert api.channels_backend == "postgres", "several workers need a shared backend"
            assert settings.otlp_endpoint == "http://otel-collector:4318"
        elif name == "spark-analytics":
            spark = load_spark_settings(env)
            assert spark.ui, "the health check asks the Spark UI"
        elif name.startswith("producer-"):
            load_producer_settings(env)
            # Only the producers that follow crypto_configuration read the database.
            follows = name in FOLLOWS_CONFIGURATION
            assert ("DATABASE_URL" in env) == follows, f"{name}: the database password"
        if "DATABASE_URL" in env:
            assert settings.database.url is not None
            assert "@timescaledb:5432/" in settings.database.url


def test_published_ports_listen_on_loopback_by_default(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {n: s["ports"] for n, s in services.items() if s.get("ports")}
    assert set(published) == {"api", "grafana", "prometheus", "jaeger"}
    for name, ports in published.items():
        for port in ports:
            assert port.get("host_ip") == "127.0.0.1", f"{name} published beyond loopback"


def test_mounted_files_exist_and_config_paths_match(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']} missing"
    collector = services["otel-collector"]
    config_arg = next(a for a in _command(collector) if a.startswith("--config="))
    mounted = {v["target"]: v["source"] for v in collector["volumes"]}
    assert Path(mounted[config_arg.removeprefix("--config=")]) == OTEL
    grafana = {v["target"]: v.get("source") for v in services["grafana"]["volumes"]}
    provider = _yaml(GRAFANA / "provisioning" / "dashboards" / "dashboards.yml")["providers"][0]
    assert Path(grafana[provider["options"]["path"]]) == GRAFANA / "dashboards"
    assert Path(grafana["/etc/grafana/provisioning"]) == GRAFANA / "provisioning"


def test_dockerfile_builds_from_pinned_python_and_copies_what_exists() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base, "the base image is not an ARG default"
    assert re.fullmatch(r"python:3\.1[12]\.\d+-slim-\w+", base[1]), f"unpinned base {base[1]}"
    assert all(line.split()[1] == "${PYTHON_IMAGE}" for line in re.findall(r"^FROM .*", text, re.M))
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for source in sources.split():
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert not any(fnmatch.fnmatch(source, pat) for pat in ignored), (
                f"COPY {source} is excluded by .dockerignore"
            )
    assert re.search(r"^USER (?!root)\w+", text, re.M), "the services must not run as root"
    assert (REPO / "infra" / "jars" / "spark" / "pom.xml").exists()


# ------------------------------------------------------------------ tracing


def test_collector_forwards_otlp_from_the_services_to_jaeger(
    services: dict[str, dict[str, Any]],
) -> None:
    config = _yaml(OTEL)
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"pipeline uses undefined {component}"
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    for name, service in services.items():
        endpoint = _env(service).get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if _is_python(service):
            assert endpoint == f"http://otel-collector:{http.rsplit(':', 1)[1]}", name
    host = config["exporters"]["otlp/jaeger"]["endpoint"].split(":")[0]
    assert host in services


# ------------------------------------------------------------------ Prometheus


def test_prometheus_scrapes_every_worker_and_the_api(
    prometheus_config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    assert len(jobs) == len(prometheus_config["scrape_configs"]), "duplicate job names"
    static: dict[str, str] = {}
    discovered: dict[str, str] = {}
    for name, job in jobs.items():
        for group in job.get("static_configs", []):
            for target in group["targets"]:
                static[target] = name
        for group in job.get("dns_sd_configs", []):
            for host in group["names"]:
                discovered[f"{host}:{group['port']}"] = name
        for relabel in job.get("relabel_configs", []):
            if "regex" in relabel:
                re.compile(relabel["regex"])
    for name, service in services.items():
        if _flow_name(service):
            target = f"{name}:{_env(service)['BYTEWAX_DATAFLOW_API_PORT']}"
            if service.get("profiles"):
                assert target in discovered, f"{name} (profile only) must be DNS-discovered"
            else:
                assert target in static, f"{name} is not scraped at {target}"
            assert (static.get(target) or discovered[target]) in JOB_GROUPS
    assert static[f"api:{_env(services['api'])['CRYPTOVIZ_API_PORT']}"] == "api"
    assert static[f"monitor:{PROGRAMS['monitor'].metrics_port}"] == "monitor"
    assert static[f"spark-analytics:{PROGRAMS['spark-analytics'].metrics_port}"] == "spark"
    for name, (_, port) in EXPORTERS.items():
        assert JOB_GROUPS[static[f"{name}:{port}"]] == name, f"{name} is not scraped"
        assert str(port) in services[name]["healthcheck"]["test"][-1], name
    collector_port = _yaml(OTEL)["service"]["telemetry"]["metrics"]["readers"][0]["pull"]
    assert static[f"otel-collector:{collector_port['exporter']['prometheus']['port']}"]
    for target in [*static, *discovered]:
        host = target.rsplit(":", 1)[0]
        assert host in services or host == "localhost", f"target {target}: no such service"
    mount = next(v for v in services["prometheus"]["volumes"] if v["type"] == "bind")
    for rule_file in prometheus_config["rule_files"]:
        relative = Path(rule_file).relative_to(mount["target"])
        assert (Path(mount["source"]) / relative).is_file(), rule_file


def test_alert_rules_pass_prometheus_rule_validation(deploycheck: DeployCheck) -> None:
    outcome = deploycheck.rules(ALERTS)
    assert outcome.ok, f"rulefmt rejected {ALERTS.name}:\n{outcome.stderr}"


def test_alert_rules_are_documented_and_graded(rule_groups: list[dict[str, Any]]) -> None:
    names = [rule["alert"] for group in rule_groups for rule in group["rules"]]
    assert len(names) == len(set(names)), "duplicate alert names"
    for group in rule_groups:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["annotations"]["description"], rule["alert"]


def test_alert_rules_cover_lag_dead_letters_staleness_gaps_and_producers(
    rule_groups: list[dict[str, Any]],
) -> None:
    text = " ".join(rule["expr"] for group in rule_groups for rule in group["rules"])
    for needed in (
        "cryptoviz_consumer_lag",  # consumer lag (flows and Spark, from the monitor)
        "cryptoviz_dead_letters_total",  # dead-letter rate
        'cryptoviz_table_newest_row_age_seconds{table="ticker_data"}',  # stale data: age
        "cryptoviz_kraken_trade_gaps_total",  # gaps found by the producer
        "cryptoviz_trade_ids_missing",  # gaps left in the database
        'up{job="monitor"}',
        'up{job=~"node|kafka|postgres"}',  # the exporters
        "cryptoviz_producer_messages_total",  # producer gaps (silent topic)
        'up{job=~"producers',  # producer down
        'absent(up{job="producers"})',  # producer absent
        'up{job="ingest"}',
        'up{job="api"}',
    ):
        assert needed in text, f"no alert rule on {needed}"


# ------------------------------------------------------------------ metrics


def test_every_metric_in_rules_and_dashboards_is_emitted_by_the_code(
    deploycheck: DeployCheck,
    catalog: mc.Catalog,
    rule_groups: list[dict[str, Any]],
    dashboards: dict[str, dict[str, Any]],
    datasources: dict[str, dict[str, Any]],
    prometheus_config: dict[str, Any],
) -> None:
    exprs = _rule_exprs(rule_groups) + _dashboard_exprs(dashboards, datasources)
    results = deploycheck.promql([_promql_for_parsing(e.text) for e in exprs])
    jobs = {job["job_name"] for job in prometheus_config["scrape_configs"]}
    problems: list[str] = []
    referenced: set[str] = set()
    for expr, result in zip(exprs, results, strict=True):
        if result.get("error"):
            problems.append(f"{expr.origin}: PromQL does not parse: {result['error']}")
            continue
        assert result["selectors"], f"{expr.origin}: no metric selector in {expr.text!r}"
        for selector in result["selectors"]:
            referenced.add(selector["metric"])
            problems += _selector_problems(selector, catalog, jobs, expr.origin)
            series = catalog.get(selector["metric"])
            if expr.label and series and expr.label not in series.labels | TARGET_LABELS:
                problems.append(f"{expr.origin}: {selector['metric']} has no label {expr.label}")
    assert not problems, "\n".join(problems)
    # The dashboards and rules do look at every layer that exports metrics.
    for prefix in (
        *("cryptoviz_ingest_", "cryptoviz_producer_", "cryptoviz_api_", "bytewax_"),
        *("cryptoviz_spark_", "cryptoviz_table_", "cryptoviz_consumer_lag", "node_", "kafka_"),
        "pg_",
    ):
        assert any(name.startswith(prefix) for name in referenced), prefix


def test_catalog_reads_the_metrics_the_code_defines(catalog: mc.Catalog) -> None:
    """The catalog is not vacuous: it sees each source (if this fails, fix the catalog)."""
    ingest = catalog.get("cryptoviz_ingest_rows_total")
    assert ingest is not None
    assert "topic" in ingest.labels
    assert "flows" in ingest.groups
    lag = catalog.get("bytewax_kafka_consumer_lag")
    assert lag is not None
    assert {"topic", "partition"} <= lag.labels
    api = catalog.get("cryptoviz_api_request_duration_seconds_bucket")
    assert api is not None
    assert {"route", "le"} <= api.labels
    assert api.groups == {"api"}
    pool = catalog.get("cryptoviz_api_db_requests_waiting")
    assert pool is not None, "the scrape-time API gauges are missing"
    steps = catalog.get("bytewax_item_out_count_total")
    assert steps is not None
    assert "step_id" in steps.labels
    assert catalog.get("process_resident_memory_bytes") is not None
    assert catalog.get("cryptoviz_not_a_metric_total") is None


def test_flow_metrics_endpoint_serves_the_python_registry(tmp_path: Path) -> None:
    """What compose relies on: Bytewax's server (BYTEWAX_DATAFLOW_API_*) serves the
    flows' own metrics next to Bytewax's, on all interfaces, so Prometheus can scrape
    it from another container (``flows.run --metrics-port`` binds 127.0.0.1 only)."""
    scrape = mc.scrape_bytewax_probe(tmp_path, RUNTIME_BYTEWAX)
    assert "topic" in scrape.families["cryptoviz_ingest_messages_total"]
    assert {"stage", "topic"} <= scrape.families["cryptoviz_dead_letters_total"]
    assert "process_resident_memory_bytes" in scrape.families


# ------------------------------------------------------------------ Grafana


def test_datasources_are_provisioned_with_their_secrets_from_the_environment(
    datasources: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    assert {ds["type"] for ds in datasources.values()} >= {
        "prometheus",
        "grafana-postgresql-datasource",
        "jaeger",
    }
    grafana_env = _env(services["grafana"])
    lines = (GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    for var in re.findall(r"\$\{?(\w+)\}?", text):
        assert var in grafana_env, f"datasources.yml reads ${var}, unset in the grafana service"
    for ds in datasources.values():
        url = re.sub(r"\$\{?(\w+)\}?", lambda m: grafana_env[m[1]], ds["url"])
        host = re.sub(r"^\w+://", "", url).split(":")[0]
        assert host in services, f"datasource {ds['name']}: no service {host}"
    db = datasources["cryptoviz-db"]
    assert db["user"] == "grafana_reader"
    assert db["secureJsonData"]["password"] == "$GRAFANA_DB_PASSWORD"


def test_dashboards_are_well_formed(
    dashboards: dict[str, dict[str, Any]], datasources: dict[str, dict[str, Any]]
) -> None:
    uids = [board["uid"] for board in dashboards.values()]
    assert len(uids) == len(set(uids)), "duplicate dashboard uids"
    titles = [board["title"] for board in dashboards.values()]
    assert len(titles) == len(set(titles)), "duplicate dashboard titles"
    for name, board in dashboards.items():
        panels = list(_panels(board))
        ids = [panel["id"] for panel in panels]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        defined = {v["name"] for v in board.get("templating", {}).get("list", [])}
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            where = f"{name} panel {panel['id']} {panel.get('title')!r}"
            grid = panel["gridPos"]
            assert grid["x"] >= 0, where
            assert grid["x"] + grid["w"] <= 24, where
            area = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & area, f"{where} overlaps another panel"
            cells |= area
            if panel["type"] in {"row", "text"}:
                continue
            sources = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
            for source in sources:
                provisioned = datasources.get(source["uid"])
                assert provisioned, f"{where}: datasource {source['uid']} is not provisioned"
                assert provisioned["type"] == source["type"], where
            assert panel["targets"], f"{where}: no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), f"{where}: duplicate refIds"
            texts = [panel.get("title", ""), panel.get("description", "")]
            texts += [t.get("expr", "") + t.get("rawSql", "") for t in panel["targets"]]
            for text in texts:
                unknown = {v for v in _vars_used(text) if not v.startswith("__")} - defined
                assert not unknown, f"{where}: undefined variables {unknown}"
        for variable in board.get("templating", {}).get("list", []):
            assert variable["datasource"]["uid"] in datasources, f"{name}: {variable['name']}"


def test_dashboards_cover_throughput_freshness_latency_api_and_market(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    assert {"pipeline.json", "freshness.json", "latency.json", "api.json", "market.json"} <= set(
        dashboards
    )
    panels = _panels(dashboards["monitoring.json"])
    monitoring = " ".join(t.get("expr", "") for p in panels for t in p.get("targets", []))
    for series in (
        *("cryptoviz_table_rows", "cryptoviz_table_newest_row_age_seconds"),
        *("cryptoviz_consumer_lag", "cryptoviz_dead_letters_total", "cryptoviz_trade_ids_missing"),
        *("cryptoviz_kraken_trade_gaps_total", "cryptoviz_kraken_trades_filled_total"),
        *("cryptoviz_spark_batch_duration_seconds", "cryptoviz_spark_last_batch_timestamp_seconds"),
        *("node_cpu_seconds_total", "kafka_consumergroup_lag_sum", "pg_up"),
    ):
        assert series in monitoring, f"the monitoring dashboard does not show {series}"
    market = dashboards["market.json"]
    sql = " ".join(t.get("rawSql", "") for p in _panels(market) for t in p.get("targets", []))
    for relation in ("ticker_ohlc_hourly", "trade_volume_hourly", "sentiment_hourly"):
        assert relation in sql, f"the market dashboard does not query {relation}"


# --- the dashboards' SQL, run for real


_FROM, _TO = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
_SQL_VALUES = {"pair": "BTC/USD", "coin": "BTC", "model": "ewma"}
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _expand_sql(text: str) -> str:
    """Grafana's PostgreSQL macros and variables, as Grafana expands them (plain flavour)."""

    def group(match: re.Match[str]) -> str:
        seconds = int(match[2]) * _UNIT_S[match[3]]
        return f'floor(extract(epoch from {match[1]})/{seconds})*{seconds} AS "time"'

    text = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN '{_FROM}' AND '{_TO}'", text)
    text = re.sub(r"\$__timeGroupAlias\(([^,]+),\s*'(\d+)([smhd])'\)", group, text)
    text = re.sub(r"\$__timeFrom\(\)", f"'{_FROM}'", text)
    text = re.sub(r"\$__timeTo\(\)", f"'{_TO}'", text)
    leftover = re.findall(r"\$__\w+", text)
    assert not leftover, f"macros the test does not expand: {leftover}"

    def variable(match: re.Match[str]) -> str:
        name = match[1] or match[3]
        value = _SQL_VALUES[name]
        return "'" + value.replace("'", "''") + "'" if match[2] == "sqlstring" else value

    return re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)", variable, text)


def _reader_role_sql(project: dict[str, Any], role: str, password: str) -> list[str]:
    """The SQL of the compose file's init script that creates Grafana's role."""
    script: str = project["configs"]["grafana-reader-role"]["content"]
    body = script.split("<<'SQL'\n", 1)[1].rsplit("\nSQL", 1)[0]
    body = body.replace(":'reader_password'", "'" + password + "'")
    body = body.replace("grafana_reader", role)
    return [s.strip() for s in body.split(";") if s.strip()]


@pytest.mark.integration
def test_dashboard_sql_runs_as_grafanas_read_only_role(
    fresh_db: str,
    dashboards: dict[str, dict[str, Any]],
    datasources: dict[str, dict[str, Any]],
    project: dict[str, Any],
) -> None:
    db_uids = {
        uid for uid, ds in datasources.items() if ds["type"].endswith("postgresql-datasource")
    }
    queries: list[tuple[str, str]] = []
    for name, board in dashboards.items():
        for panel in _panels(board):
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("uid") in db_uids:
                    queries.append((f"{name} panel {panel['title']!r}", target["rawSql"]))
        for variable in board.get("templating", {}).get("list", []):
            if variable["datasource"]["uid"] in db_uids:
                queries.append((f"{name} variable {variable['name']}", _variable_query(variable)))
    assert queries
    role = f"grafana_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(fresh_db, autocommit=True) as admin:
        for statement in _reader_role_sql(project, role, "test-only"):
            admin.execute(statement.encode())
    try:
        reader_url = psycopg.conninfo.make_conninfo(fresh_db, user=role, password="test-only")
        problems = []
        with psycopg.connect(reader_url, autocommit=True) as conn:
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
            for origin, text in queries:
                try:
                    conn.execute(_expand_sql(text).encode())
                except psycopg.Error as exc:
                    problems.append(f"{origin}: {exc}")
        assert not problems, "\n".join(problems)
    finally:
        with psycopg.connect(fresh_db, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"'.encode())
