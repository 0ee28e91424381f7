"""Producer dataflows and their worker entry point (:func:`producer_worker`).

Every flow ends the same way: wire message -> :func:`~flows.producers.kafka_edge.to_record`
(on the topic map, ``Settings.kafka.topics``) ->
:class:`~flows.producers.kafka_edge.KafkaProducerSink`. The producers reading the
outside world share one builder, :func:`build_producer_flow` (:data:`SOURCES` names
each one's source); the alert producer reads the ticker topic
(:func:`build_alert_flow`). Tests pass ``source`` and ``sink``
(``TestingSource``/``TestingSink``) to run the same flows without a broker or the
network. The programs themselves are declared in :mod:`infra.programs`.

    python -m flows.run producer-kraken      # live Kraken v2 ticker + trade
    python -m flows.run producer-rss         # news feeds
    python -m flows.run producer-alerts      # rawticker -> rawalert
    python -m flows.run producer-replay      # recorded captures and feeds
    python -m flows.run producer-synthetic   # generated market at a fixed rate
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Set
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeGuard

import bytewax.operators as op
import msgspec
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from flows._consumer import SMALL_MESSAGES_CONSUMER_CONFIG, committing_to
from flows.producers import _metrics as m
from flows.producers.alert_log import AlertKey, published_alert_keys
from flows.producers.alerts import AlertDetector, AlertState, path_key
from flows.producers.kafka_edge import KafkaProducerSink, Keyed, OutRecord, to_record
from flows.producers.kraken import KrakenSource
from flows.producers.replay import ReplaySource, candle_coins
from flows.producers.rss import RssSource
from flows.producers.settings import (
    ProducerSettings,
    load_producer_settings,
)
from flows.producers.synthetic import SyntheticSource
from handlers import (
    AlertMessage,
    CoinTable,
    ConfigError,
    HandlerContext,
    Rejection,
    TickerMessage,
    TickerRecord,
    WireMessage,
    parse_ticker,
    pct_change,
)
from infra.programs import consumer_group
from infra.settings import Settings, SettingsError
from infra.tracking import TrackedCoins

log = logging.getLogger(__name__)


def _sink(
    settings: Settings, producer: ProducerSettings, sink: Sink[Keyed] | None, service: str
) -> Sink[Keyed]:
    if sink is not None:
        return sink
    bootstrap = settings.kafka.bootstrap_servers
    if bootstrap is None:
        raise SettingsError("KAFKA_BOOTSTRAP_SERVERS is not set and no sink was given")
    return KafkaProducerSink(
        bootstrap, producer.output, service=service, otlp_endpoint=settings.otlp_endpoint
    )


SourceFactory = Callable[[ProducerSettings, CoinTable, TrackedCoins | None], Source[Any]]
"""``(producer settings, coin table, tracked coins or None) -> the worker's source``."""


def _synthetic(producer: ProducerSettings, coins: CoinTable) -> SyntheticSource:
    """The synthetic market; beside a replay, it leaves the replayed candles' coins alone."""
    synthetic = producer.synthetic
    if synthetic.beside_replay:
        replayed = candle_coins(producer.replay, coins)
        log.info("synthetic: leaving %s to the replay", ", ".join(replayed) or "no coin")
        synthetic = msgspec.structs.replace(
            synthetic, exclude_coins=(*synthetic.exclude_coins, *replayed)
        )
    return SyntheticSource(synthetic, coins)


SOURCES: dict[str, tuple[str, SourceFactory]] = {
    "producer-kraken": ("kraken", lambda p, c, t: KrakenSource(p.kraken, c, tracking=t)),
    "producer-rss": ("feeds", lambda p, c, t: RssSource(p.rss, c, tracking=t)),
    "producer-replay": ("replay", lambda p, c, _t: ReplaySource(p.replay, c)),
    "producer-synthetic": ("synthetic", lambda p, c, _t: _synthetic(p, c)),
}
"""Worker name -> (input step id, its source): every producer that reads the outside world."""

FOLLOWS_CONFIGURATION: frozenset[str] = frozenset(("producer-kraken", "producer-rss"))
"""The producers that follow the tracked coins (``crypto_configuration``, read live when
``DATABASE_URL`` is set: :mod:`infra.tracking`), so the only ones that need the database;
the replay and synthetic producers send what was recorded or generated, whatever is
tracked."""


def build_producer_flow(
    name: str,
    settings: Settings,
    producer: ProducerSettings,
    *,
    source: Source[Any] | None = None,
    sink: Sink[Keyed] | None = None,
) -> Dataflow:
    """The dataflow of the source producer ``name`` (a key of :data:`SOURCES`).

    source (default: the worker's own, from ``producer``) -> wire message ->
    :func:`to_record` on the topic map of ``settings`` -> Kafka (or ``sink``).
    """
    step, make_source = SOURCES[name]
    flow = Dataflow(name.replace("-", "_"))
    if source is None:
        coins = settings.coin_table()
        tracking = settings.tracked_coins(name, coins) if name in FOLLOWS_CONFIGURATION else None
        source = make_source(producer, coins, tracking)
    messages = op.input(step, flow, source)
    topics = settings.kafka.topics

    def record(msg: WireMessage) -> Keyed:
        return to_record(msg, topics)

    priced = with_pct_change(messages)
    op.output("kafka", op.map("to_kafka", priced, record), _sink(settings, producer, sink, name))
    return flow


def _is_ticker(msg: WireMessage) -> TypeGuard[TickerMessage]:
    return isinstance(msg, TickerMessage)


ALL_PAIRS = "all-pairs"
"""The one key of the last-price state: every tick through one ``stateful_map`` keeps
the source's order across pairs (keyed by pair, Bytewax would hand each pair's ticks of
an epoch over together, regrouping a replay's market-time interleaving)."""


def _all_pairs(_msg: TickerMessage) -> str:
    return ALL_PAIRS


def with_pct_change(messages: Stream[WireMessage]) -> Stream[WireMessage]:
    """``messages`` with each ticker's ``pct_change`` set by :func:`previous_price`, the
    last price of every pair kept as Bytewax state (``stateful_map``).

    Recovery snapshots that state with the source's position in the same epoch, so a
    producer restarted from a snapshot re-sends the ticks after it with the very
    ``pct_change`` it sent before, and the first tick it had not sent gets the change
    from the last one it had: a chaos run whose replay producer was killed stored a
    different ``pct_change`` than the reference run when the last price was a plain
    attribute of the worker, lost with it. Other messages pass unchanged (their topics
    are other topics: their order relative to the ticks does not matter).
    """
    split = op.branch("tickers", messages, _is_ticker)
    keyed = op.key_on("one_state", split.trues, _all_pairs)
    priced = op.key_rm("priced", op.stateful_map("pct_change", keyed, _with_last_prices))
    return op.merge("with_pct_change", priced, split.falses)


def _with_last_prices(
    last: dict[str, Decimal] | None, tick: TickerMessage
) -> tuple[dict[str, Decimal], TickerMessage]:
    prices = {} if last is None else last
    prices[tick.pair], priced = previous_price(prices.get(tick.pair), tick)
    return prices, priced


def previous_price(before: Decimal | None, tick: TickerMessage) -> tuple[Decimal, TickerMessage]:
    """(the pair's price to keep, ``tick`` with its ``pct_change``): the percent change
    from ``before``, the previous price of its pair (the prototype's field); none for a
    pair's first tick, and where :func:`handlers.pct_change` gives none (``before`` 0,
    a change too large to store)."""
    change = pct_change(before, tick.last)
    return tick.last, tick if change is None else msgspec.structs.replace(tick, pct_change=change)


Payload = tuple[bytes | None, str | None]
"""A ``rawticker`` message value and its ``traceparent`` header (if any)."""


class TickerParser:
    """``rawticker`` payload -> (record, traceparent), by the ingestion handler (one contract)."""

    def __init__(self, coins: CoinTable) -> None:
        self._coins = coins

    def __call__(self, item: Payload) -> tuple[TickerRecord, str | None] | None:
        payload, parent = item
        result = (
            Rejection(reason="empty message value")
            if payload is None
            else parse_ticker(payload, HandlerContext(coins=self._coins, now=datetime.now(UTC)))
        )
        if isinstance(result, Rejection):
            # The ingestion worker dead-letters these; here they only cannot alert.
            m.TICKER_REJECTED.inc()
            log.warning("alerts: ticker refused: %s", result.reason)
            return None
        return result, parent


def _payload(msg: KafkaSourceMessage[bytes | None, bytes | None]) -> Payload:
    parent = next((v.decode() for k, v in msg.headers if k == "traceparent"), None)
    return msg.value, parent


def build_alert_flow(
    settings: Settings,
    producer: ProducerSettings,
    *,
    kafka_topic: str | None = None,
    source: Source[Payload] | None = None,
    sink: Sink[Keyed] | None = None,
    already_sent: Set[AlertKey] | None = None,
) -> Dataflow:
    """rawticker -> :class:`AlertDetector` per price path, (pair, source) (recovery state) ->
    rawalert.

    ``already_sent``: alert keys not to publish again (default: read back from the
    alert topic when reading the ticker topic from Kafka, else none).
    """
    flow = Dataflow("producer_alerts")
    topics = settings.kafka.topics
    if source is None:
        bootstrap = settings.kafka.bootstrap_servers
        if bootstrap is None:
            raise SettingsError("KAFKA_BOOTSTRAP_SERVERS is not set and no source was given")
        if already_sent is None:
            already_sent = published_alert_keys(bootstrap, topics.rawalert)
        consumed = kop.input(
            "rawticker_in",
            flow,
            brokers=[bootstrap],
            topics=[kafka_topic or topics.rawticker],
            tail=True,
            starting_offset=OFFSET_BEGINNING if producer.alerts.from_beginning else OFFSET_END,
            add_config={
                **SMALL_MESSAGES_CONSUMER_CONFIG,
                **committing_to(consumer_group("producer-alerts")),
            },
        )
        op.inspect("kafka_errors", consumed.errs, lambda _step, err: log.error("alerts: %s", err))
        payloads: Stream[Payload] = op.map("payload", consumed.oks, _payload)
    else:
        payloads = op.input("rawticker_in", flow, source)
    tickers = op.filter_map("parse", payloads, TickerParser(settings.coin_table()))
    # One window per price path: ticks of one pair from two sources (a recorded capture
    # and the synthetic market, say) are never compared with each other.
    keyed = op.key_on("by_pair", tickers, lambda item: path_key(item[0]))
    detector = AlertDetector(producer.alerts, already_sent or frozenset())

    def detect(
        state: AlertState | None, item: tuple[TickerRecord, str | None]
    ) -> tuple[AlertState, tuple[AlertMessage | None, str | None]]:
        new_state, alert = detector(state, item[0])
        return new_state, (alert, item[1])

    found = op.stateful_map("detect", keyed, detect)

    def record(item: tuple[str, tuple[AlertMessage | None, str | None]]) -> Keyed | None:
        alert, parent = item[1]
        return None if alert is None else to_record(alert, topics, parent)

    records: Stream[tuple[str, OutRecord]] = op.filter_map("to_kafka", found, record)
    op.output("kafka", records, _sink(settings, producer, sink, "producer-alerts"))
    return flow


# -- worker entry point (the process edge: the only place producer settings are loaded) ---


def producer_worker(name: str, settings: Settings, kafka_topic: str | None = None) -> Dataflow:
    """The dataflow of the producer worker ``name``, its settings read from the environment.

    ``--topic`` (``kafka_topic``) names the ticker topic the alert worker watches; the
    other producers write several topics, named by the topic map only.
    """
    producer = load_producer_settings()
    if name == "producer-alerts":
        return build_alert_flow(settings, producer, kafka_topic=kafka_topic)
    if name not in SOURCES:
        raise ConfigError(f"no producer is called {name!r} (known: {', '.join(SOURCES)})")
    if kafka_topic is not None:
        raise SettingsError(
            f"{name} writes several topics; set CRYPTOVIZ_TOPIC_RAW* instead of --topic"
        )
    return build_producer_flow(name, settings, producer)
