-- 0004_analytics: what the Spark analytics job needs beside sentiment_data and
-- prediction_data: late-article accounting and the prediction accuracy views.
-- Shared by both flavours (small tables and views; no hypertable needed).

-- Articles that arrived after the sentiment watermark had passed their event time:
-- Spark drops them from the windows (closed windows stay as they were), and this
-- table says which ones, for which coin, and how late. One row per article and coin;
-- a replayed micro-batch rewrites the same rows.
CREATE TABLE IF NOT EXISTS analytics_late_events (
    query_name     text        NOT NULL,
    event_id       text        NOT NULL,
    crypto_symbol  text        NOT NULL,
    event_time     timestamptz NOT NULL,
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL,
    watermark      timestamptz NOT NULL,
    batch_id       bigint      NOT NULL,
    detected_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (query_name, event_id, crypto_symbol, event_time)
);
CREATE INDEX IF NOT EXISTS analytics_late_events_window_idx
    ON analytics_late_events (crypto_symbol, window_end DESC);

-- The late-article query's own watermark (max event time seen, per micro-batch), kept
-- beside its output so that a replayed batch judges lateness exactly as the first time.
-- checkpoint_id identifies the Spark checkpoint: a new checkpoint starts afresh.
CREATE TABLE IF NOT EXISTS analytics_watermarks (
    query_name         text        PRIMARY KEY,
    checkpoint_id      text        NOT NULL,
    batch_id           bigint      NOT NULL,
    max_event_before   timestamptz,
    max_event_through  timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- One scored row per prediction whose actual price is known. The naive forecast
-- ("the price stays at last_price") is scored on the same rows.
-- direction_hit: did the forecast move from last_price the way the price did?
--   NULL when the price did not move (no direction to call) or last_price is unknown.
-- in_interval: NULL when the model gave no interval.
CREATE OR REPLACE VIEW prediction_scores AS
SELECT
    p.timestamp,
    p.crypto_symbol,
    p.model_name,
    p.horizon_s,
    p.target_time,
    p.predicted_price,
    p.actual_price,
    p.last_price,
    p.confidence_interval_low,
    p.confidence_interval_high,
    p.interval_level,
    abs(p.predicted_price - p.actual_price) AS abs_error,
    abs(p.predicted_price - p.actual_price) / nullif(abs(p.actual_price), 0) * 100 AS ape_pct,
    abs(p.last_price - p.actual_price) AS naive_abs_error,
    abs(p.last_price - p.actual_price) / nullif(abs(p.actual_price), 0) * 100 AS naive_ape_pct,
    CASE
        WHEN p.last_price IS NULL OR p.actual_price = p.last_price THEN NULL
        ELSE sign(p.predicted_price - p.last_price) = sign(p.actual_price - p.last_price)
    END AS direction_hit,
    CASE
        WHEN p.confidence_interval_low IS NULL OR p.confidence_interval_high IS NULL THEN NULL
        ELSE p.actual_price BETWEEN p.confidence_interval_low AND p.confidence_interval_high
    END AS in_interval
FROM prediction_data AS p
WHERE p.actual_price IS NOT NULL;

-- All-time accuracy per model and coin (`python -m spark_batch.report` gives any range).
-- skill_vs_naive = 1 - MAE / naive MAE: > 0 beats "price stays at the last value".
CREATE OR REPLACE VIEW prediction_accuracy AS
SELECT
    s.model_name,
    s.crypto_symbol,
    count(*) AS predictions,
    avg(s.abs_error) AS mae,
    avg(s.ape_pct) AS mape_pct,
    avg(s.direction_hit::int) AS directional_accuracy,
    avg(s.in_interval::int) AS interval_coverage,
    avg(s.interval_level) FILTER (WHERE s.in_interval IS NOT NULL) AS nominal_level,
    avg(s.naive_abs_error) AS naive_mae,
    avg(s.naive_ape_pct) AS naive_mape_pct,
    1 - avg(s.abs_error) / nullif(avg(s.naive_abs_error), 0) AS skill_vs_naive,
    min(s.timestamp) AS first_prediction,
    max(s.timestamp) AS last_prediction
FROM prediction_scores AS s
GROUP BY s.model_name, s.crypto_symbol;
