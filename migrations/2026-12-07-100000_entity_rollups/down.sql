CREATE TABLE usage_daily_customers (LIKE usage_daily INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE usage_daily_customers ADD CONSTRAINT usage_daily_customers_grain UNIQUE NULLS NOT DISTINCT
    (org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard);
CREATE INDEX usage_daily_customers_customer_idx ON usage_daily_customers (org_id, customer_id, day);
CREATE TABLE usage_daily_routes (LIKE usage_daily INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE usage_daily_routes ADD CONSTRAINT usage_daily_routes_grain UNIQUE NULLS NOT DISTINCT
    (org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard);
DO $$
DECLARE
    summed text;
    sums text;
BEGIN
    SELECT string_agg(column_name, ', ' ORDER BY ordinal_position),
           string_agg('sum(' || column_name || ')', ', ' ORDER BY ordinal_position)
      INTO summed, sums
      FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = 'usage_daily'
       AND column_name NOT IN ('org_id', 'day', 'project_id', 'api_key_id', 'customer_id', 'agent_id',
                               'endpoint', 'provider', 'model', 'shard');
    EXECUTE format(
        'INSERT INTO usage_daily_customers (org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard, %s) '
        'SELECT org_id, day, ''00000000-0000-0000-0000-000000000000''::uuid, ''00000000-0000-0000-0000-000000000000''::uuid, customer_id, NULL::uuid, '''', '''', '''', 0, %s '
        'FROM usage_daily GROUP BY org_id, day, customer_id', summed, sums);
    EXECUTE format(
        'INSERT INTO usage_daily_routes (org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard, %s) '
        'SELECT org_id, day, ''00000000-0000-0000-0000-000000000000''::uuid, ''00000000-0000-0000-0000-000000000000''::uuid, NULL::uuid, agent_id, endpoint, '''', '''', 0, %s '
        'FROM usage_daily GROUP BY org_id, day, agent_id, endpoint', summed, sums);
END $$;
DROP TABLE usage_entity_rollups;
