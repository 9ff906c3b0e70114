-- Request detail: what the gateway reports about a call besides its usage, and image
-- charges split into images sent with the request (input) and images generated
-- (output).

-- Per image sent with the request; `per_image` stays the price per image generated.
ALTER TABLE model_prices
    ADD COLUMN per_input_image numeric(20, 10) NOT NULL DEFAULT 0 CHECK (per_input_image >= 0);

ALTER TABLE usage_events
    -- As the gateway names it: `completion`, `embedding`, `image_generation`, …
    ADD COLUMN call_type           text,
    -- The gateway's id of the deployment that served the call.
    ADD COLUMN model_id            text,
    -- The upstream API, without user name, password, query or fragment.
    ADD COLUMN api_base            text,
    -- Only ever redacted: IPv4 with the last octet zeroed, IPv6 cut to its /48 prefix.
    ADD COLUMN client_ip           text,
    -- A JSON array of strings; NULL without tags.
    ADD COLUMN tags                jsonb,
    ADD COLUMN gateway_overhead_ms integer CHECK (gateway_overhead_ms >= 0),
    -- `images` counts the images a call generated; these, the images sent with it.
    ADD COLUMN input_images        integer NOT NULL DEFAULT 0 CHECK (input_images >= 0),
    -- `image_cost` = `image_input_cost` + `image_output_cost`.
    ADD COLUMN image_input_cost    numeric(20, 10) NOT NULL DEFAULT 0,
    ADD COLUMN image_output_cost   numeric(20, 10) NOT NULL DEFAULT 0;

ALTER TABLE usage_daily
    ADD COLUMN input_images      bigint NOT NULL DEFAULT 0,
    ADD COLUMN image_input_cost  numeric(30, 10) NOT NULL DEFAULT 0,
    ADD COLUMN image_output_cost numeric(30, 10) NOT NULL DEFAULT 0;

-- Every image charged so far was charged per image generated.
UPDATE usage_events SET image_output_cost = image_cost WHERE image_cost <> 0;
UPDATE usage_daily SET image_output_cost = image_cost WHERE image_cost <> 0;
