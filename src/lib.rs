//! Meterplane: the control plane beside an LLM gateway. See `ARCHITECTURE.md`.

// The OpenAPI examples of the widest responses (`json!` inside `ToSchema`) nest deeper
// than the default limit of 128 macro expansions.
#![recursion_limit = "256"]

pub mod auth;
pub mod cli;
pub mod config;
pub mod counters;
pub mod demo;
pub mod domain;
pub mod enforcement;
pub mod error;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod live;
pub mod price_book;
pub mod render;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
