-- Counts changes to what events are priced with (catalog prices, organizations'
-- overrides, discounts). Taken after each change commits; every instance reads its
-- last value every second and drops its cached prices when it moved.
CREATE SEQUENCE price_changes;
