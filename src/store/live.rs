//! Reads of the live spend-log stream: the rows behind the event ids a stream was told
//! about, in the shape of the log's pages.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{
    access::OrgAccess,
    spend_logs::{model_names, page_columns, LogFilter, LogRow, FROM_EVENTS},
    DbConn,
};
use crate::{error::AppResult, ingest::event_time};

/// The events among `ids` that belong to the organization and pass `filter`, oldest
/// first, without the large columns (as on the log's pages). The organization is in the query: an id of
/// another tenant finds nothing. Each id carries its millisecond (`ingest::event_id`),
/// which bounds the scan to the partitions and the span of time the ids cover.
pub async fn by_ids(
    conn: &mut DbConn,
    access: &OrgAccess,
    ids: &[Uuid],
    not_before: DateTime<Utc>,
    filter: &LogFilter,
) -> AppResult<Vec<LogRow>> {
    let times: Vec<DateTime<Utc>> = ids.iter().filter_map(|id| event_time(*id)).collect();
    let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
        return Ok(Vec::new());
    };
    let rows: Vec<LogRow> = diesel::sql_query(format!(
        "SELECT {}{FROM_EVENTS} AND e.occurred_at < $3 AND e.id = ANY($4) ORDER BY e.occurred_at, e.id",
        page_columns()
    ))
    .bind::<SqlUuid, _>(access.org_id())
    .bind::<Timestamptz, _>(not_before.max(*first))
    .bind::<Timestamptz, _>(*last + chrono::Duration::milliseconds(1))
    .bind::<Array<SqlUuid>, _>(ids.to_vec())
    .load(conn)
    .await?;
    let models = match &filter.model {
        Some(model) => Some(model_names(conn, filter.provider.as_deref(), model).await?),
        None => None,
    };
    Ok(rows
        .into_iter()
        .filter(|row| filter.matches(row, models.as_deref()))
        .collect())
}

impl LogFilter {
    /// Whether the log's query with this filter would show `row`: the stream applies
    /// the filter to the few rows it loads instead of sending it to PostgreSQL.
    /// `models`: the filter's model resolved to the names events are counted under
    /// (`spend_logs::model_names`); `None` without a model filter.
    pub fn matches(&self, row: &LogRow, models: Option<&[String]>) -> bool {
        let (c, e) = (&row.context, &row.event);
        fn same<T: PartialEq + ?Sized>(wanted: Option<&T>, actual: &T) -> bool {
            wanted.is_none_or(|w| w == actual)
        }
        same(self.project_id.as_ref(), &c.project_id)
            && same(self.api_key_id.as_ref(), &c.api_key_id)
            && self.customer.as_ref().is_none_or(|w| c.customer.as_ref() == Some(w))
            && self.agent.as_ref().is_none_or(|w| c.agent.as_ref() == Some(w))
            && same(self.provider.as_deref(), e.provider.as_str())
            && models.is_none_or(|names| names.contains(&e.canonical_model))
            && self.status.is_none_or(|status| status == e.status)
            && self.from.is_none_or(|from| e.occurred_at >= from)
            && self.to.is_none_or(|to| e.occurred_at <= to)
    }
}
