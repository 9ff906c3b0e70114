//! Budget alerts: after usage commits, every threshold that a budget's current-period
//! spend has reached is queued as an email in the outbox.
//!
//! The check reads the ledger (the truth), not the Redis counters, and is idempotent:
//! each alert's dedupe key (budget, subject, period start, threshold) lets the outbox
//! keep one email however many instances, requests or retries reach the same
//! threshold. A reset starts a new period for alerts, so its thresholds alert again.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{
    domain::{
        alert_email::{BudgetAlert, Enforcement},
        budget::BudgetScope,
        period::Window,
    },
    error::AppResult,
    store::{self, limits::BudgetRule, outbox::Enqueued, DbConn},
};

/// The thresholds (percent) of `amount` that `spent` has reached.
pub fn reached(thresholds: &[i32], spent: Decimal, amount: Decimal) -> Vec<u8> {
    thresholds
        .iter()
        .filter_map(|t| u8::try_from(*t).ok())
        .filter(|t| spent >= amount * Decimal::from(*t) / Decimal::ONE_HUNDRED)
        .collect()
}

/// Queues the alerts of `budgets` (each with the scope it is counted for) whose
/// thresholds are reached now. Returns how many new emails were queued.
pub async fn queue_reached(
    conn: &mut DbConn,
    org_id: Uuid,
    budgets: &[(BudgetScope, Uuid, BudgetRule)],
    now: DateTime<Utc>,
) -> AppResult<usize> {
    if budgets.is_empty() {
        return Ok(0);
    }
    let windows: Vec<(BudgetScope, Uuid, Window)> = budgets
        .iter()
        .map(|(scope, id, b)| (*scope, *id, b.period.window(now)))
        .collect();
    let spent = store::limits::window_spend(conn, org_id, &windows).await?;
    let due: Vec<_> = budgets
        .iter()
        .zip(&windows)
        .zip(spent)
        .flat_map(|(((scope, id, budget), (_, _, window)), spent)| {
            reached(&budget.thresholds, spent, budget.amount)
                .into_iter()
                .map(move |t| (*scope, *id, budget, *window, spent, t))
        })
        .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = due.iter().map(|d| d.1).collect();
    let labels = store::limits::scope_labels(conn, org_id, &ids).await?;
    let resets = store::limits::reset_times(conn, org_id, &ids).await?;
    let mut queued = 0;
    for (scope, id, budget, window, spent, threshold) in due {
        let label = labels.get(&(scope, id)).cloned().unwrap_or_else(|| id.to_string());
        let named = matches!(scope, BudgetScope::Project | BudgetScope::ApiKey);
        // Spend before a reset inside the window does not count: alerts count from it.
        let period_start = resets
            .get(&(scope, id))
            .filter(|at| **at >= window.start)
            .copied()
            .unwrap_or(window.start);
        let alert = BudgetAlert {
            budget_id: budget.id,
            subject_id: id,
            scope,
            scope_id: if named { id.to_string() } else { label.clone() },
            scope_name: named.then_some(label),
            spend: spent.normalize(),
            amount: budget.amount.normalize(),
            threshold_percent: threshold,
            period: budget.period,
            period_start,
            period_end: window.end,
            enforcement: if budget.hard_limit {
                Enforcement::Hard
            } else {
                Enforcement::Soft
            },
        };
        if matches!(
            store::outbox::enqueue_budget_alert(conn, org_id, &alert).await?,
            Enqueued::Queued(_)
        ) {
            queued += 1;
        }
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn a_threshold_is_reached_at_its_exact_level() {
        let t = [50, 80, 100];
        assert_eq!(reached(&t, dec!(49.99), dec!(100)), Vec::<u8>::new());
        assert_eq!(reached(&t, dec!(50), dec!(100)), vec![50]);
        assert_eq!(reached(&t, dec!(80.0000000001), dec!(100)), vec![50, 80]);
        assert_eq!(reached(&t, dec!(250), dec!(100)), vec![50, 80, 100]);
        assert_eq!(reached(&t, dec!(0), dec!(0.0000000001)), Vec::<u8>::new());
    }
}
