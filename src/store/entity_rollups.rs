//! The narrow per-entity roll-ups (`usage_entity_rollups`): requests, errors, tokens
//! and spend per customer, agent and endpoint, per UTC day and per ISO week, per model
//! and in total. The per-entity reports read them (`store::activity`); ingest adds to
//! them in the transaction that stores the events.

use chrono::NaiveDate;
use diesel::sql_types::{Date, Int8, Nullable, Numeric, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use std::sync::OnceLock;
use uuid::Uuid;

use super::{
    columns::{columns, sharded_sum_upsert_sql},
    prepared::Prepared,
    DbConn,
};
use crate::error::AppResult;

pub const TABLE: &str = "usage_entity_rollups";

/// What a row counts: `kind` column values.
pub const KINDS: [&str; 3] = ["customer", "agent", "endpoint"];
/// The time a row covers: `span` column values (a week row's `day` is its Monday).
pub const SPANS: [&str; 2] = ["day", "week"];

columns! {
    /// One row: its grain (kind to model) and its sums (requests on). A total row has
    /// provider and model ''.
    #[derive(Debug, Clone, PartialEq)]
    pub struct EntityRollupRow {
        kind: String => Text,
        span: String => Text,
        day: NaiveDate => Date,
        /// The customer or agent; `None` for calls without one, and for endpoints.
        entity_id: Option<Uuid> => Nullable<SqlUuid>,
        /// The endpoint group (`domain::activity::endpoint_group`); '' for the other kinds.
        endpoint: String => Text,
        provider: String => Text,
        /// The catalog id (or the model as reported when it is not in the catalog), as
        /// in the other roll-ups.
        model: String => Text,
        requests: i64 => Int8,
        errors: i64 => Int8,
        prompt_tokens: i64 => Int8,
        completion_tokens: i64 => Int8,
        cost: Decimal => Numeric,
    }
}

/// The columns that add up on conflict: every one after the grain.
const GRAIN_LEN: usize = 7;

fn upsert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| sharded_sum_upsert_sql(TABLE, EntityRollupRow::COLUMNS, EntityRollupRow::TYPES, GRAIN_LEN))
}

/// Adds `rows` in shard `shard`. Rows come sorted by grain
/// (`ingest::entity_rollups::aggregate`), so concurrent batches lock rows in the same
/// order.
pub async fn add(mut conn: &DbConn, org_id: Uuid, shard: i16, rows: &[EntityRollupRow]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let query = Prepared::new(upsert_sql())
        .bind::<SqlUuid, _>(org_id)
        .bind::<diesel::sql_types::Int2, _>(shard);
    EntityRollupRow::bind_arrays(query, rows, |r| r)
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Fills an empty `usage_entity_rollups` from `usage_daily` (every organization, shard
/// 0): the rows ingest would have written. For tools that write roll-ups in bulk, such
/// as the analytics benchmark.
pub const FILL_FROM_DAILY: &str = "INSERT INTO usage_entity_rollups \
    (org_id, kind, span, day, entity_id, endpoint, provider, model, requests, errors, prompt_tokens, completion_tokens, cost) \
    SELECT d.org_id, k.kind, s.span, s.bucket, k.entity, k.path, g.p, g.m, \
           sum(d.requests), sum(d.errors), sum(d.prompt_tokens), sum(d.completion_tokens), sum(d.cost) \
      FROM usage_daily d \
     CROSS JOIN LATERAL (VALUES ('customer', d.customer_id, ''), ('agent', d.agent_id, ''), \
            ('endpoint', NULL::uuid, CASE WHEN d.endpoint LIKE '/a2a/%' THEN '/a2a/{agentId}' ELSE d.endpoint END)) \
            AS k(kind, entity, path) \
     CROSS JOIN LATERAL (VALUES ('day', d.day), ('week', d.day - (extract(isodow FROM d.day)::int - 1))) AS s(span, bucket) \
     CROSS JOIN LATERAL (VALUES (d.provider, d.model), ('', '')) AS g(p, m) \
     GROUP BY d.org_id, k.kind, s.span, s.bucket, k.entity, k.path, g.p, g.m";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grain_is_the_first_seven_columns() {
        assert_eq!(
            &EntityRollupRow::COLUMNS[..GRAIN_LEN],
            &["kind", "span", "day", "entity_id", "endpoint", "provider", "model"]
        );
        assert!(upsert_sql().contains("cost = r.cost + EXCLUDED.cost"));
        assert!(!upsert_sql().contains("model = r.model"));
    }
}
