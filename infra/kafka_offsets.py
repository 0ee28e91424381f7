"""Kafka offsets as monitoring reads them: committed positions, partition ends, lag.

Every consumer of the pipeline leaves its position in a consumer group named after it
(:func:`infra.programs.consumer_group`): the Bytewax flows commit the offset after the
last message handed to the flow (``flows._consumer.committing_to``), the Spark job
commits the end offsets of each finished micro-batch (:meth:`KafkaOffsets.commit`).
Neither resumes from its group (Bytewax from its recovery snapshots, Spark from its
checkpoint): the group is where the position is *shown*, so the lag can be computed
by anyone, with the consumer running or stopped: the monitor (:mod:`infra.monitor`),
``kafka-consumer-groups.sh --describe`` or a kafka-exporter.

The lag of a partition is its end offset minus the group's position there, where the
position is the committed offset, or the partition's first retained offset when the
group committed nothing there yet (everything retained is still to read) or when
retention deleted messages past the commit (those are gone, not late).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from handlers import CryptoVizError

TopicPartitionKey = tuple[str, int]
"""(topic, partition)."""

_LOG = logging.getLogger("infra.kafka")
_MARGIN_S = 10.0
_RETRY_S = 0.25
_COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
_EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]


class OffsetsUnavailable(CryptoVizError):
    """The brokers did not answer an offset question in time (``detail`` says which)."""


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    position: int
    """Where the group stands: the next offset it reads."""
    end: int
    """The partition's end (high watermark): the offset the next message gets."""

    @property
    def lag(self) -> int:
        return max(0, self.end - self.position)


@dataclass(frozen=True, slots=True)
class TopicCount:
    retained: int
    """Messages in the topic now (what retention kept)."""
    since: int
    """Of those, the ones appended at or after the time asked for."""


class KafkaOffsets:
    """The few offset questions monitoring asks of the brokers, on clients kept open.

    Keep one per process and reuse it (clients are costly to create); :meth:`close` it.
    Every call raises :class:`OffsetsUnavailable` when the brokers do not answer in
    ``timeout`` seconds.
    """

    def __init__(self, bootstrap: str, *, timeout: float = 10.0) -> None:
        self._timeout = timeout
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "socket.connection.setup.timeout.ms": int(timeout * 1000),
            "logger": _LOG,
        }
        self._config = config
        self._client: AdminClient | None = AdminClient(config)
        self._consumers: dict[str, Consumer] = {}

    def _admin(self) -> AdminClient:
        if self._client is None:
            raise OffsetsUnavailable("the Kafka offsets client is closed")
        return self._client

    def _result(self, future: Any, what: str) -> Any:
        # Every request carries request_timeout=self._timeout, so librdkafka resolves
        # its future (with an error at worst) before this wait ends: a client dropped
        # with a request still pending crashes the process (confluent-kafka 2.16).
        try:
            return future.result(timeout=self._timeout + _MARGIN_S)
        except (KafkaException, TimeoutError) as exc:
            raise OffsetsUnavailable(f"Kafka did not answer {what}: {exc}") from exc

    def groups(self, prefix: str) -> list[str]:
        """The consumer groups whose id starts with ``prefix``."""
        listed = self._result(
            self._admin().list_consumer_groups(request_timeout=self._timeout), "list groups"
        )
        return sorted(g.group_id for g in listed.valid if g.group_id.startswith(prefix))

    def _consumer(self, group: str) -> Consumer:
        # Positions are read and written through a consumer of the group (never
        # subscribed): AdminClient.list_consumer_group_offsets crashes the process after
        # a request timed out while the group coordinator was not ready (confluent-kafka
        # 2.16), which a broker that is starting or failing over gives.
        consumer = self._consumers.get(group)
        if consumer is None:
            consumer = Consumer({**self._config, "group.id": group, "enable.auto.commit": False})
            self._consumers[group] = consumer
        return consumer

    def committed(
        self, group: str, partitions: Iterable[TopicPartitionKey]
    ) -> dict[TopicPartitionKey, int]:
        """Where ``group`` has committed a position among ``partitions``, and that position."""
        asked = [TopicPartition(t, p) for t, p in partitions]
        if not asked:
            return {}
        # A group's coordinator can move or still be loading (a new group, a broker
        # starting): Kafka then answers NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS,
        # retriable, which the client resolves by asking again within the timeout.
        deadline = time.monotonic() + self._timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                answer = self._consumer(group).committed(asked, timeout=max(remaining, 0.1))
                break
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                retriable = isinstance(error, KafkaError) and (
                    error.code() in _COORDINATOR_MOVING or error.retriable()
                )
                if not retriable or remaining <= _RETRY_S:
                    raise OffsetsUnavailable(
                        f"Kafka did not give group {group}'s offsets: {exc}"
                    ) from exc
                time.sleep(_RETRY_S)
        return {(tp.topic, tp.partition): tp.offset for tp in answer if tp.offset >= 0}

    def commit(self, group: str, positions: Mapping[TopicPartitionKey, int]) -> None:
        """Set ``group``'s positions (a group nobody is a member of, as the Spark job's)."""
        if not positions:
            return
        offsets = [TopicPartition(t, p, offset) for (t, p), offset in sorted(positions.items())]
        try:
            answer = self._consumer(group).commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # a broker whose group coordinator is not ready, say
            raise OffsetsUnavailable(f"Kafka refused a commit to group {group}: {exc}") from exc
        refused = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in answer or []
                   if tp.error is not None]  # fmt: skip
        if refused:
            raise OffsetsUnavailable(f"Kafka refused a commit to group {group}: {refused}")

    def partitions(self, topics: Iterable[str]) -> list[TopicPartitionKey]:
        """Every partition of ``topics`` (topics that do not exist have none)."""
        try:
            metadata = self._admin().list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise OffsetsUnavailable(f"Kafka did not list its topics: {exc}") from exc
        out = []
        for topic in sorted(set(topics)):
            meta = metadata.topics.get(topic)
            if meta is not None and meta.error is None:
                out += [(topic, p) for p in sorted(meta.partitions)]
        return out

    def offsets(
        self, partitions: Iterable[TopicPartitionKey], spec: OffsetSpec
    ) -> dict[TopicPartitionKey, int]:
        """``spec`` (earliest, latest, for a timestamp) of each partition; -1 where the
        broker has none (no message at or after the timestamp)."""
        request = {TopicPartition(t, p): spec for t, p in partitions}
        if not request:
            return {}
        futures = self._admin().list_offsets(request, request_timeout=self._timeout)
        return {
            (tp.topic, tp.partition): self._result(future, f"the offsets of {tp.topic}").offset
            for tp, future in futures.items()
        }

    def lag(self, prefix: str, topics: Iterable[str]) -> list[PartitionLag]:
        """The lag of every group named ``prefix...`` on ``topics``, partition by partition,
        over every partition of the topics where the group has committed somewhere."""
        partitions = self.partitions(topics)
        committed = {group: self.committed(group, partitions) for group in self.groups(prefix)}
        starts = self.offsets(partitions, _EARLIEST)
        ends = self.offsets(partitions, _LATEST)
        out = []
        for group, positions in committed.items():
            consumed = {topic for topic, _p in positions}
            for tp in partitions:
                if tp[0] not in consumed:
                    continue
                start = starts.get(tp, 0)
                position = max(positions.get(tp, start), start)
                out.append(PartitionLag(group, tp[0], tp[1], position, ends.get(tp, position)))
        return out

    def count(self, topic: str, since: datetime) -> TopicCount:
        """How many messages ``topic`` holds, and how many of them arrived since ``since``."""
        partitions = self.partitions([topic])
        starts = self.offsets(partitions, _EARLIEST)
        ends = self.offsets(partitions, _LATEST)
        firsts = self.offsets(partitions, OffsetSpec.for_timestamp(int(since.timestamp() * 1000)))
        retained = sum(ends[tp] - starts[tp] for tp in partitions)
        recent = sum(ends[tp] - max(firsts[tp], starts[tp]) for tp in partitions if firsts[tp] >= 0)
        return TopicCount(retained=retained, since=recent)

    def close(self) -> None:
        """Close the group consumers and drop the admin client (it has no close(): its
        last reference going stops its threads)."""
        for consumer in self._consumers.values():
            consumer.close()
        self._consumers.clear()
        self._client = None
