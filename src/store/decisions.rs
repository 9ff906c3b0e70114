//! The authorize decision log: written in batches by `jobs::decision_log`, read newest
//! first by the tenant.

use chrono::{DateTime, Utc};
use diesel::{
    sql_types::{Array, BigInt, Bool, Int8, Jsonb, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid},
    QueryableByName,
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{access::OrgAccess, DbConn};
use crate::error::AppResult;

/// One decision as recorded; read back as the same shape.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct DecisionRow {
    #[diesel(sql_type = SqlUuid)]
    pub org_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    pub decided_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    pub request_id: Option<String>,
    #[diesel(sql_type = SqlUuid)]
    pub project_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub api_key_id: Uuid,
    #[diesel(sql_type = Nullable<Text>)]
    pub customer: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub agent: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub endpoint: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub provider: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub model: Option<String>,
    #[diesel(sql_type = Bool)]
    pub allowed: bool,
    #[diesel(sql_type = Text)]
    pub reason: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub scope: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub scope_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    pub limit_kind: Option<String>,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub limit_value: Option<Decimal>,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub counter_value: Option<Decimal>,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub reserved_value: Option<Decimal>,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub estimated_cost: Option<Decimal>,
    #[diesel(sql_type = Nullable<Int8>)]
    pub estimated_tokens: Option<i64>,
    #[diesel(sql_type = Jsonb)]
    pub scopes: serde_json::Value,
    #[diesel(sql_type = Bool)]
    pub sampled: bool,
}

const COLUMNS: &str = "org_id, id, decided_at, request_id, project_id, api_key_id, customer, agent, endpoint, \
    provider, model, allowed, reason, scope, scope_id, limit_kind, limit_value, counter_value, reserved_value, \
    estimated_cost, estimated_tokens, scopes, sampled";

/// Writes decisions of any organizations in one statement (they come from the
/// authorize check, which has already established each one's organization).
pub async fn insert(conn: &mut DbConn, rows: &[DecisionRow]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    fn col<T, F: Fn(&DecisionRow) -> T>(rows: &[DecisionRow], f: F) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    diesel::sql_query(format!(
        "INSERT INTO authorize_decisions ({COLUMNS}) SELECT * FROM unnest(\
         $1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::uuid[], $6::uuid[], $7::text[], $8::text[], \
         $9::text[], $10::text[], $11::text[], $12::bool[], $13::text[], $14::text[], $15::uuid[], $16::text[], \
         $17::numeric[], $18::numeric[], $19::numeric[], $20::numeric[], $21::int8[], $22::jsonb[], $23::bool[])"
    ))
    .bind::<Array<SqlUuid>, _>(col(rows, |r| r.org_id))
    .bind::<Array<SqlUuid>, _>(col(rows, |r| r.id))
    .bind::<Array<Timestamptz>, _>(col(rows, |r| r.decided_at))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.request_id.clone()))
    .bind::<Array<SqlUuid>, _>(col(rows, |r| r.project_id))
    .bind::<Array<SqlUuid>, _>(col(rows, |r| r.api_key_id))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.customer.clone()))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.agent.clone()))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.endpoint.clone()))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.provider.clone()))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.model.clone()))
    .bind::<Array<Bool>, _>(col(rows, |r| r.allowed))
    .bind::<Array<Text>, _>(col(rows, |r| r.reason.clone()))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.scope.clone()))
    .bind::<Array<Nullable<SqlUuid>>, _>(col(rows, |r| r.scope_id))
    .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.limit_kind.clone()))
    .bind::<Array<Nullable<Numeric>>, _>(col(rows, |r| r.limit_value))
    .bind::<Array<Nullable<Numeric>>, _>(col(rows, |r| r.counter_value))
    .bind::<Array<Nullable<Numeric>>, _>(col(rows, |r| r.reserved_value))
    .bind::<Array<Nullable<Numeric>>, _>(col(rows, |r| r.estimated_cost))
    .bind::<Array<Nullable<Int8>>, _>(col(rows, |r| r.estimated_tokens))
    .bind::<Array<Jsonb>, _>(col(rows, |r| r.scopes.clone()))
    .bind::<Array<Bool>, _>(col(rows, |r| r.sampled))
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Default, Clone)]
pub struct DecisionFilter {
    pub customer: Option<String>,
    pub agent: Option<String>,
    pub allowed: Option<bool>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Where a page starts: strictly older than this decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub decided_at: DateTime<Utc>,
    pub id: Uuid,
}

/// A page of the organization's decisions, newest first, and where the next starts.
pub async fn page(
    conn: &mut DbConn,
    access: &OrgAccess,
    filter: &DecisionFilter,
    after: Option<Cursor>,
    limit: i64,
) -> AppResult<(Vec<DecisionRow>, Option<Cursor>)> {
    // Fixed placeholders with NULL meaning "no filter": one statement shape to plan.
    let rows: Vec<DecisionRow> = diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM authorize_decisions WHERE org_id = $1 \
         AND ($2::text IS NULL OR customer = $2) AND ($3::text IS NULL OR agent = $3) \
         AND ($4::bool IS NULL OR allowed = $4) \
         AND ($5::timestamptz IS NULL OR decided_at >= $5) AND ($6::timestamptz IS NULL OR decided_at <= $6) \
         AND ($7::timestamptz IS NULL OR (decided_at, id) < ($7, $8)) \
         ORDER BY decided_at DESC, id DESC LIMIT $9"
    ))
    .bind::<SqlUuid, _>(access.org_id())
    .bind::<Nullable<Text>, _>(filter.customer.clone())
    .bind::<Nullable<Text>, _>(filter.agent.clone())
    .bind::<Nullable<Bool>, _>(filter.allowed)
    .bind::<Nullable<Timestamptz>, _>(filter.from)
    .bind::<Nullable<Timestamptz>, _>(filter.to)
    .bind::<Nullable<Timestamptz>, _>(after.map(|c| c.decided_at))
    .bind::<SqlUuid, _>(after.map(|c| c.id).unwrap_or_default())
    .bind::<BigInt, _>(limit + 1)
    .load(conn)
    .await?;
    Ok(super::split_page(rows, limit, |r| Cursor {
        decided_at: r.decided_at,
        id: r.id,
    }))
}
