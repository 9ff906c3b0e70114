DROP SEQUENCE price_changes;
