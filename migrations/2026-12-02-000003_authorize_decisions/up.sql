-- The authorize decision log: every denial, and a sample of allowed calls, with the
-- limit that decided, the counter and reservations at that moment, so a tenant can
-- answer "why was this customer blocked at 14:02?" from numbers it can check.
--
-- It is kept like the raw events (the organization's retention) and removed by the
-- same purge; ordered by time so that purge is a range delete. Written in batches off
-- the request path, so a burst of denials costs the authorize check nothing.
CREATE TABLE authorize_decisions (
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid NOT NULL,
    decided_at      timestamptz NOT NULL,
    request_id      text,
    project_id      uuid NOT NULL,
    api_key_id      uuid NOT NULL,
    -- The tenant's own ids, as the gateway sent them.
    customer        text,
    agent           text,
    endpoint        text,
    provider        text,
    model           text,
    allowed         boolean NOT NULL,
    -- `allowed`, or the stable reason code of a denial.
    reason          text NOT NULL CHECK (length(reason) BETWEEN 1 AND 64),
    -- The scope whose limit decided a denial.
    scope           text CHECK (scope IN ('customer', 'agent', 'apiKey', 'project', 'organization')),
    scope_id        uuid,
    -- `budget` (USD), `requestsPerMinute` or `tokensPerMinute` (counts).
    limit_kind      text CHECK (limit_kind IN ('budget', 'requestsPerMinute', 'tokensPerMinute')),
    limit_value     numeric(30, 10),
    counter_value   numeric(30, 10),
    reserved_value  numeric(30, 10),
    estimated_cost  numeric(30, 10),
    estimated_tokens bigint,
    -- Every scope that was checked, with its counters (see store::decisions).
    scopes          jsonb NOT NULL,
    -- A sampled allow (not every allowed call is logged).
    sampled         boolean NOT NULL,
    PRIMARY KEY (org_id, decided_at, id),
    CHECK (allowed OR reason <> 'allowed')
);
CREATE INDEX authorize_decisions_customer_idx ON authorize_decisions (org_id, customer, decided_at DESC) WHERE customer IS NOT NULL;
CREATE INDEX authorize_decisions_agent_idx ON authorize_decisions (org_id, agent, decided_at DESC) WHERE agent IS NOT NULL;
