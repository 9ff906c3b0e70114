ALTER TABLE model_prices
    DROP CONSTRAINT model_prices_long_context_complete,
    DROP COLUMN long_context_above_tokens, DROP COLUMN long_context_input_per_mtok,
    DROP COLUMN long_context_output_per_mtok, DROP COLUMN long_context_cached_input_per_mtok,
    DROP COLUMN long_context_cache_write_5m_per_mtok, DROP COLUMN long_context_cache_write_1h_per_mtok;
