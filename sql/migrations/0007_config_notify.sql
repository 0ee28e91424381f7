-- 0007_config_notify: every change of crypto_configuration is announced.
--
-- The producers and the Spark job follow the tracked cryptos live
-- (infra/tracking.py): they LISTEN on cryptoviz_config and re-read the table when a
-- notification arrives (and every CRYPTOVIZ_CONFIG_POLL_S seconds anyway, in case
-- one was missed). The trigger fires for whoever changes the table (the API, psql,
-- a script); NOTIFY is transactional, so listeners hear of a change at its commit.


CREATE OR REPLACE FUNCTION cryptoviz_notify_config() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cryptoviz_config', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER crypto_configuration_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crypto_configuration
    FOR EACH STATEMENT EXECUTE FUNCTION cryptoviz_notify_config();
