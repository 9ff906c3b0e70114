//! `POST /v1/gateway/authorize` through the real stack: budgets deny and reserve,
//! usage settles reservations, rate limits answer with Retry-After, blocks and dead
//! keys deny, lost counters are rebuilt from the ledger, several instances share one
//! budget, and every denial lands in the decision log.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{authorize, eventually, id_of, Tenant, TestApp};

/// USD 1 per million input tokens, 2 per million output: 100k in + 50k out = 0.2.
async fn priced_model(app: &TestApp) {
    app.add_price("openai", "budget-model", "budget-model", "1", "2", "0.5")
        .await;
}

/// A call of `prompt` input and `completion` output tokens of the priced model by `user`.
fn call(request_id: &str, user: &str, prompt: i64, completion: i64) -> Value {
    json!({
        "requestId": request_id, "user": user, "endpoint": "/chat/completions",
        "provider": "openai", "model": "budget-model",
        "estimatedPromptTokens": prompt, "estimatedCompletionTokens": completion
    })
}

fn usage(request_id: &str, user: &str, prompt: i64, completion: i64) -> Value {
    json!({
        "requestId": request_id, "user": user, "endpoint": "/chat/completions",
        "provider": "openai", "model": "budget-model", "promptTokens": prompt, "completionTokens": completion
    })
}

async fn execute(app: &TestApp, sql: &str) {
    diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut app.db().await)
        .await
        .unwrap();
}

/// Sets a budget straight in the database and drops the instance's cached rules.
async fn set_budget(app: &TestApp, org: Uuid, scope: &str, scope_id: Uuid, amount: &str, hard: bool) {
    execute(
        app,
        &format!(
            "INSERT INTO budgets (id, org_id, scope, scope_id, amount, period, hard_limit) \
             VALUES ('{}', '{org}', '{scope}', '{scope_id}', {amount}, 'monthly', {hard}) \
             ON CONFLICT ON CONSTRAINT budgets_scope_key DO UPDATE SET amount = EXCLUDED.amount, hard_limit = EXCLUDED.hard_limit",
            Uuid::new_v4()
        ),
    )
    .await;
    app.state.enforcer.forget_rules(org);
}

async fn record(app: &TestApp, tenant: &Tenant, event: Value) {
    let response = app
        .request(Method::POST, "/v1/usage")
        .header("x-api-key", &tenant.key_secret)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
}

/// The organization's decision log, waiting for the batched writer.
async fn decisions(app: &TestApp, tenant: &Tenant, query: &str, at_least: usize) -> Vec<Value> {
    for _ in 0..50 {
        let page = app
            .get_json(&tenant.owner, &format!("/v1/orgs/{}/decisions?{query}", tenant.org_id))
            .await;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        if data.len() >= at_least {
            return data;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {at_least} decisions were logged for {query}");
}

#[tokio::test]
async fn a_hard_budget_reserves_denies_and_is_settled_by_usage() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    priced_model(&app).await;

    let (status, _, first) = authorize(&app, &tenant, call("r1", "c1", 100_000, 50_000)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["allowed"], true);
    assert_eq!(first["reason"], "allowed");
    assert_eq!(first["estimatedCost"], "0.2");
    let scopes: Vec<&str> = first["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["organization", "project", "apiKey", "customer"]);

    // The customer exists from its first authorize on.
    let customer = id_of(&app, "customers", tenant.org_id, "c1").await;
    set_budget(&app, tenant.org_id, "customer", customer, "0.5", true).await;

    // r1's usage settles its reservation at what it really cost.
    record(&app, &tenant, usage("r1", "c1", 100_000, 50_000)).await;
    let (_, _, second) = authorize(&app, &tenant, call("r2", "c1", 100_000, 50_000)).await;
    assert_eq!(second["allowed"], true, "{second}");
    let budget = &second["scopes"][3]["budget"];
    assert_eq!(
        (
            &budget["amount"],
            &budget["spent"],
            &budget["reserved"],
            &budget["remaining"]
        ),
        (&json!("0.5"), &json!("0.2"), &json!("0"), &json!("0.3"))
    );
    assert_eq!(budget["period"], "monthly");
    assert!(budget["resetsAt"].as_str().unwrap().ends_with("T00:00:00Z"));

    // 0.2 spent + 0.2 reserved for r2 + 0.2 more would pass 0.5.
    let (_, _, third) = authorize(&app, &tenant, call("r3", "c1", 100_000, 50_000)).await;
    assert_eq!(
        (third["allowed"].as_bool(), third["reason"].as_str()),
        (Some(false), Some("budget_exceeded"))
    );
    assert_eq!(third["decidingScope"], "customer");
    assert_eq!(third["decidingScopeId"], customer.to_string());

    // r2 turns out cheaper than estimated: the rest of its reservation is released.
    record(&app, &tenant, usage("r2", "c1", 10_000, 5_000)).await;
    let (_, _, fourth) = authorize(&app, &tenant, call("r4", "c1", 100_000, 50_000)).await;
    assert_eq!(fourth["allowed"], true, "{fourth}");
    assert_eq!(fourth["scopes"][3]["budget"]["spent"], "0.22");

    // The denial explains itself with the numbers at that moment.
    let denied = decisions(&app, &tenant, "allowed=false", 1).await;
    let d = &denied[0];
    assert_eq!(
        (d["requestId"].as_str(), d["customer"].as_str()),
        (Some("r3"), Some("c1"))
    );
    assert_eq!(d["reason"], "budget_exceeded");
    assert_eq!(
        d["decidingLimit"],
        json!({"kind": "budget", "limit": "0.5", "counter": "0.2", "reserved": "0.2"})
    );
    assert_eq!(d["checkedScopes"].as_array().unwrap().len(), 4);

    // A soft budget alerts only: the same call goes through.
    set_budget(&app, tenant.org_id, "customer", customer, "0.5", false).await;
    let (_, _, soft) = authorize(&app, &tenant, call("r5", "c1", 10_000_000, 5_000_000)).await;
    assert_eq!(soft["allowed"], true, "{soft}");
}

#[tokio::test]
async fn rate_limits_answer_with_retry_after_and_ratelimit_headers() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    execute(
        &app,
        &format!(
            "INSERT INTO rate_limits (id, org_id, scope, scope_id, requests_per_minute) \
             VALUES ('{}', '{}', 'apiKey', '{}', 2)",
            Uuid::new_v4(),
            tenant.org_id,
            tenant.key_id
        ),
    )
    .await;
    let ask = |id: &str| json!({"requestId": id, "user": "c1"});
    let (_, headers, first) = authorize(&app, &tenant, ask("a")).await;
    assert_eq!(first["allowed"], true);
    assert_eq!(headers["ratelimit-limit"], "2");
    assert_eq!(headers["ratelimit-remaining"], "2");
    authorize(&app, &tenant, ask("b")).await;
    let (status, headers, third) = authorize(&app, &tenant, ask("c")).await;
    // A minute boundary between the calls would reset the window; then ask again.
    if third["allowed"] == true {
        return;
    }
    assert_eq!(status, StatusCode::OK);
    assert_eq!(third["reason"], "rate_limited_requests");
    assert_eq!(third["decidingScope"], "apiKey");
    let retry: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(third["retryAfterSeconds"], retry);
    assert_eq!(headers["ratelimit-remaining"], "0");
    let window = &third["scopes"][2]["requestsPerMinute"];
    assert_eq!((window["limit"].as_i64(), window["used"].as_i64()), (Some(2), Some(2)));
}

#[tokio::test]
async fn blocked_customers_and_dead_keys_are_denied_with_their_reason() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    authorize(&app, &tenant, json!({"requestId": "x", "user": "bad-actor"})).await;
    execute(
        &app,
        &format!(
            "UPDATE customers SET blocked_at = now() WHERE org_id = '{}' AND external_id = 'bad-actor'",
            tenant.org_id
        ),
    )
    .await;
    app.state.enforcer.forget_rules(tenant.org_id);
    let (_, _, blocked) = authorize(&app, &tenant, json!({"requestId": "y", "user": "bad-actor"})).await;
    assert_eq!(
        (blocked["allowed"].as_bool(), blocked["reason"].as_str()),
        (Some(false), Some("customer_blocked"))
    );
    let (_, _, other) = authorize(&app, &tenant, json!({"requestId": "z", "user": "good-actor"})).await;
    assert_eq!(other["allowed"], true);

    let revoke = format!(
        "/v1/orgs/{}/projects/{}/keys/{}/revoke",
        tenant.org_id, tenant.project_id, tenant.key_id
    );
    app.as_user(Method::POST, &revoke, &tenant.owner).send().await.unwrap();
    let (status, _, revoked) = authorize(&app, &tenant, json!({"requestId": "w"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (revoked["allowed"].as_bool(), revoked["reason"].as_str()),
        (Some(false), Some("key_revoked"))
    );

    let unknown = app
        .request(Method::POST, "/v1/gateway/authorize")
        .header("x-api-key", format!("mp_{}", "a".repeat(40)))
        .json(&json!({"requestId": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
}

/// Rules in steady use are re-read in the background before they expire (so
/// calls do not wait for PostgreSQL), yet a change made elsewhere (as through another
/// instance, which cannot forget this one's cache) still shows once the lifetime has
/// passed, and a change made here shows at once.
#[tokio::test]
async fn rules_in_use_are_reread_ahead_yet_changes_show_within_their_lifetime() {
    let app = TestApp::spawn_with(|c| c.budgets.rules_cache_ttl = Duration::from_millis(300)).await;
    let tenant = app.tenant().await;
    let ask = |n: u32| json!({"requestId": format!("r{n}"), "user": "steady", "estimatedCost": "0.01"});
    let (_, _, first) = authorize(&app, &tenant, ask(0)).await;
    assert_eq!(first["scopes"][3]["budget"], Value::Null, "{first}");
    let customer = id_of(&app, "customers", tenant.org_id, "steady").await;

    // Past three quarters of the lifetime: the next calls start background re-reads.
    tokio::time::sleep(Duration::from_millis(250)).await;
    for n in 1..4 {
        authorize(&app, &tenant, ask(n)).await;
    }
    // Changed behind this instance's back.
    execute(
        &app,
        &format!(
            "INSERT INTO budgets (id, org_id, scope, scope_id, amount, period, hard_limit) \
             VALUES ('{}', '{}', 'customer', '{customer}', 5, 'monthly', true)",
            Uuid::new_v4(),
            tenant.org_id
        ),
    )
    .await;
    let changed_at = std::time::Instant::now();
    let mut n = 10;
    loop {
        n += 1;
        let (_, _, answer) = authorize(&app, &tenant, ask(n)).await;
        if answer["scopes"][3]["budget"]["amount"] == "5" {
            break;
        }
        assert!(
            changed_at.elapsed() < Duration::from_secs(3),
            "the change never showed: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Changed here: shows on the very next call, re-reads in flight or not.
    set_budget(&app, tenant.org_id, "customer", customer, "7", true).await;
    let (_, _, answer) = authorize(&app, &tenant, ask(100)).await;
    assert_eq!(answer["scopes"][3]["budget"]["amount"], "7", "{answer}");
}

#[tokio::test]
async fn bad_input_is_a_422_problem_naming_the_field() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let (status, _, body) = authorize(
        &app,
        &tenant,
        json!({"requestId": " ", "estimatedCost": "-1", "estimatedPromptTokens": -5}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = crate::helpers::problem_fields(&body);
    assert_eq!(fields, ["requestId", "estimatedPromptTokens", "estimatedCost"]);
}

/// Deletes every Redis key of this deployment, as a Redis restart without
/// persistence would.
async fn lose_counters(app: &TestApp) {
    let mut redis = app.state.redis.clone();
    let pattern = format!("{}*", app.state.config.redis.key_prefix);
    let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut redis).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.unwrap();
    }
}

#[tokio::test]
async fn counters_lost_by_redis_are_rebuilt_from_the_ledger() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    priced_model(&app).await;
    record(&app, &tenant, usage("spent-1", "c1", 100_000, 50_000)).await;
    let customer = id_of(&app, "customers", tenant.org_id, "c1").await;
    set_budget(&app, tenant.org_id, "customer", customer, "0.3", true).await;
    lose_counters(&app).await;
    // The 0.2 already spent comes back from PostgreSQL: another 0.2 would pass 0.3.
    let (_, _, answer) = authorize(&app, &tenant, call("after-loss", "c1", 100_000, 50_000)).await;
    assert_eq!(answer["reason"], "budget_exceeded", "{answer}");
    assert_eq!(answer["scopes"][3]["budget"]["spent"], "0.2");
}

#[tokio::test]
async fn without_redis_the_configured_policy_decides_and_blocks_still_apply() {
    let open = TestApp::spawn_with(|c| {
        c.redis.url = meterplane::config::Secret::new("redis://127.0.0.1:1");
        c.redis.timeout = Duration::from_millis(200);
    })
    .await;
    let tenant = open.tenant().await;
    let (_, _, allowed) = authorize(&open, &tenant, json!({"requestId": "a", "user": "c1"})).await;
    assert_eq!(
        (allowed["allowed"].as_bool(), allowed["degraded"].as_bool()),
        (Some(true), Some(true))
    );
    execute(
        &open,
        &format!(
            "UPDATE customers SET blocked_at = now() WHERE org_id = '{}'",
            tenant.org_id
        ),
    )
    .await;
    open.state.enforcer.forget_rules(tenant.org_id);
    let (_, _, blocked) = authorize(&open, &tenant, json!({"requestId": "b", "user": "c1"})).await;
    assert_eq!(blocked["reason"], "customer_blocked");

    let closed = TestApp::spawn_with(|c| {
        c.redis.url = meterplane::config::Secret::new("redis://127.0.0.1:1");
        c.redis.timeout = Duration::from_millis(200);
        c.redis.when_down = meterplane::config::RedisDownPolicy::Closed;
    })
    .await;
    let tenant = closed.tenant().await;
    let (status, _, denied) = authorize(&closed, &tenant, json!({"requestId": "a", "user": "c1"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (denied["allowed"].as_bool(), denied["reason"].as_str()),
        (Some(false), Some("counters_unavailable"))
    );
}

#[tokio::test]
async fn three_instances_sharing_redis_never_reserve_past_one_budget() {
    let first = TestApp::spawn().await;
    let tenant = first.tenant().await;
    priced_model(&first).await;
    authorize(&first, &tenant, json!({"requestId": "seed", "user": "shared"})).await;
    let customer = id_of(&first, "customers", tenant.org_id, "shared").await;
    set_budget(&first, tenant.org_id, "customer", customer, "1", true).await;
    let second = first.another_instance().await;
    let third = first.another_instance().await;
    let instances = [&first, &second, &third];
    // 60 concurrent calls of 0.2 each against a budget of 1: exactly 5 fit.
    let asks = (0..60).map(|i| {
        let app = instances[i % 3];
        let tenant = &tenant;
        async move {
            let (_, _, answer) = authorize(app, tenant, call(&format!("c-{i}"), "shared", 100_000, 50_000)).await;
            answer["allowed"] == true
        }
    });
    let allowed = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .filter(|a| *a)
        .count();
    assert_eq!(allowed, 5);
}

#[tokio::test]
async fn redis_counters_match_the_ledger_after_a_random_workload() {
    use rand::{Rng, SeedableRng};
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    priced_model(&app).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let customers = ["a", "b", "c", "d"];
    let events: Vec<Value> = (0..120)
        .map(|i| {
            let mut e = usage(
                &format!("w-{i}"),
                customers[rng.random_range(0..customers.len())],
                rng.random_range(0..20_000),
                rng.random_range(0..5_000),
            );
            if rng.random_bool(0.2) {
                e["agentId"] = json!("helper");
            }
            e
        })
        .collect();
    for chunk in events.chunks(40) {
        let (status, body) = app.send_batch(&tenant.key_secret, json!(chunk)).await;
        assert_eq!((status, body["accepted"].as_u64()), (StatusCode::OK, Some(40)));
    }
    // Each customer's monthly counter in Redis, read through authorize, equals the
    // ledger's rounded-up micro-dollars for the month.
    for name in customers {
        let id = id_of(&app, "customers", tenant.org_id, name).await;
        set_budget(&app, tenant.org_id, "customer", id, "1000", true).await;
        let (_, _, answer) = authorize(
            &app,
            &tenant,
            json!({"requestId": format!("check-{name}"), "user": name}),
        )
        .await;
        let spent: rust_decimal::Decimal = answer["scopes"][3]["budget"]["spent"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        #[derive(diesel::QueryableByName)]
        struct Sum {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            micros: i64,
        }
        let ledger: Sum = diesel_async::RunQueryDsl::get_result(
            diesel::sql_query(
                "SELECT coalesce(sum(cost_micros), 0)::int8 AS micros FROM spend_ledger \
                 WHERE org_id = $1 AND scope = 'customer' AND scope_id = $2 AND day >= date_trunc('month', now())::date",
            )
            .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
            .bind::<diesel::sql_types::Uuid, _>(id),
            &mut app.db().await,
        )
        .await
        .unwrap();
        assert_eq!(spent, rust_decimal::Decimal::new(ledger.micros, 6), "customer {name}");
        assert!(ledger.micros > 0);
    }
    let (_, _, whole) = authorize(&app, &tenant, json!({"requestId": "org-check"})).await;
    assert!(whole["scopes"][0]["budget"].is_null(), "no organization budget was set");
}

#[tokio::test]
async fn the_rebuild_command_sets_counters_from_the_ledger() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    priced_model(&app).await;
    record(&app, &tenant, usage("cmd-1", "c1", 100_000, 50_000)).await;
    lose_counters(&app).await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_meterplane"))
        .args(["rebuild-counters", "--org", &tenant.org_id.to_string()])
        .env("DATABASE_URL", &app.database_url)
        .env(
            "REDIS_URL",
            std::env::var("MP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        )
        .env("MP_REDIS_PREFIX", &app.state.config.redis.key_prefix)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("rebuilt the counters of 1 organization"));
    let keys = meterplane::counters::OrgKeys::new(&app.state.config.redis.key_prefix, tenant.org_id);
    let customer = id_of(&app, "customers", tenant.org_id, "c1").await;
    let month =
        meterplane::counters::keys::period_tag(meterplane::domain::period::BudgetPeriod::Monthly, chrono::Utc::now());
    let mut redis = app.state.redis.clone();
    let ready: bool = redis::cmd("EXISTS")
        .arg(keys.ready())
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ready);
    let key = keys.spend(
        meterplane::counters::ScopeRef {
            kind: meterplane::domain::budget::BudgetScope::Customer,
            id: customer,
        },
        &month,
    );
    let micros: i64 = redis::cmd("GET").arg(key).query_async(&mut redis).await.unwrap();
    assert_eq!(micros, 200_000, "0.2 USD in micro-dollars");
}

#[tokio::test]
async fn a_daily_budget_starts_over_at_midnight_utc() {
    use meterplane::{
        enforcement::CallRequest,
        ingest::{CommittedEvent, CommittedSpend},
    };
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    authorize(&app, &tenant, json!({"requestId": "seed", "user": "night-owl"})).await;
    let customer = id_of(&app, "customers", tenant.org_id, "night-owl").await;
    set_budget(&app, tenant.org_id, "customer", customer, "0.3", true).await;
    execute(
        &app,
        &format!("UPDATE budgets SET period = 'daily' WHERE scope_id = '{customer}'"),
    )
    .await;
    app.state.enforcer.forget_rules(tenant.org_id);
    let key = meterplane::domain::identity::KeyIdentity {
        key_id: tenant.key_id,
        project_id: tenant.project_id,
        org_id: tenant.org_id,
    };
    let ask = |request_id: &str| CallRequest {
        key,
        request_id: request_id.to_owned(),
        customer: Some(("night-owl".to_owned(), customer)),
        agent: None,
        endpoint: None,
        provider: None,
        model: None,
        estimated_cost: "0.2".parse().unwrap(),
        estimated_tokens: 0,
        model_priced: None,
    };
    let before_midnight: chrono::DateTime<chrono::Utc> = "2026-12-02T23:59:59Z".parse().unwrap();
    let enforcer = &app.state.enforcer;
    assert!(enforcer
        .authorize(&ask("late-1"), before_midnight)
        .await
        .unwrap()
        .allowed());
    // As the ingest transaction reports it: the event, and its sum per scope and day.
    let spend = CommittedSpend {
        org_id: tenant.org_id,
        by_scope: vec![meterplane::store::spend_ledger::SpendDelta {
            scope: meterplane::domain::budget::BudgetScope::Customer,
            scope_id: customer,
            day: before_midnight.date_naive(),
            cost: "0.2".parse().unwrap(),
            cost_micros: 200_000,
            requests: 1,
            tokens: 0,
        }],
        events: vec![CommittedEvent {
            request_id: "late-1".into(),
            occurred_at: before_midnight,
            cost_micros: 200_000,
            tokens: 0,
            customer_id: Some(customer),
            agent_id: None,
        }],
    };
    enforcer.settle(&key, &spend, before_midnight).await;
    let denied = enforcer.authorize(&ask("late-2"), before_midnight).await.unwrap();
    assert_eq!(
        denied.reason,
        meterplane::domain::decision::DecisionReason::BudgetExceeded
    );
    // One second later it is another UTC day: the daily counter is empty again.
    let after_midnight = before_midnight + chrono::Duration::seconds(1);
    let next_day = enforcer.authorize(&ask("early-1"), after_midnight).await.unwrap();
    assert!(next_day.allowed(), "{next_day:?}");
    assert_eq!(next_day.scopes[3].reading.spent_micros, 0);
}

/// Denials are logged in batches off the request path. Stopping the server writes the
/// batch being gathered, and `run_until_stopped` returns only once it is written, so a
/// process that exits right after loses none — here with PostgreSQL holding the
/// write up, to show that the stop waits for it.
#[tokio::test]
async fn stopping_the_server_waits_until_its_last_decisions_are_written() {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    authorize(&app, &tenant, json!({"requestId": "first-sight", "user": "bad-actor"})).await;
    execute(
        &app,
        &format!(
            "UPDATE customers SET blocked_at = now() WHERE org_id = '{}' AND external_id = 'bad-actor'",
            tenant.org_id
        ),
    )
    .await;
    app.state.enforcer.forget_rules(tenant.org_id);

    // The log's table is locked against writes until this transaction ends.
    let mut lock = app.db().await;
    diesel::sql_query("BEGIN").execute(&mut lock).await.unwrap();
    diesel::sql_query("LOCK TABLE authorize_decisions IN SHARE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    for n in 0..3 {
        let ask = json!({"requestId": format!("last-{n}"), "user": "bad-actor"});
        let (_, _, denied) = authorize(&app, &tenant, ask).await;
        assert_eq!(denied["reason"], "customer_blocked");
    }
    eventually(
        "the decision writer to wait for the lock",
        Duration::from_secs(10),
        || {
            let pool = app.state.db.clone();
            async move {
                let waiting: Count = diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO authorize_decisions%'",
                )
                .get_result(&mut pool.get().await.unwrap())
                .await
                .unwrap();
                (waiting.n > 0).then_some(())
            }
        },
    )
    .await;

    let (org_id, database_url) = (tenant.org_id, app.database_url.clone());
    let mut stopping = tokio::spawn(app.stop());
    // An absence can only be watched for a while: stopped within half a second, it
    // did not wait for the write (which cannot finish while the lock is held).
    let early = tokio::time::timeout(Duration::from_millis(500), &mut stopping).await;
    assert!(
        early.is_err(),
        "the server stopped before its decisions were written: {early:?}"
    );
    diesel::sql_query("COMMIT").execute(&mut lock).await.unwrap();
    stopping.await.unwrap();

    let mut conn = <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&database_url)
        .await
        .unwrap();
    let logged: Count =
        diesel::sql_query("SELECT count(*) AS n FROM authorize_decisions WHERE org_id = $1 AND NOT allowed")
            .bind::<diesel::sql_types::Uuid, _>(org_id)
            .get_result(&mut conn)
            .await
            .unwrap();
    assert_eq!(logged.n, 3);
}
