-- One page's entities, their daily trend and model breakdown, read from indexes alone
-- (index-only scans, one range per entity) instead of from the table's rows, which
-- lie scattered over its pages; one index for the total rows, one for the per-model
-- rows, so that neither read steps over the other's rows. At 1 million events this
-- took the two reads of a 50-customer page from 51 and 115 ms to 22 and 44 ms.
CREATE INDEX usage_entity_rollups_entity_totals_idx ON usage_entity_rollups (org_id, kind, entity_id, endpoint, span, day)
    INCLUDE (requests, errors, prompt_tokens, completion_tokens, cost)
    WHERE model = '';
CREATE INDEX usage_entity_rollups_entity_models_idx ON usage_entity_rollups (org_id, kind, entity_id, endpoint, span, day)
    INCLUDE (provider, model, requests, errors, prompt_tokens, completion_tokens, cost)
    WHERE model <> '';
DROP INDEX usage_entity_rollups_entity_idx;
