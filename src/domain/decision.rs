//! What the authorize check decided and why, in the words the gateway and the
//! decision log use.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The stable reason of a decision. Gateways branch on these; a code is never
/// renamed or reused.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DecisionReason {
    Allowed,
    /// A hard budget would be exceeded by this call (or is used up).
    BudgetExceeded,
    /// The scope's requests-per-minute limit is reached.
    RateLimitedRequests,
    /// The scope's tokens-per-minute limit would be exceeded.
    RateLimitedTokens,
    CustomerBlocked,
    AgentBlocked,
    KeyRevoked,
    KeyExpired,
    /// The call names a model without a price in force, and the organization denies
    /// those (`unpricedModels: deny`).
    UnpricedModel,
    /// Redis is unreachable and the policy is to deny (`MP_AUTHORIZE_WHEN_REDIS_DOWN=closed`).
    CountersUnavailable,
}

impl DecisionReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Which kind of limit decided.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum LimitKind {
    /// Amounts in USD.
    Budget,
    RequestsPerMinute,
    TokensPerMinute,
}

/// One scope's limits and counters at the moment of a decision, as the decision log
/// keeps them. Amounts are micro-USD, as the counters hold them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeSnapshot {
    pub scope: String,
    pub scope_id: Uuid,
    pub budget_micros: Option<i64>,
    pub spent_micros: i64,
    pub reserved_micros: i64,
    pub requests_per_minute: Option<i64>,
    pub requests_this_minute: i64,
    pub tokens_per_minute: Option<i64>,
    pub tokens_this_minute: i64,
}
