"""A test's Spark driver: the sentiment query once over a topic, on the given master.

    python -m tests.infra._spark_cluster_job MASTER

Servers, state and the topic come from the environment (``KAFKA_BOOTSTRAP_SERVERS``,
``DATABASE_URL``, ``CRYPTOVIZ_STATE_DIR``, ``CRYPTOVIZ_TOPIC_RAWARTICLE``). A process
of its own: the test session already holds a local SparkContext, and a process has
only one. Prints the application id.
"""

from __future__ import annotations

import sys

from infra.settings import load_settings
from spark_batch.jobs import Analytics
from spark_batch.session import build_session
from spark_batch.settings import SparkSettings


def main(master: str) -> int:
    settings = load_settings()
    cfg = SparkSettings(master=master, shuffle_partitions=2, log_level="ERROR")
    spark = build_session(cfg, settings.cache_dir)
    analytics = Analytics(spark, settings, cfg)
    try:
        for query in analytics.start(["sentiment"], available_now=True):
            query.awaitTermination()
        print(spark.sparkContext.applicationId, flush=True)
    finally:
        analytics.close()
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
