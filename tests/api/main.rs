//! HTTP tests through the real stack: PostgreSQL, Redis and the actix server.
//! One binary with a module per capability, so the crate links once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_keys;
mod authz_matrix;
mod bad_input;
mod counters;
mod health;
mod helpers;
mod ledger;
mod openapi;
mod pricing;
mod spend_logs;
mod tenancy;
mod tokens;
mod usage;
