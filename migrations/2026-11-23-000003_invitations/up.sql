-- Invitations: an existing account joins an organization only by accepting one, so a
-- tenant admin can neither attach someone else's account nor learn whether an email
-- has an account.
CREATE TABLE invitations (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email       text NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    invited_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    accepted_at timestamptz
);
-- One open invitation per person and organization; inviting again updates it.
CREATE UNIQUE INDEX invitations_open_key ON invitations (org_id, email) WHERE accepted_at IS NULL;
CREATE INDEX invitations_email_idx ON invitations (email) WHERE accepted_at IS NULL;
