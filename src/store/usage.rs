//! Writing usage: idempotency keys, raw events and the daily and hourly roll-ups, in bulk.
//!
//! Batches are written column-wise with `INSERT … SELECT FROM unnest($arrays)`: one
//! statement and a fixed number of bind parameters however many events a batch has.

use std::{
    collections::{HashMap, HashSet},
    sync::OnceLock,
};

use chrono::{DateTime, DurationRound, Utc};
use diesel::{
    prelude::*,
    sql_types::{Array, Bool, Int2, Int4, Int8, Jsonb, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    columns::{array_casts, columns, summed_columns},
    prepared::Prepared,
    schema::{organizations, projects, usage_request_ids},
    DbConn,
};
use crate::{
    domain::{
        identity::KeyIdentity,
        project_mode::ProjectMode,
        rollup::BUCKET_COUNT,
        usage::{BillingSource, EventStatus},
    },
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

/// A request id to claim for a new event: the event's id and time, and the
/// fingerprint of its content (`NewUsageEvent::fingerprint`).
#[derive(Debug, Clone)]
pub struct Claim {
    pub request_id: String,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub fingerprint: i64,
}

/// Claims request ids for new events. Returns the ids that were free (and are now
/// taken); the others belong to events recorded before. A concurrent claim of the same
/// id waits for the first transaction and then sees the conflict.
pub async fn claim_request_ids(conn: &mut DbConn, org_id: Uuid, claims: &[Claim]) -> AppResult<HashSet<String>> {
    #[derive(QueryableByName)]
    struct Claimed {
        #[diesel(sql_type = Text)]
        request_id: String,
    }
    let request_ids: Vec<&str> = claims.iter().map(|c| c.request_id.as_str()).collect();
    let event_ids: Vec<Uuid> = claims.iter().map(|c| c.event_id).collect();
    let occurred: Vec<DateTime<Utc>> = claims.iter().map(|c| c.occurred_at).collect();
    let fingerprints: Vec<i64> = claims.iter().map(|c| c.fingerprint).collect();
    let claimed: Vec<Claimed> = Prepared::new(
        "INSERT INTO usage_request_ids (org_id, request_id, event_id, occurred_at, fingerprint) \
         SELECT $1, t.* FROM unnest($2::text[], $3::uuid[], $4::timestamptz[], $5::int8[]) AS t \
         ON CONFLICT DO NOTHING RETURNING request_id",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Array<Text>, _>(&request_ids)
    .bind::<Array<SqlUuid>, _>(&event_ids)
    .bind::<Array<Timestamptz>, _>(&occurred)
    .bind::<Array<Int8>, _>(&fingerprints)
    .load(conn)
    .await?;
    Ok(claimed.into_iter().map(|c| c.request_id).collect())
}

/// An event recorded before under a request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub event_id: Uuid,
    /// `None` for events recorded before fingerprints were kept.
    pub fingerprint: Option<i64>,
}

/// The events already recorded under these request ids.
pub async fn recorded_events(
    conn: &mut DbConn,
    org_id: Uuid,
    request_ids: &[String],
) -> AppResult<HashMap<String, Recorded>> {
    if request_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, Uuid, Option<i64>)> = usage_request_ids::table
        .filter(usage_request_ids::org_id.eq(org_id))
        .filter(usage_request_ids::request_id.eq_any(request_ids))
        .select((
            usage_request_ids::request_id,
            usage_request_ids::event_id,
            usage_request_ids::fingerprint,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(request_id, event_id, fingerprint)| (request_id, Recorded { event_id, fingerprint }))
        .collect())
}

columns! {
    /// One event, flattened for storage: the columns of `usage_events` besides the
    /// organization, project and key (bound once per batch). This list is the one
    /// place a stored event's columns are named: the INSERT, its bind parameters and
    /// the spend log's reads are generated from it.
    #[derive(Debug, Clone)]
    pub struct EventRow {
        id: Uuid => SqlUuid,
        occurred_at: DateTime<Utc> => Timestamptz,
        request_id: String => Text,
        customer_id: Option<Uuid> => Nullable<SqlUuid>,
        agent_id: Option<Uuid> => Nullable<SqlUuid>,
        endpoint: String => Text,
        provider: String => Text,
        /// The model as reported.
        model: String => Text,
        /// The name roll-ups count it under: the catalog id, or the reported name in
        /// lower case when the catalog does not know the model.
        canonical_model: String => Text,
        status: EventStatus => Text,
        error_code: Option<String> => Nullable<Text>,
        prompt_tokens: i64 => Int8,
        completion_tokens: i64 => Int8,
        cached_tokens: i64 => Int8,
        /// Parts of `prompt_tokens` and `completion_tokens` priced apart (`domain::pricing`).
        cache_write_5m_tokens: i64 => Int8,
        cache_write_1h_tokens: i64 => Int8,
        reasoning_tokens: i64 => Int8,
        audio_input_tokens: i64 => Int8,
        audio_output_tokens: i64 => Int8,
        /// Images the call generated.
        images: i32 => Int4,
        /// Images sent with the request.
        input_images: i32 => Int4,
        latency_ms: Option<i32> => Nullable<Int4>,
        ttft_ms: Option<i32> => Nullable<Int4>,
        cache_hit: bool => Bool,
        retries: i32 => Int4,
        started_at: Option<DateTime<Utc>> => Nullable<Timestamptz>,
        ended_at: Option<DateTime<Utc>> => Nullable<Timestamptz>,
        metadata: Option<serde_json::Value> => Nullable<Jsonb>,
        request_body: Option<String> => Nullable<Text>,
        response_body: Option<String> => Nullable<Text>,
        bodies_truncated: bool => Bool,
        billing_source: BillingSource => Text,
        unpriced: bool => Bool,
        price_id: Option<Uuid> => Nullable<SqlUuid>,
        input_cost: Decimal => Numeric,
        output_cost: Decimal => Numeric,
        cached_input_cost: Decimal => Numeric,
        cache_write_5m_cost: Decimal => Numeric,
        cache_write_1h_cost: Decimal => Numeric,
        reasoning_cost: Decimal => Numeric,
        audio_input_cost: Decimal => Numeric,
        audio_output_cost: Decimal => Numeric,
        request_cost: Decimal => Numeric,
        /// `image_input_cost + image_output_cost`.
        image_cost: Decimal => Numeric,
        image_input_cost: Decimal => Numeric,
        image_output_cost: Decimal => Numeric,
        data_storage_cost: Decimal => Numeric,
        cost_before_discount: Decimal => Numeric,
        discount_id: Option<Uuid> => Nullable<SqlUuid>,
        discount_percent: Decimal => Numeric,
        discount_savings: Decimal => Numeric,
        cost: Decimal => Numeric,
        call_type: Option<String> => Nullable<Text>,
        /// The gateway's id of the deployment that served the call.
        model_id: Option<String> => Nullable<Text>,
        api_base: Option<String> => Nullable<Text>,
        /// Redacted (`domain::usage::redact_ip`).
        client_ip: Option<String> => Nullable<Text>,
        /// A JSON array of strings; `NULL` without tags.
        tags: Option<serde_json::Value> => Nullable<Jsonb>,
        gateway_overhead_ms: Option<i32> => Nullable<Int4>,
    }
}

/// `INSERT INTO usage_events … SELECT $1, $2, $3, t.* FROM unnest(…)`, built once from
/// [`EventRow::COLUMNS`].
fn insert_events_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "INSERT INTO usage_events (org_id, project_id, api_key_id, {columns}) \
             SELECT $1, $2, $3, t.* FROM unnest({arrays}) AS t",
            columns = EventRow::COLUMNS.join(", "),
            arrays = array_casts(EventRow::TYPES, 4),
        )
    })
}

/// Bytes of bodies one event insert statement carries at most (beyond its first row): each statement's bound values are copied about three times on their way to
/// PostgreSQL (diesel's bind buffer, the Bind message, the connection's write buffer),
/// so a 16 MiB batch of bodies goes in slices rather than all at once.
const INSERT_SLICE_BYTES: usize = 1 << 20;

pub async fn insert_events(mut conn: &DbConn, key: &KeyIdentity, rows: &[EventRow]) -> AppResult<()> {
    let mut rest = rows;
    while !rest.is_empty() {
        let mut bytes = 0;
        let len = rest
            .iter()
            .position(|r| {
                bytes += r.payload_bytes();
                bytes > INSERT_SLICE_BYTES
            })
            .map_or(rest.len(), |over| over.max(1));
        let (slice, after) = rest.split_at(len);
        rest = after;
        let query = Prepared::new(insert_events_sql())
            .bind::<SqlUuid, _>(key.org_id)
            .bind::<SqlUuid, _>(key.project_id)
            .bind::<SqlUuid, _>(key.key_id);
        EventRow::bind_arrays(query, slice, |r| r).execute(&mut conn).await?;
    }
    Ok(())
}

impl EventRow {
    /// About the bytes it binds: its bodies, plus 512 for the rest (metadata is at most
    /// 16 KiB). A batch without bodies stays one statement (1,000 events).
    fn payload_bytes(&self) -> usize {
        512 + self.request_body.as_ref().map_or(0, String::len) + self.response_body.as_ref().map_or(0, String::len)
    }
}

/// A roll-up table: its time grain and which dimensions of an event it keeps. Every
/// roll-up table has the same columns as `usage_daily` (the time one apart: `day` date,
/// `hour` timestamptz), so the upsert and the reads are written once. A coarse table
/// keeps fewer dimensions (`coarsen` sets the others to one constant value), so it has
/// far fewer rows and the reports that need only its dimensions read it instead.
pub trait Resolution {
    /// The table, whose unique key is the constraint `{TABLE}_grain`.
    const TABLE: &'static str;
    /// The time column, first in the unique key after the organization.
    const TIME_COLUMN: &'static str;
    /// The time column's value, from `t.starts_at` (the bucket's start, timestamptz).
    const FROM_START: &'static str;
    /// The start of the bucket holding `at`.
    fn bucket_start(at: DateTime<Utc>) -> DateTime<Utc>;
    /// The dimensions this table keeps; the others hold one constant value
    /// ([`Dimension::constant`]).
    const KEPT: &'static [Dimension] = &Dimension::ALL;
    /// The upsert's text, built once per table.
    fn upsert_sql() -> &'static str;
}

/// `usage_daily`: UTC days, every dimension; kept for billing (`domain::retention`).
pub struct Daily;
/// `usage_hourly`: UTC hours, kept `domain::retention::HOURLY_ROLLUP_DAYS` days.
pub struct Hourly;
/// `usage_daily_models`: UTC days per provider and model, for organization-wide
/// activity and summaries.
pub struct DailyModels;

/// The coarse daily tables, in the order ingest writes them (after `usage_daily` and
/// `usage_hourly`: one lock order for every transaction).
pub const COARSE_DAILY_TABLES: [&str; 1] = [DailyModels::TABLE];

/// The dimensions of an event a roll-up table can keep, besides time and shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Project,
    ApiKey,
    Customer,
    Agent,
    Endpoint,
    Provider,
    Model,
}

impl Dimension {
    pub const ALL: [Dimension; 7] = [
        Dimension::Project,
        Dimension::ApiKey,
        Dimension::Customer,
        Dimension::Agent,
        Dimension::Endpoint,
        Dimension::Provider,
        Dimension::Model,
    ];

    /// Its column in the roll-up tables.
    pub fn column(self) -> &'static str {
        match self {
            Dimension::Project => "project_id",
            Dimension::ApiKey => "api_key_id",
            Dimension::Customer => "customer_id",
            Dimension::Agent => "agent_id",
            Dimension::Endpoint => "endpoint",
            Dimension::Provider => "provider",
            Dimension::Model => "model",
        }
    }

    /// The value its column holds in a table that does not keep it, as SQL.
    pub fn constant(self) -> &'static str {
        match self {
            Dimension::Project | Dimension::ApiKey => "'00000000-0000-0000-0000-000000000000'::uuid",
            Dimension::Customer | Dimension::Agent => "NULL::uuid",
            Dimension::Endpoint | Dimension::Provider | Dimension::Model => "''",
        }
    }
}

macro_rules! daily_table {
    ($ty:ident, $table:literal, [$($kept:ident),*]) => {
        impl Resolution for $ty {
            const TABLE: &'static str = $table;
            const TIME_COLUMN: &'static str = "day";
            const FROM_START: &'static str = "(t.starts_at AT TIME ZONE 'UTC')::date";

            fn bucket_start(at: DateTime<Utc>) -> DateTime<Utc> {
                at.duration_trunc(chrono::TimeDelta::days(1)).unwrap_or(at)
            }

            const KEPT: &'static [Dimension] = &[$(Dimension::$kept),*];

            fn upsert_sql() -> &'static str {
                static SQL: OnceLock<String> = OnceLock::new();
                SQL.get_or_init(upsert_rollups_sql::<Self>)
            }
        }
    };
}

daily_table!(
    Daily,
    "usage_daily",
    [Project, ApiKey, Customer, Agent, Endpoint, Provider, Model]
);
daily_table!(DailyModels, "usage_daily_models", [Provider, Model]);

impl Resolution for Hourly {
    const TABLE: &'static str = "usage_hourly";
    const TIME_COLUMN: &'static str = "hour";
    const FROM_START: &'static str = "t.starts_at";

    fn bucket_start(at: DateTime<Utc>) -> DateTime<Utc> {
        at.duration_trunc(chrono::TimeDelta::hours(1)).unwrap_or(at)
    }

    fn upsert_sql() -> &'static str {
        static SQL: OnceLock<String> = OnceLock::new();
        SQL.get_or_init(upsert_rollups_sql::<Self>)
    }
}

columns! {
    /// The grain of a roll-up row: what its sums are grouped by. Ordered like the
    /// tables' unique keys, which is the order rows are locked in.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    pub struct RollupGrain {
        /// The start of the UTC day or hour (`Resolution::bucket_start`); stored as the
        /// table's time column.
        starts_at: DateTime<Utc> => Timestamptz,
        project_id: Uuid => SqlUuid,
        api_key_id: Uuid => SqlUuid,
        customer_id: Option<Uuid> => Nullable<SqlUuid>,
        agent_id: Option<Uuid> => Nullable<SqlUuid>,
        endpoint: String => Text,
        provider: String => Text,
        /// The catalog model id (or the model as reported when it is not in the catalog).
        model: String => Text,
        /// Spreads concurrent writers of one grain over several rows (`ingest::ROLLUP_SHARDS`).
        shard: i16 => Int2,
    }
}

impl RollupGrain {
    /// Sets every dimension not in `kept` to its constant: the nil id for projects and
    /// keys, no customer or agent, the empty text for endpoint, provider and model.
    pub fn drop_dimensions(&mut self, kept: &[Dimension]) {
        let keeps = |d: Dimension| kept.contains(&d);
        if !keeps(Dimension::Project) {
            self.project_id = Uuid::nil();
        }
        if !keeps(Dimension::ApiKey) {
            self.api_key_id = Uuid::nil();
        }
        if !keeps(Dimension::Customer) {
            self.customer_id = None;
        }
        if !keeps(Dimension::Agent) {
            self.agent_id = None;
        }
        for (dimension, text) in [
            (Dimension::Endpoint, &mut self.endpoint),
            (Dimension::Provider, &mut self.provider),
            (Dimension::Model, &mut self.model),
        ] {
            if !keeps(dimension) {
                text.clear();
            }
        }
    }
}

/// Fills an empty coarse table `R` from `usage_daily` (every organization, shard 0):
/// the sums ingest would have written. For tools that write roll-ups in bulk, such as
/// the analytics benchmark.
pub fn coarse_from_daily_sql<R: Resolution>() -> String {
    let names: Vec<&str> = Dimension::ALL.iter().map(|d| d.column()).collect();
    let grain: Vec<&str> = Dimension::ALL
        .iter()
        .map(|d| if R::KEPT.contains(d) { d.column() } else { d.constant() })
        .collect();
    let buckets: Vec<String> = HISTOGRAMS.iter().flat_map(|h| histogram_columns(h)).collect();
    let summed: Vec<&str> = RollupSums::COLUMNS
        .iter()
        .copied()
        .chain(buckets.iter().map(String::as_str))
        .collect();
    format!(
        "INSERT INTO {table} (org_id, day, {names}, shard, {summed}) \
         SELECT org_id, day, {grain}, 0, {sums} FROM usage_daily \
         GROUP BY org_id, day{kept}",
        table = R::TABLE,
        names = names.join(", "),
        summed = summed.join(", "),
        grain = grain.join(", "),
        kept = R::KEPT.iter().map(|d| format!(", {}", d.column())).collect::<String>(),
        sums = summed
            .iter()
            .map(|c| format!("sum({c})"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

summed_columns! {
    /// The summed columns of the roll-ups (besides the histograms): what one event adds
    /// (`ingest::rollups`), and what a row holds. Money is `numeric`, counts are `int8`,
    /// as the types say.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct RollupSums {
        requests: i64 => Int8,
        errors: i64 => Int8,
        cache_hits: i64 => Int8,
        unpriced: i64 => Int8,
        prompt_tokens: i64 => Int8,
        completion_tokens: i64 => Int8,
        cached_tokens: i64 => Int8,
        cache_write_5m_tokens: i64 => Int8,
        cache_write_1h_tokens: i64 => Int8,
        reasoning_tokens: i64 => Int8,
        audio_input_tokens: i64 => Int8,
        audio_output_tokens: i64 => Int8,
        images: i64 => Int8,
        input_images: i64 => Int8,
        input_cost: Decimal => Numeric,
        output_cost: Decimal => Numeric,
        cached_input_cost: Decimal => Numeric,
        cache_write_5m_cost: Decimal => Numeric,
        cache_write_1h_cost: Decimal => Numeric,
        reasoning_cost: Decimal => Numeric,
        audio_input_cost: Decimal => Numeric,
        audio_output_cost: Decimal => Numeric,
        request_cost: Decimal => Numeric,
        image_cost: Decimal => Numeric,
        image_input_cost: Decimal => Numeric,
        image_output_cost: Decimal => Numeric,
        data_storage_cost: Decimal => Numeric,
        cost_before_discount: Decimal => Numeric,
        discount_savings: Decimal => Numeric,
        cost: Decimal => Numeric,
        credits_cost: Decimal => Numeric,
        api_keys_cost: Decimal => Numeric,
        credits_requests: i64 => Int8,
        api_keys_requests: i64 => Int8,
        credits_data_storage_cost: Decimal => Numeric,
        api_keys_data_storage_cost: Decimal => Numeric,
        latency_ms_sum: i64 => Int8,
        latency_count: i64 => Int8,
        /// Time to first token: the sum over the calls that reported it, and their number.
        ttft_ms_sum: i64 => Int8,
        ttft_count: i64 => Int8,
    }
}

/// `coalesce(sum(d.col), 0)::type AS col` for every summed roll-up column: what the
/// analytics reads select from a roll-up table aliased `d`.
pub fn summed_select() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        RollupSums::COLUMNS
            .iter()
            .zip(RollupSums::TYPES)
            .map(|(column, ty)| format!("coalesce(sum(d.{column}), 0)::{ty} AS {column}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// One roll-up row: the grain and the sums added to it.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub grain: RollupGrain,
    pub sums: RollupSums,
    /// Counts per latency bucket (`domain::rollup`), stored as `latency_b00..b16`.
    pub latency_buckets: [i64; BUCKET_COUNT],
    /// Counts per time-to-first-token bucket (the same bounds), `ttft_b00..b16`.
    pub ttft_buckets: [i64; BUCKET_COUNT],
}

/// The histograms kept in the roll-ups, by column prefix.
pub const HISTOGRAMS: [&str; 2] = ["latency", "ttft"];

/// The columns of one histogram, `{prefix}_b00` to `{prefix}_b16`.
pub fn histogram_columns(prefix: &str) -> Vec<String> {
    (0..BUCKET_COUNT).map(|i| format!("{prefix}_b{i:02}")).collect()
}

/// The upsert of roll-up rows into `R`'s table, built once per resolution from the
/// column lists: insert the grain and sums, or add the sums to the row of that grain.
fn upsert_rollups_sql<R: Resolution>() -> String {
    let buckets: Vec<String> = HISTOGRAMS.iter().flat_map(|h| histogram_columns(h)).collect();
    let summed: Vec<&str> = RollupSums::COLUMNS
        .iter()
        .copied()
        .chain(buckets.iter().map(String::as_str))
        .collect();
    // The unnest's columns (the grain's, then the sums'); the insert names the time
    // column instead of `starts_at` and computes it.
    let unnested: Vec<&str> = RollupGrain::COLUMNS
        .iter()
        .copied()
        .chain(summed.iter().copied())
        .collect();
    let target: Vec<&str> = unnested
        .iter()
        .map(|c| if *c == "starts_at" { R::TIME_COLUMN } else { c })
        .collect();
    let values: Vec<&str> = unnested
        .iter()
        .map(|c| if *c == "starts_at" { R::FROM_START } else { c })
        .collect();
    let types: Vec<&str> = RollupGrain::TYPES
        .iter()
        .chain(RollupSums::TYPES)
        .copied()
        .chain(buckets.iter().map(|_| "int8"))
        .collect();
    let updates: Vec<String> = summed.iter().map(|c| format!("{c} = d.{c} + EXCLUDED.{c}")).collect();
    // $1 is the organization; the grain columns, then the summed ones, follow as arrays.
    format!(
        "INSERT INTO {table} AS d (org_id, {target}) SELECT $1, {values} FROM unnest({arrays}) \
         WITH ORDINALITY AS t({unnested}, ord) ORDER BY ord \
         ON CONFLICT ON CONSTRAINT {table}_grain DO UPDATE SET {updates}",
        table = R::TABLE,
        target = target.join(", "),
        values = values.join(", "),
        unnested = unnested.join(", "),
        arrays = array_casts(&types, 2),
        updates = updates.join(", "),
    )
}

/// Adds `rows` to `R`'s roll-ups. Rows must come sorted by grain so concurrent batches
/// that share a shard lock rows in the same order (no deadlocks); their `starts_at`
/// must be `R`'s bucket starts (`ingest::rollups::aggregate::<R>`).
pub async fn upsert_rollups<R: Resolution>(mut conn: &DbConn, org_id: Uuid, rows: &[RollupRow]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let query = Prepared::new(R::upsert_sql()).bind::<SqlUuid, _>(org_id);
    let query = RollupGrain::bind_arrays(query, rows, |r| &r.grain);
    let mut query = RollupSums::bind_arrays(query, rows, |r| &r.sums);
    for histogram in [|r: &RollupRow| r.latency_buckets, |r: &RollupRow| r.ttft_buckets] {
        for i in 0..BUCKET_COUNT {
            let column: Vec<i64> = rows.iter().map(|r| histogram(r)[i]).collect();
            query = query.bind::<Array<Int8>, _>(column);
        }
    }
    query.execute(&mut conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_bound_as_numeric_and_counts_as_int8() {
        for (column, sql_type) in RollupSums::COLUMNS.iter().zip(RollupSums::TYPES) {
            let money = column.contains("cost") || *column == "discount_savings";
            assert_eq!(*sql_type, if money { "numeric" } else { "int8" }, "{column}");
        }
        for sql in [Daily::upsert_sql(), Hourly::upsert_sql(), DailyModels::upsert_sql()] {
            assert!(sql.contains("cost_before_discount = d.cost_before_discount + EXCLUDED.cost_before_discount"));
            assert!(sql.contains("ttft_b16 = d.ttft_b16 + EXCLUDED.ttft_b16"));
        }
        assert!(Daily::upsert_sql().starts_with("INSERT INTO usage_daily AS d (org_id, day, "));
        assert!(Hourly::upsert_sql().starts_with("INSERT INTO usage_hourly AS d (org_id, hour, "));
        assert!(DailyModels::upsert_sql().starts_with("INSERT INTO usage_daily_models AS d (org_id, day, "));
        let insert = insert_events_sql();
        assert_eq!(insert.matches("::").count(), EventRow::COLUMNS.len());
    }
}
