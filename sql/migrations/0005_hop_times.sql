-- 0005_hop_times: when Kafka appended each raw message, for per-hop latency.
--
-- A row already carries exchange_time (Kraken's own time, when given),
-- receive_time (the producer's receive time) and ingest_time (the writing
-- transaction's start). kafka_time is the message's Kafka timestamp: the
-- broker's append time on the raw topics, which are created with
-- message.timestamp.type=LogAppendTime. `python -m infra.latency` reports the hops.
ALTER TABLE ticker_data  ADD COLUMN IF NOT EXISTS kafka_time timestamptz;
ALTER TABLE trade_data   ADD COLUMN IF NOT EXISTS kafka_time timestamptz;
ALTER TABLE article_data ADD COLUMN IF NOT EXISTS kafka_time timestamptz;
ALTER TABLE alert_data   ADD COLUMN IF NOT EXISTS kafka_time timestamptz;
