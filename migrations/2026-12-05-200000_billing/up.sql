-- Billing, slice 1: what invoices will be made from.

-- One row per organization once its owners or admins set it; until then the API
-- answers the defaults below (and the organization's name as the issuer).
CREATE TABLE billing_settings (
    org_id         uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    -- NULL: the organization's name, as it stands when an invoice is made.
    issuer_name    text CHECK (length(issuer_name) BETWEEN 1 AND 200),
    issuer_address text CHECK (length(issuer_address) BETWEEN 1 AND 1000),
    tax_id         text CHECK (length(tax_id) BETWEEN 1 AND 100),
    -- Percentages as exact decimals.
    tax_rate       numeric(7, 4) NOT NULL DEFAULT 0 CHECK (tax_rate BETWEEN 0 AND 100),
    -- One currency per organization; only USD for now (every price is USD).
    currency       text NOT NULL DEFAULT 'USD' CHECK (currency = 'USD'),
    markup         numeric(9, 4) NOT NULL DEFAULT 0 CHECK (markup BETWEEN 0 AND 10000),
    due_days       integer NOT NULL DEFAULT 30 CHECK (due_days BETWEEN 0 AND 365),
    footer         text CHECK (length(footer) BETWEEN 1 AND 2000),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    updated_by     uuid REFERENCES users (id) ON DELETE SET NULL
);

-- Who an invoice for one of the tenant's customers is addressed to. Every field is
-- optional: an invoice falls back to the customer's external id.
CREATE TABLE customer_billing_profiles (
    org_id       uuid NOT NULL,
    customer_id  uuid NOT NULL,
    billing_name text CHECK (length(billing_name) BETWEEN 1 AND 200),
    email        text CHECK (length(email) BETWEEN 3 AND 254),
    address      text CHECK (length(address) BETWEEN 1 AND 1000),
    tax_id       text CHECK (length(tax_id) BETWEEN 1 AND 100),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, customer_id),
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id) ON DELETE CASCADE
);

-- The per-customer daily cost ledger invoices are made from: per UTC day, customer,
-- provider, model (the catalog id, as in the roll-ups), the price version and the
-- discount that applied. Written in the ingest transaction (after the spend ledger);
-- the retention purge keeps it for the billing horizon (MP_BILLING_HORIZON_DAYS), not
-- the plan's retention. `price_id` names the price version that applied, as the event
-- does: a catalog version (`model_prices`) or an organization's override
-- (`org_model_prices`), both immutable and never deleted, so the unit prices that
-- applied are read from it; NULL for an unpriced call. No foreign key on it, since it
-- points into either table.
CREATE TABLE customer_cost_daily (
    org_id               uuid NOT NULL,
    day                  date NOT NULL,
    customer_id          uuid NOT NULL,
    provider             text NOT NULL,
    model                text NOT NULL,
    price_id             uuid,
    discount_id          uuid,
    -- Spreads concurrent writers of one grain (the roll-ups' shard).
    shard                smallint NOT NULL CHECK (shard >= 0),
    requests             bigint NOT NULL CHECK (requests >= 0),
    prompt_tokens        bigint NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens    bigint NOT NULL CHECK (completion_tokens >= 0),
    cached_tokens        bigint NOT NULL CHECK (cached_tokens >= 0),
    cost_before_discount numeric(30, 10) NOT NULL CHECK (cost_before_discount >= 0),
    discount_savings     numeric(30, 10) NOT NULL CHECK (discount_savings >= 0),
    cost                 numeric(30, 10) NOT NULL CHECK (cost >= 0),
    CONSTRAINT customer_cost_daily_grain UNIQUE NULLS NOT DISTINCT
        (org_id, customer_id, day, provider, model, price_id, discount_id, shard),
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id) ON DELETE CASCADE
);
-- The purge deletes by (org_id, day).
CREATE INDEX customer_cost_daily_day_idx ON customer_cost_daily (org_id, day);

-- Filled from the raw events still kept (shard 0).
INSERT INTO customer_cost_daily (org_id, day, customer_id, provider, model, price_id, discount_id, shard,
    requests, prompt_tokens, completion_tokens, cached_tokens, cost_before_discount, discount_savings, cost)
SELECT org_id, (occurred_at AT TIME ZONE 'UTC')::date, customer_id, provider, canonical_model, price_id, discount_id, 0,
       count(*), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens),
       sum(cost_before_discount), sum(discount_savings), sum(cost)
  FROM usage_events
 WHERE customer_id IS NOT NULL
 GROUP BY org_id, (occurred_at AT TIME ZONE 'UTC')::date, customer_id, provider, canonical_model, price_id, discount_id;
