//! Folds a batch of stored events into the per-entity roll-up rows it adds to
//! (`store::entity_rollups`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{
    domain::{
        activity::{endpoint_group, week_start},
        usage::EventStatus,
    },
    store::{
        entity_rollups::{EntityRollupRow, KINDS, SPANS},
        usage::EventRow,
    },
};

/// (kind, span, day, entity, endpoint, provider, model): the table's grain, in its order.
type Grain = (
    &'static str,
    &'static str,
    NaiveDate,
    Option<Uuid>,
    String,
    String,
    String,
);

#[derive(Default)]
struct Sums {
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost: Decimal,
}

/// Every event adds to twelve rows: for each kind (its customer, its agent, its
/// endpoint group) and each span (its UTC day, its ISO week), one row for its model and
/// one total row. One row per grain, sorted by grain (the lock order).
pub fn aggregate(rows: &[EventRow]) -> Vec<EntityRollupRow> {
    let mut by_grain: BTreeMap<Grain, Sums> = BTreeMap::new();
    for row in rows {
        let day = row.occurred_at.date_naive();
        let [customer, agent, endpoint] = KINDS;
        let entities = [
            (customer, row.customer_id, ""),
            (agent, row.agent_id, ""),
            (endpoint, None, endpoint_group(&row.endpoint)),
        ];
        let [by_day, by_week] = SPANS;
        for (kind, entity_id, endpoint) in entities {
            for (span, starts) in [(by_day, day), (by_week, week_start(day))] {
                for (provider, model) in [(row.provider.as_str(), row.canonical_model.as_str()), ("", "")] {
                    let grain = (
                        kind,
                        span,
                        starts,
                        entity_id,
                        endpoint.to_owned(),
                        provider.to_owned(),
                        model.to_owned(),
                    );
                    let sums = by_grain.entry(grain).or_default();
                    sums.requests += 1;
                    sums.errors += i64::from(row.status == EventStatus::Error);
                    sums.prompt_tokens += row.prompt_tokens;
                    sums.completion_tokens += row.completion_tokens;
                    sums.cost += row.cost;
                }
            }
        }
    }
    by_grain
        .into_iter()
        .map(
            |((kind, span, day, entity_id, endpoint, provider, model), s)| EntityRollupRow {
                kind: kind.to_owned(),
                span: span.to_owned(),
                day,
                entity_id,
                endpoint,
                provider,
                model,
                requests: s.requests,
                errors: s.errors,
                prompt_tokens: s.prompt_tokens,
                completion_tokens: s.completion_tokens,
                cost: s.cost,
            },
        )
        .collect()
}
