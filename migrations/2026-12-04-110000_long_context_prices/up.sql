-- Long-context prices: above a threshold of prompt tokens (every input token, cached
-- and cache writes included) a call is charged other input, output, cache-read and
-- cache-write prices for all of its tokens (Gemini 2.5 Pro, Claude Sonnet above
-- 200,000 tokens). The threshold and the three required prices come together.
ALTER TABLE model_prices
    ADD COLUMN long_context_above_tokens            bigint CHECK (long_context_above_tokens > 0),
    ADD COLUMN long_context_input_per_mtok          numeric(20, 10) CHECK (long_context_input_per_mtok >= 0),
    ADD COLUMN long_context_output_per_mtok         numeric(20, 10) CHECK (long_context_output_per_mtok >= 0),
    ADD COLUMN long_context_cached_input_per_mtok   numeric(20, 10) CHECK (long_context_cached_input_per_mtok >= 0),
    ADD COLUMN long_context_cache_write_5m_per_mtok numeric(20, 10) CHECK (long_context_cache_write_5m_per_mtok >= 0),
    ADD COLUMN long_context_cache_write_1h_per_mtok numeric(20, 10) CHECK (long_context_cache_write_1h_per_mtok >= 0),
    ADD CONSTRAINT model_prices_long_context_complete CHECK (
        num_nulls(long_context_above_tokens, long_context_input_per_mtok, long_context_output_per_mtok,
                  long_context_cached_input_per_mtok) IN (0, 4)
        AND (long_context_above_tokens IS NOT NULL
             OR num_nulls(long_context_cache_write_5m_per_mtok, long_context_cache_write_1h_per_mtok) = 2));
