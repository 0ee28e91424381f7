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
_LONG_FRACTION = re.compile(r"(\.[0-9]{6})[0-9]+")


def _epoch_limit(moment: datetime) -> Decimal:
    micros = (moment - EPOCH) // timedelta(microseconds=1)
    return Decimal(micros) / _MICRO


def _check_range(when: datetime, now: datetime, max_future: timedelta) -> datetime:
    if when < GENESIS:
        raise ValueError("must not be before 2009-01-03T00:00:00Z")
    if when > now + max_future:
        raise ValueError(f"must not be more than {_span(max_future)} after now ({iso_utc(now)})")
    return when


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds and seconds % 86400 == 0:
        days = seconds / 86400
        return f"{days:g} day" if days == 1 else f"{days:g} days"
    return f"{seconds:g} s"


def _from_epoch(value: Decimal, now: datetime, max_future: timedelta) -> datetime:
    if not value.is_finite():
        raise ValueError("must be a finite epoch time")
    seconds = _UNBOUNDED.divide(value, 1000) if value.copy_abs() >= _MS_THRESHOLD else value
    if seconds < _GENESIS_EPOCH:
        raise ValueError("must not be before 2009-01-03T00:00:00Z")
    if seconds > _epoch_limit(now + max_future):
        raise ValueError(f"must not be more than {_span(max_future)} after now ({iso_utc(now)})")
    micros = int(_UNBOUNDED.multiply(seconds, _MICRO).to_integral_value(ROUND_HALF_EVEN))
    return EPOCH + timedelta(microseconds=micros)


def _from_iso(text: str, now: datetime, max_future: timedelta) -> datetime:
    text = text.strip()
    if not text or len(text) > _MAX_ISO_TEXT:
        raise ValueError("must be epoch seconds, epoch milliseconds or ISO-8601 with a timezone")
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    text = _LONG_FRACTION.sub(r"\1", text, count=1)  # nanoseconds -> microseconds
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "must be epoch seconds, epoch milliseconds or ISO-8601 with a timezone"
        ) from None
    if parsed.utcoffset() is None:
        raise ValueError("ISO-8601 time must carry a timezone offset or 'Z'")
    try:
        return _check_range(parsed.astimezone(UTC), now, max_future)
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
    number = to_decimal(value)
    if number is not None:
        return _from_epoch(number, now, max_future)
    if isinstance(value, str):
        return _from_iso(value, now, max_future)
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
