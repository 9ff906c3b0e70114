-- Account security: proven email addresses, single-use tokens for verification and
-- password reset, revocable access tokens, and who created an organization.

-- When the person proved they read this address (a verification or reset link).
-- Accounts from before verification existed keep what they had: they count as
-- verified, so no one is locked out of an organization by the upgrade.
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
UPDATE users SET email_verified_at = created_at;

-- Carried in every access token (`ver`); a password change or reset increments it,
-- so the tokens issued before stop working. Checked on the user row every
-- authenticated request reads anyway.
ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0 CHECK (token_version >= 0);

-- An account whose address is not proven may act only on organizations it created.
-- NULL for organizations from before this column (their members are all verified).
ALTER TABLE organizations ADD COLUMN created_by uuid REFERENCES users (id) ON DELETE SET NULL;

-- Single-use, expiring tokens sent by email. Only a SHA-256 of the token is kept: a
-- reader of this table cannot use it.
CREATE TABLE account_tokens (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('email_verification', 'password_reset')),
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose) WHERE used_at IS NULL;
