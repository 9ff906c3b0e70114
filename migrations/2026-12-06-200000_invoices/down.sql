DELETE FROM email_outbox WHERE kind = 'invoice';
ALTER TABLE email_outbox DROP CONSTRAINT email_outbox_kind_check;
ALTER TABLE email_outbox ADD CONSTRAINT email_outbox_kind_check
    CHECK (kind IN ('budget_alert', 'email_verification', 'password_reset'));
DROP TABLE invoice_sequences;
DROP TABLE invoice_lines;
DROP TABLE invoices;
