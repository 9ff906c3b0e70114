//! Analytics reads: sums over the daily roll-ups (`usage_daily`), never over raw
//! events. Every summed column comes from `RollupSums`, so a column added there is
//! read here too.

use std::sync::OnceLock;

use chrono::NaiveDate;
use diesel::{
    sql_types::{Date, Nullable, Text, Uuid as SqlUuid},
    QueryableByName,
};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{access::OrgAccess, usage::RollupSums, DbConn};
use crate::{domain::activity::DayWindow, error::AppResult};

/// Which roll-up rows a query sums.
#[derive(Debug, Clone, Copy)]
pub struct ActivityFilter {
    pub window: DayWindow,
    pub project_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
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
    let sql = format!(
        "SELECT d.day, {label} AS label, {group_id} AS group_id, {sums} FROM usage_daily d {join} \
         WHERE d.org_id = $1 AND d.day BETWEEN $2 AND $3 \
           AND ($4::uuid IS NULL OR d.project_id = $4) AND ($5::uuid IS NULL OR d.api_key_id = $5) \
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        sums = summed_select()
    );
    Ok(diesel::sql_query(sql)
        .bind::<SqlUuid, _>(access.org_id())
        .bind::<Date, _>(filter.window.from)
        .bind::<Date, _>(filter.window.to)
        .bind::<Nullable<SqlUuid>, _>(filter.project_id)
        .bind::<Nullable<SqlUuid>, _>(filter.api_key_id)
        .load(conn)
        .await?)
}

/// `coalesce(sum(d.col), 0)::type AS col` for every summed roll-up column.
fn summed_select() -> &'static str {
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
