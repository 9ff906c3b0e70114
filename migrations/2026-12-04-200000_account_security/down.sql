DROP TABLE account_tokens;
ALTER TABLE organizations DROP COLUMN created_by;
ALTER TABLE users DROP COLUMN token_version;
ALTER TABLE users DROP COLUMN email_verified_at;
