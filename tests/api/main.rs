//! HTTP tests through the real stack: PostgreSQL, Redis and the actix server.
//! One binary with a module per capability, so the crate links once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account_emails;
mod activity;
mod alert_emails;
mod api_keys;
mod authorize;
mod authz_matrix;
mod bad_input;
mod budget_alerts;
mod budgets;
mod counters;
mod customers;
mod health;
mod helpers;
mod ledger;
mod litellm;
mod live;
mod login_throttle;
mod openapi;
mod price_components;
mod pricing;
mod processes;
mod purge;
mod rate_limits;
mod redis_faults;
mod redis_server;
mod rollups;
mod server_process;
mod smtp_sink;
mod spend_logs;
mod summary;
mod tenancy;
mod tokens;
mod unpriced_policy;
mod usage;
