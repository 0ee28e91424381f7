"""The three-node Kafka cluster: a real quorum that keeps every acknowledged message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType

from infra.jars import ensure_jars
from infra.java import find_java
from infra.kafka_cluster import EmbeddedKafkaCluster
from infra.settings import Settings, load_settings
from infra.topics import ensure_topics, min_insync_for
from tests._wait import wait_for
from tests.flows.conftest import produce, read_all

pytestmark = pytest.mark.integration


def test_a_majority_of_replicas_must_acknowledge() -> None:
    assert [min_insync_for(rf) for rf in (1, 2, 3, 5)] == [1, 2, 2, 3]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafkaCluster]:
    settings: Settings = load_settings()
    jars = ensure_jars("kafka", settings.cache_dir)
    running = EmbeddedKafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), jars, find_java(),
                                   heap_mb=256)  # fmt: skip
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_three_brokers_and_replicated_topics(cluster: EmbeddedKafkaCluster) -> None:
    # A broker restarted by the test before (rolling restart, leader kill) may take a
    # moment to register again: wait for the three, then check who they are.
    cluster.wait_brokers(3)
    assert cluster.brokers() == [1, 2, 3]
    assert ensure_topics(cluster.bootstrap, ("replicated",), 3, 3) == ["replicated"]
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    # Created by the controller; each broker learns it from the metadata log a moment later.
    cluster.wait_topics(("replicated",))
    topic = admin.list_topics("replicated", timeout=10).topics["replicated"]
    assert {p: sorted(m.replicas) for p, m in topic.partitions.items()} == {
        0: [1, 2, 3], 1: [1, 2, 3], 2: [1, 2, 3]
    }  # fmt: skip
    (configs,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, "replicated")]).values()
    assert configs.result()["min.insync.replicas"].value == "2"
    # The internal topics too: consumer offsets survive a broker loss.
    produce(cluster.bootstrap, "replicated", [b"x"])
    read_all(cluster.bootstrap, "replicated")

    def replica_counts() -> set[int] | None:
        # The group's first commit creates the topic; every broker learns its partitions
        # from the metadata log a moment later (once in the suite: none listed yet).
        meta = admin.list_topics("__consumer_offsets", timeout=10).topics["__consumer_offsets"]
        return {len(p.replicas) for p in meta.partitions.values()} or None

    assert wait_for(replica_counts, 60, "__consumer_offsets partitions listed") == {3}


def test_losing_the_busiest_leader_loses_no_acknowledged_message(
    cluster: EmbeddedKafkaCluster,
) -> None:
    ensure_topics(cluster.bootstrap, ("survives",), 3, 3)
    produce(cluster.bootstrap, "survives", [b"before-%d" % i for i in range(300)])
    victim = cluster.busiest_leader(("survives",))
    cluster.kill(victim)
    try:
        wait_for(lambda: victim not in cluster.leaders(("survives",)), 60, "leaders to move")
        # acks=all with one of three replicas gone: two are in sync, writes go on.
        produce(cluster.bootstrap, "survives", [b"during-%d" % i for i in range(300)])
    finally:
        cluster.restart(victim)
    cluster.wait_in_sync(("survives",))
    values = sorted(v or b"" for v, _ in read_all(cluster.bootstrap, "survives", timeout=30))
    assert len(values) == 600
    assert len(set(values)) == 600  # idempotent producer: no duplicate from the retries


def test_a_rolling_restart_keeps_the_cluster_serving(cluster: EmbeddedKafkaCluster) -> None:
    ensure_topics(cluster.bootstrap, ("rolling",), 3, 3)
    sent = 0
    for node in sorted(cluster.nodes):
        cluster.stop_node(node)
        sent += produce(cluster.bootstrap, "rolling", [b"%d-%d" % (node, i) for i in range(100)])
        cluster.restart(node)
        cluster.wait_in_sync(("rolling",))
    assert cluster.brokers() == [1, 2, 3]
    assert len(read_all(cluster.bootstrap, "rolling", timeout=30)) == sent == 300
