//! Who is calling: people (JWT bearer tokens) and the gateway (project API keys).

pub mod jwt;
pub mod key_resolver;
pub mod throttle;

// Identity types are shared vocabulary (the store and ingest use them too), so they
// live in the domain; re-exported here where callers first look for them.
pub use crate::domain::identity::{Caller, KeyIdentity};
