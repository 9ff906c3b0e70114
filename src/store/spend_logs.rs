//! The request log of an organization, read from `usage_events`.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use diesel::{
    pg::Pg,
    sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid},
    OptionalExtension, QueryableByName,
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::{access::OrgAccess, prices, usage::EventRow, DbConn};
use crate::{
    domain::{
        pricing::{Catalog, CatalogEntry},
        usage::EventStatus,
    },
    error::{AppError, AppResult},
};

/// Filters of the log; every one optional. Customer and agent are the tenant's own ids;
/// the model is either of its names in any case (see [`Catalog::filter_names`]).
#[derive(Debug, Default, Clone)]
pub struct LogFilter {
    pub project_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    pub customer: Option<String>,
    pub agent: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub status: Option<EventStatus>,
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

/// One call as its detail reads it: the row, and whether its price was one of the
/// organization's overrides (`org_model_prices`) rather than the catalog's.
#[derive(Debug, Clone, QueryableByName)]
pub struct DetailRow {
    #[diesel(embed)]
    pub log: LogRow,
    #[diesel(sql_type = Bool)]
    pub price_override: bool,
}

/// Columns a page of the log does not read (they are `NULL` there; the detail reads them).
pub const NOT_ON_PAGES: [&str; 3] = ["metadata", "request_body", "response_body"];

const CONTEXT_COLUMNS: &str =
    "e.project_id, e.api_key_id, c.external_id AS customer, a.external_id AS agent, e.recorded_at";

/// The select list of the log: the context, then every column of [`EventRow`]. Pages
/// read it from [`scan_columns`], where the large ones are `NULL`.
fn select_list() -> String {
    std::iter::once(CONTEXT_COLUMNS.to_owned())
        .chain(EventRow::COLUMNS.iter().map(|column| format!("e.{column}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The select list of a page read straight from the events with [`FROM_EVENTS`] (the
/// live stream reads rows by id): the context, then the event columns of a page.
pub(super) fn page_columns() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| {
        std::iter::once(CONTEXT_COLUMNS.to_owned())
            .chain(page_event_columns())
            .collect::<Vec<_>>()
            .join(", ")
    })
}

fn detail_columns() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(select_list)
}

/// [`detail_columns`] and whether the price was the organization's override ($1 is
/// the organization).
fn detail_with_price_source() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| {
        format!(
            "{}, EXISTS (SELECT 1 FROM org_model_prices p WHERE p.id = e.price_id AND p.org_id = $1) \
             AS price_override",
            select_list()
        )
    })
}

pub(super) const FROM_EVENTS: &str = " FROM usage_events e \
    LEFT JOIN customers c ON c.id = e.customer_id AND c.org_id = e.org_id \
    LEFT JOIN agents a ON a.id = e.agent_id AND a.org_id = e.org_id \
    WHERE e.org_id = $1 AND e.occurred_at >= $2";

/// What a page's inner scan reads: the event columns of [`select_list`] (the large ones
/// `NULL`) and the context the outer query joins.
fn scan_columns() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| {
        ["e.project_id", "e.api_key_id", "e.recorded_at"]
            .into_iter()
            .map(str::to_owned)
            .chain(page_event_columns())
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Every column of [`EventRow`] as a page reads it: the large ones `NULL`.
fn page_event_columns() -> impl Iterator<Item = String> {
    EventRow::COLUMNS.iter().zip(EventRow::TYPES).map(|(column, sql_type)| {
        if NOT_ON_PAGES.contains(column) {
            format!("NULL::{sql_type} AS {column}")
        } else {
            format!("e.{column}")
        }
    })
}

/// A filter in the terms the events store: ids instead of the tenant's names, the
/// model's roll-up names. Each has an index ending in the log's order (migration
/// `spend_log_indexes`).
#[derive(Debug, Default)]
struct Scan {
    project_id: Option<Uuid>,
    api_key_id: Option<Uuid>,
    customer_id: Option<Uuid>,
    agent_id: Option<Uuid>,
    provider: Option<String>,
    /// `canonical_model` values; empty: any model.
    models: Vec<String>,
    status: Option<EventStatus>,
    to: Option<DateTime<Utc>>,
}

/// Resolves a filter before any event is read, so the scan compares indexed ids rather
/// than joining every candidate row. `None`: nothing can match (an unknown customer or
/// agent of this organization), and no event needs reading.
async fn resolve(conn: &mut DbConn, org_id: Uuid, filter: &LogFilter) -> AppResult<Option<Scan>> {
    let customer_id = match &filter.customer {
        Some(external) => match party_id(conn, "customers", org_id, external).await? {
            Some(id) => Some(id),
            None => return Ok(None),
        },
        None => None,
    };
    let agent_id = match &filter.agent {
        Some(external) => match party_id(conn, "agents", org_id, external).await? {
            Some(id) => Some(id),
            None => return Ok(None),
        },
        None => None,
    };
    let models = match &filter.model {
        Some(model) => model_names(conn, filter.provider.as_deref(), model).await?,
        None => Vec::new(),
    };
    Ok(Some(Scan {
        project_id: filter.project_id,
        api_key_id: filter.api_key_id,
        customer_id,
        agent_id,
        provider: filter.provider.clone(),
        models,
        status: filter.status,
        to: filter.to,
    }))
}

/// The `canonical_model` values a `model=` filter matches: the catalog model it names
/// by either name, in any case.
pub(super) async fn model_names(conn: &mut DbConn, provider: Option<&str>, model: &str) -> AppResult<Vec<String>> {
    let prices = prices::list(conn, provider).await?;
    let catalog = Catalog::new(prices.into_iter().map(CatalogEntry::from).collect());
    Ok(catalog.filter_names(provider, model))
}

/// The id of the organization's customer or agent with this external id.
async fn party_id(conn: &mut DbConn, table: &str, org_id: Uuid, external_id: &str) -> AppResult<Option<Uuid>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    // `table` is one of two literals above.
    let found: Option<Id> = diesel::sql_query(format!("SELECT id FROM {table} WHERE org_id = $1 AND external_id = $2"))
        .bind::<SqlUuid, _>(org_id)
        .bind::<Text, _>(external_id)
        .get_result(conn)
        .await
        .optional()?;
    Ok(found.map(|f| f.id))
}

/// Days back from the newest instant a page can hold that the first reads cover; the
/// last read covers the rest back to the oldest instant.
const WINDOW_DAYS: [i64; 3] = [1, 7, 31];

/// The time spans a page is read in, newest first: `[start, end)`, `end` `None` for no
/// upper bound. They cover everything from `floor` on, without gaps or overlaps. A
/// page is usually filled by the first span, and a read of a short span is planned over
/// its few daily partitions instead of all of them (a year holds ~367).
fn windows(anchor: DateTime<Utc>, floor: DateTime<Utc>) -> Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    let mut spans = Vec::with_capacity(WINDOW_DAYS.len() + 1);
    let mut end = None;
    for days in WINDOW_DAYS {
        let start = anchor - Duration::days(days);
        if start <= floor {
            break;
        }
        spans.push((start, end));
        end = Some(start);
    }
    spans.push((floor, end));
    spans
}

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
    let org_id = access.org_id();
    let floor = not_before.max(filter.from.unwrap_or(not_before));
    // Nothing newer than the cursor or `to` can be on the page.
    let anchor = [after.map(|c| c.occurred_at), filter.to]
        .into_iter()
        .flatten()
        .fold(Utc::now(), DateTime::min);
    let rows = conn
        .transaction(async |conn| {
            // One snapshot for all the spans of the page.
            diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(conn)
                .await?;
            // Every index of the log returns rows in its order: a plan that sorts reads
            // every matching row for one page. Statistics of a day just filled can make
            // such a plan look cheaper; this keeps the planner off it.
            diesel::sql_query("SET LOCAL enable_sort = off").execute(conn).await?;
            let Some(scan) = resolve(conn, org_id, filter).await? else {
                return Ok(Vec::new());
            };
            let mut rows: Vec<LogRow> = Vec::new();
            for (start, end) in windows(anchor, floor) {
                let wanted = limit + 1 - rows.len() as i64;
                if wanted <= 0 {
                    break;
                }
                rows.extend(read_span(conn, org_id, &scan, start, end, after, wanted).await?);
            }
            Ok::<_, AppError>(rows)
        })
        .await?;
    Ok(super::split_page(rows, limit, |r| Cursor {
        occurred_at: r.event.occurred_at,
        id: r.event.id,
    }))
}

/// Up to `limit` events of `[start, end)` matching `scan`, older than `after`, newest
/// first. The inner query reads events only (an index in the log's order serves it and
/// stops after `limit` rows); the customer and agent names are joined to those rows.
async fn read_span(
    conn: &mut DbConn,
    org_id: Uuid,
    scan: &Scan,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    after: Option<Cursor>,
    limit: i64,
) -> AppResult<Vec<LogRow>> {
    let mut query = diesel::sql_query(format!(
        "SELECT {} FROM (SELECT {} FROM usage_events e WHERE e.org_id = $1 AND e.occurred_at >= $2",
        detail_columns(),
        scan_columns()
    ))
    .into_boxed::<Pg>()
    .bind::<SqlUuid, _>(org_id)
    .bind::<Timestamptz, _>(start);
    // Placeholders are numbered in the order conditions are appended.
    let mut n = 2;
    let mut next = || {
        n += 1;
        n
    };
    if let Some(v) = end {
        query = query
            .sql(format!(" AND e.occurred_at < ${}", next()))
            .bind::<Timestamptz, _>(v);
    }
    if let Some(v) = scan.to {
        query = query
            .sql(format!(" AND e.occurred_at <= ${}", next()))
            .bind::<Timestamptz, _>(v);
    }
    for (column, value) in [
        ("project_id", scan.project_id),
        ("api_key_id", scan.api_key_id),
        ("customer_id", scan.customer_id),
        ("agent_id", scan.agent_id),
    ] {
        if let Some(v) = value {
            query = query
                .sql(format!(" AND e.{column} = ${}", next()))
                .bind::<SqlUuid, _>(v);
        }
    }
    if let Some(v) = scan.provider.clone() {
        query = query.sql(format!(" AND e.provider = ${}", next())).bind::<Text, _>(v);
    }
    match scan.models.as_slice() {
        [] => {}
        // One name (the usual case) compares with `=`: an index scan with a list of
        // values does not return rows in the index order.
        [one] => {
            query = query
                .sql(format!(" AND e.canonical_model = ${}", next()))
                .bind::<Text, _>(one.clone());
        }
        many => {
            query = query
                .sql(format!(" AND e.canonical_model = ANY(${})", next()))
                .bind::<Array<Text>, _>(many.to_vec());
        }
    }
    if let Some(status) = scan.status {
        // A literal of the enum, not a placeholder: the failed-calls index is partial,
        // and the planner can only use it for a condition it sees.
        query = query.sql(format!(" AND e.status = '{}'", status.as_str()));
    }
    if let Some(cursor) = after {
        let (a, b) = (next(), next());
        query = query
            .sql(format!(" AND (e.occurred_at, e.id) < (${a}, ${b})"))
            .bind::<Timestamptz, _>(cursor.occurred_at)
            .bind::<SqlUuid, _>(cursor.id);
    }
    let limit_at = next();
    Ok(query
        .sql(format!(
            " ORDER BY e.occurred_at DESC, e.id DESC LIMIT ${limit_at}) e \
             LEFT JOIN customers c ON c.id = e.customer_id AND c.org_id = $1 \
             LEFT JOIN agents a ON a.id = e.agent_id AND a.org_id = $1 \
             ORDER BY e.occurred_at DESC, e.id DESC"
        ))
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?)
}

/// One event of the organization. The id carries its time (see `ingest::event_id`),
/// which confines the lookup to one millisecond of one partition.
pub async fn detail(
    conn: &mut DbConn,
    access: &OrgAccess,
    event_id: Uuid,
    occurred_ms: DateTime<Utc>,
    not_before: DateTime<Utc>,
) -> AppResult<DetailRow> {
    diesel::sql_query(format!(
        "SELECT {}{FROM_EVENTS} AND e.id = $3 \
         AND e.occurred_at >= $4 AND e.occurred_at < $4 + interval '1 millisecond'",
        detail_with_price_source()
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
