"""Which Prometheus series the code emits, read from the code itself at test time.

Three sources, merged:

* **the sources**: every ``Counter(...)``/``Gauge(...)``/``Histogram(...)``/
  ``Summary(...)``/``Info(...)``/``Enum(...)`` call with a literal name in the
  deployed packages, with its literal label names (whatever module defines it,
  imported anywhere or not);
* **the registries**: the default ``prometheus_client`` registry after importing
  what a flow process imports (``flows.registry``: ingestion and producer metrics,
  Bytewax's Kafka consumer lag, the process/platform collectors), and the API's
  own per-app registry (:class:`api.telemetry.Telemetry`, including the gauges it
  builds at scrape time);
* **Bytewax's runtime**: the ``bytewax_*`` metrics of its Rust core, which exist
  only in a running dataflow: :mod:`tests.infra._bytewax_probe` runs an ingestion
  flow and this module scrapes it (see :func:`scrape_bytewax_probe`).

A series is one exposed sample name (``x_total``, ``x_bucket``...) with the label
names it can carry and the *group* of processes that serve it: ``flows`` (every
``python -m flows.run`` process) or ``api``.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from infra._procs import free_port
from tests._wait import wait_for

REPO = Path(__file__).resolve().parents[2]
DEPLOYED_PACKAGES = ("handlers", "flows", "spark_batch", "api", "infra")
CONSTRUCTORS = {
    "Counter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
    "Summary": "summary",
    "Info": "info",
    "Enum": "stateset",
}
# Label names a sample gains from its type, beyond the declared ones.
_SUFFIXES: dict[str, tuple[tuple[str, frozenset[str]], ...]] = {
    "counter": (("_total", frozenset()), ("_created", frozenset())),
    "gauge": (("", frozenset()),),
    "histogram": (
        ("_bucket", frozenset({"le"})),
        ("_count", frozenset()),
        ("_sum", frozenset()),
        ("_created", frozenset()),
    ),
    "summary": (
        ("", frozenset({"quantile"})),
        ("_count", frozenset()),
        ("_sum", frozenset()),
        ("_created", frozenset()),
    ),
    "info": (("_info", frozenset()),),
    "stateset": (("", frozenset()),),
}


@dataclass
class Series:
    name: str
    labels: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    origins: set[str] = field(default_factory=set)


class Catalog:
    """Exposed series by sample name."""

    def __init__(self) -> None:
        self.series: dict[str, Series] = {}

    def add(self, name: str, labels: Iterable[str], group: str, origin: str) -> None:
        entry = self.series.setdefault(name, Series(name))
        entry.labels.update(labels)
        entry.groups.add(group)
        entry.origins.add(origin)

    def add_family(
        self, family: str, kind: str, labels: Iterable[str], group: str, origin: str
    ) -> None:
        """A metric as declared (``family`` as passed to the constructor)."""
        labels = frozenset(labels)
        if kind == "counter":
            family = family.removesuffix("_total")
        for suffix, extra in _SUFFIXES.get(kind, (("", frozenset()),)):
            self.add(family + suffix, labels | extra, group, origin)

    def get(self, name: str) -> Series | None:
        return self.series.get(name)

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.series if n.startswith(prefix))


def _group_of(path: Path) -> str:
    top = path.relative_to(REPO).parts[0]
    return {"flows": "flows", "api": "api", "spark_batch": "spark"}.get(top, "other")


def _literal_strings(node: ast.expr | None) -> list[str] | None:
    if isinstance(node, ast.List | ast.Tuple):
        values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        if len(values) == len(node.elts) and all(isinstance(v, str) for v in values):
            return [str(v) for v in values]
    return None


def source_metrics(catalog: Catalog, packages: Iterable[str] = DEPLOYED_PACKAGES) -> int:
    """Add every metric constructed with a literal name in ``packages``; return how many."""
    found = 0
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                fname = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if fname not in CONSTRUCTORS:
                    continue
                name_node = node.args[0] if node.args else None
                for kw in node.keywords:
                    if kw.arg == "name":
                        name_node = kw.value
                if not (isinstance(name_node, ast.Constant) and isinstance(name_node.value, str)):
                    continue
                labels_node = node.args[2] if len(node.args) > 2 else None
                for kw in node.keywords:
                    if kw.arg == "labelnames":
                        labels_node = kw.value
                labels = _literal_strings(labels_node) or []
                origin = f"{path.relative_to(REPO)}:{node.lineno}"
                catalog.add_family(
                    name_node.value, CONSTRUCTORS[fname], labels, _group_of(path), origin
                )
                found += 1
    return found


def _collector_labels(collector: Collector) -> tuple[str, ...]:
    return tuple(getattr(collector, "_labelnames", ()))


def registry_metrics(
    catalog: Catalog, registry: CollectorRegistry, group: str, origin: str
) -> None:
    """Add what ``registry`` exposes, with declared label names where it keeps them."""
    seen: set[int] = set()
    collectors: dict[int, Collector] = {}
    names_to_collectors: dict[str, Collector] = getattr(registry, "_names_to_collectors", {})
    for collector in names_to_collectors.values():
        collectors[id(collector)] = collector
    collector_to_names: dict[Collector, list[str]] = getattr(registry, "_collector_to_names", {})
    for collector in collector_to_names:
        collectors[id(collector)] = collector
    for key, collector in collectors.items():
        if key in seen:
            continue
        seen.add(key)
        declared = _collector_labels(collector)
        for family in collector.collect():
            kind = family.type if family.type in _SUFFIXES else "gauge"
            labels: set[str] = set(declared)
            for sample in family.samples:
                labels.update(sample.labels)
                catalog.add(sample.name, set(sample.labels) | set(declared), group, origin)
            catalog.add_family(family.name, kind, labels, group, origin)


def flow_process_metrics(catalog: Catalog) -> None:
    """What the default registry of a ``python -m flows.run`` process holds."""
    from prometheus_client import REGISTRY

    import flows.registry  # noqa: F401  (imports every flow, its metrics and Bytewax's)

    registry_metrics(catalog, REGISTRY, "flows", "flows.run default registry")


def api_metrics(catalog: Catalog) -> None:
    """The API's per-app registry, with the pool gauges it computes at scrape time."""
    from opentelemetry.sdk.trace import TracerProvider

    from api.telemetry import Telemetry

    telemetry = Telemetry(TracerProvider())
    telemetry.watch_pool(lambda: {})
    registry_metrics(catalog, telemetry.registry, "api", "api.telemetry.Telemetry registry")


def monitor_metrics(catalog: Catalog) -> None:
    """The monitor's series: its sample counters, and the gauges its collector builds
    at scrape time from the last samples (fed here one sample of each kind)."""
    from datetime import UTC, datetime

    from infra import monitor
    from infra.db_state import PairGaps, TableState
    from infra.kafka_offsets import PartitionLag

    class OneOfEach:
        def snapshot(self) -> tuple[list[TableState], list[PartitionLag], list[PairGaps]]:
            table = TableState("ticker_data", 1, False, datetime.now(UTC), True)
            lag = PartitionLag("cryptoviz-ingest-rawticker", "rawticker", 0, 1, 2)
            return [table], [lag], [PairGaps("BTC/USD", 1, 1)]

    registry = CollectorRegistry()
    registry.register(monitor.MonitorCollector(OneOfEach(), time.time))  # type: ignore[arg-type]
    registry.register(monitor.SAMPLES)
    registry.register(monitor.LAST_SAMPLE)
    registry_metrics(catalog, registry, "monitor", "infra.monitor collector")


# The exporters' series the rules and dashboards use, as the pinned images of
# infra/docker-compose.yml document them (their READMEs and collectors at those tags);
# not read from their code, which this repository does not hold.
EXPORTER_SERIES: dict[str, dict[str, frozenset[str]]] = {
    "node-exporter": {
        "node_cpu_seconds_total": frozenset({"cpu", "mode"}),
        "node_load1": frozenset(),
        "node_memory_MemAvailable_bytes": frozenset(),
        "node_memory_MemTotal_bytes": frozenset(),
        "node_filesystem_avail_bytes": frozenset({"device", "fstype", "mountpoint"}),
        "node_filesystem_size_bytes": frozenset({"device", "fstype", "mountpoint"}),
        "node_network_receive_bytes_total": frozenset({"device"}),
        "node_network_transmit_bytes_total": frozenset({"device"}),
    },
    "kafka-exporter": {
        "kafka_brokers": frozenset(),
        "kafka_topic_partitions": frozenset({"topic"}),
        "kafka_topic_partition_current_offset": frozenset({"topic", "partition"}),
        "kafka_consumergroup_lag": frozenset({"consumergroup", "topic", "partition"}),
        "kafka_consumergroup_lag_sum": frozenset({"consumergroup", "topic"}),
    },
    "postgres-exporter": {
        "pg_up": frozenset(),
        "pg_stat_database_numbackends": frozenset({"datid", "datname"}),
        "pg_stat_database_xact_commit": frozenset({"datid", "datname"}),
        "pg_stat_database_xact_rollback": frozenset({"datid", "datname"}),
        "pg_database_size_bytes": frozenset({"datname"}),
        "pg_locks_count": frozenset({"datname", "mode"}),
    },
}


def exporter_metrics(catalog: Catalog) -> None:
    for group, series in EXPORTER_SERIES.items():
        for name, labels in series.items():
            catalog.add(name, labels, group, f"{group} (pinned image)")


# ------------------------------------------------------------------ Bytewax runtime


@dataclass
class Scrape:
    text: str
    families: dict[str, set[str]]
    """Sample name -> label names seen."""


def _parse_exposition(text: str) -> dict[str, set[str]]:
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def scrape_bytewax_probe(workdir: Path, wanted: Iterable[str], timeout_s: float = 90.0) -> Scrape:
    """Run :mod:`tests.infra._bytewax_probe` with Bytewax's metrics server on, scrape it.

    Scrapes until every name in ``wanted`` is exposed (the Rust histograms appear
    only once observed), then stops the flow. Raises ``AssertionError`` with the
    probe's output when it does not get there in time.
    """
    wanted = set(wanted)
    port = free_port()
    env = {
        **os.environ,
        "BYTEWAX_DATAFLOW_API_ENABLED": "true",
        "BYTEWAX_DATAFLOW_API_PORT": str(port),
        "BYTEWAX_DATAFLOW_API_CACHE_PATH": str(workdir),
        "CRYPTOVIZ_STATE_DIR": str(workdir / "state"),
    }
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
        env.pop(name, None)
    log = workdir / "probe.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.infra._bytewax_probe", str(workdir / "recovery")],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    families: dict[str, set[str]] = {}

    def exposed() -> Scrape | None:
        assert proc.poll() is None, (
            f"the Bytewax probe exited ({proc.poll()}); its output:\n{log.read_text()[-3000:]}"
        )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        families.clear()
        families.update(_parse_exposition(text))
        return Scrape(text, dict(families)) if wanted <= families.keys() else None

    try:
        return wait_for(
            exposed,
            timeout_s,
            f"the Bytewax probe to expose {sorted(wanted)} on :{port}/metrics",
            interval=0.3,
            explain=lambda: (
                f"never exposed: {sorted(wanted - families.keys())}; "
                f"its output:\n{log.read_text()[-3000:]}"
            ),
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def add_scrape(catalog: Catalog, scrape: Scrape, prefix: str, group: str, origin: str) -> None:
    for name, labels in scrape.families.items():
        if name.startswith(prefix):
            catalog.add(name, labels, group, origin)
