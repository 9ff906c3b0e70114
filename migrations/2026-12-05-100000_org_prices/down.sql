DROP TABLE org_model_prices;
