-- Repairs the usage data recorded before these fixes:
-- 1. `usage_daily.cost_before_discount` was rounded to whole units on every event (it
--    was bound as an integer array);
-- 2. an event naming a model by the provider's name was rolled up under that name
--    when no price was in force, not under the catalog id;
-- 3. model names were matched case-sensitively (provider names were not).
--
-- Events now record the name roll-ups count them under (`canonical_model`), and the
-- roll-ups of every day that still has its raw events are recomputed from them. Costs
-- already recorded are kept: an event recorded as unpriced stays unpriced (cost 0).

-- The name roll-ups count an event under: the catalog id when the catalog knows the
-- model by either name (whatever the case; the latest version carrying a provider name
-- decides), otherwise the reported name in lower case. Mirrors
-- `domain::pricing::Catalog::canonical_model`.
ALTER TABLE usage_events ADD COLUMN canonical_model text;
UPDATE usage_events e SET canonical_model = coalesce(
    (SELECT p.model FROM model_prices p
      WHERE p.provider = lower(e.provider) AND lower(p.model) = lower(e.model)
      ORDER BY p.valid_from DESC LIMIT 1),
    (SELECT p.model FROM model_prices p
      WHERE p.provider = lower(e.provider) AND lower(p.provider_model_name) = lower(e.model)
      ORDER BY p.valid_from DESC LIMIT 1),
    lower(e.model));
ALTER TABLE usage_events ALTER COLUMN canonical_model SET NOT NULL;

-- Days whose raw events are still there. Roll-ups of days whose events are gone stay
-- as they are: nothing is left to recompute them from.
CREATE TEMPORARY TABLE repaired_days ON COMMIT DROP AS
    SELECT DISTINCT org_id, (occurred_at AT TIME ZONE 'UTC')::date AS day FROM usage_events;

DELETE FROM usage_daily d USING repaired_days r WHERE d.org_id = r.org_id AND d.day = r.day;

-- The grain of `ingest::rollups`: UTC day, project, key, customer, agent, endpoint,
-- provider and canonical model. Recomputed rows go to shard 0 (readers sum shards).
INSERT INTO usage_daily (
    org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard,
    requests, errors, cache_hits, unpriced, prompt_tokens, completion_tokens, cached_tokens, images,
    input_cost, output_cost, cached_input_cost, request_cost, image_cost, data_storage_cost,
    cost_before_discount, discount_savings, cost, credits_cost, api_keys_cost,
    latency_ms_sum, latency_count,
    latency_b00, latency_b01, latency_b02, latency_b03, latency_b04, latency_b05, latency_b06, latency_b07,
    latency_b08, latency_b09, latency_b10, latency_b11, latency_b12, latency_b13, latency_b14, latency_b15,
    latency_b16)
SELECT
    org_id, (occurred_at AT TIME ZONE 'UTC')::date, project_id, api_key_id, customer_id, agent_id,
    endpoint, provider, canonical_model, 0,
    count(*),
    count(*) FILTER (WHERE status = 'error'),
    count(*) FILTER (WHERE cache_hit),
    count(*) FILTER (WHERE unpriced),
    sum(prompt_tokens),
    sum(completion_tokens),
    sum(cached_tokens),
    sum(images),
    sum(input_cost),
    sum(output_cost),
    sum(cached_input_cost),
    sum(request_cost),
    sum(image_cost),
    sum(data_storage_cost),
    sum(cost_before_discount),
    sum(discount_savings),
    sum(cost),
    coalesce(sum(cost) FILTER (WHERE billing_source = 'credits'), 0),
    coalesce(sum(cost) FILTER (WHERE billing_source = 'api-keys'), 0),
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
    count(*) FILTER (WHERE latency_ms > 60000)
FROM usage_events
GROUP BY org_id, (occurred_at AT TIME ZONE 'UTC')::date, project_id, api_key_id, customer_id, agent_id,
    endpoint, provider, canonical_model;
