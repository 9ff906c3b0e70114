-- The email outbox: every email Meterplane sends (budget alerts now, account emails
-- such as verification and password reset later) is first written here, in the same
-- transaction as the change that decided to send it, so a committed decision is never
-- lost and a rolled-back one never sends. A background worker on any instance
-- delivers due rows over SMTP (`jobs::outbox`).
CREATE TABLE email_outbox (
    -- UUIDv7, so ordering by id is ordering by creation (the history's cursor).
    id              uuid PRIMARY KEY,
    -- The organization the email is about; NULL for account emails, which belong to a
    -- person rather than a tenant. Deleting an organization deletes its emails.
    org_id          uuid REFERENCES organizations (id) ON DELETE CASCADE,
    -- A new kind needs a migration that widens this list, on purpose: each kind has
    -- its own rules in `domain::outbox::EmailKind` (who may read it, what it keeps).
    kind            text NOT NULL CHECK (kind IN ('budget_alert', 'email_verification', 'password_reset')),
    -- What makes an email happen at most once, whichever instance or retry enqueues it:
    -- `INSERT … ON CONFLICT (dedupe_key) DO NOTHING`. For alerts:
    -- `budget_alert:<budgetId>:<periodStart>:<threshold>`, i.e. one email per threshold,
    -- per period, per budget. Printable ASCII without spaces.
    dedupe_key      text NOT NULL UNIQUE CHECK (dedupe_key ~ '^[!-~]+$' AND length(dedupe_key) <= 300),
    recipients      text[] NOT NULL CHECK (cardinality(recipients) <= 50 AND array_position(recipients, NULL) IS NULL),
    -- One line: a header must not smuggle in other headers.
    subject         text NOT NULL CHECK (length(subject) BETWEEN 1 AND 400 AND subject !~ '[\r\n]'),
    -- Emptied once sent for kinds that carry single-use links (reset, verification):
    -- a token at rest is a secret at rest.
    text_body       text NOT NULL,
    html_body       text NOT NULL,
    -- pending: waiting for (another) attempt; sent: the SMTP server accepted it;
    -- failed: gave up after the last attempt, or the message cannot be built;
    -- skipped: nothing to send (an alert for an organization without alert addresses),
    -- kept so the history shows that the threshold was crossed.
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    -- Delivery attempts made (a crash during an attempt does not count it).
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When the worker may try (again); only meaningful while pending.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- What went wrong last, for the tenant and operators: never credentials (the
    -- worker redacts them) and bounded.
    last_error      text CHECK (length(last_error) <= 1000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    CHECK ((status = 'sent') = (sent_at IS NOT NULL)),
    -- Nobody to send to only when the email was skipped for that reason.
    CHECK (cardinality(recipients) >= 1 OR status = 'skipped'),
    -- An alert is always about an organization; its history is read by org_id.
    CHECK (kind <> 'budget_alert' OR org_id IS NOT NULL)
);

-- The worker's pick query: due pending rows, oldest due first. Partial, so sent rows
-- (nearly all of them, over time) cost the index nothing.
CREATE INDEX email_outbox_due_idx ON email_outbox (next_attempt_at, id) WHERE status = 'pending';
-- An organization's history, newest first.
CREATE INDEX email_outbox_org_idx ON email_outbox (org_id, id DESC) WHERE org_id IS NOT NULL;
