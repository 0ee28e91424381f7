"""Latest price, latest predictions, candles (see :mod:`api.candles`), tracked cryptos."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from api.candles import candle_page
from api.context import ApiContext
from api.errors import NotFound, error_responses
from api.models import (
    Candles,
    CryptoList,
    CryptoStatus,
    LatestPredictions,
    LatestPrice,
    LiveLinks,
    ModelAccuracy,
    ModelPrediction,
)
from api.params import INTERVALS, Interval
from api.queries import (
    LATEST_PREDICTIONS,
    LATEST_PRICE,
    PAIR_FRESHNESS,
    PREDICTION_ACCURACY,
    SYMBOL_FRESHNESS,
)
from api.routes.common import PAGING, PagingParams, envelope, live_links, paging

ACCURACY_WINDOW = timedelta(days=7)
# A stored price counts as "24 h before" the latest one if it is at most this much
# older than exactly 24 h (data gaps); otherwise the exchange's own figure is used.
REFERENCE_TOLERANCE = timedelta(hours=1)

QuoteQuery = Annotated[
    str | None, Parameter(description="Quote currency (default USD).", max_length=40)
]
IntervalQuery = Annotated[
    Interval, Parameter(description="Candle width: 1m, 5m, 15m, 1h, 4h or 1d (default 1h).")
]

MARKET_ERRORS = error_responses(400, 404, 429, 503)


@get(
    "/prix/{symbol:str}/temps_reel/",
    responses=MARKET_ERRORS,
    summary="Latest price of a coin",
    description="Latest ticker of SYMBOL/QUOTE with bid/ask, the 24 h change and the age "
    "of the data.",
)
async def latest_price(
    ctx: NamedDependency[ApiContext], symbol: FromPath[str], quote: QuoteQuery = None
) -> LatestPrice:
    coin = ctx.symbols.coin(symbol)
    pair = ctx.symbols.pair(f"{coin}/{quote or 'USD'}", parameter="quote")
    row = await ctx.db.fetch_one(LATEST_PRICE, {"pair": pair})
    if row is None:
        raise NotFound(f"no price stored yet for {pair}", parameter="symbol")
    change: float | None = None
    source: str | None = None
    ref_ts, ref_last = row.reference_timestamp, row.reference_last
    if (
        ref_ts is not None
        and ref_last
        and row.timestamp - ref_ts <= timedelta(days=1) + REFERENCE_TOLERANCE
    ):
        change, source = (row.last - ref_last) / ref_last * 100.0, "computed"
    elif row.change_pct is not None:
        change, source = row.change_pct, "exchange"
    return LatestPrice(
        crypto_symbol=coin,
        pair=pair,
        price=row.last,
        bid=row.bid,
        ask=row.ask,
        spread=row.ask - row.bid if row.ask is not None and row.bid is not None else None,
        volume_24h=row.volume_24h,
        change_24h_pct=change,
        change_24h_source=source,  # type: ignore[arg-type]  # one of the two literals or None
        timestamp=row.timestamp,
        age_s=round((ctx.now() - row.timestamp).total_seconds(), 3),
    )


@get(
    "/predictions/{symbol:str}/",
    responses=MARKET_ERRORS,
    summary="Latest predictions of a coin, per model, with measured accuracy",
    description="For each model, its latest prediction and its accuracy over the 7 days "
    "before it (predictions whose actual price is known).",
)
async def latest_predictions(
    ctx: NamedDependency[ApiContext], symbol: FromPath[str]
) -> LatestPredictions:
    coin = ctx.symbols.coin(symbol)
    async with ctx.db.connection() as conn:
        latest = await ctx.db.fetch(LATEST_PREDICTIONS, {"symbol": coin}, conn)
        accuracy: dict[str, ModelAccuracy] = {}
        if latest:
            newest: datetime = max(r.timestamp for r in latest)
            params = {"symbol": coin, "since": newest - ACCURACY_WINDOW}
            for a in await ctx.db.fetch(PREDICTION_ACCURACY, params, conn):
                accuracy[a.model_name] = ModelAccuracy(
                    window_days=ACCURACY_WINDOW.days,
                    evaluated=int(a.evaluated),
                    mae=a.mae,
                    mape_pct=a.mape_pct,
                    interval_coverage_pct=a.interval_coverage_pct,
                )
    data = [
        ModelPrediction(**msgspec.structs.asdict(r), accuracy=accuracy.get(r.model_name))
        for r in latest
    ]
    return LatestPredictions(crypto_symbol=coin, count=len(data), data=data)


@get(
    "/candles/{base:str}/{quote:str}/",
    responses=MARKET_ERRORS,
    summary="OHLCV candles of a pair",
    description="Candles of the ticker's last price at 1m, 5m, 15m, 1h, 4h or 1d, newest "
    "first, over whole buckets overlapping the range. Whole-hour intervals come from the "
    "ticker_ohlc_hourly continuous aggregate on TimescaleDB. Volume is the traded volume.",
    dependencies={"paging_params": PAGING},
)
async def candles(
    *,
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    base: FromPath[str],
    quote: FromPath[str],
    interval: IntervalQuery = "1h",
    paging_params: NamedDependency[PagingParams],
) -> Response[Candles | LiveLinks]:
    pair = ctx.symbols.path_pair(base, quote)
    if paging_params.periode == "live":
        return Response(live_links(request, "ticker", pair))
    page = paging(ctx, f"candles|{pair}|{interval}", paging_params)
    result = await candle_page(ctx, pair, INTERVALS[interval], page)
    body = Candles(pair=pair, interval=interval, **envelope(request, page, result.candles))
    # Which relation served the candles, for operators (the body is the same either way).
    source = "ticker_ohlc_hourly" if result.hourly else "ticker_data"
    return Response(body, headers={"X-Candle-Source": source})


@get(
    "/cryptos/",
    responses=MARKET_ERRORS,
    summary="Tracked cryptos and the freshness of their data",
    description="Configured cryptos with their pairs and the time of their latest ticker, "
    "trade, sentiment and prediction (index probes only, no table scans).",
)
async def cryptos(ctx: NamedDependency[ApiContext]) -> CryptoList:
    async with ctx.db.connection() as conn:
        configured = await ctx.db.fetch(SYMBOL_FRESHNESS, None, conn)
        pairs = {c.symbol: list(ctx.symbols.pairs_of(c.symbol)) for c in configured}
        all_pairs = sorted({p for ps in pairs.values() for p in ps})
        fresh = {f.pair: f for f in await ctx.db.fetch(PAIR_FRESHNESS, {"pairs": all_pairs}, conn)}
    now = ctx.now()
    data = []
    for c in configured:
        own = [fresh[p] for p in pairs[c.symbol] if p in fresh]
        tickers = [f.last_ticker for f in own if f.last_ticker is not None]
        trades = [f.last_trade for f in own if f.last_trade is not None]
        last_ticker = max(tickers) if tickers else None
        data.append(
            CryptoStatus(
                symbol=c.symbol,
                name=c.name,
                active=c.active,
                pairs=pairs[c.symbol],
                last_ticker=last_ticker,
                last_trade=max(trades) if trades else None,
                last_sentiment=c.last_sentiment,
                last_prediction=c.last_prediction,
                age_s=round((now - last_ticker).total_seconds(), 3) if last_ticker else None,
            )
        )
    return CryptoList(count=len(data), data=data)


market_router = Router(
    path="/api/v1",
    route_handlers=[latest_price, latest_predictions, candles, cryptos],
    tags=["market"],
)
