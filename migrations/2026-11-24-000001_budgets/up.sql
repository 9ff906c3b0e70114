-- Budgets, rate limits, blocking, and the spend ledger they are checked against.
--
-- Budgets and rate limits apply to a scope: a customer, an agent, an API key, a
-- project, or the organization itself. `scope_id` names the customer, agent, key or
-- project (for the organization: its own id). A row whose `scope_id` is NULL is the
-- organization's default for every customer (or agent) that has none of its own.
--
-- `scope_id` points into a different table per scope, which a foreign key cannot
-- follow; so each table also carries one generated column per target table, holding
-- `scope_id` when the scope matches and NULL otherwise. Composite foreign keys on
-- those (with org_id, as everywhere) guarantee the target exists in the same
-- organization. Code reads and writes `scope_id` only.

CREATE TABLE budgets (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    scope       text NOT NULL CHECK (scope IN ('customer', 'agent', 'apiKey', 'project', 'organization')),
    scope_id    uuid,
    -- USD; bounds as in domain::budget (micro-dollars stay below 2^53 for Lua).
    amount      numeric(20, 10) NOT NULL CHECK (amount > 0 AND amount <= 1000000000),
    period      text NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly', 'total')),
    -- Alert thresholds in percent, sorted and unique (domain::budget::Thresholds).
    thresholds  integer[] NOT NULL DEFAULT '{50,80,100}'
                CHECK (cardinality(thresholds) <= 10 AND array_position(thresholds, NULL) IS NULL
                       AND 1 <= ALL (thresholds) AND 100 >= ALL (thresholds)),
    -- true: calls are denied at 100 %; false: alerts only.
    hard_limit  boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    customer_id uuid GENERATED ALWAYS AS (CASE WHEN scope = 'customer' THEN scope_id END) STORED,
    agent_id    uuid GENERATED ALWAYS AS (CASE WHEN scope = 'agent' THEN scope_id END) STORED,
    api_key_id  uuid GENERATED ALWAYS AS (CASE WHEN scope = 'apiKey' THEN scope_id END) STORED,
    project_id  uuid GENERATED ALWAYS AS (CASE WHEN scope = 'project' THEN scope_id END) STORED,
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, agent_id) REFERENCES agents (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, api_key_id) REFERENCES api_keys (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE,
    -- Only customers and agents have organization defaults.
    CHECK (scope_id IS NOT NULL OR scope IN ('customer', 'agent')),
    CHECK (scope <> 'organization' OR scope_id = org_id),
    -- One budget per scope, and one default per kind (NULLs compare equal here).
    CONSTRAINT budgets_scope_key UNIQUE NULLS NOT DISTINCT (org_id, scope, scope_id)
);

CREATE TABLE rate_limits (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    scope               text NOT NULL CHECK (scope IN ('customer', 'agent', 'apiKey', 'project', 'organization')),
    scope_id            uuid,
    requests_per_minute integer CHECK (requests_per_minute BETWEEN 1 AND 10000000),
    -- Prompt + completion tokens.
    tokens_per_minute   bigint CHECK (tokens_per_minute BETWEEN 1 AND 10000000000),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    customer_id uuid GENERATED ALWAYS AS (CASE WHEN scope = 'customer' THEN scope_id END) STORED,
    agent_id    uuid GENERATED ALWAYS AS (CASE WHEN scope = 'agent' THEN scope_id END) STORED,
    api_key_id  uuid GENERATED ALWAYS AS (CASE WHEN scope = 'apiKey' THEN scope_id END) STORED,
    project_id  uuid GENERATED ALWAYS AS (CASE WHEN scope = 'project' THEN scope_id END) STORED,
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, agent_id) REFERENCES agents (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, api_key_id) REFERENCES api_keys (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE,
    -- A row without any limit would be a limit that limits nothing: delete it instead.
    CHECK (requests_per_minute IS NOT NULL OR tokens_per_minute IS NOT NULL),
    CHECK (scope_id IS NOT NULL OR scope IN ('customer', 'agent')),
    CHECK (scope <> 'organization' OR scope_id = org_id),
    CONSTRAINT rate_limits_scope_key UNIQUE NULLS NOT DISTINCT (org_id, scope, scope_id)
);

-- The latest reset of a scope's spend: spend before `reset_at` no longer counts
-- towards whichever budget applies to the scope (its own or a default). The ledger is
-- kept per day, so the reset also records the scope's spend on its own UTC day up to
-- the reset, which is subtracted while that day is in the budget's window
-- (domain::budget::counted). Deleting the scope's budget deletes its reset too.
CREATE TABLE spend_resets (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    scope       text NOT NULL CHECK (scope IN ('customer', 'agent', 'apiKey', 'project', 'organization')),
    scope_id    uuid NOT NULL,
    reset_at    timestamptz NOT NULL,
    day         date NOT NULL,
    day_cost    numeric(30, 10) NOT NULL CHECK (day_cost >= 0),
    day_micros  bigint NOT NULL CHECK (day_micros >= 0),
    reset_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    customer_id uuid GENERATED ALWAYS AS (CASE WHEN scope = 'customer' THEN scope_id END) STORED,
    agent_id    uuid GENERATED ALWAYS AS (CASE WHEN scope = 'agent' THEN scope_id END) STORED,
    api_key_id  uuid GENERATED ALWAYS AS (CASE WHEN scope = 'apiKey' THEN scope_id END) STORED,
    project_id  uuid GENERATED ALWAYS AS (CASE WHEN scope = 'project' THEN scope_id END) STORED,
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, agent_id) REFERENCES agents (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, api_key_id) REFERENCES api_keys (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE,
    CHECK (scope <> 'organization' OR scope_id = org_id),
    CHECK (day = (reset_at AT TIME ZONE 'UTC')::date),
    PRIMARY KEY (org_id, scope, scope_id)
);

-- Blocking: a blocked customer or agent is denied by the authorize check. Nullable
-- columns without defaults: adding them rewrites nothing.
ALTER TABLE customers
    ADD COLUMN blocked_at   timestamptz,
    ADD COLUMN blocked_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN block_reason text CHECK (length(block_reason) BETWEEN 1 AND 500),
    ADD CONSTRAINT customers_block_check CHECK (blocked_at IS NOT NULL OR (blocked_by IS NULL AND block_reason IS NULL));
ALTER TABLE agents
    ADD COLUMN blocked_at   timestamptz,
    ADD COLUMN blocked_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN block_reason text CHECK (length(block_reason) BETWEEN 1 AND 500),
    ADD CONSTRAINT agents_block_check CHECK (blocked_at IS NOT NULL OR (blocked_by IS NULL AND block_reason IS NULL));

-- The spend ledger: what each scope spent per UTC day, written in the ingest
-- transaction for every accepted event (its organization, project, API key, and its
-- customer and agent when it has them). It is budget state, not analytics: the
-- retention purge deletes raw events and roll-ups but never these rows, so a free
-- plan that keeps 3 days of events still counts a monthly or total budget right.
-- A budget's spend is the sum of the days of its window, so changing its period
-- counts the spend already made.
--
-- `cost_micros` is the sum of each event's cost in micro-dollars rounded up
-- (domain::micros): Redis counters are rebuilt from it to exactly the integer they
-- had. Like usage_daily, rows are sharded so concurrent batches do not queue on the
-- organization's row, and there are no foreign keys: every batch would check them,
-- and the ingest path only writes ids it has just resolved in the same organization.
CREATE TABLE spend_ledger (
    org_id      uuid NOT NULL,
    scope       text NOT NULL CHECK (scope IN ('customer', 'agent', 'apiKey', 'project', 'organization')),
    scope_id    uuid NOT NULL,
    day         date NOT NULL,
    shard       smallint NOT NULL CHECK (shard >= 0),
    cost        numeric(30, 10) NOT NULL CHECK (cost >= 0),
    cost_micros bigint NOT NULL CHECK (cost_micros >= 0),
    requests    bigint NOT NULL CHECK (requests >= 0),
    -- Prompt + completion tokens.
    tokens      bigint NOT NULL CHECK (tokens >= 0),
    PRIMARY KEY (org_id, scope, scope_id, day, shard)
);
