"""Prometheus metrics of the producer workers (served by ``flows.run --metrics-port``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PRODUCED = Counter("cryptoviz_producer_messages_total", "Messages acknowledged by Kafka", ["topic"])
DELIVERY_FAILURES = Counter(
    "cryptoviz_producer_delivery_failures_total",
    "Delivery reports with an error (each one is retried or fails the worker)",
    ["topic"],
)
DELIVERY_RETRIES = Counter(
    "cryptoviz_producer_delivery_retries_total",
    "Messages produced again after a failure",
    ["topic"],
)
DELIVERY_SECONDS = Histogram(
    "cryptoviz_producer_delivery_seconds",
    "Receive (or creation) of a message to its acknowledgement by Kafka",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)

KRAKEN_CONNECTS = Counter("cryptoviz_kraken_connects_total", "WebSocket connections opened")
KRAKEN_DISCONNECTS = Counter(
    "cryptoviz_kraken_disconnects_total", "Connections ended, by reason", ["reason"]
)
KRAKEN_REJECTED = Counter(
    "cryptoviz_kraken_rejected_subscriptions_total", "Symbols Kraken refused", ["channel"]
)
KRAKEN_SILENT = Counter(
    "cryptoviz_kraken_silent_subscriptions_total",
    "Acknowledged subscriptions that went silent while the connection was alive",
    ["channel", "pair"],
)
KRAKEN_RECOVERED = Counter(
    "cryptoviz_kraken_recovered_subscriptions_total",
    "Silent subscriptions that streamed again once renewed",
    ["channel", "pair"],
)
KRAKEN_PONGS = Counter("cryptoviz_kraken_pongs_total", "Application pings Kraken answered")
KRAKEN_STATUS = Counter(
    "cryptoviz_kraken_status_total", "System status messages, by status", ["status"]
)
KRAKEN_GAPS = Counter("cryptoviz_kraken_trade_gaps_total", "trade_id jumps", ["pair"])
KRAKEN_GAP_MISSING = Counter(
    "cryptoviz_kraken_trades_missing_total", "Trades skipped by a trade_id jump", ["pair"]
)
KRAKEN_GAP_FILLED = Counter(
    "cryptoviz_kraken_trades_filled_total", "Missing trades recovered over REST", ["pair"]
)
KRAKEN_GAP_LOST = Counter(
    "cryptoviz_kraken_trades_unrecoverable_total",
    "Missing trades given up on (REST did not return them)",
    ["pair"],
)
KRAKEN_DUPLICATES = Counter(
    "cryptoviz_kraken_duplicate_trades_total",
    "Trades dropped because they were already sent (snapshots after reconnects)",
    ["pair"],
)
KRAKEN_REJECTIONS = Counter(
    "cryptoviz_kraken_frame_rejections_total", "Frame entries the parser refused"
)
KRAKEN_SYSTEM = Gauge(
    "cryptoviz_kraken_system_online", "1 while Kraken reports status 'online', else 0"
)

RSS_POLLS = Counter("cryptoviz_rss_polls_total", "Feed polls by outcome", ["feed", "outcome"])
RSS_ARTICLES = Counter("cryptoviz_rss_articles_total", "New articles emitted", ["feed"])
RSS_SKIPPED = Counter(
    "cryptoviz_rss_entries_skipped_total",
    "Feed entries not turned into articles",
    ["feed", "reason"],
)

ALERTS = Counter("cryptoviz_alerts_total", "Price alerts raised", ["pair", "alert_type"])
ALERTS_SUPPRESSED = Counter(
    "cryptoviz_alerts_suppressed_total", "Threshold crossings inside the cool-down", ["pair"]
)
ALERTS_ALREADY_SENT = Counter(
    "cryptoviz_alerts_already_sent_total",
    "Alerts raised again after a restart but not re-published (already on the topic)",
)
REPLAY_FRAMES = Counter("cryptoviz_replay_frames_total", "Recorded frames replayed", ["file"])
REPLAY_REJECTIONS = Counter(
    "cryptoviz_replay_rejections_total", "Entries of recorded frames the parser refused", ["file"]
)

TICKER_REJECTED = Counter(
    "cryptoviz_alerts_rejected_tickers_total", "Ticker messages the alert worker could not parse"
)
