//! Price catalog and discount administration, and how prices and discounts land on
//! recorded events (as a tenant sees them in the spend log).
//!
//! Test databases start with an empty catalog: each test adds the prices it needs
//! through the operator API, with model names of its own.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    helpers::{expect_json, expect_problem, uuid, Tenant, TestApp, TestUser},
    price_helpers::{add_discount, add_price, detail, ids, money, price, today, with},
};

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339()
}

fn instant(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
}

/// POSTs as `user` and expects a problem with this status and code.
async fn post_problem(
    app: &TestApp,
    user: &TestUser,
    path: &str,
    body: Value,
    status: StatusCode,
    code: &str,
) -> Value {
    let response = app.as_user(Method::POST, path, user).json(&body).send().await.unwrap();
    expect_problem(response, status, code).await
}

/// The `errors[].field` names of a `validation_failed` problem.
fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {problem}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn price_count(app: &TestApp, user: &TestUser) -> usize {
    app.get_json(user, "/v1/prices").await.as_array().unwrap().len()
}

#[tokio::test]
async fn operators_add_price_versions_and_everyone_reads_the_chain() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let user = app.signup().await;
    let january: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let march: DateTime<Utc> = "2026-03-01T00:00:00Z".parse().unwrap();

    // The newer version is added first: the chain follows validFrom, not insertion.
    let v2 = add_price(&app, &operator, price("TestCo", "tc-alpha", "2", "8", "1", march)).await;
    let v1 = add_price(
        &app,
        &operator,
        with(
            price("testco", "tc-alpha", "2.50", "10.00", "1.250", january),
            json!({"providerModelName": "tc-alpha-2026-01", "perRequest": "0.0010", "perImage": "0.04"}),
        ),
    )
    .await;
    // Provider lower-cased, amounts normalized, providerModelName defaults to the model.
    assert_eq!(v1["provider"], "testco");
    assert_eq!(v1["model"], "tc-alpha");
    assert_eq!(v1["providerModelName"], "tc-alpha-2026-01");
    assert_eq!(
        (
            &v1["inputPerMtok"],
            &v1["outputPerMtok"],
            &v1["cachedInputPerMtok"],
            &v1["perRequest"],
            &v1["perImage"]
        ),
        (
            &json!("2.5"),
            &json!("10"),
            &json!("1.25"),
            &json!("0.001"),
            &json!("0.04")
        )
    );
    assert_eq!(instant(&v1["validFrom"]), january);
    assert_eq!(v2["provider"], "testco");
    assert_eq!(v2["providerModelName"], "tc-alpha");
    assert_eq!((&v2["perRequest"], &v2["perImage"]), (&json!("0"), &json!("0")));
    assert!(v2["validUntil"].is_null(), "{v2}");
    let beta = add_price(&app, &operator, price("testco", "tc-beta", "1", "2", "0.5", january)).await;
    let other = add_price(&app, &operator, price("otherco", "oc-1", "3", "4", "0", january)).await;

    // Any signed-in user reads the catalog: by provider, model, validFrom.
    let all = app.get_json(&user, "/v1/prices").await;
    assert_eq!(
        ids(&all),
        [uuid(&other["id"]), uuid(&v1["id"]), uuid(&v2["id"]), uuid(&beta["id"])]
    );
    let rows = all.as_array().unwrap();
    assert_eq!(
        instant(&rows[1]["validUntil"]),
        march,
        "the January version ends when March's begins"
    );
    assert_eq!(rows[1]["inputPerMtok"], "2.5");
    assert!(rows[2]["validUntil"].is_null(), "the latest version is open-ended");
    assert!(rows[3]["validUntil"].is_null(), "another model is its own chain");
    assert!(rows[0]["validUntil"].is_null());

    // Filtered by provider, case-insensitively.
    let testco = app.get_json(&user, "/v1/prices?provider=TestCo").await;
    assert_eq!(ids(&testco), [uuid(&v1["id"]), uuid(&v2["id"]), uuid(&beta["id"])]);
    assert_eq!(instant(&testco[0]["validUntil"]), march);
    assert_eq!(app.get_json(&user, "/v1/prices?provider=nobody").await, json!([]));

    // Signed-out: 401.
    let anonymous = app.request(Method::GET, "/v1/prices").send().await.unwrap();
    expect_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Only operators add prices; a tenant owner is no operator.
    let tenant = app.tenant().await;
    for who in [&user, &tenant.owner] {
        post_problem(
            &app,
            who,
            "/v1/admin/prices",
            price("testco", "tc-gamma", "1", "1", "1", january),
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    assert_eq!(price_count(&app, &user).await, 4, "nothing was added");

    // The same model and instant again (provider in another case): conflict.
    post_problem(
        &app,
        &operator,
        "/v1/admin/prices",
        price("TESTCO", "tc-alpha", "9", "9", "9", march),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    // The same instant for another model or provider is fine.
    add_price(&app, &operator, price("otherco", "tc-alpha", "1", "1", "1", march)).await;
    assert_eq!(price_count(&app, &user).await, 5);

    // Bad amounts and names: every broken field named at once.
    let problem = post_problem(
        &app,
        &operator,
        "/v1/admin/prices",
        with(
            price("", " ", "-1", "1000000.0000000001", "0.00000000001", january),
            json!({"perRequest": "0.1", "perImage": "-0.5"}),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        fields(&problem),
        [
            "provider",
            "model",
            "inputPerMtok",
            "outputPerMtok",
            "cachedInputPerMtok",
            "perImage"
        ]
    );
    let problem = post_problem(
        &app,
        &operator,
        "/v1/admin/prices",
        with(
            price("testco", "tc-delta", "1", "1", "1", january),
            json!({"providerModelName": "", "perRequest": "1000001"}),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&problem), ["providerModelName", "perRequest"]);
    assert_eq!(price_count(&app, &user).await, 5, "nothing was added");

    // The limits themselves are accepted: 1,000,000 and ten decimal places.
    let edge = add_price(
        &app,
        &operator,
        price("testco", "tc-edge", "1000000", "0.0000000001", "0", january),
    )
    .await;
    assert_eq!(
        (
            &edge["inputPerMtok"],
            &edge["outputPerMtok"],
            &edge["cachedInputPerMtok"]
        ),
        (&json!("1000000"), &json!("0.0000000001"), &json!("0"))
    );
}

#[tokio::test]
async fn a_price_change_applies_to_events_from_its_valid_from() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant().await;
    let a = add_price(
        &app,
        &operator,
        price("pc-ai", "pc-model", "3", "15", "0.3", today() - Duration::days(10)),
    )
    .await;
    let b = add_price(
        &app,
        &operator,
        price(
            "pc-ai",
            "pc-model",
            "2.123456789",
            "8",
            "0.2",
            today() - Duration::days(1),
        ),
    )
    .await;

    let call = |at: DateTime<Utc>| {
        json!({
            "provider": "pc-ai", "model": "pc-model", "promptTokens": 1200, "cachedTokens": 200,
            "completionTokens": 300, "startedAt": rfc3339(at),
        })
    };
    // Two days ago (the first day the free plan keeps): version A.
    let before = app
        .record_event(&tenant, call(today() - Duration::days(2) + Duration::hours(1)))
        .await;
    // Now: version B.
    let after = app.record_event(&tenant, call(Utc::now())).await;

    let old = detail(&app, &tenant, before).await;
    // Version A: input (1200 − 200) × 3 / 1e6 = 0.003; cached 200 × 0.3 / 1e6 = 0.00006;
    // output 300 × 15 / 1e6 = 0.0045; total 0.00756.
    assert_eq!(
        old["costBreakdown"],
        json!({"input": "0.003", "output": "0.0045", "cachedInput": "0.00006", "cacheWrite5m": "0", "cacheWrite1h": "0",
               "reasoning": "0", "audioInput": "0", "audioOutput": "0", "request": "0", "image": "0", "imageInput": "0",
               "imageOutput": "0", "dataStorage": "0"})
    );
    assert_eq!(
        money(&old),
        json!({"costBeforeDiscount": "0.00756", "discountPercent": "0", "discountSavings": "0", "cost": "0.00756"})
    );
    assert_eq!(uuid(&old["priceId"]), uuid(&a["id"]));
    assert_eq!(old["unpriced"], false);
    assert!(old["discountId"].is_null());

    let new = detail(&app, &tenant, after).await;
    // Version B: input 1000 × 2.123456789 / 1e6 = 0.002123456789 → 0.0021234568 (10 places,
    // half away from zero); cached 200 × 0.2 / 1e6 = 0.00004; output 300 × 8 / 1e6 = 0.0024;
    // total 0.0021234568 + 0.00004 + 0.0024 = 0.0045634568.
    assert_eq!(
        new["costBreakdown"],
        json!({"input": "0.0021234568", "output": "0.0024", "cachedInput": "0.00004", "cacheWrite5m": "0",
               "cacheWrite1h": "0", "reasoning": "0", "audioInput": "0", "audioOutput": "0", "request": "0",
               "image": "0", "imageInput": "0", "imageOutput": "0", "dataStorage": "0"})
    );
    assert_eq!(
        money(&new),
        json!({"costBeforeDiscount": "0.0045634568", "discountPercent": "0", "discountSavings": "0", "cost": "0.0045634568"})
    );
    assert_eq!(uuid(&new["priceId"]), uuid(&b["id"]));
    assert_ne!(old["priceId"], new["priceId"]);
}

#[tokio::test]
async fn the_most_specific_discount_wins_and_discounts_never_stack() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant().await;
    let other_tenant = app.tenant().await;
    let long_ago = today() - Duration::days(30);
    // $4 in, $12 out per million tokens for every model here.
    for (provider, model, name) in [
        ("acme-llm", "acme-large", "acme-large-0301"),
        ("acme-llm", "acme-small", "acme-small"),
        ("acme-llm", "acme-mini", "acme-mini-2025-06"),
        ("zeta-ai", "zeta-1", "zeta-1"),
    ] {
        add_price(
            &app,
            &operator,
            with(
                price(provider, model, "4", "12", "1", long_ago),
                json!({"providerModelName": name}),
            ),
        )
        .await;
    }
    let org_model = add_discount(
        &app,
        &operator,
        json!({"orgId": tenant.org_id, "provider": "acme-llm", "model": "acme-large", "percent": "20"}),
    )
    .await;
    let global_provider = add_discount(&app, &operator, json!({"provider": "ACME-LLM", "percent": "10"})).await;
    assert_eq!(global_provider["provider"], "acme-llm");
    assert!(global_provider["orgId"].is_null());
    // Matched by the provider's own model name.
    let by_provider_name = add_discount(
        &app,
        &operator,
        json!({"orgId": tenant.org_id, "model": "acme-mini-2025-06", "percent": "15"}),
    )
    .await;

    // Every call: 1,000 prompt and 500 completion tokens:
    // input 1000 × 4 / 1e6 = 0.004; output 500 × 12 / 1e6 = 0.006; 0.01 before discount.
    let call = |provider: &str, model: &str| json!({"provider": provider, "model": model, "promptTokens": 1000, "completionTokens": 500});

    // org+provider+model 20 % beats the global provider 10 % (both match; only one applies):
    // savings 0.01 × 20 % = 0.002; cost 0.008 (not 0.007).
    let large = detail(
        &app,
        &tenant,
        app.record_event(&tenant, call("acme-llm", "acme-large")).await,
    )
    .await;
    assert_eq!(
        money(&large),
        json!({"costBeforeDiscount": "0.01", "discountPercent": "20", "discountSavings": "0.002", "cost": "0.008"})
    );
    assert_eq!(uuid(&large["discountId"]), uuid(&org_model["id"]));
    // Reported by its provider name, the same model gets the same discount.
    let large_by_name = detail(
        &app,
        &tenant,
        app.record_event(&tenant, call("acme-llm", "acme-large-0301")).await,
    )
    .await;
    assert_eq!(large_by_name["discountPercent"], "20");
    assert_eq!(large_by_name["cost"], "0.008");

    // Another model of the provider: the global provider discount, 10 %:
    // savings 0.001; cost 0.009. The event's provider is matched case-insensitively.
    let small = detail(
        &app,
        &tenant,
        app.record_event(&tenant, call("Acme-LLM", "acme-small")).await,
    )
    .await;
    assert_eq!(
        money(&small),
        json!({"costBeforeDiscount": "0.01", "discountPercent": "10", "discountSavings": "0.001", "cost": "0.009"})
    );
    assert_eq!(uuid(&small["discountId"]), uuid(&global_provider["id"]));

    // Another provider: no discount.
    let zeta = detail(
        &app,
        &tenant,
        app.record_event(&tenant, call("zeta-ai", "zeta-1")).await,
    )
    .await;
    assert_eq!(
        money(&zeta),
        json!({"costBeforeDiscount": "0.01", "discountPercent": "0", "discountSavings": "0", "cost": "0.01"})
    );
    assert!(zeta["discountId"].is_null());

    // org+model by the provider's model name (15 %) beats the global provider discount,
    // whether the event reports that name or the catalog id:
    // savings 0.01 × 15 % = 0.0015; cost 0.0085.
    for reported in ["acme-mini-2025-06", "acme-mini"] {
        let mini = detail(
            &app,
            &tenant,
            app.record_event(&tenant, call("acme-llm", reported)).await,
        )
        .await;
        assert_eq!(
            money(&mini),
            json!({"costBeforeDiscount": "0.01", "discountPercent": "15", "discountSavings": "0.0015", "cost": "0.0085"}),
            "reported as {reported}"
        );
        assert_eq!(uuid(&mini["discountId"]), uuid(&by_provider_name["id"]));
    }

    // Stored bodies add a data-storage charge that is not discounted:
    // (1000 + 500) × 0.01 / 1e6 = 0.000015; before discount 0.010015;
    // savings 20 % of the model charges only = 0.002; cost 0.008015.
    let with_bodies = with(
        call("acme-llm", "acme-large"),
        json!({"requestBody": {"messages": []}, "responseBody": {"choices": []}}),
    );
    let stored = detail(&app, &tenant, app.record_event(&tenant, with_bodies).await).await;
    assert_eq!(stored["costBreakdown"]["dataStorage"], "0.000015");
    assert_eq!(
        money(&stored),
        json!({"costBeforeDiscount": "0.010015", "discountPercent": "20", "discountSavings": "0.002", "cost": "0.008015"})
    );

    // Another organization gets only the global discount.
    let theirs = detail(
        &app,
        &other_tenant,
        app.record_event(&other_tenant, call("acme-llm", "acme-large")).await,
    )
    .await;
    assert_eq!(
        money(&theirs),
        json!({"costBeforeDiscount": "0.01", "discountPercent": "10", "discountSavings": "0.001", "cost": "0.009"})
    );
    assert_eq!(uuid(&theirs["discountId"]), uuid(&global_provider["id"]));
}

#[tokio::test]
async fn expired_future_and_deleted_discounts_do_not_apply_to_new_events() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant().await;
    let now = Utc::now();
    add_price(
        &app,
        &operator,
        price("exp-ai", "exp-model", "5", "5", "0", today() - Duration::days(30)),
    )
    .await;
    // The most specific scope, but over an hour ago.
    let expired = add_discount(
        &app,
        &operator,
        json!({
            "orgId": tenant.org_id, "provider": "exp-ai", "model": "exp-model", "percent": "50",
            "validFrom": rfc3339(now - Duration::days(3)), "validUntil": rfc3339(now - Duration::hours(1)),
        }),
    )
    .await;
    // The next scope, but only from tomorrow.
    add_discount(
        &app,
        &operator,
        json!({
            "orgId": tenant.org_id, "provider": "exp-ai", "percent": "40",
            "validFrom": rfc3339(now + Duration::days(1)),
        }),
    )
    .await;
    let global = add_discount(
        &app,
        &operator,
        json!({"provider": "exp-ai", "percent": "25", "validFrom": rfc3339(now - Duration::days(3))}),
    )
    .await;

    // 1,000 prompt and 1,000 completion tokens at $5/M each: 0.005 + 0.005 = 0.01.
    let call = |at: DateTime<Utc>| {
        json!({"provider": "exp-ai", "model": "exp-model", "promptTokens": 1000, "completionTokens": 1000,
               "startedAt": rfc3339(at)})
    };

    // Now: the expired and the future discounts are skipped; the global 25 % applies:
    // savings 0.0025; cost 0.0075.
    let current = app.record_event(&tenant, call(Utc::now())).await;
    let current_detail = detail(&app, &tenant, current).await;
    assert_eq!(
        money(&current_detail),
        json!({"costBeforeDiscount": "0.01", "discountPercent": "25", "discountSavings": "0.0025", "cost": "0.0075"})
    );
    assert_eq!(uuid(&current_detail["discountId"]), uuid(&global["id"]));

    // A call two hours ago, while the expired discount was valid, got it: 50 % → 0.005.
    let earlier = detail(
        &app,
        &tenant,
        app.record_event(&tenant, call(now - Duration::hours(2))).await,
    )
    .await;
    assert_eq!(
        money(&earlier),
        json!({"costBeforeDiscount": "0.01", "discountPercent": "50", "discountSavings": "0.005", "cost": "0.005"})
    );
    assert_eq!(uuid(&earlier["discountId"]), uuid(&expired["id"]));

    // Deleting the global discount.
    let path = format!("/v1/admin/discounts/{}", global["id"].as_str().unwrap());
    let deleted = app.as_user(Method::DELETE, &path, &operator).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let again = app.as_user(Method::DELETE, &path, &operator).send().await.unwrap();
    expect_problem(again, StatusCode::NOT_FOUND, "not_found").await;
    let listed = app
        .get_json(&tenant.owner, &format!("/v1/orgs/{}/discounts", tenant.org_id))
        .await;
    assert!(!ids(&listed).contains(&uuid(&global["id"])), "{listed}");
    assert!(ids(&app.get_json(&operator, "/v1/admin/discounts?global=true").await).is_empty());

    // A new call gets no discount at all.
    let later = detail(&app, &tenant, app.record_event(&tenant, call(Utc::now())).await).await;
    assert_eq!(
        money(&later),
        json!({"costBeforeDiscount": "0.01", "discountPercent": "0", "discountSavings": "0", "cost": "0.01"})
    );
    assert!(later["discountId"].is_null());

    // The call recorded before the deletion keeps its discount.
    let kept = detail(&app, &tenant, current).await;
    assert_eq!(money(&kept), money(&current_detail));
    assert_eq!(uuid(&kept["discountId"]), uuid(&global["id"]));
}

#[tokio::test]
async fn discount_administration_is_validated_and_tenants_see_only_their_own() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let a = app.tenant().await;
    let b = app.tenant().await;
    let path = "/v1/admin/discounts";
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    let from = Utc::now() + Duration::days(1);

    for (body, expected) in [
        (json!({"percent": "10"}), vec!["provider"]),
        (json!({"provider": "openai", "percent": "0"}), vec!["percent"]),
        (json!({"provider": "openai", "percent": "-5"}), vec!["percent"]),
        (json!({"provider": "openai", "percent": "100.0001"}), vec!["percent"]),
        (json!({"provider": "openai", "percent": "12.34567"}), vec!["percent"]),
        (json!({"provider": " ", "percent": "10"}), vec!["provider"]),
        (json!({"model": "", "percent": "10"}), vec!["model"]),
        (
            json!({"provider": "openai", "percent": "10", "validFrom": rfc3339(from), "validUntil": rfc3339(from)}),
            vec!["validUntil"],
        ),
        (
            json!({"provider": "openai", "percent": "10", "validUntil": rfc3339(Utc::now() - Duration::hours(1))}),
            vec!["validUntil"],
        ),
        (
            json!({"percent": "0", "validFrom": rfc3339(from), "validUntil": rfc3339(from - Duration::hours(1))}),
            vec!["percent", "provider", "validUntil"],
        ),
    ] {
        let problem = post_problem(&app, &operator, path, body.clone(), invalid, "validation_failed").await;
        assert_eq!(fields(&problem), expected, "{body}");
    }
    post_problem(
        &app,
        &operator,
        path,
        json!({"orgId": Uuid::new_v4(), "provider": "openai", "percent": "10"}),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(
        ids(&app.get_json(&operator, path).await).is_empty(),
        "nothing was created"
    );

    // Valid ones, including the bounds 0.0001 and 100.
    let for_a = add_discount(
        &app,
        &operator,
        json!({"orgId": a.org_id, "provider": "OpenAI", "percent": "12.5",
               "validFrom": "2026-01-01T00:00:00Z", "validUntil": "2027-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(uuid(&for_a["orgId"]), a.org_id);
    assert_eq!(
        (&for_a["provider"], &for_a["model"], &for_a["percent"]),
        (&json!("openai"), &Value::Null, &json!("12.5"))
    );
    assert_eq!(
        instant(&for_a["validFrom"]),
        "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(
        instant(&for_a["validUntil"]),
        "2027-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    let for_b = add_discount(
        &app,
        &operator,
        json!({"orgId": b.org_id, "model": "gpt-4o", "percent": "100"}),
    )
    .await;
    assert!(for_b["validUntil"].is_null());
    let global = add_discount(&app, &operator, json!({"provider": "anthropic", "percent": "0.0001"})).await;
    assert_eq!(global["percent"], "0.0001");
    // validFrom defaults to now.
    let age = Utc::now() - instant(&global["validFrom"]);
    assert!(age >= Duration::zero() && age < Duration::minutes(1), "{global}");

    // Operator views: all, one organization's, global only.
    let all = [uuid(&for_a["id"]), uuid(&for_b["id"]), uuid(&global["id"])];
    assert_eq!(ids(&app.get_json(&operator, path).await), all);
    assert_eq!(
        ids(&app.get_json(&operator, &format!("{path}?orgId={}", a.org_id)).await),
        [all[0]]
    );
    assert_eq!(
        ids(&app.get_json(&operator, &format!("{path}?global=true")).await),
        [all[2]]
    );

    // Tenants: their own and the global ones, never another organization's; any member.
    let viewer = app.member(&a, "viewer").await;
    let a_sees = app.get_json(&viewer, &format!("/v1/orgs/{}/discounts", a.org_id)).await;
    assert_eq!(ids(&a_sees), [all[0], all[2]]);
    let b_sees = app
        .get_json(&b.owner, &format!("/v1/orgs/{}/discounts", b.org_id))
        .await;
    assert_eq!(ids(&b_sees), [all[1], all[2]]);
    let peek = app
        .as_user(Method::GET, &format!("/v1/orgs/{}/discounts", b.org_id), &a.owner)
        .send()
        .await
        .unwrap();
    expect_problem(peek, StatusCode::NOT_FOUND, "not_found").await;

    // A tenant owner is no operator: 403 on every admin endpoint, and nothing changes.
    let owner = &a.owner;
    let listing = app.as_user(Method::GET, path, owner).send().await.unwrap();
    expect_problem(listing, StatusCode::FORBIDDEN, "forbidden").await;
    let filtered = app
        .as_user(Method::GET, &format!("{path}?orgId={}", a.org_id), owner)
        .send()
        .await
        .unwrap();
    expect_problem(filtered, StatusCode::FORBIDDEN, "forbidden").await;
    post_problem(
        &app,
        owner,
        path,
        json!({"orgId": a.org_id, "provider": "openai", "percent": "90"}),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for target in [all[0], all[1]] {
        let delete = app
            .as_user(Method::DELETE, &format!("{path}/{target}"), owner)
            .send()
            .await
            .unwrap();
        expect_problem(delete, StatusCode::FORBIDDEN, "forbidden").await;
    }
    assert_eq!(ids(&app.get_json(&operator, path).await), all, "nothing changed");

    // Deleting: unknown → 404; B's → 204 and B sees only the global one.
    let unknown = app
        .as_user(Method::DELETE, &format!("{path}/{}", Uuid::new_v4()), &operator)
        .send()
        .await
        .unwrap();
    expect_problem(unknown, StatusCode::NOT_FOUND, "not_found").await;
    let removed = app
        .as_user(Method::DELETE, &format!("{path}/{}", all[1]), &operator)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let b_sees = app
        .get_json(&b.owner, &format!("/v1/orgs/{}/discounts", b.org_id))
        .await;
    assert_eq!(ids(&b_sees), [all[2]]);
}

#[tokio::test]
async fn an_unknown_model_is_recorded_unpriced_at_zero_cost_without_discount() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant().await;
    add_price(
        &app,
        &operator,
        price("known-ai", "known-1", "3", "15", "0.3", today() - Duration::days(30)),
    )
    .await;
    // Not in force yet.
    add_price(
        &app,
        &operator,
        price("known-ai", "later-1", "3", "15", "0.3", Utc::now() + Duration::days(1)),
    )
    .await;
    // Discounts that would match by provider or by the reported model name.
    add_discount(&app, &operator, json!({"provider": "known-ai", "percent": "50"})).await;
    add_discount(
        &app,
        &operator,
        json!({"orgId": tenant.org_id, "model": "mystery-9", "percent": "30"}),
    )
    .await;

    for (provider, model) in [
        ("known-ai", "mystery-9"),
        ("known-ai", "later-1"),
        // Prices belong to a provider: the same model name elsewhere is unknown.
        ("other-ai", "known-1"),
    ] {
        let response = app
            .request(Method::POST, "/v1/usage")
            .header("x-api-key", &tenant.key_secret)
            .json(&json!({
                "requestId": format!("unpriced-{provider}-{model}"), "endpoint": "/chat/completions",
                "provider": provider, "model": model, "promptTokens": 1000, "completionTokens": 100,
                "cachedTokens": 10, "requestBody": {"messages": []}, "responseBody": "ok",
            }))
            .send()
            .await
            .unwrap();
        let recorded = expect_json(response, StatusCode::CREATED).await;
        assert_eq!(
            (&recorded["status"], &recorded["cost"], &recorded["unpriced"]),
            (&json!("accepted"), &json!("0"), &json!(true)),
            "{provider}/{model}: {recorded}"
        );
        let logged = detail(&app, &tenant, uuid(&recorded["eventId"])).await;
        assert_eq!(logged["unpriced"], true, "{provider}/{model}");
        assert_eq!(logged["model"], model);
        assert_eq!(logged["promptTokens"], 1000);
        assert_eq!(
            money(&logged),
            json!({"costBeforeDiscount": "0", "discountPercent": "0", "discountSavings": "0", "cost": "0"}),
            "{provider}/{model}"
        );
        // Not even the data-storage charge.
        assert_eq!(
            logged["costBreakdown"],
            json!({"input": "0", "output": "0", "cachedInput": "0", "cacheWrite5m": "0", "cacheWrite1h": "0",
                   "reasoning": "0", "audioInput": "0", "audioOutput": "0", "request": "0", "image": "0",
                   "imageInput": "0", "imageOutput": "0", "dataStorage": "0"}),
            "{provider}/{model}"
        );
        assert!(logged["priceId"].is_null(), "{logged}");
        assert!(logged["discountId"].is_null(), "{logged}");
    }

    // The priced model next to it is priced and discounted, so the setup was live:
    // 990 × 3/M + 10 × 0.3/M + 100 × 15/M = 0.00297 + 0.000003 + 0.0015 = 0.004473;
    // 50 % off → 0.0022365.
    let known = detail(
        &app,
        &tenant,
        app.record_event(
            &tenant,
            json!({"provider": "known-ai", "model": "known-1", "promptTokens": 1000, "completionTokens": 100,
                   "cachedTokens": 10}),
        )
        .await,
    )
    .await;
    assert_eq!(known["unpriced"], false);
    assert_eq!(
        money(&known),
        json!({"costBeforeDiscount": "0.004473", "discountPercent": "50", "discountSavings": "0.0022365", "cost": "0.0022365"})
    );
}

#[tokio::test]
async fn a_provider_name_too_long_once_lower_cased_is_a_validation_error() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    // 100 characters as sent, 200 once lower-cased ("İ" → "i̇").
    let provider = "İ".repeat(100);
    let problem = post_problem(
        &app,
        &operator,
        "/v1/admin/prices",
        price(&provider, "tall-model", "1", "1", "1", today()),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&problem), ["provider"]);
    assert_eq!(price_count(&app, &operator).await, 0);
}

#[tokio::test]
async fn an_event_whose_cost_cannot_be_stored_is_rejected_on_its_own() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant().await;
    // Both limits are accepted: perImage 1,000,000 USD, 10,000 images per event.
    add_price(
        &app,
        &operator,
        with(
            price("img-ai", "img-max", "0", "0", "0", today() - Duration::days(1)),
            json!({"perImage": "1000000"}),
        ),
    )
    .await;
    let call = |request_id: &str, images: i64| {
        json!({"requestId": request_id, "endpoint": "/images/generations", "provider": "img-ai",
               "model": "img-max", "images": images})
    };
    // 10,000 × 1,000,000 = 10,000,000,000 USD: more than the ledger holds.
    let response = app
        .request(Method::POST, "/v1/usage")
        .header("x-api-key", &tenant.key_secret)
        .json(&call("huge-alone", 10_000))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    // In a batch, the ordinary event is still recorded (1 × 1,000,000 = 1,000,000 USD).
    let (status, body) = app
        .send_batch(&tenant.key_secret, json!([call("one-image", 1), call("huge", 10_000)]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((&body["accepted"], &body["rejected"]), (&json!(1), &json!(1)), "{body}");
    assert_eq!(body["results"][0]["cost"], "1000000");
    assert_eq!(body["results"][1]["status"], "rejected");
    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, 1);
}

#[tokio::test]
async fn a_new_version_keeps_the_provider_name_and_prices_events_reported_by_it() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant().await;
    let today = Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let add = |body: serde_json::Value| app.post_json(&operator, "/v1/admin/prices", body);
    add(
        json!({"provider": "named", "model": "nm-1", "providerModelName": "nm-1-2026-01-01",
        "inputPerMtok": "4", "outputPerMtok": "0", "cachedInputPerMtok": "0",
        "validFrom": (today - chrono::Duration::days(30)).to_rfc3339()}),
    )
    .await;
    // The new version leaves out the provider name: it inherits it.
    let v2 = add(json!({"provider": "named", "model": "nm-1",
        "inputPerMtok": "2", "outputPerMtok": "0", "cachedInputPerMtok": "0",
        "validFrom": (today - chrono::Duration::days(1)).to_rfc3339()}))
    .await;
    assert_eq!(v2["providerModelName"], "nm-1-2026-01-01");
    // 1,000 input tokens at the new $2/M, whichever name the gateway reports.
    for (i, model) in ["nm-1", "nm-1-2026-01-01"].into_iter().enumerate() {
        let id = app
            .record_event(&tenant, json!({"requestId": format!("named-{i}"), "provider": "named", "model": model, "promptTokens": 1000, "completionTokens": 0}))
            .await;
        let detail = app
            .get_json(&tenant.owner, &format!("/v1/orgs/{}/spend-logs/{id}", tenant.org_id))
            .await;
        assert_eq!(detail["cost"], "0.002", "{model}");
        assert_eq!(detail["priceId"], v2["id"], "{model}");
    }
}

/// `SELECT model, sum(requests), sum(unpriced)` over the organization's roll-ups.
async fn rollup_models(app: &TestApp, tenant: &Tenant) -> Vec<(String, i64, i64)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        model: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        requests: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        unpriced: i64,
    }
    use diesel_async::RunQueryDsl;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT model, sum(requests)::bigint AS requests, sum(unpriced)::bigint AS unpriced FROM usage_daily \
         WHERE org_id = $1 GROUP BY model ORDER BY model",
    )
    .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
    .load(&mut app.db().await)
    .await
    .unwrap();
    rows.into_iter().map(|r| (r.model, r.requests, r.unpriced)).collect()
}

#[tokio::test]
async fn an_unpriced_call_naming_the_provider_model_name_rolls_up_under_the_catalog_id() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant().await;
    let starts = Utc::now() - Duration::hours(1);
    add_price(
        &app,
        &operator,
        with(
            price("known-ai", "known-2", "3", "15", "0.3", starts),
            json!({"providerModelName": "known-2-20260101"}),
        ),
    )
    .await;
    // Before the first price: known to the catalog, but unpriced.
    let early = app
        .record_event(
            &tenant,
            json!({"provider": "known-ai", "model": "known-2-20260101",
                   "startedAt": rfc3339(starts - Duration::minutes(10))}),
        )
        .await;
    let early = detail(&app, &tenant, early).await;
    assert_eq!(
        (early["unpriced"].as_bool(), early["cost"].as_str()),
        (Some(true), Some("0"))
    );
    assert_eq!(early["model"], "known-2-20260101", "the log keeps the name reported");
    let priced = detail(
        &app,
        &tenant,
        app.record_event(&tenant, json!({"provider": "known-ai", "model": "known-2"}))
            .await,
    )
    .await;
    assert_eq!(priced["unpriced"], false);
    assert_eq!(
        rollup_models(&app, &tenant).await,
        vec![("known-2".to_owned(), 2, 1)],
        "both calls count under the catalog id"
    );
}

#[tokio::test]
async fn model_and_provider_names_match_whatever_their_case() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant().await;
    add_price(
        &app,
        &operator,
        with(
            price("known-ai", "known-3", "3", "15", "0.3", today() - Duration::days(30)),
            json!({"providerModelName": "known-3-2026"}),
        ),
    )
    .await;
    add_discount(
        &app,
        &operator,
        json!({"provider": "KNOWN-AI", "model": "KNOWN-3", "percent": "10"}),
    )
    .await;
    // 1000 × 3/M + 100 × 15/M = 0.0045; 10 % off → 0.00405.
    for (provider, model) in [
        ("KNOWN-AI", "KNOWN-3"),
        ("Known-Ai", "Known-3-2026"),
        ("known-ai", "known-3"),
    ] {
        let logged = detail(
            &app,
            &tenant,
            app.record_event(&tenant, json!({"provider": provider, "model": model}))
                .await,
        )
        .await;
        assert_eq!(
            money(&logged),
            json!({"costBeforeDiscount": "0.0045", "discountPercent": "10", "discountSavings": "0.00045", "cost": "0.00405"}),
            "{provider}/{model}"
        );
        assert_eq!(
            (logged["provider"].as_str(), logged["model"].as_str()),
            (Some("known-ai"), Some(model))
        );
    }
    // Models outside the catalog count as one whatever the case, under the lower-case name.
    for model in ["Mystery-X", "MYSTERY-x"] {
        app.record_event(&tenant, json!({"provider": "known-ai", "model": model}))
            .await;
    }
    assert_eq!(
        rollup_models(&app, &tenant).await,
        vec![("known-3".to_owned(), 3, 0), ("mystery-x".to_owned(), 2, 2)]
    );
    // The catalog cannot hold two spellings of one model.
    let problem = post_problem(
        &app,
        &operator,
        "/v1/admin/prices",
        price("known-ai", "Known-3", "1", "1", "1", Utc::now() + Duration::days(1)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&problem), ["model"]);
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("`known-3`"));
}

#[tokio::test]
async fn a_price_charges_images_sent_and_images_generated_apart() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let view = add_price(
        &app,
        &operator,
        with(
            price("pix-ai", "pix-1", "1", "2", "0.5", today() - Duration::days(1)),
            json!({"perImage": "0.04", "perInputImage": "0.0025"}),
        ),
    )
    .await;
    assert_eq!(
        (view["perImage"].as_str(), view["perInputImage"].as_str()),
        (Some("0.04"), Some("0.0025"))
    );
    let tenant = app.tenant().await;
    let logged = detail(
        &app,
        &tenant,
        app.record_event(
            &tenant,
            json!({"provider": "pix-ai", "model": "pix-1", "promptTokens": 0, "completionTokens": 0,
                   "images": 1, "inputImages": 4}),
        )
        .await,
    )
    .await;
    // 1 generated × 0.04; 4 sent × 0.0025 = 0.01.
    assert_eq!(
        (
            logged["costBreakdown"]["imageOutput"].as_str(),
            logged["costBreakdown"]["imageInput"].as_str(),
            logged["cost"].as_str()
        ),
        (Some("0.04"), Some("0.01"), Some("0.05"))
    );
    let problem = post_problem(
        &app,
        &operator,
        "/v1/admin/prices",
        with(
            price("pix-ai", "pix-2", "1", "2", "0.5", today()),
            json!({"perInputImage": "-1"}),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&problem), ["perInputImage"]);
}

#[tokio::test]
async fn a_price_change_inside_a_day_prices_each_call_by_its_own_moment_and_the_day_adds_both() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant().await;
    let yesterday = today() - Duration::days(1);
    let noon = yesterday + Duration::hours(12);
    let morning = add_price(
        &app,
        &operator,
        price("day-ai", "day-model", "4", "16", "0.4", yesterday),
    )
    .await;
    let afternoon = add_price(&app, &operator, price("day-ai", "day-model", "1", "2", "0.1", noon)).await;

    let call = |at: DateTime<Utc>, request: &str| {
        json!({"requestId": request, "provider": "day-ai", "model": "day-model", "promptTokens": 1000,
               "completionTokens": 500, "startedAt": rfc3339(at)})
    };
    let before = app
        .record_event(&tenant, call(noon - Duration::microseconds(1), "before-noon"))
        .await;
    let at_noon = app.record_event(&tenant, call(noon, "at-noon")).await;

    // Up to a microsecond before noon the morning price: 1,000 × 4/M + 500 × 16/M =
    // 0.004 + 0.008 = 0.012. From noon the afternoon price: 0.001 + 0.001 = 0.002.
    let before = detail(&app, &tenant, before).await;
    let at_noon = detail(&app, &tenant, at_noon).await;
    assert_eq!((&before["cost"], &at_noon["cost"]), (&json!("0.012"), &json!("0.002")));
    assert_eq!(uuid(&before["priceId"]), uuid(&morning["id"]));
    assert_eq!(uuid(&at_noon["priceId"]), uuid(&afternoon["id"]));

    // The day's roll-up holds both calls at their own prices: 0.014, inputs 0.005,
    // outputs 0.009; the model breakdown agrees.
    let date = yesterday.date_naive().to_string();
    let activity = app
        .get_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/activity?from={date}&to={date}", tenant.org_id),
        )
        .await;
    let day = &activity["activity"][0];
    assert_eq!(day["date"], date.as_str());
    assert_eq!(
        (
            &day["requestCount"],
            &day["cost"],
            &day["inputCost"],
            &day["outputCost"]
        ),
        (&json!(2), &json!("0.014"), &json!("0.005"), &json!("0.009"))
    );
    assert_eq!(day["modelBreakdown"][0]["cost"], "0.014");
}
