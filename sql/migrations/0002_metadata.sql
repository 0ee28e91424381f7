-- 0002_metadata: configuration tables behind the API's config endpoints.
-- Shared by both flavours (small, non-time-series tables).

CREATE OR REPLACE FUNCTION cryptoviz_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE IF NOT EXISTS crypto_configuration (
    symbol      text        PRIMARY KEY,
    name        text        NOT NULL,
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS visualization_parameters (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL UNIQUE,
    symbol      text        NOT NULL,
    time_range  text        NOT NULL,
    chart_type  text        NOT NULL,
    indicators  text[]      NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS visualization_parameters_symbol_idx
    ON visualization_parameters (symbol);

-- updated_at follows every UPDATE, whoever issues it.
CREATE OR REPLACE TRIGGER crypto_configuration_set_updated_at
    BEFORE UPDATE ON crypto_configuration
    FOR EACH ROW EXECUTE FUNCTION cryptoviz_set_updated_at();
CREATE OR REPLACE TRIGGER visualization_parameters_set_updated_at
    BEFORE UPDATE ON visualization_parameters
    FOR EACH ROW EXECUTE FUNCTION cryptoviz_set_updated_at();

INSERT INTO crypto_configuration (symbol, name) VALUES
    ('BTC', 'Bitcoin'),
    ('ETH', 'Ethereum'),
    ('SOL', 'Solana'),
    ('ADA', 'Cardano'),
    ('DOT', 'Polkadot'),
    ('LINK', 'Chainlink')
ON CONFLICT (symbol) DO NOTHING;
