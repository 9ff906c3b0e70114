DROP TABLE usage_daily_routes;
DROP TABLE usage_daily_customers;
DROP TABLE usage_daily_models;
