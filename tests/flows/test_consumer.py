"""``when_led``: a partition without a leader yet is asked again, anything else raised."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from flows._consumer import NOT_LED_YET, when_led


class Answers:
    """Raises the given Kafka error codes in turn, then answers the watermarks."""

    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)
        self.asked = 0

    def __call__(self) -> tuple[int, int]:
        self.asked += 1
        if self.codes:
            raise KafkaException(KafkaError(self.codes.pop(0)))
        return 3, 7


@pytest.mark.parametrize("code", sorted(NOT_LED_YET))
def test_a_partition_not_led_yet_is_asked_again(code: int) -> None:
    answers = Answers(code, code)
    assert when_led(answers, time.monotonic() + 10) == (3, 7)
    assert answers.asked == 3


def test_the_first_answer_is_taken() -> None:
    answers = Answers()
    assert when_led(answers, time.monotonic() + 10) == (3, 7)
    assert answers.asked == 1


@pytest.mark.parametrize(
    "code", [KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._TIMED_OUT, KafkaError._TRANSPORT]
)
def test_any_other_error_is_raised_at_once(code: int) -> None:
    answers = Answers(code)
    with pytest.raises(KafkaException) as raised:
        when_led(answers, time.monotonic() + 10)
    assert raised.value.args[0].code() == code
    assert answers.asked == 1


def test_no_leader_past_the_deadline_is_raised() -> None:
    answers = Answers(KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.NOT_LEADER_FOR_PARTITION)
    with pytest.raises(KafkaException) as raised:
        when_led(answers, time.monotonic() - 1)
    assert raised.value.args[0].code() == KafkaError.NOT_LEADER_FOR_PARTITION
    assert answers.asked == 1
