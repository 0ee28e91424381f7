-- 0008_prototype_contract: the prototype's message contract, column by column.
--
-- article_data.published_at: the article's own publication time, NULL when its
-- message gave none (the seeds' article examples carry no time). article_data.timestamp
-- stays the time the article is filed under: published_at when known, else when the
-- pipeline first saw the message (its Kafka record time). Rows stored before this
-- migration keep NULL: their timestamp was the publication time or, for a feed entry
-- without a date, the producer's clock, and which one was not recorded.
ALTER TABLE article_data ADD COLUMN IF NOT EXISTS published_at timestamptz;

-- ticker_data: the prototype's pct_change is the change from the previous price of the
-- pair; the exchange's 24-hour change (the column formerly named change_pct) is its own
-- field, change_24h_pct. Existing rows keep their values under the new name.
ALTER TABLE ticker_data RENAME COLUMN change_pct TO change_24h_pct;
ALTER TABLE ticker_data ADD COLUMN IF NOT EXISTS pct_change numeric;
