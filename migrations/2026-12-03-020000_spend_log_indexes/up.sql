-- Spend-log reads: one index per filter, each ending in the log's order (time, id), so
-- a page with any one filter reads its rows newest first and stops after one page
-- instead of collecting and sorting every matching row. The primary key
-- (org_id, occurred_at, id) serves the log without a filter. Created on the
-- partitioned table, they exist on every daily partition, also the ones made later.
-- The model filter reads `canonical_model` (the catalog id the activity reports use).
-- Customer and agent ids are NULL on events without them: those rows are left out.
CREATE INDEX usage_events_customer_log_idx ON usage_events (org_id, customer_id, occurred_at, id)
    WHERE customer_id IS NOT NULL;
CREATE INDEX usage_events_agent_log_idx ON usage_events (org_id, agent_id, occurred_at, id)
    WHERE agent_id IS NOT NULL;
CREATE INDEX usage_events_model_log_idx ON usage_events (org_id, canonical_model, occurred_at, id);
CREATE INDEX usage_events_api_key_log_idx ON usage_events (org_id, api_key_id, occurred_at, id);
CREATE INDEX usage_events_project_log_idx ON usage_events (org_id, project_id, occurred_at, id);
CREATE INDEX usage_events_provider_log_idx ON usage_events (org_id, provider, occurred_at, id);
-- Failed calls are few: a partial index holds only them.
CREATE INDEX usage_events_failed_log_idx ON usage_events (org_id, occurred_at, id)
    WHERE status = 'error';
