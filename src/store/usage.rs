//! Writing usage: idempotency keys, raw events and daily roll-ups, in bulk.
//!
//! Batches are written column-wise with `INSERT … SELECT FROM unnest($arrays)`: one
//! statement and a fixed number of bind parameters however many events a batch has.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use diesel::{
    prelude::*,
    sql_types::{Array, Bool, Int4, Int8, Jsonb, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    schema::{organizations, projects, usage_request_ids},
    DbConn,
};
use crate::{
    domain::{identity::KeyIdentity, project_mode::ProjectMode, rollup::BUCKET_COUNT},
    error::{AppError, AppResult},
};

/// What the ingest path needs to know about the key's project and organization.
pub async fn ingest_context(conn: &mut DbConn, key: &KeyIdentity) -> AppResult<(ProjectMode, i32)> {
    projects::table
        .inner_join(organizations::table)
        .filter(projects::id.eq(key.project_id))
        .filter(projects::org_id.eq(key.org_id))
        .select((projects::mode, organizations::retention_days))
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("project"))
}

#[derive(Debug, Clone, Copy)]
pub enum ExternalKind {
    Customer,
    Agent,
}

impl ExternalKind {
    fn table(self) -> &'static str {
        match self {
            Self::Customer => "customers",
            Self::Agent => "agents",
        }
    }
}

#[derive(QueryableByName)]
struct ExternalRow {
    #[diesel(sql_type = Text)]
    external_id: String,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Ids of these customers (or agents), creating the ones seen for the first time.
pub async fn resolve_external_ids(
    conn: &mut DbConn,
    kind: ExternalKind,
    org_id: Uuid,
    names: &[String],
) -> AppResult<HashMap<String, Uuid>> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let table = kind.table();
    let ids: Vec<Uuid> = names.iter().map(|_| Uuid::now_v7()).collect();
    diesel::sql_query(format!(
        "INSERT INTO {table} (id, org_id, external_id) SELECT t.id, $1, t.name FROM unnest($2::uuid[], $3::text[]) AS t(id, name) \
         ON CONFLICT (org_id, external_id) DO NOTHING"
    ))
    .bind::<SqlUuid, _>(org_id)
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<Text>, _>(names)
    .execute(conn)
    .await?;
    let rows: Vec<ExternalRow> = diesel::sql_query(format!(
        "SELECT external_id, id FROM {table} WHERE org_id = $1 AND external_id = ANY($2)"
    ))
    .bind::<SqlUuid, _>(org_id)
    .bind::<Array<Text>, _>(names)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.external_id, r.id)).collect())
}

/// Claims request ids for new events. Returns the ids that were free (and are now
/// taken); the others belong to events recorded before. A concurrent claim of the same
/// id waits for the first transaction and then sees the conflict.
pub async fn claim_request_ids(
    conn: &mut DbConn,
    org_id: Uuid,
    claims: &[(String, Uuid, DateTime<Utc>)],
) -> AppResult<HashSet<String>> {
    #[derive(QueryableByName)]
    struct Claimed {
        #[diesel(sql_type = Text)]
        request_id: String,
    }
    let request_ids: Vec<&str> = claims.iter().map(|c| c.0.as_str()).collect();
    let event_ids: Vec<Uuid> = claims.iter().map(|c| c.1).collect();
    let occurred: Vec<DateTime<Utc>> = claims.iter().map(|c| c.2).collect();
    let claimed: Vec<Claimed> = diesel::sql_query(
        "INSERT INTO usage_request_ids (org_id, request_id, event_id, occurred_at) \
         SELECT $1, t.* FROM unnest($2::text[], $3::uuid[], $4::timestamptz[]) AS t \
         ON CONFLICT DO NOTHING RETURNING request_id",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Array<Text>, _>(&request_ids)
    .bind::<Array<SqlUuid>, _>(&event_ids)
    .bind::<Array<Timestamptz>, _>(&occurred)
    .load(conn)
    .await?;
    Ok(claimed.into_iter().map(|c| c.request_id).collect())
}

/// The events already recorded under these request ids.
pub async fn recorded_event_ids(
    conn: &mut DbConn,
    org_id: Uuid,
    request_ids: &[String],
) -> AppResult<HashMap<String, Uuid>> {
    if request_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, Uuid)> = usage_request_ids::table
        .filter(usage_request_ids::org_id.eq(org_id))
        .filter(usage_request_ids::request_id.eq_any(request_ids))
        .select((usage_request_ids::request_id, usage_request_ids::event_id))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// One event, flattened for storage.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub request_id: String,
    pub customer_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub endpoint: String,
    pub provider: String,
    pub model: String,
    pub status: &'static str,
    pub error_code: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub images: i32,
    pub latency_ms: Option<i32>,
    pub ttft_ms: Option<i32>,
    pub cache_hit: bool,
    pub retries: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub metadata: Option<serde_json::Value>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
    pub bodies_truncated: bool,
    pub billing_source: &'static str,
    pub unpriced: bool,
    pub price_id: Option<Uuid>,
    pub input_cost: Decimal,
    pub output_cost: Decimal,
    pub cached_input_cost: Decimal,
    pub request_cost: Decimal,
    pub image_cost: Decimal,
    pub data_storage_cost: Decimal,
    pub cost_before_discount: Decimal,
    pub discount_id: Option<Uuid>,
    pub discount_percent: Decimal,
    pub discount_savings: Decimal,
    pub cost: Decimal,
}

/// Collects one column of `rows` into a bind parameter.
macro_rules! bind_columns {
    ($query:expr, $rows:expr, $($field:ident: $sql:ty),+ $(,)?) => {{
        let mut query = $query;
        $(
            let column: Vec<_> = $rows.iter().map(|r| r.$field.clone()).collect();
            query = query.bind::<$sql, _>(column);
        )+
        query
    }};
}

pub async fn insert_events(conn: &mut DbConn, key: &KeyIdentity, rows: &[EventRow]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let query = diesel::sql_query(
        "INSERT INTO usage_events (org_id, project_id, api_key_id, id, occurred_at, request_id, customer_id, agent_id, \
         endpoint, provider, model, status, error_code, prompt_tokens, completion_tokens, cached_tokens, images, \
         latency_ms, ttft_ms, cache_hit, retries, started_at, ended_at, metadata, request_body, response_body, \
         bodies_truncated, billing_source, unpriced, price_id, input_cost, output_cost, cached_input_cost, \
         request_cost, image_cost, data_storage_cost, cost_before_discount, discount_id, discount_percent, \
         discount_savings, cost) \
         SELECT $1, $2, $3, t.* FROM unnest($4::uuid[], $5::timestamptz[], $6::text[], $7::uuid[], $8::uuid[], \
         $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int8[], $15::int8[], $16::int8[], \
         $17::int4[], $18::int4[], $19::int4[], $20::bool[], $21::int4[], $22::timestamptz[], $23::timestamptz[], \
         $24::jsonb[], $25::text[], $26::text[], $27::bool[], $28::text[], $29::bool[], $30::uuid[], \
         $31::numeric[], $32::numeric[], $33::numeric[], $34::numeric[], $35::numeric[], $36::numeric[], \
         $37::numeric[], $38::uuid[], $39::numeric[], $40::numeric[], $41::numeric[]) AS t",
    )
    .into_boxed()
    .bind::<SqlUuid, _>(key.org_id)
    .bind::<SqlUuid, _>(key.project_id)
    .bind::<SqlUuid, _>(key.key_id);
    let query = bind_columns!(query, rows,
        id: Array<SqlUuid>,
        occurred_at: Array<Timestamptz>,
        request_id: Array<Text>,
        customer_id: Array<Nullable<SqlUuid>>,
        agent_id: Array<Nullable<SqlUuid>>,
        endpoint: Array<Text>,
        provider: Array<Text>,
        model: Array<Text>,
        status: Array<Text>,
        error_code: Array<Nullable<Text>>,
        prompt_tokens: Array<Int8>,
        completion_tokens: Array<Int8>,
        cached_tokens: Array<Int8>,
        images: Array<Int4>,
        latency_ms: Array<Nullable<Int4>>,
        ttft_ms: Array<Nullable<Int4>>,
        cache_hit: Array<Bool>,
        retries: Array<Int4>,
        started_at: Array<Nullable<Timestamptz>>,
        ended_at: Array<Nullable<Timestamptz>>,
        metadata: Array<Nullable<Jsonb>>,
        request_body: Array<Nullable<Text>>,
        response_body: Array<Nullable<Text>>,
        bodies_truncated: Array<Bool>,
        billing_source: Array<Text>,
        unpriced: Array<Bool>,
        price_id: Array<Nullable<SqlUuid>>,
        input_cost: Array<Numeric>,
        output_cost: Array<Numeric>,
        cached_input_cost: Array<Numeric>,
        request_cost: Array<Numeric>,
        image_cost: Array<Numeric>,
        data_storage_cost: Array<Numeric>,
        cost_before_discount: Array<Numeric>,
        discount_id: Array<Nullable<SqlUuid>>,
        discount_percent: Array<Numeric>,
        discount_savings: Array<Numeric>,
        cost: Array<Numeric>,
    );
    query.execute(conn).await?;
    Ok(())
}

/// One row of `usage_daily`: the grain and the sums added to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RollupRow {
    pub day: NaiveDate,
    pub project_id: Uuid,
    pub api_key_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub endpoint: String,
    pub provider: String,
    pub model: String,
    pub requests: i64,
    pub errors: i64,
    pub cache_hits: i64,
    pub unpriced: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub images: i64,
    pub input_cost: Decimal,
    pub output_cost: Decimal,
    pub cached_input_cost: Decimal,
    pub request_cost: Decimal,
    pub image_cost: Decimal,
    pub data_storage_cost: Decimal,
    pub cost_before_discount: Decimal,
    pub discount_savings: Decimal,
    pub cost: Decimal,
    pub credits_cost: Decimal,
    pub api_keys_cost: Decimal,
    pub latency_ms_sum: i64,
    pub latency_count: i64,
    /// Counts per latency bucket (`domain::rollup`), stored as `latency_b00..b16`.
    pub latency_buckets: [i64; BUCKET_COUNT],
    pub shard: i16,
}

/// The summed columns of `usage_daily`, in the order `upsert_rollups` binds them.
const SUMMED: [&str; 21] = [
    "requests",
    "errors",
    "cache_hits",
    "unpriced",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "images",
    "input_cost",
    "output_cost",
    "cached_input_cost",
    "request_cost",
    "image_cost",
    "data_storage_cost",
    "cost_before_discount",
    "discount_savings",
    "cost",
    "credits_cost",
    "api_keys_cost",
    "latency_ms_sum",
    "latency_count",
];

/// Money columns are `numeric`; every other summed column is `int8`.
fn is_money(column: &str) -> bool {
    column.ends_with("cost") || column == "discount_savings"
}

/// Adds `rows` to the roll-ups. Rows must come sorted by grain so concurrent batches
/// that share a shard lock rows in the same order (no deadlocks).
pub async fn upsert_rollups(conn: &mut DbConn, org_id: Uuid, rows: &[RollupRow]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let buckets: Vec<String> = (0..BUCKET_COUNT).map(|i| format!("latency_b{i:02}")).collect();
    let summed: Vec<&str> = SUMMED
        .iter()
        .copied()
        .chain(buckets.iter().map(String::as_str))
        .collect();
    // $1 is the organization; the grain columns, then the summed ones, follow as arrays.
    let grain = [
        ("day", "date"),
        ("project_id", "uuid"),
        ("api_key_id", "uuid"),
        ("customer_id", "uuid"),
        ("agent_id", "uuid"),
        ("endpoint", "text"),
        ("provider", "text"),
        ("model", "text"),
        ("shard", "int2"),
    ];
    let columns: Vec<&str> = grain.iter().map(|(c, _)| *c).chain(summed.iter().copied()).collect();
    let types: Vec<&str> = grain
        .iter()
        .map(|(_, t)| *t)
        .chain(summed.iter().map(|c| if is_money(c) { "numeric" } else { "int8" }))
        .collect();
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 2))
        .collect();
    let updates: Vec<String> = summed.iter().map(|c| format!("{c} = d.{c} + EXCLUDED.{c}")).collect();
    let sql = format!(
        "INSERT INTO usage_daily AS d (org_id, {cols}) SELECT $1, {cols} FROM unnest({arrays}) \
         WITH ORDINALITY AS t({cols}, ord) ORDER BY ord \
         ON CONFLICT ON CONSTRAINT usage_daily_grain DO UPDATE SET {updates}",
        cols = columns.join(", "),
        arrays = arrays.join(", "),
        updates = updates.join(", "),
    );
    let query = diesel::sql_query(sql).into_boxed().bind::<SqlUuid, _>(org_id);
    let mut query = bind_columns!(query, rows,
        day: Array<diesel::sql_types::Date>,
        project_id: Array<SqlUuid>,
        api_key_id: Array<SqlUuid>,
        customer_id: Array<Nullable<SqlUuid>>,
        agent_id: Array<Nullable<SqlUuid>>,
        endpoint: Array<Text>,
        provider: Array<Text>,
        model: Array<Text>,
        shard: Array<diesel::sql_types::Int2>,
        requests: Array<Int8>,
        errors: Array<Int8>,
        cache_hits: Array<Int8>,
        unpriced: Array<Int8>,
        prompt_tokens: Array<Int8>,
        completion_tokens: Array<Int8>,
        cached_tokens: Array<Int8>,
        images: Array<Int8>,
        input_cost: Array<Numeric>,
        output_cost: Array<Numeric>,
        cached_input_cost: Array<Numeric>,
        request_cost: Array<Numeric>,
        image_cost: Array<Numeric>,
        data_storage_cost: Array<Numeric>,
        cost_before_discount: Array<Numeric>,
        discount_savings: Array<Numeric>,
        cost: Array<Numeric>,
        credits_cost: Array<Numeric>,
        api_keys_cost: Array<Numeric>,
        latency_ms_sum: Array<Int8>,
        latency_count: Array<Int8>,
    );
    for i in 0..BUCKET_COUNT {
        let column: Vec<i64> = rows.iter().map(|r| r.latency_buckets[i]).collect();
        query = query.bind::<Array<Int8>, _>(column);
    }
    query.execute(conn).await?;
    Ok(())
}
