//! Folds a batch of stored events into the per-customer daily cost ledger rows it
//! adds to (`store::customer_costs`). Events without a customer are not billed to
//! anyone and have no row.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use uuid::Uuid;

use crate::store::{customer_costs::CustomerCostRow, usage::EventRow};

type Grain = (Uuid, NaiveDate, String, String, Option<Uuid>, Option<Uuid>);

/// One row per (customer, UTC day, provider, canonical model, price, discount), sorted
/// by that grain (the lock order `store::customer_costs::add` relies on).
pub fn aggregate(rows: &[EventRow]) -> Vec<CustomerCostRow> {
    let mut by_grain: BTreeMap<Grain, CustomerCostRow> = BTreeMap::new();
    for row in rows {
        let Some(customer_id) = row.customer_id else {
            continue;
        };
        let day = row.occurred_at.date_naive();
        let grain = (
            customer_id,
            day,
            row.provider.clone(),
            row.canonical_model.clone(),
            row.price_id,
            row.discount_id,
        );
        let sum = by_grain.entry(grain).or_insert_with(|| CustomerCostRow {
            day,
            customer_id,
            provider: row.provider.clone(),
            model: row.canonical_model.clone(),
            price_id: row.price_id,
            discount_id: row.discount_id,
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cost_before_discount: Default::default(),
            discount_savings: Default::default(),
            cost: Default::default(),
        });
        sum.requests += 1;
        sum.prompt_tokens += row.prompt_tokens;
        sum.completion_tokens += row.completion_tokens;
        sum.cached_tokens += row.cached_tokens;
        sum.cost_before_discount += row.cost_before_discount;
        sum.discount_savings += row.discount_savings;
        sum.cost += row.cost;
    }
    by_grain.into_values().collect()
}
