-- Drops what up.sql added; the parts' costs are lost (totals stay as recorded).
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['usage_daily', 'usage_hourly', 'usage_daily_models', 'usage_daily_customers', 'usage_daily_routes'] LOOP
        EXECUTE format('ALTER TABLE %I
            DROP COLUMN cache_write_5m_tokens, DROP COLUMN cache_write_1h_tokens, DROP COLUMN reasoning_tokens,
            DROP COLUMN audio_input_tokens, DROP COLUMN audio_output_tokens, DROP COLUMN cache_write_5m_cost,
            DROP COLUMN cache_write_1h_cost, DROP COLUMN reasoning_cost, DROP COLUMN audio_input_cost,
            DROP COLUMN audio_output_cost', t);
    END LOOP;
END $$;
ALTER TABLE usage_events
    DROP CONSTRAINT usage_events_prompt_parts, DROP CONSTRAINT usage_events_completion_parts,
    DROP COLUMN cache_write_5m_tokens, DROP COLUMN cache_write_1h_tokens, DROP COLUMN reasoning_tokens,
    DROP COLUMN audio_input_tokens, DROP COLUMN audio_output_tokens, DROP COLUMN cache_write_5m_cost,
    DROP COLUMN cache_write_1h_cost, DROP COLUMN reasoning_cost, DROP COLUMN audio_input_cost,
    DROP COLUMN audio_output_cost;
ALTER TABLE model_prices
    DROP COLUMN cache_write_5m_per_mtok, DROP COLUMN cache_write_1h_per_mtok, DROP COLUMN reasoning_per_mtok,
    DROP COLUMN audio_input_per_mtok, DROP COLUMN audio_output_per_mtok;
