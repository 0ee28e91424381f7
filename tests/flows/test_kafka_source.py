"""The ingestion flows' Kafka source on the real broker: whole polls, offsets, resume."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from bytewax.testing import TestingSink, TestingSource
from confluent_kafka import Message

from flows._consumer import CONSUMER_CONFIG
from flows._kafka_source import (
    EPOCH_LEAD_S,
    EPOCH_MARGIN_S,
    IDLE_BACKOFF_MAX_S,
    POLL_TIMEOUT_S,
    RECENT_CLOSES,
    SHRINK,
    TOLERANCE_S,
    EpochPacer,
    KafkaBatchSource,
)
from flows._parse import RawBatch
from flows.ingest import build_ingest_flow
from infra.settings import Settings
from tests.flows.conftest import produce

pytestmark = pytest.mark.integration


def drain(source: KafkaBatchSource, part: str, resume: int | None, n: int) -> tuple[
    list[RawBatch], int
]:  # fmt: skip
    """Poll one partition until ``n`` messages came; the batches and the resume state."""
    partition = source.build_part("ingest.kafka_in.kafka_input", part, resume)
    batches: list[RawBatch] = []
    deadline = time.monotonic() + 60
    try:
        while sum(len(b.messages) for b in batches) < n:
            assert time.monotonic() < deadline, f"{part}: only {batches} after 60 s"
            batches.extend(partition.next_batch())
        return batches, partition.snapshot()
    finally:
        partition.close()


def test_a_poll_is_one_batch_of_librdkafka_messages_and_resumes_after_its_last_offset(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("rawticker", 1)
    produce(kafka_bootstrap, topic, [b"m%d" % i for i in range(25)])
    source = KafkaBatchSource([kafka_bootstrap], topic, batch_size=10,
                              add_config=dict(CONSUMER_CONFIG))  # fmt: skip
    assert source.list_parts() == [f"0-{topic}"], "Bytewax's KafkaSource names"

    batches, resume = drain(source, f"0-{topic}", None, 25)
    assert all(b.key == "0" and 0 < len(b.messages) <= 10 for b in batches)
    messages = [m for b in batches for m in b.messages]
    assert all(isinstance(m, Message) for m in messages), "no per-message dataclass"
    assert [m.value() for m in messages if isinstance(m, Message)] == [
        b"m%d" % i for i in range(25)
    ]
    assert resume == 25, "the next offset to read"

    produce(kafka_bootstrap, topic, [b"late"])
    again, resume = drain(source, f"0-{topic}", 25, 1)
    assert [m.value() for b in again for m in b.messages if isinstance(m, Message)] == [b"late"]
    assert resume == 26


def test_the_input_keeps_the_step_id_of_bytewax_kafka_input(
    stack: Settings, kafka_bootstrap: str
) -> None:
    """Recovery snapshots are stored by step id and partition name: a worker upgraded from
    ``kop.input`` resumes from the offsets it had reached (same ids, same int state)."""
    flow = build_ingest_flow("rawticker", stack.with_servers(kafka=kafka_bootstrap),
                             db_sink=TestingSink([]), dlq_sink=TestingSink([]))  # fmt: skip
    [kafka_in] = [step for step in flow.substeps if step.step_name == "kafka_in"]
    assert [step.step_id for step in kafka_in.substeps] == ["ingest_rawticker.kafka_in.kafka_input"]
    tested = build_ingest_flow("rawticker", stack, source=TestingSource([]),
                               db_sink=TestingSink([]), dlq_sink=TestingSink([]))  # fmt: skip
    names = [step.step_name for step in tested.substeps]
    assert names[:2] == ["kafka_in", "batch"], "a TestingSource's items are grouped into batches"


def test_an_idle_partition_is_polled_less_and_less_often_until_a_message_comes(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("rawticker", 1)
    source = KafkaBatchSource([kafka_bootstrap], topic, batch_size=10,
                              add_config=dict(CONSUMER_CONFIG))  # fmt: skip
    partition = source.build_part("ingest.kafka_in.kafka_input", f"0-{topic}", None)
    try:
        assert partition.next_awake() is None, "polled at once at the start"
        # The wait doubles from the poll's 1 ms up to the cap: each awake time lies that
        # long after the poll returned (bounded by clock readings around the call, so
        # the check holds on a loaded machine too).
        expected = [0.001, 0.002, 0.004, 0.008, 0.016, IDLE_BACKOFF_MAX_S, IDLE_BACKOFF_MAX_S]
        assert expected[0] == POLL_TIMEOUT_S
        for wait in expected:
            before = datetime.now(UTC)
            assert partition.next_batch() == []
            after = datetime.now(UTC)
            awake = partition.next_awake()
            assert awake is not None
            assert before + timedelta(seconds=wait) <= awake <= after + timedelta(seconds=wait)

        produce(kafka_bootstrap, topic, [b"after a quiet spell"])
        deadline = time.monotonic() + 30
        got: list[RawBatch] = []
        while not got:
            assert time.monotonic() < deadline
            got = partition.next_batch()
        assert partition.next_awake() is None, "a partition with messages is polled at once"
    finally:
        partition.close()


EPOCH_S = 1.0
END = EPOCH_S + EPOCH_MARGIN_S
"""Where a read surely ends the first epoch (started at 0), by the pacer's clock."""


def _close(pacer: EpochPacer, at: float, lasting: float) -> float:
    """A busy partition's read at ``at`` ends an epoch: the wait asked; the next read
    comes when the close is over (``lasting``), and not before the wait is."""
    pacer.read(at)
    asked = pacer.wake(at) - at
    pacer.ended(at)
    pacer.read(at + max(lasting, asked))
    return asked


@pytest.mark.parametrize(
    ("closes", "asked"),
    [
        # The first close is not known yet: nothing asked; its length is asked next time.
        ([0.3, 0.3], [0.0, 0.3]),
        # A close that ends within the wait counts as a fifth less, which is asked next.
        ([0.3, 0.0, 0.0], [0.0, 0.3, 0.3 * SHRINK]),
        ([TOLERANCE_S / 2, 0.0], [0.0, 0.0]),
        # The shortest recent close is asked, so one long close delays nothing.
        ([0.1, 0.4, 0.4], [0.0, 0.1, 0.1]),
        ([0.1, 0.4, 0.4, 0.4], [0.0, 0.1, 0.1, 0.1]),
        # ... until it ages out of the last RECENT_CLOSES.
        ([0.1] + [0.4] * RECENT_CLOSES + [0.0], [0.0] + [0.1] * RECENT_CLOSES + [0.4]),
        # Never half an epoch or more.
        ([0.9, 0.9], [0.0, EPOCH_S / 2]),
    ],
)
def test_the_pacer_asks_the_shortest_recent_close_at_each_epoch_end(
    closes: list[float], asked: list[float]
) -> None:
    pacer = EpochPacer(EPOCH_S, started=0.0)
    # Bytewax starts the next epoch when it ends one: the ending reads lie an epoch (and
    # a little more than the margin) apart.
    got = [_close(pacer, (n + 1) * (END + EPOCH_MARGIN_S), close) for n, close in enumerate(closes)]
    assert got == pytest.approx(asked)


@pytest.mark.parametrize(
    ("read_at", "natural", "wake"),
    [
        # Mid-epoch: read as the poll's backoff says.
        (0.5, 0.5, 0.5),
        (0.5, 0.52, 0.52),
        # A read due just before the end could end the epoch in Bytewax's clock or not:
        # put off until the end is sure, so that read asks for the wait.
        (EPOCH_S - 0.02, EPOCH_S - EPOCH_LEAD_S, END),
        (EPOCH_S - 0.001, EPOCH_S - 0.001, END),
        (EPOCH_S, EPOCH_S + EPOCH_MARGIN_S / 2, END),
        # Earlier than that, or due after the end, nothing changes.
        (EPOCH_S - 0.05, EPOCH_S - 0.02, EPOCH_S - 0.02),
        (EPOCH_S - 0.01, END + 0.01, END + 0.01),
        # A read at or after the sure end asks for the close's wait (0.3 here) ...
        (END, END, END + 0.3),
        # ... or for the poll's backoff, if that is longer.
        (END, END + 0.5, END + 0.5),
    ],
)
def test_the_pacer_wakes_the_read_that_surely_ends_the_epoch_and_only_it_waits(
    read_at: float, natural: float, wake: float
) -> None:
    pacer = EpochPacer(EPOCH_S, started=0.0, closes=deque([0.3]))
    pacer.read(read_at)
    assert pacer.wake(natural) == pytest.approx(wake)
    assert pacer.asked_s == (0.3 if read_at >= END else 0.0)


def test_reads_within_an_epoch_leave_the_learned_wait_alone() -> None:
    pacer = EpochPacer(EPOCH_S, started=0.0, closes=deque([0.3]))
    for now in (0.1, 0.2, 0.7):
        pacer.read(now)
        pacer.wake(now)
    assert pacer.wait_s == 0.3


def test_a_close_within_the_tolerance_of_the_wait_counts_as_within_it() -> None:
    pacer = EpochPacer(EPOCH_S, started=0.0, closes=deque([0.2]))
    _close(pacer, END, 0.2 * 1.1 + TOLERANCE_S / 2)
    assert pacer.wait_s == pytest.approx(0.2 * SHRINK)


def test_a_close_the_pacer_did_not_wait_for_is_learned_whole() -> None:
    # Bytewax ended the epoch in an activation the pacer could not be sure of: the input
    # spun through the close, which is asked next time.
    pacer = EpochPacer(EPOCH_S, started=0.0, closes=deque([0.2]))
    pacer.read(EPOCH_S)
    assert pacer.wake(EPOCH_S) == END
    pacer.ended(EPOCH_S)
    pacer.read(EPOCH_S + 0.15)
    assert pacer.wait_s == pytest.approx(0.15)
