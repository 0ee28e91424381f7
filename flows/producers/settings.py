"""Typed producer settings, read once from the environment by :func:`load_producer_settings`.

The structs never look at ``os.environ``: tests build them directly with short
intervals and local URLs; only the worker entry points (``flows.producers.workers``)
call the loader, which uses the shared reader of :mod:`infra.settings` (each variable
is declared on its field, with its bounds; the README's "Configuration" tables list
them). Shared settings (Kafka address, the topic map, the OTLP endpoint, state dir,
coin table) stay in :mod:`infra.settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from infra.programs import KRAKEN_WS_URL
from infra.settings import REPO_ROOT, SettingsError, env, read_env

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


def _pct(raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not a decimal percentage") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{raw!r} must be a positive percentage")
    return value


def parse_thresholds(raw: str) -> dict[str, Decimal]:
    """``"BTC/USD=0.3,SOL/USD=1"`` -> per-pair thresholds in percent."""
    out: dict[str, Decimal] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        pair, sep, value = item.partition("=")
        if not sep or not pair.strip():
            raise ValueError(f"entry {item!r} must be PAIR=percent")
        out[pair.strip()] = _pct(value)
    return out


def _from_beginning(raw: str) -> bool:
    start = raw.lower()
    if start not in ("end", "beginning"):
        raise ValueError("must be 'end' or 'beginning'")
    return start == "beginning"


CANDLE_SUFFIXES = frozenset({".csv"})
"""Replay files read as 1-minute candles (``handlers._candle``); the others are captures
(``.txt``, ``.jsonl``) or feeds (``.xml``, ``.rss``, ``.atom``)."""
SHARED_MARKET = SHARED_REAL / "market"


def default_replay_files() -> tuple[Path, ...]:
    """What ``make up REPLAY=1`` plays when no file is named.

    The real candle files of ``../shared/fixtures/real/market`` when the clone has
    them, with the news feeds (bundled and real); else the bundled samples (Kraken
    captures and a feed), plus the real captures of ``../shared`` when present.
    """
    feeds = sorted(p for p in SAMPLES.iterdir() if p.suffix == ".xml")
    if SHARED_REAL.is_dir():
        feeds += sorted(p for p in SHARED_REAL.rglob("*") if p.suffix == ".xml")
    candles = sorted(SHARED_MARKET.glob("*.csv")) if SHARED_MARKET.is_dir() else []
    if candles:
        return (*candles, *feeds)
    kinds = (".txt", ".jsonl", ".xml")
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix in kinds)
    if SHARED_REAL.is_dir():
        files += sorted(p for p in SHARED_REAL.rglob("*") if p.suffix in kinds)
    return tuple(files)


def _default_replay_files(environ: Mapping[str, str]) -> tuple[Path, ...]:
    return default_replay_files()


def _replay_files(raw: str) -> tuple[Path, ...]:
    files = tuple(Path(p) for p in raw.split(os.pathsep) if p)
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise ValueError(f"not a file: {', '.join(missing)}")
    return files


class OutputSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How producers write to Kafka (the topics: ``Settings.kafka.topics``)."""

    retries: Annotated[
        int,
        env(
            "CRYPTOVIZ_PRODUCER_RETRIES",
            "re-sends of a message whose delivery failed, before the worker fails loudly",
            ge=0,
        ),
    ] = 5
    """Re-sends of a message whose delivery failed before the worker fails loudly."""
    flush_timeout_s: float = 30.0
    """Longest wait for acknowledgements at an epoch boundary before failing."""
    linger_ms: int = 5
    config: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra librdkafka properties (tests shorten ``message.timeout.ms``)."""
    trace_sample_ratio: Annotated[
        float,
        env(
            "CRYPTOVIZ_TRACE_SAMPLE_RATIO",
            "share of traces marked sampled in the `traceparent` of each message",
            ge=0,
            le=1,
        ),
    ] = 1.0


KRAKEN_REST_TRADES_URL = "https://api.kraken.com/0/public/Trades"


class KrakenSettings(msgspec.Struct, frozen=True, kw_only=True):
    ws_url: Annotated[str, env("CRYPTOVIZ_KRAKEN_WS_URL", "Kraken v2 WebSocket")] = KRAKEN_WS_URL
    rest_trades_url: Annotated[
        str, env("CRYPTOVIZ_KRAKEN_REST_URL", "Kraken REST `Trades`, for gap fills")
    ] = KRAKEN_REST_TRADES_URL
    pairs: Annotated[
        tuple[str, ...],
        env(
            "CRYPTOVIZ_KRAKEN_PAIRS",
            "comma-separated pairs to subscribe to",
            default="the coin table's `tracked`",
        ),
    ] = ()
    """Canonical pairs; empty means the coin table's ``tracked`` pairs."""
    channels: tuple[str, ...] = ("ticker", "trade")
    snapshot: bool = True
    connect_timeout_s: float = 10.0
    heartbeat_timeout_s: Annotated[
        float,
        env(
            "CRYPTOVIZ_KRAKEN_HEARTBEAT_S",
            "silence (no frame at all) before reconnecting (s)",
            ge=0.1,
        ),
    ] = 10.0
    """No frame at all (Kraken heartbeats about once a second) for this long: reconnect."""
    ack_timeout_s: float = 10.0
    data_timeout_s: Annotated[
        float,
        env("CRYPTOVIZ_KRAKEN_DATA_S", "per-symbol silence before resubscribing it (s)", ge=0.1),
    ] = 300.0
    """An acknowledged symbol silent this long is resubscribed; silent again, reconnect."""
    ping_interval_s: Annotated[
        float, env("CRYPTOVIZ_KRAKEN_PING_S", "application ping interval (s)", ge=0.1)
    ] = 30.0
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
    feeds: Annotated[
        tuple[FeedSpec, ...],
        env(
            "CRYPTOVIZ_RSS_FEEDS",
            "`name=url` entries separated by whitespace or `;`",
            parse=parse_feeds,
            default="coindesk, cointelegraph, decrypt, cryptoslate, bitcoinmagazine",
        ),
    ] = DEFAULT_FEEDS
    poll_interval_s: Annotated[
        float, env("CRYPTOVIZ_RSS_POLL_S", "poll interval per feed (s)", ge=0.01)
    ] = 300.0
    timeout_s: Annotated[
        float, env("CRYPTOVIZ_RSS_TIMEOUT_S", "HTTP timeout per feed request (s)", ge=0.01)
    ] = 15.0
    max_bytes: int = 10_000_000
    backoff_initial_s: float = 30.0
    backoff_max_s: float = 1800.0
    seen_capacity: int = 5000
    """Dedup keys remembered per feed (a feed lists far fewer entries than this)."""
    user_agent: str = "CryptoViz/0.1 (news producer; +https://github.com/)"
    run_for_s: float | None = None


class AlertSettings(msgspec.Struct, frozen=True, kw_only=True):
    threshold_pct: Annotated[
        Decimal,
        env(
            "CRYPTOVIZ_ALERT_THRESHOLD_PCT",
            "default move that raises an alert, in percent",
            parse=_pct,
        ),
    ] = Decimal("0.5")
    thresholds: Annotated[
        dict[str, Decimal],
        env(
            "CRYPTOVIZ_ALERT_THRESHOLDS",
            "per-pair overrides: `BTC/USD=0.3,SOL/USD=1`",
            parse=parse_thresholds,
            default="none",
        ),
    ] = msgspec.field(default_factory=dict)
    """Per-pair thresholds in percent, overriding :attr:`threshold_pct`."""
    window_s: Annotated[
        int, env("CRYPTOVIZ_ALERT_WINDOW_S", "rolling reference window (s)", ge=1)
    ] = 60
    cooldown_s: Annotated[
        float,
        env(
            "CRYPTOVIZ_ALERT_COOLDOWN_S",
            "minimum time between two alerts of a price path (pair, source) and direction (s)",
            ge=0,
        ),
    ] = 300.0
    from_beginning: Annotated[
        bool,
        env(
            "CRYPTOVIZ_ALERT_FROM",
            "`end` or `beginning` of the ticker topic, at the first start",
            parse=_from_beginning,
            default="`end`",
        ),
    ] = False
    """Consume the ticker topic from its beginning instead of its end (first start only)."""

    def threshold_for(self, pair: str) -> Decimal:
        return self.thresholds.get(pair, self.threshold_pct)


ReplayClock = Literal["now", "original"]
CandlePairs = Literal["usd", "file"]


class ReplaySettings(msgspec.Struct, frozen=True, kw_only=True):
    files: Annotated[
        tuple[Path, ...],
        env(
            "CRYPTOVIZ_REPLAY_FILES",
            "files to replay, separated by `os.pathsep`: Kraken captures, feeds, 1-minute "
            "candle files (`.csv`)",
            parse=_replay_files,
            fallback=_default_replay_files,
            default="the real candles of `../shared/fixtures/real/market` and the feeds if "
            "present, else the bundled samples",
        ),
    ] = ()
    speed: Annotated[
        float,
        env(
            "CRYPTOVIZ_REPLAY_SPEED",
            "1 = recorded speed, 60 = a market minute per second, 0 = as fast as possible",
            ge=0,
        ),
    ] = 1.0
    """1 = recorded speed, N = N times faster, 0 = as fast as possible."""
    clock: Annotated[
        ReplayClock,
        env(
            "CRYPTOVIZ_REPLAY_CLOCK",
            "candle ticks `now`: re-timed to the replay clock (live-looking, source "
            "`replay:<file>`); `original`: the market's own time (history, source "
            "`history:<file>`, what the price import writes); speed 0 keeps the original",
        ),
    ] = "now"
    candle_pairs: Annotated[
        CandlePairs,
        env(
            "CRYPTOVIZ_CANDLE_PAIRS",
            "pairs of candle files (replay and import): `usd` plays a USD stablecoin quote as "
            "USD (BTCUSDT -> BTC/USD), `file` keeps the file's own (BTC/USDT)",
        ),
    ] = "usd"
    line_gap_s: float = 0.0
    """Pause between frames of a file that carries no receive times (at speed 1)."""
    exit_at_end: Annotated[
        bool,
        env(
            "CRYPTOVIZ_REPLAY_EXIT",
            "the replay worker exits after the last file (else it idles)",
        ),
    ] = False

    @property
    def candle_files(self) -> tuple[Path, ...]:
        return tuple(p for p in self.files if p.suffix.lower() in CANDLE_SUFFIXES)

    @property
    def retimed(self) -> bool:
        """Candle ticks are stamped on the replay clock (not their market time)."""
        return self.clock == "now" and self.speed > 0


class SyntheticSettings(msgspec.Struct, frozen=True, kw_only=True):
    pairs: Annotated[
        int,
        env(
            "CRYPTOVIZ_SYNTHETIC_PAIRS",
            "number of synthetic pairs (tracked pairs first)",
            ge=1,
        ),
    ] = 12
    pair_offset: Annotated[
        int,
        env(
            "CRYPTOVIZ_SYNTHETIC_PAIR_OFFSET",
            "skip this many pairs of that sequence (producers side by side get 0, N, 2N...)",
            ge=0,
        ),
    ] = 0
    """Pairs skipped at the start of the sequence (disjoint pairs for parallel producers)."""
    rate: Annotated[
        float,
        env("CRYPTOVIZ_SYNTHETIC_RATE", "synthetic messages per second", ge=0.001),
    ] = 200.0
    """Messages per second, all pairs together."""
    trade_share: float = 0.7
    seed: Annotated[
        int | None,
        env("CRYPTOVIZ_SYNTHETIC_SEED", "random seed", default="random", ge=0),
    ] = None
    beside_replay: Annotated[
        bool,
        env(
            "CRYPTOVIZ_SYNTHETIC_BESIDE_REPLAY",
            "leave the coins of the replay's candle files to the replay, one price path per "
            "coin (`make up REPLAY=1` sets it)",
        ),
    ] = False
    exclude_coins: tuple[str, ...] = ()
    """Coins the synthetic market leaves alone (the worker adds the replay's candle coins
    when :attr:`beside_replay`)."""
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


def load_producer_settings(env: Mapping[str, str] | None = None) -> ProducerSettings:
    """Build :class:`ProducerSettings` from environment variables (``os.environ`` by default)."""
    return read_env(ProducerSettings, os.environ if env is None else env)
