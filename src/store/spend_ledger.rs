//! The spend ledger: per scope, UTC day and shard, what accepted events cost. Written
//! in the ingest transaction; budgets and listings read their spend from it.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::{
    prelude::*,
    sql_types::{Array, Date, Int2, Int8, Numeric, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{access::OrgAccess, prepared::Prepared, schema::spend_resets, DbConn};
use crate::{
    domain::{
        budget::{self, BudgetScope, Counted, SpendReset},
        period::{BudgetPeriod, Window},
        role::Access,
    },
    error::AppResult,
};

/// What a set of events added to one scope on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendDelta {
    pub scope: BudgetScope,
    pub scope_id: Uuid,
    pub day: NaiveDate,
    pub cost: Decimal,
    /// The sum of each event's cost in micro-dollars, rounded up per event.
    pub cost_micros: i64,
    pub requests: i64,
    /// Prompt + completion tokens.
    pub tokens: i64,
}

/// Adds `rows` to the ledger in shard `shard`. Rows must come sorted by
/// (scope, scope_id, day), so concurrent batches sharing a shard lock rows in the same
/// order (no deadlocks); the ingest transaction writes them after the roll-ups, always.
pub async fn add(mut conn: &DbConn, org_id: Uuid, shard: i16, rows: &[SpendDelta]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let scopes: Vec<&str> = rows.iter().map(|r| r.scope.as_str()).collect();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.scope_id).collect();
    let days: Vec<NaiveDate> = rows.iter().map(|r| r.day).collect();
    let costs: Vec<Decimal> = rows.iter().map(|r| r.cost).collect();
    let micros: Vec<i64> = rows.iter().map(|r| r.cost_micros).collect();
    let requests: Vec<i64> = rows.iter().map(|r| r.requests).collect();
    let tokens: Vec<i64> = rows.iter().map(|r| r.tokens).collect();
    Prepared::new(
        "INSERT INTO spend_ledger AS l (org_id, shard, scope, scope_id, day, cost, cost_micros, requests, tokens) \
         SELECT $1, $2, t.scope, t.scope_id, t.day, t.cost, t.cost_micros, t.requests, t.tokens \
         FROM unnest($3::text[], $4::uuid[], $5::date[], $6::numeric[], $7::int8[], $8::int8[], $9::int8[]) \
         WITH ORDINALITY AS t(scope, scope_id, day, cost, cost_micros, requests, tokens, ord) ORDER BY t.ord \
         ON CONFLICT (org_id, scope, scope_id, day, shard) DO UPDATE SET cost = l.cost + EXCLUDED.cost, \
         cost_micros = l.cost_micros + EXCLUDED.cost_micros, requests = l.requests + EXCLUDED.requests, \
         tokens = l.tokens + EXCLUDED.tokens",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Int2, _>(shard)
    .bind::<Array<Text>, _>(scopes)
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Date>, _>(days)
    .bind::<Array<Numeric>, _>(costs)
    .bind::<Array<Int8>, _>(micros)
    .bind::<Array<Int8>, _>(requests)
    .bind::<Array<Int8>, _>(tokens)
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// What counts towards a scope's budget right now: the ledger days of the current
/// window of `period` from the later of its start and the scope's last reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentSpend {
    pub window: Window,
    /// The last reset, when it falls inside the window.
    pub reset_at: Option<DateTime<Utc>>,
    pub cost: Decimal,
    pub cost_micros: i64,
}

/// The current spend of each `(scope, id, period)`, in order, in one query.
pub async fn current(
    conn: &mut DbConn,
    org_id: Uuid,
    scopes: &[(BudgetScope, Uuid, BudgetPeriod)],
    now: DateTime<Utc>,
) -> AppResult<Vec<CurrentSpend>> {
    if scopes.is_empty() {
        return Ok(Vec::new());
    }
    let targets: Vec<(BudgetScope, Uuid)> = scopes.iter().map(|(s, id, _)| (*s, *id)).collect();
    let resets = resets(conn, org_id, &targets).await?;
    let counted: Vec<(Window, Option<&SpendReset>, Counted)> = scopes
        .iter()
        .map(|(scope, id, period)| {
            let window = period.window(now);
            let reset = resets.get(&(*scope, *id));
            (window, reset, budget::counted(&window, reset))
        })
        .collect();

    #[derive(QueryableByName)]
    struct Sum {
        #[diesel(sql_type = Int8)]
        i: i64,
        #[diesel(sql_type = Numeric)]
        cost: Decimal,
        #[diesel(sql_type = Int8)]
        micros: i64,
    }
    let scope_names: Vec<&str> = scopes.iter().map(|(s, _, _)| s.as_str()).collect();
    let ids: Vec<Uuid> = scopes.iter().map(|(_, id, _)| *id).collect();
    let first_days: Vec<NaiveDate> = counted.iter().map(|(_, _, c)| c.first_day).collect();
    let sums: Vec<Sum> = diesel::sql_query(
        "SELECT t.i, coalesce(sum(l.cost), 0) AS cost, coalesce(sum(l.cost_micros), 0)::int8 AS micros \
         FROM unnest($2::text[], $3::uuid[], $4::date[]) WITH ORDINALITY AS t(scope, scope_id, first_day, i) \
         LEFT JOIN spend_ledger l ON l.org_id = $1 AND l.scope = t.scope AND l.scope_id = t.scope_id \
         AND l.day >= t.first_day GROUP BY t.i ORDER BY t.i",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Array<Text>, _>(scope_names)
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Date>, _>(first_days)
    .load(conn)
    .await?;
    let mut by_index: HashMap<i64, Sum> = sums.into_iter().map(|s| (s.i, s)).collect();
    Ok(counted
        .into_iter()
        .enumerate()
        .map(|(i, (window, reset, counted))| {
            let sum = by_index.remove(&(i as i64 + 1));
            let (cost, micros) = sum.map_or((Decimal::ZERO, 0), |s| (s.cost, s.micros));
            CurrentSpend {
                window,
                reset_at: reset.map(|r| r.at).filter(|at| *at >= window.start),
                cost: (cost - counted.minus_cost).max(Decimal::ZERO),
                cost_micros: (micros - counted.minus_micros).max(0),
            }
        })
        .collect())
}

/// The latest reset of each target that has one.
pub async fn resets(
    conn: &mut DbConn,
    org_id: Uuid,
    targets: &[(BudgetScope, Uuid)],
) -> AppResult<HashMap<(BudgetScope, Uuid), SpendReset>> {
    let ids: Vec<Uuid> = targets.iter().map(|(_, id)| *id).collect();
    let rows: Vec<(BudgetScope, Uuid, DateTime<Utc>, Decimal, i64)> = spend_resets::table
        .filter(spend_resets::org_id.eq(org_id))
        .filter(spend_resets::scope_id.eq_any(ids))
        .select((
            spend_resets::scope,
            spend_resets::scope_id,
            spend_resets::reset_at,
            spend_resets::day_cost,
            spend_resets::day_micros,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|(scope, id, ..)| targets.contains(&(*scope, *id)))
        .map(|(scope, id, at, day_cost, day_micros)| {
            (
                (scope, id),
                SpendReset {
                    at,
                    day_cost,
                    day_micros,
                },
            )
        })
        .collect())
}

/// Resets a scope's spend at `now`: records what it spent so far on `now`'s UTC day,
/// which the budget then leaves out (`domain::budget::counted`). Replaces any earlier
/// reset of the scope.
pub async fn reset(
    conn: &mut DbConn,
    access: &OrgAccess,
    scope: BudgetScope,
    scope_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<SpendReset> {
    access.require(Access::Manage)?;
    #[derive(QueryableByName)]
    struct DaySum {
        #[diesel(sql_type = Numeric)]
        cost: Decimal,
        #[diesel(sql_type = Int8)]
        micros: i64,
    }
    let day = now.date_naive();
    // One statement: the day's sum and the reset row see the same snapshot.
    let sum: DaySum = diesel::sql_query(
        "INSERT INTO spend_resets AS r (org_id, scope, scope_id, reset_at, day, day_cost, day_micros, reset_by) \
         SELECT $1, $2, $3, $4, $5, coalesce(sum(cost), 0), coalesce(sum(cost_micros), 0), $6 FROM spend_ledger \
         WHERE org_id = $1 AND scope = $2 AND scope_id = $3 AND day = $5 \
         ON CONFLICT (org_id, scope, scope_id) DO UPDATE SET reset_at = EXCLUDED.reset_at, day = EXCLUDED.day, \
         day_cost = EXCLUDED.day_cost, day_micros = EXCLUDED.day_micros, reset_by = EXCLUDED.reset_by \
         RETURNING day_cost AS cost, day_micros AS micros",
    )
    .bind::<SqlUuid, _>(access.org_id())
    .bind::<Text, _>(scope.as_str())
    .bind::<SqlUuid, _>(scope_id)
    .bind::<Timestamptz, _>(now)
    .bind::<Date, _>(day)
    .bind::<SqlUuid, _>(access.user_id())
    .get_result(conn)
    .await?;
    Ok(SpendReset {
        at: now,
        day_cost: sum.cost,
        day_micros: sum.micros,
    })
}

/// Forgets a scope's reset (its budget was removed).
pub async fn forget_reset(conn: &mut DbConn, access: &OrgAccess, scope: BudgetScope, scope_id: Uuid) -> AppResult<()> {
    access.require(Access::Manage)?;
    diesel::delete(
        spend_resets::table
            .filter(spend_resets::org_id.eq(access.org_id()))
            .filter(spend_resets::scope.eq(scope))
            .filter(spend_resets::scope_id.eq(scope_id)),
    )
    .execute(conn)
    .await?;
    Ok(())
}
