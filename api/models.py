"""msgspec Structs of every request and response body (the OpenAPI schema comes from these).

History responses keep the envelope of the seeds' sentiment example (``crypto_symbol``,
``count``, ``data``; ``pair`` for the series of a pair), ``count`` being the rows of this
page, and add the paging fields: ``next`` is an opaque cursor (``null`` on the last page),
``next_url`` the same request for the next page, ``date_debut``/``date_fin`` the range
served. Rows are newest first. Prices are JSON numbers; times are RFC 3339 UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from handlers import AlertType, SentimentLabel, Side
from spark_batch.accuracy import IntervalAccuracy

ChartType = Literal["line", "candlestick", "area", "bar", "ohlc"]


# -- history rows --------------------------------------------------------------------


class TickerPoint(msgspec.Struct, frozen=True):
    # Not kw_only: pages of up to 1,000 are built positionally (api.db.struct_row).
    timestamp: datetime
    last: float
    bid: float | None
    ask: float | None
    volume_24h: float | None
    bid_qty: float | None
    ask_qty: float | None
    vwap: float | None
    low: float | None
    high: float | None
    change_24h_pct: float | None
    """The exchange's change over 24 hours, in percent."""
    pct_change: float | None
    """The change from the pair's previous price, in percent (the prototype's field)."""


class TradePoint(msgspec.Struct, frozen=True, kw_only=True):
    timestamp: datetime
    price: float
    volume: float
    side: Side
    trade_id: int | None
    ord_type: str | None
    trade_key: str


class SentimentPoint(msgspec.Struct, frozen=True, kw_only=True):
    timestamp: datetime
    window_start: datetime
    sentiment_score: float
    sentiment_label: str
    source: str
    confidence: float
    article_count: int


class SentimentHour(msgspec.Struct, frozen=True, kw_only=True):
    """One hour of a coin's sentiment (``sentiment_hourly``); an hour without any
    analysed article has ``article_count`` 0 and no score or label (``null``)."""

    timestamp: datetime
    """Start of the hour (UTC)."""
    sentiment_score: float | None
    """Mean score of the hour's sentiment windows."""
    sentiment_label: SentimentLabel | None
    """Label of that mean: > 0.6 positive, < 0.4 negative, else neutral."""
    article_count: int
    window_count: int
    """Sentiment windows (``sentiment_data`` rows) in the hour."""


class PredictionPoint(msgspec.Struct, frozen=True, kw_only=True):
    timestamp: datetime
    """When the forecast was issued: it used only ticks before this time."""
    window_start: datetime | None
    model_name: str
    horizon_s: int
    target_time: datetime
    """``timestamp + horizon_s``: the time the forecast is for."""
    predicted_price: float
    actual_price: float | None
    """The last price at or before ``target_time``, once known."""
    confidence_interval_low: float | None
    confidence_interval_high: float | None
    interval_level: float | None
    """Nominal level of the inner interval (0.8; 0.6827 for the prototype's model)."""
    outer_interval_low: float | None
    outer_interval_high: float | None
    outer_interval_level: float | None
    """Nominal level of the outer interval (0.95), if the model has one."""
    last_price: float | None
    """The last price before ``timestamp``: the naive forecast."""
    trailing_skill: float | None
    """``1 - MAE / naive MAE`` of this model and horizon over its recent resolved
    forecasts when this one was issued; negative is worse than the naive forecast,
    ``null`` until enough forecasts are resolved."""
    preferred: bool
    """This model was the one to show first for its coin and horizon at ``timestamp``."""


class ArticlePoint(msgspec.Struct, frozen=True, kw_only=True):
    timestamp: datetime
    article_id: str
    title: str
    url: str | None
    website: str | None
    summary: str | None
    cryptocurrencies_mentioned: list[str]
    sentiment_score: float | None
    sentiment_label: str | None
    subjectivity: float | None


class AlertPoint(msgspec.Struct, frozen=True, kw_only=True):
    timestamp: datetime
    pair: str
    last_price: float | None
    """``null`` for an alert in the ``{pair, type, value, timestamp}`` shape (no price)."""
    change_percent: float
    threshold: float | None
    alert_type: AlertType
    reference_price: float | None
    window_s: int | None


class PricePoint(msgspec.Struct, frozen=True, kw_only=True):
    timestamp: datetime
    price: float
    bid: float | None
    ask: float | None
    volume_24h: float | None


class Candle(msgspec.Struct, frozen=True, kw_only=True):
    timestamp: datetime
    """Start of the bucket (buckets are aligned on UTC, e.g. whole hours, midnight)."""
    open: float
    high: float
    low: float
    close: float
    volume: float
    """Traded volume in the bucket (sum of trade_data.volume; 0 when no trade was stored)."""
    trade_count: int
    tick_count: int


# -- envelopes -----------------------------------------------------------------------


class TickerHistory(msgspec.Struct, frozen=True, kw_only=True):
    pair: str
    count: int
    data: list[TickerPoint]
    limit: int
    next: str | None
    """Cursor of the next page (``null``: this is the last page)."""
    next_url: str | None
    """This request for the next page."""
    date_debut: datetime | None
    """Start of the range served (``null``: open)."""
    date_fin: datetime | None
    """End of the range served (``null``: open)."""


class TradeHistory(msgspec.Struct, frozen=True, kw_only=True):
    pair: str
    count: int
    data: list[TradePoint]
    limit: int
    next: str | None
    """Cursor of the next page (``null``: this is the last page)."""
    next_url: str | None
    """This request for the next page."""
    date_debut: datetime | None
    """Start of the range served (``null``: open)."""
    date_fin: datetime | None
    """End of the range served (``null``: open)."""


class SentimentHistory(msgspec.Struct, frozen=True, kw_only=True):
    """A coin's Spark sentiment windows as stored (``resolution=window``)."""

    crypto_symbol: str
    resolution: Literal["window"] = "window"
    count: int
    data: list[SentimentPoint]
    limit: int
    next: str | None
    """Cursor of the next page (``null``: this is the last page)."""
    next_url: str | None
    """This request for the next page."""
    date_debut: datetime | None
    """Start of the range served (``null``: open)."""
    date_fin: datetime | None
    """End of the range served (``null``: open)."""


class SentimentHourlyHistory(msgspec.Struct, frozen=True, kw_only=True):
    """A coin's sentiment hour by hour, every hour of the range (168 for ``periode=7d``)."""

    crypto_symbol: str
    resolution: Literal["1h"] = "1h"
    count: int
    data: list[SentimentHour]
    limit: int
    next: str | None
    """Cursor of the next page (``null``: this is the last page)."""
    next_url: str | None
    """This request for the next page."""
    date_debut: datetime | None
    """Start of the range served (``null``: open)."""
    date_fin: datetime | None
    """End of the range served (now, when the request left it open)."""


class PredictionHistory(msgspec.Struct, frozen=True, kw_only=True):
    crypto_symbol: str
    horizon_s: int | None
    """The horizon asked for (``null``: every horizon)."""
    count: int
    data: list[PredictionPoint]
    limit: int
    next: str | None
    """Cursor of the next page (``null``: this is the last page)."""
    next_url: str | None
    """This request for the next page."""
    date_debut: datetime | None
    """Start of the range served (``null``: open)."""
    date_fin: datetime | None
    """End of the range served (``null``: open)."""


class ArticleHistory(msgspec.Struct, frozen=True, kw_only=True):
    crypto_symbol: str | None
    count: int
    data: list[ArticlePoint]
    limit: int
    next: str | None
    """Cursor of the next page (``null``: this is the last page)."""
    next_url: str | None
    """This request for the next page."""
    date_debut: datetime | None
    """Start of the range served (``null``: open)."""
    date_fin: datetime | None
    """End of the range served (``null``: open)."""


class AlertHistory(msgspec.Struct, frozen=True, kw_only=True):
    pair: str | None
    count: int
    data: list[AlertPoint]
    limit: int
    next: str | None
    """Cursor of the next page (``null``: this is the last page)."""
    next_url: str | None
    """This request for the next page."""
    date_debut: datetime | None
    """Start of the range served (``null``: open)."""
    date_fin: datetime | None
    """End of the range served (``null``: open)."""


class PriceHistory(msgspec.Struct, frozen=True, kw_only=True):
    crypto_symbol: str
    pair: str
    count: int
    data: list[PricePoint]
    limit: int
    next: str | None
    """Cursor of the next page (``null``: this is the last page)."""
    next_url: str | None
    """This request for the next page."""
    date_debut: datetime | None
    """Start of the range served (``null``: open)."""
    date_fin: datetime | None
    """End of the range served (``null``: open)."""


class Candles(msgspec.Struct, frozen=True, kw_only=True):
    pair: str
    interval: str
    count: int
    data: list[Candle]
    limit: int
    next: str | None
    """Cursor of the next page (``null``: this is the last page)."""
    next_url: str | None
    """This request for the next page."""
    date_debut: datetime | None
    """Start of the range served (``null``: open)."""
    date_fin: datetime | None
    """End of the range served (``null``: open)."""


class LiveLinks(msgspec.Struct, frozen=True, kw_only=True):
    """``periode=live``: where to follow this series in real time."""

    periode: Literal["live"] = "live"
    channel: str
    """The live channel (``ticker:BTC/USD``), also usable on the multiplexed socket."""
    websocket: str
    """URL of the dedicated WebSocket for this series."""
    multiplex: str
    """URL of ``/ws/live``; send ``subscribe_message`` after connecting."""
    subscribe_message: dict[str, object]


class LatestPrice(msgspec.Struct, frozen=True, kw_only=True):
    crypto_symbol: str
    pair: str
    price: float
    bid: float | None
    ask: float | None
    spread: float | None
    volume_24h: float | None
    change_24h_pct: float | None
    change_24h_source: Literal["computed", "exchange"] | None
    """``computed`` from the stored price 24 h before the latest one; ``exchange``: the
    exchange's own 24 h change, used when no stored price is that old."""
    timestamp: datetime
    age_s: float
    """Seconds between the latest price and the moment the API answered."""


class ModelAccuracy(msgspec.Struct, frozen=True, kw_only=True):
    """The accuracy report's line of one model and horizon (``python -m spark_batch.report``).

    ``model_name`` is a model, ``shown_first`` (the forecasts flagged ``preferred``,
    whichever model made them) or ``naive_last_value`` (the last price as forecast).
    """

    model_name: str
    horizon_s: int
    predictions: int
    """Forecasts of the window whose actual price is known."""
    mae: float
    rmse: float
    mape_pct: float | None
    directional_accuracy: float | None
    """Share of right up/down calls where the price moved."""
    direction_calls: int
    naive_mae: float | None
    naive_rmse: float | None
    naive_mape_pct: float | None
    skill_vs_naive: float | None
    """``1 - MAE / naive MAE`` over these forecasts: below 0 is worse than naive."""
    intervals: list[IntervalAccuracy]


class StoredPrediction(msgspec.Struct, frozen=True, kw_only=True):
    """A model's latest forecast for one horizon as stored (the row of ``LATEST_PREDICTIONS``)."""

    model_name: str
    horizon_s: int
    timestamp: datetime
    window_start: datetime | None
    target_time: datetime
    predicted_price: float
    confidence_interval_low: float | None
    confidence_interval_high: float | None
    interval_level: float | None
    outer_interval_low: float | None
    outer_interval_high: float | None
    outer_interval_level: float | None
    last_price: float | None
    trailing_skill: float | None
    preferred: bool


class ModelPrediction(StoredPrediction, frozen=True, kw_only=True):
    label: str
    """What the dashboard calls the model (the prototype's is "the prototype's baseline")."""
    shown_first: bool
    """The forecast to show first for its horizon (see ``LatestPredictions``)."""
    accuracy: ModelAccuracy | None
    """Its model and horizon over the accuracy window (``null``: nothing scored yet)."""


class LatestPredictions(msgspec.Struct, frozen=True, kw_only=True):
    """Each model's latest forecast per horizon, the one to show first, and the live
    accuracy report of the trailing window.

    Shown first, per horizon: the model flagged ``preferred`` by the job at its latest
    forecast (its trailing skill is never below the naive forecast's); for rows
    without a flag (stored before the flag existed), the model with the highest
    trailing skill if it is at least 0; otherwise none (show the last price).
    """

    crypto_symbol: str
    horizon_s: int | None
    """The horizon asked for (``null``: every horizon)."""
    count: int
    data: list[ModelPrediction]
    """Per horizon (ascending): the one shown first, then the others by name."""
    accuracy_from: datetime | None
    accuracy_to: datetime | None
    """The trailing window scored: forecasts issued in ``[from, to)``, ``to`` the latest."""
    baselines: list[ModelAccuracy]
    """The report's ``shown_first`` and ``naive_last_value`` lines of the window."""


class PredictionAccuracy(msgspec.Struct, frozen=True, kw_only=True):
    """The accuracy report of a coin over a range: per horizon, one line per model,
    then ``shown_first`` and ``naive_last_value``."""

    crypto_symbol: str
    horizon_s: int | None
    date_debut: datetime
    date_fin: datetime
    count: int
    data: list[ModelAccuracy]


class CryptoStatus(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    name: str
    active: bool
    pairs: list[str]
    last_ticker: datetime | None
    last_trade: datetime | None
    last_sentiment: datetime | None
    last_prediction: datetime | None
    age_s: float | None
    """Seconds since the newest ticker of any of its pairs (``null``: none yet)."""


class CryptoList(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    data: list[CryptoStatus]


class DependencyHealth(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["up", "down"]
    latency_ms: float | None
    error: str | None


class LiveHealth(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["running", "starting", "disabled", "failed"]
    assigned_partitions: int
    clients: int


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok", "down"]
    database: DependencyHealth
    kafka: DependencyHealth
    live: LiveHealth


class DeadLetterCount(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    retained: int | None
    """Dead letters in the topic now (what Kafka's retention kept); ``None``: unknown."""
    last_24h: int | None
    """Of those, the ones written in the last 24 hours."""
    error: str | None


class PairTradeGaps(msgspec.Struct, frozen=True, kw_only=True):
    pair: str
    gaps: int
    missing_trades: int


class TradeGapCount(msgspec.Struct, frozen=True, kw_only=True):
    window_hours: int
    gaps: int | None
    """Holes in the stored ``trade_id`` sequences (every pair) over the window."""
    missing_trades: int | None
    """Trade ids those holes leave out."""
    pairs: list[PairTradeGaps]
    error: str | None


class PipelineCounts(msgspec.Struct, frozen=True, kw_only=True):
    checked_at: datetime
    dead_letters: DeadLetterCount
    trade_gaps: TradeGapCount


# -- configuration -------------------------------------------------------------------

SymbolText = Annotated[str, Meta(min_length=1, max_length=40, description="symbol or alias")]
NameText = Annotated[str, Meta(min_length=1, max_length=100)]
Indicator = Annotated[
    str,
    Meta(
        pattern=r"^(sma|ema|wma|rsi|macd|bollinger|vwap|volume|atr|stoch)(:[1-9][0-9]{0,2})?$",
        description="indicator, optionally with a period: sma:20, ema:50, rsi:14, macd",
    ),
]
Indicators = Annotated[list[Indicator], Meta(max_length=10)]
TimeRangeText = Annotated[
    str, Meta(description="a periode value: 1m, 5m, 15m, 30m, 1h, 6h, 12h, 24h, 7d, 30d, live")
]


class CryptoConfig(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    name: str
    active: bool
    created_at: datetime
    updated_at: datetime


class CryptoConfigList(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    data: list[CryptoConfig]


class CryptoConfigCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    symbol: SymbolText
    name: NameText
    active: bool = True


class CryptoConfigUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: NameText
    active: bool


class CryptoConfigPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: NameText | None = None
    active: bool | None = None


class VisualizationConfig(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    symbol: str
    time_range: str
    chart_type: str
    indicators: list[str]
    created_at: datetime
    updated_at: datetime


class VisualizationConfigList(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    data: list[VisualizationConfig]


class VisualizationConfigCreate(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    name: NameText
    symbol: SymbolText
    time_range: TimeRangeText
    chart_type: ChartType
    indicators: Indicators = msgspec.field(default_factory=list)


class VisualizationConfigPatch(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    name: NameText | None = None
    symbol: SymbolText | None = None
    time_range: TimeRangeText | None = None
    chart_type: ChartType | None = None
    indicators: Indicators | None = None
