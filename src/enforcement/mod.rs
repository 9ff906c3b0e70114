//! "Who may still spend": the authorize check and the settling of usage into the hot
//! counters. Rules come from PostgreSQL (cached per instance for a short time),
//! counters from Redis (see [`crate::counters`]), and every denial (plus a sample of
//! allowed calls) goes to the decision log.

pub mod alerts;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use moka::future::Cache;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{
    config::RedisDownPolicy,
    counters::{
        keys::{period_lifetime, period_tag, PERIODS},
        AuthorizeCall, BudgetLimit, Counters, DenyReason, ScopeLimits, ScopeReading, ScopeRef, Settlement, Verdict,
    },
    domain::{
        budget::BudgetScope,
        decision::{DecisionReason, LimitKind, ScopeSnapshot},
        identity::KeyIdentity,
        micros::{from_micros, to_micros},
        pricing::{compute_cost, Quantities},
        unpriced::UnpricedModels,
    },
    error::{AppError, AppResult},
    ingest::CommittedSpend,
    jobs::{decision_log::DecisionLog, outbox::Wakeup},
    price_book::PriceBook,
    store::{
        self,
        decisions::DecisionRow,
        limits::{CallScopes, ScopeRules},
        DbPool,
    },
};

#[derive(Debug, Clone)]
pub struct EnforcementSettings {
    /// How long a reservation waits for its usage event before it lapses.
    pub reservation_ttl: chrono::Duration,
    /// How long this instance reuses budgets, rate limits and blocks it read: a change
    /// made through another instance applies here within this time. Rules in use are
    /// re-read in the background from three quarters of this age, so calls do not wait.
    pub rules_ttl: Duration,
    pub when_redis_down: RedisDownPolicy,
    /// One allowed call in this many is logged (denials always are); 0 logs none.
    pub allow_sample_every: u64,
}

/// One call the gateway asks about.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub key: KeyIdentity,
    pub request_id: String,
    /// The tenant's own customer and agent ids, and the ids they were resolved to.
    pub customer: Option<(String, Uuid)>,
    pub agent: Option<(String, Uuid)>,
    pub endpoint: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub estimated_cost: Decimal,
    pub estimated_tokens: i64,
    /// Whether the named model has a price in force; `None` when the call names no
    /// provider and model.
    pub model_priced: Option<bool>,
}

/// One scope of a decided call: its rules and its counters before this call.
#[derive(Debug, Clone)]
pub struct ScopeStatus {
    pub scope: BudgetScope,
    pub scope_id: Uuid,
    pub rules: ScopeRules,
    pub reading: ScopeReading,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub reason: DecisionReason,
    /// Index into `scopes` of the scope that decided a denial.
    pub deciding: Option<usize>,
    pub scopes: Vec<ScopeStatus>,
    pub decided_at: DateTime<Utc>,
    /// The counters could not be read (Redis down) and the policy let the call through.
    pub degraded: bool,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.reason == DecisionReason::Allowed
    }
}

type CallRules = Arc<Vec<(BudgetScope, Uuid, ScopeRules)>>;

/// The rules of one set of call scopes, and when they were read.
#[derive(Clone)]
struct CachedRules {
    rules: CallRules,
    read_at: Instant,
}

#[derive(Clone)]
pub struct Enforcer {
    pool: DbPool,
    counters: Counters,
    prefix: Arc<str>,
    rules: Cache<CallScopes, CachedRules>,
    /// Scope sets whose rules are being re-read ahead of their expiry.
    refreshing: Arc<Mutex<HashSet<CallScopes>>>,
    /// Counts [`Enforcer::forget_rules`] calls: a re-read that overlapped one is
    /// dropped, so it cannot put back rules read before the change.
    forgets: Arc<AtomicU64>,
    /// The catalog and organizations' overrides, for estimates: the same cache the
    /// ingest path prices events with.
    prices: PriceBook,
    /// organization → its policy for unpriced models, read only when a call names an
    /// unpriced model, kept like the rules and forgotten with them.
    unpriced_policies: Cache<Uuid, UnpricedModels>,
    decisions: DecisionLog,
    /// Wakes this instance's outbox worker when alerts were queued.
    outbox: Wakeup,
    settings: EnforcementSettings,
    allowed_seen: Arc<AtomicU64>,
    /// Organizations whose usage this instance could not settle into Redis: their
    /// counters are rebuilt from the ledger before they are next read. With each, the
    /// request ids of that usage: their reservations (if Redis kept them) are
    /// released by the rebuild, as the settling would have done, or the ledger's
    /// spend and the reservation would both count until the reservation lapsed.
    stale: Arc<Mutex<HashMap<Uuid, Vec<String>>>>,
}

/// Request ids kept per stale organization for releasing their reservations; past
/// this, reservations lapse after `reservation_ttl` on their own.
const MAX_UNSETTLED_IDS: usize = 10_000;

impl Enforcer {
    pub fn new(
        pool: DbPool,
        prices: PriceBook,
        counters: Counters,
        prefix: &str,
        decisions: DecisionLog,
        outbox: Wakeup,
        settings: EnforcementSettings,
    ) -> Self {
        Self {
            pool,
            counters,
            prefix: prefix.into(),
            rules: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(settings.rules_ttl)
                .support_invalidation_closures()
                .build(),
            refreshing: Arc::default(),
            forgets: Arc::default(),
            prices,
            unpriced_policies: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(settings.rules_ttl)
                .support_invalidation_closures()
                .build(),
            decisions,
            outbox,
            settings,
            allowed_seen: Arc::new(AtomicU64::new(0)),
            stale: Arc::default(),
        }
    }

    /// Where this instance's decisions are logged.
    pub fn decision_log(&self) -> &DecisionLog {
        &self.decisions
    }

    /// Forgets this instance's cached rules of an organization after a change to its
    /// budgets, rate limits, blocks or unpriced-model policy (other instances follow
    /// within `rules_ttl`).
    pub fn forget_rules(&self, org_id: Uuid) {
        self.forgets.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self
            .rules
            .invalidate_entries_if(move |scopes, _| scopes.org_id == org_id)
        {
            tracing::warn!(error = %e, "could not invalidate cached budget rules");
        }
        if let Err(e) = self
            .unpriced_policies
            .invalidate_entries_if(move |org, _| *org == org_id)
        {
            tracing::warn!(error = %e, "could not invalidate a cached unpriced-model policy");
        }
    }

    /// The rules of a call's scopes: cached for `rules_ttl`, and re-read in the
    /// background once three quarters that old, so that scopes in steady use never make a call
    /// wait for PostgreSQL (with 50 customers at 2,000 calls/s, reading on expiry put
    /// a query in front of 2.5 % of the calls). No entry is served older than
    /// `rules_ttl` either way.
    async fn rules_for(&self, scopes: CallScopes) -> AppResult<CallRules> {
        let pool = self.pool.clone();
        let cached = self
            .rules
            .try_get_with(scopes, async move {
                let rules = read_rules(pool, scopes).await?;
                Ok::<_, AppError>(CachedRules {
                    rules,
                    read_at: Instant::now(),
                })
            })
            .await
            .map_err(|e| AppError::unavailable(anyhow::anyhow!("budget rules: {e}")))?;
        let ttl = self.settings.rules_ttl;
        if !ttl.is_zero() && cached.read_at.elapsed() >= ttl * 3 / 4 {
            self.reread_rules(scopes);
        }
        Ok(cached.rules)
    }

    /// Re-reads a scope set's rules in the background (once at a time per set).
    fn reread_rules(&self, scopes: CallScopes) {
        let started = self
            .refreshing
            .lock()
            .map(|mut refreshing| refreshing.insert(scopes))
            .unwrap_or(false);
        if !started {
            return;
        }
        let (pool, rules, refreshing, forgets) = (
            self.pool.clone(),
            self.rules.clone(),
            self.refreshing.clone(),
            self.forgets.clone(),
        );
        let forgets_before = forgets.load(Ordering::SeqCst);
        tokio::spawn(async move {
            match read_rules(pool, scopes).await {
                Ok(fresh) if forgets.load(Ordering::SeqCst) == forgets_before => {
                    rules
                        .insert(
                            scopes,
                            CachedRules {
                                rules: fresh,
                                read_at: Instant::now(),
                            },
                        )
                        .await;
                    // A forget between the check and the insert: drop what was read.
                    if forgets.load(Ordering::SeqCst) != forgets_before {
                        rules.invalidate(&scopes).await;
                    }
                }
                // Rules changed meanwhile: the next call reads them afresh.
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not re-read budget rules; they are read again on expiry"),
            }
            if let Ok(mut refreshing) = refreshing.lock() {
                refreshing.remove(&scopes);
            }
        });
    }

    /// What a call of `tokens` on a model is expected to cost for the organization, at
    /// the price it pays before any discount — its override in force, else the
    /// catalog's list price — so a reservation errs on the high side; `None` for a model
    /// with neither in force.
    pub async fn estimate_cost(
        &self,
        org_id: Uuid,
        provider: &str,
        model: &str,
        prompt_tokens: i64,
        completion_tokens: i64,
        now: DateTime<Utc>,
    ) -> AppResult<Option<Decimal>> {
        let providers: Arc<[String]> = Arc::new([provider.to_owned()]);
        let catalog = self.prices.catalog(providers.clone()).await?;
        let overrides = self.prices.overrides(org_id, providers, &catalog).await?;
        let quantities = Quantities {
            prompt_tokens,
            completion_tokens,
            ..Quantities::default()
        };
        let Some(entry) = catalog.lookup_for(&overrides, provider, model, now) else {
            return Ok(None);
        };
        Ok(Some(
            compute_cost(&quantities, Some(&entry.price), Decimal::ZERO, Decimal::ZERO)
                .map(|cost| cost.total)
                .unwrap_or_default(),
        ))
    }

    async fn unpriced_policy(&self, org_id: Uuid) -> AppResult<UnpricedModels> {
        let pool = self.pool.clone();
        self.unpriced_policies
            .try_get_with(org_id, async move {
                let mut conn = pool.get().await?;
                store::orgs::unpriced_models(&mut conn, org_id).await
            })
            .await
            .map_err(|e| AppError::unavailable(anyhow::anyhow!("unpriced-model policy: {e}")))
    }

    /// Decides one call: blocks first, then every budget and rate limit of its scopes,
    /// checked and reserved in one atomic Redis step.
    pub async fn authorize(&self, call: &CallRequest, now: DateTime<Utc>) -> AppResult<Decision> {
        let scopes = CallScopes {
            org_id: call.key.org_id,
            project_id: call.key.project_id,
            api_key_id: call.key.key_id,
            customer_id: call.customer.as_ref().map(|c| c.1),
            agent_id: call.agent.as_ref().map(|a| a.1),
        };
        let rules = self.rules_for(scopes).await?;
        let mut decision = Decision {
            reason: DecisionReason::Allowed,
            deciding: None,
            scopes: rules
                .iter()
                .map(|(scope, id, rules)| ScopeStatus {
                    scope: *scope,
                    scope_id: *id,
                    rules: rules.clone(),
                    reading: ScopeReading::default(),
                })
                .collect(),
            decided_at: now,
            degraded: false,
        };
        if let Some(i) = decision.scopes.iter().position(|s| s.rules.blocked) {
            decision.reason = match decision.scopes[i].scope {
                BudgetScope::Agent => DecisionReason::AgentBlocked,
                _ => DecisionReason::CustomerBlocked,
            };
            decision.deciding = Some(i);
            self.log(call, &decision);
            return Ok(decision);
        }
        // Checked before the counters, so a denied call reserves nothing; the policy is
        // read only for a call to an unpriced model, so priced calls cost no lookup.
        let unpriced = call.model_priced == Some(false);
        if unpriced && self.unpriced_policy(call.key.org_id).await?.denies(call.model_priced) {
            decision.reason = DecisionReason::UnpricedModel;
            decision.deciding = decision
                .scopes
                .iter()
                .position(|s| s.scope == BudgetScope::Organization);
            self.log(call, &decision);
            return Ok(decision);
        }
        let limits: Vec<ScopeLimits> = rules
            .iter()
            .map(|(scope, id, rules)| ScopeLimits {
                scope: ScopeRef { kind: *scope, id: *id },
                budget: rules.budget.as_ref().map(|b| BudgetLimit {
                    period_tag: period_tag(b.period, now),
                    amount_micros: to_micros(b.amount).unwrap_or(i64::MAX),
                    hard: b.hard_limit,
                }),
                requests_per_minute: rules.requests_per_minute,
                tokens_per_minute: rules.tokens_per_minute,
            })
            .collect();
        let ask = AuthorizeCall {
            org: call.key.org_id,
            request_id: &call.request_id,
            scopes: &limits,
            estimated_cost_micros: to_micros(call.estimated_cost).unwrap_or(i64::MAX),
            estimated_tokens: call.estimated_tokens,
            now,
            reservation_ttl: self.settings.reservation_ttl,
        };
        let stale = self
            .stale
            .lock()
            .map(|s| s.contains_key(&call.key.org_id))
            .unwrap_or(false);
        if stale {
            // On failure the organization stays stale, and the counters most likely
            // cannot be read either: the policy for Redis being down answers below.
            let _ = self.rebuild(call.key.org_id, now).await;
        }
        let answer = match self.counters.authorize(&ask).await {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => {
                // The counters were lost (restart, flush, failover): rebuild them from
                // the ledger, then ask once more.
                self.rebuild(call.key.org_id, now).await?;
                match self.counters.authorize(&ask).await {
                    Ok(Some(answer)) => Ok(answer),
                    Ok(None) => Err(None),
                    Err(e) => Err(Some(e)),
                }
            }
            Err(e) => Err(Some(e)),
        };
        match answer {
            Ok(answer) => {
                for (status, reading) in decision.scopes.iter_mut().zip(answer.readings) {
                    status.reading = reading;
                }
                if let Verdict::Deny { reason, scope } = answer.verdict {
                    decision.reason = match reason {
                        DenyReason::BudgetExceeded => DecisionReason::BudgetExceeded,
                        DenyReason::RateLimitedRequests => DecisionReason::RateLimitedRequests,
                        DenyReason::RateLimitedTokens => DecisionReason::RateLimitedTokens,
                    };
                    decision.deciding = Some(scope);
                }
            }
            Err(error) => {
                tracing::warn!(error = ?error.map(|e| e.to_string()), "budget counters unavailable");
                decision.degraded = true;
                if self.settings.when_redis_down == RedisDownPolicy::Closed {
                    decision.reason = DecisionReason::CountersUnavailable;
                }
            }
        }
        self.log(call, &decision);
        Ok(decision)
    }

    /// Adds committed usage to the counters. Failures are logged, not returned: the
    /// usage is committed in PostgreSQL, and counters are rebuilt from there.
    pub async fn settle(&self, key: &KeyIdentity, spend: &CommittedSpend, now: DateTime<Utc>) {
        if spend.is_empty() {
            return;
        }
        let mut settlement = Settlement::new(&self.prefix, spend.org_id);
        // What the transaction summed per scope and day, rather than event by event.
        for delta in &spend.by_scope {
            let scope = ScopeRef {
                kind: delta.scope,
                id: delta.scope_id,
            };
            settlement.add_spend(scope, delta.day, delta.cost_micros);
            settlement.add_tokens(scope, delta.tokens, now);
        }
        // Calls of the same customer and agent count in the same scopes.
        let mut calls: BTreeMap<(Option<Uuid>, Option<Uuid>), Vec<String>> = BTreeMap::new();
        for event in &spend.events {
            calls
                .entry((event.customer_id, event.agent_id))
                .or_default()
                .push(event.request_id.clone());
        }
        for ((customer_id, agent_id), request_ids) in calls {
            let call = CallScopes {
                org_id: key.org_id,
                project_id: key.project_id,
                api_key_id: key.key_id,
                customer_id,
                agent_id,
            };
            let scopes: Vec<ScopeRef> = call
                .scopes()
                .into_iter()
                .map(|(kind, id)| ScopeRef { kind, id })
                .collect();
            settlement.add_requests(request_ids, &scopes, now);
        }
        if let Err(e) = self.counters.settle(&settlement).await {
            tracing::warn!(error = %e, org_id = %spend.org_id, "could not settle usage into the counters");
            // The usage is in PostgreSQL but not in the counters: rebuild them from the
            // ledger once Redis answers again.
            self.mark_stale(spend.org_id, spend.events.iter().map(|e| e.request_id.clone()));
        }
    }

    fn mark_stale(&self, org_id: Uuid, unsettled: impl IntoIterator<Item = String>) {
        if let Ok(mut stale) = self.stale.lock() {
            let ids = stale.entry(org_id).or_default();
            let room = MAX_UNSETTLED_IDS.saturating_sub(ids.len());
            ids.extend(unsettled.into_iter().take(room));
        }
    }

    /// Up to this many distinct (customer, agent) pairs, the budget-alert check after usage
    /// reads their rules from the per-call cache; more (a batch), with one query.
    const FEW_CALLS: usize = 32;

    /// Queues alert emails for every budget of the scopes this usage touched whose
    /// thresholds are now reached. Usage of one call reads the cached rules of its
    /// scopes (so a call without budgets costs no query); a batch reads the rules of
    /// all its scopes in one query.
    pub async fn alert_after_usage(&self, key: &KeyIdentity, spend: &CommittedSpend, now: DateTime<Utc>) {
        let result = async {
            let calls: std::collections::BTreeSet<(Option<Uuid>, Option<Uuid>)> =
                spend.events.iter().map(|e| (e.customer_id, e.agent_id)).collect();
            let call_scopes = |(customer_id, agent_id): (Option<Uuid>, Option<Uuid>)| CallScopes {
                org_id: key.org_id,
                project_id: key.project_id,
                api_key_id: key.key_id,
                customer_id,
                agent_id,
            };
            let rules: Vec<(BudgetScope, Uuid, ScopeRules)> = match calls.len() {
                0 => return Ok(0),
                1 => {
                    let only = calls.into_iter().next().map(call_scopes);
                    match only {
                        Some(scopes) => self.rules_for(scopes).await?.as_ref().clone(),
                        None => return Ok(0),
                    }
                }
                // A few calls (a group of coalesced single events): the rules each
                // call's authorize read, cached, instead of a read of their own.
                n if n <= Self::FEW_CALLS => {
                    let mut merged: Vec<(BudgetScope, Uuid, ScopeRules)> = Vec::new();
                    for call in calls {
                        for rule in self.rules_for(call_scopes(call)).await?.iter() {
                            if !merged.iter().any(|(scope, id, _)| (*scope, *id) == (rule.0, rule.1)) {
                                merged.push(rule.clone());
                            }
                        }
                    }
                    merged
                }
                _ => {
                    let mut scopes: Vec<(BudgetScope, Uuid)> = Vec::new();
                    for call in calls {
                        for scope in call_scopes(call).scopes() {
                            if !scopes.contains(&scope) {
                                scopes.push(scope);
                            }
                        }
                    }
                    let mut conn = self.pool.get().await?;
                    store::limits::rules_for_scopes(&mut conn, key.org_id, &scopes).await?
                }
            };
            let budgets: Vec<_> = rules
                .into_iter()
                .filter_map(|(scope, id, rules)| rules.budget.map(|b| (scope, id, b)))
                .collect();
            if budgets.is_empty() {
                return Ok(0);
            }
            let mut conn = self.pool.get().await?;
            alerts::queue_reached(&mut conn, key.org_id, &budgets, now).await
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(queued) => {
                tracing::info!(queued, org_id = %key.org_id, "budget alerts queued");
                self.outbox.notify();
            }
            Err(e) => tracing::warn!(error = %e, org_id = %key.org_id, "could not check budget alerts"),
        }
    }

    /// Sets an organization's spend counters from the ledger, after releasing the
    /// reservations of usage this instance could not settle (the ledger holds that
    /// usage now). Usage whose settling fails meanwhile marks the organization stale
    /// again; a failed rebuild leaves it stale.
    pub async fn rebuild(&self, org_id: Uuid, now: DateTime<Utc>) -> AppResult<()> {
        let unsettled = self.stale.lock().ok().and_then(|mut s| s.remove(&org_id));
        let rebuilt = self
            .rebuild_from_ledger(org_id, unsettled.as_deref().unwrap_or_default(), now)
            .await;
        if rebuilt.is_err() {
            if let Some(ids) = unsettled {
                self.mark_stale(org_id, ids);
            }
        }
        rebuilt
    }

    async fn rebuild_from_ledger(&self, org_id: Uuid, unsettled: &[String], now: DateTime<Utc>) -> AppResult<()> {
        let unavailable = |e: redis::RedisError| AppError::unavailable(anyhow::anyhow!("rebuilding counters: {e}"));
        if !unsettled.is_empty() {
            self.counters.release(org_id, unsettled).await.map_err(unavailable)?;
        }
        let mut conn = self.pool.get().await?;
        let values = store::limits::ledger_counters(&mut conn, org_id, now).await?;
        drop(conn);
        let spend: Vec<(ScopeRef, String, i64, i64)> = values
            .into_iter()
            .flat_map(|(kind, id, micros)| {
                PERIODS.into_iter().zip(micros).map(move |(period, value)| {
                    (
                        ScopeRef { kind, id },
                        period_tag(period, now),
                        value,
                        period_lifetime(period, now),
                    )
                })
            })
            .collect();
        self.counters.rebuild(org_id, &spend).await.map_err(unavailable)
    }

    fn log(&self, call: &CallRequest, decision: &Decision) {
        let allowed = decision.allowed();
        let sampled = allowed && {
            let every = self.settings.allow_sample_every;
            every > 0 && self.allowed_seen.fetch_add(1, Ordering::Relaxed).is_multiple_of(every)
        };
        if allowed && !sampled {
            return;
        }
        self.decisions.record(decision_row(call, decision, sampled));
    }
}

async fn read_rules(pool: DbPool, scopes: CallScopes) -> AppResult<CallRules> {
    let mut conn = pool.get().await?;
    store::limits::for_call(&mut conn, &scopes).await.map(Arc::new)
}

fn decision_row(call: &CallRequest, decision: &Decision, sampled: bool) -> DecisionRow {
    let deciding = decision.deciding.and_then(|i| decision.scopes.get(i));
    let (limit_kind, limit_value, counter_value, reserved_value) = match (decision.reason, deciding) {
        (DecisionReason::BudgetExceeded, Some(s)) => (
            Some(LimitKind::Budget),
            s.rules.budget.as_ref().map(|b| b.amount),
            Some(from_micros(s.reading.spent_micros)),
            Some(from_micros(s.reading.reserved_micros)),
        ),
        (DecisionReason::RateLimitedRequests, Some(s)) => (
            Some(LimitKind::RequestsPerMinute),
            s.rules.requests_per_minute.map(Decimal::from),
            Some(Decimal::from(s.reading.requests_this_minute)),
            None,
        ),
        (DecisionReason::RateLimitedTokens, Some(s)) => (
            Some(LimitKind::TokensPerMinute),
            s.rules.tokens_per_minute.map(Decimal::from),
            Some(Decimal::from(s.reading.tokens_this_minute)),
            None,
        ),
        _ => (None, None, None, None),
    };
    let snapshots: Vec<ScopeSnapshot> = decision
        .scopes
        .iter()
        .map(|s| ScopeSnapshot {
            scope: s.scope.as_str().to_owned(),
            scope_id: s.scope_id,
            budget_micros: s.rules.budget.as_ref().and_then(|b| to_micros(b.amount)),
            spent_micros: s.reading.spent_micros,
            reserved_micros: s.reading.reserved_micros,
            requests_per_minute: s.rules.requests_per_minute,
            requests_this_minute: s.reading.requests_this_minute,
            tokens_per_minute: s.rules.tokens_per_minute,
            tokens_this_minute: s.reading.tokens_this_minute,
        })
        .collect();
    DecisionRow {
        org_id: call.key.org_id,
        id: Uuid::now_v7(),
        decided_at: decision.decided_at,
        request_id: Some(call.request_id.clone()),
        project_id: call.key.project_id,
        api_key_id: call.key.key_id,
        customer: call.customer.as_ref().map(|c| c.0.clone()),
        agent: call.agent.as_ref().map(|a| a.0.clone()),
        endpoint: call.endpoint.clone(),
        provider: call.provider.clone(),
        model: call.model.clone(),
        allowed: decision.allowed(),
        reason: decision.reason.as_str().to_owned(),
        scope: deciding.map(|s| s.scope.as_str().to_owned()),
        scope_id: deciding.map(|s| s.scope_id),
        limit_kind: limit_kind.map(|k| <&'static str>::from(k).to_owned()),
        limit_value,
        counter_value,
        reserved_value,
        estimated_cost: Some(call.estimated_cost),
        estimated_tokens: Some(call.estimated_tokens),
        scopes: serde_json::to_value(snapshots).unwrap_or_default(),
        sampled,
    }
}
