//! Billing settings, customer billing profiles, and the per-customer daily cost ledger
//! invoices are made from (kept past the plan's retention, for the billing horizon).

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use diesel::sql_types::{BigInt, Date, Nullable, Numeric, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use meterplane::{
    domain::retention::BILLING_HORIZON_DAYS,
    jobs::purge::{run_once, PurgeReport},
    store::prices::NewPrice,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{expect_json, expect_problem, id_of, problem_fields, Tenant, TestApp};

fn settings_path(org: Uuid) -> String {
    format!("/v1/orgs/{org}/billing-settings")
}

fn profile_path(org: Uuid, customer: Uuid) -> String {
    format!("/v1/orgs/{org}/customers/{customer}/billing")
}

async fn put(app: &TestApp, user: &crate::helpers::TestUser, path: &str, body: Value) -> reqwest::Response {
    app.as_user(Method::PUT, path, user).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn billing_settings_answer_the_defaults_until_set_and_owners_and_admins_set_them() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let path = settings_path(tenant.org_id);

    // Before any PUT: the defaults, the organization's name as the issuer.
    let defaults = app.get_json(&tenant.owner, &path).await;
    assert_eq!(
        defaults,
        json!({
            "issuerName": "Acme AI", "issuerAddress": null, "taxId": null, "taxRate": "0",
            "currency": "USD", "markup": "0", "dueDays": 30, "footer": null, "updatedAt": null,
        })
    );

    let body = json!({
        "issuerName": "  Acme AI Inc. ",
        "issuerAddress": "Acme AI Inc.\r\n1 Main Street\r\nSpringfield, IL 62701",
        "taxId": "US12-3456789",
        "taxRate": "8.2500",
        "currency": "USD",
        "markup": "20",
        "dueDays": 14,
        "footer": "Thank you for your business.\nPay by bank transfer.",
    });
    let set = expect_json(put(&app, &tenant.owner, &path, body).await, StatusCode::OK).await;
    let read = app.get_json(&tenant.owner, &path).await;
    assert_eq!(set, read);
    assert_eq!(read["issuerName"], "Acme AI Inc.", "trimmed");
    assert_eq!(
        read["issuerAddress"],
        "Acme AI Inc.\n1 Main Street\nSpringfield, IL 62701"
    );
    assert_eq!(read["taxId"], "US12-3456789");
    assert_eq!(read["taxRate"], "8.25");
    assert_eq!(read["markup"], "20");
    assert_eq!(read["dueDays"], 14);
    assert_eq!(read["footer"], "Thank you for your business.\nPay by bank transfer.");
    assert!(read["updatedAt"].is_string(), "{read}");

    // Any member reads them; only owners and admins change them.
    let viewer = app.member(&tenant, "viewer").await;
    assert_eq!(app.get_json(&viewer, &path).await, read);
    expect_problem(
        put(&app, &viewer, &path, json!({"taxRate": "10"})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(app.get_json(&tenant.owner, &path).await, read, "unchanged");
    let admin = app.member(&tenant, "admin").await;
    let set = expect_json(
        put(
            &app,
            &admin,
            &path,
            json!({"taxRate": "100", "markup": "0.0001", "dueDays": 0}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    // PUT replaces: what was left out is back to its default.
    assert_eq!(
        (
            &set["issuerName"],
            &set["issuerAddress"],
            &set["taxRate"],
            &set["markup"],
            &set["dueDays"],
            &set["footer"]
        ),
        (
            &json!("Acme AI"),
            &Value::Null,
            &json!("100"),
            &json!("0.0001"),
            &json!(0),
            &Value::Null
        )
    );
}

#[tokio::test]
async fn bad_billing_settings_are_refused_with_every_broken_field() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let path = settings_path(tenant.org_id);
    let problem = expect_problem(
        put(
            &app,
            &tenant.owner,
            &path,
            json!({
                "issuerName": "   ", "issuerAddress": "1 Main St\u{0007}", "taxId": "x\ny",
                "taxRate": "101", "currency": "EUR", "markup": "-5", "dueDays": 366, "footer": "",
            }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let mut fields = problem_fields(&problem);
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "currency",
            "dueDays",
            "footer",
            "issuerAddress",
            "issuerName",
            "markup",
            "taxId",
            "taxRate"
        ]
    );
    for (body, field) in [
        (json!({"taxRate": "100.0001"}), "taxRate"),
        (json!({"taxRate": "-0.5"}), "taxRate"),
        (json!({"taxRate": "1.00001"}), "taxRate"),
        (json!({"markup": "10000.5"}), "markup"),
        (json!({"dueDays": -1}), "dueDays"),
        (json!({"issuerName": "x".repeat(201)}), "issuerName"),
    ] {
        let problem = expect_problem(
            put(&app, &tenant.owner, &path, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(problem_fields(&problem), [field], "{body}");
    }
    // A number where an exact decimal string is expected, and unknown fields.
    expect_problem(
        put(&app, &tenant.owner, &path, json!({"taxRate": 8.25})).await,
        StatusCode::BAD_REQUEST,
        "invalid_type",
    )
    .await;
    expect_problem(
        put(&app, &tenant.owner, &path, json!({"vat": "20"})).await,
        StatusCode::BAD_REQUEST,
        "unknown_field",
    )
    .await;
    // Nothing was stored.
    assert_eq!(app.get_json(&tenant.owner, &path).await["updatedAt"], Value::Null);
}

#[tokio::test]
async fn customer_billing_profiles_are_set_and_read_per_customer() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    app.record_event(&tenant, json!({"user": "globex"})).await;
    let customer = id_of(&app, "customers", tenant.org_id, "globex").await;
    let path = profile_path(tenant.org_id, customer);

    let empty = app.get_json(&tenant.owner, &path).await;
    assert_eq!(
        empty,
        json!({
            "customerId": customer.to_string(), "externalId": "globex", "billingName": null,
            "email": null, "address": null, "taxId": null, "updatedAt": null,
        })
    );

    let set = expect_json(
        put(
            &app,
            &tenant.owner,
            &path,
            json!({
                "billingName": "Globex Corporation", "email": "ap@globex.example",
                "address": "500 Oak Avenue\nCypress Creek", "taxId": "GB123456789",
            }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let read = app.get_json(&tenant.owner, &path).await;
    assert_eq!(set, read);
    assert_eq!(
        (&read["billingName"], &read["email"], &read["address"], &read["taxId"]),
        (
            &json!("Globex Corporation"),
            &json!("ap@globex.example"),
            &json!("500 Oak Avenue\nCypress Creek"),
            &json!("GB123456789")
        )
    );
    assert!(read["updatedAt"].is_string());

    // Replacing clears what is left out.
    let set = expect_json(
        put(&app, &tenant.owner, &path, json!({"email": "billing@globex.example"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&set["billingName"], &set["email"], &set["taxId"]),
        (&Value::Null, &json!("billing@globex.example"), &Value::Null)
    );

    // A bad email (and every other broken field) is a 422 naming the fields.
    let problem = expect_problem(
        put(
            &app,
            &tenant.owner,
            &path,
            json!({"email": "not an email", "billingName": "", "address": "a\tb"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(problem_fields(&problem), ["billingName", "email", "address"]);
    assert_eq!(
        app.get_json(&tenant.owner, &path).await["email"],
        "billing@globex.example"
    );

    // A customer the organization does not have: 404, for reads and writes.
    let unknown = profile_path(tenant.org_id, Uuid::now_v7());
    expect_problem(
        app.as_user(Method::GET, &unknown, &tenant.owner).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_problem(
        put(&app, &tenant.owner, &unknown, json!({"billingName": "Nobody"})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Viewers read; they do not write.
    let viewer = app.member(&tenant, "viewer").await;
    assert_eq!(app.get_json(&viewer, &path).await["externalId"], "globex");
    expect_problem(
        put(&app, &viewer, &path, json!({"billingName": "Globex"})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn another_tenant_cannot_read_or_change_billing_data() {
    let app = TestApp::spawn().await;
    let a = app.tenant().await;
    let b = app.tenant().await;
    app.record_event(&a, json!({"user": "initech"})).await;
    app.record_event(&b, json!({"user": "initech"})).await;
    let a_customer = id_of(&app, "customers", a.org_id, "initech").await;
    put(&app, &a.owner, &settings_path(a.org_id), json!({"taxRate": "19"})).await;
    put(
        &app,
        &a.owner,
        &profile_path(a.org_id, a_customer),
        json!({"billingName": "Initech A"}),
    )
    .await;

    // B's owner on A's organization: 404, whatever the operation.
    for path in [settings_path(a.org_id), profile_path(a.org_id, a_customer)] {
        expect_problem(
            app.as_user(Method::GET, &path, &b.owner).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        expect_problem(
            put(&app, &b.owner, &path, json!({"taxId": "stolen"})).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    // A's customer under B's organization: no such customer there.
    let crossed = profile_path(b.org_id, a_customer);
    expect_problem(
        app.as_user(Method::GET, &crossed, &b.owner).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_problem(
        put(&app, &b.owner, &crossed, json!({"billingName": "Mine now"})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Without a token: 401.
    let anonymous = app.request(Method::GET, &settings_path(a.org_id)).send().await.unwrap();
    expect_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // A's data is as A left it; B's are its own defaults.
    let a_settings = app.get_json(&a.owner, &settings_path(a.org_id)).await;
    assert_eq!(
        (&a_settings["taxRate"], &a_settings["taxId"]),
        (&json!("19"), &Value::Null)
    );
    assert_eq!(
        app.get_json(&a.owner, &profile_path(a.org_id, a_customer)).await["billingName"],
        "Initech A"
    );
    assert_eq!(app.get_json(&b.owner, &settings_path(b.org_id)).await["taxRate"], "0");
}

/// One group of the ledger or of the raw events, summed over shards.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, diesel::QueryableByName)]
struct CostGroup {
    #[diesel(sql_type = Text)]
    customer: String,
    #[diesel(sql_type = Date)]
    day: NaiveDate,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Text)]
    model: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    price_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    discount_id: Option<Uuid>,
    #[diesel(sql_type = BigInt)]
    requests: i64,
    #[diesel(sql_type = BigInt)]
    prompt_tokens: i64,
    #[diesel(sql_type = BigInt)]
    completion_tokens: i64,
    #[diesel(sql_type = BigInt)]
    cached_tokens: i64,
    #[diesel(sql_type = Numeric)]
    cost_before_discount: Decimal,
    #[diesel(sql_type = Numeric)]
    discount_savings: Decimal,
    #[diesel(sql_type = Numeric)]
    cost: Decimal,
}

const SUMS: &str = "sum(prompt_tokens)::int8 AS prompt_tokens, sum(completion_tokens)::int8 AS completion_tokens, \
    sum(cached_tokens)::int8 AS cached_tokens, sum(cost_before_discount) AS cost_before_discount, \
    sum(discount_savings) AS discount_savings, sum(cost) AS cost";

async fn ledger(app: &TestApp, org: Uuid) -> Vec<CostGroup> {
    let mut rows: Vec<CostGroup> = diesel::sql_query(format!(
        "SELECT c.external_id AS customer, day, provider, model, price_id, discount_id, \
         sum(requests)::int8 AS requests, {SUMS} \
         FROM customer_cost_daily l JOIN customers c ON c.org_id = l.org_id AND c.id = l.customer_id \
         WHERE l.org_id = $1 GROUP BY 1, 2, 3, 4, 5, 6"
    ))
    .bind::<SqlUuid, _>(org)
    .load(&mut app.db().await)
    .await
    .unwrap();
    rows.sort();
    rows
}

/// The same groups computed from the spend logs (the raw events).
async fn from_spend_logs(app: &TestApp, org: Uuid) -> Vec<CostGroup> {
    let mut rows: Vec<CostGroup> = diesel::sql_query(format!(
        "SELECT c.external_id AS customer, (e.occurred_at AT TIME ZONE 'UTC')::date AS day, provider, \
         canonical_model AS model, price_id, discount_id, count(*)::int8 AS requests, {SUMS} \
         FROM usage_events e JOIN customers c ON c.org_id = e.org_id AND c.id = e.customer_id \
         WHERE e.org_id = $1 GROUP BY 1, 2, 3, 4, 5, 6"
    ))
    .bind::<SqlUuid, _>(org)
    .load(&mut app.db().await)
    .await
    .unwrap();
    rows.sort();
    rows
}

async fn add_price(app: &TestApp, valid_from: DateTime<Utc>, input: &str, output: &str) -> Uuid {
    let new = NewPrice {
        provider: "acme".into(),
        model: "acme-large".into(),
        provider_model_name: "acme-large-2026".into(),
        input_per_mtok: input.parse().unwrap(),
        output_per_mtok: output.parse().unwrap(),
        cached_input_per_mtok: "0.5".parse().unwrap(),
        valid_from,
        ..Default::default()
    };
    let mut conn = app.state.db.get().await.unwrap();
    meterplane::store::prices::insert(&mut conn, &new).await.unwrap().id
}

async fn purge_at(app: &TestApp, now: DateTime<Utc>, horizon_days: i32) -> PurgeReport {
    run_once(&app.state.db, now, 7, horizon_days)
        .await
        .expect("purge runs")
        .expect("no other purge holds the lock")
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

#[tokio::test]
async fn the_customer_cost_ledger_matches_the_spend_logs_and_outlives_a_three_day_retention() {
    let app = TestApp::spawn().await;
    let tenant: Tenant = app.tenant().await;
    let operator = app.operator().await;
    let now = Utc::now();
    // A price change 20 days ago, and a 10% discount on the provider for this
    // organization: ledger rows split by price version and carry the discount.
    let old_price = add_price(&app, "2020-01-01T00:00:00Z".parse().unwrap(), "2", "8").await;
    let new_price = add_price(&app, now - Duration::days(20), "1", "4").await;
    let discount = app
        .post_json(
            &operator,
            "/v1/admin/discounts",
            json!({"orgId": tenant.org_id, "provider": "acme", "percent": "10", "validFrom": "2020-01-01T00:00:00Z"}),
        )
        .await;
    let discount_id: Uuid = discount["id"].as_str().unwrap().parse().unwrap();
    // Long enough a retention to record 45 days back; it becomes the free plan below.
    app.set_plan(tenant.org_id, "pro", 90).await;

    // Two hand-computed calls: 1M prompt and 0.5M completion tokens,
    // 40 days ago at the old price: 2 + 4 = 6, 10% off: 5.4;
    // 10 days ago at the new price: 1 + 2 = 3, 10% off: 2.7.
    let forty_days_ago = now - Duration::days(40);
    let ten_days_ago = now - Duration::days(10);
    let mut events = vec![
        json!({"requestId": "hand-1", "endpoint": "/chat/completions", "startedAt": forty_days_ago, "provider": "acme", "model": "acme-large",
               "user": "hand", "promptTokens": 1_000_000, "completionTokens": 500_000}),
        json!({"requestId": "hand-2", "endpoint": "/chat/completions", "startedAt": ten_days_ago, "provider": "acme", "model": "acme-large-2026",
               "user": "hand", "promptTokens": 1_000_000, "completionTokens": 500_000}),
    ];
    // A randomized workload over 45 days: several customers (and calls without one),
    // a priced model under both of its names, a catalog model, an unpriced one.
    let mut rng = StdRng::seed_from_u64(13);
    let models = [
        ("acme", "acme-large"),
        ("acme", "acme-large-2026"),
        ("openai", "gpt-4o"),
        ("acme", "acme-mystery"),
    ];
    for i in 0..240 {
        let (provider, model) = models[rng.random_range(0..models.len())];
        let prompt: i64 = rng.random_range(1..20_000);
        let at = now - Duration::minutes(rng.random_range(1..45 * 24 * 60));
        let user = match rng.random_range(0..6) {
            5 => Value::Null,
            n => json!(format!("customer-{n}")),
        };
        events.push(json!({
            "requestId": format!("r-{i}"), "startedAt": at, "endpoint": "/chat/completions",
            "provider": provider, "model": model, "user": user,
            "promptTokens": prompt, "completionTokens": rng.random_range(0..4_000),
            "cachedTokens": rng.random_range(0..=prompt), "latencyMs": 200,
        }));
    }
    for chunk in events.chunks(50) {
        let (status, body) = app.send_batch(&tenant.key_secret, json!(chunk)).await;
        assert!(status.is_success(), "{status}: {body}");
        let rejected: Vec<&Value> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] != "accepted")
            .collect();
        assert!(rejected.is_empty(), "{rejected:?}");
    }

    // Every column of every (customer, day, provider, model, price, discount) group
    // equals the sum over its spend logs.
    let before = ledger(&app, tenant.org_id).await;
    assert_eq!(before, from_spend_logs(&app, tenant.org_id).await);
    let requests: i64 = before.iter().map(|g| g.requests).sum();
    let with_customer = events.iter().filter(|e| !e["user"].is_null()).count();
    assert_eq!(requests, with_customer as i64, "calls without a customer bill no one");
    // Both price versions, the discount and unpriced calls are in it.
    assert!(before.iter().any(|g| g.price_id == Some(old_price)));
    assert!(before.iter().any(|g| g.price_id == Some(new_price)));
    assert!(before.iter().any(|g| g.price_id.is_none() && g.model == "acme-mystery"));
    // Unpriced calls record no discount (a discount of nothing is none).
    assert!(before
        .iter()
        .all(|g| (g.provider == "acme" && g.price_id.is_some()) == (g.discount_id == Some(discount_id))));
    assert!(before.iter().any(|g| g.provider == "openai" && g.discount_id.is_none()));
    // Both names of the priced model count under its catalog id.
    assert!(before.iter().all(|g| g.model != "acme-large-2026"));
    let hand: Vec<&CostGroup> = before.iter().filter(|g| g.customer == "hand").collect();
    let summary = |g: &CostGroup| {
        (
            g.day,
            g.price_id,
            g.requests,
            g.prompt_tokens,
            g.completion_tokens,
            g.cost_before_discount,
            g.discount_savings,
            g.cost,
        )
    };
    assert_eq!(
        hand.iter().map(|g| summary(g)).collect::<Vec<_>>(),
        [
            (
                forty_days_ago.date_naive(),
                Some(old_price),
                1,
                1_000_000,
                500_000,
                d("6"),
                d("0.6"),
                d("5.4")
            ),
            (
                ten_days_ago.date_naive(),
                Some(new_price),
                1,
                1_000_000,
                500_000,
                d("3"),
                d("0.3"),
                d("2.7")
            ),
        ]
    );

    // The organization moves to the free plan (three days). The purge removes the
    // spend logs older than that and keeps the whole ledger, 40 days ago included.
    app.set_plan(tenant.org_id, "free", 3).await;
    let retention_start = (now - Duration::days(2)).date_naive();
    let kept_events = events
        .iter()
        .filter(|e| {
            let at: DateTime<Utc> = serde_json::from_value(e["startedAt"].clone()).unwrap();
            at.date_naive() >= retention_start
        })
        .count();
    assert!(kept_events > 0 && kept_events < events.len());
    let report = purge_at(&app, now, BILLING_HORIZON_DAYS).await;
    assert_eq!(report.customer_cost_rows, 0, "{report:?}");
    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, kept_events as i64);
    let logs = app
        .get_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/spend-logs?limit=500", tenant.org_id),
        )
        .await;
    assert_eq!(
        logs["data"].as_array().map(Vec::len),
        Some(kept_events),
        "the spend logs shrank"
    );
    let after = ledger(&app, tenant.org_id).await;
    assert_eq!(after, before, "the ledger is kept whole");
    assert!(after
        .iter()
        .any(|g| g.customer == "hand" && g.day == forty_days_ago.date_naive()));

    // A deployment with a 70-day billing horizon, 40 days on: the days before the
    // horizon's first day (29 days ago today) go, the others stay.
    let first_kept = (now + Duration::days(40) - Duration::days(69)).date_naive();
    let stored_rows = |groups: &[CostGroup]| groups.len();
    let report = purge_at(&app, now + Duration::days(40), 70).await;
    let expected: Vec<CostGroup> = before.iter().filter(|g| g.day >= first_kept).cloned().collect();
    let after = ledger(&app, tenant.org_id).await;
    assert_eq!(after, expected);
    assert!(report.customer_cost_rows as usize >= stored_rows(&before) - stored_rows(&expected));
    assert!(!after
        .iter()
        .any(|g| g.customer == "hand" && g.day == forty_days_ago.date_naive()));

    // Past the default horizon (400 days), nothing is left.
    purge_at(&app, now + Duration::days(500), BILLING_HORIZON_DAYS).await;
    assert_eq!(app.count_rows("customer_cost_daily", tenant.org_id).await, 0);
}

/// The migration that made the ledger filled it from the raw events still kept: run
/// again over events that ingest recorded, it writes the same sums (summed over
/// shards) that ingest did.
#[tokio::test]
async fn the_ledger_migration_fills_it_from_the_raw_events_as_ingest_does() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let mut rng = StdRng::seed_from_u64(21);
    let now = Utc::now();
    let events: Vec<Value> = (0..90)
        .map(|i| {
            let prompt: i64 = rng.random_range(1..9_000);
            let model = ["gpt-4o", "gpt-4o-mini", "mystery-model"][rng.random_range(0..3)];
            let user = if rng.random_bool(0.8) {
                json!(format!("customer-{}", rng.random_range(0..4)))
            } else {
                Value::Null
            };
            json!({
                "requestId": format!("m-{i}"), "endpoint": "/chat/completions",
                "startedAt": now - Duration::minutes(rng.random_range(1..3 * 24 * 60 - 120)),
                "provider": "openai", "model": model, "user": user,
                "promptTokens": prompt, "completionTokens": rng.random_range(0..2_000),
                "cachedTokens": rng.random_range(0..=prompt),
            })
        })
        .collect();
    for chunk in events.chunks(30) {
        let (status, body) = app.send_batch(&tenant.key_secret, json!(chunk)).await;
        assert!(status.is_success(), "{status}: {body}");
    }
    let written = ledger(&app, tenant.org_id).await;
    assert!(written.len() > 4, "{written:?}");
    assert_eq!(written, from_spend_logs(&app, tenant.org_id).await);

    let up = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations/2026-12-05-200000_billing/up.sql"
    ))
    .unwrap();
    let backfill = &up[up.find("INSERT INTO customer_cost_daily").expect("the backfill")..];
    let mut conn = app.db().await;
    diesel::sql_query("DELETE FROM customer_cost_daily WHERE org_id = $1")
        .bind::<SqlUuid, _>(tenant.org_id)
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query(backfill).execute(&mut conn).await.unwrap();
    assert_eq!(ledger(&app, tenant.org_id).await, written);
}
