//! The usage summary's read: roll-up sums and histograms per time bucket and model,
//! from `usage_hourly` or `usage_daily` (`domain::summary::Step`), never raw events.

use chrono::{DateTime, Utc};
use diesel::{
    sql_types::{Array, Int8, Nullable, Text, Timestamptz, Uuid as SqlUuid},
    QueryableByName,
};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{
    access::OrgAccess,
    usage::{histogram_columns, summed_select, Daily, DailyModels, Resolution, RollupSums},
    DbConn,
};
use crate::{
    domain::summary::{Step, SummaryWindow},
    error::AppResult,
};

/// Which roll-up rows the summary sums. Text filters name what the tenant sees: the
/// catalog model id (any case), the customer's and the agent's ids as the gateway
/// reports them.
#[derive(Debug, Clone, Default)]
pub struct SummaryFilter {
    pub project_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    pub model: Option<String>,
    pub customer: Option<String>,
    pub agent: Option<String>,
}

impl SummaryFilter {
    /// Whether it selects by nothing but the model.
    fn needs_only_models(&self) -> bool {
        self.project_id.is_none() && self.api_key_id.is_none() && self.customer.is_none() && self.agent.is_none()
    }
}

/// The sums of one model in one bucket of the window.
#[derive(QueryableByName)]
pub struct BucketModel {
    #[diesel(sql_type = Timestamptz)]
    pub starts_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub provider: String,
    #[diesel(sql_type = Text)]
    pub model: String,
    #[diesel(embed)]
    pub sums: RollupSums,
    /// Counts per latency bucket (`domain::rollup`).
    #[diesel(sql_type = Array<Int8>)]
    pub latency_buckets: Vec<i64>,
    /// Counts per time-to-first-token bucket (the same bounds).
    #[diesel(sql_type = Array<Int8>)]
    pub ttft_buckets: Vec<i64>,
}

/// A daily table's bucket start, and the window's bounds in days.
const DAY_START: &str = "d.day::timestamp AT TIME ZONE 'UTC'";
const DAY_BOUNDS: &str = "d.day >= ($2 AT TIME ZONE 'UTC')::date AND d.day < ($3 AT TIME ZONE 'UTC')::date";

/// Sums per bucket and model over the window, in bucket order.
pub async fn by_bucket_and_model(
    conn: &mut DbConn,
    access: &OrgAccess,
    window: &SummaryWindow,
    filter: &SummaryFilter,
) -> AppResult<Vec<BucketModel>> {
    // The time column as the bucket's start, and the window's bounds in its type.
    let (table, starts_at, bounds) = match window.step {
        Step::Hour => ("usage_hourly", "d.hour", "d.hour >= $2 AND d.hour < $3"),
        // Without a filter on a dimension it drops, the per-model table answers.
        Step::Day if filter.needs_only_models() => (DailyModels::TABLE, DAY_START, DAY_BOUNDS),
        Step::Day => (Daily::TABLE, DAY_START, DAY_BOUNDS),
    };
    let sums = summed_select();
    let histogram = |prefix: &str| {
        let sums: Vec<String> = histogram_columns(prefix)
            .iter()
            .map(|c| format!("coalesce(sum(d.{c}), 0)"))
            .collect();
        format!("ARRAY[{}]::int8[] AS {prefix}_buckets", sums.join(", "))
    };
    // Customers and agents are matched by their ids, looked up once; an unknown one
    // matches nothing.
    let sql = format!(
        "SELECT {starts_at} AS starts_at, d.provider, d.model, {sums}, {latency}, {ttft} \
         FROM {table} d \
         WHERE d.org_id = $1 AND {bounds} \
           AND ($4::uuid IS NULL OR d.project_id = $4) AND ($5::uuid IS NULL OR d.api_key_id = $5) \
           AND ($6::text IS NULL OR lower(d.model) = lower($6)) \
           AND ($7::text IS NULL OR d.customer_id = \
                (SELECT c.id FROM customers c WHERE c.org_id = $1 AND c.external_id = $7)) \
           AND ($8::text IS NULL OR d.agent_id = \
                (SELECT a.id FROM agents a WHERE a.org_id = $1 AND a.external_id = $8)) \
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        latency = histogram("latency"),
        ttft = histogram("ttft"),
    );
    Ok(diesel::sql_query(sql)
        .bind::<SqlUuid, _>(access.org_id())
        .bind::<Timestamptz, _>(window.from)
        .bind::<Timestamptz, _>(window.to)
        .bind::<Nullable<SqlUuid>, _>(filter.project_id)
        .bind::<Nullable<SqlUuid>, _>(filter.api_key_id)
        .bind::<Nullable<Text>, _>(filter.model.as_deref())
        .bind::<Nullable<Text>, _>(filter.customer.as_deref())
        .bind::<Nullable<Text>, _>(filter.agent.as_deref())
        .load(conn)
        .await?)
}
