//! The spend ledger: per scope, UTC day and shard, what accepted events cost. Written
//! in the ingest transaction; budgets and listings read their spend from it.

use chrono::NaiveDate;
use diesel::sql_types::{Array, Date, Int2, Int8, Numeric, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::DbConn;
use crate::{domain::budget::BudgetScope, error::AppResult};

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
pub async fn add(conn: &mut DbConn, org_id: Uuid, shard: i16, rows: &[SpendDelta]) -> AppResult<()> {
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
    diesel::sql_query(
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
    .execute(conn)
    .await?;
    Ok(())
}
