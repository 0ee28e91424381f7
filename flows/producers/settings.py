"""Typed producer settings, read once from the environment by :func:`load_producer_settings`.

The structs never look at ``os.environ``: tests build them directly with short
intervals and local URLs; only the worker entry points (``flows.producers.workers``)
call the loader. Shared settings (Kafka address, state dir, coin table) stay in
:mod:`infra.settings`.

Environment variables (all optional):

===================================  ===========================================================
``CRYPTOVIZ_TOPIC_RAWTICKER``...     actual topic for each raw topic (also ``_RAWTRADE``,
                                     ``_RAWARTICLE``, ``_RAWALERT``); default: the raw name
``CRYPTOVIZ_PRODUCER_RETRIES``       re-sends of a message whose delivery failed (default 5)
``CRYPTOVIZ_TRACE_SAMPLE_RATIO``     share of traces marked sampled in ``traceparent`` (1.0)
``OTEL_EXPORTER_OTLP_ENDPOINT``      record sampled publish spans and export them over OTLP/HTTP
                                     (default: none; every message still gets a traceparent)
``CRYPTOVIZ_KRAKEN_WS_URL``          Kraken v2 WebSocket (``wss://ws.kraken.com/v2``)
``CRYPTOVIZ_KRAKEN_REST_URL``        REST ``Trades`` for gap fills
                                     (``https://api.kraken.com/0/public/Trades``)
``CRYPTOVIZ_KRAKEN_PAIRS``           comma-separated pairs (default: ``tracked`` of the coin table)
``CRYPTOVIZ_KRAKEN_HEARTBEAT_S``     silence (no frame at all) before reconnecting (10)
``CRYPTOVIZ_KRAKEN_DATA_S``          per-symbol silence before resubscribing it (300)
``CRYPTOVIZ_KRAKEN_PING_S``          application ping interval (30)
``CRYPTOVIZ_RSS_FEEDS``              ``name=url`` entries separated by whitespace or ``;``
``CRYPTOVIZ_RSS_POLL_S``             poll interval per feed (300)
``CRYPTOVIZ_RSS_TIMEOUT_S``          HTTP timeout per feed request (15)
``CRYPTOVIZ_ALERT_THRESHOLD_PCT``    default move that raises an alert, in percent (0.5)
``CRYPTOVIZ_ALERT_THRESHOLDS``       per-pair overrides: ``BTC/USD=0.3,SOL/USD=1``
``CRYPTOVIZ_ALERT_WINDOW_S``         rolling reference window (60)
``CRYPTOVIZ_ALERT_COOLDOWN_S``       minimum time between two alerts of a pair and direction (300)
``CRYPTOVIZ_ALERT_FROM``             ``end`` (default) or ``beginning`` of the ticker topic
``CRYPTOVIZ_REPLAY_FILES``           capture files, separated by ``os.pathsep`` (default: the
                                     bundled samples plus ``../shared/fixtures/real`` if present)
``CRYPTOVIZ_REPLAY_SPEED``           1 = recorded speed, 10 = ten times faster, 0 = max (1)
``CRYPTOVIZ_REPLAY_EXIT``            ``1``: the worker exits after the last file (default: idles)
``CRYPTOVIZ_SYNTHETIC_RATE``         synthetic messages per second (200)
``CRYPTOVIZ_SYNTHETIC_PAIRS``        number of synthetic pairs (tracked pairs first) (12)
``CRYPTOVIZ_SYNTHETIC_PAIR_OFFSET``  skip this many pairs of that sequence (0); producers
                                     run side by side get offsets 0, N, 2N... so their pairs
                                     are disjoint (``bench.soak``)
``CRYPTOVIZ_SYNTHETIC_SEED``         random seed (default: random)
===================================  ===========================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path

import msgspec

from infra.settings import RAW_TOPICS, REPO_ROOT, SettingsError

SAMPLES = Path(__file__).resolve().parent / "samples"
SHARED_REAL = REPO_ROOT.parent / "shared" / "fixtures" / "real"


class FeedSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    url: str


DEFAULT_FEEDS: tuple[FeedSpec, ...] = (
    FeedSpec(name="coindesk", url="https://www.coindesk.com/arc/outboundfeeds/rss/"),
    FeedSpec(name="cointelegraph", url="https://cointelegraph.com/rss"),
    FeedSpec(name="decrypt", url="https://decrypt.co/feed"),
    FeedSpec(name="cryptoslate", url="https://cryptoslate.com/feed/"),
    FeedSpec(name="bitcoinmagazine", url="https://bitcoinmagazine.com/feed"),
)


class OutputSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How producers write to Kafka."""

    topics: dict[str, str] = msgspec.field(default_factory=lambda: {t: t for t in RAW_TOPICS})
    """Raw topic name -> the topic actually written (tests use fresh topics)."""
    retries: int = 5
    """Re-sends of a message whose delivery failed before the worker fails loudly."""
    flush_timeout_s: float = 30.0
    """Longest wait for acknowledgements at an epoch boundary before failing."""
    linger_ms: int = 5
    config: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra librdkafka properties (tests shorten ``message.timeout.ms``)."""
    trace_sample_ratio: float = 1.0
    otlp_endpoint: str | None = None
    """OTLP/HTTP base URL; spans are only built (and exported) when this is set."""


KRAKEN_WS_URL = "wss://ws.kraken.com/v2"
KRAKEN_REST_TRADES_URL = "https://api.kraken.com/0/public/Trades"


class KrakenSettings(msgspec.Struct, frozen=True, kw_only=True):
    ws_url: str = KRAKEN_WS_URL
    rest_trades_url: str = KRAKEN_REST_TRADES_URL
    pairs: tuple[str, ...] = ()
    """Canonical pairs; empty means the coin table's ``tracked`` pairs."""
    channels: tuple[str, ...] = ("ticker", "trade")
    snapshot: bool = True
    connect_timeout_s: float = 10.0
    heartbeat_timeout_s: float = 10.0
    """No frame at all (Kraken heartbeats about once a second) for this long: reconnect."""
    ack_timeout_s: float = 10.0
    data_timeout_s: float = 300.0
    """An acknowledged symbol silent this long is resubscribed; silent again, reconnect."""
    ping_interval_s: float = 30.0
    pong_timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    healthy_after_s: float = 30.0
    """A connection that lived this long resets the backoff."""
    connect_budget: int = 150
    connect_window_s: float = 600.0
    after_maintenance_s: float = 5.0
    rest_timeout_s: float = 10.0
    rest_attempts: int = 5
    rest_retry_s: float = 2.0
    gap_fill_max: int = 5000
    """Largest number of missing trades of one gap that are fetched over REST."""
    rest_asset_names: dict[str, str] = msgspec.field(
        default_factory=lambda: {"BTC": "XBT", "DOGE": "XDG"}
    )
    """Canonical -> REST asset names (REST pairs are ``XBTUSD``, the WebSocket's ``BTC/USD``)."""
    run_for_s: float | None = None
    """Stop after this long (tests, benchmarks); ``None`` runs forever."""


class RssSettings(msgspec.Struct, frozen=True, kw_only=True):
    feeds: tuple[FeedSpec, ...] = DEFAULT_FEEDS
    poll_interval_s: float = 300.0
    timeout_s: float = 15.0
    max_bytes: int = 10_000_000
    backoff_initial_s: float = 30.0
    backoff_max_s: float = 1800.0
    seen_capacity: int = 5000
    """Dedup keys remembered per feed (a feed lists far fewer entries than this)."""
    user_agent: str = "CryptoViz/0.1 (news producer; +https://github.com/)"
    run_for_s: float | None = None


class AlertSettings(msgspec.Struct, frozen=True, kw_only=True):
    threshold_pct: Decimal = Decimal("0.5")
    thresholds: dict[str, Decimal] = msgspec.field(default_factory=dict)
    """Per-pair thresholds in percent, overriding :attr:`threshold_pct`."""
    window_s: int = 60
    cooldown_s: float = 300.0
    from_beginning: bool = False
    """Consume the ticker topic from its beginning instead of its end (first start only)."""

    def threshold_for(self, pair: str) -> Decimal:
        return self.thresholds.get(pair, self.threshold_pct)


class ReplaySettings(msgspec.Struct, frozen=True, kw_only=True):
    files: tuple[Path, ...] = ()
    speed: float = 1.0
    """1 = recorded speed, N = N times faster, 0 = as fast as possible."""
    line_gap_s: float = 0.0
    """Pause between frames of a file that carries no receive times (at speed 1)."""
    exit_at_end: bool = True


class SyntheticSettings(msgspec.Struct, frozen=True, kw_only=True):
    pairs: int = 12
    pair_offset: int = 0
    """Pairs skipped at the start of the sequence (disjoint pairs for parallel producers)."""
    rate: float = 200.0
    """Messages per second, all pairs together."""
    trade_share: float = 0.7
    seed: int | None = None
    volatility: float = 0.01
    """Standard deviation of the log price per simulated hour (0.01 = 1 %)."""
    trend_switch_per_s: float = 0.02
    jump_per_s: float = 0.01
    """Jumps (1-3 % moves) per pair and second of simulated time."""
    max_messages: int | None = None
    run_for_s: float | None = None


class ProducerSettings(msgspec.Struct, frozen=True, kw_only=True):
    output: OutputSettings = OutputSettings()
    kraken: KrakenSettings = KrakenSettings()
    rss: RssSettings = RssSettings()
    alerts: AlertSettings = AlertSettings()
    replay: ReplaySettings = ReplaySettings()
    synthetic: SyntheticSettings = SyntheticSettings()

    def topic(self, raw: str) -> str:
        """The topic actually written for a raw topic name."""
        return self.output.topics.get(raw, raw)


# -- loading ------------------------------------------------------------------------


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not value >= minimum:  # also rejects NaN
        raise SettingsError(f"{name}={raw} must be >= {minimum:g}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be >= {minimum}")
    return value


def _pct(name: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise SettingsError(f"{name}: {raw!r} is not a decimal percentage") from None
    if not value.is_finite() or value <= 0:
        raise SettingsError(f"{name}: {raw!r} must be a positive percentage")
    return value


def parse_feeds(raw: str) -> tuple[FeedSpec, ...]:
    """``"coindesk=https://... cointelegraph=https://..."`` (``;`` or whitespace separated)."""
    feeds: list[FeedSpec] = []
    for item in raw.replace(";", " ").split():
        name, sep, url = item.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise SettingsError(f"CRYPTOVIZ_RSS_FEEDS entry {item!r} must be name=http(s)://url")
        if any(f.name == name for f in feeds):
            raise SettingsError(f"CRYPTOVIZ_RSS_FEEDS names feed {name!r} twice")
        feeds.append(FeedSpec(name=name, url=url))
    if not feeds:
        raise SettingsError("CRYPTOVIZ_RSS_FEEDS is set but names no feed")
    return tuple(feeds)


def parse_thresholds(raw: str) -> dict[str, Decimal]:
    """``"BTC/USD=0.3,SOL/USD=1"`` -> per-pair thresholds in percent."""
    out: dict[str, Decimal] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        pair, sep, value = item.partition("=")
        if not sep or not pair.strip():
            raise SettingsError(f"CRYPTOVIZ_ALERT_THRESHOLDS entry {item!r} must be PAIR=percent")
        out[pair.strip()] = _pct("CRYPTOVIZ_ALERT_THRESHOLDS", value)
    return out


def default_replay_files() -> tuple[Path, ...]:
    """The bundled samples, plus the real captures of ``../shared`` when the clone has them."""
    kinds = (".txt", ".jsonl", ".xml")
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix in kinds)
    if SHARED_REAL.is_dir():
        files += sorted(p for p in SHARED_REAL.rglob("*") if p.suffix in kinds)
    return tuple(files)


def load_producer_settings(env: Mapping[str, str] | None = None) -> ProducerSettings:
    """Build :class:`ProducerSettings` from environment variables (``os.environ`` by default)."""
    env = os.environ if env is None else env
    topics = {t: env.get(f"CRYPTOVIZ_TOPIC_{t.upper()}") or t for t in RAW_TOPICS}
    ratio = _float(env, "CRYPTOVIZ_TRACE_SAMPLE_RATIO", 1.0)
    if ratio > 1:
        raise SettingsError(f"CRYPTOVIZ_TRACE_SAMPLE_RATIO={ratio} must be between 0 and 1")
    output = OutputSettings(
        topics=topics,
        retries=_int(env, "CRYPTOVIZ_PRODUCER_RETRIES", 5),
        trace_sample_ratio=ratio,
        otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
    )
    pairs = tuple(p.strip() for p in env.get("CRYPTOVIZ_KRAKEN_PAIRS", "").split(",") if p.strip())
    kraken = KrakenSettings(
        ws_url=env.get("CRYPTOVIZ_KRAKEN_WS_URL") or KRAKEN_WS_URL,
        rest_trades_url=env.get("CRYPTOVIZ_KRAKEN_REST_URL") or KRAKEN_REST_TRADES_URL,
        pairs=pairs,
        heartbeat_timeout_s=_float(env, "CRYPTOVIZ_KRAKEN_HEARTBEAT_S", 10.0, 0.1),
        data_timeout_s=_float(env, "CRYPTOVIZ_KRAKEN_DATA_S", 300.0, 0.1),
        ping_interval_s=_float(env, "CRYPTOVIZ_KRAKEN_PING_S", 30.0, 0.1),
    )
    feeds_raw = env.get("CRYPTOVIZ_RSS_FEEDS")
    rss = RssSettings(
        feeds=parse_feeds(feeds_raw) if feeds_raw else DEFAULT_FEEDS,
        poll_interval_s=_float(env, "CRYPTOVIZ_RSS_POLL_S", 300.0, 0.01),
        timeout_s=_float(env, "CRYPTOVIZ_RSS_TIMEOUT_S", 15.0, 0.01),
    )
    start = (env.get("CRYPTOVIZ_ALERT_FROM") or "end").strip().lower()
    if start not in ("end", "beginning"):
        raise SettingsError(f"CRYPTOVIZ_ALERT_FROM={start!r} must be 'end' or 'beginning'")
    threshold = env.get("CRYPTOVIZ_ALERT_THRESHOLD_PCT")
    alerts = AlertSettings(
        threshold_pct=_pct("CRYPTOVIZ_ALERT_THRESHOLD_PCT", threshold)
        if threshold
        else Decimal("0.5"),
        thresholds=parse_thresholds(env.get("CRYPTOVIZ_ALERT_THRESHOLDS", "")),
        window_s=_int(env, "CRYPTOVIZ_ALERT_WINDOW_S", 60, 1),
        cooldown_s=_float(env, "CRYPTOVIZ_ALERT_COOLDOWN_S", 300.0),
        from_beginning=start == "beginning",
    )
    files_raw = env.get("CRYPTOVIZ_REPLAY_FILES")
    files = (
        tuple(Path(p) for p in files_raw.split(os.pathsep) if p)
        if files_raw
        else default_replay_files()
    )
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise SettingsError(f"CRYPTOVIZ_REPLAY_FILES: not a file: {', '.join(missing)}")
    replay = ReplaySettings(
        files=files,
        speed=_float(env, "CRYPTOVIZ_REPLAY_SPEED", 1.0),
        exit_at_end=env.get("CRYPTOVIZ_REPLAY_EXIT", "") == "1",
    )
    seed_raw = env.get("CRYPTOVIZ_SYNTHETIC_SEED")
    synthetic = SyntheticSettings(
        rate=_float(env, "CRYPTOVIZ_SYNTHETIC_RATE", 200.0, 0.001),
        pairs=_int(env, "CRYPTOVIZ_SYNTHETIC_PAIRS", 12, 1),
        pair_offset=_int(env, "CRYPTOVIZ_SYNTHETIC_PAIR_OFFSET", 0),
        seed=_int(env, "CRYPTOVIZ_SYNTHETIC_SEED", 0) if seed_raw else None,
    )
    return ProducerSettings(
        output=output, kraken=kraken, rss=rss, alerts=alerts, replay=replay, synthetic=synthetic
    )
