"""Create the pipeline's Kafka topics (idempotent).

    python -m infra.topics     # every topic of the topic map, on KAFKA_BOOTSTRAP_SERVERS

(the compose file's one-shot ``topics`` job; ``make up`` does the same in
:meth:`infra.stack.Stack.prepare`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from infra._console import StackError
from infra.cli import run_program
from infra.settings import SettingsError, load_settings


def min_insync_for(replication_factor: int) -> int:
    """``min.insync.replicas`` for a replication factor: a majority of the replicas.

    With 3 replicas, 2 must have a message before ``acks=all`` succeeds: one broker
    may be down and writes go on, and no acknowledged message lives on one disk only.
    """
    return replication_factor // 2 + 1


def ensure_topics(
    bootstrap: str, names: tuple[str, ...], partitions: int, replication_factor: int = 1
) -> list[str]:
    """Create every topic in ``names`` that does not exist yet; return the ones created.

    Topics are created with broker append time as message timestamps, so the
    ingestion flows can store when each message reached Kafka (one latency hop),
    and with ``min.insync.replicas`` a majority of ``replication_factor``.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [name for name in names if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                config={
                    "message.timestamp.type": "LogAppendTime",
                    "min.insync.replicas": str(min_insync_for(replication_factor)),
                },
            )
            for name in missing
        ],
        operation_timeout=30,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StackError(f"creating Kafka topic {name!r} failed: {exc}") from exc
    return created


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m infra.topics", description=__doc__).parse_args(argv)
    return run_program("topics", _create_all)


def _create_all() -> None:
    kafka = load_settings().kafka
    if kafka.bootstrap_servers is None:
        raise SettingsError("set KAFKA_BOOTSTRAP_SERVERS to the brokers to create topics on")
    names = kafka.topics.all
    created = ensure_topics(
        kafka.bootstrap_servers, names, kafka.partitions, kafka.replication_factor
    )
    print("topics ready:", ", ".join(names), "| created now:", ", ".join(created) or "none")


if __name__ == "__main__":
    sys.exit(main())
