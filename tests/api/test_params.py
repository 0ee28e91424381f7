"""Range, date, limit and cursor parsing (no server needed)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.errors import BadRequest
from api.params import (
    CursorState,
    TimeRange,
    decode_cursor,
    encode_cursor,
    floor_to,
    page_request,
    parse_date,
    resolve_range,
)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
MAX = timedelta(days=90)


def resolve(
    periode: str | None = None, debut: str | None = None, fin: str | None = None
) -> TimeRange:
    return resolve_range(periode=periode, date_debut=debut, date_fin=fin, now=NOW, max_range=MAX)


@pytest.mark.parametrize(
    "raw",
    [
        "2026-01-15T10:00:00Z",
        "2026-01-15T10:00:00+00:00",
        "2026-01-15T12:00:00+02:00",
        "2026-01-15T12:00:00 02:00",  # '+' decoded as a space
        "2026-01-15T05:00:00-05:00",
        "1768471200",
        "1768471200.0",
        "2026-01-15T10:00:00",  # no offset: UTC, as the prototype read it
        "2026-01-15T10:00",
    ],
)
def test_date_forms(raw: str) -> None:
    assert parse_date("date_debut", raw) == datetime(2026, 1, 15, 10, tzinfo=UTC)


def test_a_date_alone_is_utc_midnight() -> None:
    assert parse_date("date_debut", "2026-01-15") == datetime(2026, 1, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("", "empty"),
        ("15/01/2026", "ISO-8601"),
        ("1e10", "ISO-8601"),
        ("9" * 13, "ISO-8601"),
        ("1969-12-31T23:59:59Z", "between"),
        ("2100-01-02T00:00:00Z", "between"),
        ("-1", "between"),
        ("x" * 100, "too long"),
    ],
)
def test_bad_dates(raw: str, words: str) -> None:
    with pytest.raises(BadRequest) as exc:
        parse_date("date_fin", raw)
    assert exc.value.parameter == "date_fin"
    assert words in exc.value.detail


def test_range_rules() -> None:
    h = timedelta(hours=1)
    assert resolve() == TimeRange(NOW - 24 * h, NOW)
    assert resolve("1h") == TimeRange(NOW - h, NOW)
    assert resolve("7d", debut="2026-01-01T00:00:00Z") == TimeRange(
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 8, tzinfo=UTC)
    )
    assert resolve("30m", fin="2026-01-01T00:00:00Z") == TimeRange(
        datetime(2025, 12, 31, 23, 30, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert resolve(debut="2026-01-01T00:00:00Z") == TimeRange(
        datetime(2026, 1, 1, tzinfo=UTC), None
    )
    assert resolve(fin="2026-01-01T00:00:00Z") == TimeRange(None, datetime(2026, 1, 1, tzinfo=UTC))
    exactly_max = resolve(debut="2025-10-01T00:00:00Z", fin="2025-12-30T00:00:00Z")
    assert exactly_max.end is not None
    with pytest.raises(BadRequest, match="maximum of 90 days"):
        resolve(debut="2025-10-01T00:00:00Z", fin="2025-12-30T00:00:01Z")
    with pytest.raises(BadRequest, match="before"):
        resolve(debut="2026-01-01T00:00:00Z", fin="2026-01-01T00:00:00Z")
    with pytest.raises(BadRequest, match="accepted values"):
        resolve("3d")


def test_limit_bounds() -> None:
    def page(limit: int | None) -> int:
        return page_request(
            scope="s", periode=None, date_debut=None, date_fin=None, limit=limit, cursor=None,
            now=NOW, max_range=MAX, default_limit=100, max_limit=1000,
        ).limit  # fmt: skip

    assert page(None) == 100
    assert page(1) == 1
    assert page(1000) == 1000
    for bad in (0, -1, 1001):
        with pytest.raises(BadRequest, match="1 to 1000"):
            page(bad)


def test_cursor_round_trip_and_scope() -> None:
    state = CursorState("ticker|BTC/USD", NOW - timedelta(days=1), NOW, ("k",))
    token = encode_cursor(state)
    assert decode_cursor(token, "ticker|BTC/USD") == state
    with pytest.raises(BadRequest):
        decode_cursor(token, "ticker|ETH/USD")
    forged = [
        CursorState("ticker|BTC/USD", None, NOW, ("nul\x00",)),
        CursorState("ticker|BTC/USD", None, NOW, ("a", "b", "c")),
        CursorState("ticker|BTC/USD", None, NOW, ("x" * 600,)),
    ]
    for bad in (
        "",
        "!!!",
        "e30",
        encode_cursor(state)[:-3],
        "A" * 5000,
        *map(encode_cursor, forged),
    ):
        with pytest.raises(BadRequest):
            decode_cursor(bad, "ticker|BTC/USD")


@given(st.text(max_size=200))
def test_any_cursor_text_is_a_400_or_valid(raw: str) -> None:
    with contextlib.suppress(BadRequest):
        decode_cursor(raw, "scope")


@given(st.text(max_size=80))
def test_any_date_text_is_a_400_or_an_aware_utc_date(raw: str) -> None:
    try:
        value = parse_date("date_debut", raw)
    except BadRequest:
        return
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


@given(
    st.datetimes(
        # hypothesis takes naive bounds and attaches the time zone itself
        min_value=datetime(1970, 1, 1, tzinfo=UTC).replace(tzinfo=None),
        max_value=datetime(2099, 1, 1, tzinfo=UTC).replace(tzinfo=None),
        timezones=st.just(UTC),
    ),
    st.sampled_from(
        [timedelta(minutes=1), timedelta(minutes=15), timedelta(hours=4), timedelta(days=1)]
    ),
)
def test_floor_to_buckets(moment: datetime, width: timedelta) -> None:
    start = floor_to(moment, width)
    assert start <= moment < start + width
    assert (start - datetime(2000, 1, 1, tzinfo=UTC)) % width == timedelta(0)
