-- Prices that match the providers' bills: cache writes by duration, reasoning tokens
-- and audio tokens, each priced apart.
--
-- Token convention (domain::pricing): prompt_tokens counts every input token (cached
-- reads, cache writes and audio input included) and completion_tokens every output
-- token (reasoning and audio output included); the parts never exceed their total.

-- Optional prices (USD per million tokens). NULL falls back as domain::pricing says:
-- cache writes to the input price (1 hour to 5 minutes first), reasoning and audio
-- output to the output price, audio input to the input price.
ALTER TABLE model_prices
    ADD COLUMN cache_write_5m_per_mtok numeric(20, 10) CHECK (cache_write_5m_per_mtok >= 0),
    ADD COLUMN cache_write_1h_per_mtok numeric(20, 10) CHECK (cache_write_1h_per_mtok >= 0),
    ADD COLUMN reasoning_per_mtok      numeric(20, 10) CHECK (reasoning_per_mtok >= 0),
    ADD COLUMN audio_input_per_mtok    numeric(20, 10) CHECK (audio_input_per_mtok >= 0),
    ADD COLUMN audio_output_per_mtok   numeric(20, 10) CHECK (audio_output_per_mtok >= 0);

-- Constant defaults: adding the columns rewrites no partition of past events, which
-- had none of these parts (and were charged as plain input and output).
ALTER TABLE usage_events
    ADD COLUMN cache_write_5m_tokens bigint NOT NULL DEFAULT 0 CHECK (cache_write_5m_tokens >= 0),
    ADD COLUMN cache_write_1h_tokens bigint NOT NULL DEFAULT 0 CHECK (cache_write_1h_tokens >= 0),
    ADD COLUMN reasoning_tokens      bigint NOT NULL DEFAULT 0 CHECK (reasoning_tokens >= 0),
    ADD COLUMN audio_input_tokens    bigint NOT NULL DEFAULT 0 CHECK (audio_input_tokens >= 0),
    ADD COLUMN audio_output_tokens   bigint NOT NULL DEFAULT 0 CHECK (audio_output_tokens >= 0),
    ADD COLUMN cache_write_5m_cost   numeric(20, 10) NOT NULL DEFAULT 0,
    ADD COLUMN cache_write_1h_cost   numeric(20, 10) NOT NULL DEFAULT 0,
    ADD COLUMN reasoning_cost        numeric(20, 10) NOT NULL DEFAULT 0,
    ADD COLUMN audio_input_cost      numeric(20, 10) NOT NULL DEFAULT 0,
    ADD COLUMN audio_output_cost     numeric(20, 10) NOT NULL DEFAULT 0,
    ADD CONSTRAINT usage_events_prompt_parts CHECK (
        cached_tokens + cache_write_5m_tokens + cache_write_1h_tokens + audio_input_tokens <= prompt_tokens),
    ADD CONSTRAINT usage_events_completion_parts CHECK (
        reasoning_tokens + audio_output_tokens <= completion_tokens);

-- Every roll-up table (daily, hourly and the coarse daily ones) gets the same columns.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['usage_daily', 'usage_hourly', 'usage_daily_models', 'usage_daily_customers', 'usage_daily_routes'] LOOP
        EXECUTE format('ALTER TABLE %I
            ADD COLUMN cache_write_5m_tokens bigint NOT NULL DEFAULT 0,
            ADD COLUMN cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
            ADD COLUMN reasoning_tokens      bigint NOT NULL DEFAULT 0,
            ADD COLUMN audio_input_tokens    bigint NOT NULL DEFAULT 0,
            ADD COLUMN audio_output_tokens   bigint NOT NULL DEFAULT 0,
            ADD COLUMN cache_write_5m_cost   numeric(30, 10) NOT NULL DEFAULT 0,
            ADD COLUMN cache_write_1h_cost   numeric(30, 10) NOT NULL DEFAULT 0,
            ADD COLUMN reasoning_cost        numeric(30, 10) NOT NULL DEFAULT 0,
            ADD COLUMN audio_input_cost      numeric(30, 10) NOT NULL DEFAULT 0,
            ADD COLUMN audio_output_cost     numeric(30, 10) NOT NULL DEFAULT 0', t);
    END LOOP;
END $$;
