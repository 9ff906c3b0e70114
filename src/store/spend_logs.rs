//! The request log of an organization, read from `usage_events`.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use diesel::{
    pg::Pg,
    sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid},
    QueryableByName,
};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{access::OrgAccess, usage::EventRow, DbConn};
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

/// What the log shows around a stored event: where it came from, the tenant's own
/// customer and agent ids, and when it was stored.
#[derive(Debug, Clone, QueryableByName)]
pub struct EventContext {
    #[diesel(sql_type = SqlUuid)]
    pub project_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub api_key_id: Uuid,
    #[diesel(sql_type = Nullable<Text>)]
    pub customer: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub agent: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub recorded_at: DateTime<Utc>,
}

/// One call as the log reads it: every stored column ([`EventRow`]) and its context.
/// Pages leave the large columns ([`NOT_ON_PAGES`]) empty.
#[derive(Debug, Clone, QueryableByName)]
pub struct LogRow {
    #[diesel(embed)]
    pub context: EventContext,
    #[diesel(embed)]
    pub event: EventRow,
}

/// Columns a page of the log does not read (they are `NULL` there; the detail reads them).
pub const NOT_ON_PAGES: [&str; 3] = ["metadata", "request_body", "response_body"];

const CONTEXT_COLUMNS: &str =
    "e.project_id, e.api_key_id, c.external_id AS customer, a.external_id AS agent, e.recorded_at";

/// The select list of the log: the context, then every column of [`EventRow`]
/// (without the large ones on pages).
fn select_list(page: bool) -> String {
    let event = EventRow::COLUMNS.iter().zip(EventRow::TYPES).map(|(column, sql_type)| {
        if page && NOT_ON_PAGES.contains(column) {
            format!("NULL::{sql_type} AS {column}")
        } else {
            format!("e.{column}")
        }
    });
    std::iter::once(CONTEXT_COLUMNS.to_owned())
        .chain(event)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn page_columns() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| select_list(true))
}

fn detail_columns() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| select_list(false))
}

pub(super) const FROM_EVENTS: &str = " FROM usage_events e \
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
) -> AppResult<(Vec<LogRow>, Option<Cursor>)> {
    let mut query = diesel::sql_query(format!("SELECT {}{FROM_EVENTS}", page_columns()))
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
    let rows: Vec<LogRow> = query
        .sql(format!(" ORDER BY e.occurred_at DESC, e.id DESC LIMIT ${limit_at}"))
        .bind::<BigInt, _>(limit + 1)
        .load(conn)
        .await?;
    Ok(super::split_page(rows, limit, |r| Cursor {
        occurred_at: r.event.occurred_at,
        id: r.event.id,
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
) -> AppResult<LogRow> {
    diesel::sql_query(format!(
        "SELECT {}{FROM_EVENTS} AND e.id = $3 \
         AND e.occurred_at >= $4 AND e.occurred_at < $4 + interval '1 millisecond'",
        detail_columns()
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
