-- The usage summary (`GET /v1/orgs/{orgId}/activity/summary`) needs:
-- 1. time to first token in the roll-ups, summed and as a histogram with the latency
--    histogram's buckets (`domain::rollup::LATENCY_BUCKETS_MS`), so its mean and p95
--    are read from roll-ups like latency's;
-- 2. an hourly grain, `usage_hourly`, for windows of up to 48 hours. Same columns as
--    `usage_daily` with `hour` (the start of a UTC hour) in place of `day`. Written in
--    the same ingest transaction as `usage_daily`; kept for `HOURLY_ROLLUP_DAYS` days
--    (the purge removes older rows). Longer windows read `usage_daily`.
ALTER TABLE usage_daily
    ADD COLUMN ttft_ms_sum bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_count  bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b00 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b01 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b02 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b03 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b04 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b05 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b06 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b07 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b08 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b09 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b10 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b11 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b12 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b13 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b14 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b15 bigint NOT NULL DEFAULT 0,
    ADD COLUMN ttft_b16 bigint NOT NULL DEFAULT 0;

-- Days that still have their raw events get time to first token from them. A grain may
-- be spread over several shards; its totals go to its lowest shard (readers sum shards).
WITH totals AS (
    SELECT org_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, project_id, api_key_id, customer_id,
           agent_id, endpoint, provider, canonical_model AS model,
           coalesce(sum(ttft_ms), 0) AS ttft_ms_sum,
           count(ttft_ms) AS ttft_count,
           count(*) FILTER (WHERE ttft_ms <= 25) AS ttft_b00,
           count(*) FILTER (WHERE ttft_ms > 25 AND ttft_ms <= 50) AS ttft_b01,
           count(*) FILTER (WHERE ttft_ms > 50 AND ttft_ms <= 100) AS ttft_b02,
           count(*) FILTER (WHERE ttft_ms > 100 AND ttft_ms <= 200) AS ttft_b03,
           count(*) FILTER (WHERE ttft_ms > 200 AND ttft_ms <= 300) AS ttft_b04,
           count(*) FILTER (WHERE ttft_ms > 300 AND ttft_ms <= 500) AS ttft_b05,
           count(*) FILTER (WHERE ttft_ms > 500 AND ttft_ms <= 750) AS ttft_b06,
           count(*) FILTER (WHERE ttft_ms > 750 AND ttft_ms <= 1000) AS ttft_b07,
           count(*) FILTER (WHERE ttft_ms > 1000 AND ttft_ms <= 1500) AS ttft_b08,
           count(*) FILTER (WHERE ttft_ms > 1500 AND ttft_ms <= 2000) AS ttft_b09,
           count(*) FILTER (WHERE ttft_ms > 2000 AND ttft_ms <= 3000) AS ttft_b10,
           count(*) FILTER (WHERE ttft_ms > 3000 AND ttft_ms <= 5000) AS ttft_b11,
           count(*) FILTER (WHERE ttft_ms > 5000 AND ttft_ms <= 7500) AS ttft_b12,
           count(*) FILTER (WHERE ttft_ms > 7500 AND ttft_ms <= 10000) AS ttft_b13,
           count(*) FILTER (WHERE ttft_ms > 10000 AND ttft_ms <= 20000) AS ttft_b14,
           count(*) FILTER (WHERE ttft_ms > 20000 AND ttft_ms <= 60000) AS ttft_b15,
           count(*) FILTER (WHERE ttft_ms > 60000) AS ttft_b16
    FROM usage_events
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
), lowest AS (
    SELECT DISTINCT ON (org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model)
           ctid AS row_id, org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model
    FROM usage_daily
    ORDER BY org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard
)
UPDATE usage_daily d
SET ttft_ms_sum = t.ttft_ms_sum,
    ttft_count = t.ttft_count,
    ttft_b00 = t.ttft_b00,
    ttft_b01 = t.ttft_b01,
    ttft_b02 = t.ttft_b02,
    ttft_b03 = t.ttft_b03,
    ttft_b04 = t.ttft_b04,
    ttft_b05 = t.ttft_b05,
    ttft_b06 = t.ttft_b06,
    ttft_b07 = t.ttft_b07,
    ttft_b08 = t.ttft_b08,
    ttft_b09 = t.ttft_b09,
    ttft_b10 = t.ttft_b10,
    ttft_b11 = t.ttft_b11,
    ttft_b12 = t.ttft_b12,
    ttft_b13 = t.ttft_b13,
    ttft_b14 = t.ttft_b14,
    ttft_b15 = t.ttft_b15,
    ttft_b16 = t.ttft_b16
FROM lowest l
JOIN totals t ON t.org_id = l.org_id AND t.day = l.day AND t.project_id = l.project_id
    AND t.api_key_id = l.api_key_id AND t.customer_id IS NOT DISTINCT FROM l.customer_id
    AND t.agent_id IS NOT DISTINCT FROM l.agent_id AND t.endpoint = l.endpoint
    AND t.provider = l.provider AND t.model = l.model
WHERE d.ctid = l.row_id;

-- Every column of `usage_daily`, in its order, with `hour` for `day`.
CREATE TABLE usage_hourly (LIKE usage_daily INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE usage_hourly RENAME COLUMN day TO hour;
ALTER TABLE usage_hourly ALTER COLUMN hour TYPE timestamptz USING hour::timestamp AT TIME ZONE 'UTC';
ALTER TABLE usage_hourly ADD CONSTRAINT usage_hourly_grain UNIQUE NULLS NOT DISTINCT
    (org_id, hour, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard);

-- The hours of the last `HOURLY_ROLLUP_DAYS` (8) UTC days, from the raw events, so a
-- 24- or 48-hour summary right after this upgrade covers the calls made before it.
-- Older hours are not rebuilt: windows longer than 48 hours read `usage_daily`.
INSERT INTO usage_hourly (
    org_id, hour, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard,
    requests, errors, cache_hits, unpriced, prompt_tokens, completion_tokens, cached_tokens, images, input_images,
    input_cost, output_cost, cached_input_cost, request_cost, image_cost, image_input_cost, image_output_cost,
    data_storage_cost, cost_before_discount, discount_savings, cost, credits_cost, api_keys_cost,
    credits_requests, api_keys_requests, credits_data_storage_cost, api_keys_data_storage_cost,
    latency_ms_sum, latency_count,
    latency_b00, latency_b01, latency_b02, latency_b03, latency_b04, latency_b05, latency_b06, latency_b07, latency_b08, latency_b09, latency_b10, latency_b11, latency_b12, latency_b13, latency_b14, latency_b15, latency_b16,
    ttft_ms_sum, ttft_count, ttft_b00, ttft_b01, ttft_b02, ttft_b03, ttft_b04, ttft_b05, ttft_b06, ttft_b07, ttft_b08, ttft_b09, ttft_b10, ttft_b11, ttft_b12, ttft_b13, ttft_b14, ttft_b15, ttft_b16)
SELECT
    org_id, date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', project_id, api_key_id,
    customer_id, agent_id, endpoint, provider, canonical_model, 0,
    count(*),
    count(*) FILTER (WHERE status = 'error'),
    count(*) FILTER (WHERE cache_hit),
    count(*) FILTER (WHERE unpriced),
    sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), sum(images), sum(input_images),
    sum(input_cost), sum(output_cost), sum(cached_input_cost), sum(request_cost), sum(image_cost),
    sum(image_input_cost), sum(image_output_cost), sum(data_storage_cost), sum(cost_before_discount),
    sum(discount_savings), sum(cost),
    coalesce(sum(cost) FILTER (WHERE billing_source = 'credits'), 0),
    coalesce(sum(cost) FILTER (WHERE billing_source = 'api-keys'), 0),
    count(*) FILTER (WHERE billing_source = 'credits'),
    count(*) FILTER (WHERE billing_source = 'api-keys'),
    coalesce(sum(data_storage_cost) FILTER (WHERE billing_source = 'credits'), 0),
    coalesce(sum(data_storage_cost) FILTER (WHERE billing_source = 'api-keys'), 0),
    coalesce(sum(latency_ms), 0),
    count(latency_ms),
    count(*) FILTER (WHERE latency_ms <= 25),
    count(*) FILTER (WHERE latency_ms > 25 AND latency_ms <= 50),
    count(*) FILTER (WHERE latency_ms > 50 AND latency_ms <= 100),
    count(*) FILTER (WHERE latency_ms > 100 AND latency_ms <= 200),
    count(*) FILTER (WHERE latency_ms > 200 AND latency_ms <= 300),
    count(*) FILTER (WHERE latency_ms > 300 AND latency_ms <= 500),
    count(*) FILTER (WHERE latency_ms > 500 AND latency_ms <= 750),
    count(*) FILTER (WHERE latency_ms > 750 AND latency_ms <= 1000),
    count(*) FILTER (WHERE latency_ms > 1000 AND latency_ms <= 1500),
    count(*) FILTER (WHERE latency_ms > 1500 AND latency_ms <= 2000),
    count(*) FILTER (WHERE latency_ms > 2000 AND latency_ms <= 3000),
    count(*) FILTER (WHERE latency_ms > 3000 AND latency_ms <= 5000),
    count(*) FILTER (WHERE latency_ms > 5000 AND latency_ms <= 7500),
    count(*) FILTER (WHERE latency_ms > 7500 AND latency_ms <= 10000),
    count(*) FILTER (WHERE latency_ms > 10000 AND latency_ms <= 20000),
    count(*) FILTER (WHERE latency_ms > 20000 AND latency_ms <= 60000),
    count(*) FILTER (WHERE latency_ms > 60000),
    coalesce(sum(ttft_ms), 0),
    count(ttft_ms),
    count(*) FILTER (WHERE ttft_ms <= 25),
    count(*) FILTER (WHERE ttft_ms > 25 AND ttft_ms <= 50),
    count(*) FILTER (WHERE ttft_ms > 50 AND ttft_ms <= 100),
    count(*) FILTER (WHERE ttft_ms > 100 AND ttft_ms <= 200),
    count(*) FILTER (WHERE ttft_ms > 200 AND ttft_ms <= 300),
    count(*) FILTER (WHERE ttft_ms > 300 AND ttft_ms <= 500),
    count(*) FILTER (WHERE ttft_ms > 500 AND ttft_ms <= 750),
    count(*) FILTER (WHERE ttft_ms > 750 AND ttft_ms <= 1000),
    count(*) FILTER (WHERE ttft_ms > 1000 AND ttft_ms <= 1500),
    count(*) FILTER (WHERE ttft_ms > 1500 AND ttft_ms <= 2000),
    count(*) FILTER (WHERE ttft_ms > 2000 AND ttft_ms <= 3000),
    count(*) FILTER (WHERE ttft_ms > 3000 AND ttft_ms <= 5000),
    count(*) FILTER (WHERE ttft_ms > 5000 AND ttft_ms <= 7500),
    count(*) FILTER (WHERE ttft_ms > 7500 AND ttft_ms <= 10000),
    count(*) FILTER (WHERE ttft_ms > 10000 AND ttft_ms <= 20000),
    count(*) FILTER (WHERE ttft_ms > 20000 AND ttft_ms <= 60000),
    count(*) FILTER (WHERE ttft_ms > 60000)
FROM usage_events
WHERE occurred_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '7 days'
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9;
