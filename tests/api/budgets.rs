//! Budgets, rate limits and organization defaults through the API: set, read, change,
//! reset and remove them; spend counted from the ledger; bad input; tenancy and roles.

use chrono::{DateTime, Duration, Utc};
use meterplane::domain::period::BudgetPeriod;
use reqwest::{Method, Response, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{expect_json, expect_problem, uuid, Tenant, TestApp, TestUser};

/// gpt-4o at $2.50 in / $10 out per million tokens.
pub async fn priced_app() -> (TestApp, Tenant) {
    let app = TestApp::spawn().await;
    app.add_price("openai", "gpt-4o", "gpt-4o-2024-08-06", "2.5", "10", "1.25")
        .await;
    let tenant = app.tenant().await;
    (app, tenant)
}

pub async fn send(app: &TestApp, user: &TestUser, method: Method, path: &str, body: Option<Value>) -> Response {
    let mut request = app.as_user(method, path, user);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// Records a gpt-4o call of `prompt` input tokens (and no output) for `user` at `at`;
/// returns its cost.
pub async fn spend(app: &TestApp, tenant: &Tenant, user: &str, prompt: i64, at: DateTime<Utc>) -> Decimal {
    let (status, body) = app
        .send_batch(
            &tenant.key_secret,
            json!([{
                "requestId": format!("req-{}", Uuid::new_v4().simple()), "endpoint": "/chat/completions",
                "provider": "openai", "model": "gpt-4o", "user": user, "promptTokens": prompt,
                "startedAt": at.to_rfc3339(),
            }]),
        )
        .await;
    assert_eq!((status, body["accepted"].as_i64()), (StatusCode::OK, Some(1)), "{body}");
    body["results"][0]["cost"].as_str().unwrap().parse().unwrap()
}

pub async fn customer_id(app: &TestApp, tenant: &Tenant, external_id: &str) -> Uuid {
    let page = app
        .get_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/customers?externalId={external_id}", tenant.org_id),
        )
        .await;
    uuid(&page["data"][0]["id"])
}

fn money(value: &Value) -> Decimal {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {value}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_budget_is_set_read_changed_listed_and_removed() {
    let (app, tenant) = priced_app().await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    let owner = &tenant.owner;
    let path = format!("{org}/budgets/project/{}", tenant.project_id);

    let created = expect_json(
        send(
            &app,
            owner,
            Method::PUT,
            &path,
            Some(json!({"amount": "100.50", "period": "monthly"})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["scope"], "project");
    assert_eq!(uuid(&created["scopeId"]), tenant.project_id);
    assert_eq!(created["amount"], "100.5");
    assert_eq!(created["thresholds"], json!([50, 80, 100]));
    assert_eq!(created["hardLimit"], true);
    assert_eq!(created["source"], "own");
    assert_eq!(
        (created["spent"].as_str(), created["remaining"].as_str()),
        (Some("0"), Some("100.5"))
    );
    let window = BudgetPeriod::Monthly.window(Utc::now());
    assert_eq!(created["periodStart"], json!(window.start));
    assert_eq!(created["periodEnd"], json!(window.end));

    let replaced = expect_json(
        send(
            &app,
            owner,
            Method::PUT,
            &path,
            Some(json!({"amount": "5", "period": "total", "thresholds": [90, 10, 90], "hardLimit": false})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(replaced["id"], created["id"], "the same budget, replaced");
    assert_eq!(replaced["thresholds"], json!([10, 90]));
    assert_eq!(
        (replaced["period"].as_str(), replaced["periodEnd"].clone()),
        (Some("total"), Value::Null)
    );

    let changed = expect_json(
        send(&app, owner, Method::PATCH, &path, Some(json!({"amount": "7.25"}))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (changed["amount"].as_str(), changed["period"].as_str()),
        (Some("7.25"), Some("total"))
    );
    assert_eq!(changed["hardLimit"], false);
    assert_eq!(app.get_json(owner, &path).await["amount"], "7.25");

    // Budgets on the organization and on the key, then the list and its filter.
    let org_budget = format!("{org}/budgets/organization/{}", tenant.org_id);
    let key_budget = format!("{org}/budgets/apiKey/{}", tenant.key_id);
    for p in [&org_budget, &key_budget] {
        let r = send(
            &app,
            owner,
            Method::PUT,
            p,
            Some(json!({"amount": "1000", "period": "daily"})),
        )
        .await;
        expect_json(r, StatusCode::CREATED).await;
    }
    let all = app.get_json(owner, &format!("{org}/budgets")).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 3);
    let keys = app.get_json(owner, &format!("{org}/budgets?scope=apiKey")).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    assert_eq!(uuid(&keys["data"][0]["scopeId"]), tenant.key_id);
    let first = app.get_json(owner, &format!("{org}/budgets?limit=2")).await;
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = app
        .get_json(owner, &format!("{org}/budgets?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert!(second["nextCursor"].is_null());

    let deleted = send(&app, owner, Method::DELETE, &path, None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    expect_problem(
        send(&app, owner, Method::GET, &path, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_problem(
        send(&app, owner, Method::DELETE, &path, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn bad_budgets_and_limits_are_refused_with_the_field_named() {
    let (app, tenant) = priced_app().await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    let path = format!("{org}/budgets/project/{}", tenant.project_id);
    let put = |body: Value| send(&app, &tenant.owner, Method::PUT, &path, Some(body));
    let cases = [
        (json!({"amount": "-5", "period": "monthly"}), "amount"),
        (json!({"amount": "0", "period": "monthly"}), "amount"),
        (json!({"amount": "1000000000.01", "period": "monthly"}), "amount"),
        (json!({"amount": "1.00000000001", "period": "monthly"}), "amount"),
        (json!({"amount": "10", "period": "montly"}), "period"),
        (json!({"amount": "10", "period": "Monthly"}), "period"),
        (
            json!({"amount": "10", "period": "daily", "thresholds": [50, 101]}),
            "thresholds",
        ),
        (
            json!({"amount": "10", "period": "daily", "thresholds": [0]}),
            "thresholds",
        ),
        (
            json!({"amount": "10", "period": "daily", "thresholds": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}),
            "thresholds",
        ),
    ];
    for (body, field) in cases {
        let problem = expect_problem(
            put(body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let problem = expect_problem(
        put(json!({"amount": "-1", "period": "yearly", "thresholds": [200]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        problem["errors"].as_array().unwrap().len(),
        3,
        "every broken field at once"
    );

    for (body, code) in [
        (json!({"amount": "abc", "period": "daily"}), "invalid_type"),
        (json!({"amount": "10"}), "missing_field"),
        (json!({"amount": "10", "period": "daily", "cap": 1}), "unknown_field"),
        (
            json!({"amount": "10", "period": "daily", "thresholds": [50.5]}),
            "invalid_type",
        ),
    ] {
        expect_problem(put(body).await, StatusCode::BAD_REQUEST, code).await;
    }
    // Unknown scope, a scope id that is not a UUID, and targets that do not exist.
    let body = json!({"amount": "10", "period": "daily"});
    for bad in [
        format!("{org}/budgets/team/{}", tenant.project_id),
        format!("{org}/budgets/project/42"),
    ] {
        let r = send(&app, &tenant.owner, Method::PUT, &bad, Some(body.clone())).await;
        expect_problem(r, StatusCode::BAD_REQUEST, "invalid_path_parameter").await;
    }
    for missing in [
        format!("{org}/budgets/project/{}", Uuid::new_v4()),
        format!("{org}/budgets/customer/{}", Uuid::new_v4()),
        format!("{org}/budgets/organization/{}", Uuid::new_v4()),
        format!("{org}/budgets/apiKey/{}", tenant.project_id),
    ] {
        let r = send(&app, &tenant.owner, Method::PUT, &missing, Some(body.clone())).await;
        expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    }
    let patch = send(&app, &tenant.owner, Method::PATCH, &path, Some(json!({"amount": "1"}))).await;
    expect_problem(patch, StatusCode::NOT_FOUND, "not_found").await;

    let limits = format!("{org}/rate-limits/project/{}", tenant.project_id);
    for (body, field) in [
        (json!({}), "requestsPerMinute"),
        (json!({"requestsPerMinute": 0}), "requestsPerMinute"),
        (
            json!({"requestsPerMinute": 10, "tokensPerMinute": -1}),
            "tokensPerMinute",
        ),
        (json!({"tokensPerMinute": 10_000_000_001_i64}), "tokensPerMinute"),
    ] {
        let r = send(&app, &tenant.owner, Method::PUT, &limits, Some(body)).await;
        let problem = expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field);
    }
    let defaults = format!("{org}/defaults/customer");
    let r = send(
        &app,
        &tenant.owner,
        Method::PUT,
        &defaults,
        Some(json!({"budget": {"amount": "-1", "period": "daily"}, "rateLimits": {"requestsPerMinute": 0}})),
    )
    .await;
    let problem = expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields = crate::helpers::problem_fields(&problem);
    assert_eq!(fields, ["budget.amount", "rateLimits.requestsPerMinute"]);
    let r = send(
        &app,
        &tenant.owner,
        Method::PUT,
        &format!("{org}/defaults/project"),
        Some(json!({})),
    )
    .await;
    expect_problem(r, StatusCode::BAD_REQUEST, "invalid_path_parameter").await;

    assert_eq!(app.count_rows("budgets", tenant.org_id).await, 0);
    assert_eq!(app.count_rows("rate_limits", tenant.org_id).await, 0);
}

#[tokio::test]
async fn another_tenant_gets_404_and_viewers_cannot_write() {
    let (app, victim) = priced_app().await;
    spend(&app, &victim, "alice", 1000, Utc::now()).await;
    let alice = customer_id(&app, &victim, "alice").await;
    let org = format!("/v1/orgs/{}", victim.org_id);
    let budget = format!("{org}/budgets/customer/{alice}");
    let r = send(
        &app,
        &victim.owner,
        Method::PUT,
        &budget,
        Some(json!({"amount": "10", "period": "daily"})),
    )
    .await;
    expect_json(r, StatusCode::CREATED).await;

    let intruder = app.tenant().await;
    // With the victim's organization in the path: not a member, 404.
    for (method, path) in [
        (Method::GET, budget.clone()),
        (Method::DELETE, budget.clone()),
        (Method::GET, format!("{org}/customers/{alice}")),
        (Method::GET, format!("{org}/customers")),
    ] {
        expect_problem(
            send(&app, &intruder.owner, method, &path, None).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    // With its own organization and the victim's customer: no such customer there.
    let own = format!("/v1/orgs/{}", intruder.org_id);
    let r = send(
        &app,
        &intruder.owner,
        Method::PUT,
        &format!("{own}/budgets/customer/{alice}"),
        Some(json!({"amount": "10", "period": "daily"})),
    )
    .await;
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = send(
        &app,
        &intruder.owner,
        Method::POST,
        &format!("{own}/customers/{alice}/block"),
        Some(json!({})),
    )
    .await;
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let listed = app.get_json(&intruder.owner, &format!("{own}/customers")).await;
    assert_eq!(listed["data"], json!([]));

    let viewer = app.member(&victim, "viewer").await;
    assert_eq!(app.get_json(&viewer, &budget).await["amount"], "10");
    for (method, path, body) in [
        (
            Method::PUT,
            budget.clone(),
            Some(json!({"amount": "99", "period": "daily"})),
        ),
        (Method::PATCH, budget.clone(), Some(json!({"amount": "99"}))),
        (Method::POST, format!("{budget}/reset"), None),
        (Method::DELETE, budget.clone(), None),
        (Method::PUT, format!("{org}/defaults/agent"), Some(json!({}))),
        (Method::POST, format!("{org}/customers/{alice}/block"), Some(json!({}))),
    ] {
        expect_problem(
            send(&app, &viewer, method, &path, body).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    assert_eq!(app.get_json(&victim.owner, &budget).await["amount"], "10");
}

/// Spend is the ledger over the window: every event counts whatever the period was
/// when it was recorded, so changing the period recounts the spend already made.
#[tokio::test]
async fn changing_the_period_mid_period_counts_the_spend_already_made() {
    let (app, tenant) = priced_app().await;
    let now = Utc::now();
    // Today, and two days ago (inside the free plan's three retained days).
    let events = [
        (now, 400_000),
        (now - Duration::minutes(1), 200_000),
        (now - Duration::hours(47), 1_000_000),
    ];
    let mut costs = Vec::new();
    for (at, prompt) in events {
        costs.push((at, spend(&app, &tenant, "bob", prompt, at).await));
    }
    let bob = customer_id(&app, &tenant, "bob").await;
    let path = format!("/v1/orgs/{}/budgets/customer/{bob}", tenant.org_id);
    let expected = |period: BudgetPeriod| -> Decimal {
        let window = period.window(Utc::now());
        costs
            .iter()
            .filter(|(at, _)| window.contains(*at))
            .map(|(_, c)| *c)
            .sum()
    };
    let r = send(
        &app,
        &tenant.owner,
        Method::PUT,
        &path,
        Some(json!({"amount": "50", "period": "daily"})),
    )
    .await;
    let budget = expect_json(r, StatusCode::CREATED).await;
    assert_eq!(money(&budget["spent"]), expected(BudgetPeriod::Daily));
    for period in [
        BudgetPeriod::Weekly,
        BudgetPeriod::Monthly,
        BudgetPeriod::Total,
        BudgetPeriod::Daily,
    ] {
        let r = send(
            &app,
            &tenant.owner,
            Method::PATCH,
            &path,
            Some(json!({"period": period.as_str()})),
        )
        .await;
        let changed = expect_json(r, StatusCode::OK).await;
        assert_eq!(money(&changed["spent"]), expected(period), "{period:?}");
        assert_eq!(money(&changed["remaining"]), Decimal::from(50) - expected(period));
    }
    assert_eq!(
        expected(BudgetPeriod::Total),
        costs.iter().map(|(_, c)| *c).sum::<Decimal>()
    );
    // Amount and thresholds change nothing about what was spent.
    let r = send(
        &app,
        &tenant.owner,
        Method::PATCH,
        &path,
        Some(json!({"amount": "0.5", "thresholds": [25]})),
    )
    .await;
    let changed = expect_json(r, StatusCode::OK).await;
    assert_eq!(money(&changed["spent"]), expected(BudgetPeriod::Daily));
    assert_eq!(changed["remaining"], "0", "never below zero");
}

#[tokio::test]
async fn a_reset_starts_the_spend_over_and_later_spend_counts() {
    let (app, tenant) = priced_app().await;
    spend(&app, &tenant, "carol", 400_000, Utc::now()).await;
    let carol = customer_id(&app, &tenant, "carol").await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    let path = format!("{org}/budgets/customer/{carol}");
    let r = send(
        &app,
        &tenant.owner,
        Method::PUT,
        &path,
        Some(json!({"amount": "10", "period": "total"})),
    )
    .await;
    assert_eq!(expect_json(r, StatusCode::CREATED).await["spent"], "1");

    let reset = expect_json(
        send(&app, &tenant.owner, Method::POST, &format!("{path}/reset"), None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (reset["spent"].as_str(), reset["remaining"].as_str()),
        (Some("0"), Some("10"))
    );
    assert!(reset["resetAt"].is_string());

    let later = spend(&app, &tenant, "carol", 200_000, Utc::now()).await;
    let budget = app.get_json(&tenant.owner, &path).await;
    assert_eq!(money(&budget["spent"]), later);
    // The listing counts the same spend as the budget.
    let customer = app.get_json(&tenant.owner, &format!("{org}/customers/{carol}")).await;
    assert_eq!(money(&customer["spent"]), later);
    assert_eq!(customer["resetAt"], budget["resetAt"]);

    // The reset goes with the budget: set again, the whole spend counts.
    assert_eq!(
        send(&app, &tenant.owner, Method::DELETE, &path, None).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = send(
        &app,
        &tenant.owner,
        Method::PUT,
        &path,
        Some(json!({"amount": "10", "period": "total"})),
    )
    .await;
    assert_eq!(
        money(&expect_json(r, StatusCode::CREATED).await["spent"]),
        Decimal::ONE + later
    );

    // Nothing to reset without a budget.
    let dave = format!("{org}/budgets/project/{}/reset", tenant.project_id);
    expect_problem(
        send(&app, &tenant.owner, Method::POST, &dave, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn rate_limits_are_set_read_listed_and_removed() {
    let (app, tenant) = priced_app().await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    let path = format!("{org}/rate-limits/apiKey/{}", tenant.key_id);
    let r = send(
        &app,
        &tenant.owner,
        Method::PUT,
        &path,
        Some(json!({"requestsPerMinute": 600})),
    )
    .await;
    let created = expect_json(r, StatusCode::CREATED).await;
    assert_eq!(
        (
            created["requestsPerMinute"].as_i64(),
            created["tokensPerMinute"].clone()
        ),
        (Some(600), Value::Null)
    );
    let r = send(
        &app,
        &tenant.owner,
        Method::PUT,
        &path,
        Some(json!({"tokensPerMinute": 100_000})),
    )
    .await;
    let replaced = expect_json(r, StatusCode::OK).await;
    assert_eq!(
        (
            replaced["requestsPerMinute"].clone(),
            replaced["tokensPerMinute"].as_i64()
        ),
        (Value::Null, Some(100_000)),
        "PUT replaces both"
    );
    assert_eq!(app.get_json(&tenant.owner, &path).await["tokensPerMinute"], 100_000);
    let org_limits = format!("{org}/rate-limits/organization/{}", tenant.org_id);
    let r = send(
        &app,
        &tenant.owner,
        Method::PUT,
        &org_limits,
        Some(json!({"requestsPerMinute": 5000})),
    )
    .await;
    expect_json(r, StatusCode::CREATED).await;
    let list = app.get_json(&tenant.owner, &format!("{org}/rate-limits")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    let list = app
        .get_json(&tenant.owner, &format!("{org}/rate-limits?scope=organization"))
        .await;
    assert_eq!(list["data"][0]["requestsPerMinute"], 5000);
    assert_eq!(
        send(&app, &tenant.owner, Method::DELETE, &path, None).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_problem(
        send(&app, &tenant.owner, Method::GET, &path, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn defaults_apply_to_a_customer_from_its_first_request() {
    let (app, tenant) = priced_app().await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    let defaults = format!("{org}/defaults/customer");
    let empty = app.get_json(&tenant.owner, &defaults).await;
    assert_eq!(
        (empty["budget"].clone(), empty["rateLimits"].clone()),
        (Value::Null, Value::Null)
    );
    let set = send(
        &app,
        &tenant.owner,
        Method::PUT,
        &defaults,
        Some(json!({
            "budget": {"amount": "2", "period": "daily", "thresholds": [80]},
            "rateLimits": {"requestsPerMinute": 30, "tokensPerMinute": 50000}
        })),
    )
    .await;
    let set = expect_json(set, StatusCode::OK).await;
    assert_eq!(
        (set["kind"].as_str(), set["budget"]["amount"].as_str()),
        (Some("customer"), Some("2"))
    );
    assert_eq!(set["budget"]["hardLimit"], true);

    // A customer never seen before: its very first call is under the defaults.
    let cost = spend(&app, &tenant, "newcomer", 200_000, Utc::now()).await;
    let page = app
        .get_json(&tenant.owner, &format!("{org}/customers?externalId=newcomer"))
        .await;
    let c = &page["data"][0];
    assert_eq!(c["externalId"], "newcomer");
    assert_eq!(
        (c["budget"]["source"].as_str(), c["budget"]["amount"].as_str()),
        (Some("default"), Some("2"))
    );
    assert_eq!(c["budget"]["thresholds"], json!([80]));
    assert_eq!(money(&c["spent"]), cost);
    assert_eq!(money(&c["budget"]["remaining"]), Decimal::from(2) - cost);
    assert_eq!(c["period"], "daily");
    assert_eq!(
        c["rateLimits"],
        json!({"source": "default", "requestsPerMinute": 30, "tokensPerMinute": 50000})
    );
    // A reset works on the default budget too: it resets the customer's spend.
    let id = uuid(&c["id"]);
    let reset = send(
        &app,
        &tenant.owner,
        Method::POST,
        &format!("{org}/budgets/customer/{id}/reset"),
        None,
    )
    .await;
    let reset = expect_json(reset, StatusCode::OK).await;
    assert_eq!(
        (reset["source"].as_str(), reset["spent"].as_str()),
        (Some("default"), Some("0"))
    );
    assert_eq!(uuid(&reset["scopeId"]), id);

    // Its own budget and limits replace the defaults; removed, the defaults return.
    let own = format!("{org}/budgets/customer/{id}");
    let r = send(
        &app,
        &tenant.owner,
        Method::PUT,
        &own,
        Some(json!({"amount": "9", "period": "monthly"})),
    )
    .await;
    expect_json(r, StatusCode::CREATED).await;
    let r = send(
        &app,
        &tenant.owner,
        Method::PUT,
        &format!("{org}/rate-limits/customer/{id}"),
        Some(json!({"requestsPerMinute": 1})),
    )
    .await;
    expect_json(r, StatusCode::CREATED).await;
    let c = app.get_json(&tenant.owner, &format!("{org}/customers/{id}")).await;
    assert_eq!(
        (c["budget"]["source"].as_str(), c["budget"]["amount"].as_str()),
        (Some("own"), Some("9"))
    );
    assert_eq!(
        c["rateLimits"],
        json!({"source": "own", "requestsPerMinute": 1, "tokensPerMinute": null})
    );
    assert_eq!(
        send(&app, &tenant.owner, Method::DELETE, &own, None).await.status(),
        StatusCode::NO_CONTENT
    );
    let c = app.get_json(&tenant.owner, &format!("{org}/customers/{id}")).await;
    assert_eq!(c["budget"]["source"], "default");

    // Agents have defaults of their own; removing the customers' defaults leaves none.
    assert_eq!(
        app.get_json(&tenant.owner, &format!("{org}/defaults/agent")).await["budget"],
        Value::Null
    );
    assert_eq!(
        send(&app, &tenant.owner, Method::DELETE, &defaults, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let c = app.get_json(&tenant.owner, &format!("{org}/customers/{id}")).await;
    assert_eq!(
        (c["budget"].clone(), c["rateLimits"]["source"].as_str()),
        (Value::Null, Some("own"))
    );
    assert_eq!(c["period"], "monthly", "without a budget, spend is the month's");
}

/// What the API sets is what the authorize check enforces, at once on this instance.
#[tokio::test]
async fn the_authorize_check_follows_budgets_resets_and_blocks_set_through_the_api() {
    let (app, tenant) = priced_app().await;
    spend(&app, &tenant, "erin", 400_000, Utc::now()).await; // $1
    let erin = customer_id(&app, &tenant, "erin").await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    let authorize = |request_id: &str, prompt: i64| {
        app.request(Method::POST, "/v1/gateway/authorize")
            .header("x-api-key", &tenant.key_secret)
            .json(&json!({
                "requestId": request_id, "user": "erin", "endpoint": "/chat/completions",
                "provider": "openai", "model": "gpt-4o", "estimatedPromptTokens": prompt,
            }))
            .send()
    };
    let reason = |response: Response| async move { expect_json(response, StatusCode::OK).await["reason"].clone() };
    assert_eq!(reason(authorize("a0", 400_000).await.unwrap()).await, "allowed");

    let budget = format!("{org}/budgets/customer/{erin}");
    let r = send(
        &app,
        &tenant.owner,
        Method::PUT,
        &budget,
        Some(json!({"amount": "1.5", "period": "monthly"})),
    )
    .await;
    expect_json(r, StatusCode::CREATED).await;
    // $1 spent + $1 reserved by a0 + $1 more would pass $1.50.
    assert_eq!(reason(authorize("a1", 400_000).await.unwrap()).await, "budget_exceeded");

    let r = send(&app, &tenant.owner, Method::POST, &format!("{budget}/reset"), None).await;
    expect_json(r, StatusCode::OK).await;
    // The spend is gone; a0's reservation ($1) is still held, so $0.40 more fits.
    assert_eq!(reason(authorize("a2", 160_000).await.unwrap()).await, "allowed");

    let r = send(
        &app,
        &tenant.owner,
        Method::POST,
        &format!("{org}/customers/{erin}/block"),
        Some(json!({})),
    )
    .await;
    expect_json(r, StatusCode::OK).await;
    assert_eq!(reason(authorize("a3", 10).await.unwrap()).await, "customer_blocked");
    let r = send(
        &app,
        &tenant.owner,
        Method::POST,
        &format!("{org}/customers/{erin}/unblock"),
        None,
    )
    .await;
    expect_json(r, StatusCode::OK).await;
    assert_eq!(reason(authorize("a4", 10).await.unwrap()).await, "allowed");

    assert_eq!(
        send(&app, &tenant.owner, Method::DELETE, &budget, None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(reason(authorize("a5", 4_000_000).await.unwrap()).await, "allowed");
}
