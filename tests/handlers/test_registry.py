"""The topic registry, the handler context and the error hierarchy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handlers import (
    HANDLERS,
    Handler,
    HandlerConfigError,
    HandlerContext,
    HandlerError,
    Rejection,
    UnknownTopicError,
    handler_for,
    parse_alert,
    parse_article,
    parse_ticker,
    parse_trade,
)
from tests.handlers._support import COINS, ctx, encode, seed


def test_registry_maps_the_four_raw_topics() -> None:
    assert dict(HANDLERS) == {
        "rawticker": parse_ticker,
        "rawtrade": parse_trade,
        "rawarticle": parse_article,
        "rawalert": parse_alert,
    }
    with pytest.raises(TypeError):
        HANDLERS["x"] = parse_ticker  # type: ignore[index]


@pytest.mark.parametrize("topic", ["rawticker", "rawtrade", "rawarticle", "rawalert"])
def test_handler_for_dispatches_seed_messages(topic: str) -> None:
    handler: Handler = handler_for(topic)
    result = handler(encode(seed(topic, "seed")), ctx())
    assert not isinstance(result, Rejection), result


@pytest.mark.parametrize("topic", ["rawTicker", "deadletter", ""])
def test_unknown_topic(topic: str) -> None:
    with pytest.raises(UnknownTopicError) as info:
        handler_for(topic)
    assert isinstance(info.value, HandlerError)
    assert info.value.detail == (
        f"no handler for topic {topic!r} (known: rawticker, rawtrade, rawarticle, rawalert)"
    )


def test_unhashable_topic_is_unknown_too() -> None:
    with pytest.raises(UnknownTopicError):
        handler_for(["rawticker"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "max_future", "message"),
    [
        (datetime(2026, 1, 1), timedelta(days=1), "must be timezone-aware"),  # noqa: DTZ001
        (datetime(2026, 1, 1, tzinfo=UTC), timedelta(seconds=-1), "must not be negative"),
        (datetime.max.replace(tzinfo=UTC), timedelta(days=1), "out of range"),
    ],
)
def test_context_validation(now: datetime, max_future: timedelta, message: str) -> None:
    with pytest.raises(HandlerConfigError, match=message) as info:
        HandlerContext(coins=COINS, now=now, max_future=max_future)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, HandlerError)


def test_context_is_frozen_and_defaults_to_one_day() -> None:
    context = HandlerContext(coins=COINS, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert context.max_future == timedelta(days=1)
    with pytest.raises(AttributeError):
        context.now = datetime(2027, 1, 1, tzinfo=UTC)  # type: ignore[misc]
