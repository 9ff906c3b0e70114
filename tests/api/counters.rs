//! The Redis counters and their scripts, against the real Redis: budgets reserve and
//! deny, reservations settle or expire, minute windows limit, and lost counters are
//! noticed. Each test works under its own key prefix and organization id.

use chrono::{DateTime, Duration, Utc};
use meterplane::counters::{
    AuthorizeCall, BudgetLimit, Counters, DenyReason, ScopeLimits, ScopeReading, ScopeRef, Settlement, Verdict,
};
use meterplane::{
    counters::keys::period_tag,
    domain::{budget::BudgetScope, period::BudgetPeriod},
};
use uuid::Uuid;

struct Fixture {
    counters: Counters,
    prefix: String,
    org: Uuid,
    customer: ScopeRef,
    organization: ScopeRef,
}

async fn fixture() -> Fixture {
    let url = std::env::var("MP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let prefix = format!("test:{}:", Uuid::new_v4().simple());
    let org = Uuid::new_v4();
    Fixture {
        counters: Counters::new(conn, &prefix),
        prefix,
        org,
        customer: ScopeRef {
            kind: BudgetScope::Customer,
            id: Uuid::new_v4(),
        },
        organization: ScopeRef {
            kind: BudgetScope::Organization,
            id: org,
        },
    }
}

fn noon() -> DateTime<Utc> {
    "2026-12-02T12:00:00Z".parse().unwrap()
}

/// The monthly counter the budgets below read: the month of `noon()`.
fn month() -> String {
    period_tag(BudgetPeriod::Monthly, noon())
}

impl Fixture {
    fn hard_budget(&self, amount_micros: i64) -> Vec<ScopeLimits> {
        vec![
            ScopeLimits {
                scope: self.organization,
                budget: None,
                requests_per_minute: None,
                tokens_per_minute: None,
            },
            ScopeLimits {
                scope: self.customer,
                budget: Some(BudgetLimit {
                    period_tag: month(),
                    amount_micros,
                    hard: true,
                }),
                requests_per_minute: None,
                tokens_per_minute: None,
            },
        ]
    }

    async fn ask(&self, scopes: &[ScopeLimits], request_id: &str, cost: i64, at: DateTime<Utc>) -> Verdict {
        self.ask_full(scopes, request_id, cost, 0, at).await.0
    }

    async fn ask_full(
        &self,
        scopes: &[ScopeLimits],
        request_id: &str,
        cost: i64,
        tokens: i64,
        at: DateTime<Utc>,
    ) -> (Verdict, Vec<ScopeReading>) {
        let answer = self
            .counters
            .authorize(&AuthorizeCall {
                org: self.org,
                request_id,
                scopes,
                estimated_cost_micros: cost,
                estimated_tokens: tokens,
                now: at,
                reservation_ttl: Duration::minutes(5),
            })
            .await
            .unwrap()
            .expect("counters are ready");
        (answer.verdict, answer.readings)
    }

    async fn settle(&self, request_id: &str, cost: i64, tokens: i64, at: DateTime<Utc>) -> bool {
        let mut settlement = Settlement::new(&self.prefix, self.org);
        settlement.add_event(request_id, &[self.organization, self.customer], cost, tokens, at, at);
        self.counters.settle(&settlement).await.unwrap()
    }

    async fn ready(&self) {
        self.counters.rebuild(self.org, &[]).await.unwrap();
    }
}

#[tokio::test]
async fn lost_counters_are_noticed_and_usage_is_not_double_counted_after_a_rebuild() {
    let f = fixture().await;
    let scopes = f.hard_budget(1_000);
    let asked = f
        .counters
        .authorize(&AuthorizeCall {
            org: f.org,
            request_id: "r1",
            scopes: &scopes,
            estimated_cost_micros: 10,
            estimated_tokens: 0,
            now: noon(),
            reservation_ttl: Duration::minutes(5),
        })
        .await
        .unwrap();
    assert_eq!(asked, None, "no ready marker: the caller must rebuild first");
    assert!(
        !f.settle("r0", 500, 0, noon()).await,
        "settling into lost counters adds nothing"
    );
    // The rebuild sets what the ledger holds (here: the 500 settled above).
    f.counters
        .rebuild(f.org, &[(f.customer, month(), 500, 0)])
        .await
        .unwrap();
    let (verdict, readings) = f.ask_full(&scopes, "r1", 10, 0, noon()).await;
    assert_eq!(verdict, Verdict::Allow);
    assert_eq!(readings[1].spent_micros, 500);
}

#[tokio::test]
async fn a_hard_budget_denies_the_call_that_would_cross_it_counting_reservations() {
    let f = fixture().await;
    f.ready().await;
    let scopes = f.hard_budget(1_000);
    assert!(f.settle("earlier", 900, 0, noon()).await);
    assert_eq!(
        f.ask(&scopes, "too-big", 101, noon()).await,
        Verdict::Deny {
            reason: DenyReason::BudgetExceeded,
            scope: 1
        }
    );
    assert_eq!(f.ask(&scopes, "fits", 100, noon()).await, Verdict::Allow);
    // 900 spent + 100 reserved = 100 %: even a call estimated at zero is denied.
    let (verdict, readings) = f.ask_full(&scopes, "zero", 0, 0, noon()).await;
    assert_eq!(
        verdict,
        Verdict::Deny {
            reason: DenyReason::BudgetExceeded,
            scope: 1
        }
    );
    assert_eq!((readings[1].spent_micros, readings[1].reserved_micros), (900, 100));
    // The call reports less than it reserved: the rest is released.
    assert!(f.settle("fits", 40, 0, noon()).await);
    let (verdict, readings) = f.ask_full(&scopes, "after", 60, 0, noon()).await;
    assert_eq!(verdict, Verdict::Allow);
    assert_eq!((readings[1].spent_micros, readings[1].reserved_micros), (940, 0));
    // A soft budget of the same size never denies.
    let mut soft = f.hard_budget(1_000);
    if let Some(budget) = soft[1].budget.as_mut() {
        budget.hard = false;
    }
    assert_eq!(f.ask(&soft, "soft", 10_000, noon()).await, Verdict::Allow);
}

#[tokio::test]
async fn abandoned_reservations_expire_and_a_repeated_request_id_reserves_once() {
    let f = fixture().await;
    f.ready().await;
    let scopes = f.hard_budget(1_000);
    assert_eq!(f.ask(&scopes, "same", 600, noon()).await, Verdict::Allow);
    assert_eq!(
        f.ask(&scopes, "same", 600, noon()).await,
        Verdict::Allow,
        "asked twice, reserved once"
    );
    assert_eq!(
        f.ask(&scopes, "other", 600, noon()).await,
        Verdict::Deny {
            reason: DenyReason::BudgetExceeded,
            scope: 1
        }
    );
    // No usage event came: five minutes later the reservation is gone.
    let later = noon() + Duration::minutes(5) + Duration::seconds(1);
    let (verdict, readings) = f.ask_full(&scopes, "other", 600, 0, later).await;
    assert_eq!(verdict, Verdict::Allow);
    assert_eq!(readings[1].reserved_micros, 0);
}

#[tokio::test]
async fn requests_and_tokens_per_minute_are_limited_per_window() {
    let f = fixture().await;
    f.ready().await;
    let mut scopes = f.hard_budget(i64::MAX / 4);
    scopes[1].requests_per_minute = Some(2);
    scopes[0].tokens_per_minute = Some(1_000);
    let at = noon() + Duration::seconds(10);
    assert_eq!(f.ask(&scopes, "a", 0, at).await, Verdict::Allow);
    // An event that was never authorized still counts as a request of its minute.
    assert!(f.settle("unannounced", 0, 700, at).await);
    assert_eq!(
        f.ask(&scopes, "b", 0, at).await,
        Verdict::Deny {
            reason: DenyReason::RateLimitedRequests,
            scope: 1
        }
    );
    scopes[1].requests_per_minute = Some(10);
    let (verdict, readings) = f.ask_full(&scopes, "c", 0, 301, at).await;
    assert_eq!(
        verdict,
        Verdict::Deny {
            reason: DenyReason::RateLimitedTokens,
            scope: 0
        }
    );
    assert_eq!(readings[0].tokens_this_minute, 700);
    assert_eq!(f.ask_full(&scopes, "d", 0, 300, at).await.0, Verdict::Allow);
    // The next minute starts empty.
    let next = noon() + Duration::minutes(1);
    scopes[1].requests_per_minute = Some(1);
    assert_eq!(f.ask_full(&scopes, "e", 0, 1_000, next).await.0, Verdict::Allow);
}

#[tokio::test]
async fn concurrent_calls_never_reserve_past_a_hard_budget() {
    let f = fixture().await;
    f.ready().await;
    let scopes = f.hard_budget(10_000);
    let asks = (0..50).map(|i| {
        let f = &f;
        let scopes = &scopes;
        async move { f.ask(scopes, &format!("call-{i}"), 700, noon()).await }
    });
    let verdicts = futures_util::future::join_all(asks).await;
    let allowed = verdicts.iter().filter(|v| **v == Verdict::Allow).count();
    assert_eq!(allowed, 14, "10,000 / 700 = 14 calls fit");
}

/// A reservation's record names each scope by its kind's letter and id, not by its
/// reserved counter's key: the script rebuilds the keys. Measured on a private Redis
/// with the default prefix and four scopes (organization, project, key, customer),
/// hash and sorted set together (`MEMORY USAGE … SAMPLES 0`): with full key names in
/// the record (361 bytes) one reservation held alone took 800 bytes and each of 1,000
/// took 598; with this record (140 bytes), 576 and 374.
#[tokio::test]
async fn a_reservation_record_names_its_scopes_not_their_keys() {
    let redis = crate::redis_server::RedisServer::start().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let counters = Counters::new(conn.clone(), "mp:");
    let org = Uuid::new_v4();
    let scopes: Vec<ScopeLimits> = [
        (BudgetScope::Organization, org),
        (BudgetScope::Project, Uuid::new_v4()),
        (BudgetScope::ApiKey, Uuid::new_v4()),
        (BudgetScope::Customer, Uuid::new_v4()),
    ]
    .into_iter()
    .map(|(kind, id)| ScopeLimits {
        scope: ScopeRef { kind, id },
        budget: Some(BudgetLimit {
            period_tag: month(),
            amount_micros: 1_000_000_000,
            hard: true,
        }),
        requests_per_minute: Some(1_000_000),
        tokens_per_minute: None,
    })
    .collect();
    counters.rebuild(org, &[]).await.unwrap();
    let calls = 1_000;
    for n in 0..calls {
        let request_id = format!("req_{}", Uuid::from_u128(n).simple());
        let call = AuthorizeCall {
            org,
            request_id: &request_id,
            scopes: &scopes,
            estimated_cost_micros: 2_000,
            estimated_tokens: 0,
            now: noon(),
            reservation_ttl: Duration::minutes(10),
        };
        let answer = counters.authorize(&call).await.unwrap().unwrap();
        assert_eq!(answer.verdict, Verdict::Allow);
    }
    let keys = counters.keys(org);
    let record: String = redis::cmd("HGET")
        .arg(keys.reservations())
        .arg(format!("req_{}", Uuid::from_u128(0).simple()))
        .query_async(&mut conn)
        .await
        .unwrap();
    let ids: Vec<String> = scopes.iter().map(|s| s.scope.id.simple().to_string()).collect();
    assert_eq!(record, format!("2000|o{}|p{}|k{}|c{}", ids[0], ids[1], ids[2], ids[3]));
    let mut bytes = 0;
    for key in [keys.reservations(), keys.reservations_by_expiry()] {
        let used: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap();
        bytes += used;
    }
    let per_reservation = bytes / calls as i64;
    assert!(per_reservation <= 400, "{per_reservation} bytes per reservation");

    // Releasing rebuilds each scope's key: the reserved counters go back to zero.
    let mut settlement = Settlement::new("mp:", org);
    for n in 0..calls {
        let scope_refs: Vec<ScopeRef> = scopes.iter().map(|s| s.scope).collect();
        settlement.add_event(
            &format!("req_{}", Uuid::from_u128(n).simple()),
            &scope_refs,
            2_000,
            0,
            noon(),
            noon(),
        );
    }
    assert!(counters.settle(&settlement).await.unwrap());
    for scope in &scopes {
        let reserved: i64 = redis::cmd("GET")
            .arg(keys.reserved(scope.scope))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(reserved, 0, "{:?}", scope.scope.kind);
    }
}

/// A record written before records named scopes (the reserved counters' keys in
/// full) is still released as such.
#[tokio::test]
async fn a_reservation_recorded_with_whole_key_names_is_still_released() {
    let f = fixture().await;
    f.ready().await;
    let scopes = f.hard_budget(1_000);
    let keys = f.counters.keys(f.org);
    let mut conn =
        redis::Client::open(std::env::var("MP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
    let (organization, customer) = (keys.reserved(f.organization), keys.reserved(f.customer));
    let _: () = redis::pipe()
        .hset(keys.reservations(), "legacy", format!("600|{organization}|{customer}"))
        .zadd(
            keys.reservations_by_expiry(),
            "legacy",
            (noon() + Duration::minutes(5)).timestamp_millis(),
        )
        .incr(&organization, 600)
        .incr(&customer, 600)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        f.ask(&scopes, "too-much", 500, noon()).await,
        Verdict::Deny {
            reason: DenyReason::BudgetExceeded,
            scope: 1
        }
    );
    assert!(f.settle("legacy", 600, 0, noon()).await);
    let (verdict, readings) = f.ask_full(&scopes, "fits-now", 400, 0, noon()).await;
    assert_eq!(verdict, Verdict::Allow);
    assert_eq!((readings[1].spent_micros, readings[1].reserved_micros), (600, 0));
}

/// A batch settles per scope and day, and the calls of one customer as one group: the
/// spend lands in every period counter once, and of three calls only the two never
/// authorized are added to the minute's request count (the third was counted when it
/// was authorized, and its reservation is released).
#[tokio::test]
async fn a_grouped_settlement_counts_spend_once_per_period_and_only_unauthorized_calls() {
    let f = fixture().await;
    f.ready().await;
    let scopes = f.hard_budget(1_000_000);
    assert_eq!(f.ask(&scopes, "authorized", 700, noon()).await, Verdict::Allow);

    let mut settlement = Settlement::new(&f.prefix, f.org);
    settlement.add_spend(f.customer, noon().date_naive(), 1_200);
    settlement.add_tokens(f.customer, 90, noon());
    let calls = ["authorized", "direct-1", "direct-2"].map(String::from).to_vec();
    settlement.add_requests(calls, &[f.organization, f.customer], noon());
    assert!(f.counters.settle(&settlement).await.unwrap());

    let keys = f.counters.keys(f.org);
    let client =
        redis::Client::open(std::env::var("MP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
            .unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let get = |key: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<i64>>(&mut conn)
                .await
                .unwrap()
        }
    };
    for period in [
        BudgetPeriod::Daily,
        BudgetPeriod::Weekly,
        BudgetPeriod::Monthly,
        BudgetPeriod::Total,
    ] {
        assert_eq!(
            get(keys.spend(f.customer, &period_tag(period, noon()))).await,
            Some(1_200),
            "{period:?}"
        );
    }
    let minute = meterplane::counters::keys::minute_of(noon());
    for scope in [f.organization, f.customer] {
        assert_eq!(
            get(keys.requests_in_minute(scope, minute)).await,
            Some(3),
            "{:?}",
            scope.kind
        );
    }
    assert_eq!(get(keys.tokens_in_minute(f.customer, minute)).await, Some(90));
    // The authorized call's reservation was released: the budget sees only the spend.
    let (_, readings) = f.ask_full(&scopes, "next", 0, 0, noon()).await;
    assert_eq!((readings[1].spent_micros, readings[1].reserved_micros), (1_200, 0));
}
