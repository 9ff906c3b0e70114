//! Hot counters in Redis: settled spend per scope and period, reservations of calls
//! in flight, and per-minute request and token windows. PostgreSQL stays the truth:
//! every counter can be rebuilt from the spend ledger.
//!
//! Amounts are integer micro-USD (1 USD = 1,000,000), each event's cost rounded up,
//! so a counter never reads less than the ledger's exact sum. The Lua scripts are
//! the only code that changes counters; each runs atomically on one slot (see
//! [`keys`]).

pub mod connect;
pub mod keys;

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use redis::{aio::ConnectionManager, RedisResult, Script};
use uuid::Uuid;

use keys::{minute_of, period_lifetime, period_tag, MINUTE_WINDOW_MS, PERIODS};
pub use keys::{OrgKeys, ScopeRef};

/// The authorize script as Redis runs it: the shared reservation helpers, then the
/// check. Public for the benchmark, which runs the same script on raw Redis.
pub const AUTHORIZE_SCRIPT: &str = concat!(include_str!("reservations.lua"), include_str!("authorize.lua"));
const SETTLE_SCRIPT: &str = concat!(include_str!("reservations.lua"), include_str!("settle.lua"));
const RELEASE_SCRIPT: &str = concat!(include_str!("reservations.lua"), include_str!("release.lua"));

/// A budget that applies to a scope, for the period in force now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLimit {
    /// Which period counter it reads (see [`keys::period_tag`]).
    pub period_tag: String,
    pub amount_micros: i64,
    /// Hard budgets deny at 100 %; soft ones only alert.
    pub hard: bool,
}

/// Everything that limits one scope of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeLimits {
    pub scope: ScopeRef,
    pub budget: Option<BudgetLimit>,
    pub requests_per_minute: Option<i64>,
    pub tokens_per_minute: Option<i64>,
}

/// A call the gateway asks about.
#[derive(Debug, Clone)]
pub struct AuthorizeCall<'a> {
    pub org: Uuid,
    pub request_id: &'a str,
    pub scopes: &'a [ScopeLimits],
    pub estimated_cost_micros: i64,
    pub estimated_tokens: i64,
    pub now: DateTime<Utc>,
    /// How long the reservation waits for the call's usage event.
    pub reservation_ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum DenyReason {
    BudgetExceeded,
    RateLimitedRequests,
    RateLimitedTokens,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// `scope` indexes the call's scopes.
    Deny {
        reason: DenyReason,
        scope: usize,
    },
}

/// One scope's counters as the script saw them, before this call's reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScopeReading {
    pub spent_micros: i64,
    pub reserved_micros: i64,
    pub requests_this_minute: i64,
    pub tokens_this_minute: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub verdict: Verdict,
    /// In the order of the call's scopes.
    pub readings: Vec<ScopeReading>,
}

#[derive(Clone)]
pub struct Counters {
    conn: ConnectionManager,
    prefix: Arc<str>,
    authorize: Arc<Script>,
    settle: Arc<Script>,
    release: Arc<Script>,
}

impl Counters {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            authorize: Arc::new(Script::new(AUTHORIZE_SCRIPT)),
            settle: Arc::new(Script::new(SETTLE_SCRIPT)),
            release: Arc::new(Script::new(RELEASE_SCRIPT)),
        }
    }

    pub fn keys(&self, org: Uuid) -> OrgKeys {
        OrgKeys::new(&self.prefix, org)
    }

    /// Checks and reserves in one round trip. `None` means the organization's
    /// counters are gone: rebuild them from the ledger and ask again.
    pub async fn authorize(&self, call: &AuthorizeCall<'_>) -> RedisResult<Option<Authorization>> {
        let keys = self.keys(call.org);
        let minute = minute_of(call.now);
        let now_ms = call.now.timestamp_millis();
        let mut invocation = self.authorize.prepare_invoke();
        invocation
            .key(keys.ready())
            .key(keys.reservations_by_expiry())
            .key(keys.reservations());
        for limits in call.scopes {
            let period = limits.budget.as_ref().map_or("t", |b| b.period_tag.as_str());
            invocation
                .key(keys.spend(limits.scope, period))
                .key(keys.reserved(limits.scope))
                .key(keys.requests_in_minute(limits.scope, minute))
                .key(keys.tokens_in_minute(limits.scope, minute));
        }
        invocation
            .arg(now_ms)
            .arg(call.request_id)
            .arg(call.estimated_cost_micros)
            .arg(call.estimated_tokens)
            .arg(now_ms + call.reservation_ttl.num_milliseconds())
            .arg(MINUTE_WINDOW_MS);
        for limits in call.scopes {
            invocation
                .arg(limits.budget.as_ref().map_or(-1, |b| b.amount_micros))
                .arg(u8::from(limits.budget.as_ref().is_some_and(|b| b.hard)))
                .arg(limits.requests_per_minute.unwrap_or(-1))
                .arg(limits.tokens_per_minute.unwrap_or(-1));
        }
        // Asking twice is safe: the script first releases the request's own reservation.
        let reply: Vec<redis::Value> = again_if_reconnected(|| {
            let mut conn = self.conn.clone();
            let invocation = &invocation;
            async move { invocation.invoke_async(&mut conn).await }
        })
        .await?;
        parse_authorization(&reply, call.scopes.len())
    }

    /// Adds committed usage to the counters and releases the reservations of the
    /// calls that reported. `false` means the spend counters are gone: the spend was
    /// not added (the rebuild reads it from PostgreSQL); the minute windows, which no
    /// rebuild restores, were counted all the same.
    pub async fn settle(&self, settlement: &Settlement) -> RedisResult<bool> {
        if settlement.is_empty() {
            return Ok(true);
        }
        let keys = self.keys(settlement.org);
        let mut invocation = self.settle.prepare_invoke();
        invocation
            .key(keys.ready())
            .key(keys.reservations_by_expiry())
            .key(keys.reservations());
        // KEYS[1..3] are fixed; referenced keys follow from index 4.
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut ordered: Vec<&str> = Vec::new();
        let referenced = settlement
            .increments
            .keys()
            .chain(settlement.windows.keys())
            .chain(settlement.requests.iter().flat_map(|(_, keys)| keys))
            .map(String::as_str);
        for key in referenced {
            if !index.contains_key(key) {
                index.insert(key, 4 + ordered.len());
                ordered.push(key);
            }
        }
        for key in &ordered {
            invocation.key(*key);
        }
        invocation.arg(settlement.increments.len());
        for (key, (amount, lifetime)) in &settlement.increments {
            invocation.arg(index[key.as_str()]).arg(*amount).arg(*lifetime);
        }
        invocation.arg(settlement.windows.len());
        for (key, amount) in &settlement.windows {
            invocation.arg(index[key.as_str()]).arg(*amount);
        }
        invocation.arg(settlement.requests.len());
        for (request_ids, rpm_keys) in &settlement.requests {
            invocation.arg(request_ids.len());
            for request_id in request_ids {
                invocation.arg(request_id);
            }
            invocation.arg(rpm_keys.len());
            for key in rpm_keys {
                invocation.arg(index[key.as_str()]);
            }
        }
        invocation.arg(MINUTE_WINDOW_MS);
        let mut conn = self.conn.clone();
        let applied: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(applied == 1)
    }

    /// Sets an organization's spend counters to what the ledger says and marks them
    /// ready, in one transaction. `spend` holds (scope, period tag, micro-USD,
    /// lifetime in seconds or 0).
    pub async fn rebuild(&self, org: Uuid, spend: &[(ScopeRef, String, i64, i64)]) -> RedisResult<()> {
        let keys = self.keys(org);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (scope, period, micros, lifetime) in spend {
            let key = keys.spend(*scope, period);
            if *lifetime > 0 {
                pipe.set_ex(&key, *micros, u64::try_from(*lifetime).unwrap_or(u64::MAX))
                    .ignore();
            } else {
                pipe.set(&key, *micros).ignore();
            }
        }
        pipe.set(keys.ready(), 1).ignore();
        again_if_reconnected(|| {
            let mut conn = self.conn.clone();
            let pipe = &pipe;
            async move { pipe.query_async(&mut conn).await }
        })
        .await
    }

    /// Releases the reservations of `request_ids` (whose usage the ledger holds but
    /// the counters never got), as settling them would have. Returns how many there
    /// were; releasing twice is harmless.
    pub async fn release(&self, org: Uuid, request_ids: &[String]) -> RedisResult<usize> {
        let keys = self.keys(org);
        let mut invocation = self.release.prepare_invoke();
        invocation
            .key(keys.ready())
            .key(keys.reservations_by_expiry())
            .key(keys.reservations());
        for id in request_ids {
            invocation.arg(id);
        }
        again_if_reconnected(|| {
            let mut conn = self.conn.clone();
            let invocation = &invocation;
            async move { invocation.invoke_async(&mut conn).await }
        })
        .await
    }
}

/// Runs an idempotent Redis step, and once more when it failed because the
/// connection was gone. The connection manager only notices a lost connection (Redis
/// restarted, failed over, or closed an idle client) when a command fails on it, and
/// reconnects then: without the second try, the first call after Redis came back
/// would be answered as if Redis were still down. The same goes for a connection
/// attempt that failed while Redis was down: it is made again, once. While Redis is
/// down, that second attempt is refused as fast as the first.
async fn again_if_reconnected<T, F, Fut>(mut step: F) -> RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = RedisResult<T>>,
{
    match step().await {
        Err(e) if e.is_connection_dropped() => step().await,
        done => done,
    }
}

fn int(value: &redis::Value) -> RedisResult<i64> {
    Ok(redis::from_redis_value_ref(value)?)
}

fn parse_authorization(reply: &[redis::Value], scopes: usize) -> RedisResult<Option<Authorization>> {
    let malformed = || redis::RedisError::from((redis::ErrorKind::Parse, "unexpected authorize reply"));
    let verdict: String = redis::from_redis_value_ref(reply.first().ok_or_else(malformed)?)?;
    if verdict == "rebuild" {
        return Ok(None);
    }
    let readings = reply
        .get(3..3 + 4 * scopes)
        .ok_or_else(malformed)?
        .chunks_exact(4)
        .map(|c| {
            Ok(ScopeReading {
                spent_micros: int(&c[0])?,
                reserved_micros: int(&c[1])?,
                requests_this_minute: int(&c[2])?,
                tokens_this_minute: int(&c[3])?,
            })
        })
        .collect::<RedisResult<Vec<_>>>()?;
    let verdict = match verdict.as_str() {
        "allow" => Verdict::Allow,
        _ => {
            let reason: String = redis::from_redis_value_ref(reply.get(1).ok_or_else(malformed)?)?;
            let scope = int(reply.get(2).ok_or_else(malformed)?)?;
            Verdict::Deny {
                reason: reason.parse().map_err(|_| malformed())?,
                scope: usize::try_from(scope).map_err(|_| malformed())?,
            }
        }
    };
    Ok(Some(Authorization { verdict, readings }))
}

/// Committed usage of one organization, gathered for one settle call. It is built
/// from what the ingest transaction already summed per scope and day, so its size (and
/// the work to build it) follows the scopes a batch touches, not its events.
#[derive(Debug, Clone)]
pub struct Settlement {
    org: Uuid,
    keys: OrgKeys,
    /// spend key → (amount to add, lifetime in seconds or 0)
    increments: BTreeMap<String, (i64, i64)>,
    /// tokens-per-minute key → tokens to add
    windows: BTreeMap<String, i64>,
    /// Calls that reported, grouped by the scopes they count in: their request ids, and
    /// those scopes' requests-per-minute keys, which count the calls that were never
    /// authorized
    requests: Vec<(Vec<String>, Vec<String>)>,
}

impl Settlement {
    pub fn new(prefix: &str, org: Uuid) -> Self {
        Self {
            org,
            keys: OrgKeys::new(prefix, org),
            increments: BTreeMap::new(),
            windows: BTreeMap::new(),
            requests: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.increments.is_empty() && self.windows.is_empty() && self.requests.is_empty()
    }

    /// Spend of one scope on one UTC day: added to every period window holding the day.
    pub fn add_spend(&mut self, scope: ScopeRef, day: NaiveDate, cost_micros: i64) {
        if cost_micros <= 0 {
            return;
        }
        // Kept from the day's start: at most a day longer than from the event's time.
        let start = day.and_time(NaiveTime::MIN).and_utc();
        for period in PERIODS {
            let lifetime = period_lifetime(period, start);
            let entry = self
                .increments
                .entry(self.keys.spend(scope, &period_tag(period, start)))
                .or_insert((0, lifetime));
            entry.0 += cost_micros;
        }
    }

    /// Tokens of one scope, counted in the current minute.
    pub fn add_tokens(&mut self, scope: ScopeRef, tokens: i64, now: DateTime<Utc>) {
        if tokens > 0 {
            *self
                .windows
                .entry(self.keys.tokens_in_minute(scope, minute_of(now)))
                .or_insert(0) += tokens;
        }
    }

    /// Calls that count in the same `scopes`: their reservations are released, and
    /// those never authorized count in the scopes' current minute.
    pub fn add_requests(&mut self, request_ids: Vec<String>, scopes: &[ScopeRef], now: DateTime<Utc>) {
        let minute = minute_of(now);
        let rpm_keys = scopes
            .iter()
            .map(|scope| self.keys.requests_in_minute(*scope, minute))
            .collect();
        self.requests.push((request_ids, rpm_keys));
    }

    /// One committed event: its cost goes to every period of every scope at the
    /// event's time; its tokens and (when unauthorized) its request to the current
    /// minute.
    pub fn add_event(
        &mut self,
        request_id: &str,
        scopes: &[ScopeRef],
        cost_micros: i64,
        tokens: i64,
        occurred_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        for scope in scopes {
            self.add_spend(*scope, occurred_at.date_naive(), cost_micros);
            self.add_tokens(*scope, tokens, now);
        }
        self.add_requests(vec![request_id.to_owned()], scopes, now);
    }
}
