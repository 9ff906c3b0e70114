//! Folds a batch of stored events into the spend ledger rows it adds to, and the
//! summary of what the transaction committed.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::{
    auth::KeyIdentity,
    domain::{budget::BudgetScope, micros::to_micros},
    error::{AppError, AppResult},
    store::{spend_ledger::SpendDelta, usage::EventRow},
};

/// What one ingest transaction committed to the spend ledger. Built inside the
/// transaction and returned once it has committed, for the steps that must follow a
/// commit and never precede it (the Redis spend counters, settling reservations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommittedSpend {
    pub org_id: Uuid,
    /// What was added per scope and UTC day, sorted by (scope, scope id, day).
    pub by_scope: Vec<SpendDelta>,
    /// Every accepted event, in the order of the batch.
    pub events: Vec<CommittedEvent>,
}

/// One accepted event as the counters see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedEvent {
    pub request_id: String,
    pub occurred_at: DateTime<Utc>,
    /// Its cost in micro-dollars, rounded up (`domain::micros`); `by_scope` sums these.
    pub cost_micros: i64,
    /// Prompt + completion tokens, for the tokens-per-minute windows.
    pub tokens: i64,
    pub customer_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
}

impl CommittedSpend {
    pub fn none(org_id: Uuid) -> Self {
        Self {
            org_id,
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// The ledger rows of `rows` (all recorded with `key`): one per scope and day, for the
/// organization, the project, the key, and each event's customer and agent.
pub fn aggregate(key: &KeyIdentity, rows: &[EventRow]) -> AppResult<CommittedSpend> {
    let mut by_scope: BTreeMap<(BudgetScope, Uuid, NaiveDate), SpendDelta> = BTreeMap::new();
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let cost_micros = to_micros(row.cost).ok_or_else(|| {
            AppError::internal(anyhow::anyhow!("event cost {} does not fit in micro-dollars", row.cost))
        })?;
        let day = row.occurred_at.date_naive();
        let scopes = [
            Some((BudgetScope::Organization, key.org_id)),
            Some((BudgetScope::Project, key.project_id)),
            Some((BudgetScope::ApiKey, key.key_id)),
            row.customer_id.map(|id| (BudgetScope::Customer, id)),
            row.agent_id.map(|id| (BudgetScope::Agent, id)),
        ];
        for (scope, scope_id) in scopes.into_iter().flatten() {
            let sum = by_scope.entry((scope, scope_id, day)).or_insert_with(|| SpendDelta {
                scope,
                scope_id,
                day,
                cost: rust_decimal::Decimal::ZERO,
                cost_micros: 0,
                requests: 0,
                tokens: 0,
            });
            sum.cost += row.cost;
            sum.cost_micros += cost_micros;
            sum.requests += 1;
            sum.tokens += row.prompt_tokens + row.completion_tokens;
        }
        events.push(CommittedEvent {
            request_id: row.request_id.clone(),
            occurred_at: row.occurred_at,
            cost_micros,
            tokens: row.prompt_tokens + row.completion_tokens,
            customer_id: row.customer_id,
            agent_id: row.agent_id,
        });
    }
    Ok(CommittedSpend {
        org_id: key.org_id,
        by_scope: by_scope.into_values().collect(),
        events,
    })
}
