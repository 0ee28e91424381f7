"""Timestamp parsing: epoch seconds/milliseconds or ISO-8601 with a zone, to UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal

from handlers._numbers import to_decimal

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GENESIS = datetime(2009, 1, 3, tzinfo=UTC)
"""The Bitcoin genesis block: nothing this pipeline handles can be older."""

_GENESIS_EPOCH = Decimal(int((GENESIS - EPOCH).total_seconds()))
_MS_THRESHOLD = Decimal(10) ** 11
"""Epoch values at or above this are milliseconds (1e11 s would be the year 5138)."""
_MICRO = Decimal(1_000_000)
_UNBOUNDED = Context(prec=60, Emax=MAX_EMAX, Emin=MIN_EMIN)
"""Arithmetic on untrusted epoch values must not trap on huge exponents (1e999999999)."""
_MAX_ISO_TEXT = 64
_ISO_MICROS_Z = len("2026-03-15T11:25:19.200068Z")
"""The length of the producers' ISO form (see the fast path in parse_time_within)."""
_LONG_FRACTION = re.compile(r"(\.[0-9]{6})[0-9]+")
_GENESIS_MS = _GENESIS_EPOCH * 1000
_MICROSECOND = timedelta(microseconds=1)
"""``EPOCH + _MICROSECOND * n`` is exact and much cheaper than ``timedelta(microseconds=n)``."""
_MILLISECOND = timedelta(milliseconds=1)
_SECOND = timedelta(seconds=1)


def _epoch_limit(moment: datetime) -> Decimal:
    micros = (moment - EPOCH) // timedelta(microseconds=1)
    return Decimal(micros) / _MICRO


class TimeWindow:
    """The accepted time range for one ``now``/``max_future``: GENESIS to ``now + max_future``.

    Its bounds (a datetime and epoch seconds/milliseconds) are computed once per
    :class:`~handlers.HandlerContext` (see ``HandlerContext.time_window``) instead
    of once per timestamp field: that arithmetic used to cost more than the
    conversion itself.
    """

    __slots__ = (
        "_too_late",
        "latest",
        "latest_epoch",
        "max_future",
        "ms_max",
        "now",
        "seconds_max",
    )

    def __init__(self, now: datetime, max_future: timedelta) -> None:
        self.now = now
        self.max_future = max_future
        self.latest = now + max_future
        self.latest_epoch = _epoch_limit(self.latest)
        # Upper bounds of the fast path in parse_time_within. Epoch seconds only while
        # the window ends below the milliseconds threshold (year 5138), else None.
        self.seconds_max = self.latest_epoch if self.latest_epoch < _MS_THRESHOLD else None
        self.ms_max = _UNBOUNDED.multiply(self.latest_epoch, 1000)
        self._too_late = ""

    def too_late(self) -> ValueError:
        """The error for a time after :attr:`latest` (its text is built once)."""
        if not self._too_late:
            span, now = _span(self.max_future), iso_utc(self.now)
            self._too_late = f"must not be more than {span} after now ({now})"
        return ValueError(self._too_late)


def _check_range(when: datetime, window: TimeWindow) -> datetime:
    if when < GENESIS:
        raise ValueError("must not be before 2009-01-03T00:00:00Z")
    if when > window.latest:
        raise window.too_late()
    return when


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds and seconds % 86400 == 0:
        days = seconds / 86400
        return f"{days:g} day" if days == 1 else f"{days:g} days"
    return f"{seconds:g} s"


def _from_epoch(value: Decimal, window: TimeWindow) -> datetime:
    if not value.is_finite():
        raise ValueError("must be a finite epoch time")
    seconds = _UNBOUNDED.divide(value, 1000) if value.copy_abs() >= _MS_THRESHOLD else value
    if seconds < _GENESIS_EPOCH:
        raise ValueError("must not be before 2009-01-03T00:00:00Z")
    if seconds > window.latest_epoch:
        raise window.too_late()
    micros = int(_UNBOUNDED.multiply(seconds, _MICRO).to_integral_value(ROUND_HALF_EVEN))
    return EPOCH + timedelta(microseconds=micros)


def _from_iso(text: str, window: TimeWindow) -> datetime:
    text = text.strip()
    if not text or len(text) > _MAX_ISO_TEXT:
        raise ValueError("must be epoch seconds, epoch milliseconds or ISO-8601 with a timezone")
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    long_fraction = _LONG_FRACTION.search(text)  # (search: sub() costs ten times more)
    if long_fraction is not None:  # nanoseconds -> microseconds
        text = text[: long_fraction.start()] + long_fraction[1] + text[long_fraction.end() :]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "must be epoch seconds, epoch milliseconds or ISO-8601 with a timezone"
        ) from None
    if parsed.utcoffset() is None:
        raise ValueError("ISO-8601 time must carry a timezone offset or 'Z'")
    try:
        return _check_range(parsed.astimezone(UTC), window)
    except OverflowError:
        raise ValueError("is out of range") from None


def parse_time(value: object, *, now: datetime, max_future: timedelta) -> datetime:
    """Parse an exchange/message time to an aware UTC ``datetime``.

    Numbers (and numeric strings) are epoch seconds, or epoch milliseconds when
    their magnitude is at least 1e11. Other strings must be ISO-8601 with a zone
    (``Z`` or an offset); more than six fractional digits are truncated to
    microseconds. Raises ``ValueError`` whose message completes the phrase
    "field 'x': ...".
    """
    return parse_time_within(value, TimeWindow(now, max_future))


def parse_time_within(value: object, window: TimeWindow) -> datetime:
    """:func:`parse_time` with the range given as a precomputed :class:`TimeWindow`."""
    # Fast path for JSON numbers inside the window (nearly every message): epoch
    # seconds, Decimal or int, or int epoch milliseconds. A comparison or two with
    # precomputed bounds, then integer microseconds; Decimal seconds are scaled
    # and rounded as in _from_epoch (scaleb(6) equals its multiplication by 10**6,
    # rounding included, and is cheaper), so the result is the same.
    seconds_max = window.seconds_max
    if type(value) is Decimal:
        if (
            seconds_max is not None
            and value.is_finite()  # (comparing NaN raises)
            and _GENESIS_EPOCH <= value <= seconds_max
        ):
            scaled = value.scaleb(6, _UNBOUNDED)
            micros = int(scaled)  # truncated: exact unless sub-microsecond digits remain
            if micros != scaled:
                micros = int(scaled.to_integral_value(ROUND_HALF_EVEN))
            return EPOCH + _MICROSECOND * micros
    elif type(value) is int:
        if seconds_max is not None and _GENESIS_EPOCH <= value <= seconds_max:
            return EPOCH + _SECOND * value
        if _GENESIS_MS <= value <= window.ms_max:
            return EPOCH + _MILLISECOND * value
    elif (
        type(value) is str and len(value) == _ISO_MICROS_Z and value[19] == "." and value[-1] == "Z"
    ):
        # The producers' ISO form, "2026-03-15T11:25:19.200068Z" (the exchange time of
        # every full ticker). Python 3.11 reads the "Z" itself; and when it reads this
        # text at all, the "." is its one fraction separator, followed by at most six
        # digits, so _from_iso would have nothing to strip or truncate and would parse
        # the same instant (already UTC, which astimezone keeps). Its to_decimal() and
        # regular expressions cost ten times the parse. Anything else, out-of-window
        # times included, goes the general way, which words the error.
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if GENESIS <= parsed <= window.latest:
                return parsed
    number = to_decimal(value)
    if number is not None:
        return _from_epoch(number, window)
    if isinstance(value, str):
        return _from_iso(value, window)
    raise ValueError("must be epoch seconds, epoch milliseconds or ISO-8601 with a timezone")


def _require_aware(moment: datetime) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} (a timezone is required)")
    return moment.astimezone(UTC)


def iso_utc(moment: datetime) -> str:
    """``moment`` as ISO-8601 UTC with microseconds and a ``Z`` suffix (aware input only)."""
    utc = _require_aware(moment)
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def epoch_seconds(moment: datetime) -> float:
    """``moment`` as float epoch seconds (aware input only); exact to the microsecond."""
    utc = _require_aware(moment)
    return (utc - EPOCH) / timedelta(seconds=1)
