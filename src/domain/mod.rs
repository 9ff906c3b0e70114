//! Domain rules as plain types and functions: no I/O, no HTTP, no SQL.
//!
//! Values arriving from requests are parsed into these types at the edge ("parse,
//! don't validate"), so everything behind the HTTP layer works with checked values.

pub mod account_email;
pub mod account_token;
pub mod activity;
pub mod alert_email;
pub mod api_key;
pub mod billing;
pub mod budget;
pub mod decision;
pub mod discount;
pub mod email;
pub mod identity;
pub mod invoice;
pub mod litellm_prices;
pub mod live;
pub mod login_throttle;
pub mod micros;
pub mod money;
pub mod names;
pub mod outbox;
pub mod password;
pub mod period;
pub mod plan;
pub mod pricing;
pub mod project_mode;
pub mod retention;
pub mod role;
pub mod rollup;
pub mod summary;
pub mod unpriced;
pub mod usage;

/// A rule a single input value broke; the HTTP layer turns it into a `FieldError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
