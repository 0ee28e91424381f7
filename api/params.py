"""Query parameters shared by the history endpoints: range, limit and cursor.

Every rejection is a :class:`~api.errors.BadRequest` naming the parameter and the
accepted values. Ranges are resolved against an explicit ``now`` (no clock
here), so tests can pin time.

Range rules (``periode`` and/or ``date_debut`` / ``date_fin``):

* nothing: the last 24 hours;
* ``periode`` alone: the last ``periode`` up to now; ``live``: WebSocket URLs instead;
* ``periode`` + ``date_debut``: ``[date_debut, date_debut + periode]``;
  ``periode`` + ``date_fin``: ``[date_fin - periode, date_fin]``;
* ``date_debut`` and ``date_fin``: that range, at most ``max_range_days`` long;
* ``date_debut`` or ``date_fin`` alone: an open range (paged, so never unbounded work).

Dates are ISO-8601 (``2024-01-15T14:30:00Z``, ``2024-01-15T16:30:00+02:00``; without
an offset, ``2024-01-15T14:30:00`` or ``2024-01-15``, they are UTC, as the prototype read
them) or Unix epoch seconds (``1705329000``). Each history body states the range served
(``date_debut``, ``date_fin``).

Paging is keyset: a page's ``next`` cursor continues it. The prototype's page numbers
(``page``, ``page_size``) are refused with a 400 that says so (``page=1``, the first
page, is accepted), rather than answering every number with the first page. Listings
that are not paged (the configuration's, ``/cryptos/``, ``/predictions/{coin}/`` and its
``accuracy/``: every row in one answer) refuse them the same way rather than answering
the whole list again.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import msgspec

from api.errors import BadRequest

Periode = Literal["1m", "5m", "15m", "30m", "1h", "6h", "12h", "24h", "7d", "30d", "live"]
Interval = Literal["1m", "5m", "15m", "1h", "4h", "1d"]

PERIODES: Final[dict[str, timedelta]] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "12h": timedelta(hours=12),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
INTERVALS: Final[dict[str, timedelta]] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}
DEFAULT_PERIODE: Final = "24h"

# Bounds of accepted dates: wide enough for any real query, narrow enough that
# no arithmetic on them (periode offsets, bucket rounding) can overflow.
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
# Stand-ins for an open end, so SQL stays one static statement with index range scans.
OPEN_START: Final = datetime(1900, 1, 1, tzinfo=UTC)
OPEN_END: Final = datetime(2200, 1, 1, tzinfo=UTC)
# Bucket origin shared with the SQL (date_bin origin of the plain flavour's views).
BUCKET_ORIGIN: Final = datetime(2000, 1, 1, tzinfo=UTC)

_DATE_FORMS = (
    "an ISO-8601 date or date-time (2024-01-15, 2024-01-15T14:30:00Z, "
    "2024-01-15T16:30:00+02:00; UTC without an offset) or Unix epoch seconds (1705329000)"
)
_EPOCH = re.compile(r"^-?\d{1,12}(\.\d{1,9})?$")
# A '+' left unencoded in a query string arrives as a space: "...:00 02:00".
_SPACED_OFFSET = re.compile(r"^(.*\d)\s(\d{2}(?::?\d{2})?)$")
MAX_CURSOR_CHARS: Final = 1024


class TimeRange(msgspec.Struct, frozen=True):
    """Inclusive bounds; ``None`` means open on that side."""

    start: datetime | None
    end: datetime | None

    @property
    def lo(self) -> datetime:
        return self.start or OPEN_START

    @property
    def hi(self) -> datetime:
        return self.end or OPEN_END


def parse_date(name: str, raw: str) -> datetime:
    """One date parameter as an aware UTC datetime."""
    text = raw.strip()
    if not text or len(text) > 64:
        raise BadRequest(f"{name} is empty or too long; expected {_DATE_FORMS}", parameter=name)
    if _EPOCH.match(text):
        try:
            value = datetime.fromtimestamp(float(text), tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise BadRequest(
                f"{name}={raw!r} is out of range; expected a date between "
                f"{EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}",
                parameter=name,
            ) from None
    else:
        spaced = _SPACED_OFFSET.match(text)
        if spaced is not None:
            text = f"{spaced[1]}+{spaced[2]}"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise BadRequest(
                f"{name}={raw!r} is not a valid date; expected {_DATE_FORMS}", parameter=name
            ) from None
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=UTC)  # no offset: UTC, as the prototype read it
        try:
            value = value.astimezone(UTC)
        except (OverflowError, ValueError):
            value = EARLIEST - timedelta(days=1)  # reported as out of range just below
    if not EARLIEST <= value <= LATEST:
        raise BadRequest(
            f"{name}={raw!r} is out of range; expected a date between "
            f"{EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}",
            parameter=name,
        )
    return value


def resolve_range(
    *,
    periode: str | None,
    date_debut: str | None,
    date_fin: str | None,
    now: datetime,
    max_range: timedelta,
) -> TimeRange:
    """The time range selected by the parameters (see the module docstring)."""
    start = parse_date("date_debut", date_debut) if date_debut is not None else None
    end = parse_date("date_fin", date_fin) if date_fin is not None else None
    if periode is not None and periode not in PERIODES:
        raise BadRequest(
            f"periode={periode!r} is not supported; accepted values: "
            f"{', '.join([*PERIODES, 'live'])}",
            parameter="periode",
        )
    if periode is not None and start is not None and end is not None:
        raise BadRequest(
            "periode cannot be combined with both date_debut and date_fin; "
            "give periode with at most one of them, or the two dates alone",
            parameter="periode",
        )
    if start is not None and end is not None:
        if start >= end:
            raise BadRequest(
                f"date_debut ({start.isoformat()}) must be before date_fin ({end.isoformat()})",
                parameter="date_debut",
            )
        if end - start > max_range:
            raise BadRequest(
                f"the range date_debut..date_fin spans {_days(end - start)}, more than the "
                f"maximum of {_days(max_range)}; split it or use the `next` cursor",
                parameter="date_fin",
            )
        return TimeRange(start, end)
    if periode is not None:
        span = PERIODES[periode]
        if start is not None:
            return TimeRange(start, start + span)
        if end is not None:
            return TimeRange(end - span, end)
        return TimeRange(now - span, now)
    if start is not None or end is not None:
        return TimeRange(start, end)
    return TimeRange(now - PERIODES[DEFAULT_PERIODE], now)


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{span.total_seconds():g} seconds"


def floor_to(moment: datetime, width: timedelta) -> datetime:
    """Start of the bucket of ``width`` holding ``moment`` (buckets aligned on BUCKET_ORIGIN)."""
    return BUCKET_ORIGIN + ((moment - BUCKET_ORIGIN) // width) * width


class CursorState(msgspec.Struct, frozen=True, array_like=True):
    """What a ``next`` cursor carries: the listing it belongs to, its frozen range start,
    and the (timestamp, key...) of the last row returned (exclusive upper bound)."""

    scope: str
    start: datetime | None
    ts: datetime
    keys: tuple[str, ...] = ()


_CURSOR_ENCODER = msgspec.json.Encoder()
_CURSOR_DECODER = msgspec.json.Decoder(CursorState)


def encode_cursor(state: CursorState) -> str:
    return base64.urlsafe_b64encode(_CURSOR_ENCODER.encode(state)).decode().rstrip("=")


def invalid_cursor() -> BadRequest:
    """The one answer to a cursor that is not a ``next`` value of this listing."""
    return BadRequest(
        "cursor is not valid for this listing; pass the `next` value of the previous "
        "page unchanged, with the same path and filters",
        parameter="cursor",
    )


def decode_cursor(raw: str, scope: str) -> CursorState:
    """The state of a cursor from this listing's ``next``; rejects anything else."""
    bad = invalid_cursor()
    if not raw or len(raw) > MAX_CURSOR_CHARS:
        raise bad
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        state = _CURSOR_DECODER.decode(data)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise bad from None
    if state.scope != scope or state.ts.tzinfo is None:
        raise bad
    # Keys reach SQL as parameters: PostgreSQL text cannot hold NUL, and real keys are short.
    if len(state.keys) > 2 or any(len(k) > 512 or "\x00" in k for k in state.keys):
        raise bad
    if state.start is not None and state.start.tzinfo is None:
        raise bad
    if not OPEN_START <= state.ts <= OPEN_END:
        raise bad
    if state.start is not None and not OPEN_START <= state.start <= OPEN_END:
        raise bad
    return state


class Page(msgspec.Struct, frozen=True):
    """A resolved page request: range, size, and where to resume."""

    range: TimeRange
    limit: int
    scope: str
    after: CursorState | None

    def next_cursor(self, ts: datetime, keys: tuple[str, ...] = ()) -> str:
        return encode_cursor(CursorState(self.scope, self.range.start, ts, keys))


def _refuse_pages(
    page: str | None, page_size: str | None, *, instead_of_page: str, instead_of_size: str
) -> None:
    """``page=1`` is the answer asked; any other page, and ``page_size``, is a 400 saying
    what to do instead."""
    if page is not None and page.strip() != "1":
        raise BadRequest(f"page={page!r}: {instead_of_page}", parameter="page")
    if page_size is not None:
        raise BadRequest(f"page_size={page_size!r}{instead_of_size}", parameter="page_size")


def refuse_page_numbers(page: str | None, page_size: str | None) -> None:
    """The prototype's page-number parameters: ``page=1`` is this first page; any other
    page, and ``page_size``, is a 400 naming what to use instead."""
    _refuse_pages(
        page, page_size,
        instead_of_page="page numbers are not supported, these listings are keyset-paged; "
        "follow the previous page's `next_url` (or pass its `next` value as cursor=)",
        instead_of_size=" is not supported; use limit= (rows per page)",
    )  # fmt: skip


def refuse_pages_of_whole_listing(page: str | None, page_size: str | None) -> None:
    """The prototype's page-number parameters on a listing that is not paged (its one
    answer holds every row): ``page=1`` is that answer; any other page, and
    ``page_size``, is a 400, not the whole list again."""
    _refuse_pages(
        page, page_size,
        instead_of_page="this listing is not paged, its one answer holds every row "
        "(`count` of them); drop page=",
        instead_of_size=": this listing is not paged, its one answer holds every row; "
        "drop page_size=",
    )  # fmt: skip


def page_request(
    *,
    scope: str,
    periode: str | None,
    date_debut: str | None,
    date_fin: str | None,
    limit: int | None,
    cursor: str | None,
    now: datetime,
    max_range: timedelta,
    default_limit: int,
    max_limit: int,
) -> Page:
    """Validate the paging parameters of one request.

    The range is validated even with a cursor (a bad value is still a 400), but the
    cursor wins: it froze the start of the original range, so a relative ``periode``
    does not slide between pages, and its position is the exclusive upper bound.
    """
    size = default_limit if limit is None else limit
    if not 1 <= size <= max_limit:
        raise BadRequest(
            f"limit={size} is out of bounds; expected an integer from 1 to {max_limit}",
            parameter="limit",
        )
    time_range = resolve_range(
        periode=periode, date_debut=date_debut, date_fin=date_fin, now=now, max_range=max_range
    )
    if cursor is None:
        return Page(time_range, size, scope, None)
    state = decode_cursor(cursor, scope)
    return Page(TimeRange(state.start, state.ts), size, scope, state)
