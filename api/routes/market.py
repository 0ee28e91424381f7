"""Latest price, latest forecasts and their accuracy, candles (see :mod:`api.candles`),
tracked cryptos."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from api.candles import candle_page
from api.context import ApiContext
from api.db import ONE_MICROSECOND, Connection
from api.errors import BadRequest, NotFound, error_responses
from api.models import (
    Candles,
    CryptoList,
    CryptoStatus,
    LatestPredictions,
    LatestPrice,
    LiveLinks,
    ModelAccuracy,
    ModelPrediction,
    PredictionAccuracy,
    StoredPrediction,
)
from api.params import INTERVALS, Interval
from api.queries import (
    LATEST_PREDICTIONS,
    LATEST_PRICE,
    PAIR_FRESHNESS,
    PREDICTION_ACCURACY,
    PREDICTION_INTERVAL_ACCURACY,
    SYMBOL_FRESHNESS,
)
from api.routes.common import (
    PAGING,
    RANGE,
    WHOLE_LISTING,
    HorizonQuery,
    PagingParams,
    envelope,
    live_links,
    paging,
)
from spark_batch.accuracy import NAIVE, SHOWN_FIRST, IntervalAccuracy
from spark_batch.models import MODEL_LABELS

ACCURACY_WINDOW = timedelta(hours=24)
"""The trailing window of the accuracy shown with the latest forecasts (the report's
default, ``--last 24h``)."""
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
    elif row.change_24h_pct is not None:
        change, source = row.change_24h_pct, "exchange"
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
    summary="Latest forecasts of a coin per model and horizon, the one to show first, accuracy",
    description="For each model and horizon (or `horizon` seconds only), its latest forecast "
    "(none issued after the clock), its trailing skill, whether it is the one to show "
    "first, and the accuracy report's measures over the 24 h before the latest forecast "
    "(forecasts whose actual price is known), with the shown-first and naive lines.",
    dependencies={"whole_listing": WHOLE_LISTING},
)
async def latest_predictions(
    ctx: NamedDependency[ApiContext],
    symbol: FromPath[str],
    whole_listing: NamedDependency[None],
    horizon: HorizonQuery = None,
) -> LatestPredictions:
    coin = ctx.symbols.coin(symbol)
    params = {"symbol": coin, "horizon": horizon, "now": ctx.now()}
    window: tuple[datetime, datetime] | None = None
    lines: list[ModelAccuracy] = []
    async with ctx.db.connection() as conn:
        latest = await ctx.db.fetch(LATEST_PREDICTIONS, params, conn)
        if latest:
            until = max(r.timestamp for r in latest)
            window = (until - ACCURACY_WINDOW, until)
            lines = await accuracy_lines(
                ctx, conn, coin, horizon=horizon, since=window[0], until=window[1]
            )
    first = shown_first(latest)
    by_line = {(a.model_name, a.horizon_s): a for a in lines}
    data = [
        ModelPrediction(
            **msgspec.structs.asdict(r),
            label=MODEL_LABELS.get(r.model_name, r.model_name),
            shown_first=first.get(r.horizon_s) == r.model_name,
            accuracy=by_line.get((r.model_name, r.horizon_s)),
        )
        for r in latest
    ]
    data.sort(key=lambda p: (p.horizon_s, not p.shown_first, p.model_name))
    return LatestPredictions(
        crypto_symbol=coin,
        horizon_s=horizon,
        count=len(data),
        data=data,
        accuracy_from=window[0] if window else None,
        accuracy_to=window[1] if window else None,
        baselines=[a for a in lines if a.model_name in (SHOWN_FIRST, NAIVE)],
    )


@get(
    "/predictions/{symbol:str}/accuracy/",
    responses=MARKET_ERRORS,
    summary="Forecast accuracy report of a coin over a range",
    description="What `python -m spark_batch.report` prints, for the forecasts issued in "
    "the range (default: the last 24 h) whose actual price is known: per horizon, each "
    "model's MAE, RMSE, MAPE, skill against the naive forecast, directional accuracy "
    "and, per interval level, coverage, mean width and interval score; then the "
    "shown-first and naive lines.",
    dependencies={"range_params": RANGE, "whole_listing": WHOLE_LISTING},
)
async def prediction_accuracy(
    *,
    ctx: NamedDependency[ApiContext],
    symbol: FromPath[str],
    horizon: HorizonQuery = None,
    range_params: NamedDependency[PagingParams],
    whole_listing: NamedDependency[None],
) -> PredictionAccuracy:
    coin = ctx.symbols.coin(symbol)
    if range_params.periode == "live":
        raise BadRequest("periode=live: a report covers a range", parameter="periode")
    page = paging(ctx, f"accuracy|{coin}", range_params)
    # date_fin is inclusive, as in the listings; nothing issued after the clock counts.
    start, end = page.range.lo, min(page.range.hi, ctx.now())
    async with ctx.db.connection() as conn:
        lines = await accuracy_lines(
            ctx, conn, coin, horizon=horizon, since=start, until=end + ONE_MICROSECOND
        )
    return PredictionAccuracy(
        crypto_symbol=coin,
        horizon_s=horizon,
        date_debut=start,
        date_fin=end,
        count=len(lines),
        data=lines,
    )


async def accuracy_lines(
    ctx: ApiContext,
    conn: Connection,
    coin: str,
    *,
    horizon: int | None,
    since: datetime,
    until: datetime,
) -> list[ModelAccuracy]:
    """The accuracy report's lines of ``coin`` for the forecasts issued in ``[since, until)``,
    in the report's order: per horizon, the models, then shown first, then naive."""
    params = {
        "symbol": coin,
        "horizon": horizon,
        "since": since,
        "until": until,
        "shown_first": SHOWN_FIRST,
        "naive": NAIVE,
    }
    rows = await ctx.db.fetch(PREDICTION_ACCURACY, params, conn)
    bands: dict[tuple[str, int], list[IntervalAccuracy]] = {}
    for b in await ctx.db.fetch(PREDICTION_INTERVAL_ACCURACY, params, conn):
        fields = msgspec.structs.asdict(b)
        del fields["model_name"], fields["horizon_s"]
        bands.setdefault((b.model_name, b.horizon_s), []).append(IntervalAccuracy(**fields))
    lines = [
        ModelAccuracy(
            **msgspec.structs.asdict(r),
            skill_vs_naive=1.0 - r.mae / r.naive_mae if r.naive_mae else None,
            intervals=sorted(bands.get((r.model_name, r.horizon_s), []), key=lambda i: i.level),
        )
        for r in rows
    ]
    rank = {SHOWN_FIRST: 1, NAIVE: 2}
    return sorted(lines, key=lambda a: (a.horizon_s, rank.get(a.model_name, 0), a.model_name))


def shown_first(latest: Sequence[StoredPrediction]) -> dict[int, str]:
    """Per horizon, the model to show first among each model's latest forecast.

    The one the job flagged ``preferred`` at the newest issue time of that horizon; if
    none is flagged there (rows stored before the flag existed), the model with the
    highest trailing skill if it is at least 0 (never worse than the naive forecast);
    else none: the naive forecast, the last price, is what to show.
    """
    out: dict[int, str] = {}
    for h in sorted({r.horizon_s for r in latest}):
        newest = max(r.timestamp for r in latest if r.horizon_s == h)
        rows = [r for r in latest if r.horizon_s == h and r.timestamp == newest]
        flagged = sorted(r.model_name for r in rows if r.preferred)
        skilled = [r for r in rows if r.trailing_skill is not None and r.trailing_skill >= 0]
        if flagged:
            out[h] = flagged[0]
        elif skilled:
            out[h] = max(skilled, key=lambda r: (r.trailing_skill or 0.0, r.model_name)).model_name
    return out


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
    dependencies={"whole_listing": WHOLE_LISTING},
)
async def cryptos(
    ctx: NamedDependency[ApiContext], whole_listing: NamedDependency[None]
) -> CryptoList:
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
    route_handlers=[latest_price, latest_predictions, prediction_accuracy, candles, cryptos],
    tags=["market"],
)
