-- The activity API splits requests and data-storage cost by who paid (Meterplane
-- credits or the tenant's own provider keys), as it already splits cost.
ALTER TABLE usage_daily
    ADD COLUMN credits_requests           bigint NOT NULL DEFAULT 0,
    ADD COLUMN api_keys_requests          bigint NOT NULL DEFAULT 0,
    ADD COLUMN credits_data_storage_cost  numeric(30, 10) NOT NULL DEFAULT 0,
    ADD COLUMN api_keys_data_storage_cost numeric(30, 10) NOT NULL DEFAULT 0;

-- Days that still have their raw events get the split from them. A grain may be spread
-- over several shards; its totals go to its lowest shard (readers sum shards).
WITH totals AS (
    SELECT org_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, project_id, api_key_id, customer_id,
           agent_id, endpoint, provider, canonical_model AS model,
           count(*) FILTER (WHERE billing_source = 'credits') AS credits_requests,
           count(*) FILTER (WHERE billing_source = 'api-keys') AS api_keys_requests,
           coalesce(sum(data_storage_cost) FILTER (WHERE billing_source = 'credits'), 0) AS credits_storage,
           coalesce(sum(data_storage_cost) FILTER (WHERE billing_source = 'api-keys'), 0) AS api_keys_storage
    FROM usage_events
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
), lowest AS (
    SELECT DISTINCT ON (org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model)
           ctid AS row_id, org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model
    FROM usage_daily
    ORDER BY org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard
)
UPDATE usage_daily d
SET credits_requests = t.credits_requests,
    api_keys_requests = t.api_keys_requests,
    credits_data_storage_cost = t.credits_storage,
    api_keys_data_storage_cost = t.api_keys_storage
FROM lowest l
JOIN totals t ON t.org_id = l.org_id AND t.day = l.day AND t.project_id = l.project_id
    AND t.api_key_id = l.api_key_id AND t.customer_id IS NOT DISTINCT FROM l.customer_id
    AND t.agent_id IS NOT DISTINCT FROM l.agent_id AND t.endpoint = l.endpoint
    AND t.provider = l.provider AND t.model = l.model
WHERE d.ctid = l.row_id;
