-- Usage recording: the price catalog, discounts, customers and agents, raw events
-- (partitioned by day so retention drops whole partitions), idempotency keys and
-- the daily roll-ups that analytics read instead of raw events.
-- Money is NUMERIC with 10 decimal places; see domain::money.

CREATE TABLE model_prices (
    id                    uuid PRIMARY KEY,
    provider              text NOT NULL CHECK (provider = lower(provider) AND length(provider) BETWEEN 1 AND 100),
    -- The catalog id (`claude-sonnet-4-5`) and the provider's own name for the same
    -- model (`claude-sonnet-4-5-20250929`); events may use either.
    model                 text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    provider_model_name   text NOT NULL CHECK (length(provider_model_name) BETWEEN 1 AND 200),
    -- Prices in USD per million tokens, per request and per image.
    input_per_mtok        numeric(20, 10) NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok       numeric(20, 10) NOT NULL CHECK (output_per_mtok >= 0),
    cached_input_per_mtok numeric(20, 10) NOT NULL CHECK (cached_input_per_mtok >= 0),
    per_request           numeric(20, 10) NOT NULL DEFAULT 0 CHECK (per_request >= 0),
    per_image             numeric(20, 10) NOT NULL DEFAULT 0 CHECK (per_image >= 0),
    -- A price applies from this instant until the next version of the same model.
    valid_from            timestamptz NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, model, valid_from)
);
CREATE INDEX model_prices_provider_name_idx ON model_prices (provider, provider_model_name, valid_from);

CREATE TABLE discounts (
    id          uuid PRIMARY KEY,
    -- NULL: a global discount; otherwise the organization it belongs to.
    org_id      uuid REFERENCES organizations (id) ON DELETE CASCADE,
    provider    text CHECK (provider = lower(provider)),
    model       text,
    percent     numeric(7, 4) NOT NULL CHECK (percent > 0 AND percent <= 100),
    valid_from  timestamptz NOT NULL DEFAULT now(),
    valid_until timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (provider IS NOT NULL OR model IS NOT NULL),
    CHECK (valid_until IS NULL OR valid_until > valid_from)
);
CREATE INDEX discounts_org_idx ON discounts (org_id);

-- The tenant's own end customers (`user` on an event) and agents, upserted on first sight.
CREATE TABLE customers (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    external_id text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 256),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, external_id),
    UNIQUE (org_id, id)
);

CREATE TABLE agents (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    external_id text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 256),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, external_id),
    UNIQUE (org_id, id)
);

-- Raw events. Partitions (one per UTC day) are created on demand by the ingest path;
-- the id is a UUIDv7 whose timestamp is `occurred_at`, so a lookup by id knows its
-- partition. No foreign keys: retention drops partitions wholesale, and the ingest
-- path only writes ids it has just resolved within the same organization.
CREATE TABLE usage_events (
    org_id                uuid NOT NULL,
    id                    uuid NOT NULL,
    occurred_at           timestamptz NOT NULL,
    request_id            text NOT NULL,
    project_id            uuid NOT NULL,
    api_key_id            uuid NOT NULL,
    customer_id           uuid,
    agent_id              uuid,
    endpoint              text NOT NULL,
    provider              text NOT NULL,
    model                 text NOT NULL,
    status                text NOT NULL CHECK (status IN ('success', 'error')),
    error_code            text,
    prompt_tokens         bigint NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens     bigint NOT NULL CHECK (completion_tokens >= 0),
    cached_tokens         bigint NOT NULL CHECK (cached_tokens >= 0 AND cached_tokens <= prompt_tokens),
    images                integer NOT NULL CHECK (images >= 0),
    latency_ms            integer CHECK (latency_ms >= 0),
    ttft_ms               integer CHECK (ttft_ms >= 0),
    cache_hit             boolean NOT NULL,
    retries               integer NOT NULL CHECK (retries >= 0),
    started_at            timestamptz,
    ended_at              timestamptz,
    metadata              jsonb,
    request_body          text,
    response_body         text,
    bodies_truncated      boolean NOT NULL,
    billing_source        text NOT NULL CHECK (billing_source IN ('credits', 'api-keys')),
    unpriced              boolean NOT NULL,
    price_id              uuid,
    input_cost            numeric(20, 10) NOT NULL,
    output_cost           numeric(20, 10) NOT NULL,
    cached_input_cost     numeric(20, 10) NOT NULL,
    request_cost          numeric(20, 10) NOT NULL,
    image_cost            numeric(20, 10) NOT NULL,
    data_storage_cost     numeric(20, 10) NOT NULL,
    cost_before_discount  numeric(20, 10) NOT NULL,
    discount_id           uuid,
    discount_percent      numeric(7, 4) NOT NULL,
    discount_savings      numeric(20, 10) NOT NULL,
    cost                  numeric(20, 10) NOT NULL CHECK (cost >= 0),
    recorded_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, occurred_at, id)
) PARTITION BY RANGE (occurred_at);

-- Idempotency: one row per (organization, requestId). Kept for the organization's
-- retention window, like the events.
CREATE TABLE usage_request_ids (
    org_id      uuid NOT NULL,
    request_id  text NOT NULL,
    event_id    uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, request_id)
);
-- BRIN: rows arrive roughly in time order, and the purge only needs ranges; a btree
-- would cost every insert far more.
CREATE INDEX usage_request_ids_occurred_idx ON usage_request_ids USING brin (occurred_at);

-- Daily roll-ups at the finest grain analytics needs; every report (by day, project,
-- key, customer, agent, endpoint, model) is a GROUP BY over these rows. Maintained in
-- the same transaction as the events they summarize. Money columns hold 20 integer
-- digits: many events of the largest single-event cost still fit.
CREATE TABLE usage_daily (
    org_id               uuid NOT NULL,
    day                  date NOT NULL,
    project_id           uuid NOT NULL,
    api_key_id           uuid NOT NULL,
    customer_id          uuid,
    agent_id             uuid,
    endpoint             text NOT NULL,
    provider             text NOT NULL,
    model                text NOT NULL,
    requests             bigint NOT NULL,
    errors               bigint NOT NULL,
    cache_hits           bigint NOT NULL,
    unpriced             bigint NOT NULL,
    prompt_tokens        bigint NOT NULL,
    completion_tokens    bigint NOT NULL,
    cached_tokens        bigint NOT NULL,
    images               bigint NOT NULL,
    input_cost           numeric(30, 10) NOT NULL,
    output_cost          numeric(30, 10) NOT NULL,
    cached_input_cost    numeric(30, 10) NOT NULL,
    request_cost         numeric(30, 10) NOT NULL,
    image_cost           numeric(30, 10) NOT NULL,
    data_storage_cost    numeric(30, 10) NOT NULL,
    cost_before_discount numeric(30, 10) NOT NULL,
    discount_savings     numeric(30, 10) NOT NULL,
    cost                 numeric(30, 10) NOT NULL,
    credits_cost         numeric(30, 10) NOT NULL,
    api_keys_cost        numeric(30, 10) NOT NULL,
    latency_ms_sum       bigint NOT NULL,
    latency_count        bigint NOT NULL,
    -- Counts per fixed latency bucket (bounds in domain::rollup::LATENCY_BUCKETS_MS;
    -- b16 is everything slower), for percentiles. Plain columns: adding them on
    -- conflict is far cheaper than element-wise array arithmetic.
    latency_b00 bigint NOT NULL,
    latency_b01 bigint NOT NULL,
    latency_b02 bigint NOT NULL,
    latency_b03 bigint NOT NULL,
    latency_b04 bigint NOT NULL,
    latency_b05 bigint NOT NULL,
    latency_b06 bigint NOT NULL,
    latency_b07 bigint NOT NULL,
    latency_b08 bigint NOT NULL,
    latency_b09 bigint NOT NULL,
    latency_b10 bigint NOT NULL,
    latency_b11 bigint NOT NULL,
    latency_b12 bigint NOT NULL,
    latency_b13 bigint NOT NULL,
    latency_b14 bigint NOT NULL,
    latency_b15 bigint NOT NULL,
    latency_b16 bigint NOT NULL,
    -- Concurrent ingest transactions write to different shards of the same grain, so
    -- they do not wait for each other's row locks. Readers sum over shards.
    shard                smallint NOT NULL CHECK (shard >= 0),
    CONSTRAINT usage_daily_grain UNIQUE NULLS NOT DISTINCT
        (org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard)
);
