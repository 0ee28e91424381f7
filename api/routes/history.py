"""History endpoints (the seeds' ``.../historique/`` routes), keyset-paged, newest first."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Router, get
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from api.context import ApiContext
from api.db import Row
from api.errors import error_responses
from api.models import (
    AlertHistory,
    AlertPoint,
    ArticleHistory,
    ArticlePoint,
    LiveLinks,
    PredictionHistory,
    PredictionPoint,
    PriceHistory,
    PricePoint,
    SentimentHistory,
    SentimentPoint,
    TickerHistory,
    TickerPoint,
    TradeHistory,
    TradePoint,
)
from api.queries import (
    ALERT_BY_PAIR_PAGE,
    ALERT_PAGE,
    ARTICLE_BY_SYMBOL_PAGE,
    ARTICLE_PAGE,
    PREDICTION_PAGE,
    SENTIMENT_PAGE,
    TICKER_PAGE,
    TRADE_PAGE,
    fetch_page,
)
from api.routes.common import (
    CursorQuery,
    DateDebutQuery,
    DateFinQuery,
    LimitQuery,
    PeriodeQuery,
    envelope,
    live_links,
    no_keys,
    paging,
)

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


def _ticker(r: Row) -> TickerPoint:
    return TickerPoint(
        timestamp=r[0],
        last=r[1],
        bid=r[2],
        ask=r[3],
        volume_24h=r[4],
        bid_qty=r[5],
        ask_qty=r[6],
        vwap=r[7],
        low=r[8],
        high=r[9],
        change_pct=r[10],
    )


def _price(r: Row) -> PricePoint:
    return PricePoint(timestamp=r[0], price=r[1], bid=r[2], ask=r[3], volume_24h=r[4])


def _trade(r: Row) -> TradePoint:
    return TradePoint(
        timestamp=r[0],
        price=r[1],
        volume=r[2],
        side=r[3],
        trade_id=r[4],
        ord_type=r[5],
        trade_key=r[6],
    )


def _sentiment(r: Row) -> SentimentPoint:
    return SentimentPoint(
        timestamp=r[0],
        window_start=r[1],
        sentiment_score=r[2],
        sentiment_label=r[3],
        source=r[4],
        confidence=r[5],
        article_count=r[6],
    )


def _prediction(r: Row) -> PredictionPoint:
    return PredictionPoint(
        timestamp=r[0],
        window_start=r[1],
        model_name=r[2],
        predicted_price=r[3],
        actual_price=r[4],
        confidence_interval_low=r[5],
        confidence_interval_high=r[6],
        interval_level=r[7],
        horizon_s=r[8],
        target_time=r[9],
        last_price=r[10],
    )


def _article(r: Row) -> ArticlePoint:
    return ArticlePoint(
        timestamp=r[0],
        article_id=r[1],
        title=r[2],
        url=r[3],
        website=r[4],
        summary=r[5],
        cryptocurrencies_mentioned=list(r[6] or ()),
        sentiment_score=r[7],
        sentiment_label=r[8],
        subjectivity=r[9],
    )


def _alert(r: Row) -> AlertPoint:
    return AlertPoint(
        timestamp=r[0],
        pair=r[1],
        last_price=r[2],
        change_percent=r[3],
        threshold=r[4],
        alert_type=r[5],
        reference_price=r[6],
        window_s=r[7],
    )


async def _ticker_history(
    request: Request[Any, Any, Any],
    ctx: ApiContext,
    pair: str,
    *,
    periode: str | None,
    date_debut: str | None,
    date_fin: str | None,
    limit: int | None,
    cursor: str | None,
) -> TickerHistory | LiveLinks:
    base, quote = pair.split("/", 1)
    if periode == "live":
        return live_links(request, f"ticker:{pair}", f"/ws/ticker/{base}/{quote}/")
    page = paging(
        ctx,
        f"ticker|{pair}",
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )
    rows = await fetch_page(ctx.db, TICKER_PAGE, page, pair, 0)
    return TickerHistory(
        pair=pair,
        **envelope(request, page, rows, _ticker, no_keys),
    )


@get(
    "/ticker/{base:str}/{quote:str}/historique/",
    responses=HISTORY_ERRORS,
    summary="Ticker history of a pair",
    description="Ticker snapshots of BASE/QUOTE, newest first. `periode=live` answers with "
    "the WebSocket URLs.",
)
async def ticker_history(
    *,
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    base: FromPath[str],
    quote: FromPath[str],
    periode: PeriodeQuery = None,
    date_debut: DateDebutQuery = None,
    date_fin: DateFinQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> TickerHistory | LiveLinks:
    pair = ctx.symbols.path_pair(base, quote)
    return await _ticker_history(
        request,
        ctx,
        pair,
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )


@get(
    "/ticker/historique/",
    responses=HISTORY_ERRORS,
    summary="Ticker history of a pair given as ?pair=",
    description="Same as ticker/{base}/{quote}/historique/, for the prototype's clients.",
)
async def ticker_history_by_query(
    *,
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    pair: PairQuery,
    periode: PeriodeQuery = None,
    date_debut: DateDebutQuery = None,
    date_fin: DateFinQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> TickerHistory | LiveLinks:
    return await _ticker_history(
        request,
        ctx,
        ctx.symbols.pair(pair),
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )


async def _trade_history(
    request: Request[Any, Any, Any],
    ctx: ApiContext,
    pair: str,
    *,
    periode: str | None,
    date_debut: str | None,
    date_fin: str | None,
    limit: int | None,
    cursor: str | None,
) -> TradeHistory | LiveLinks:
    base, quote = pair.split("/", 1)
    if periode == "live":
        return live_links(request, f"trade:{pair}", f"/ws/trade/{base}/{quote}/")
    page = paging(
        ctx,
        f"trade|{pair}",
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )
    rows = await fetch_page(ctx.db, TRADE_PAGE, page, pair, 1)
    return TradeHistory(
        pair=pair,
        **envelope(request, page, rows, _trade, lambda r: (r[6],)),
    )


@get(
    "/trade/{base:str}/{quote:str}/historique/",
    responses=HISTORY_ERRORS,
    summary="Trade history of a pair",
)
async def trade_history(
    *,
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    base: FromPath[str],
    quote: FromPath[str],
    periode: PeriodeQuery = None,
    date_debut: DateDebutQuery = None,
    date_fin: DateFinQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> TradeHistory | LiveLinks:
    pair = ctx.symbols.path_pair(base, quote)
    return await _trade_history(
        request,
        ctx,
        pair,
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )


@get(
    "/trade/historique/",
    responses=HISTORY_ERRORS,
    summary="Trade history of a pair given as ?pair=",
)
async def trade_history_by_query(
    *,
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    pair: PairQuery,
    periode: PeriodeQuery = None,
    date_debut: DateDebutQuery = None,
    date_fin: DateFinQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> TradeHistory | LiveLinks:
    return await _trade_history(
        request,
        ctx,
        ctx.symbols.pair(pair),
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )


@get(
    "/sentiment/{symbol:str}/historique/",
    responses=HISTORY_ERRORS,
    summary="Sentiment history of a coin",
)
async def sentiment_history(
    *,
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    symbol: FromPath[str],
    periode: PeriodeQuery = None,
    date_debut: DateDebutQuery = None,
    date_fin: DateFinQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> SentimentHistory | LiveLinks:
    coin = ctx.symbols.coin(symbol)
    if periode == "live":
        return live_links(request, f"sentiment:{coin}", f"/ws/sentiment/{coin}/")
    page = paging(
        ctx,
        f"sentiment|{coin}",
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )
    rows = await fetch_page(ctx.db, SENTIMENT_PAGE, page, coin, 1)
    return SentimentHistory(
        crypto_symbol=coin,
        **envelope(request, page, rows, _sentiment, lambda r: (r[4],)),
    )


@get(
    "/prediction/{symbol:str}/historique/",
    responses=HISTORY_ERRORS,
    summary="Prediction history of a coin",
)
async def prediction_history(
    *,
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    symbol: FromPath[str],
    periode: PeriodeQuery = None,
    date_debut: DateDebutQuery = None,
    date_fin: DateFinQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> PredictionHistory | LiveLinks:
    coin = ctx.symbols.coin(symbol)
    if periode == "live":
        return live_links(request, f"prediction:{coin}", f"/ws/prediction/{coin}/")
    page = paging(
        ctx,
        f"prediction|{coin}",
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )
    rows = await fetch_page(ctx.db, PREDICTION_PAGE, page, coin, 1)
    return PredictionHistory(
        crypto_symbol=coin,
        **envelope(request, page, rows, _prediction, lambda r: (r[2],)),
    )


async def _article_history(
    request: Request[Any, Any, Any],
    ctx: ApiContext,
    coin: str | None,
    *,
    periode: str | None,
    date_debut: str | None,
    date_fin: str | None,
    limit: int | None,
    cursor: str | None,
) -> ArticleHistory | LiveLinks:
    if periode == "live":
        channel = f"article:{coin}" if coin else "article"
        return live_links(request, channel, "/ws/live")
    page = paging(
        ctx,
        f"article|{coin or '*'}",
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )
    query = ARTICLE_BY_SYMBOL_PAGE if coin else ARTICLE_PAGE
    rows = await fetch_page(ctx.db, query, page, coin, 1)
    return ArticleHistory(
        crypto_symbol=coin,
        **envelope(request, page, rows, _article, lambda r: (r[1],)),
    )


@get(
    "/article/historique/",
    responses=HISTORY_ERRORS,
    summary="Articles, optionally those mentioning one coin",
    description="`periode=live` points at the multiplexed socket (channel `article` or "
    "`article:SYMBOL`): the seeds define no dedicated article socket.",
)
async def article_history(
    *,
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    crypto_symbol: SymbolQuery = None,
    periode: PeriodeQuery = None,
    date_debut: DateDebutQuery = None,
    date_fin: DateFinQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> ArticleHistory | LiveLinks:
    coin = ctx.symbols.coin(crypto_symbol, "crypto_symbol") if crypto_symbol is not None else None
    return await _article_history(
        request,
        ctx,
        coin,
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )


@get("/articles/{symbol:str}/", responses=HISTORY_ERRORS, summary="Articles mentioning a coin")
async def articles_of(
    *,
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    symbol: FromPath[str],
    periode: PeriodeQuery = None,
    date_debut: DateDebutQuery = None,
    date_fin: DateFinQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> ArticleHistory | LiveLinks:
    return await _article_history(
        request,
        ctx,
        ctx.symbols.coin(symbol),
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )


@get("/alert/historique/", responses=HISTORY_ERRORS, summary="Price alerts, optionally of one pair")
async def alert_history(
    *,
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    pair: OptionalPairQuery = None,
    periode: PeriodeQuery = None,
    date_debut: DateDebutQuery = None,
    date_fin: DateFinQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> AlertHistory | LiveLinks:
    canonical = ctx.symbols.pair(pair) if pair is not None else None
    if periode == "live":
        channel = f"alert:{canonical}" if canonical else "alert"
        return live_links(request, channel, "/ws/alert/")
    page = paging(
        ctx,
        f"alert|{canonical or '*'}",
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )
    query = ALERT_BY_PAIR_PAGE if canonical else ALERT_PAGE
    rows = await fetch_page(ctx.db, query, page, canonical, 2)
    return AlertHistory(
        pair=canonical,
        **envelope(request, page, rows, _alert, lambda r: (r[1], r[5])),
    )


@get(
    "/prix/{symbol:str}/historique/",
    responses=HISTORY_ERRORS,
    summary="Price history of a coin",
    description="Last traded price of SYMBOL/QUOTE (QUOTE defaults to USD), newest first.",
)
async def price_history(
    *,
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    symbol: FromPath[str],
    quote: QuoteQuery = None,
    periode: PeriodeQuery = None,
    date_debut: DateDebutQuery = None,
    date_fin: DateFinQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> PriceHistory | LiveLinks:
    coin = ctx.symbols.coin(symbol)
    pair = ctx.symbols.pair(f"{coin}/{quote or 'USD'}", parameter="quote")
    if periode == "live":
        base, q = pair.split("/", 1)
        return live_links(request, f"ticker:{pair}", f"/ws/ticker/{base}/{q}/")
    page = paging(
        ctx,
        f"ticker|{pair}",
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )
    rows = await fetch_page(ctx.db, TICKER_PAGE, page, pair, 0)
    return PriceHistory(
        crypto_symbol=coin,
        pair=pair,
        **envelope(request, page, rows, _price, no_keys),
    )


history_router = Router(
    path="/api/v1",
    route_handlers=[
        ticker_history,
        ticker_history_by_query,
        trade_history,
        trade_history_by_query,
        sentiment_history,
        prediction_history,
        article_history,
        articles_of,
        alert_history,
        price_history,
    ],
    tags=["history"],
)
