// Diesel table definitions, kept in step with `migrations/` by hand (no libpq, so no
// `diesel print-schema` here). Every model selects all of its table's columns with
// `as_select()`, so the HTTP tests fail on any column that is missing or mistyped.
// The wide usage tables (`usage_events`, `usage_daily`) and the spend ledger are
// written and read with SQL in `store::usage`, `store::spend_logs` and
// `store::spend_ledger` instead: bulk writes go through `unnest`. So is the price
// catalog (`model_prices`, in `store::prices`): it has more columns than diesel's
// default table size.

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        display_name -> Text,
        is_operator -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        email_verified_at -> Nullable<Timestamptz>,
        token_version -> Int4,
    }
}

diesel::table! {
    account_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        purpose -> Text,
        token_hash -> Bytea,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    organizations (id) {
        id -> Uuid,
        name -> Text,
        slug -> Text,
        plan -> Text,
        retention_days -> Int4,
        alert_emails -> Array<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        created_by -> Nullable<Uuid>,
        unpriced_models -> Text,
    }
}

diesel::table! {
    memberships (org_id, user_id) {
        org_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    projects (id) {
        id -> Uuid,
        org_id -> Uuid,
        name -> Text,
        mode -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        org_id -> Uuid,
        project_id -> Uuid,
        name -> Text,
        prefix -> Text,
        secret_hash -> Bytea,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        replaced_by -> Nullable<Uuid>,
    }
}

diesel::table! {
    discounts (id) {
        id -> Uuid,
        org_id -> Nullable<Uuid>,
        provider -> Nullable<Text>,
        model -> Nullable<Text>,
        percent -> Numeric,
        valid_from -> Timestamptz,
        valid_until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    customers (id) {
        id -> Uuid,
        org_id -> Uuid,
        external_id -> Text,
        created_at -> Timestamptz,
        blocked_at -> Nullable<Timestamptz>,
        blocked_by -> Nullable<Uuid>,
        block_reason -> Nullable<Text>,
    }
}

diesel::table! {
    agents (id) {
        id -> Uuid,
        org_id -> Uuid,
        external_id -> Text,
        created_at -> Timestamptz,
        blocked_at -> Nullable<Timestamptz>,
        blocked_by -> Nullable<Uuid>,
        block_reason -> Nullable<Text>,
    }
}

diesel::table! {
    usage_request_ids (org_id, request_id) {
        org_id -> Uuid,
        request_id -> Text,
        event_id -> Uuid,
        occurred_at -> Timestamptz,
        fingerprint -> Nullable<Int8>,
    }
}

diesel::table! {
    invitations (id) {
        id -> Uuid,
        org_id -> Uuid,
        email -> Text,
        role -> Text,
        invited_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        accepted_at -> Nullable<Timestamptz>,
    }
}

// Budgets, rate limits and resets also have generated columns (`customer_id`,
// `agent_id`, `api_key_id`, `project_id`) that exist only for their foreign keys;
// code never reads or writes them, so they are left out here.
diesel::table! {
    budgets (id) {
        id -> Uuid,
        org_id -> Uuid,
        scope -> Text,
        scope_id -> Nullable<Uuid>,
        amount -> Numeric,
        period -> Text,
        thresholds -> Array<Int4>,
        hard_limit -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    rate_limits (id) {
        id -> Uuid,
        org_id -> Uuid,
        scope -> Text,
        scope_id -> Nullable<Uuid>,
        requests_per_minute -> Nullable<Int4>,
        tokens_per_minute -> Nullable<Int8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    spend_resets (org_id, scope, scope_id) {
        org_id -> Uuid,
        scope -> Text,
        scope_id -> Uuid,
        reset_at -> Timestamptz,
        day -> Date,
        day_cost -> Numeric,
        day_micros -> Int8,
        reset_by -> Nullable<Uuid>,
    }
}

diesel::table! {
    email_outbox (id) {
        id -> Uuid,
        org_id -> Nullable<Uuid>,
        kind -> Text,
        dedupe_key -> Text,
        recipients -> Array<Text>,
        subject -> Text,
        text_body -> Text,
        html_body -> Text,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    billing_settings (org_id) {
        org_id -> Uuid,
        issuer_name -> Nullable<Text>,
        issuer_address -> Nullable<Text>,
        tax_id -> Nullable<Text>,
        tax_rate -> Numeric,
        currency -> Text,
        markup -> Numeric,
        due_days -> Int4,
        footer -> Nullable<Text>,
        updated_at -> Timestamptz,
        updated_by -> Nullable<Uuid>,
    }
}

diesel::table! {
    customer_billing_profiles (org_id, customer_id) {
        org_id -> Uuid,
        customer_id -> Uuid,
        billing_name -> Nullable<Text>,
        email -> Nullable<Text>,
        address -> Nullable<Text>,
        tax_id -> Nullable<Text>,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(invitations -> organizations (org_id));
diesel::joinable!(memberships -> organizations (org_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(projects -> organizations (org_id));
diesel::joinable!(api_keys -> projects (project_id));

diesel::joinable!(account_tokens -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    account_tokens,
    organizations,
    memberships,
    projects,
    api_keys,
    invitations,
    discounts,
    customers,
    agents,
    usage_request_ids,
    budgets,
    rate_limits,
    spend_resets,
    billing_settings,
    customer_billing_profiles,
);
