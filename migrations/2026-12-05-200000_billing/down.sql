DROP TABLE customer_cost_daily;
DROP TABLE customer_billing_profiles;
DROP TABLE billing_settings;
