"""History endpoints (the seeds' ``.../historique/`` routes), keyset-paged, newest first.

Each series is a :class:`Listing` (its page queries, cursor columns, live channel)
and each route one :func:`history_route`: a path, a listing, and the dependency
that resolves the route's own parameters (path or query) to a :class:`Subject`.
One handler serves them all; the paging parameters are the shared ``paging_params``
dependency. Listings whose rows never change (ticker, price) are served through the
per-process cache of encoded rows (:mod:`api.row_cache`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Router, get
from litestar.di import NamedDependency, Provide
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, Parameter

from api.context import ApiContext
from api.errors import error_responses
from api.live import LiveType
from api.models import (
    AlertHistory,
    ArticleHistory,
    LiveLinks,
    PredictionHistory,
    PriceHistory,
    PricePoint,
    SentimentHistory,
    SentimentHour,
    SentimentHourlyHistory,
    TickerHistory,
    TickerPoint,
    TradeHistory,
)
from api.params import TimeRange, floor_to
from api.queries import (
    ALERT_BY_PAIR_PAGE,
    ALERT_PAGE,
    ARTICLE_BY_SYMBOL_PAGE,
    ARTICLE_PAGE,
    PREDICTION_PAGE,
    SENTIMENT_HOURS,
    SENTIMENT_PAGE,
    TICKER_PAGE,
    TRADE_PAGE,
    PageQuery,
    SentimentHourRow,
    fetch_page,
)
from api.routes.common import (
    PAGING,
    HorizonQuery,
    PagingParams,
    envelope,
    live_links,
    page_envelope,
    paging,
)
from api.row_cache import fetch_encoded_page
from handlers import sentiment_label

PairQuery = Annotated[
    str, Parameter(description="Pair such as BTC/USD (aliases such as XBT/USD work too).")
]
OptionalPairQuery = Annotated[
    str | None, Parameter(description="Only this pair (BTC/USD, XBT/USD...).", max_length=40)
]
QuoteQuery = Annotated[
    str | None, Parameter(description="Quote currency of the price (default USD).", max_length=40)
]
SymbolQuery = Annotated[
    str | None,
    Parameter(
        description="Only articles mentioning this coin (BTC, bitcoin, xbt...).", max_length=40
    ),
]

HISTORY_ERRORS = error_responses(400, 404, 429, 503)


@dataclass(frozen=True, slots=True)
class Listing:
    """One keyset-paged series: what a history route reads and where it goes live."""

    series: LiveType
    """Its live channel type, also the prefix of its cursors' scope."""
    page: PageQuery[Any]
    """The page of one subject (``%(key)s``)."""
    page_all: PageQuery[Any] | None = None
    """The page of every subject, when a route may omit it."""
    point: Callable[[Any], Any] | None = None
    """The row -> response point conversion, when the row type is not the point."""

    @property
    def keys(self) -> tuple[str, ...]:
        """The columns a cursor holds after the timestamp: those ordering every subject."""
        return (self.page_all or self.page).keys


class Subject(msgspec.Struct, frozen=True):
    """What a route's parameters designate: a canonical pair or coin, or all (None)."""

    key: str | None
    fields: dict[str, str | int | None]
    """The body's subject fields (``pair``, ``crypto_symbol``, ``horizon_s``)."""
    filters: dict[str, int | None] = {}
    """The page query's other parameters (``horizon``); a cursor keeps to them."""

    @property
    def scope(self) -> str:
        filters = (f"{k}={v}" for k, v in sorted(self.filters.items()) if v is not None)
        return "|".join([self.key or "*", *filters])


def _price(t: TickerPoint) -> PricePoint:
    return PricePoint(
        timestamp=t.timestamp, price=t.last, bid=t.bid, ask=t.ask, volume_24h=t.volume_24h
    )


TICKER = Listing("ticker", TICKER_PAGE)
PRICE = Listing("ticker", TICKER_PAGE, point=_price)
TRADE = Listing("trade", TRADE_PAGE)
SENTIMENT = Listing("sentiment", SENTIMENT_PAGE)
PREDICTION = Listing("prediction", PREDICTION_PAGE)
ARTICLE = Listing("article", ARTICLE_BY_SYMBOL_PAGE, ARTICLE_PAGE)
ALERT = Listing("alert", ALERT_BY_PAIR_PAGE, ALERT_PAGE)


# -- subjects: each route's own parameters --------------------------------------------


def _path_pair(
    ctx: NamedDependency[ApiContext], base: FromPath[str], quote: FromPath[str]
) -> Subject:
    pair = ctx.symbols.path_pair(base, quote)
    return Subject(pair, {"pair": pair})


def _query_pair(ctx: NamedDependency[ApiContext], pair: PairQuery) -> Subject:
    canonical = ctx.symbols.pair(pair)
    return Subject(canonical, {"pair": canonical})


def _optional_pair(ctx: NamedDependency[ApiContext], pair: OptionalPairQuery = None) -> Subject:
    canonical = ctx.symbols.pair(pair) if pair is not None else None
    return Subject(canonical, {"pair": canonical})


def _path_coin(ctx: NamedDependency[ApiContext], symbol: FromPath[str]) -> Subject:
    coin = ctx.symbols.coin(symbol)
    return Subject(coin, {"crypto_symbol": coin})


def _forecast_coin(
    ctx: NamedDependency[ApiContext], symbol: FromPath[str], horizon: HorizonQuery = None
) -> Subject:
    coin = ctx.symbols.coin(symbol)
    return Subject(coin, {"crypto_symbol": coin, "horizon_s": horizon}, {"horizon": horizon})


def _mentioned_coin(ctx: NamedDependency[ApiContext], crypto_symbol: SymbolQuery = None) -> Subject:
    coin = ctx.symbols.coin(crypto_symbol, "crypto_symbol") if crypto_symbol is not None else None
    return Subject(coin, {"crypto_symbol": coin})


def _coin_price(
    ctx: NamedDependency[ApiContext], symbol: FromPath[str], quote: QuoteQuery = None
) -> Subject:
    coin = ctx.symbols.coin(symbol)
    pair = ctx.symbols.pair(f"{coin}/{quote or 'USD'}", parameter="quote")
    return Subject(pair, {"crypto_symbol": coin, "pair": pair})


# -- the one handler ------------------------------------------------------------------


async def serve_listing(
    listing: Listing,
    body: type[msgspec.Struct],
    *,
    request: Request[Any, Any, Any],
    ctx: ApiContext,
    subject: Subject,
    paging_params: PagingParams,
) -> Any:
    """One page of ``listing`` as ``body`` (or its live links, for ``periode=live``)."""
    key = subject.key
    if paging_params.periode == "live":
        return live_links(request, listing.series, key)
    page = paging(ctx, f"{listing.series}|{subject.scope}", paging_params)
    query = listing.page if key is not None or listing.page_all is None else listing.page_all
    # "now": rows stamped after the clock are not served (forecasts: see PREDICTION_PAGE).
    filters = {**subject.filters, "now": ctx.now()}
    if key is not None and query.by_stamp is not None and ctx.rows.enabled:
        # Rows that never change: their JSON from the cache (the body is the same bytes).
        series = (body, subject.scope)
        got = await fetch_encoded_page(
            ctx.db, ctx.rows, query, page, key, series=series, point=listing.point, filters=filters
        )
        if got is not None:
            cursor = page.next_cursor(got.last) if got.last is not None else None
            fields = page_envelope(request, page, got.data, got.count, cursor)
            return body(**subject.fields, **fields)
    rows = await fetch_page(ctx.db, query, page, key, listing.keys, filters=filters)
    if listing.point is not None:
        rows = [listing.point(r) for r in rows]
    return body(**subject.fields, **envelope(request, page, rows, listing.keys))


def history_route(
    path: str,
    name: str,
    listing: Listing,
    body: type[msgspec.Struct],
    subject: Callable[..., Subject],
    *,
    summary: str,
    description: str | None = None,
) -> HTTPRouteHandler:
    """The route ``GET path`` serving ``listing`` as ``body`` pages (or live links)."""

    async def handler(
        request: Request[Any, Any, Any],
        ctx: NamedDependency[ApiContext],
        subject: NamedDependency[Subject],
        paging_params: NamedDependency[PagingParams],
    ) -> Any:
        return await serve_listing(
            listing, body, request=request, ctx=ctx, subject=subject, paging_params=paging_params
        )

    # Litestar reads the name (the OpenAPI operationId) and the response type from
    # the function itself.
    handler.__name__ = handler.__qualname__ = name
    handler.__annotations__ = {**handler.__annotations__, "return": body | LiveLinks}
    return get(
        path,
        dependencies={"subject": Provide(subject, sync_to_thread=False)},
        responses=HISTORY_ERRORS,
        summary=summary,
        description=description,
    )(handler)


# -- sentiment: hour by hour (the seed's series), or the Spark windows -----------------

HOUR = timedelta(hours=1)
ResolutionQuery = Annotated[
    Literal["1h", "window"],
    Parameter(
        description="`1h` (default): one row per hour of the range, hours without articles "
        "included (score and label null, article_count 0), from `sentiment_hourly`. "
        "`window`: the Spark sentiment windows as stored."
    ),
]


def _hour_start_at_or_after(moment: datetime) -> datetime:
    start = floor_to(moment, HOUR)
    return start if start == moment else start + HOUR


def _hour(row: SentimentHourRow) -> SentimentHour:
    score = row.sentiment_score
    return SentimentHour(
        timestamp=row.timestamp,
        sentiment_score=score,
        sentiment_label=None if score is None else sentiment_label(score),
        article_count=row.article_count,
        window_count=row.window_count,
    )


async def _sentiment_hours(
    request: Request[Any, Any, Any], ctx: ApiContext, subject: Subject, params: PagingParams
) -> SentimentHourlyHistory:
    """The hours that begin within the range (``[date_debut, date_fin)``), newest first.

    A page holds up to ``max_limit`` hours by default, so ``periode=7d`` (168 hours)
    and ``periode=30d`` (720) come whole; longer ranges continue with ``next``.
    """
    key = subject.key
    assert key is not None
    page = paging(ctx, f"sentiment-hours|{key}", params, limit=ctx.settings.max_limit)
    end = page.range.end or ctx.now()
    newest = _hour_start_at_or_after(end) - HOUR
    oldest = newest - page.limit * HOUR  # limit + 1 hours: the last one says "more"
    if page.range.start is not None:
        oldest = max(oldest, _hour_start_at_or_after(page.range.start))
    rows: list[SentimentHour] = []
    if oldest <= newest:
        found = await ctx.db.fetch(
            SENTIMENT_HOURS, {"key": key, "newest": newest, "oldest": oldest}
        )
        rows = [_hour(r) for r in found]
    served = msgspec.structs.replace(page, range=TimeRange(page.range.start, end))
    return SentimentHourlyHistory(crypto_symbol=key, **envelope(request, served, rows))


@get(
    "/sentiment/{symbol:str}/historique/",
    dependencies={"subject": Provide(_path_coin, sync_to_thread=False)},
    responses=HISTORY_ERRORS,
    summary="Sentiment history of a coin, hour by hour",
    description="One row per hour of the range (`periode=7d`: 168 rows), as the seeds "
    "document it; `resolution=window` gives the Spark windows instead. `periode=live` "
    "answers with the WebSocket URLs.",
)
async def sentiment_history(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    subject: NamedDependency[Subject],
    paging_params: NamedDependency[PagingParams],
    resolution: ResolutionQuery = "1h",
) -> SentimentHourlyHistory | SentimentHistory | LiveLinks:
    if resolution == "window" or paging_params.periode == "live":
        result: SentimentHistory | LiveLinks = await serve_listing(
            SENTIMENT,
            SentimentHistory,
            request=request,
            ctx=ctx,
            subject=subject,
            paging_params=paging_params,
        )
        return result
    return await _sentiment_hours(request, ctx, subject, paging_params)


_BY_QUERY = "Same as {}, the pair given as a query parameter."

history_router = Router(
    path="/api/v1",
    route_handlers=[
        history_route(
            "/ticker/{base:str}/{quote:str}/historique/",
            "ticker_history",
            TICKER,
            TickerHistory,
            _path_pair,
            summary="Ticker history of a pair",
            description="Ticker snapshots of BASE/QUOTE, newest first. `periode=live` answers "
            "with the WebSocket URLs.",
        ),
        history_route(
            "/ticker/historique/",
            "ticker_history_by_query",
            TICKER,
            TickerHistory,
            _query_pair,
            summary="Ticker history of a pair given as ?pair=",
            description=_BY_QUERY.format("ticker/{base}/{quote}/historique/"),
        ),
        history_route(
            "/trade/{base:str}/{quote:str}/historique/",
            "trade_history",
            TRADE,
            TradeHistory,
            _path_pair,
            summary="Trade history of a pair",
        ),
        history_route(
            "/trade/historique/",
            "trade_history_by_query",
            TRADE,
            TradeHistory,
            _query_pair,
            summary="Trade history of a pair given as ?pair=",
        ),
        sentiment_history,
        history_route(
            "/prediction/{symbol:str}/historique/",
            "prediction_history",
            PREDICTION,
            PredictionHistory,
            _forecast_coin,
            summary="Forecast history of a coin",
            description="Every model's forecasts, newest issue time first, of every horizon "
            "or of `horizon` seconds only. `timestamp` is when a forecast was issued (never "
            "after the clock), `target_time` the time it is for.",
        ),
        history_route(
            "/article/historique/",
            "article_history",
            ARTICLE,
            ArticleHistory,
            _mentioned_coin,
            summary="Articles, optionally those mentioning one coin",
            description="`periode=live` points at the multiplexed socket (channel `article` "
            "or `article:SYMBOL`): the seeds define no dedicated article socket.",
        ),
        history_route(
            "/articles/{symbol:str}/",
            "articles_of",
            ARTICLE,
            ArticleHistory,
            _path_coin,
            summary="Articles mentioning a coin",
        ),
        history_route(
            "/alert/historique/",
            "alert_history",
            ALERT,
            AlertHistory,
            _optional_pair,
            summary="Price alerts, optionally of one pair",
        ),
        history_route(
            "/prix/{symbol:str}/historique/",
            "price_history",
            PRICE,
            PriceHistory,
            _coin_price,
            summary="Price history of a coin",
            description="Last traded price of SYMBOL/QUOTE (QUOTE defaults to USD), newest first.",
        ),
    ],
    dependencies={"paging_params": PAGING},
    tags=["history"],
)
