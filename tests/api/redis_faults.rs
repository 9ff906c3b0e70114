//! Redis failing under load, with a private `redis-server` the test kills and starts
//! again: usage recording keeps answering 2xx and loses nothing, authorize follows the
//! configured policy, `/readyz` stays 200 as `degraded`, and once Redis is back the
//! counters are rebuilt from the ledger — when Redis lost everything (the `ready`
//! marker is gone) and when it kept its data but missed usage settled meanwhile (the
//! organization was marked stale) — so budgets deny at exactly the right point.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Mutex,
    },
    time::Duration,
};

use meterplane::config::{RedisDownPolicy, Secret};
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    helpers::{authorize, eventually, expect_json, id_of, Tenant, TestApp},
    redis_server::RedisServer,
};

const CUSTOMER: &str = "steady-customer";

/// An instance on a private Redis that counts as down after 200 ms.
async fn app_on(redis: &RedisServer, policy: RedisDownPolicy) -> TestApp {
    let url = redis.url();
    TestApp::spawn_with(|c| {
        c.redis.url = Secret::new(url);
        c.redis.timeout = Duration::from_millis(200);
        c.redis.when_down = policy;
    })
    .await
}

/// USD 1 per million input tokens and 2 per million output: a call costs
/// `prompt + 2 × completion` micro-dollars, exactly.
async fn priced_model(app: &TestApp) {
    app.add_price("openai", "fault-model", "fault-model", "1", "2", "0.5")
        .await;
}

fn cost_micros(prompt: i64, completion: i64) -> i64 {
    prompt + 2 * completion
}

fn call(request_id: &str, prompt: i64, completion: i64) -> Value {
    json!({
        "requestId": request_id, "user": CUSTOMER, "endpoint": "/chat/completions",
        "provider": "openai", "model": "fault-model",
        "estimatedPromptTokens": prompt, "estimatedCompletionTokens": completion
    })
}

fn usage(request_id: &str, prompt: i64, completion: i64) -> Value {
    json!({
        "requestId": request_id, "user": CUSTOMER, "endpoint": "/chat/completions",
        "provider": "openai", "model": "fault-model", "promptTokens": prompt, "completionTokens": completion
    })
}

/// What the load saw: answers by kind, the cost of every event recorded (answered
/// 2xx), and anything else (a 5xx, an unexpected denial) as a failure.
#[derive(Default)]
struct Tally {
    /// Authorize answered with the counters checked.
    checked: AtomicUsize,
    /// Authorize answered by the Redis-down policy.
    by_policy: AtomicUsize,
    recorded_micros: Mutex<Vec<i64>>,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, mut what: String) {
        what.truncate(300);
        self.failures.lock().unwrap().push(what);
    }

    fn recorded(&self) -> (usize, i64) {
        let recorded = self.recorded_micros.lock().unwrap();
        (recorded.len(), recorded.iter().sum())
    }
}

/// A gateway client: asks authorize, makes the call when allowed and reports its
/// usage, until `stop`.
async fn gateway(
    app: &TestApp,
    tenant: &Tenant,
    name: String,
    policy: RedisDownPolicy,
    tally: &Tally,
    stop: &AtomicBool,
) {
    let mut n: i64 = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let request_id = format!("{name}-{n}");
        let (prompt, completion) = (1_000 + (n * 37) % 4_000, (n * 11) % 900);
        let (status, _, answer) = authorize(app, tenant, call(&request_id, prompt, completion)).await;
        let seen = (
            status,
            answer["allowed"].as_bool(),
            answer["degraded"].as_bool(),
            answer["reason"].as_str(),
        );
        let proceed = match (policy, seen) {
            (_, (StatusCode::OK, Some(true), Some(false), Some("allowed"))) => {
                tally.checked.fetch_add(1, Ordering::SeqCst);
                true
            }
            (RedisDownPolicy::Open, (StatusCode::OK, Some(true), Some(true), Some("allowed"))) => {
                tally.by_policy.fetch_add(1, Ordering::SeqCst);
                true
            }
            (RedisDownPolicy::Closed, (StatusCode::OK, Some(false), _, Some("counters_unavailable"))) => {
                tally.by_policy.fetch_add(1, Ordering::SeqCst);
                false
            }
            _ => {
                tally.fail(format!("authorize {request_id}: {status} {answer}"));
                false
            }
        };
        if proceed {
            report(app, tenant, vec![usage(&request_id, prompt, completion)], tally).await;
        }
    }
}

/// Usage that arrives without an authorize call (another gateway path), in batches.
async fn unannounced(app: &TestApp, tenant: &Tenant, name: String, tally: &Tally, stop: &AtomicBool) {
    let mut n: i64 = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let events = (0..4)
            .map(|k| usage(&format!("{name}-{n}-{k}"), 500 + k * 100, 50))
            .collect();
        report(app, tenant, events, tally).await;
    }
}

async fn report(app: &TestApp, tenant: &Tenant, events: Vec<Value>, tally: &Tally) {
    let costs: Vec<i64> = events
        .iter()
        .map(|e| {
            cost_micros(
                e["promptTokens"].as_i64().unwrap(),
                e["completionTokens"].as_i64().unwrap(),
            )
        })
        .collect();
    let (status, body) = if let [single] = events.as_slice() {
        let response = app
            .request(Method::POST, "/v1/usage")
            .header("x-api-key", &tenant.key_secret)
            .json(single)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json::<Value>().await.unwrap_or(Value::Null))
    } else {
        app.send_batch(&tenant.key_secret, json!(events)).await
    };
    let accepted = if events.len() == 1 {
        status == StatusCode::CREATED
    } else {
        status == StatusCode::OK && body["accepted"].as_u64() == Some(events.len() as u64)
    };
    if accepted {
        tally.recorded_micros.lock().unwrap().extend(costs);
    } else {
        tally.fail(format!("usage answered {status}: {body}"));
    }
}

/// Runs three gateway clients and one batch client on `app` until `done` resolves.
async fn load_until<F: std::future::Future<Output = ()>>(
    app: &TestApp,
    tenant: &Tenant,
    policy: RedisDownPolicy,
    tally: &Tally,
    done: F,
) {
    let stop = AtomicBool::new(false);
    let run = Uuid::new_v4().simple().to_string();
    let clients = async {
        let gateways = (0..3).map(|i| gateway(app, tenant, format!("{run}-g{i}"), policy, tally, &stop));
        tokio::join!(
            futures_util::future::join_all(gateways),
            unannounced(app, tenant, format!("{run}-batch"), tally, &stop)
        );
    };
    let driver = async {
        done.await;
        stop.store(true, Ordering::SeqCst);
    };
    tokio::join!(clients, driver);
}

async fn wait_for(counter: &AtomicUsize, at_least: usize, what: &str) {
    eventually(what, Duration::from_secs(30), || async {
        (counter.load(Ordering::SeqCst) >= at_least).then_some(())
    })
    .await;
}

async fn readiness(app: &TestApp) -> Value {
    expect_json(
        app.request(Method::GET, "/readyz").send().await.unwrap(),
        StatusCode::OK,
    )
    .await
}

/// The customer's events in PostgreSQL: how many, and their cost in micro-dollars
/// (raw events and the spend ledger's current month).
async fn stored(app: &TestApp, tenant: &Tenant, customer: Uuid) -> (i64, i64, i64) {
    #[derive(diesel::QueryableByName)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        events: i64,
        #[diesel(sql_type = diesel::sql_types::Numeric)]
        cost: Decimal,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        ledger_micros: i64,
    }
    let row: Stored = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT (SELECT count(*) FROM usage_events WHERE org_id = $1 AND customer_id = $2) AS events, \
                    (SELECT coalesce(sum(cost), 0) FROM usage_events WHERE org_id = $1 AND customer_id = $2) AS cost, \
                    (SELECT coalesce(sum(cost_micros), 0)::int8 FROM spend_ledger WHERE org_id = $1 \
                      AND scope = 'customer' AND scope_id = $2 AND day >= date_trunc('month', now())::date) AS ledger_micros",
        )
        .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
        .bind::<diesel::sql_types::Uuid, _>(customer),
        &mut app.db().await,
    )
    .await
    .unwrap();
    let cost_micros = (row.cost * Decimal::from(1_000_000)).normalize();
    assert!(cost_micros.fract().is_zero(), "whole micro-dollars: {cost_micros}");
    (
        row.events,
        i64::try_from(cost_micros.mantissa()).unwrap(),
        row.ledger_micros,
    )
}

/// What authorize says the customer spent and has reserved (USD), asking with no
/// estimate; the answer must have checked the counters.
async fn customer_spend(app: &TestApp, tenant: &Tenant, request_id: &str) -> (Decimal, Decimal) {
    let (status, _, answer) = authorize(app, tenant, json!({"requestId": request_id, "user": CUSTOMER})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (answer["allowed"].as_bool(), answer["degraded"].as_bool()),
        (Some(true), Some(false)),
        "{answer}"
    );
    let budget = &answer["scopes"][3]["budget"];
    let decimal = |v: &Value| v.as_str().unwrap().parse::<Decimal>().unwrap();
    (decimal(&budget["spent"]), decimal(&budget["reserved"]))
}

fn usd(micros: i64) -> Decimal {
    Decimal::new(micros, 6).normalize()
}

async fn put_budget(app: &TestApp, tenant: &Tenant, scope: &str, id: Uuid, amount: Decimal) {
    let response = app
        .as_user(
            Method::PUT,
            &format!("/v1/orgs/{}/budgets/{scope}/{id}", tenant.org_id),
            &tenant.owner,
        )
        .json(&json!({"amount": amount.to_string(), "period": "monthly", "hardLimit": true}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
}

/// With spend `spent` and a budget of `spent + 0.4`, a call estimated at exactly 0.4
/// fits and then nothing more does: this pins the counter to the ledger to the
/// micro-dollar (one more and the first call is denied, one less and the second fits).
async fn a_hard_budget_denies_at_exactly_its_amount(app: &TestApp, tenant: &Tenant, customer: Uuid, spent: Decimal) {
    put_budget(app, tenant, "customer", customer, spent + Decimal::new(4, 1)).await;
    let (_, _, fits) = authorize(
        app,
        tenant,
        json!({"requestId": "edge-fits", "user": CUSTOMER, "estimatedCost": "0.4"}),
    )
    .await;
    assert_eq!(
        (fits["allowed"].as_bool(), fits["degraded"].as_bool()),
        (Some(true), Some(false)),
        "{fits}"
    );
    let (_, _, full) = authorize(
        app,
        tenant,
        json!({"requestId": "edge-full", "user": CUSTOMER, "estimatedCost": "0"}),
    )
    .await;
    assert_eq!(
        (full["reason"].as_str(), full["decidingScope"].as_str()),
        (Some("budget_exceeded"), Some("customer")),
        "{full}"
    );
}

/// Redis is killed under load and comes back empty.
async fn redis_killed_under_load(policy: RedisDownPolicy) {
    let mut redis = RedisServer::start().await;
    let app = app_on(&redis, policy).await;
    let tenant = app.tenant().await;
    priced_model(&app).await;
    authorize(&app, &tenant, json!({"requestId": "first-sight", "user": CUSTOMER})).await;
    let customer = id_of(&app, "customers", tenant.org_id, CUSTOMER).await;
    put_budget(&app, &tenant, "customer", customer, Decimal::from(1_000)).await;
    put_budget(&app, &tenant, "organization", tenant.org_id, Decimal::from(1_000_000)).await;
    // A second instance that never sees Redis fail: after the restart it finds the
    // counters gone through the missing `ready` marker alone.
    let other = app.another_instance().await;
    assert_eq!(
        customer_spend(&other, &tenant, "before-kill-other").await,
        (Decimal::ZERO, Decimal::ZERO)
    );

    // Load with Redis up; Redis killed mid-load; load goes on while it is down.
    let tally = Tally::default();
    load_until(&app, &tenant, policy, &tally, async {
        wait_for(&tally.checked, 30, "calls checked against the counters").await;
        redis.kill();
        let by_policy = tally.by_policy.load(Ordering::SeqCst);
        wait_for(&tally.by_policy, by_policy + 30, "calls answered by the policy").await;
        let ready = readiness(&app).await;
        assert_eq!(
            (
                ready["status"].as_str(),
                ready["postgres"].as_str(),
                ready["redis"].as_str()
            ),
            (Some("degraded"), Some("up"), Some("down"))
        );
    })
    .await;
    assert_eq!(*tally.failures.lock().unwrap(), Vec::<String>::new());

    // Nothing reported was lost: every event answered 2xx is in PostgreSQL.
    let (events, micros) = tally.recorded();
    let (stored_events, stored_micros, ledger_micros) = stored(&app, &tenant, customer).await;
    assert_eq!((stored_events, stored_micros), (events as i64, micros));
    assert_eq!(ledger_micros, micros);

    // Redis comes back empty. The instance that never saw it fail rebuilds from the
    // missing `ready` marker; the one whose settling failed, from its stale mark.
    redis.restart().await;
    let (spent, reserved) = customer_spend(&other, &tenant, "after-restart-other").await;
    assert_eq!((spent, reserved), (usd(micros), Decimal::ZERO));
    let (spent, reserved) = customer_spend(&app, &tenant, "after-restart").await;
    assert_eq!((spent, reserved), (usd(micros), Decimal::ZERO));
    assert_eq!(readiness(&app).await["status"], "ok");

    // Load again, over both instances, all of it checked against the counters.
    let (checked, by_policy) = (
        tally.checked.load(Ordering::SeqCst),
        tally.by_policy.load(Ordering::SeqCst),
    );
    load_until(&app, &tenant, policy, &tally, async {
        wait_for(&tally.checked, checked + 20, "calls after the restart").await;
    })
    .await;
    load_until(&other, &tenant, policy, &tally, async {
        wait_for(&tally.checked, checked + 40, "calls on the other instance").await;
    })
    .await;
    assert_eq!(*tally.failures.lock().unwrap(), Vec::<String>::new());
    assert_eq!(
        tally.by_policy.load(Ordering::SeqCst),
        by_policy,
        "Redis is back: no call is degraded"
    );

    let (events, micros) = tally.recorded();
    let (stored_events, stored_micros, ledger_micros) = stored(&app, &tenant, customer).await;
    assert_eq!(
        (stored_events, stored_micros, ledger_micros),
        (events as i64, micros, micros)
    );
    for (instance, id) in [(&app, "final-check"), (&other, "final-check-other")] {
        let (spent, reserved) = customer_spend(instance, &tenant, id).await;
        assert_eq!((spent, reserved), (usd(micros), Decimal::ZERO));
    }
    a_hard_budget_denies_at_exactly_its_amount(&app, &tenant, customer, usd(micros)).await;
}

#[tokio::test]
async fn redis_killed_under_load_fail_open_loses_no_usage_and_counters_come_back_exact() {
    redis_killed_under_load(RedisDownPolicy::Open).await;
}

#[tokio::test]
async fn redis_killed_under_load_fail_closed_loses_no_usage_and_counters_come_back_exact() {
    redis_killed_under_load(RedisDownPolicy::Closed).await;
}

/// Redis is unreachable for a while but keeps its data (a persistent Redis restarted,
/// or a network partition): its `ready` marker is still there, so only the stale mark
/// of the organization whose settling failed brings the missed usage in — and the
/// reservation of a call whose usage arrived meanwhile must not count on top of it.
#[tokio::test]
async fn usage_settled_while_redis_was_unreachable_is_counted_once_it_is_back() {
    let mut redis = RedisServer::start_persistent().await;
    let app = app_on(&redis, RedisDownPolicy::Open).await;
    let tenant = app.tenant().await;
    priced_model(&app).await;
    authorize(&app, &tenant, json!({"requestId": "first-sight", "user": CUSTOMER})).await;
    let customer = id_of(&app, "customers", tenant.org_id, CUSTOMER).await;
    put_budget(&app, &tenant, "customer", customer, Decimal::from(1)).await;

    // Before: one call authorized (0.2 reserved), one event settled (0.1).
    let (_, _, reserved) = authorize(&app, &tenant, call("in-flight", 100_000, 50_000)).await;
    assert_eq!(
        (reserved["allowed"].as_bool(), reserved["degraded"].as_bool()),
        (Some(true), Some(false))
    );
    let tally = Tally::default();
    report(&app, &tenant, vec![usage("before", 100_000, 0)], &tally).await;
    assert_eq!(
        customer_spend(&app, &tenant, "check-before").await,
        (usd(100_000), usd(200_000))
    );

    // Down: the in-flight call reports 0.15, another event 0.05; both are recorded.
    redis.kill();
    report(&app, &tenant, vec![usage("in-flight", 50_000, 50_000)], &tally).await;
    report(&app, &tenant, vec![usage("while-down", 50_000, 0)], &tally).await;
    assert_eq!(
        std::mem::take(&mut *tally.failures.lock().unwrap()),
        Vec::<String>::new()
    );

    // Back with its data: 0.3 spent, nothing reserved.
    redis.restart().await;
    let (_, micros) = tally.recorded();
    assert_eq!(micros, 300_000);
    assert_eq!(stored(&app, &tenant, customer).await, (3, 300_000, 300_000));
    assert_eq!(
        customer_spend(&app, &tenant, "check-after").await,
        (usd(300_000), Decimal::ZERO)
    );
    a_hard_budget_denies_at_exactly_its_amount(&app, &tenant, customer, usd(300_000)).await;
}
