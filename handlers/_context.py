"""The per-call context every handler receives."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cached_property

import msgspec

from handlers._errors import HandlerConfigError
from handlers._symbols import CoinTable
from handlers._time import TimeWindow

DEFAULT_MAX_FUTURE = timedelta(days=1)
"""How far after its receive time a message's time may lie (clock skew, not fiction)."""


class HandlerContext(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """What a handler may know besides the payload: no clock, no environment.

    ``now`` is the receive time (aware); times more than ``max_future`` after it
    are rejected. ``record_time`` is when the pipeline first saw this one message
    (its Kafka record time: the broker's append time on the raw topics), given by
    the platform to the handlers that stamp a message carrying no time of its own
    (:data:`handlers.STAMPED_TOPICS`); ``None`` where unknown. (``dict=True`` only
    gives :attr:`time_window` somewhere to be cached; it is not a field.)
    """

    coins: CoinTable
    now: datetime
    max_future: timedelta = DEFAULT_MAX_FUTURE
    record_time: datetime | None = None

    def __post_init__(self) -> None:
        if self.now.utcoffset() is None:
            raise HandlerConfigError(f"HandlerContext.now must be timezone-aware, got {self.now!r}")
        if self.record_time is not None and self.record_time.utcoffset() is None:
            raise HandlerConfigError(
                f"HandlerContext.record_time must be timezone-aware, got {self.record_time!r}"
            )
        if self.max_future < timedelta(0):
            raise HandlerConfigError(
                f"HandlerContext.max_future must not be negative, got {self.max_future!r}"
            )
        try:
            _ = self.now + self.max_future
        except OverflowError:
            raise HandlerConfigError("HandlerContext.now + max_future is out of range") from None

    @cached_property
    def time_window(self) -> TimeWindow:
        """The accepted time range, computed on first use (a context serves a whole batch)."""
        return TimeWindow(self.now, self.max_future)


def record_context(coins: CoinTable, seen: datetime) -> HandlerContext:
    """The context of one message the pipeline first saw at ``seen`` (its Kafka record time).

    ``seen`` is both ``now`` and ``record_time``: the verdict on the message and its
    time then depend only on its bytes and that time, so every platform that reads the
    record (the ingestion flow, the Spark job) reaches the same record from it.
    """
    return HandlerContext(coins=coins, now=seen, record_time=seen)
