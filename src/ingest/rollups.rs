//! Folds a batch of stored events into the roll-up rows it adds to.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::{
    auth::KeyIdentity,
    domain::{
        rollup::bucket_index,
        usage::{BillingSource, PricedEvent},
    },
    store::usage::{EventRow, RollupRow},
};

type Grain = (chrono::NaiveDate, Option<Uuid>, Option<Uuid>, String, String, String);

/// One row per grain, sorted by grain (the lock order `upsert_rollups` relies on).
/// `priced` holds the priced event of each row, in the same order as `rows`; roll-ups
/// use its catalog model id, so both names of a model add up in one row.
/// Every row goes to roll-up shard `shard`.
pub fn aggregate(key: &KeyIdentity, rows: &[EventRow], priced: &[&PricedEvent], shard: i16) -> Vec<RollupRow> {
    let mut by_grain: BTreeMap<Grain, RollupRow> = BTreeMap::new();
    for (row, priced) in rows.iter().zip(priced) {
        let grain = (
            row.occurred_at.date_naive(),
            row.customer_id,
            row.agent_id,
            row.endpoint.clone(),
            row.provider.clone(),
            priced.model_id.clone(),
        );
        let sum = by_grain.entry(grain).or_insert_with(|| RollupRow {
            day: row.occurred_at.date_naive(),
            project_id: key.project_id,
            api_key_id: key.key_id,
            customer_id: row.customer_id,
            agent_id: row.agent_id,
            endpoint: row.endpoint.clone(),
            provider: row.provider.clone(),
            model: priced.model_id.clone(),
            shard,
            ..RollupRow::default()
        });
        add(sum, row, priced.billing_source);
    }
    by_grain.into_values().collect()
}

fn add(sum: &mut RollupRow, row: &EventRow, source: BillingSource) {
    sum.requests += 1;
    sum.errors += i64::from(row.status == "error");
    sum.cache_hits += i64::from(row.cache_hit);
    sum.unpriced += i64::from(row.unpriced);
    sum.prompt_tokens += row.prompt_tokens;
    sum.completion_tokens += row.completion_tokens;
    sum.cached_tokens += row.cached_tokens;
    sum.images += i64::from(row.images);
    sum.input_cost += row.input_cost;
    sum.output_cost += row.output_cost;
    sum.cached_input_cost += row.cached_input_cost;
    sum.request_cost += row.request_cost;
    sum.image_cost += row.image_cost;
    sum.data_storage_cost += row.data_storage_cost;
    sum.cost_before_discount += row.cost_before_discount;
    sum.discount_savings += row.discount_savings;
    sum.cost += row.cost;
    match source {
        BillingSource::Credits => sum.credits_cost += row.cost,
        BillingSource::ApiKeys => sum.api_keys_cost += row.cost,
    }
    if let Some(ms) = row.latency_ms {
        sum.latency_ms_sum += i64::from(ms);
        sum.latency_count += 1;
        sum.latency_buckets[bucket_index(i64::from(ms))] += 1;
    }
}
