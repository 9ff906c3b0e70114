//! Analytics reads: sums over the daily roll-ups (`usage_daily`), never over raw
//! events. Every summed column comes from `RollupSums`, so a column added there is
//! read here too.

use chrono::NaiveDate;
use diesel::{
    sql_types::{BigInt, Date, Nullable, Numeric, Text, Uuid as SqlUuid},
    QueryableByName,
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    access::OrgAccess,
    usage::{summed_select, Daily, DailyCustomers, DailyModels, DailyRoutes, Resolution, RollupSums},
    DbConn,
};
use crate::{domain::activity::DayWindow, error::AppResult};

/// Which roll-up rows a query sums.
#[derive(Debug, Clone, Copy)]
pub struct ActivityFilter {
    pub window: DayWindow,
    pub project_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
}

impl ActivityFilter {
    /// Whether it keeps every project and key: then the coarse roll-ups, which do not
    /// keep those dimensions, can answer.
    fn is_unfiltered(&self) -> bool {
        self.project_id.is_none() && self.api_key_id.is_none()
    }
}

/// The sums of one day and one group (a model, a key or a customer).
#[derive(QueryableByName)]
pub struct DayGroup {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    /// The model's provider; the key's or customer's name for the other groupings.
    #[diesel(sql_type = Nullable<Text>)]
    pub label: Option<String>,
    /// The catalog model id; the key's or customer's id as text.
    #[diesel(sql_type = Nullable<Text>)]
    pub group_id: Option<String>,
    #[diesel(embed)]
    pub sums: RollupSums,
}

/// How roll-up rows are grouped within a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// By provider and catalog model.
    Model,
    /// By API key (with its name).
    ApiKey,
    /// By customer (with its external id); calls without one form their own group.
    Customer,
}

/// Sums per day and group over the window, in day order.
pub async fn by_day(
    conn: &mut DbConn,
    access: &OrgAccess,
    filter: &ActivityFilter,
    grouping: Grouping,
) -> AppResult<Vec<DayGroup>> {
    let (label, group_id, join) = match grouping {
        Grouping::Model => ("d.provider", "d.model", ""),
        Grouping::ApiKey => ("k.name", "d.api_key_id::text", "JOIN api_keys k ON k.id = d.api_key_id"),
        Grouping::Customer => (
            "c.external_id",
            "d.customer_id::text",
            "LEFT JOIN customers c ON c.id = d.customer_id",
        ),
    };
    let table = match grouping {
        Grouping::Model if filter.is_unfiltered() => DailyModels::TABLE,
        Grouping::Customer if filter.is_unfiltered() => DailyCustomers::TABLE,
        _ => Daily::TABLE,
    };
    let sql = format!(
        "SELECT d.day, {label} AS label, {group_id} AS group_id, {sums} FROM {table} d {join} \
         WHERE d.org_id = $1 AND d.day BETWEEN $2 AND $3 \
           AND ($4::uuid IS NULL OR d.project_id = $4) AND ($5::uuid IS NULL OR d.api_key_id = $5) \
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        sums = summed_select()
    );
    Ok(bind_filter(diesel::sql_query(sql).into_boxed(), access, filter)
        .load(conn)
        .await?)
}

/// What the per-entity analytics group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Customer,
    Agent,
    /// By path; every `/a2a/{agentId}` path is one entry (its agents are in `Agent`).
    Endpoint,
}

impl Entity {
    /// (key, label, join): the key identifies the entity, the label is what the tenant
    /// calls it (customer and agent external ids; the path).
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Entity::Customer => (
                "d.customer_id::text",
                "c.external_id",
                "LEFT JOIN customers c ON c.id = d.customer_id",
            ),
            Entity::Agent => (
                "d.agent_id::text",
                "a.external_id",
                "LEFT JOIN agents a ON a.id = d.agent_id",
            ),
            Entity::Endpoint => (ENDPOINT_KEY, ENDPOINT_KEY, ""),
        }
    }

    /// The condition `key = ANY($n)` on the stored column, so that an index on it
    /// serves the lookup (the key is the id as text).
    fn key_in(self, n: usize) -> String {
        match self {
            Entity::Customer => format!("d.customer_id = ANY(${n}::uuid[])"),
            Entity::Agent => format!("d.agent_id = ANY(${n}::uuid[])"),
            Entity::Endpoint => format!("{ENDPOINT_KEY} = ANY(${n})"),
        }
    }

    /// The smallest roll-up table that keeps this entity and what `filter` selects by.
    fn table(self, filter: &ActivityFilter) -> &'static str {
        match self {
            _ if !filter.is_unfiltered() => Daily::TABLE,
            Entity::Customer => DailyCustomers::TABLE,
            Entity::Agent | Entity::Endpoint => DailyRoutes::TABLE,
        }
    }
}

const ENDPOINT_KEY: &str = "(CASE WHEN d.endpoint LIKE '/a2a/%' THEN '/a2a/{agentId}' ELSE d.endpoint END)";

/// How a page of entities is ordered (largest first; ties by key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntitySort {
    Spend,
    Requests,
}

/// One entity's sums, over the window or one day or one model of it.
#[derive(QueryableByName)]
pub struct EntityGroup {
    #[diesel(sql_type = Nullable<Text>)]
    pub key: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub label: Option<String>,
    /// Set in the daily trend.
    #[diesel(sql_type = Nullable<Date>)]
    pub day: Option<NaiveDate>,
    /// Set in the model breakdown.
    #[diesel(sql_type = Nullable<Text>)]
    pub provider: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub model: Option<String>,
    #[diesel(embed)]
    pub sums: EntitySums,
}

/// What the per-entity reports show of the roll-up sums; summing only these keeps a
/// report over many rows cheap.
#[derive(Debug, Clone, Default, QueryableByName)]
pub struct EntitySums {
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    #[diesel(sql_type = BigInt)]
    pub errors: i64,
    #[diesel(sql_type = BigInt)]
    pub prompt_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub completion_tokens: i64,
    #[diesel(sql_type = Numeric)]
    pub cost: Decimal,
}

impl From<&RollupSums> for EntitySums {
    fn from(s: &RollupSums) -> Self {
        EntitySums {
            requests: s.requests,
            errors: s.errors,
            prompt_tokens: s.prompt_tokens,
            completion_tokens: s.completion_tokens,
            cost: s.cost,
        }
    }
}

const ENTITY_SUMS: &str =
    "coalesce(sum(d.requests), 0)::int8 AS requests, coalesce(sum(d.errors), 0)::int8 AS errors, \
    coalesce(sum(d.prompt_tokens), 0)::int8 AS prompt_tokens, \
    coalesce(sum(d.completion_tokens), 0)::int8 AS completion_tokens, coalesce(sum(d.cost), 0)::numeric AS cost";

/// A page of entities with their window totals, largest first, and whether more follow.
/// `labels` keeps only these entities (external ids or paths).
#[allow(clippy::too_many_arguments)]
pub async fn entities(
    conn: &mut DbConn,
    access: &OrgAccess,
    filter: &ActivityFilter,
    entity: Entity,
    labels: &[String],
    sort: EntitySort,
    limit: i64,
    offset: i64,
) -> AppResult<(Vec<EntityGroup>, bool)> {
    let order = match sort {
        EntitySort::Spend => "cost DESC, requests DESC",
        EntitySort::Requests => "requests DESC, cost DESC",
    };
    let (_, label, _) = entity.parts();
    // An empty list keeps every entity.
    let sql = entity_sql(
        entity,
        entity.table(filter),
        WINDOW_TOTALS,
        &format!(
            "AND (cardinality($6::text[]) = 0 OR {label} = ANY($6)) \
             GROUP BY 1, 2 ORDER BY {order}, 1 NULLS FIRST LIMIT $7 OFFSET $8"
        ),
    );
    let mut rows: Vec<EntityGroup> = bind_filter(diesel::sql_query(sql).into_boxed(), access, filter)
        .bind::<diesel::sql_types::Array<Text>, _>(labels)
        .bind::<diesel::sql_types::BigInt, _>(limit + 1)
        .bind::<diesel::sql_types::BigInt, _>(offset)
        .load(conn)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    Ok((rows, more))
}

/// The daily trend (`by_model` false) or the model breakdown (`by_model` true) of the
/// entities whose keys are given.
pub async fn entity_details(
    conn: &mut DbConn,
    access: &OrgAccess,
    filter: &ActivityFilter,
    entity: Entity,
    keys: &[Option<String>],
    by_model: bool,
) -> AppResult<Vec<EntityGroup>> {
    let (key, _, _) = entity.parts();
    // The coarse tables do not keep models: the breakdown reads `usage_daily`.
    let (table, extra, group) = match by_model {
        true => (Daily::TABLE, BY_MODEL, "GROUP BY 1, 2, 4, 5 ORDER BY 1, 2, 4, 5"),
        false => (entity.table(filter), BY_DAY, "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"),
    };
    // A NULL key (calls without a customer or agent) is matched with `IS NULL`.
    let wanted: Vec<String> = keys.iter().flatten().cloned().collect();
    let with_null = keys.iter().any(Option::is_none);
    let sql = entity_sql(
        entity,
        table,
        extra,
        &format!("AND ({} OR ($7 AND {key} IS NULL)) {group}", entity.key_in(6)),
    );
    Ok(bind_filter(diesel::sql_query(sql).into_boxed(), access, filter)
        .bind::<diesel::sql_types::Array<Text>, _>(wanted)
        .bind::<diesel::sql_types::Bool, _>(with_null)
        .load(conn)
        .await?)
}

/// The `day, provider, model` columns of each kind of entity query.
const WINDOW_TOTALS: [&str; 3] = ["NULL::date", "NULL::text", "NULL::text"];
const BY_DAY: [&str; 3] = ["d.day", "NULL::text", "NULL::text"];
const BY_MODEL: [&str; 3] = ["NULL::date", "d.provider", "d.model"];

/// `SELECT key, label, day, provider, model, <entity sums> FROM <table> d <join> WHERE
/// <organization, window, project, key> <tail>`; `$1`–`$5` are bound by [`bind_filter`].
fn entity_sql(entity: Entity, table: &str, [day, provider, model]: [&str; 3], tail: &str) -> String {
    let (key, label, join) = entity.parts();
    format!(
        "SELECT {key} AS key, {label} AS label, {day} AS day, {provider} AS provider, {model} AS model, {ENTITY_SUMS} \
         FROM {table} d {join} \
         WHERE d.org_id = $1 AND d.day BETWEEN $2 AND $3 \
           AND ($4::uuid IS NULL OR d.project_id = $4) AND ($5::uuid IS NULL OR d.api_key_id = $5) {tail}"
    )
}

fn bind_filter<'a>(
    query: diesel::query_builder::BoxedSqlQuery<'a, diesel::pg::Pg, diesel::query_builder::SqlQuery>,
    access: &OrgAccess,
    filter: &ActivityFilter,
) -> diesel::query_builder::BoxedSqlQuery<'a, diesel::pg::Pg, diesel::query_builder::SqlQuery> {
    query
        .bind::<SqlUuid, _>(access.org_id())
        .bind::<Date, _>(filter.window.from)
        .bind::<Date, _>(filter.window.to)
        .bind::<Nullable<SqlUuid>, _>(filter.project_id)
        .bind::<Nullable<SqlUuid>, _>(filter.api_key_id)
}
