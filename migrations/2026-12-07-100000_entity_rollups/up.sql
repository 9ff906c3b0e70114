-- Narrow roll-ups for the per-entity reports (customers, agents, endpoints). The
-- reports show requests, errors, tokens and spend per entity, per day and per model;
-- the wide coarse tables they read before carried every roll-up column (about 800
-- bytes a row), and the model breakdown read `usage_daily`, whose rows are nearly as
-- many as the events. This table keeps only those five sums, for two spans:
--   span 'day':  one UTC day (`day`),
--   span 'week': one ISO week, Monday to Sunday (`day` is its Monday),
-- so a long window sums its whole weeks from week rows and only the days at its edges
-- from day rows. Each event adds to one row per kind, span and model, and to one
-- total row per kind and span (provider and model '': a model is never empty).
--   kind 'customer': entity_id = the customer (NULL: calls without one)
--   kind 'agent':    entity_id = the agent (NULL: calls without one)
--   kind 'endpoint': endpoint = the path, every `/a2a/…` path as '/a2a/{agentId}'
-- Ingest writes it in the same transaction as the other roll-ups; the purge removes
-- its rows with theirs.
CREATE TABLE usage_entity_rollups (
    org_id            uuid NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('customer', 'agent', 'endpoint')),
    span              text NOT NULL CHECK (span IN ('day', 'week')),
    day               date NOT NULL CHECK (span = 'day' OR extract(isodow FROM day) = 1),
    entity_id         uuid,
    endpoint          text NOT NULL DEFAULT '',
    provider          text NOT NULL DEFAULT '',
    model             text NOT NULL DEFAULT '',
    shard             smallint NOT NULL DEFAULT 0,
    requests          bigint NOT NULL DEFAULT 0,
    errors            bigint NOT NULL DEFAULT 0,
    prompt_tokens     bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    cost              numeric(30, 10) NOT NULL DEFAULT 0,
    CONSTRAINT usage_entity_rollups_grain UNIQUE NULLS NOT DISTINCT
        (org_id, kind, span, day, entity_id, endpoint, provider, model, shard)
);
-- A page of totals: every entity's total rows over a window.
CREATE INDEX usage_entity_rollups_totals_idx ON usage_entity_rollups (org_id, kind, span, day)
    INCLUDE (entity_id, endpoint, requests, errors, prompt_tokens, completion_tokens, cost)
    WHERE model = '';
-- One page's entities: their daily trend and model breakdown.
CREATE INDEX usage_entity_rollups_entity_idx ON usage_entity_rollups (org_id, kind, entity_id, endpoint, span, day);

-- Filled from the daily roll-ups (shard 0): per day and per ISO week, per model and
-- in total, for each kind.
INSERT INTO usage_entity_rollups
    (org_id, kind, span, day, entity_id, endpoint, provider, model, requests, errors, prompt_tokens, completion_tokens, cost)
SELECT d.org_id, k.kind, s.span, s.bucket, k.entity, k.path, g.p, g.m,
       sum(d.requests), sum(d.errors), sum(d.prompt_tokens), sum(d.completion_tokens), sum(d.cost)
  FROM usage_daily d
 CROSS JOIN LATERAL (VALUES
        ('customer', d.customer_id, ''),
        ('agent', d.agent_id, ''),
        ('endpoint', NULL::uuid, CASE WHEN d.endpoint LIKE '/a2a/%' THEN '/a2a/{agentId}' ELSE d.endpoint END)
     ) AS k(kind, entity, path)
 CROSS JOIN LATERAL (VALUES ('day', d.day), ('week', d.day - (extract(isodow FROM d.day)::int - 1))) AS s(span, bucket)
 CROSS JOIN LATERAL (VALUES (d.provider, d.model), ('', '')) AS g(p, m)
 GROUP BY d.org_id, k.kind, s.span, s.bucket, k.entity, k.path, g.p, g.m;

-- The wide per-customer and per-route tables had no other reader.
DROP TABLE usage_daily_customers;
DROP TABLE usage_daily_routes;
