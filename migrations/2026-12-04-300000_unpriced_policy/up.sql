-- What the authorize check does with a call to a model that has no price: `allow`
-- (records it at zero cost, flagged unpriced; the behaviour before this setting) or
-- `deny`. Usage events of unpriced models are recorded either way.
ALTER TABLE organizations
    ADD COLUMN unpriced_models text NOT NULL DEFAULT 'allow'
        CHECK (unpriced_models IN ('allow', 'deny'));
