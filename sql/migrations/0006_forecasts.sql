-- 0006_forecasts: forecasts at several horizons, stamped when they are issued (issue 13).
--
-- prediction_data.timestamp is now the time a forecast was issued (the end of the
-- minute whose ticks it used), never later than the clock; target_time = timestamp +
-- horizon_s. One row per (coin, model, horizon, issue time), so the horizon joins the
-- primary key. Rows written before this migration (one 300 s horizon, stamped at the
-- end of a sliding window) are kept as they were.
-- Shared by both flavours: TimescaleDB (2.23) changes the key of the hypertable even
-- with compressed chunks (tests/sql/test_timescale_pglite.py applies it over one).

ALTER TABLE prediction_data
    ADD COLUMN IF NOT EXISTS outer_interval_low   numeric,
    ADD COLUMN IF NOT EXISTS outer_interval_high  numeric,
    ADD COLUMN IF NOT EXISTS outer_interval_level double precision,
    ADD COLUMN IF NOT EXISTS trailing_skill       double precision,
    ADD COLUMN IF NOT EXISTS preferred            boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN prediction_data.timestamp IS
    'when the forecast was issued; it used only ticks before this time';
COMMENT ON COLUMN prediction_data.trailing_skill IS
    '1 - MAE / naive MAE of this model and horizon over its recent resolved forecasts, '
    'when this one was issued (NULL until enough are resolved)';
COMMENT ON COLUMN prediction_data.preferred IS
    'the model to show first for this coin and horizon when the forecast was issued';

ALTER TABLE prediction_data DROP CONSTRAINT IF EXISTS prediction_data_pkey;
ALTER TABLE prediction_data
    ADD CONSTRAINT prediction_data_pkey PRIMARY KEY (crypto_symbol, model_name, horizon_s, timestamp);

-- The forecast models' state per coin (volatility, calibration, trailing skill, pending
-- forecasts), written in the same transaction as the forecasts it issued: a restarted
-- job continues from it with the same digits, and skips bars it already applied.
CREATE TABLE IF NOT EXISTS forecast_state (
    crypto_symbol  text        PRIMARY KEY,
    bar_end        timestamptz NOT NULL,
    state_version  integer     NOT NULL,
    state          bytea       NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The accuracy views of 0004, per horizon and with the outer interval.
DROP VIEW IF EXISTS prediction_accuracy;
DROP VIEW IF EXISTS prediction_scores;

CREATE VIEW prediction_scores AS
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
    p.outer_interval_low,
    p.outer_interval_high,
    p.outer_interval_level,
    p.preferred,
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
    END AS in_interval,
    CASE
        WHEN p.outer_interval_low IS NULL OR p.outer_interval_high IS NULL THEN NULL
        ELSE p.actual_price BETWEEN p.outer_interval_low AND p.outer_interval_high
    END AS in_outer_interval
FROM prediction_data AS p
WHERE p.actual_price IS NOT NULL;

-- All-time accuracy per model, coin and horizon (`python -m spark_batch.report` gives any
-- range, interval widths and scores). skill_vs_naive = 1 - MAE / naive MAE.
CREATE VIEW prediction_accuracy AS
SELECT
    s.model_name,
    s.crypto_symbol,
    s.horizon_s,
    count(*) AS predictions,
    avg(s.abs_error) AS mae,
    sqrt(avg(s.abs_error * s.abs_error)) AS rmse,
    avg(s.ape_pct) AS mape_pct,
    avg(s.direction_hit::int) AS directional_accuracy,
    avg(s.in_interval::int) AS interval_coverage,
    avg(s.interval_level) FILTER (WHERE s.in_interval IS NOT NULL) AS nominal_level,
    avg(s.in_outer_interval::int) AS outer_interval_coverage,
    avg(s.outer_interval_level) FILTER (WHERE s.in_outer_interval IS NOT NULL)
        AS outer_nominal_level,
    avg(s.naive_abs_error) AS naive_mae,
    avg(s.naive_ape_pct) AS naive_mape_pct,
    1 - avg(s.abs_error) / nullif(avg(s.naive_abs_error), 0) AS skill_vs_naive,
    min(s.timestamp) AS first_prediction,
    max(s.timestamp) AS last_prediction
FROM prediction_scores AS s
GROUP BY s.model_name, s.crypto_symbol, s.horizon_s;
