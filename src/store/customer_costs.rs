//! The per-customer daily cost ledger (`customer_cost_daily`): what each customer's
//! calls cost per UTC day, provider, model, price version and discount. Invoices are
//! made from it; the retention purge keeps it for the billing horizon
//! (`domain::retention`), however short the plan's retention.

use chrono::NaiveDate;
use diesel::sql_types::{Date, Int2, Int8, Nullable, Numeric, Text, Uuid as SqlUuid};
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

columns! {
    /// One ledger row: its grain (day to discount) and its sums (requests on).
    #[derive(Debug, Clone, PartialEq)]
    pub struct CustomerCostRow {
        day: NaiveDate => Date,
        customer_id: Uuid => SqlUuid,
        provider: String => Text,
        /// The catalog id (or the model as reported when it is not in the catalog),
        /// as in the roll-ups.
        model: String => Text,
        /// The price version that applied; `None` for an unpriced call.
        price_id: Option<Uuid> => Nullable<SqlUuid>,
        discount_id: Option<Uuid> => Nullable<SqlUuid>,
        requests: i64 => Int8,
        prompt_tokens: i64 => Int8,
        completion_tokens: i64 => Int8,
        cached_tokens: i64 => Int8,
        cost_before_discount: Decimal => Numeric,
        discount_savings: Decimal => Numeric,
        cost: Decimal => Numeric,
    }
}

/// The columns that add up on conflict: every one after the grain.
const GRAIN_LEN: usize = 6;

fn upsert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        sharded_sum_upsert_sql(
            "customer_cost_daily",
            CustomerCostRow::COLUMNS,
            CustomerCostRow::TYPES,
            GRAIN_LEN,
        )
    })
}

/// Adds `rows` to the ledger in shard `shard`. Rows come sorted by grain
/// (`ingest::customer_costs::aggregate`), so concurrent batches lock rows in the same
/// order; the ingest transaction writes them after the spend ledger, always.
pub async fn add(mut conn: &DbConn, org_id: Uuid, shard: i16, rows: &[CustomerCostRow]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let query = Prepared::new(upsert_sql())
        .bind::<SqlUuid, _>(org_id)
        .bind::<Int2, _>(shard);
    CustomerCostRow::bind_arrays(query, rows, |r| r)
        .execute(&mut conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grain_is_the_first_six_columns() {
        assert_eq!(
            &CustomerCostRow::COLUMNS[..GRAIN_LEN],
            &["day", "customer_id", "provider", "model", "price_id", "discount_id"]
        );
        assert!(upsert_sql().contains("requests = r.requests + EXCLUDED.requests"));
        assert!(!upsert_sql().contains("model = r.model"));
    }
}
