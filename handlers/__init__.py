"""Pure event handlers: raw topic payload bytes in, a typed record or a Rejection out.

No I/O happens here: no files, no environment, no clock (``HandlerContext.now``
is passed in). Every handler and Kraken frame parser returns a value for any
input and never raises.
"""

from handlers._alert import parse_alert
from handlers._article import parse_article, sentiment_label
from handlers._candle import (
    CANDLE_TICK_OFFSETS_S,
    Candle,
    candle_header_problem,
    candle_pair,
    candle_ticks,
    parse_candle,
)
from handlers._context import DEFAULT_MAX_FUTURE, HandlerContext, record_context
from handlers._errors import (
    ConfigError,
    CryptoVizError,
    HandlerConfigError,
    HandlerError,
    UnknownTopicError,
)
from handlers._fields import MAX_PRICE, MAX_SIGNED
from handlers._kraken import (
    KrakenControl,
    KrakenEvent,
    KrakenHeartbeat,
    KrakenMessage,
    KrakenPong,
    KrakenStatus,
    KrakenSubscription,
    parse_kraken_v1,
    parse_kraken_v2,
)
from handlers._origin import (
    HISTORY_PREFIX,
    LIVE_SOURCE,
    REPLAY_PREFIX,
    SYNTHETIC_SOURCE,
    Origin,
    history_source,
    origin_of,
    replay_source,
)
from handlers._payload import MAX_PAYLOAD_BYTES
from handlers._records import (
    AlertRecord,
    AlertType,
    ArticleRecord,
    OrdType,
    Record,
    Rejection,
    SentimentLabel,
    Side,
    TickerRecord,
    TradeRecord,
)
from handlers._registry import HANDLERS, STAMPED_TOPICS, Handler, handler_for
from handlers._symbols import Coin, CoinTable
from handlers._ticker import parse_ticker, pct_change
from handlers._time import EPOCH, GENESIS, epoch_seconds, iso_utc
from handlers._trade import parse_trade
from handlers._wire import (
    AlertMessage,
    ArticleContent,
    ArticleMessage,
    ArticleSentiment,
    TickerMessage,
    TradeMessage,
    WireMessage,
    encode_message,
    message_topic,
    to_message,
)

__all__ = [
    "CANDLE_TICK_OFFSETS_S",
    "DEFAULT_MAX_FUTURE",
    "EPOCH",
    "GENESIS",
    "HANDLERS",
    "HISTORY_PREFIX",
    "LIVE_SOURCE",
    "MAX_PAYLOAD_BYTES",
    "MAX_PRICE",
    "MAX_SIGNED",
    "REPLAY_PREFIX",
    "STAMPED_TOPICS",
    "SYNTHETIC_SOURCE",
    "AlertMessage",
    "AlertRecord",
    "AlertType",
    "ArticleContent",
    "ArticleMessage",
    "ArticleRecord",
    "ArticleSentiment",
    "Candle",
    "Coin",
    "CoinTable",
    "ConfigError",
    "CryptoVizError",
    "Handler",
    "HandlerConfigError",
    "HandlerContext",
    "HandlerError",
    "KrakenControl",
    "KrakenEvent",
    "KrakenHeartbeat",
    "KrakenMessage",
    "KrakenPong",
    "KrakenStatus",
    "KrakenSubscription",
    "OrdType",
    "Origin",
    "Record",
    "Rejection",
    "SentimentLabel",
    "Side",
    "TickerMessage",
    "TickerRecord",
    "TradeMessage",
    "TradeRecord",
    "UnknownTopicError",
    "WireMessage",
    "candle_header_problem",
    "candle_pair",
    "candle_ticks",
    "encode_message",
    "epoch_seconds",
    "handler_for",
    "history_source",
    "iso_utc",
    "message_topic",
    "origin_of",
    "parse_alert",
    "parse_article",
    "parse_candle",
    "parse_kraken_v1",
    "parse_kraken_v2",
    "parse_ticker",
    "parse_trade",
    "pct_change",
    "record_context",
    "replay_source",
    "sentiment_label",
    "to_message",
]
