"""Parameters and helpers shared by the route modules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Generic, TypedDict, TypeVar
from urllib.parse import urlencode

from litestar import Request
from litestar.params import Parameter

from api.context import ApiContext
from api.db import Row
from api.models import LiveLinks
from api.params import Page, Periode, page_request

T = TypeVar("T")

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
        description="Range start: ISO-8601 with a time zone (2024-01-15T14:30:00Z) or Unix "
        "epoch seconds. Alone: open range from then on.",
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

_RANGE_PARAMS = frozenset({"periode", "date_debut", "date_fin", "cursor"})


def paging(
    ctx: ApiContext,
    scope: str,
    *,
    periode: str | None,
    date_debut: str | None,
    date_fin: str | None,
    limit: int | None,
    cursor: str | None,
) -> Page:
    s = ctx.settings
    return page_request(
        scope=scope,
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
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


def split_page(
    page: Page,
    rows: Sequence[Row],
    convert: Callable[[Row], T],
    keys: Callable[[Row], tuple[str, ...]],
) -> tuple[list[T], str | None]:
    """The page's items and the cursor of the next page (``None`` on the last one)."""
    more = len(rows) > page.limit
    kept = rows[: page.limit]
    cursor = None
    if more and kept:
        last = kept[-1]
        ts: datetime = last[0]
        cursor = page.next_cursor(ts, keys(last))
    return [convert(r) for r in kept], cursor


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
    request: Request[Any, Any, Any],
    page: Page,
    rows: Sequence[Row],
    convert: Callable[[Row], T],
    keys: Callable[[Row], tuple[str, ...]],
) -> Envelope[T]:
    """One page of ``rows`` as history fields: ``TickerHistory(pair=..., **envelope(...))``."""
    data, cursor = split_page(page, rows, convert, keys)
    return Envelope(
        count=len(data),
        data=data,
        limit=page.limit,
        next=cursor,
        next_url=next_url(request, cursor),
        date_debut=page.range.start,
        date_fin=page.range.end,
    )


def no_keys(_: Row) -> tuple[str, ...]:
    return ()


def live_links(request: Request[Any, Any, Any], channel: str, path: str) -> LiveLinks:
    base = str(request.base_url).rstrip("/")
    ws_base = "wss" + base[5:] if base.startswith("https") else "ws" + base.removeprefix("http")
    return LiveLinks(
        channel=channel,
        websocket=f"{ws_base}{path}",
        multiplex=f"{ws_base}/ws/live",
        subscribe_message={"action": "subscribe", "channels": [channel]},
    )
