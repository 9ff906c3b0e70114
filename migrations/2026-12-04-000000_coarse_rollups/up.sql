-- Coarse daily roll-ups: the columns of `usage_daily`, but each keeps only some of an
-- event's dimensions (the others hold a constant: the nil id for project and key, NULL
-- for customer and agent, '' for endpoint, provider and model). An organization-wide
-- report reads a table with a few rows per day instead of one row per distinct
-- combination of every dimension, which grows nearly as fast as the raw events.
--   usage_daily_models:    provider, model  (activity and summaries without filters)
--   usage_daily_customers: customer         (the customer report)
--   usage_daily_routes:    agent, endpoint  (the agent and endpoint reports)
-- Ingest writes them in the same transaction as `usage_daily`; the purge removes their
-- rows with `usage_daily`'s.
CREATE TABLE usage_daily_models (LIKE usage_daily INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE usage_daily_models ADD CONSTRAINT usage_daily_models_grain UNIQUE NULLS NOT DISTINCT
    (org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard);

CREATE TABLE usage_daily_customers (LIKE usage_daily INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE usage_daily_customers ADD CONSTRAINT usage_daily_customers_grain UNIQUE NULLS NOT DISTINCT
    (org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard);
-- A page of the customer report reads its customers' daily trend.
CREATE INDEX usage_daily_customers_customer_idx ON usage_daily_customers (org_id, customer_id, day);

CREATE TABLE usage_daily_routes (LIKE usage_daily INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE usage_daily_routes ADD CONSTRAINT usage_daily_routes_grain UNIQUE NULLS NOT DISTINCT
    (org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard);

-- Filled from the existing daily roll-ups (shard 0), every summed column included.
DO $$
DECLARE
    summed text;
    sums text;
    tbl record;
BEGIN
    SELECT string_agg(column_name, ', ' ORDER BY ordinal_position),
           string_agg('sum(' || column_name || ')', ', ' ORDER BY ordinal_position)
      INTO summed, sums
      FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = 'usage_daily'
       AND column_name NOT IN ('org_id', 'day', 'project_id', 'api_key_id', 'customer_id', 'agent_id',
                               'endpoint', 'provider', 'model', 'shard');
    FOR tbl IN
        SELECT * FROM (VALUES
            ('usage_daily_models', $g$'00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, NULL::uuid, NULL::uuid, '', provider, model$g$, 'provider, model'),
            ('usage_daily_customers', $g$'00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, customer_id, NULL::uuid, '', '', ''$g$, 'customer_id'),
            ('usage_daily_routes', $g$'00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, NULL::uuid, agent_id, endpoint, '', ''$g$, 'agent_id, endpoint')
        ) AS t(name, grain, kept)
    LOOP
        EXECUTE format(
            'INSERT INTO %I (org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard, %s) '
            'SELECT org_id, day, %s, 0, %s FROM usage_daily GROUP BY org_id, day, %s',
            tbl.name, summed, tbl.grain, sums, tbl.kept);
    END LOOP;
END $$;
