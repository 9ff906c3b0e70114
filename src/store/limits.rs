//! What the authorize check needs from PostgreSQL, in bulk: the budgets, rate limits
//! and blocks that apply to one call's scopes (one round trip), and the counter values
//! of an organization rebuilt from the spend ledger.
//!
//! Called by the gateway path, not by a person: the caller has already established the
//! organization from the API key, so these take the organization id, not an
//! `OrgAccess`.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::{
    sql_types::{Array, Bool, Date, Int4, Int8, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid},
    QueryableByName,
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::DbConn;
use crate::{
    domain::{
        budget::{counted, BudgetScope, SpendReset},
        period::{BudgetPeriod, Window},
    },
    error::{AppError, AppResult},
};

/// The scopes of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallScopes {
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub api_key_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
}

impl CallScopes {
    /// In the order the check reports them: organization, project, key, customer, agent.
    pub fn scopes(&self) -> Vec<(BudgetScope, Uuid)> {
        [
            Some((BudgetScope::Organization, self.org_id)),
            Some((BudgetScope::Project, self.project_id)),
            Some((BudgetScope::ApiKey, self.api_key_id)),
            self.customer_id.map(|id| (BudgetScope::Customer, id)),
            self.agent_id.map(|id| (BudgetScope::Agent, id)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRule {
    pub id: Uuid,
    pub amount: Decimal,
    pub period: BudgetPeriod,
    pub hard_limit: bool,
    pub thresholds: Vec<i32>,
    /// The organization's default for customers or agents, not the scope's own.
    pub is_default: bool,
}

/// What limits one scope of a call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeRules {
    pub budget: Option<BudgetRule>,
    pub requests_per_minute: Option<i64>,
    pub tokens_per_minute: Option<i64>,
    pub blocked: bool,
}

#[derive(QueryableByName)]
struct RuleRow {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    scope_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    budget_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Numeric>)]
    amount: Option<Decimal>,
    #[diesel(sql_type = Nullable<Text>)]
    period: Option<String>,
    #[diesel(sql_type = Nullable<Bool>)]
    hard_limit: Option<bool>,
    #[diesel(sql_type = Nullable<Array<Int4>>)]
    thresholds: Option<Vec<i32>>,
    #[diesel(sql_type = Nullable<Int8>)]
    requests_per_minute: Option<i64>,
    #[diesel(sql_type = Nullable<Int8>)]
    tokens_per_minute: Option<i64>,
}

/// The rules of every scope of a call, in [`CallScopes::scopes`] order. A customer or
/// agent without a budget or rate limit of its own gets the organization's default.
pub async fn for_call(conn: &mut DbConn, call: &CallScopes) -> AppResult<Vec<(BudgetScope, Uuid, ScopeRules)>> {
    rules_for_scopes(conn, call.org_id, &call.scopes()).await
}

/// The rules of each of `scopes` (of one organization), in their order.
pub async fn rules_for_scopes(
    conn: &mut DbConn,
    org_id: Uuid,
    scopes: &[(BudgetScope, Uuid)],
) -> AppResult<Vec<(BudgetScope, Uuid, ScopeRules)>> {
    let ids: Vec<Uuid> = scopes.iter().map(|(_, id)| *id).collect();
    let rows: Vec<RuleRow> = diesel::sql_query(
        "SELECT 'budget' AS kind, scope, scope_id, id AS budget_id, amount, period, hard_limit, thresholds, \
                NULL::int8 AS requests_per_minute, NULL::int8 AS tokens_per_minute \
           FROM budgets WHERE org_id = $1 AND (scope_id = ANY($2) OR scope_id IS NULL) \
         UNION ALL \
         SELECT 'rate', scope, scope_id, NULL, NULL, NULL, NULL, NULL, requests_per_minute::int8, tokens_per_minute \
           FROM rate_limits WHERE org_id = $1 AND (scope_id = ANY($2) OR scope_id IS NULL) \
         UNION ALL \
         SELECT 'blocked', 'customer', id, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
           FROM customers WHERE org_id = $1 AND id = ANY($2) AND blocked_at IS NOT NULL \
         UNION ALL \
         SELECT 'blocked', 'agent', id, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
           FROM agents WHERE org_id = $1 AND id = ANY($2) AND blocked_at IS NOT NULL",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Array<SqlUuid>, _>(&ids)
    .load(conn)
    .await?;
    let mut out: Vec<(BudgetScope, Uuid, ScopeRules)> = scopes
        .iter()
        .map(|(scope, id)| (*scope, *id, ScopeRules::default()))
        .collect();
    // Own rules first, so a default never overrides them.
    let (own, defaults): (Vec<&RuleRow>, Vec<&RuleRow>) = rows.iter().partition(|r| r.scope_id.is_some());
    for row in own.into_iter().chain(defaults) {
        let scope: BudgetScope = row
            .scope
            .parse()
            .map_err(|_| AppError::internal(anyhow::anyhow!("unknown scope {} in the database", row.scope)))?;
        let budget = match (
            row.kind.as_str(),
            row.budget_id,
            row.amount,
            row.period.as_deref(),
            row.hard_limit,
        ) {
            ("budget", Some(id), Some(amount), Some(period), Some(hard_limit)) => Some(BudgetRule {
                id,
                amount,
                period: period
                    .parse()
                    .map_err(|_| AppError::internal(anyhow::anyhow!("unknown period {period}")))?,
                hard_limit,
                thresholds: row.thresholds.clone().unwrap_or_default(),
                is_default: row.scope_id.is_none(),
            }),
            _ => None,
        };
        // A scope's own row applies to it; a default row to every scope of its kind
        // that has no row of its own (own rows came first).
        let targets = out
            .iter_mut()
            .filter(|(s, id, _)| *s == scope && row.scope_id.is_none_or(|r| r == *id));
        for (_, _, rules) in targets {
            match row.kind.as_str() {
                "budget" if rules.budget.is_none() => rules.budget = budget.clone(),
                "rate" if rules.requests_per_minute.is_none() && rules.tokens_per_minute.is_none() => {
                    rules.requests_per_minute = row.requests_per_minute;
                    rules.tokens_per_minute = row.tokens_per_minute;
                }
                "blocked" => rules.blocked = true,
                _ => {}
            }
        }
    }
    Ok(out)
}

#[derive(QueryableByName)]
struct DayRow {
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = SqlUuid)]
    scope_id: Uuid,
    /// NULL: the sum of every day before the earliest window read day by day.
    #[diesel(sql_type = Nullable<Date>)]
    day: Option<NaiveDate>,
    #[diesel(sql_type = Int8)]
    micros: i64,
}

#[derive(QueryableByName)]
struct ResetRow {
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = SqlUuid)]
    scope_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    reset_at: DateTime<Utc>,
    #[diesel(sql_type = Numeric)]
    day_cost: Decimal,
    #[diesel(sql_type = Int8)]
    day_micros: i64,
}

/// What counts now, per scope of the organization, towards each period (in
/// [`BudgetPeriod`] order: daily, weekly, monthly, total), in micro-dollars, resets
/// applied: the values the Redis spend counters are rebuilt to.
pub async fn ledger_counters(
    conn: &mut DbConn,
    org_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<Vec<(BudgetScope, Uuid, [i64; 4])>> {
    let periods = [
        BudgetPeriod::Daily,
        BudgetPeriod::Weekly,
        BudgetPeriod::Monthly,
        BudgetPeriod::Total,
    ];
    let windows = periods.map(|p| p.window(now));
    let resets: Vec<ResetRow> =
        diesel::sql_query("SELECT scope, scope_id, reset_at, day_cost, day_micros FROM spend_resets WHERE org_id = $1")
            .bind::<SqlUuid, _>(org_id)
            .load(conn)
            .await?;
    // Days from the earliest start any window or reset can give come one by one;
    // older days only matter to `total` without a reset, as one sum per scope.
    let split = windows[..3]
        .iter()
        .map(|w| w.first_day())
        .chain(resets.iter().map(|r| r.reset_at.date_naive()))
        .min()
        .unwrap_or_else(|| now.date_naive());
    let days: Vec<DayRow> = diesel::sql_query(
        "SELECT scope, scope_id, CASE WHEN day >= $2 THEN day END AS day, sum(cost_micros)::int8 AS micros \
           FROM spend_ledger WHERE org_id = $1 \
          GROUP BY scope, scope_id, CASE WHEN day >= $2 THEN day END",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Date, _>(split)
    .load(conn)
    .await?;
    let mut out: std::collections::BTreeMap<(String, Uuid), [i64; 4]> = std::collections::BTreeMap::new();
    for row in &days {
        let reset = resets
            .iter()
            .find(|r| r.scope == row.scope && r.scope_id == row.scope_id)
            .map(|r| SpendReset {
                at: r.reset_at,
                day_cost: r.day_cost,
                day_micros: r.day_micros,
            });
        let values = out.entry((row.scope.clone(), row.scope_id)).or_insert([0; 4]);
        for (value, window) in values.iter_mut().zip(&windows) {
            let rule = counted(window, reset.as_ref());
            // An older-days sum counts only towards a window that starts before them.
            let counts = match row.day {
                Some(day) => day >= rule.first_day,
                None => rule.first_day < split,
            };
            if counts {
                *value += row.micros;
            }
        }
    }
    // What was spent on a reset's day before the reset comes off once per window.
    for reset in &resets {
        if let Some(values) = out.get_mut(&(reset.scope.clone(), reset.scope_id)) {
            for (value, window) in values.iter_mut().zip(&windows) {
                let rule = counted(
                    window,
                    Some(&SpendReset {
                        at: reset.reset_at,
                        day_cost: reset.day_cost,
                        day_micros: reset.day_micros,
                    }),
                );
                *value = (*value - rule.minus_micros).max(0);
            }
        }
    }
    out.into_iter()
        .map(|((scope, id), values)| {
            let scope = scope
                .parse()
                .map_err(|_| AppError::internal(anyhow::anyhow!("unknown scope {scope} in the ledger")))?;
            Ok((scope, id, values))
        })
        .collect()
}

#[derive(QueryableByName)]
struct CostDayRow {
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = SqlUuid)]
    scope_id: Uuid,
    #[diesel(sql_type = Date)]
    day: NaiveDate,
    #[diesel(sql_type = Numeric)]
    cost: Decimal,
}

/// The exact spend (USD) that counts towards each `(scope, id, window)` now, resets
/// applied, from the ledger: what alerts report and compare with thresholds.
pub async fn window_spend(
    conn: &mut DbConn,
    org_id: Uuid,
    targets: &[(BudgetScope, Uuid, Window)],
) -> AppResult<Vec<Decimal>> {
    if targets.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<Uuid> = targets.iter().map(|(_, id, _)| *id).collect();
    let resets: Vec<ResetRow> = diesel::sql_query(
        "SELECT scope, scope_id, reset_at, day_cost, day_micros FROM spend_resets WHERE org_id = $1 AND scope_id = ANY($2)",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Array<SqlUuid>, _>(&ids)
    .load(conn)
    .await?;
    let reset_of = |scope: BudgetScope, id: Uuid| {
        resets
            .iter()
            .find(|r| r.scope == scope.as_str() && r.scope_id == id)
            .map(|r| SpendReset {
                at: r.reset_at,
                day_cost: r.day_cost,
                day_micros: r.day_micros,
            })
    };
    let rules: Vec<_> = targets
        .iter()
        .map(|(scope, id, window)| counted(window, reset_of(*scope, *id).as_ref()))
        .collect();
    let since = rules.iter().map(|r| r.first_day).min().unwrap_or(NaiveDate::MIN);
    let days: Vec<CostDayRow> = diesel::sql_query(
        "SELECT scope, scope_id, day, sum(cost) AS cost FROM spend_ledger \
          WHERE org_id = $1 AND scope_id = ANY($2) AND day >= $3 GROUP BY scope, scope_id, day",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Date, _>(since)
    .load(conn)
    .await?;
    Ok(targets
        .iter()
        .zip(&rules)
        .map(|((scope, id, window), rule)| {
            let sum: Decimal = days
                .iter()
                .filter(|d| d.scope == scope.as_str() && d.scope_id == *id && d.day >= rule.first_day)
                .filter(|d| window.end.is_none_or(|end| d.day < end.date_naive()))
                .map(|d| d.cost)
                .sum();
            (sum - rule.minus_cost).max(Decimal::ZERO)
        })
        .collect())
}

#[derive(QueryableByName)]
struct LabelRow {
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    label: String,
}

/// How the tenant knows each scope: the customer or agent id it sends, or the
/// project's or key's name.
pub async fn scope_labels(
    conn: &mut DbConn,
    org_id: Uuid,
    ids: &[Uuid],
) -> AppResult<std::collections::HashMap<(BudgetScope, Uuid), String>> {
    let rows: Vec<LabelRow> = diesel::sql_query(
        "SELECT 'customer' AS scope, id, external_id AS label FROM customers WHERE org_id = $1 AND id = ANY($2) \
         UNION ALL SELECT 'agent', id, external_id FROM agents WHERE org_id = $1 AND id = ANY($2) \
         UNION ALL SELECT 'project', id, name FROM projects WHERE org_id = $1 AND id = ANY($2) \
         UNION ALL SELECT 'apiKey', id, name FROM api_keys WHERE org_id = $1 AND id = ANY($2) \
         UNION ALL SELECT 'organization', id, name FROM organizations WHERE id = $1 AND id = ANY($2)",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.scope.parse().ok().map(|scope| ((scope, r.id), r.label)))
        .collect())
}

/// When each of `ids`' spend was last reset, if ever.
pub async fn reset_times(
    conn: &mut DbConn,
    org_id: Uuid,
    ids: &[Uuid],
) -> AppResult<std::collections::HashMap<(BudgetScope, Uuid), DateTime<Utc>>> {
    let rows: Vec<ResetRow> = diesel::sql_query(
        "SELECT scope, scope_id, reset_at, day_cost, day_micros FROM spend_resets WHERE org_id = $1 AND scope_id = ANY($2)",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.scope.parse().ok().map(|scope| ((scope, r.scope_id), r.reset_at)))
        .collect())
}
