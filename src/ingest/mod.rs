//! The ingest pipeline: validated events → priced events → one transaction that
//! claims their request ids, stores them and adds them to the daily roll-ups and the
//! spend ledger.
//!
//! A 2xx answer means every accepted event is committed in PostgreSQL. Roll-ups and
//! the ledger are maintained in the same transaction, so analytics and budgets never
//! disagree with the events.

mod customer_costs;
mod entity_rollups;
pub mod group;
mod ledger;
mod rollups;

pub use ledger::{CommittedEvent, CommittedSpend};

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{
        atomic::{AtomicU16, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, NaiveDate, Utc};
use diesel_async::AsyncConnection;
use moka::future::Cache;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{
    auth::KeyIdentity,
    domain::usage::{price_event, NewUsageEvent, PricedEvent, PricingContext},
    error::{AppError, AppResult, FieldError},
    price_book::PriceBook,
    store::{
        self,
        usage::{Claim, Daily, DailyModels, EventRow, ExternalKind, Hourly},
        DbConn, DbPool,
    },
};

#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// USD per million tokens of calls whose bodies are stored.
    pub storage_per_mtok: Decimal,
    /// Largest stored request or response body, in bytes; longer ones are cut.
    pub body_cap_bytes: usize,
}

/// What happened to one submitted event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted {
        event_id: Uuid,
        cost: Decimal,
        unpriced: bool,
    },
    /// Recorded before (or earlier in the same batch) under the same request id.
    /// `conflict`: the recorded event reported other content (see
    /// `NewUsageEvent::fingerprint`); the first one stands.
    Duplicate {
        event_id: Uuid,
        conflict: bool,
    },
    Rejected {
        errors: Vec<FieldError>,
    },
}

/// The answer to one submitted batch: an outcome per event, in order, and what the
/// transaction committed to the spend ledger.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub outcomes: Vec<Outcome>,
    pub spend: CommittedSpend,
}

/// A valid event of the batch, the first with its request id.
struct Pending {
    /// Position in the submitted batch.
    index: usize,
    id: Uuid,
    fingerprint: i64,
    priced: PricedEvent,
}

/// The answer to an event whose request id is recorded already: a conflict when the
/// recorded event reported other content (unknowable for events recorded before
/// fingerprints were kept).
fn duplicate(key: &KeyIdentity, request_id: &str, original: &store::usage::Recorded, fingerprint: i64) -> Outcome {
    let conflict = original.fingerprint.is_some_and(|f| f != fingerprint);
    if conflict {
        tracing::warn!(
            org_id = %key.org_id,
            api_key_id = %key.key_id,
            request_id,
            "a requestId was sent again with other content; the first event stands"
        );
    }
    Outcome::Duplicate {
        event_id: original.event_id,
        conflict,
    }
}

/// What the ingest transaction wrote, once committed.
struct Written {
    claimed: HashSet<String>,
    new_customers: HashMap<String, Uuid>,
    new_agents: HashMap<String, Uuid>,
    spend: CommittedSpend,
}

#[derive(Clone)]
pub struct Ingestor {
    pool: DbPool,
    prices: PriceBook,
    settings: IngestSettings,
    /// (organization, external id) → id; ids never change, so entries never go stale.
    customers: Cache<(Uuid, String), Uuid>,
    agents: Cache<(Uuid, String), Uuid>,
    partitions: Cache<NaiveDate, ()>,
    /// Round-robin over the roll-up shards, from a random start per instance.
    shard_counter: Arc<AtomicU16>,
}

/// How many roll-up (and ledger) rows one grain may be spread over; bounds both the
/// ingest transactions that can run without waiting on each other and the extra rows
/// analytics and budgets sum.
pub const ROLLUP_SHARDS: u16 = 8;

impl Ingestor {
    pub fn new(pool: DbPool, prices: PriceBook, settings: IngestSettings) -> Self {
        let ids = || {
            Cache::builder()
                .max_capacity(200_000)
                .time_to_idle(Duration::from_secs(3600))
                .build()
        };
        Self {
            pool,
            prices,
            settings,
            customers: ids(),
            agents: ids(),
            // Only today and later days are remembered (see `ensure_partition`).
            partitions: Cache::builder().time_to_live(Duration::from_secs(3600)).build(),
            shard_counter: Arc::new(AtomicU16::new(rand::random::<u16>() % ROLLUP_SHARDS)),
        }
    }

    fn next_shard(&self) -> i16 {
        let n = self.shard_counter.fetch_add(1, Ordering::Relaxed) % ROLLUP_SHARDS;
        i16::try_from(n).unwrap_or(0)
    }

    pub fn settings(&self) -> &IngestSettings {
        &self.settings
    }

    /// Records a batch. `events` holds, per submitted event, either the validated event
    /// or the reasons it was rejected; the answer has one outcome per entry, in order.
    pub async fn record(
        &self,
        key: &KeyIdentity,
        events: Vec<Result<NewUsageEvent, Vec<FieldError>>>,
    ) -> AppResult<Recorded> {
        let mut providers: Vec<String> = events.iter().flatten().map(|e| e.provider.clone()).collect();
        providers.sort();
        providers.dedup();
        // Before taking a connection: a price read on a miss takes one of its own, and
        // requests holding theirs while waiting for it could empty the pool.
        let prices = self.prices.for_org(key.org_id, &providers).await?;
        let mut conn = self.pool.get().await?;
        let (project_mode, retention_days) = store::usage::ingest_context(&mut conn, key).await?;
        let ctx = PricingContext {
            org_id: key.org_id,
            project_mode,
            retention_days,
            now: Utc::now(),
            catalog: &prices.catalog,
            overrides: &prices.overrides,
            discounts: &prices.discounts,
            storage_per_mtok: self.settings.storage_per_mtok,
        };

        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        let mut first_by_request: HashMap<String, usize> = HashMap::new();
        // (index, fingerprint) of events whose request id came earlier in this batch.
        let mut repeats: Vec<(usize, String, i64)> = Vec::new();
        let mut batch: Vec<Pending> = Vec::new();
        for (index, event) in events.into_iter().enumerate() {
            let priced = event.and_then(|e| price_event(e, &ctx).map_err(|e| vec![event_error(e.0)]));
            match priced {
                Err(errors) => outcomes[index] = Some(Outcome::Rejected { errors }),
                Ok(priced) => {
                    let fingerprint = priced.event.fingerprint();
                    if first_by_request.contains_key(&priced.event.request_id) {
                        repeats.push((index, priced.event.request_id, fingerprint));
                    } else {
                        first_by_request.insert(priced.event.request_id.clone(), index);
                        batch.push(Pending {
                            index,
                            id: event_id(priced.event.occurred_at),
                            fingerprint,
                            priced,
                        });
                    }
                }
            }
        }

        let days: BTreeSet<NaiveDate> = batch.iter().map(|p| p.priced.event.occurred_at.date_naive()).collect();
        for day in days {
            self.ensure_partition(&mut conn, day).await?;
        }
        if batch.is_empty() {
            // Nothing valid to store: every outcome is already a rejection.
            return Ok(Recorded {
                outcomes: outcomes.into_iter().flatten().collect(),
                spend: CommittedSpend::none(key.org_id),
            });
        }
        let Written {
            claimed,
            new_customers,
            new_agents,
            spend,
        } = self.write(&mut conn, key, &mut batch).await?;

        let taken_before: Vec<String> = batch
            .iter()
            .filter(|p| !claimed.contains(&p.priced.event.request_id))
            .map(|p| p.priced.event.request_id.clone())
            .collect();
        // What each request id of the batch is recorded as now: an event recorded
        // before, or the one this batch just recorded.
        let mut recorded = store::usage::recorded_events(&mut conn, key.org_id, &taken_before).await?;
        for p in &batch {
            let request_id = &p.priced.event.request_id;
            let outcome = match recorded.get(request_id) {
                Some(original) => duplicate(key, request_id, original, p.fingerprint),
                None => {
                    recorded.insert(
                        request_id.clone(),
                        store::usage::Recorded {
                            event_id: p.id,
                            fingerprint: Some(p.fingerprint),
                        },
                    );
                    Outcome::Accepted {
                        event_id: p.id,
                        cost: p.priced.cost.total,
                        unpriced: p.priced.price_id.is_none(),
                    }
                }
            };
            outcomes[p.index] = Some(outcome);
        }
        for (index, request_id, fingerprint) in repeats {
            outcomes[index] = recorded
                .get(&request_id)
                .map(|original| duplicate(key, &request_id, original, fingerprint));
        }
        for (name, id) in new_customers {
            self.customers.insert((key.org_id, name), id).await;
        }
        for (name, id) in new_agents {
            self.agents.insert((key.org_id, name), id).await;
        }
        Ok(Recorded {
            outcomes: outcomes
                .into_iter()
                .map(|o| o.unwrap_or(Outcome::Rejected { errors: vec![] }))
                .collect(),
            spend,
        })
    }

    /// The id of a customer or agent, created on first sight (the authorize check
    /// applies defaults to a customer from its very first request).
    pub async fn party_id(&self, org_id: Uuid, kind: ExternalKind, name: &str) -> AppResult<Uuid> {
        let cache = match kind {
            ExternalKind::Customer => &self.customers,
            ExternalKind::Agent => &self.agents,
        };
        let cache_key = (org_id, name.to_owned());
        if let Some(id) = cache.get(&cache_key).await {
            return Ok(id);
        }
        let mut conn = self.pool.get().await?;
        let ids = store::usage::resolve_external_ids(&mut conn, kind, org_id, &[name.to_owned()]).await?;
        let id = ids
            .get(name)
            .copied()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("{name} was not created")))?;
        cache.insert(cache_key, id).await;
        Ok(id)
    }

    /// Creates the partitions of today and the next `days_ahead` days ahead of need, so
    /// ingestion rarely creates one on its path. Run at start-up and every hour.
    pub async fn prepare_partitions(&self, days_ahead: u32) -> AppResult<()> {
        let mut conn = self.pool.get().await?;
        let today = Utc::now().date_naive();
        for day in today.iter_days().take(days_ahead as usize + 1) {
            self.ensure_partition(&mut conn, day).await?;
        }
        Ok(())
    }

    /// Makes sure `day`'s partition exists. Today's and later partitions are never
    /// dropped by the retention purge (every retention keeps today), so they are
    /// remembered; an earlier day's may have been dropped by any instance since, and
    /// an organization whose retention grew may send events for it again, so it is
    /// checked every time (late events are few).
    async fn ensure_partition(&self, conn: &mut DbConn, day: NaiveDate) -> AppResult<()> {
        let rememberable = day >= Utc::now().date_naive();
        if rememberable && self.partitions.contains_key(&day) {
            return Ok(());
        }
        store::partitions::ensure_day(conn, day).await?;
        if rememberable {
            self.partitions.insert(day, ()).await;
        }
        Ok(())
    }

    /// The one transaction: customers and agents, request ids, events, roll-ups, the
    /// spend ledger and the customer cost ledger. Returns the claimed request ids, the customer/agent ids
    /// resolved from the database (cached only once committed) and the spend committed.
    /// The stored events' bodies and metadata are moved out of `batch` into the rows
    /// (a large batch holds megabytes of them: not copied once more).
    async fn write(&self, conn: &mut DbConn, key: &KeyIdentity, batch: &mut [Pending]) -> AppResult<Written> {
        let (known_customers, missing_customers) = self
            .split_known(
                &self.customers,
                key.org_id,
                batch.iter().filter_map(|p| p.priced.event.customer.clone()),
            )
            .await;
        let (known_agents, missing_agents) = self
            .split_known(
                &self.agents,
                key.org_id,
                batch.iter().filter_map(|p| p.priced.event.agent.clone()),
            )
            .await;
        conn.transaction(async |conn| {
            let new_customers =
                store::usage::resolve_external_ids(conn, ExternalKind::Customer, key.org_id, &missing_customers)
                    .await?;
            let new_agents =
                store::usage::resolve_external_ids(conn, ExternalKind::Agent, key.org_id, &missing_agents).await?;
            // Sorted, like every multi-row write here, so concurrent batches that share
            // keys take their locks in the same order and cannot deadlock.
            let mut claims: Vec<Claim> = batch
                .iter()
                .map(|p| Claim {
                    request_id: p.priced.event.request_id.clone(),
                    event_id: p.id,
                    occurred_at: p.priced.event.occurred_at,
                    fingerprint: p.fingerprint,
                })
                .collect();
            claims.sort_unstable_by(|a, b| a.request_id.cmp(&b.request_id));
            let claimed = store::usage::claim_request_ids(conn, key.org_id, &claims).await?;
            let rows: Vec<EventRow> = batch
                .iter_mut()
                .filter(|p| claimed.contains(&p.priced.event.request_id))
                .map(|p| {
                    let lookup = |name: &Option<String>, known: &HashMap<String, Uuid>, new: &HashMap<String, Uuid>| {
                        name.as_ref().and_then(|n| known.get(n).or_else(|| new.get(n)).copied())
                    };
                    let e = &p.priced.event;
                    let customer_id = lookup(&e.customer, &known_customers, &new_customers);
                    let agent_id = lookup(&e.agent, &known_agents, &new_agents);
                    event_row(p.id, &mut p.priced, customer_id, agent_id)
                })
                .collect();
            let shard = self.next_shard();
            // Every aggregate first, then the writes pipelined: sent together on the
            // connection, in this order, which is the order PostgreSQL runs them in
            // (the lock order below holds), with one wait for all the answers instead
            // of one round trip each.
            let daily = rollups::aggregate::<Daily>(key, &rows, shard);
            let hourly = rollups::aggregate::<Hourly>(key, &rows, shard);
            let models = rollups::aggregate::<DailyModels>(key, &rows, shard);
            let entities = entity_rollups::aggregate(&rows);
            let spend = ledger::aggregate(key, &rows)?;
            let costs = customer_costs::aggregate(&rows);
            let shared: &DbConn = conn;
            futures_util::try_join!(
                store::usage::insert_events(shared, key, &rows),
                // Daily, then hourly: one lock order across the roll-up tables.
                store::usage::upsert_rollups::<Daily>(shared, key.org_id, &daily),
                store::usage::upsert_rollups::<Hourly>(shared, key.org_id, &hourly),
                // The coarse table, then the per-entity roll-ups.
                store::usage::upsert_rollups::<DailyModels>(shared, key.org_id, &models),
                // The per-entity reports' narrow roll-ups.
                store::entity_rollups::add(shared, key.org_id, shard, &entities),
                // After the roll-ups in every transaction: one lock order across tables.
                store::spend_ledger::add(shared, key.org_id, shard, &spend.by_scope),
                // Last: the per-customer cost ledger invoices are made from.
                store::customer_costs::add(shared, key.org_id, shard, &costs),
            )?;
            Ok::<_, AppError>(Written {
                claimed,
                new_customers,
                new_agents,
                spend,
            })
        })
        .await
    }

    /// Splits the distinct names into those whose ids are cached and those to resolve
    /// (sorted, for lock order).
    async fn split_known(
        &self,
        cache: &Cache<(Uuid, String), Uuid>,
        org_id: Uuid,
        names: impl Iterator<Item = String>,
    ) -> (HashMap<String, Uuid>, Vec<String>) {
        let mut known = HashMap::new();
        let mut missing = Vec::new();
        for name in names.collect::<BTreeSet<String>>() {
            match cache.get(&(org_id, name.clone())).await {
                Some(id) => {
                    known.insert(name, id);
                }
                None => missing.push(name),
            }
        }
        (known, missing)
    }
}

fn event_error(message: String) -> FieldError {
    FieldError {
        field: "event".into(),
        message,
    }
}

/// A UUIDv7 carrying the event time, so a lookup by id knows its daily partition.
pub fn event_id(occurred_at: DateTime<Utc>) -> Uuid {
    let seconds = u64::try_from(occurred_at.timestamp()).unwrap_or_default();
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        seconds,
        occurred_at.timestamp_subsec_nanos(),
    ))
}

/// The millisecond an event id was minted for (see [`event_id`]).
pub fn event_time(id: Uuid) -> Option<DateTime<Utc>> {
    let (seconds, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)
}

/// The stored row of an event; its metadata and bodies are moved out of `p`.
fn event_row(id: Uuid, p: &mut PricedEvent, customer_id: Option<Uuid>, agent_id: Option<Uuid>) -> EventRow {
    let metadata = p.event.metadata.take();
    let request_body = p.event.request_body.take();
    let response_body = p.event.response_body.take();
    let e = &p.event;
    let c = &p.cost;
    EventRow {
        id,
        occurred_at: e.occurred_at,
        request_id: e.request_id.clone(),
        customer_id,
        agent_id,
        endpoint: e.endpoint.clone(),
        provider: e.provider.clone(),
        model: e.model.clone(),
        canonical_model: p.canonical_model.clone(),
        status: e.status,
        error_code: e.error_code.clone(),
        prompt_tokens: e.prompt_tokens,
        completion_tokens: e.completion_tokens,
        cached_tokens: e.cached_tokens,
        cache_write_5m_tokens: e.cache_write_5m_tokens,
        cache_write_1h_tokens: e.cache_write_1h_tokens,
        reasoning_tokens: e.reasoning_tokens,
        audio_input_tokens: e.audio_input_tokens,
        audio_output_tokens: e.audio_output_tokens,
        images: e.images,
        input_images: e.input_images,
        latency_ms: e.latency_ms,
        ttft_ms: e.ttft_ms,
        cache_hit: e.cache_hit,
        retries: e.retries,
        started_at: e.started_at,
        ended_at: e.ended_at,
        metadata,
        request_body,
        response_body,
        bodies_truncated: e.bodies_truncated,
        billing_source: p.billing_source,
        unpriced: p.price_id.is_none(),
        price_id: p.price_id,
        input_cost: c.input,
        output_cost: c.output,
        cached_input_cost: c.cached_input,
        cache_write_5m_cost: c.cache_write_5m,
        cache_write_1h_cost: c.cache_write_1h,
        reasoning_cost: c.reasoning,
        audio_input_cost: c.audio_input,
        audio_output_cost: c.audio_output,
        request_cost: c.request,
        image_cost: c.image,
        image_input_cost: c.image_input,
        image_output_cost: c.image_output,
        data_storage_cost: c.data_storage,
        cost_before_discount: c.before_discount,
        discount_id: p.discount_id,
        discount_percent: c.discount_percent,
        discount_savings: c.discount_savings,
        cost: c.total,
        call_type: e.call_type.clone(),
        model_id: e.model_id.clone(),
        api_base: e.api_base.clone(),
        client_ip: e.client_ip.clone(),
        tags: (!e.tags.is_empty()).then(|| serde_json::json!(e.tags)),
        gateway_overhead_ms: e.gateway_overhead_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_carry_their_time_to_the_millisecond() {
        let at = DateTime::parse_from_rfc3339("2026-03-04T05:06:07.891234Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = event_id(at);
        assert_eq!(event_time(id).unwrap().timestamp_millis(), at.timestamp_millis());
        assert_ne!(event_id(at), id, "ids for the same instant are still unique");
    }
}
