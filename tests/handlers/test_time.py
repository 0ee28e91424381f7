"""Timestamp parsing and formatting: epoch s/ms, ISO-8601 with zone, UTC, range checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers import epoch_seconds, iso_utc
from handlers._time import parse_time
from tests.handlers._support import NOW, utc

DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1764310291, utc(2025, 11, 28, 6, 11, 31)),
        (Decimal("1764310291.123456"), utc(2025, 11, 28, 6, 11, 31, 123456)),
        (Decimal("1764310291.1234567"), utc(2025, 11, 28, 6, 11, 31, 123457)),
        (1764310291123, utc(2025, 11, 28, 6, 11, 31, 123000)),
        (Decimal("1764310291123.5"), utc(2025, 11, 28, 6, 11, 31, 123500)),
        ("1764310291", utc(2025, 11, 28, 6, 11, 31)),
        (1764310291.5, utc(2025, 11, 28, 6, 11, 31, 500000)),
        ("2025-11-28T06:11:31Z", utc(2025, 11, 28, 6, 11, 31)),
        ("2025-11-28t06:11:31z", utc(2025, 11, 28, 6, 11, 31)),
        ("2025-11-28T06:11:31.200068Z", utc(2025, 11, 28, 6, 11, 31, 200068)),
        ("2026-03-15T11:26:00.000000000Z", utc(2026, 3, 15, 11, 26)),
        ("2025-11-28T08:11:31+02:00", utc(2025, 11, 28, 6, 11, 31)),
        ("2025-11-28 06:11:31-05:30", utc(2025, 11, 28, 11, 41, 31)),
        ("  2025-11-28T06:11:31Z ", utc(2025, 11, 28, 6, 11, 31)),
        ("2009-01-03T00:00:00Z", utc(2009, 1, 3)),
    ],
)
def test_parse_time_accepts(raw: object, expected: datetime) -> None:
    parsed = parse_time(raw, now=NOW, max_future=DAY)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("2025-11-28T06:11:31", "must carry a timezone"),
        ("2025-11-28", "must carry a timezone"),
        ("", "ISO-8601 with a timezone"),
        ("x" * 65, "ISO-8601 with a timezone"),
        ("not a time", "ISO-8601 with a timezone"),
        (Decimal("NaN"), "must be a finite epoch time"),
        (Decimal("Infinity"), "must be a finite epoch time"),
        (float("inf"), "must be a finite epoch time"),
        (None, "ISO-8601 with a timezone"),
        ([1], "ISO-8601 with a timezone"),
        (1230940799, "must not be before 2009-01-03"),
        ("2009-01-02T23:59:59Z", "must not be before 2009-01-03"),
        (-5, "must not be before 2009-01-03"),
        (Decimal("-1e400"), "must not be before 2009-01-03"),
        (Decimal("1e400"), "must not be more than 1 day after now"),
        (Decimal("1e999999999"), "must not be more than 1 day after now"),
        (Decimal("-1e999999999"), "must not be before 2009-01-03"),
        (Decimal("1e-999999999"), "must not be before 2009-01-03"),
        (NOW.timestamp() + 86400.5, "must not be more than 1 day after now"),
        ("0001-01-01T00:00:00+01:00", "is out of range"),
        ("9999-12-31T23:59:59-01:00", "is out of range"),
    ],
)
def test_parse_time_rejects(raw: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_time(raw, now=NOW, max_future=DAY)


def test_max_future_is_configurable() -> None:
    later = NOW + timedelta(hours=2)
    assert parse_time(later.isoformat(), now=NOW, max_future=timedelta(hours=3)) == later
    with pytest.raises(ValueError, match="more than 3600 s after now"):
        parse_time(later.isoformat(), now=NOW, max_future=timedelta(hours=1))
    with pytest.raises(ValueError, match="more than 2 days after now"):
        parse_time(NOW.timestamp() + 3 * 86400, now=NOW, max_future=2 * DAY)
    with pytest.raises(ValueError, match="more than 0 s after now"):
        parse_time(NOW.timestamp() + 1, now=NOW, max_future=timedelta(0))


def test_formatting() -> None:
    moment = datetime(2026, 3, 15, 12, 25, 19, 200068, tzinfo=timezone(timedelta(hours=1)))
    assert iso_utc(moment) == "2026-03-15T11:25:19.200068Z"
    assert epoch_seconds(moment) == 1773573919.200068
    naive = datetime(2026, 1, 1)  # noqa: DTZ001
    with pytest.raises(ValueError, match="naive datetime"):
        iso_utc(naive)
    with pytest.raises(ValueError, match="naive datetime"):
        epoch_seconds(naive)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(2009, 1, 3),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=datetime(2026, 10, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    )
)
def test_epoch_float_and_iso_round_trip_to_the_microsecond(moment: datetime) -> None:
    aware = moment
    assert parse_time(epoch_seconds(aware), now=NOW, max_future=DAY) == aware
    assert parse_time(repr(epoch_seconds(aware)), now=NOW, max_future=DAY) == aware
    assert parse_time(iso_utc(aware), now=NOW, max_future=DAY) == aware
