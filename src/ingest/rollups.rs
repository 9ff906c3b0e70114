//! Folds a batch of stored events into the roll-up rows it adds to.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::{
    auth::KeyIdentity,
    domain::{
        rollup::{bucket_index, BUCKET_COUNT},
        usage::{BillingSource, EventStatus},
    },
    store::usage::{Dimension, EventRow, Resolution, RollupGrain, RollupRow, RollupSums},
};

/// One row per grain of `R` (a UTC day or hour), sorted by grain (the lock order
/// `upsert_rollups` relies on). Roll-ups count an event under its canonical model (the
/// catalog id), so every name of a model adds up in one row. Every row goes to roll-up
/// shard `shard`.
pub fn aggregate<R: Resolution>(key: &KeyIdentity, rows: &[EventRow], shard: i16) -> Vec<RollupRow> {
    let mut by_grain: BTreeMap<RollupGrain, RollupRow> = BTreeMap::new();
    for row in rows {
        let mut grain = RollupGrain {
            starts_at: R::bucket_start(row.occurred_at),
            project_id: key.project_id,
            api_key_id: key.key_id,
            customer_id: row.customer_id,
            agent_id: row.agent_id,
            endpoint: row.endpoint.clone(),
            provider: row.provider.clone(),
            model: row.canonical_model.clone(),
            shard,
        };
        if R::KEPT.len() < Dimension::ALL.len() {
            grain.drop_dimensions(R::KEPT);
        }
        let sum = by_grain.entry(grain).or_insert_with_key(|grain| RollupRow {
            grain: grain.clone(),
            sums: RollupSums::default(),
            latency_buckets: [0; BUCKET_COUNT],
            ttft_buckets: [0; BUCKET_COUNT],
        });
        sum.sums.add(&sums_of(row));
        if let Some(ms) = row.latency_ms {
            sum.latency_buckets[bucket_index(i64::from(ms))] += 1;
        }
        if let Some(ms) = row.ttft_ms {
            sum.ttft_buckets[bucket_index(i64::from(ms))] += 1;
        }
    }
    by_grain.into_values().collect()
}

/// What one event adds to its roll-up row. A struct literal: a summed column added to
/// `RollupSums` does not compile until it is defined here.
fn sums_of(row: &EventRow) -> RollupSums {
    let credits = row.billing_source == BillingSource::Credits;
    // (credits, api keys): what this event adds to each side of a split.
    let split = |value: Decimal| {
        if credits {
            (value, Decimal::ZERO)
        } else {
            (Decimal::ZERO, value)
        }
    };
    let (credits_cost, api_keys_cost) = split(row.cost);
    let (credits_data_storage_cost, api_keys_data_storage_cost) = split(row.data_storage_cost);
    RollupSums {
        requests: 1,
        errors: i64::from(row.status == EventStatus::Error),
        cache_hits: i64::from(row.cache_hit),
        unpriced: i64::from(row.unpriced),
        prompt_tokens: row.prompt_tokens,
        completion_tokens: row.completion_tokens,
        cached_tokens: row.cached_tokens,
        cache_write_5m_tokens: row.cache_write_5m_tokens,
        cache_write_1h_tokens: row.cache_write_1h_tokens,
        reasoning_tokens: row.reasoning_tokens,
        audio_input_tokens: row.audio_input_tokens,
        audio_output_tokens: row.audio_output_tokens,
        images: i64::from(row.images),
        input_images: i64::from(row.input_images),
        input_cost: row.input_cost,
        output_cost: row.output_cost,
        cached_input_cost: row.cached_input_cost,
        cache_write_5m_cost: row.cache_write_5m_cost,
        cache_write_1h_cost: row.cache_write_1h_cost,
        reasoning_cost: row.reasoning_cost,
        audio_input_cost: row.audio_input_cost,
        audio_output_cost: row.audio_output_cost,
        request_cost: row.request_cost,
        image_cost: row.image_cost,
        image_input_cost: row.image_input_cost,
        image_output_cost: row.image_output_cost,
        data_storage_cost: row.data_storage_cost,
        cost_before_discount: row.cost_before_discount,
        discount_savings: row.discount_savings,
        cost: row.cost,
        credits_cost,
        api_keys_cost,
        credits_requests: i64::from(credits),
        api_keys_requests: i64::from(!credits),
        credits_data_storage_cost,
        api_keys_data_storage_cost,
        latency_ms_sum: row.latency_ms.map_or(0, i64::from),
        latency_count: i64::from(row.latency_ms.is_some()),
        ttft_ms_sum: row.ttft_ms.map_or(0, i64::from),
        ttft_count: i64::from(row.ttft_ms.is_some()),
    }
}
