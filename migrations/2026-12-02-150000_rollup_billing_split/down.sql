ALTER TABLE usage_daily
    DROP COLUMN credits_requests,
    DROP COLUMN api_keys_requests,
    DROP COLUMN credits_data_storage_cost,
    DROP COLUMN api_keys_data_storage_cost;
