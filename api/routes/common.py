"""Parameters and helpers shared by the route modules: the paging dependency, the
history envelope, live links."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Generic, Protocol, TypedDict, TypeVar
from urllib.parse import urlencode

import msgspec
from litestar import Request
from litestar.di import Provide
from litestar.params import Parameter

from api.context import ApiContext
from api.live import MULTIPLEX_PATH, LiveType, channel_of, socket_path
from api.models import LiveLinks
from api.params import (
    Page,
    Periode,
    page_request,
    refuse_page_numbers,
    refuse_pages_of_whole_listing,
)


class Timestamped(Protocol):
    @property
    def timestamp(self) -> datetime: ...


T = TypeVar("T", bound=Timestamped)

PeriodeQuery = Annotated[
    Periode | None,
    Parameter(
        description="Length of the range: the last one up to now, or from date_debut / up "
        "to date_fin when one is given. `live` answers with the WebSocket URLs instead. "
        "Default: 24h (when no date is given).",
    ),
]
DateDebutQuery = Annotated[
    str | None,
    Parameter(
        description="Range start: ISO-8601 (2024-01-15T14:30:00Z, 2024-01-15T16:30:00+02:00; "
        "UTC when it has no offset: 2024-01-15, 2024-01-15T14:30:00) or Unix epoch seconds. "
        "Alone: open range from then on. The body's date_debut/date_fin state the range used.",
        max_length=64,
    ),
]
DateFinQuery = Annotated[
    str | None,
    Parameter(
        description="Range end (inclusive), same forms as date_debut. Alone: open range up "
        "to then.",
        max_length=64,
    ),
]
LimitQuery = Annotated[
    int | None,
    Parameter(ge=1, le=1000, description="Rows per page, 1 to 1000 (default 100)."),
]
CursorQuery = Annotated[
    str | None,
    Parameter(
        description="The `next` value of the previous page; it keeps that listing's range.",
        max_length=1024,
    ),
]
PageNumberQuery = Annotated[
    str | None,
    Parameter(
        description="Not supported (the prototype's page numbers): only `1` is accepted; "
        "other values are a 400 pointing at the `next` cursor.",
        max_length=64,
    ),
]
PageSizeQuery = Annotated[
    str | None,
    Parameter(description="Not supported: a 400 pointing at `limit`.", max_length=64),
]

WholePageQuery = Annotated[
    str | None,
    Parameter(
        description="Not supported: this listing is not paged (every row in one answer). "
        "Only `1` is accepted; other values are a 400.",
        max_length=64,
    ),
]
WholePageSizeQuery = Annotated[
    str | None,
    Parameter(description="Not supported (the listing is not paged): a 400.", max_length=64),
]


def _whole_listing(*, page: WholePageQuery = None, page_size: WholePageSizeQuery = None) -> None:
    refuse_pages_of_whole_listing(page, page_size)


WHOLE_LISTING = Provide(_whole_listing, sync_to_thread=False)
"""The ``whole_listing`` dependency of a listing that is not paged: it refuses the
prototype's ``page``/``page_size`` instead of answering every row again."""

HorizonQuery = Annotated[
    int | None,
    Parameter(
        ge=1,
        le=7 * 86400,
        description="Only forecasts of this horizon, in seconds (the job's: 60, 300, 900).",
    ),
]

_RANGE_PARAMS = frozenset({"periode", "date_debut", "date_fin", "cursor", "page"})


class PagingParams(msgspec.Struct, frozen=True, kw_only=True):
    """The paging query parameters of a listing, as given (validated by :func:`paging`)."""

    periode: str | None = None
    date_debut: str | None = None
    date_fin: str | None = None
    limit: int | None = None
    cursor: str | None = None
    page: str | None = None
    page_size: str | None = None


def _paging_params(  # keyword-only: Litestar passes each query parameter by name
    *,
    periode: PeriodeQuery = None,
    date_debut: DateDebutQuery = None,
    date_fin: DateFinQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
    page: PageNumberQuery = None,
    page_size: PageSizeQuery = None,
) -> PagingParams:
    return PagingParams(
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
        page=page,
        page_size=page_size,
    )


PAGING = Provide(_paging_params, sync_to_thread=False)
"""The ``paging_params`` dependency of every paged listing (its query parameters)."""


def _range_params(
    periode: PeriodeQuery = None, date_debut: DateDebutQuery = None, date_fin: DateFinQuery = None
) -> PagingParams:
    return PagingParams(periode=periode, date_debut=date_debut, date_fin=date_fin)


RANGE = Provide(_range_params, sync_to_thread=False)
"""The ``range_params`` dependency of a summary over a range (no pages: no limit or cursor)."""


def paging(ctx: ApiContext, scope: str, params: PagingParams, *, limit: int | None = None) -> Page:
    """The page a listing's request asks for; ``scope`` ties its cursors to the listing.

    ``limit`` is the listing's default page size, when not the API's.
    """
    s = ctx.settings
    refuse_page_numbers(params.page, params.page_size)
    return page_request(
        scope=scope,
        periode=params.periode,
        date_debut=params.date_debut,
        date_fin=params.date_fin,
        limit=params.limit if params.limit is not None else limit,
        cursor=params.cursor,
        now=ctx.now(),
        max_range=timedelta(days=s.max_range_days),
        default_limit=s.default_limit,
        max_limit=s.max_limit,
    )


def next_url(request: Request[Any, Any, Any], cursor: str | None) -> str | None:
    """This request with the range parameters replaced by ``cursor`` (which carries them)."""
    if cursor is None:
        return None
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in _RANGE_PARAMS]
    return f"{request.url.path}?{urlencode([*kept, ('cursor', cursor)])}"


class Envelope(TypedDict, Generic[T]):
    """The paging fields every history body shares, beside its subject (pair or coin)."""

    count: int
    data: list[T]
    limit: int
    next: str | None
    next_url: str | None
    date_debut: datetime | None
    date_fin: datetime | None


def envelope(
    request: Request[Any, Any, Any], page: Page, rows: Sequence[T], keys: tuple[str, ...] = ()
) -> Envelope[T]:
    """One page of ``rows`` (up to ``limit + 1``) as history fields:
    ``TickerHistory(pair=..., **envelope(...))``.

    The next page's cursor holds the last row's timestamp and its ``keys`` columns (as
    text: see :func:`api.queries.fetch_page`).
    """
    data = list(rows[: page.limit])
    cursor = None
    if len(rows) > page.limit and data:
        last = data[-1]
        cursor = page.next_cursor(last.timestamp, tuple(str(getattr(last, k)) for k in keys))
    return page_envelope(request, page, data, len(data), cursor)


def page_envelope(
    request: Request[Any, Any, Any], page: Page, data: Any, count: int, cursor: str | None
) -> Envelope[Any]:
    """The history fields of a page's ``count`` rows ``data`` (a list, or their JSON
    array as ``msgspec.Raw``) and the next page's ``cursor`` (None: the last page)."""
    return Envelope(
        count=count,
        data=data,
        limit=page.limit,
        next=cursor,
        next_url=next_url(request, cursor),
        date_debut=page.range.start,
        date_fin=page.range.end,
    )


def live_links(request: Request[Any, Any, Any], kind: LiveType, key: str | None) -> LiveLinks:
    """Where to follow the series ``kind`` of ``key`` (None: all of them) in real time."""
    base = str(request.base_url).rstrip("/")
    ws_base = "wss" + base[5:] if base.startswith("https") else "ws" + base.removeprefix("http")
    channel = channel_of(kind, key)
    return LiveLinks(
        channel=channel,
        websocket=f"{ws_base}{socket_path(kind, key)}",
        multiplex=f"{ws_base}{MULTIPLEX_PATH}",
        subscribe_message={"action": "subscribe", "channels": [channel]},
    )
