//! Analytics reads: sums over the roll-ups, never over raw events. Organization-wide
//! activity reads `usage_daily_models`, the per-entity reports `usage_entity_rollups`;
//! a filter by project or key reads `usage_daily`, the only table that keeps them.
//! Every summed column of the activity comes from `RollupSums`, so a column added there
//! is read here too.

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
    entity_rollups,
    usage::{summed_select, Daily, DailyModels, Resolution, RollupSums},
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

/// The sums of one day and one group (a model or a key).
#[derive(QueryableByName)]
pub struct DayGroup {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    /// The model's provider; the key's name.
    #[diesel(sql_type = Nullable<Text>)]
    pub label: Option<String>,
    /// The catalog model id; the key's id as text.
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
    };
    let table = match grouping {
        Grouping::Model if filter.is_unfiltered() => DailyModels::TABLE,
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

/// Where a per-entity read sums from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `usage_entity_rollups`: per entity, day or week, model or total; no project or key.
    EntityRollups,
    /// `usage_daily`, every dimension: for a filter by project or key.
    Daily,
}

impl Source {
    fn of(filter: &ActivityFilter) -> Self {
        match filter.is_unfiltered() {
            true => Source::EntityRollups,
            false => Source::Daily,
        }
    }
}

/// Which sums a per-entity read adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// Per entity over the whole window.
    Totals,
    /// Per entity and day.
    Days,
    /// Per entity and model over the whole window.
    Models,
}

impl Entity {
    /// (key, label, join): the key identifies the entity, the label is what the tenant
    /// calls it (customer and agent external ids; the path).
    fn parts(self, source: Source) -> (&'static str, &'static str, &'static str) {
        match (self, source) {
            (Entity::Customer, Source::EntityRollups) => (
                "d.entity_id::text",
                "c.external_id",
                "LEFT JOIN customers c ON c.id = d.entity_id",
            ),
            (Entity::Agent, Source::EntityRollups) => (
                "d.entity_id::text",
                "a.external_id",
                "LEFT JOIN agents a ON a.id = d.entity_id",
            ),
            (Entity::Endpoint, Source::EntityRollups) => ("d.endpoint", "d.endpoint", ""),
            (Entity::Customer, Source::Daily) => (
                "d.customer_id::text",
                "c.external_id",
                "LEFT JOIN customers c ON c.id = d.customer_id",
            ),
            (Entity::Agent, Source::Daily) => (
                "d.agent_id::text",
                "a.external_id",
                "LEFT JOIN agents a ON a.id = d.agent_id",
            ),
            (Entity::Endpoint, Source::Daily) => (ENDPOINT_KEY, ENDPOINT_KEY, ""),
        }
    }

    /// The condition `key = ANY($n)` on the stored column, so that an index on it
    /// serves the lookup (the key is the id as text).
    fn key_in(self, source: Source, n: usize) -> String {
        match (self, source) {
            (Entity::Customer | Entity::Agent, Source::EntityRollups) => format!("d.entity_id = ANY(${n}::uuid[])"),
            (Entity::Endpoint, Source::EntityRollups) => format!("d.endpoint = ANY(${n})"),
            (Entity::Customer, Source::Daily) => format!("d.customer_id = ANY(${n}::uuid[])"),
            (Entity::Agent, Source::Daily) => format!("d.agent_id = ANY(${n}::uuid[])"),
            (Entity::Endpoint, Source::Daily) => format!("{ENDPOINT_KEY} = ANY(${n})"),
        }
    }

    /// (expression, column): the stored key a read groups by, and the column of
    /// `parts`' key and join, so that those apply to a subquery of the sums as well.
    fn raw_key(self, source: Source) -> (&'static str, &'static str) {
        match (self, source) {
            (Entity::Customer | Entity::Agent, Source::EntityRollups) => ("d.entity_id", "entity_id"),
            (Entity::Endpoint, Source::EntityRollups) => ("d.endpoint", "endpoint"),
            (Entity::Customer, Source::Daily) => ("d.customer_id", "customer_id"),
            (Entity::Agent, Source::Daily) => ("d.agent_id", "agent_id"),
            // Grouping a grouped path again leaves it as it is.
            (Entity::Endpoint, Source::Daily) => (ENDPOINT_KEY, "endpoint"),
        }
    }

    /// The condition that the stored key is one of the labels `$n` (external ids are
    /// resolved to ids first, so the sums need no join).
    fn labelled(self, source: Source, n: usize) -> String {
        let (raw, _) = self.raw_key(source);
        match self {
            Entity::Customer => {
                format!("{raw} IN (SELECT id FROM customers WHERE org_id = $1 AND external_id = ANY(${n}))")
            }
            Entity::Agent => format!("{raw} IN (SELECT id FROM agents WHERE org_id = $1 AND external_id = ANY(${n}))"),
            Entity::Endpoint => format!("{raw} = ANY(${n})"),
        }
    }

    /// Its `kind` in `usage_entity_rollups`.
    fn kind(self) -> &'static str {
        let [customer, agent, endpoint] = entity_rollups::KINDS;
        match self {
            Entity::Customer => customer,
            Entity::Agent => agent,
            Entity::Endpoint => endpoint,
        }
    }
}

/// `domain::activity::endpoint_group` in SQL, for `usage_daily`'s raw paths.
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
    let source = Source::of(filter);
    // An empty list keeps every entity.
    let sql = entity_sql(
        entity,
        source,
        Rows::Totals,
        &format!("AND (cardinality($6::text[]) = 0 OR {})", entity.labelled(source, 6)),
        Some(order),
    );
    let mut rows: Vec<EntityGroup> = bind_entity_filter(diesel::sql_query(sql).into_boxed(), access, filter)
        .bind::<diesel::sql_types::Array<Text>, _>(labels)
        .bind::<diesel::sql_types::BigInt, _>(limit + 1)
        .bind::<diesel::sql_types::BigInt, _>(offset)
        .load(conn)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    Ok((rows, more))
}

/// Which entities a detail read covers.
#[derive(Debug, Clone, Copy)]
pub enum Keys<'k> {
    /// Every entity of the kind.
    All,
    /// The entities with these keys (`EntityGroup::key`; `None` is the calls without a
    /// customer or agent).
    These(&'k [Option<String>]),
}

/// The daily trend (`by_model` false) or the model breakdown (`by_model` true) of the
/// entities `keys` names.
pub async fn entity_details(
    conn: &mut DbConn,
    access: &OrgAccess,
    filter: &ActivityFilter,
    entity: Entity,
    keys: Keys<'_>,
    by_model: bool,
) -> AppResult<Vec<EntityGroup>> {
    let source = Source::of(filter);
    let rows = match by_model {
        true => Rows::Models,
        false => Rows::Days,
    };
    let read = |condition: String, wanted: Option<Vec<String>>| {
        let sql = entity_sql(entity, source, rows, &condition, None);
        let query = bind_entity_filter(diesel::sql_query(sql).into_boxed(), access, filter);
        match wanted {
            Some(wanted) => query.bind::<diesel::sql_types::Array<Text>, _>(wanted),
            None => query,
        }
    };
    let keys = match keys {
        Keys::All => return Ok(read(String::new(), None).load(conn).await?),
        Keys::These(keys) => keys,
    };
    // Each condition is one index range: `key = ANY(…)` for the keys, then `IS NULL`
    // for the calls without a customer or agent, in a read of its own. Joined by `OR`
    // (or switched by bound flags), no index served them and the read summed every
    // row of the window.
    let wanted: Vec<String> = keys.iter().flatten().cloned().collect();
    let mut found = match wanted.is_empty() {
        true => Vec::new(),
        false => {
            read(format!("AND {}", entity.key_in(source, 6)), Some(wanted))
                .load(conn)
                .await?
        }
    };
    if keys.iter().any(Option::is_none) {
        let (raw, _) = entity.raw_key(source);
        found.extend(
            read(format!("AND {raw} IS NULL"), None)
                .load::<EntityGroup>(conn)
                .await?,
        );
    }
    Ok(found)
}

/// `SELECT key, label, day, provider, model, <entity sums>` per entity over the window
/// ([`Rows::Totals`]), per entity and day ([`Rows::Days`]) or per entity and model
/// ([`Rows::Models`]) of the rows of [`entity_source`] that `condition` (`AND …`) keeps,
/// ordered by key, or, for a `page` ordered so (`cost DESC, …`), that page (`LIMIT $7
/// OFFSET $8`). Summed per stored key first, and only the sums (of the page) joined to
/// their labels: the join over every roll-up row cost more than the sums. `$1`–`$5`
/// are bound by [`bind_entity_filter`]: the organization, the window's first and last
/// day, then the project and key for `usage_daily`, or the Mondays of the window's first
/// and last whole weeks for `usage_entity_rollups`.
fn entity_sql(entity: Entity, source: Source, rows: Rows, condition: &str, page: Option<&str>) -> String {
    let (key, label, join) = entity.parts(source);
    let (raw, column) = entity.raw_key(source);
    let (grouped, groups, day, provider, model, by_key) = match rows {
        Rows::Totals => ("", "1", "NULL::date", "NULL::text", "NULL::text", "1"),
        Rows::Days => (", d.day AS day", "1, 2", "d.day", "NULL::text", "NULL::text", "1, 3"),
        Rows::Models => (
            ", d.provider AS provider, d.model AS model",
            "1, 2, 3",
            "NULL::date",
            "d.provider",
            "d.model",
            "1, 4, 5",
        ),
    };
    let (paged, order) = match page {
        Some(order) => (
            format!("ORDER BY {order}, ({raw})::text NULLS FIRST LIMIT $7 OFFSET $8"),
            format!("{order}, 1 NULLS FIRST"),
        ),
        None => (String::new(), by_key.to_owned()),
    };
    let (table, selected) = entity_source(entity, source, rows);
    format!(
        "SELECT {key} AS key, {label} AS label, {day} AS day, {provider} AS provider, {model} AS model, \
           d.requests, d.errors, d.prompt_tokens, d.completion_tokens, d.cost \
         FROM (SELECT {raw} AS {column}{grouped}, {ENTITY_SUMS} FROM {table} d WHERE {selected} {condition} \
               GROUP BY {groups} {paged}) d {join} \
         ORDER BY {order}"
    )
}

/// (table, condition): the rows a per-entity read sums, `FROM <table> d WHERE <condition>`.
fn entity_source(entity: Entity, source: Source, rows: Rows) -> (String, String) {
    match source {
        Source::Daily => (
            Daily::TABLE.to_owned(),
            "d.org_id = $1 AND d.day BETWEEN $2 AND $3 \
             AND ($4::uuid IS NULL OR d.project_id = $4) AND ($5::uuid IS NULL OR d.api_key_id = $5)"
                .to_owned(),
        ),
        Source::EntityRollups => {
            // Total rows have model ''; a model is never empty. Customers and agents
            // have no endpoint, endpoints no entity id: saying so lets the per-entity
            // index (org, kind, entity, endpoint, span, day) range over days.
            let models = match rows {
                Rows::Totals | Rows::Days => "model = ''",
                Rows::Models => "model <> ''",
            };
            let other = match entity {
                Entity::Customer | Entity::Agent => "endpoint = ''",
                Entity::Endpoint => "entity_id IS NULL",
            };
            let scan = |span_and_days: &str| {
                format!(
                    "SELECT entity_id, endpoint, day, provider, model, requests, errors, prompt_tokens, \
                       completion_tokens, cost FROM {table} \
                     WHERE org_id = $1 AND kind = '{kind}' AND {other} AND {models} AND {span_and_days}",
                    table = entity_rollups::TABLE,
                    kind = entity.kind(),
                )
            };
            // Whole weeks from week rows, the days before and after them from day rows:
            // three index ranges. (One day range filtered by `NOT BETWEEN` the weeks
            // read every day of the window to keep the few at its edges.) The trend
            // needs every day.
            let scans = match rows {
                Rows::Days => scan("span = 'day' AND day BETWEEN $2 AND $3"),
                Rows::Totals | Rows::Models => format!(
                    "{} UNION ALL {} UNION ALL {}",
                    scan("span = 'week' AND day BETWEEN $4 AND $5"),
                    scan("span = 'day' AND day BETWEEN $2 AND $4::date - 1"),
                    scan("span = 'day' AND day BETWEEN $5::date + 7 AND $3")
                ),
            };
            (format!("({scans})"), "TRUE".to_owned())
        }
    }
}

type Query<'a> = diesel::query_builder::BoxedSqlQuery<'a, diesel::pg::Pg, diesel::query_builder::SqlQuery>;

/// Binds `$1`–`$5` of a `usage_daily` read: organization, window, project, key.
fn bind_filter<'a>(query: Query<'a>, access: &OrgAccess, filter: &ActivityFilter) -> Query<'a> {
    query
        .bind::<SqlUuid, _>(access.org_id())
        .bind::<Date, _>(filter.window.from)
        .bind::<Date, _>(filter.window.to)
        .bind::<Nullable<SqlUuid>, _>(filter.project_id)
        .bind::<Nullable<SqlUuid>, _>(filter.api_key_id)
}

/// Binds `$1`–`$5` of an [`entity_sql`] read.
fn bind_entity_filter<'a>(query: Query<'a>, access: &OrgAccess, filter: &ActivityFilter) -> Query<'a> {
    match Source::of(filter) {
        Source::Daily => bind_filter(query, access, filter),
        Source::EntityRollups => {
            // No whole week: an empty week range after the window, so that the days
            // before it are the whole window and the days after it none.
            let (first, last) = filter.window.whole_weeks().unwrap_or((
                filter.window.to + chrono::Days::new(1),
                filter.window.to - chrono::Days::new(6),
            ));
            query
                .bind::<SqlUuid, _>(access.org_id())
                .bind::<Date, _>(filter.window.from)
                .bind::<Date, _>(filter.window.to)
                .bind::<Date, _>(first)
                .bind::<Date, _>(last)
        }
    }
}
