-- Per-organization price overrides: negotiated prices for one organization, versioned
-- like the catalog (a version applies from valid_from until the organization's next
-- version of the same model). For a call of that organization, the override in force
-- at the event time wins over the catalog's version; discounts apply after it.
--
-- `model` is the catalog id when the catalog knows the model (the API resolves a
-- provider's own name to it), else the name as the operator gave it; lookups match it
-- in any case, as the catalog does. The columns are those of model_prices.
CREATE TABLE org_model_prices (
    id                    uuid PRIMARY KEY,
    org_id                uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    provider              text NOT NULL CHECK (provider = lower(provider) AND length(provider) BETWEEN 1 AND 100),
    model                 text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    provider_model_name   text NOT NULL CHECK (length(provider_model_name) BETWEEN 1 AND 200),
    input_per_mtok        numeric(20, 10) NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok       numeric(20, 10) NOT NULL CHECK (output_per_mtok >= 0),
    cached_input_per_mtok numeric(20, 10) NOT NULL CHECK (cached_input_per_mtok >= 0),
    per_request           numeric(20, 10) NOT NULL DEFAULT 0 CHECK (per_request >= 0),
    per_image             numeric(20, 10) NOT NULL DEFAULT 0 CHECK (per_image >= 0),
    per_input_image       numeric(20, 10) NOT NULL DEFAULT 0 CHECK (per_input_image >= 0),
    cache_write_5m_per_mtok numeric(20, 10) CHECK (cache_write_5m_per_mtok >= 0),
    cache_write_1h_per_mtok numeric(20, 10) CHECK (cache_write_1h_per_mtok >= 0),
    reasoning_per_mtok      numeric(20, 10) CHECK (reasoning_per_mtok >= 0),
    audio_input_per_mtok    numeric(20, 10) CHECK (audio_input_per_mtok >= 0),
    audio_output_per_mtok   numeric(20, 10) CHECK (audio_output_per_mtok >= 0),
    long_context_above_tokens            bigint CHECK (long_context_above_tokens > 0),
    long_context_input_per_mtok          numeric(20, 10) CHECK (long_context_input_per_mtok >= 0),
    long_context_output_per_mtok         numeric(20, 10) CHECK (long_context_output_per_mtok >= 0),
    long_context_cached_input_per_mtok   numeric(20, 10) CHECK (long_context_cached_input_per_mtok >= 0),
    long_context_cache_write_5m_per_mtok numeric(20, 10) CHECK (long_context_cache_write_5m_per_mtok >= 0),
    long_context_cache_write_1h_per_mtok numeric(20, 10) CHECK (long_context_cache_write_1h_per_mtok >= 0),
    valid_from            timestamptz NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT org_model_prices_long_context_complete CHECK (
        num_nulls(long_context_above_tokens, long_context_input_per_mtok, long_context_output_per_mtok,
                  long_context_cached_input_per_mtok) IN (0, 4)
        AND (long_context_above_tokens IS NOT NULL
             OR num_nulls(long_context_cache_write_5m_per_mtok, long_context_cache_write_1h_per_mtok) = 2))
);
-- Versions are immutable: a new one supersedes. One model cannot have two versions
-- starting at the same instant, in any spelling (names are case-insensitive). Also
-- the index pricing reads an organization's overrides by.
CREATE UNIQUE INDEX org_model_prices_version_idx ON org_model_prices (org_id, provider, lower(model), valid_from);
