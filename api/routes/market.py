"""Latest price, latest predictions, candles, tracked cryptos."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from litestar import Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from api.candle_cache import GRACE
from api.context import ApiContext
from api.errors import NotFound, error_responses
from api.models import (
    Candle,
    Candles,
    CryptoList,
    CryptoStatus,
    LatestPredictions,
    LatestPrice,
    LiveLinks,
    ModelAccuracy,
    ModelPrediction,
)
from api.params import INTERVALS, Interval, floor_to
from api.queries import (
    LATEST_PREDICTIONS,
    LATEST_PRICE,
    PAIR_FRESHNESS,
    PREDICTION_ACCURACY,
    SYMBOL_FRESHNESS,
    CandleRow,
    candle_bounds,
    fetch_candles,
    use_hourly_aggregate,
)
from api.routes.common import (
    CursorQuery,
    DateDebutQuery,
    DateFinQuery,
    LimitQuery,
    PeriodeQuery,
    live_links,
    next_url,
    paging,
)

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
    ts, last, bid, ask, volume, exchange_change, ref_ts, ref_last = row
    change: float | None = None
    source: str | None = None
    if ref_ts is not None and ref_last and ts - ref_ts <= timedelta(days=1) + REFERENCE_TOLERANCE:
        change, source = (last - ref_last) / ref_last * 100.0, "computed"
    elif exchange_change is not None:
        change, source = exchange_change, "exchange"
    return LatestPrice(
        crypto_symbol=coin,
        pair=pair,
        price=last,
        bid=bid,
        ask=ask,
        spread=ask - bid if ask is not None and bid is not None else None,
        volume_24h=volume,
        change_24h_pct=change,
        change_24h_source=source,  # type: ignore[arg-type]  # one of the two literals or None
        timestamp=ts,
        age_s=round((ctx.now() - ts).total_seconds(), 3),
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
            newest: datetime = max(r[1] for r in latest)
            for name, n, mae, mape, coverage in await ctx.db.fetch(
                PREDICTION_ACCURACY, {"symbol": coin, "since": newest - ACCURACY_WINDOW}, conn
            ):
                accuracy[name] = ModelAccuracy(
                    window_days=ACCURACY_WINDOW.days,
                    evaluated=int(n),
                    mae=mae,
                    mape_pct=mape,
                    interval_coverage_pct=coverage,
                )
    data = [
        ModelPrediction(
            model_name=r[0],
            timestamp=r[1],
            window_start=r[2],
            predicted_price=r[3],
            confidence_interval_low=r[4],
            confidence_interval_high=r[5],
            interval_level=r[6],
            horizon_s=r[7],
            target_time=r[8],
            last_price=r[9],
            accuracy=accuracy.get(r[0]),
        )
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
)
async def candles(
    *,
    request: Request[Any, Any, Any],
    ctx: NamedDependency[ApiContext],
    base: FromPath[str],
    quote: FromPath[str],
    interval: IntervalQuery = "1h",
    periode: PeriodeQuery = None,
    date_debut: DateDebutQuery = None,
    date_fin: DateFinQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> Response[Candles | LiveLinks]:
    pair = ctx.symbols.path_pair(base, quote)
    if periode == "live":
        b, q = pair.split("/", 1)
        return Response(live_links(request, f"ticker:{pair}", f"/ws/ticker/{b}/{q}/"))
    width = INTERVALS[interval]
    page = paging(
        ctx,
        f"candles|{pair}|{interval}",
        periode=periode,
        date_debut=date_debut,
        date_fin=date_fin,
        limit=limit,
        cursor=cursor,
    )
    lo, hi = candle_bounds(page.range.start, page.range.end, width)
    if page.after is not None:
        hi = page.after.ts  # the last bucket served, exclusive
    async with ctx.db.connection() as conn:
        source = ctx.settings.candle_source
        force = None if source == "auto" else source == "aggregate"
        hourly = use_hourly_aggregate(ctx.db.flavour or "plain", width, force)
        need = page.limit + 1
        # Buckets before `settled` ended at least GRACE ago: they come from the cache
        # (computed once per TTL); newer ones are computed on every request.
        settled = max(lo, min(hi, floor_to(ctx.now() - GRACE, width)))
        rows = []
        if hi > settled:
            rows = await fetch_candles(
                ctx.db, conn, pair=pair, width=width, lo=settled, hi=hi, need=need, hourly=hourly
            )
        if len(rows) < need and settled > lo:
            # Always `need` older candles, so the key does not depend on how many recent
            # ones this request happened to have.
            async def older() -> list[CandleRow]:
                return await fetch_candles(
                    ctx.db, conn, pair=pair, width=width, lo=lo, hi=settled, need=need,
                    hourly=hourly,
                )  # fmt: skip

            key = (pair, width, hourly, lo, settled, need)
            rows = rows + (await ctx.candles.get(key, older))[: need - len(rows)]
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    nxt = page.next_cursor(rows[-1][0]) if more and rows else None
    data = [
        Candle(
            timestamp=b,
            open=o,
            high=h,
            low=low,
            close=c,
            volume=vol,
            trade_count=trades,
            tick_count=ticks,
        )
        for b, o, h, low, c, ticks, vol, trades in rows
    ]
    body = Candles(
        pair=pair,
        interval=interval,
        count=len(data),
        data=data,
        limit=page.limit,
        next=nxt,
        next_url=next_url(request, nxt),
        date_debut=page.range.start,
        date_fin=page.range.end,
    )
    # Which relation served the candles, for operators (the body is the same either way).
    return Response(
        body, headers={"X-Candle-Source": "ticker_ohlc_hourly" if hourly else "ticker_data"}
    )


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
        pairs = {sym: list(ctx.symbols.pairs_of(sym)) for sym, *_ in configured}
        all_pairs = sorted({p for ps in pairs.values() for p in ps})
        fresh = {
            r[0]: (r[1], r[2])
            for r in await ctx.db.fetch(PAIR_FRESHNESS, {"pairs": all_pairs}, conn)
        }
    now = ctx.now()
    data = []
    for symbol, name, active, last_sentiment, last_prediction in configured:
        own = pairs[symbol]
        tickers = [fresh[p][0] for p in own if fresh.get(p, (None, None))[0] is not None]
        trades = [fresh[p][1] for p in own if fresh.get(p, (None, None))[1] is not None]
        last_ticker = max(tickers) if tickers else None
        data.append(
            CryptoStatus(
                symbol=symbol,
                name=name,
                active=active,
                pairs=own,
                last_ticker=last_ticker,
                last_trade=max(trades) if trades else None,
                last_sentiment=last_sentiment,
                last_prediction=last_prediction,
                age_s=round((now - last_ticker).total_seconds(), 3) if last_ticker else None,
            )
        )
    return CryptoList(count=len(data), data=data)


market_router = Router(
    path="/api/v1",
    route_handlers=[latest_price, latest_predictions, candles, cryptos],
    tags=["market"],
)
