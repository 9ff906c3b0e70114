-- Billing, slice 2: invoices for an organization's customers.

-- A draft holds only its header: its lines are computed from the per-customer cost
-- ledger each time it is read, so it follows usage as it arrives. Finalizing writes
-- the lines and totals (`invoice_lines`) and snapshots the issuer and the customer's
-- billing profile: a finalized invoice never changes again; voiding keeps it, with its
-- number. Rows are never deleted, except drafts.
CREATE TABLE invoices (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    customer_id     uuid NOT NULL,
    status          text NOT NULL CHECK (status IN ('draft', 'finalized', 'void')),
    -- UTC days, both inclusive (the ledger's days are UTC days).
    period_start    date NOT NULL,
    period_end      date NOT NULL,
    memo            text CHECK (length(memo) BETWEEN 1 AND 2000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    -- Set when finalized; `number` is `INV-<year>-<sequence>` from `invoice_sequences`.
    number          text,
    issued_on       date,
    due_on          date,
    currency        text CHECK (currency = 'USD'),
    markup          numeric(9, 4),
    tax_rate        numeric(7, 4),
    issuer_name     text,
    issuer_address  text,
    issuer_tax_id   text,
    footer          text,
    customer_external_id text,
    bill_to_name    text,
    bill_to_email   text,
    bill_to_address text,
    bill_to_tax_id  text,
    -- The exact cost of the lines (before markup, after discounts), then the money
    -- the customer is charged, in the currency's minor unit.
    cost            numeric(30, 10),
    subtotal        numeric(20, 2),
    discount_total  numeric(20, 2),
    tax             numeric(20, 2),
    total           numeric(20, 2),
    finalized_at    timestamptz,
    finalized_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    voided_at       timestamptz,
    voided_by       uuid REFERENCES users (id) ON DELETE SET NULL,
    void_reason     text CHECK (length(void_reason) BETWEEN 1 AND 500),
    CHECK (period_end >= period_start),
    CHECK ((status = 'draft') = (number IS NULL)),
    CHECK (status = 'draft' OR (issued_on IS NOT NULL AND due_on IS NOT NULL AND total IS NOT NULL
                                AND finalized_at IS NOT NULL AND customer_external_id IS NOT NULL)),
    CHECK ((status = 'void') = (voided_at IS NOT NULL)),
    UNIQUE (org_id, number),
    FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id) ON DELETE CASCADE
);
CREATE INDEX invoices_org_idx ON invoices (org_id, id DESC);
CREATE INDEX invoices_customer_idx ON invoices (org_id, customer_id, period_start);

-- The lines of a finalized (or voided) invoice, as issued. A `late_usage` line bills
-- usage that reached the ledger after the invoice of its period (`adjusts_invoice_id`)
-- was finalized.
CREATE TABLE invoice_lines (
    invoice_id           uuid NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    position             integer NOT NULL CHECK (position >= 0),
    kind                 text NOT NULL CHECK (kind IN ('usage', 'late_usage')),
    adjusts_invoice_id   uuid REFERENCES invoices (id),
    provider             text NOT NULL,
    model                text NOT NULL,
    price_id             uuid,
    price_valid_from     timestamptz,
    input_per_mtok        numeric(20, 10),
    output_per_mtok       numeric(20, 10),
    cached_input_per_mtok numeric(20, 10),
    per_request           numeric(20, 10),
    requests             bigint NOT NULL,
    prompt_tokens        bigint NOT NULL,
    completion_tokens    bigint NOT NULL,
    cached_tokens        bigint NOT NULL,
    cost_before_discount numeric(30, 10) NOT NULL,
    discount_savings     numeric(30, 10) NOT NULL,
    cost                 numeric(30, 10) NOT NULL,
    amount_before_discount numeric(20, 2) NOT NULL,
    discount             numeric(20, 2) NOT NULL,
    amount               numeric(20, 2) NOT NULL,
    PRIMARY KEY (invoice_id, position),
    CHECK ((kind = 'late_usage') = (adjusts_invoice_id IS NOT NULL))
);
CREATE INDEX invoice_lines_adjusts_idx ON invoice_lines (adjusts_invoice_id) WHERE adjusts_invoice_id IS NOT NULL;

-- The last number given per organization and calendar year (UTC) of finalization.
-- Finalizing increments it in the finalizing transaction: the row lock orders
-- concurrent finalizations (from any number of processes) and a rolled-back one gives
-- its number back, so numbers have no gaps.
CREATE TABLE invoice_sequences (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    year        integer NOT NULL,
    last_number bigint NOT NULL CHECK (last_number > 0),
    PRIMARY KEY (org_id, year)
);

-- Invoices are emailed through the outbox.
ALTER TABLE email_outbox DROP CONSTRAINT email_outbox_kind_check;
ALTER TABLE email_outbox ADD CONSTRAINT email_outbox_kind_check
    CHECK (kind IN ('budget_alert', 'email_verification', 'password_reset', 'invoice'));
