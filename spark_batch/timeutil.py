"""Timezone-aware conversions between Spark's microsecond epochs and ``datetime``.

Rows leave Spark as ``unix_micros`` integers: PySpark would otherwise hand back
naive datetimes in the driver's local zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one (UTC)")
    return (moment - EPOCH) // timedelta(microseconds=1)


def parse_iso(text: str) -> datetime:
    """ISO-8601 with an offset or ``Z`` -> aware UTC datetime (naive input is rejected)."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone; add Z or an offset such as +00:00")
    return value.astimezone(UTC)
