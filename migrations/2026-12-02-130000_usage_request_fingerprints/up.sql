-- A fingerprint of the content an event reported (`NewUsageEvent::fingerprint`),
-- kept with its request id: a retry with the same request id but other content is
-- answered as a duplicate with `conflict: true`. NULL for events recorded before;
-- their retries cannot be compared and report no conflict.
ALTER TABLE usage_request_ids ADD COLUMN fingerprint bigint;
