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
    are rejected. (``dict=True`` only gives :attr:`time_window` somewhere to be
    cached; it is not a field.)
    """

    coins: CoinTable
    now: datetime
    max_future: timedelta = DEFAULT_MAX_FUTURE

    def __post_init__(self) -> None:
        if self.now.utcoffset() is None:
            raise HandlerConfigError(f"HandlerContext.now must be timezone-aware, got {self.now!r}")
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
