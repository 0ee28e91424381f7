"""The SparkSession of the analytics job: pinned Kafka connector jars, master from settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from infra.jars import ensure_jars
from spark_batch.settings import SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

JAR_SET = "spark"
"""``infra/jars/spark/pom.xml``: spark-sql-kafka at the pyspark version, and its missing deps."""
_ROCKSDB = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"


def connector_jars(cache_dir: Path) -> list[Path]:
    """The Kafka connector jars, fetched once into the cache (no network afterwards)."""
    return sorted(ensure_jars(JAR_SET, cache_dir).glob("*.jar"))


def spark_conf(cfg: SparkSettings, jars: list[Path]) -> dict[str, str]:
    conf = {
        "spark.master": cfg.master,
        "spark.app.name": cfg.app_name,
        "spark.jars": ",".join(str(j) for j in jars),
        "spark.driver.memory": cfg.driver_memory,
        # Shuffle partitions are the state-store partitions: a few suffice for a few coins,
        # and every one costs a task per micro-batch.
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "true" if cfg.ui else "false",
        # Progress bars on stderr would flood the worker logs.
        "spark.ui.showConsoleProgress": "false",
        # Streaming disables AQE anyway; saying so up front silences a warning per query.
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.streaming.noDataMicroBatches.enabled": "true",
    }
    if cfg.state_store == "rocksdb":
        conf["spark.sql.streaming.stateStore.providerClass"] = _ROCKSDB
    return conf


def build_session(cfg: SparkSettings, cache_dir: Path) -> SparkSession:
    """Create (or return the running) SparkSession configured for the analytics job."""
    from pyspark.sql import SparkSession

    # Python UDF workers run with this interpreter (and its packages) rather than
    # whatever "python3" is first on the PATH: on this machine, local or standalone;
    # on other hosts the executors need the same path (the same image). PySpark reads
    # only the environment variable for this, when the context starts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in spark_conf(cfg, connector_jars(cache_dir)).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(cfg.log_level)
    return session
