-- 0003_timeseries, TimescaleDB flavour (the runner picks it when the
-- timescaledb extension is available; 0003_timeseries.plain.sql otherwise).
--
-- Both flavours expose the same relations, with the same columns and results:
--   ticker_ohlc_hourly (bucket, pair, open, high, low, close, volume_24h, tick_count)
--   trade_volume_hourly(bucket, pair, volume, buy_volume, sell_volume, vwap, trade_count)
--   sentiment_hourly   (bucket, crypto_symbol, avg_sentiment_score, article_count,
--                       window_count)
-- Here they are continuous aggregates with real-time aggregation
-- (materialized_only = false): buckets not yet materialized by the refresh policy are
-- computed from the raw rows at query time, so results never lag the raw tables,
-- exactly like the plain flavour's views.
--
-- Volume: a ticker's volume_24h is Kraken's rolling 24-hour volume, not the volume
-- traded in the hour, so ticker_ohlc_hourly exposes it under its real name
-- (volume_24h = the rolling value at the candle's close); the hourly traded volume is
-- sum(trade_data.volume) in trade_volume_hourly (a continuous aggregate cannot join
-- two hypertables, so it is a separate relation, joined on (bucket, pair) by readers).

CREATE EXTENSION IF NOT EXISTS timescaledb;

-- Hypertables. The indexes of 0001_core are kept (and created on every chunk);
-- default indexes are off so both flavours carry the same ones.
SELECT create_hypertable('ticker_data', by_range('timestamp', INTERVAL '1 day'),
                         create_default_indexes => false, if_not_exists => true,
                         migrate_data => true);
SELECT create_hypertable('trade_data', by_range('timestamp', INTERVAL '1 day'),
                         create_default_indexes => false, if_not_exists => true,
                         migrate_data => true);
SELECT create_hypertable('article_data', by_range('timestamp', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true,
                         migrate_data => true);
SELECT create_hypertable('alert_data', by_range('timestamp', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true,
                         migrate_data => true);
SELECT create_hypertable('sentiment_data', by_range('timestamp', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true,
                         migrate_data => true);
SELECT create_hypertable('prediction_data', by_range('timestamp', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true,
                         migrate_data => true);

-- Compression (columnstore) of chunks older than 7 days, segmented by the series key.
ALTER TABLE ticker_data SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'pair', timescaledb.compress_orderby = 'timestamp DESC');
ALTER TABLE trade_data SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'pair', timescaledb.compress_orderby = 'timestamp DESC');
ALTER TABLE article_data SET (timescaledb.compress,
    timescaledb.compress_segmentby = '', timescaledb.compress_orderby = 'timestamp DESC');
ALTER TABLE alert_data SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'pair', timescaledb.compress_orderby = 'timestamp DESC');
ALTER TABLE sentiment_data SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'crypto_symbol',
    timescaledb.compress_orderby = 'timestamp DESC');
ALTER TABLE prediction_data SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'crypto_symbol',
    timescaledb.compress_orderby = 'timestamp DESC');

SELECT add_compression_policy('ticker_data', compress_after => INTERVAL '7 days', if_not_exists => true);
SELECT add_compression_policy('trade_data', compress_after => INTERVAL '7 days', if_not_exists => true);
SELECT add_compression_policy('article_data', compress_after => INTERVAL '7 days', if_not_exists => true);
SELECT add_compression_policy('alert_data', compress_after => INTERVAL '7 days', if_not_exists => true);
SELECT add_compression_policy('sentiment_data', compress_after => INTERVAL '7 days', if_not_exists => true);
SELECT add_compression_policy('prediction_data', compress_after => INTERVAL '7 days', if_not_exists => true);

-- Retention: raw rows are kept 90 days (the hourly aggregates below are not dropped).
SELECT add_retention_policy('ticker_data', drop_after => INTERVAL '90 days', if_not_exists => true);
SELECT add_retention_policy('trade_data', drop_after => INTERVAL '90 days', if_not_exists => true);
SELECT add_retention_policy('article_data', drop_after => INTERVAL '90 days', if_not_exists => true);
SELECT add_retention_policy('alert_data', drop_after => INTERVAL '90 days', if_not_exists => true);
SELECT add_retention_policy('sentiment_data', drop_after => INTERVAL '90 days', if_not_exists => true);
SELECT add_retention_policy('prediction_data', drop_after => INTERVAL '90 days', if_not_exists => true);

-- Hourly OHLC candles of the ticker's last price.
CREATE MATERIALIZED VIEW IF NOT EXISTS ticker_ohlc_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', timestamp) AS bucket,
       pair,
       first(last, timestamp)       AS open,
       max(last)                    AS high,
       min(last)                    AS low,
       last(last, timestamp)        AS close,
       last(volume_24h, timestamp)  AS volume_24h,
       count(*)                     AS tick_count
FROM ticker_data
GROUP BY bucket, pair
WITH NO DATA;

-- Hourly traded volume from the trades themselves.
CREATE MATERIALIZED VIEW IF NOT EXISTS trade_volume_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', timestamp) AS bucket,
       pair,
       sum(volume)                                          AS volume,
       sum(CASE WHEN side = 'b' THEN volume ELSE 0 END)     AS buy_volume,
       sum(CASE WHEN side = 's' THEN volume ELSE 0 END)     AS sell_volume,
       sum(price * volume) / nullif(sum(volume), 0)         AS vwap,
       count(*)                                             AS trade_count
FROM trade_data
GROUP BY bucket, pair
WITH NO DATA;

-- Hourly sentiment per crypto (sentiment_data.timestamp is the window end).
CREATE MATERIALIZED VIEW IF NOT EXISTS sentiment_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', timestamp) AS bucket,
       crypto_symbol,
       avg(sentiment_score)  AS avg_sentiment_score,
       sum(article_count)    AS article_count,
       count(*)              AS window_count
FROM sentiment_data
GROUP BY bucket, crypto_symbol
WITH NO DATA;

-- Refresh: re-materialize the last 3 days every 15 minutes, leaving the current
-- hour to real-time aggregation.
SELECT add_continuous_aggregate_policy('ticker_ohlc_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('trade_volume_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('sentiment_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes', if_not_exists => true);
