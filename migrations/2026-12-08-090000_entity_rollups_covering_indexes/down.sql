CREATE INDEX usage_entity_rollups_entity_idx ON usage_entity_rollups (org_id, kind, entity_id, endpoint, span, day);
DROP INDEX usage_entity_rollups_entity_totals_idx;
DROP INDEX usage_entity_rollups_entity_models_idx;
