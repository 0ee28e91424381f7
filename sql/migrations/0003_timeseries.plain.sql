-- 0003_timeseries, plain PostgreSQL flavour (the runner picks it when the
-- timescaledb extension is not available; 0003_timeseries.timescale.sql otherwise).
--
-- Same relations, columns and results as the TimescaleDB flavour's continuous
-- aggregates, as ordinary views computed at query time:
--   * time_bucket('1 hour', ts)  -> date_bin('1 hour', ts, 2000-01-01 00:00 UTC)
--     (identical hourly buckets, aligned on UTC hours);
--   * first(x, ts) / last(x, ts) -> (array_agg(x ORDER BY ts [DESC]))[1].
-- No partitioning, compression or retention here: rows are kept until deleted.
-- Filters on pair / crypto_symbol are pushed below the GROUP BY (and use the
-- primary keys); filters on bucket are not, so keep them to what a dev database holds.
-- See the TimescaleDB flavour for why ticker_ohlc_hourly has volume_24h and the hourly
-- traded volume lives in trade_volume_hourly.

CREATE OR REPLACE VIEW ticker_ohlc_hourly AS
SELECT date_bin(INTERVAL '1 hour', timestamp, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       pair,
       (array_agg(last ORDER BY timestamp))[1]              AS open,
       max(last)                                            AS high,
       min(last)                                            AS low,
       (array_agg(last ORDER BY timestamp DESC))[1]         AS close,
       (array_agg(volume_24h ORDER BY timestamp DESC))[1]   AS volume_24h,
       count(*)                                             AS tick_count
FROM ticker_data
GROUP BY 1, 2;

CREATE OR REPLACE VIEW trade_volume_hourly AS
SELECT date_bin(INTERVAL '1 hour', timestamp, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       pair,
       sum(volume)                                          AS volume,
       sum(CASE WHEN side = 'b' THEN volume ELSE 0 END)     AS buy_volume,
       sum(CASE WHEN side = 's' THEN volume ELSE 0 END)     AS sell_volume,
       sum(price * volume) / nullif(sum(volume), 0)         AS vwap,
       count(*)                                             AS trade_count
FROM trade_data
GROUP BY 1, 2;

CREATE OR REPLACE VIEW sentiment_hourly AS
SELECT date_bin(INTERVAL '1 hour', timestamp, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       crypto_symbol,
       avg(sentiment_score)  AS avg_sentiment_score,
       sum(article_count)    AS article_count,
       count(*)              AS window_count
FROM sentiment_data
GROUP BY 1, 2;
