-- 0001_core: the six time-series tables written by ingestion (Bytewax) and Spark.
--
-- Shared by both flavours. On TimescaleDB, 0003_timeseries turns them into
-- hypertables; every primary key therefore includes the time column.
-- Column names are a contract with the ingestion sink, Spark and the API.
-- The migration runner executes each file in one transaction and records it in
-- schema_migrations: never edit this file once applied, add a new migration.

-- Kraken ticker snapshots, one row per (pair, exchange timestamp).
CREATE TABLE IF NOT EXISTS ticker_data (
    timestamp      timestamptz NOT NULL,
    pair           text        NOT NULL,
    last           numeric     NOT NULL,
    bid            numeric,
    ask            numeric,
    volume_24h     numeric,
    bid_qty        numeric,
    ask_qty        numeric,
    vwap           numeric,
    low            numeric,
    high           numeric,
    change_pct     numeric,
    exchange_time  timestamptz,
    receive_time   timestamptz,
    ingest_time    timestamptz NOT NULL DEFAULT now(),
    source         text        NOT NULL DEFAULT 'kraken',
    PRIMARY KEY (pair, timestamp)
);
-- (pair, timestamp DESC) lookups: served by the primary key (backward index scan).

-- Kraken trades; trade_key deduplicates trades sharing a timestamp.
CREATE TABLE IF NOT EXISTS trade_data (
    timestamp      timestamptz NOT NULL,
    pair           text        NOT NULL,
    price          numeric     NOT NULL,
    volume         numeric     NOT NULL,
    side           char(1)     NOT NULL CONSTRAINT trade_data_side_check CHECK (side IN ('b', 's')),
    trade_id       bigint,
    ord_type       text,
    trade_key      text        NOT NULL,
    receive_time   timestamptz,
    ingest_time    timestamptz NOT NULL DEFAULT now(),
    source         text        NOT NULL DEFAULT 'kraken',
    PRIMARY KEY (pair, timestamp, trade_key)
);
-- (pair, timestamp DESC) lookups: served by the primary key. No index on side
-- alone: two values, never selective, and trades are the highest-volume table.

-- RSS articles; timestamp is the publication time.
CREATE TABLE IF NOT EXISTS article_data (
    timestamp                  timestamptz      NOT NULL,
    article_id                 text             NOT NULL,
    title                      text             NOT NULL,
    url                        text,
    website                    text,
    summary                    text,
    cryptocurrencies_mentioned text[]           NOT NULL DEFAULT '{}',
    sentiment_score            double precision,
    sentiment_label            text CONSTRAINT article_data_sentiment_label_check
                                    CHECK (sentiment_label IN ('positive', 'neutral', 'negative')),
    subjectivity               double precision,
    receive_time               timestamptz,
    ingest_time                timestamptz      NOT NULL DEFAULT now(),
    source                     text             NOT NULL DEFAULT 'rss',
    PRIMARY KEY (article_id, timestamp)
);
-- Lookups by article_id alone are served by the primary key's leading column.
CREATE INDEX IF NOT EXISTS article_data_timestamp_idx
    ON article_data (timestamp DESC);
CREATE INDEX IF NOT EXISTS article_data_cryptos_gin_idx
    ON article_data USING gin (cryptocurrencies_mentioned);
CREATE INDEX IF NOT EXISTS article_data_sentiment_label_idx
    ON article_data (sentiment_label, timestamp DESC);

-- Price-move alerts. last_price is NULL only for alerts from the prototype's
-- producers, whose {pair, type, value, timestamp} messages carry no price.
CREATE TABLE IF NOT EXISTS alert_data (
    timestamp        timestamptz NOT NULL,
    pair             text        NOT NULL,
    last_price       numeric,
    change_percent   numeric     NOT NULL,
    threshold        numeric,
    alert_type       text        NOT NULL CONSTRAINT alert_data_alert_type_check
                                 CHECK (alert_type IN ('up', 'down')),
    reference_price  numeric,
    window_s         integer,
    receive_time     timestamptz,
    ingest_time      timestamptz NOT NULL DEFAULT now(),
    source           text        NOT NULL DEFAULT 'kraken',
    PRIMARY KEY (pair, timestamp, alert_type)
);
-- (pair, timestamp DESC): primary key. Latest alerts of one type:
CREATE INDEX IF NOT EXISTS alert_data_alert_type_idx
    ON alert_data (alert_type, timestamp DESC);

-- Spark: sentiment aggregated per crypto and window; timestamp is the window end.
CREATE TABLE IF NOT EXISTS sentiment_data (
    timestamp        timestamptz      NOT NULL,
    window_start     timestamptz      NOT NULL,
    crypto_symbol    text             NOT NULL,
    sentiment_score  double precision NOT NULL,
    sentiment_label  text             NOT NULL,
    source           text             NOT NULL,
    confidence       double precision NOT NULL,
    article_count    integer          NOT NULL,
    updated_at       timestamptz      DEFAULT now(),
    PRIMARY KEY (crypto_symbol, source, timestamp)
);
-- The primary key has source in the middle, so it cannot serve
-- "WHERE crypto_symbol = ? ORDER BY timestamp DESC" across sources:
CREATE INDEX IF NOT EXISTS sentiment_data_symbol_timestamp_idx
    ON sentiment_data (crypto_symbol, timestamp DESC);

-- Spark: price predictions; timestamp is the window end (when the prediction is made).
CREATE TABLE IF NOT EXISTS prediction_data (
    timestamp                 timestamptz      NOT NULL,
    window_start              timestamptz,
    crypto_symbol             text             NOT NULL,
    model_name                text             NOT NULL,
    predicted_price           numeric          NOT NULL,
    actual_price              numeric,
    confidence_interval_low   numeric,
    confidence_interval_high  numeric,
    interval_level            double precision,
    horizon_s                 integer          NOT NULL,
    target_time               timestamptz      NOT NULL,
    last_price                numeric,
    updated_at                timestamptz      DEFAULT now(),
    PRIMARY KEY (crypto_symbol, model_name, timestamp)
);
-- Latest predictions of a crypto across models (the primary key has model_name
-- in the middle), and of one model across cryptos:
CREATE INDEX IF NOT EXISTS prediction_data_symbol_timestamp_idx
    ON prediction_data (crypto_symbol, timestamp DESC);
CREATE INDEX IF NOT EXISTS prediction_data_model_timestamp_idx
    ON prediction_data (model_name, timestamp DESC);
