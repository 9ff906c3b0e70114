//! The request log of an organization, read from `usage_events`.

use chrono::{DateTime, Utc};
use diesel::{
    pg::Pg,
    sql_types::{BigInt, Bool, Int4, Int8, Jsonb, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid},
    QueryableByName,
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{access::OrgAccess, DbConn};
use crate::error::{AppError, AppResult};

/// Filters of the log; every one optional. Customer and agent are the tenant's own ids.
#[derive(Debug, Default, Clone)]
pub struct LogFilter {
    pub project_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    pub customer: Option<String>,
    pub agent: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub status: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Where a page starts: strictly older than this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub occurred_at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct LogEntry {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub request_id: String,
    #[diesel(sql_type = Timestamptz)]
    pub occurred_at: DateTime<Utc>,
    #[diesel(sql_type = SqlUuid)]
    pub project_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub api_key_id: Uuid,
    #[diesel(sql_type = Nullable<Text>)]
    pub customer: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub agent: Option<String>,
    #[diesel(sql_type = Text)]
    pub endpoint: String,
    #[diesel(sql_type = Text)]
    pub provider: String,
    #[diesel(sql_type = Text)]
    pub model: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub error_code: Option<String>,
    #[diesel(sql_type = Int8)]
    pub prompt_tokens: i64,
    #[diesel(sql_type = Int8)]
    pub completion_tokens: i64,
    #[diesel(sql_type = Int8)]
    pub cached_tokens: i64,
    #[diesel(sql_type = Nullable<Int4>)]
    pub latency_ms: Option<i32>,
    #[diesel(sql_type = Bool)]
    pub cache_hit: bool,
    #[diesel(sql_type = Text)]
    pub billing_source: String,
    #[diesel(sql_type = Bool)]
    pub unpriced: bool,
    #[diesel(sql_type = Numeric)]
    pub cost_before_discount: Decimal,
    #[diesel(sql_type = Numeric)]
    pub discount_savings: Decimal,
    #[diesel(sql_type = Numeric)]
    pub cost: Decimal,
}

/// Everything recorded about one call.
#[derive(Debug, Clone, QueryableByName)]
pub struct LogDetail {
    #[diesel(embed)]
    pub entry: LogEntry,
    #[diesel(sql_type = Int4)]
    pub images: i32,
    #[diesel(sql_type = Nullable<Int4>)]
    pub ttft_ms: Option<i32>,
    #[diesel(sql_type = Int4)]
    pub retries: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub started_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub ended_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub metadata: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Text>)]
    pub request_body: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub response_body: Option<String>,
    #[diesel(sql_type = Bool)]
    pub bodies_truncated: bool,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub price_id: Option<Uuid>,
    #[diesel(sql_type = Numeric)]
    pub input_cost: Decimal,
    #[diesel(sql_type = Numeric)]
    pub output_cost: Decimal,
    #[diesel(sql_type = Numeric)]
    pub cached_input_cost: Decimal,
    #[diesel(sql_type = Numeric)]
    pub request_cost: Decimal,
    #[diesel(sql_type = Numeric)]
    pub image_cost: Decimal,
    #[diesel(sql_type = Numeric)]
    pub data_storage_cost: Decimal,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub discount_id: Option<Uuid>,
    #[diesel(sql_type = Numeric)]
    pub discount_percent: Decimal,
    #[diesel(sql_type = Timestamptz)]
    pub recorded_at: DateTime<Utc>,
}

const ENTRY_COLUMNS: &str = "e.id, e.request_id, e.occurred_at, e.project_id, e.api_key_id, \
    c.external_id AS customer, a.external_id AS agent, e.endpoint, e.provider, e.model, e.status, e.error_code, \
    e.prompt_tokens, e.completion_tokens, e.cached_tokens, e.latency_ms, e.cache_hit, e.billing_source, e.unpriced, \
    e.cost_before_discount, e.discount_savings, e.cost";

const DETAIL_COLUMNS: &str = "e.images, e.ttft_ms, e.retries, e.started_at, e.ended_at, e.metadata, \
    e.request_body, e.response_body, e.bodies_truncated, e.price_id, e.input_cost, e.output_cost, \
    e.cached_input_cost, e.request_cost, e.image_cost, e.data_storage_cost, e.discount_id, e.discount_percent, \
    e.recorded_at";

const FROM_EVENTS: &str = " FROM usage_events e \
    LEFT JOIN customers c ON c.id = e.customer_id AND c.org_id = e.org_id \
    LEFT JOIN agents a ON a.id = e.agent_id AND a.org_id = e.org_id \
    WHERE e.org_id = $1 AND e.occurred_at >= $2";

/// One page, newest first: `limit` entries and the cursor of the next page. Keyset
/// pagination on (occurred_at, id) keeps pages stable while new events arrive.
/// `not_before` is the organization's retention start: nothing older is returned.
pub async fn page(
    conn: &mut DbConn,
    access: &OrgAccess,
    filter: &LogFilter,
    not_before: DateTime<Utc>,
    after: Option<Cursor>,
    limit: i64,
) -> AppResult<(Vec<LogEntry>, Option<Cursor>)> {
    let mut query = diesel::sql_query(format!("SELECT {ENTRY_COLUMNS}{FROM_EVENTS}"))
        .into_boxed::<Pg>()
        .bind::<SqlUuid, _>(access.org_id())
        .bind::<Timestamptz, _>(not_before.max(filter.from.unwrap_or(not_before)));
    // Placeholders are numbered in the order conditions are appended.
    let mut n = 2;
    let mut next = || {
        n += 1;
        n
    };
    if let Some(v) = filter.project_id {
        query = query
            .sql(format!(" AND e.project_id = ${}", next()))
            .bind::<SqlUuid, _>(v);
    }
    if let Some(v) = filter.api_key_id {
        query = query
            .sql(format!(" AND e.api_key_id = ${}", next()))
            .bind::<SqlUuid, _>(v);
    }
    if let Some(v) = filter.customer.clone() {
        query = query
            .sql(format!(" AND c.external_id = ${}", next()))
            .bind::<Text, _>(v);
    }
    if let Some(v) = filter.agent.clone() {
        query = query
            .sql(format!(" AND a.external_id = ${}", next()))
            .bind::<Text, _>(v);
    }
    if let Some(v) = filter.provider.clone() {
        query = query.sql(format!(" AND e.provider = ${}", next())).bind::<Text, _>(v);
    }
    if let Some(v) = filter.model.clone() {
        query = query.sql(format!(" AND e.model = ${}", next())).bind::<Text, _>(v);
    }
    if let Some(v) = filter.status.clone() {
        query = query.sql(format!(" AND e.status = ${}", next())).bind::<Text, _>(v);
    }
    if let Some(v) = filter.to {
        query = query
            .sql(format!(" AND e.occurred_at <= ${}", next()))
            .bind::<Timestamptz, _>(v);
    }
    if let Some(cursor) = after {
        let (a, b) = (next(), next());
        query = query
            .sql(format!(" AND (e.occurred_at, e.id) < (${a}, ${b})"))
            .bind::<Timestamptz, _>(cursor.occurred_at)
            .bind::<SqlUuid, _>(cursor.id);
    }
    let limit_at = next();
    let rows: Vec<LogEntry> = query
        .sql(format!(" ORDER BY e.occurred_at DESC, e.id DESC LIMIT ${limit_at}"))
        .bind::<BigInt, _>(limit + 1)
        .load(conn)
        .await?;
    Ok(super::split_page(rows, limit, |r| Cursor {
        occurred_at: r.occurred_at,
        id: r.id,
    }))
}

/// One event of the organization. The id carries its time (see `ingest::event_id`),
/// which confines the lookup to one millisecond of one partition.
pub async fn detail(
    conn: &mut DbConn,
    access: &OrgAccess,
    event_id: Uuid,
    occurred_ms: DateTime<Utc>,
    not_before: DateTime<Utc>,
) -> AppResult<LogDetail> {
    diesel::sql_query(format!(
        "SELECT {ENTRY_COLUMNS}, {DETAIL_COLUMNS}{FROM_EVENTS} AND e.id = $3 \
         AND e.occurred_at >= $4 AND e.occurred_at < $4 + interval '1 millisecond'"
    ))
    .bind::<SqlUuid, _>(access.org_id())
    .bind::<Timestamptz, _>(not_before)
    .bind::<SqlUuid, _>(event_id)
    .bind::<Timestamptz, _>(occurred_ms)
    .get_result(conn)
    .await
    .map_err(|e| match e {
        diesel::result::Error::NotFound => AppError::not_found("event"),
        other => other.into(),
    })
}
