//! Budgets of a scope, and the organization's default budgets for customers and
//! agents (rows without a `scope_id`).

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    upsert::{excluded, on_constraint},
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    access::OrgAccess,
    schema::budgets,
    scopes::{self, ScopeTarget, Subject},
    spend_ledger::{self, CurrentSpend},
    DbConn,
};
use crate::{
    domain::{
        budget::{BudgetChanges, BudgetScope, BudgetSettings},
        period::BudgetPeriod,
        role::Access,
    },
    error::{AppError, AppResult},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = budgets, check_for_backend(diesel::pg::Pg))]
pub struct Budget {
    pub id: Uuid,
    pub org_id: Uuid,
    pub scope: BudgetScope,
    /// `None`: the organization's default for its scope.
    pub scope_id: Option<Uuid>,
    pub amount: Decimal,
    pub period: BudgetPeriod,
    pub thresholds: Vec<i32>,
    pub hard_limit: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A budget of a scope with what counts towards it now.
#[derive(Debug, Clone)]
pub struct BudgetWithSpend {
    pub budget: Budget,
    pub spend: CurrentSpend,
}

fn stored_thresholds(settings: &[u8]) -> Vec<i32> {
    settings.iter().map(|&t| i32::from(t)).collect()
}

macro_rules! of {
    ($access:expr, $of:expr) => {
        budgets::table
            .filter(budgets::org_id.eq($access.org_id()))
            .filter(budgets::scope.eq($of.scope()))
            .filter(budgets::scope_id.is_not_distinct_from($of.scope_id()))
    };
}

/// Sets the budget of `of`, replacing the one it had. Returns it and whether it is new.
pub async fn put(
    conn: &mut DbConn,
    access: &OrgAccess,
    of: Subject,
    settings: &BudgetSettings,
) -> AppResult<(Budget, bool)> {
    access.require(Access::Manage)?;
    if let Subject::Target(target) = of {
        scopes::ensure_exists(conn, access, target).await?;
    }
    let budget = diesel::insert_into(budgets::table)
        .values((
            budgets::id.eq(Uuid::now_v7()),
            budgets::org_id.eq(access.org_id()),
            budgets::scope.eq(of.scope()),
            budgets::scope_id.eq(of.scope_id()),
            budgets::amount.eq(settings.amount.value()),
            budgets::period.eq(settings.period),
            budgets::thresholds.eq(stored_thresholds(settings.thresholds.percents())),
            budgets::hard_limit.eq(settings.hard_limit),
        ))
        .on_conflict(on_constraint("budgets_scope_key"))
        .do_update()
        .set((
            budgets::amount.eq(excluded(budgets::amount)),
            budgets::period.eq(excluded(budgets::period)),
            budgets::thresholds.eq(excluded(budgets::thresholds)),
            budgets::hard_limit.eq(excluded(budgets::hard_limit)),
            budgets::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Budget::as_returning())
        .get_result(conn)
        .await?;
    // A new row has both timestamps from the same `now()`; an update moves one.
    let created = budget.created_at == budget.updated_at;
    Ok((budget, created))
}

pub async fn find(conn: &mut DbConn, access: &OrgAccess, of: Subject) -> AppResult<Option<Budget>> {
    Ok(of!(access, of)
        .select(Budget::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// A scope's own budget; 404 when it has none (or the scope is not the caller's).
pub async fn get(conn: &mut DbConn, access: &OrgAccess, target: ScopeTarget) -> AppResult<Budget> {
    find(conn, access, Subject::Target(target))
        .await?
        .ok_or_else(|| AppError::not_found("budget"))
}

/// Own budgets (not defaults), oldest first, `limit` after the budget `after`.
pub async fn list(
    conn: &mut DbConn,
    access: &OrgAccess,
    scope: Option<BudgetScope>,
    after: Option<Uuid>,
    limit: i64,
) -> AppResult<Vec<Budget>> {
    let mut query = budgets::table
        .filter(budgets::org_id.eq(access.org_id()))
        .filter(budgets::scope_id.is_not_null())
        .into_boxed();
    if let Some(scope) = scope {
        query = query.filter(budgets::scope.eq(scope));
    }
    if let Some(after) = after {
        query = query.filter(budgets::id.gt(after));
    }
    Ok(query
        .order(budgets::id.asc())
        .limit(limit)
        .select(Budget::as_select())
        .load(conn)
        .await?)
}

/// Changes what `changes` names of a scope's own budget; spend already made keeps
/// counting (it comes from the ledger, whatever the period).
pub async fn change(
    conn: &mut DbConn,
    access: &OrgAccess,
    target: ScopeTarget,
    changes: &BudgetChanges,
) -> AppResult<Budget> {
    access.require(Access::Manage)?;
    let of = Subject::Target(target);
    diesel::update(of!(access, of))
        .set((
            changes.amount.map(|a| budgets::amount.eq(a.value())),
            changes.period.map(|p| budgets::period.eq(p)),
            changes
                .thresholds
                .as_ref()
                .map(|t| budgets::thresholds.eq(stored_thresholds(t.percents()))),
            changes.hard_limit.map(|h| budgets::hard_limit.eq(h)),
            budgets::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Budget::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("budget"))
}

/// Removes a budget; a scope's own budget takes its spend reset with it. `false` if
/// there was none.
pub async fn delete(conn: &mut DbConn, access: &OrgAccess, of: Subject) -> AppResult<bool> {
    access.require(Access::Manage)?;
    conn.transaction(async |conn| {
        let deleted = diesel::delete(of!(access, of)).execute(conn).await? > 0;
        if let (true, Subject::Target(target)) = (deleted, of) {
            spend_ledger::forget_reset(conn, access, target.scope, target.id).await?;
        }
        Ok::<_, AppError>(deleted)
    })
    .await
}

/// The budget that applies to a target: its own, else (customers and agents) the
/// organization's default; `true` when it is the target's own.
pub async fn in_force(conn: &mut DbConn, access: &OrgAccess, target: ScopeTarget) -> AppResult<Option<(Budget, bool)>> {
    let own = Subject::Target(target);
    if let Some(budget) = find(conn, access, own).await? {
        return Ok(Some((budget, true)));
    }
    match own.fallback() {
        Some(default) => Ok(find(conn, access, default).await?.map(|b| (b, false))),
        None => Ok(None),
    }
}

/// Each budget with its current spend (one ledger query for all of them).
pub async fn with_spend(
    conn: &mut DbConn,
    access: &OrgAccess,
    budgets: Vec<Budget>,
    now: DateTime<Utc>,
) -> AppResult<Vec<BudgetWithSpend>> {
    let scopes: Vec<(BudgetScope, Uuid, BudgetPeriod)> = budgets
        .iter()
        .filter_map(|b| b.scope_id.map(|id| (b.scope, id, b.period)))
        .collect();
    if scopes.len() != budgets.len() {
        return Err(AppError::internal(anyhow::anyhow!(
            "a default budget has no spend of its own"
        )));
    }
    let spends = spend_ledger::current(conn, access.org_id(), &scopes, now).await?;
    Ok(budgets
        .into_iter()
        .zip(spends)
        .map(|(budget, spend)| BudgetWithSpend { budget, spend })
        .collect())
}

/// Resets the spend of a target whose spend a budget (own or default) counts: what it
/// spent before now no longer counts. 404 when no budget applies.
pub async fn reset(
    conn: &mut DbConn,
    access: &OrgAccess,
    target: ScopeTarget,
    now: DateTime<Utc>,
) -> AppResult<BudgetWithSpend> {
    access.require(Access::Manage)?;
    let (budget, _) = in_force(conn, access, target)
        .await?
        .ok_or_else(|| AppError::not_found("budget"))?;
    spend_ledger::reset(conn, access, target.scope, target.id, now).await?;
    let spend = spend_ledger::current(conn, access.org_id(), &[(target.scope, target.id, budget.period)], now)
        .await?
        .pop()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("no spend for the reset budget")))?;
    Ok(BudgetWithSpend { budget, spend })
}
